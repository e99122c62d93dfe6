//! The admin CLI's side of the wire: where the host is ([`Target`]: the flags, else
//! `$PLUGBOARD_ADMIN_URL` / `$PLUGBOARD_ADMIN_TOKEN`, else the host's config file) and one
//! request to it ([`Session`]: a current-thread runtime and a reqwest client). A [`Call`]
//! goes in, the answer's JSON (or an [`AdminError`] with its exit code) comes out. The token
//! only ever goes into the `Authorization` header, marked sensitive.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::tables::truncate;
use super::{AdminError, Body, Call, Connection, usage};
use crate::config::ServeConfig;

/// Where the admin API is when neither the flags, the environment nor a config say.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The API's path prefix, below the base URL.
const API_PREFIX: [&str; 2] = ["admin", "v1"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Generous: installing a plugin compiles it on the host.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a non-JSON error body is shown.
const BODY_EXCERPT: usize = 200;

/// The admin API's base URL and the bearer token.
pub(super) struct Target {
    pub(super) base: Url,
    pub(super) token: String,
}

impl Target {
    /// The flags, else the environment, else the config (loaded only when needed).
    pub(super) fn resolve(connection: &Connection) -> Result<Target, AdminError> {
        let url = connection
            .url
            .clone()
            .or_else(|| env("PLUGBOARD_ADMIN_URL"));
        let token = connection
            .token
            .clone()
            .or_else(|| env("PLUGBOARD_ADMIN_TOKEN"));
        let config = match url.is_none() || token.is_none() {
            true => load_config(connection.config.as_deref())?,
            false => None,
        };
        let url = url
            .or_else(|| config.as_ref().map(|c| listen_url(c.listen)))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let token = token
            .or_else(|| {
                let secret = config.as_ref()?.admin_token.as_ref()?;
                Some(secret.expose().to_string())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AdminError::Unauthorized(
                    "no admin token: pass --token, set PLUGBOARD_ADMIN_TOKEN, or set \
                     admin_token in the host's config"
                        .to_string(),
                )
            })?;
        Ok(Target {
            base: parse_base(&url)?,
            token,
        })
    }

    /// The full URL of `call`.
    pub(super) fn url(&self, call: &Call) -> Result<Url, AdminError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| usage(format!("--url {}: not a base URL", self.base)))?
            .pop_if_empty()
            .extend(API_PREFIX)
            .extend(&call.path);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        Ok(url)
    }
}

/// A set, non-empty environment variable.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `--config FILE`, else `$PLUGBOARD_CONFIG`, else `./plugboard.toml` if present, else none.
pub(super) fn load_config(explicit: Option<&Path>) -> Result<Option<ServeConfig>, AdminError> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| env("PLUGBOARD_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("plugboard.toml");
            local.is_file().then_some(local)
        });
    match path {
        Some(path) => ServeConfig::load(&path)
            .map(Some)
            .map_err(|e| usage(e.to_string())),
        None => Ok(None),
    }
}

/// Where a host listening on `listen` is reached from here: an unspecified address
/// (`0.0.0.0`, `[::]`) through the loopback.
pub(super) fn listen_url(mut listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        match listen {
            SocketAddr::V4(_) => listen.set_ip(Ipv4Addr::LOCALHOST.into()),
            SocketAddr::V6(_) => listen.set_ip(Ipv6Addr::LOCALHOST.into()),
        }
    }
    format!("http://{listen}")
}

pub(super) fn parse_base(url: &str) -> Result<Url, AdminError> {
    let parsed = Url::parse(url).map_err(|e| usage(format!("--url {url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(usage(format!("--url {url}: not an http(s) URL")));
    }
    Ok(parsed)
}

/// Sends `call` on a current-thread runtime of its own; the answer's JSON (`None` for an
/// empty body, like a 204).
pub(super) fn send(target: &Target, call: Call) -> Result<Option<Value>, AdminError> {
    Session::new()?.send(target, call)
}

/// A current-thread runtime and an HTTP client, for one command's requests.
pub(super) struct Session {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Session {
    pub(super) fn new() -> Result<Session, AdminError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AdminError::Failed(format!("cannot start the async runtime: {e}")))?;
        let client = runtime.block_on(async {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
        });
        let client =
            client.map_err(|e| AdminError::Failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Session { runtime, client })
    }

    /// The answer's JSON (`None` for an empty body, like a 204).
    pub(super) fn send(&self, target: &Target, call: Call) -> Result<Option<Value>, AdminError> {
        self.runtime.block_on(request(&self.client, target, call))
    }
}

pub(super) async fn request(
    client: &reqwest::Client,
    target: &Target,
    call: Call,
) -> Result<Option<Value>, AdminError> {
    // `bearer_auth` marks the header sensitive; reqwest's errors carry the URL, not headers.
    let builder = client
        .request(call.method.clone(), target.url(&call)?)
        .bearer_auth(&target.token);
    let builder = match call.body {
        Body::Empty => builder,
        Body::Json(value) => builder.json(&value),
        Body::Wasm(bytes) => builder
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes),
        Body::Csv(bytes) => builder
            .header(reqwest::header::CONTENT_TYPE, "text/csv")
            .body(bytes),
    };
    let response = builder.send().await.map_err(unreachable)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unreachable)?;
    match status.is_success() {
        true => success(status, &bytes),
        false => Err(api_error(status, &bytes)),
    }
}

/// A transport failure, with its causes (`Connection refused`, a timeout).
pub(super) fn unreachable(e: reqwest::Error) -> AdminError {
    let mut message = format!("cannot reach the host: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    AdminError::Unreachable(message)
}

pub(super) fn success(status: StatusCode, body: &[u8]) -> Result<Option<Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        AdminError::Unreachable(format!(
            "the host answered {status} with a body that is not JSON: {e}"
        ))
    })
}

/// A non-2xx answer: the API's `{"error": {"code", "message"}}`, else the status and a
/// piece of the body.
pub(super) fn api_error(status: StatusCode, body: &[u8]) -> AdminError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    let code = field("code").map_or_else(|| status.as_u16().to_string(), str::to_string);
    let message = field("message").map_or_else(|| body_excerpt(status, body), str::to_string);
    match status {
        StatusCode::UNAUTHORIZED => AdminError::Unauthorized(format!("{code}: {message}")),
        s if s.is_client_error() => AdminError::Refused { code, message },
        _ => AdminError::Unreachable(format!("{code}: {message}")),
    }
}

pub(super) fn body_excerpt(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.is_empty() {
        true => status.canonical_reason().unwrap_or("no reason").to_string(),
        false => truncate(text, BODY_EXCERPT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_error_decides_the_exit_code() {
        let body = br#"{"error":{"code":"not_found","message":"no endpoint nope"}}"#;
        let e = api_error(StatusCode::NOT_FOUND, body);
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (1, "not_found: no endpoint nope".into())
        );
        assert_eq!(api_error(StatusCode::UNAUTHORIZED, b"").exit_code(), 4);
        assert_eq!(api_error(StatusCode::BAD_GATEWAY, body).exit_code(), 3);
        assert_eq!(
            api_error(StatusCode::CONFLICT, b"busy").to_string(),
            "409: busy"
        );
    }

    #[test]
    fn urls_are_built_below_the_prefix_with_encoded_segments() {
        let target = Target {
            base: parse_base("http://h:1/base/").unwrap(),
            token: "t".into(),
        };
        let call = Call::get(&["endpoints", "a b/c", "conversations"])
            .with_query("limit", Some("5".into()));
        assert_eq!(
            target.url(&call).unwrap().as_str(),
            "http://h:1/base/admin/v1/endpoints/a%20b%2Fc/conversations?limit=5"
        );
        assert_eq!(parse_base("ftp://h").unwrap_err().exit_code(), 2);
        assert_eq!(
            listen_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(listen_url("[::]:9".parse().unwrap()), "http://[::1]:9");
    }
}
