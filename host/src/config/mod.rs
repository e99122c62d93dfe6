//! The configuration of `plugboard serve`: one TOML file with the server's settings
//! (`listen`, `data_dir`, logging, `[store]`, `[sender]`) and one `[[endpoints]]` table per
//! WhatsApp number served.
//!
//! Data flows in one direction: [`ServeConfig::load`] reads the file, deserialises it into
//! private `Raw*` structs that mirror the TOML exactly (unknown keys are errors, so a typo
//! cannot silently fall back to a default), then resolves them into the public types:
//! relative paths are joined to the config file's directory, `env:NAME` secrets are read
//! from the environment, defaults are filled in, and everything a running server would
//! otherwise trip over later is validated. The serving layer only ever sees a
//! [`ServeConfig`] that passed validation; it maps each endpoint into the pieces other
//! modules take ([`EndpointConfig::conversation_config`],
//! [`EndpointConfig::adapter_settings`]).
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` print `[redacted]`, so a
//! config can be logged whole; error messages name fields and variables, never values.
//!
//! - [`settings`]: the server-wide sections (`[store]`, `[sender]`, `[http]`, …).
//! - [`retry`]: a retry schedule (`[sender.retry]`, `[event_webhooks.retry]`).
//! - [`endpoint`]: one endpoint resolved ([`EndpointConfig`]) and its defaults.
//! - [`spec`]: one endpoint as written or posted ([`EndpointSpec`]), and its resolution.
//! - [`secret`]: [`Secret`] values and `env:NAME` references.
//! - [`demo`]: the configuration used without a file.
//!
//! Below the serving layer: this module names nothing of `serve`, `admin` or `cli`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::egress::EgressPolicy;

pub mod demo;
pub mod endpoint;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod spec;
#[cfg(test)]
mod tests;

pub use demo::{DEMO_PHONE_NUMBER_ID, DEMO_VERIFY_TOKEN};
pub use endpoint::{
    BUNDLED_PLUGIN, DEFAULT_CAMPAIGN_SHARE, DEFAULT_GRAPH_API_BASE, DEFAULT_GRAPH_API_VERSION,
    EndpointConfig, HandoverSettings, PluginSource, ReplyQuota, TemplateRef, TransformerConfig,
};
pub use retry::RetrySchedule;
pub use secret::Secret;
pub use settings::{
    EgressSettings, EventWebhookSettings, HttpSettings, LogFormat, MAX_CONNECTIONS,
    MIN_RETENTION_DAYS, SenderSettings, StoreSettings, Synchronous,
};
pub use spec::{EndpointSpec, SPEC_SECRETS};

/// Prefix of a secret value read from the environment: `access_token = "env:WA_TOKEN"`.
pub use crate::secretbox::ENV_REFERENCE as ENV_PREFIX;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The shortest admin token accepted (it guards every endpoint's credentials).
pub const MIN_ADMIN_TOKEN: usize = 16;

/// The whole `plugboard serve` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Where the store lives (resolved against the config file's directory).
    pub data_dir: PathBuf,
    /// The public base URL Meta reaches, e.g. `https://bot.example.com` (no trailing
    /// slash); used to print the callback URLs.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// Mask phone numbers and message texts in logs.
    pub mask_pii: bool,
    pub store: StoreSettings,
    pub sender: SenderSettings,
    pub event_webhooks: EventWebhookSettings,
    /// `[http]`: the edge's timeouts and connection cap.
    pub http: HttpSettings,
    /// `[egress] allow`, parsed (see [`crate::egress`]).
    pub egress: EgressPolicy,
    /// Flow files must be inside this directory (symlinks resolved); default: the config
    /// file's directory.
    pub flows_dir: PathBuf,
    /// Plugin and transformer `.wasm` files must be inside this directory; default: the
    /// config file's directory.
    pub plugins_dir: PathBuf,
    /// The bearer token of the admin API (`admin_token`, else `$PLUGBOARD_ADMIN_TOKEN`);
    /// without one the admin API answers 401 to everything.
    pub admin_token: Option<Secret>,
    /// The `[[endpoints]]` tables resolved and validated (a broken file fails at load).
    /// `Server::start` serves what the store holds after seeding it from
    /// `endpoint_specs`, which may differ (admin API changes); these are for the CLI.
    pub endpoints: Vec<EndpointConfig>,
    /// The `[[endpoints]]` tables as written (paths made absolute, secrets unresolved):
    /// what seeds the store's endpoint table (see `endpoints::registry`).
    pub endpoint_specs: Vec<EndpointSpec>,
    /// The key the store's secrets are sealed with ([`crate::secretbox`]). Never in the
    /// file: `plugboard serve` reads it from `PLUGBOARD_SECRET_KEY`; `None` stores them in
    /// clear (and refuses to start on a store holding encrypted ones).
    pub secret_key: Option<crate::secretbox::SecretKey>,
}

/// Why a config could not be loaded. Messages name the file and the field, never a secret
/// value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl ServeConfig {
    /// Reads, parses, resolves and validates the config file at `path`; relative paths in it
    /// are relative to its directory.
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Self::parse(&text, base_dir, path)
    }

    /// [`ServeConfig::load`] for text already in memory; relative paths are joined to
    /// `base_dir`. Errors name the file as `<inline>`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<ServeConfig, ConfigError> {
        Self::parse(text, base_dir, Path::new("<inline>"))
    }
    /// The endpoint with this id.
    pub fn endpoint(&self, id: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// Checks everything [`ServeConfig::load`] checks after resolving (for configs built in
    /// code, like [`ServeConfig::demo`]); the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.public_url {
            check_http_url(url, "public_url")?;
        }
        if self.store.retention_days < MIN_RETENTION_DAYS {
            return Err(format!(
                "store.retention_days must be at least {MIN_RETENTION_DAYS} (Meta redelivers \
                 webhooks for 7 days), got {}",
                self.store.retention_days
            ));
        }
        if self.store.batch_max == 0 {
            return Err("store.batch_max must be greater than 0".to_string());
        }
        if self.store.inbox_queue == 0 {
            return Err("store.inbox_queue must be greater than 0".to_string());
        }
        self.sender.retry.validate()?;
        self.event_webhooks
            .retry
            .validate()
            .map_err(|e| e.replacen("sender.retry", "event_webhooks.retry", 1))?;
        if self.event_webhooks.request_timeout_ms == 0 {
            return Err("event_webhooks.request_timeout_ms must be greater than 0".to_string());
        }
        if self.sender.request_timeout_ms == 0 {
            return Err("sender.request_timeout_ms must be greater than 0".to_string());
        }
        if self.sender.workers == 0 {
            return Err("sender.workers must be greater than 0".to_string());
        }
        for (value, field) in [
            (
                self.http.header_read_timeout_ms,
                "http.header_read_timeout_ms",
            ),
            (self.http.idle_timeout_ms, "http.idle_timeout_ms"),
            (self.http.body_timeout_ms, "http.body_timeout_ms"),
        ] {
            if value == 0 {
                return Err(format!("{field} must be greater than 0"));
            }
        }
        if self.http.max_connections == 0 || self.http.max_connections > MAX_CONNECTIONS {
            return Err(format!(
                "http.max_connections must be from 1 to {MAX_CONNECTIONS}, got {}",
                self.http.max_connections
            ));
        }
        let mut seen = HashSet::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}]");
            endpoint.validate(&at)?;
            endpoint.check_egress(&self.egress, &at)?;
            if !seen.insert(endpoint.id.as_str()) {
                return Err(format!(
                    "{at}.id {:?} is used by an earlier endpoint; ids must be unique",
                    endpoint.id
                ));
            }
        }
        Ok(())
    }

    fn parse(text: &str, base_dir: &Path, origin: &Path) -> Result<ServeConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message,
        };
        let config = raw.resolve(base_dir).map_err(invalid)?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }
}

/// The TOML file as written; see the public types for the meaning of each field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default = "yes")]
    mask_pii: bool,
    #[serde(default)]
    store: StoreSettings,
    #[serde(default)]
    sender: SenderSettings,
    #[serde(default)]
    event_webhooks: EventWebhookSettings,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    egress: EgressSettings,
    flows_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    admin_token: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
}

fn yes() -> bool {
    true
}

impl RawConfig {
    fn resolve(self, base_dir: &Path) -> Result<ServeConfig, String> {
        let listen = match self.listen {
            None => default_listen(),
            Some(text) => text.parse().map_err(|_| {
                format!("listen must be an address like \"{DEFAULT_LISTEN}\", got {text:?}")
            })?,
        };
        let endpoint_specs: Vec<EndpointSpec> = self
            .endpoints
            .into_iter()
            .map(|spec| spec.absolute(base_dir))
            .collect();
        let endpoints = endpoint_specs
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.resolve(base_dir, &format!("endpoints[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let admin_token = match self.admin_token {
            Some(value) => Some(secret::resolve_secret(value, "admin_token")?),
            None => std::env::var("PLUGBOARD_ADMIN_TOKEN")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new),
        };
        if admin_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < MIN_ADMIN_TOKEN)
        {
            return Err(format!(
                "admin_token must be at least {MIN_ADMIN_TOKEN} characters"
            ));
        }
        Ok(ServeConfig {
            listen,
            data_dir: base_dir.join(self.data_dir.unwrap_or_else(|| PathBuf::from("data"))),
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_string()),
            log_format: self.log_format,
            mask_pii: self.mask_pii,
            store: self.store,
            sender: self.sender,
            event_webhooks: self.event_webhooks,
            http: self.http,
            egress: EgressPolicy::new(&self.egress.allow)?,
            flows_dir: self
                .flows_dir
                .map_or_else(|| base_dir.to_path_buf(), |d| base_dir.join(d)),
            plugins_dir: self
                .plugins_dir
                .map_or_else(|| base_dir.to_path_buf(), |d| base_dir.join(d)),
            admin_token,
            endpoints,
            endpoint_specs,
            secret_key: None,
        })
    }
}

pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// `[a-z0-9_-]{1,64}`: endpoint ids and plugin names.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An absolute `http` or `https` URL with a host.
fn check_http_url(url: &str, field: &str) -> Result<(), String> {
    let ok = reqwest::Url::parse(url)
        .map(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!("{field} must be an http(s) URL, got {url:?}"))
    }
}

/// The parser's message with its position, without the source excerpt `toml` would print
/// and without the offending value (either could be a literal secret, e.g. an unquoted
/// numeric `verify_token`).
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = crate::redact::redact_values(e.message().trim_end());
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
