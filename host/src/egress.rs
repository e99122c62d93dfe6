//! The egress policy: where the host may send requests whose URL came from configuration,
//! admin input or a flow (event webhooks, the handover webhook, flow `http` nodes).
//!
//! A URL goes through two checks. [`EgressPolicy::check_url`] runs where the URL is first
//! known (config load, admin create/PATCH, flow load) and again before every request: the
//! scheme must be http(s), an IP-literal host must not be in a refused range, and a host
//! name must not be a well-known internal name (`localhost`, cloud metadata names). Host
//! names are then resolved at connect time by [`Egress::client`]'s DNS hook, which drops
//! every refused address (so a name that resolves, or later re-resolves, to 127.0.0.1 or
//! 169.254.169.254 cannot be reached: DNS rebinding). The client follows no redirects and
//! uses no proxy (a proxy would resolve names itself), and [`read_capped`] reads a
//! response body up to a cap. `[egress] allow = [...]` lists IPs, CIDRs and host names
//! that are reachable even though they are internal; an allowed name's addresses are all
//! accepted. The Graph API base is not governed here (it is bound to its token instead).
//!
//! What must stay true: every request to such a URL is built by [`Egress::request`] (never
//! by another client), so both checks run; the module imports nothing of the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Response bodies read through [`read_capped`] by default: 1 MiB.
pub const DEFAULT_BODY_CAP: usize = 1024 * 1024;

/// Host names refused unless allow-listed: loopback and cloud metadata services.
const REFUSED_NAMES: [&str; 6] = [
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why a URL or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("not an http(s) URL with a host")]
    BadUrl,
    #[error("refused by the egress policy: {0} (add it to [egress] allow to permit it)")]
    Refused(String),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Http(String),
}

/// `[egress]`: the allow list, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl EgressPolicy {
    /// Parses `allow` entries: an IP (`127.0.0.1`), a CIDR (`10.1.2.0/24`) or a host name
    /// (`hooks.internal`). Errors name the entry.
    pub fn new(allow: &[String]) -> Result<EgressPolicy, String> {
        let mut policy = EgressPolicy::default();
        for entry in allow {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net.trunc());
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if valid_host_name(entry) {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "egress.allow: {entry:?} is not an IP address, a CIDR or a host name"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether the host may connect to `ip`.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        refused_range(ip).is_none() || self.nets.iter().any(|n| n.contains(&ip))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// The checks that need no DNS: scheme, IP-literal host, internal names.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, EgressError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| EgressError::BadUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EgressError::BadUrl);
        }
        match parsed.host() {
            None => Err(EgressError::BadUrl),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| parsed),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| parsed),
            Some(url::Host::Domain(name)) => {
                if self.host_allowed(name) {
                    return Ok(parsed);
                }
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if REFUSED_NAMES.contains(&name.as_str()) || name.ends_with(".localhost") {
                    return Err(EgressError::Refused(format!("host {name} is internal")));
                }
                Ok(parsed)
            }
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), EgressError> {
        if self.ip_allowed(ip) {
            Ok(())
        } else {
            let range = refused_range(canonical(ip)).unwrap_or("internal");
            Err(EgressError::Refused(format!("{ip} is a {range} address")))
        }
    }
}

/// An IPv4-mapped or NAT64 IPv6 address as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96, the NAT64 well-known prefix.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            ip
        }
        v4 => v4,
    }
}

/// The refused range `ip` is in (after [`canonical`]), by name; `None` for a public address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, _) => "this-network",
        (127, _) => "loopback",
        (10, _) => "private",
        (172, 16..=31) => "private",
        (192, 168) => "private",
        (169, 254) => "link-local (cloud metadata)",
        (100, 64..=127) => "shared (CGNAT)",
        (192, 0) if c == 0 => "IETF protocol",
        (198, 18 | 19) => "benchmarking",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if first & 0xfe00 == 0xfc00 {
        "unique-local"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local"
    } else if first & 0xff00 == 0xff00 {
        "multicast"
    } else if ip.segments()[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) addresses.
        "IPv4-compatible"
    } else {
        return None;
    })
}

fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The policy and the client that enforces it at connect time. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    client: reqwest::Client,
}

impl Default for Egress {
    /// No allow list: every internal address refused.
    fn default() -> Self {
        Egress::new(EgressPolicy::default())
    }
}

impl Egress {
    pub fn new(policy: EgressPolicy) -> Egress {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(FilteringResolver {
                policy: policy.clone(),
            }))
            .pool_max_idle_per_host(16)
            .build()
            // Only a broken TLS backend fails here; a client without the resolver hook
            // would bypass the policy, so refuse everything instead.
            .unwrap_or_else(|_| refusing_client());
        Egress { policy, client }
    }

    /// An [`Egress`] allowing these entries (tests, tools); a bad entry is skipped.
    pub fn allowing(allow: &[&str]) -> Egress {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        Egress::new(EgressPolicy::new(&allow).unwrap_or_default())
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// A request to `url`, after [`EgressPolicy::check_url`]; host names are checked again
    /// when the connection is made.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, EgressError> {
        let url = self.policy.check_url(url)?;
        Ok(self.client.request(method, url))
    }
}

/// The fallback when the full client cannot be built: still no redirects, no proxy and
/// the filtering resolver with an empty allow list (literal IPs are checked by
/// [`Egress::request`]).
fn refusing_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(FilteringResolver {
            policy: Arc::new(EgressPolicy::default()),
        }))
        .build()
        .unwrap_or_default()
}

/// Resolves with the system resolver, then drops the addresses the policy refuses.
struct FilteringResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let checked = format!("http://{host}/");
            policy.check_url(&checked).map_err(boxed)?;
            let all_allowed = policy.host_allowed(&host);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| all_allowed || policy.ip_allowed(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(boxed(EgressError::Refused(format!(
                    "{host} resolves to no allowed address"
                ))));
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn boxed(e: EgressError) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// The response body, read chunk by chunk up to `cap` bytes; more is an error (the rest
/// is not read).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, EgressError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(EgressError::TooLarge(cap));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > cap {
                    return Err(EgressError::TooLarge(cap));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(EgressError::Timeout),
            Err(e) => return Err(EgressError::Http(e.without_url().to_string())),
        }
    }
}

/// A reqwest error as text without its URL (URLs may carry tokens), naming an egress
/// refusal as such.
pub fn describe(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<EgressError>() {
            return refused.to_string();
        }
        source = s.source();
    }
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let text = e.to_string();
    match e.url() {
        Some(url) => text.replace(url.as_str(), "[url]"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_without_an_allow_list() {
        let policy = EgressPolicy::default();
        for (addr, range) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("::ffff:10.1.2.3", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ] {
            assert_eq!(refused_range(ip(addr)), Some(range), "{addr}");
            assert!(!policy.ip_allowed(ip(addr)), "{addr}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused_range(ip(public)), None, "{public}");
            assert!(policy.ip_allowed(ip(public)), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_without_dns() {
        let policy = EgressPolicy::default();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://[fd00::1]/",
            "http://10.0.0.5/",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "HTTP://METADATA.GOOGLE.INTERNAL./",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(
                matches!(policy.check_url(url), Err(EgressError::Refused(_))),
                "{url}"
            );
        }
        for url in ["ftp://example.com/", "not a url", "file:///etc/passwd"] {
            assert_eq!(policy.check_url(url), Err(EgressError::BadUrl), "{url}");
        }
        assert!(policy.check_url("https://hooks.example.com/x").is_ok());
    }

    #[test]
    fn the_allow_list_admits_ips_cidrs_and_names() {
        let policy = EgressPolicy::new(&[
            "127.0.0.1".to_string(),
            "10.1.2.0/24".to_string(),
            "hooks.internal".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        assert!(policy.ip_allowed(ip("127.0.0.1")));
        assert!(policy.ip_allowed(ip("::ffff:127.0.0.1")));
        assert!(policy.ip_allowed(ip("::1")));
        assert!(!policy.ip_allowed(ip("127.0.0.2")));
        assert!(policy.ip_allowed(ip("10.1.2.200")));
        assert!(!policy.ip_allowed(ip("10.1.3.1")));
        assert!(!policy.ip_allowed(ip("169.254.169.254")));
        assert!(policy.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(policy.check_url("http://HOOKS.internal/x").is_ok());
        assert!(policy.check_url("http://localhost/").is_err());
        assert!(EgressPolicy::new(&["not a host!".to_string()]).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_dropped_at_connect_time() {
        use reqwest::dns::Resolve;
        let resolver = FilteringResolver {
            policy: Arc::new(EgressPolicy::default()),
        };
        // `localhost` is refused by name; a numeric name resolves (no DNS traffic) to a
        // refused address and is dropped after resolution.
        for name in ["localhost", "127.0.0.1"] {
            let resolved = resolver.resolve(name.parse().unwrap()).await;
            assert!(resolved.is_err(), "{name}");
        }
        let allowed = FilteringResolver {
            policy: Arc::new(EgressPolicy::new(&["127.0.0.1".to_string()]).unwrap()),
        };
        let addrs: Vec<_> = allowed
            .resolve("127.0.0.1".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
    }
}
