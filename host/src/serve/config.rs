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

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::retry::RetrySchedule;
use crate::conversation::{ConversationConfig, HandoverConfig};
use crate::egress::EgressPolicy;
/// SQLite's `synchronous` pragma (`"full"` | `"normal"`), as the store takes it.
pub use crate::store::Synchronous;
use crate::transform::FailurePolicy;

/// Prefix of a secret value read from the environment: `access_token = "env:WA_TOKEN"`.
pub use crate::secretbox::ENV_REFERENCE as ENV_PREFIX;
/// Name of the adapter compiled into the binary.
pub const BUNDLED_PLUGIN: &str = "whatsapp";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_GRAPH_API_BASE: &str = "https://graph.facebook.com";
pub const DEFAULT_GRAPH_API_VERSION: &str = "v23.0";
/// Meta redelivers an unacknowledged webhook for up to 7 days; the dedupe keys must live at
/// least that long or a late redelivery would be handled twice.
pub const MIN_RETENTION_DAYS: u32 = 7;
/// The verify token `plugboard serve --demo` uses without `PLUGBOARD_VERIFY_TOKEN`.
pub const DEMO_VERIFY_TOKEN: &str = "plugboard-demo";
/// The most connections `[http] max_connections` may allow (a semaphore's limit).
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// The shortest admin token accepted (it guards every endpoint's credentials).
pub const MIN_ADMIN_TOKEN: usize = 16;
/// The phone number id of the demo endpoint: the one of Meta's sample payloads and of the
/// adapter's fixtures (`adapter/tests/fixtures/inbound/`), so the README's curl of a fixture
/// reaches the demo flow instead of being stored as another number's (unowned).
pub const DEMO_PHONE_NUMBER_ID: &str = "106540352242922";

/// A secret setting (token, app secret). `Debug` and `Display` print `[redacted]`;
/// [`Secret::expose`] is the only way to the value. Deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for passing into a plugin or computing a MAC. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[store]`: the embedded durable store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `"full"`: fsync at every commit, an acknowledged webhook survives a power cut (the
    /// default); `"normal"`: fsync at checkpoints only.
    pub synchronous: Synchronous,
    /// Most writes the writer thread commits in one transaction.
    pub batch_max: usize,
    /// Days handled rows (inbox, events, sent outbox) are kept; at least 7.
    pub retention_days: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            synchronous: Synchronous::Full,
            batch_max: 256,
            retention_days: MIN_RETENTION_DAYS,
        }
    }
}

/// `[sender]`: the outbound sender shared by all endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderSettings {
    /// `[sender.retry]`.
    pub retry: RetrySchedule,
    /// Timeout of one Graph API request.
    pub request_timeout_ms: u64,
    /// Sends in flight at once, across endpoints.
    pub workers: usize,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            retry: RetrySchedule::default(),
            request_timeout_ms: 10_000,
            workers: 16,
        }
    }
}

/// `[event_webhooks]`: delivery of the outbound event webhooks (admin API).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventWebhookSettings {
    /// `[event_webhooks.retry]`: waits between attempts; exhausted, a delivery is dead.
    pub retry: RetrySchedule,
    /// Timeout of one delivery.
    pub request_timeout_ms: u64,
}

impl Default for EventWebhookSettings {
    fn default() -> Self {
        EventWebhookSettings {
            // About a day: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h.
            retry: RetrySchedule {
                delays_ms: vec![
                    5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000,
                    43_200_000,
                ],
                jitter: 0.2,
                ..RetrySchedule::default()
            },
            request_timeout_ms: 10_000,
        }
    }
}

/// `[http]`: the HTTP edge's connection limits (see `serve::http`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// A request's head (request line and headers) must arrive within this, counted from
    /// its first byte (or from accept, for a new connection).
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle_timeout_ms: u64,
    /// A request's whole body must arrive within this, counted from its head; else 408.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait (unaccepted) until one closes.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

/// `[egress]`: internal destinations URLs from config, admin input or flows may reach.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// IPs (`127.0.0.1`), CIDRs (`10.1.2.0/24`) and host names (`hooks.internal`).
    pub allow: Vec<String>,
}

/// Which adapter component serves an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PluginSource {
    /// The WhatsApp adapter embedded in the binary (`plugin = "whatsapp"`, the default).
    #[default]
    Bundled,
    /// A `.wasm` component on disk (resolved against the config file's directory).
    Path(PathBuf),
    /// A plugin installed through the admin API (`plugin = "<name>"`), kept in the store.
    Installed(String),
}

/// A template sent instead of a free-form message when the 24-hour customer service window
/// is closed (free-form messages are refused then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// The approved template's name.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// Values for the body's `{{1}}`, `{{2}}`, … in order.
    #[serde(default)]
    pub body_params: Vec<String>,
    /// Or values by placeholder, as in a campaign upload: `1`, `body.2`, `first_name`,
    /// `header`, `button.0` (needs the template in the endpoint's synced account).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub values: std::collections::BTreeMap<String, String>,
}

/// `[endpoints.handover]`: overrides of [`HandoverConfig::default`]; absent keys keep it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoverSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_for_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// `[endpoints.reply_quota]`: a monthly cap on bot replies (as chatbot plans have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyQuota {
    /// Bot replies per calendar month (UTC); read receipts, agent and campaign messages
    /// do not count.
    pub monthly: u64,
    /// Sent once per user and month when the cap is reached, instead of the bot's replies.
    #[serde(default = "default_quota_message")]
    pub message: String,
}

fn default_quota_message() -> String {
    "We have reached our message limit for this month. A person will get back to you.".into()
}

/// Share of the number's throughput campaigns may use, in percent: the rest stays free for
/// conversations (Meta counts inbound and outbound messages against the same limit).
pub const DEFAULT_CAMPAIGN_SHARE: u8 = 80;

/// `[[endpoints.transformers]]`: a transformer hook component, run in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    /// The `.wasm` component (resolved against the config file's directory).
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// One `[[endpoints]]`: a WhatsApp number, its flow and how it is served.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// `[a-z0-9_-]{1,64}`, unique; the webhook URL is `/webhooks/{id}`.
    pub id: String,
    /// A disabled endpoint acknowledges and stores webhooks but does not reply.
    pub enabled: bool,
    pub plugin: PluginSource,
    /// The flow file (resolved against the config file's directory).
    pub flow: PathBuf,
    pub app_id: Option<String>,
    pub access_token: Option<Secret>,
    pub phone_number_id: String,
    pub waba_id: Option<String>,
    /// The number users see (`+1 555 0100`), for the `wa.me` link and QR code; learned by
    /// `verify` when not configured.
    pub display_phone_number: Option<String>,
    /// Echoed by Meta in the subscription handshake.
    pub verify_token: Secret,
    /// Key of the `X-Hub-Signature-256` HMAC.
    pub app_secret: Option<Secret>,
    /// Accept unsigned webhooks (local testing only).
    pub insecure_skip_signature: bool,
    /// No trailing slash.
    pub graph_api_base: String,
    pub graph_api_version: String,
    /// Minimum gap between two messages to one user, enforced by the sender.
    pub message_delay_ms: u64,
    /// Send a typing indicator before a delayed message (sender).
    pub typing_indicator: bool,
    /// Send a read receipt for each inbound message.
    pub mark_read: bool,
    /// Inactivity after which a session restarts; 0 = never.
    pub session_expiry_secs: u64,
    pub history_turns: usize,
    /// Larger webhook bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Messages per second for this number.
    pub throughput_per_second: u32,
    /// Messages to one user allowed in a burst.
    pub pair_burst: u32,
    /// Sustained gap between messages to one user once the burst is used.
    pub pair_interval_ms: u64,
    pub window_template: Option<TemplateRef>,
    pub handover: HandoverSettings,
    pub transformers: Vec<TransformerConfig>,
    pub transformer_policy: FailurePolicy,
    /// Optional monthly cap on bot replies.
    pub reply_quota: Option<ReplyQuota>,
    /// Percent of `throughput_per_second` campaigns may use (1..=100).
    pub campaign_share: u8,
}

impl EndpointConfig {
    /// The conversation runtime's settings for this endpoint.
    ///
    /// `message_delay` is always zero and `typing_indicator` false here: under `serve` the
    /// conversation worker only commits outbox rows, and the sender paces deliveries
    /// (`message_delay_ms`, the pair rate limit) and sends the typing indicator when it
    /// actually waits. Delaying in the worker too would double the wait and hold the
    /// conversation's lock while sleeping.
    pub fn conversation_config(&self) -> ConversationConfig {
        let defaults = HandoverConfig::default();
        let h = &self.handover;
        ConversationConfig {
            endpoint: self.id.clone(),
            session_expiry: Duration::from_secs(self.session_expiry_secs),
            history_turns: self.history_turns,
            message_delay: Duration::ZERO,
            typing_indicator: false,
            handover: HandoverConfig {
                keywords: h.keywords.clone().unwrap_or(defaults.keywords),
                confirmation: h.confirmation.clone().unwrap_or(defaults.confirmation),
                mute_for: h
                    .mute_for_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.mute_for),
                webhook_url: h.webhook_url.clone().or(defaults.webhook_url),
            },
        }
    }

    /// The adapter's settings by name (`app_id`, `access_token`, `phone_number_id`,
    /// `waba_id`, `verify_token`, `app_secret`); absent optional ones are left out.
    /// Secrets are exposed: only for passing into the plugin, never log this.
    pub fn adapter_settings(&self) -> Vec<(String, String)> {
        let mut settings = Vec::with_capacity(6);
        let mut push = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                settings.push((name.to_string(), value.to_string()));
            }
        };
        push("app_id", self.app_id.as_deref());
        push(
            "access_token",
            self.access_token.as_ref().map(Secret::expose),
        );
        push("phone_number_id", Some(&self.phone_number_id));
        push("waba_id", self.waba_id.as_deref());
        push("verify_token", Some(self.verify_token.expose()));
        push("app_secret", self.app_secret.as_ref().map(Secret::expose));
        settings
    }

    /// The URLs of this endpoint the egress policy governs (the handover webhook), checked
    /// as far as they can be without DNS; the message names the field.
    pub fn check_egress(&self, policy: &EgressPolicy, at: &str) -> Result<(), String> {
        if let Some(url) = &self.handover.webhook_url {
            policy
                .check_url(url)
                .map_err(|e| format!("{at}.handover.webhook_url: {e}"))?;
        }
        Ok(())
    }

    /// Whether webhooks must carry a valid signature.
    pub fn needs_signature(&self) -> bool {
        !self.insecure_skip_signature
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "{at}.id {:?} must be 1 to 64 characters of a-z, 0-9, '_' or '-'",
                self.id
            ));
        }
        if self.phone_number_id.is_empty()
            || !self
                .phone_number_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "{at}.phone_number_id must be a non-empty plain id (letters and digits), got {:?}",
                self.phone_number_id
            ));
        }
        if self.verify_token.is_empty() {
            return Err(format!("{at}.verify_token must not be empty"));
        }
        match &self.app_secret {
            Some(secret) if secret.is_empty() => {
                return Err(format!("{at}.app_secret must not be empty"));
            }
            None if !self.insecure_skip_signature => {
                return Err(format!(
                    "{at}.app_secret is missing: set app_secret (the Meta app secret that signs \
                     webhooks) or, for local testing only, insecure_skip_signature = true"
                ));
            }
            _ => {}
        }
        if self.access_token.as_ref().is_some_and(Secret::is_empty) {
            return Err(format!("{at}.access_token must not be empty"));
        }
        check_http_url(&self.graph_api_base, &format!("{at}.graph_api_base"))?;
        if self.graph_api_version.is_empty()
            || self
                .graph_api_version
                .chars()
                .any(|c| c == '/' || c.is_whitespace())
        {
            return Err(format!(
                "{at}.graph_api_version must be a version like \"{DEFAULT_GRAPH_API_VERSION}\", got {:?}",
                self.graph_api_version
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(format!("{at}.max_body_bytes must be greater than 0"));
        }
        if !(1..=100).contains(&self.campaign_share) {
            return Err(format!(
                "{at}.campaign_share must be a percentage from 1 to 100, got {}",
                self.campaign_share
            ));
        }
        if let Some(q) = &self.reply_quota
            && q.message.trim().is_empty()
        {
            return Err(format!("{at}.reply_quota.message must not be empty"));
        }
        if self.throughput_per_second == 0 {
            return Err(format!("{at}.throughput_per_second must be greater than 0"));
        }
        if self.pair_burst == 0 {
            return Err(format!("{at}.pair_burst must be greater than 0"));
        }
        if let Some(t) = &self.window_template {
            if t.name.trim().is_empty() {
                return Err(format!("{at}.window_template.name must not be empty"));
            }
            if t.language.trim().is_empty() {
                return Err(format!("{at}.window_template.language must not be empty"));
            }
        }
        if let Some(url) = &self.handover.webhook_url {
            check_http_url(url, &format!("{at}.handover.webhook_url"))?;
        }
        if let Some(keywords) = &self.handover.keywords
            && keywords.iter().any(|k| k.trim().is_empty())
        {
            return Err(format!(
                "{at}.handover.keywords must not contain empty phrases"
            ));
        }
        Ok(())
    }
}

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
    /// what seeds the store's endpoint table (see `serve::registry`).
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

    /// The configuration of `plugboard serve --demo`: one endpoint `demo` serving
    /// `<repo_root>/flows/support.json`, the store in `<repo_root>/data`. Secrets come from
    /// `PLUGBOARD_VERIFY_TOKEN` (else [`DEMO_VERIFY_TOKEN`]), `PLUGBOARD_APP_SECRET` (else
    /// none, and signatures are not checked) and `PLUGBOARD_ACCESS_TOKEN`; the Graph API base
    /// from `PLUGBOARD_GRAPH_API_BASE` (e.g. a local mock).
    pub fn demo(repo_root: &Path) -> ServeConfig {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
        // Secrets stay references: the store keeps `env:NAME`, never the value.
        let reference = |name: &str| set(name).then(|| format!("{ENV_PREFIX}{name}"));
        let root = std::path::absolute(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
        let spec = EndpointSpec {
            id: "demo".to_string(),
            flow: root.join("flows").join("support.json"),
            phone_number_id: DEMO_PHONE_NUMBER_ID.to_string(),
            insecure_skip_signature: Some(!set("PLUGBOARD_APP_SECRET")),
            app_secret: reference("PLUGBOARD_APP_SECRET"),
            verify_token: reference("PLUGBOARD_VERIFY_TOKEN")
                .unwrap_or_else(|| DEMO_VERIFY_TOKEN.to_string()),
            access_token: reference("PLUGBOARD_ACCESS_TOKEN"),
            graph_api_base: std::env::var("PLUGBOARD_GRAPH_API_BASE")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|base| base.trim_end_matches('/').to_string()),
            ..EndpointSpec::default()
        };
        // Built from constants and set variables: it resolves (a test keeps it so).
        let endpoints = spec.resolve(&root, "demo").into_iter().collect();
        ServeConfig {
            listen: default_listen(),
            data_dir: root.join("data"),
            public_url: None,
            log_format: LogFormat::Text,
            mask_pii: true,
            store: StoreSettings::default(),
            sender: SenderSettings::default(),
            event_webhooks: EventWebhookSettings::default(),
            http: HttpSettings::default(),
            egress: EgressPolicy::default(),
            // Without a config file, flows and hooks come from the repository's flows/.
            flows_dir: root.join("flows"),
            plugins_dir: root.join("flows"),
            admin_token: std::env::var("PLUGBOARD_ADMIN_TOKEN")
                .ok()
                .filter(|v| v.len() >= MIN_ADMIN_TOKEN)
                .map(Secret),
            endpoints,
            endpoint_specs: vec![spec],
            secret_key: None,
        }
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

/// One `[[endpoints]]` as written (TOML) or posted to the admin API (JSON): secrets still
/// literal or `env:NAME`, paths as given. [`EndpointSpec::resolve`] turns it into an
/// [`EndpointConfig`]; the store keeps specs, so an `env:NAME` secret is read again at every
/// start and never copied into the database.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `[a-z0-9_-]{1,64}`; the webhook URL is `/webhooks/{id}`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `"whatsapp"` (bundled, the default), an installed plugin's name, or a `.wasm` path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The flow file.
    #[schema(value_type = String, min_length = 1)]
    pub flow: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Secret (literal or `env:NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9]+$")]
    pub phone_number_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waba_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    /// Secret (literal or `env:NAME`).
    #[schema(min_length = 1)]
    pub verify_token: String,
    /// Secret (literal or `env:NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_signature: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_api_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_indicator: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_read: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expiry_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_turns: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_template: Option<TemplateRef>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub handover: HandoverSettings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transformers: Vec<TransformerConfig>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub transformer_policy: FailurePolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_quota: Option<ReplyQuota>,
    /// Percent of the throughput campaigns may use (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub campaign_share: Option<u8>,
}

impl fmt::Debug for EndpointSpec {
    /// The spec with its secrets redacted (`env:NAME` references are shown: the name is
    /// not the secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: Option<&str>| {
            value.map(|v| {
                if v.starts_with(ENV_PREFIX) {
                    v.to_string()
                } else {
                    "[redacted]".to_string()
                }
            })
        };
        f.debug_struct("EndpointSpec")
            .field("id", &self.id)
            .field("plugin", &self.plugin)
            .field("flow", &self.flow)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &shown(self.access_token.as_deref()))
            .field("verify_token", &shown(Some(&self.verify_token)))
            .field("app_secret", &shown(self.app_secret.as_deref()))
            .finish_non_exhaustive()
    }
}

/// The names of the secret fields of an [`EndpointSpec`] (the leaf [`crate::secretbox`]
/// owns the list: the store seals these).
pub use crate::secretbox::SPEC_SECRETS;

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
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
            Some(value) => Some(resolve_secret(value, "admin_token")?),
            None => std::env::var("PLUGBOARD_ADMIN_TOKEN")
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret),
        };
        if admin_token
            .as_ref()
            .is_some_and(|t| t.0.len() < MIN_ADMIN_TOKEN)
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

impl EndpointSpec {
    /// The spec with its paths (flow, plugin, transformers) joined to `base_dir`, so it
    /// means the same wherever it is read later (the store keeps it).
    pub fn absolute(self, base_dir: &Path) -> EndpointSpec {
        self.absolute_in(base_dir, base_dir)
    }

    /// Relative paths joined to the directories they must lie in: the flow to `flows_dir`,
    /// plugin and transformer components to `plugins_dir` (what the admin API does: a
    /// designer names `support.json`, not a path from the host's working directory).
    pub fn absolute_in(mut self, flows_dir: &Path, plugins_dir: &Path) -> EndpointSpec {
        self.flow = flows_dir.join(&self.flow);
        if let Some(plugin) = &self.plugin
            && plugin.ends_with(".wasm")
        {
            self.plugin = Some(plugins_dir.join(plugin).display().to_string());
        }
        for t in &mut self.transformers {
            t.path = plugins_dir.join(&t.path);
        }
        self
    }

    /// Resolves and validates the spec: defaults filled in, `env:NAME` secrets read,
    /// relative paths joined to `base_dir`. Errors name the field as `{at}.field`.
    pub fn resolve(&self, base_dir: &Path, at: &str) -> Result<EndpointConfig, String> {
        let config = self.clone().resolve_unchecked(base_dir, at)?;
        config.validate(at)?;
        Ok(config)
    }

    fn resolve_unchecked(self, base_dir: &Path, at: &str) -> Result<EndpointConfig, String> {
        let plugin = match self.plugin.as_deref() {
            None | Some(BUNDLED_PLUGIN) => PluginSource::Bundled,
            Some(path) if path.ends_with(".wasm") => PluginSource::Path(base_dir.join(path)),
            Some(name) if valid_id(name) => PluginSource::Installed(name.to_string()),
            Some(other) => {
                return Err(format!(
                    "{at}.plugin must be \"{BUNDLED_PLUGIN}\", an installed plugin's name or the \
                     path of a .wasm component, got {other:?}"
                ));
            }
        };
        let secret = |value: Option<String>, field: &str| -> Result<Option<Secret>, String> {
            value
                .map(|v| resolve_secret(v, &format!("{at}.{field}")))
                .transpose()
        };
        let d = default_endpoint(self.id, base_dir.join(self.flow), self.phone_number_id);
        Ok(EndpointConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            plugin,
            app_id: self.app_id,
            access_token: secret(self.access_token, "access_token")?,
            waba_id: self.waba_id,
            display_phone_number: self.display_phone_number,
            verify_token: resolve_secret(self.verify_token, &format!("{at}.verify_token"))?,
            app_secret: secret(self.app_secret, "app_secret")?,
            insecure_skip_signature: self
                .insecure_skip_signature
                .unwrap_or(d.insecure_skip_signature),
            graph_api_base: self
                .graph_api_base
                .map(|base| base.trim_end_matches('/').to_string())
                .unwrap_or(d.graph_api_base),
            graph_api_version: self.graph_api_version.unwrap_or(d.graph_api_version),
            message_delay_ms: self.message_delay_ms.unwrap_or(d.message_delay_ms),
            typing_indicator: self.typing_indicator.unwrap_or(d.typing_indicator),
            mark_read: self.mark_read.unwrap_or(d.mark_read),
            session_expiry_secs: self.session_expiry_secs.unwrap_or(d.session_expiry_secs),
            history_turns: self.history_turns.unwrap_or(d.history_turns),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            throughput_per_second: self
                .throughput_per_second
                .unwrap_or(d.throughput_per_second),
            pair_burst: self.pair_burst.unwrap_or(d.pair_burst),
            pair_interval_ms: self.pair_interval_ms.unwrap_or(d.pair_interval_ms),
            window_template: self.window_template,
            handover: self.handover,
            transformers: self
                .transformers
                .into_iter()
                .map(|t| TransformerConfig {
                    path: base_dir.join(t.path),
                })
                .collect(),
            transformer_policy: self.transformer_policy,
            reply_quota: self.reply_quota,
            campaign_share: self.campaign_share.unwrap_or(d.campaign_share),
            ..d
        })
    }
}

/// An endpoint with every default filled in; the one source of the defaults.
fn default_endpoint(id: String, flow: PathBuf, phone_number_id: String) -> EndpointConfig {
    EndpointConfig {
        id,
        enabled: true,
        plugin: PluginSource::Bundled,
        flow,
        app_id: None,
        access_token: None,
        phone_number_id,
        waba_id: None,
        display_phone_number: None,
        verify_token: Secret::new(String::new()),
        app_secret: None,
        insecure_skip_signature: false,
        graph_api_base: DEFAULT_GRAPH_API_BASE.to_string(),
        graph_api_version: DEFAULT_GRAPH_API_VERSION.to_string(),
        message_delay_ms: 0,
        typing_indicator: false,
        mark_read: true,
        session_expiry_secs: 30 * 60,
        history_turns: crate::flow::model::DEFAULT_HISTORY_TURNS,
        max_body_bytes: 4 * 1024 * 1024,
        // Meta's default throughput for a business number.
        throughput_per_second: 80,
        // Meta's pair rate limit: about one message every 6 s to one user, bursts of 45.
        pair_burst: 45,
        pair_interval_ms: 6_000,
        window_template: None,
        handover: HandoverSettings::default(),
        transformers: Vec::new(),
        transformer_policy: FailurePolicy::Continue,
        reply_quota: None,
        campaign_share: DEFAULT_CAMPAIGN_SHARE,
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// A literal secret, or `env:NAME` read from the environment now. Errors name the field and
/// the variable, never a value.
fn resolve_secret(value: String, field: &str) -> Result<Secret, String> {
    let Some(name) = value.strip_prefix(ENV_PREFIX) else {
        return Ok(Secret(value));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "{field} is \"{ENV_PREFIX}\" without a variable name"
        ));
    }
    match std::env::var(name) {
        Ok(v) => Ok(Secret(v)),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "{field} reads environment variable {name}, which is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{field} reads environment variable {name}, which is not valid UTF-8"
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[endpoints]]
id = "main"
flow = "flows/support.json"
phone_number_id = "106540352242922"
verify_token = "vt-literal"
app_secret = "as-literal"
"#;

    fn base() -> &'static Path {
        Path::new("/srv/plugboard")
    }

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::from_toml(text, base())
    }

    fn invalid_message(text: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid { message, .. }) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(c.data_dir, base().join("data"));
        assert_eq!(c.public_url, None);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.mask_pii);
        assert_eq!(c.store, StoreSettings::default());
        assert_eq!(c.store.synchronous, Synchronous::Full);
        assert_eq!(c.store.batch_max, 256);
        assert_eq!(c.store.retention_days, 7);
        assert_eq!(c.sender.retry, RetrySchedule::default());
        assert_eq!(c.sender.request_timeout_ms, 10_000);
        assert_eq!(c.sender.workers, 16);

        let e = c.endpoint("main").unwrap();
        assert!(e.enabled);
        assert_eq!(e.plugin, PluginSource::Bundled);
        assert_eq!(e.flow, base().join("flows/support.json"));
        assert_eq!(e.access_token, None);
        assert_eq!(e.verify_token.expose(), "vt-literal");
        assert_eq!(e.app_secret.as_ref().unwrap().expose(), "as-literal");
        assert!(!e.insecure_skip_signature);
        assert!(e.needs_signature());
        assert_eq!(e.graph_api_base, "https://graph.facebook.com");
        assert_eq!(e.graph_api_version, "v23.0");
        assert_eq!(e.message_delay_ms, 0);
        assert!(!e.typing_indicator);
        assert!(e.mark_read);
        assert_eq!(e.session_expiry_secs, 1800);
        assert_eq!(e.history_turns, crate::flow::model::DEFAULT_HISTORY_TURNS);
        assert_eq!(e.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(e.throughput_per_second, 80);
        assert_eq!(e.pair_burst, 45);
        assert_eq!(e.pair_interval_ms, 6000);
        assert_eq!(e.window_template, None);
        assert_eq!(e.handover, HandoverSettings::default());
        assert!(e.transformers.is_empty());
        assert_eq!(e.transformer_policy, FailurePolicy::Continue);
        assert!(c.endpoint("other").is_none());
    }

    #[test]
    fn http_egress_and_file_roots() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.http, HttpSettings::default());
        assert_eq!(c.http.header_read_timeout_ms, 10_000);
        assert_eq!(c.http.idle_timeout_ms, 60_000);
        assert_eq!(c.http.body_timeout_ms, 30_000);
        assert_eq!(c.http.max_connections, 1024);
        assert_eq!(c.egress, EgressPolicy::default());
        assert_eq!(c.flows_dir, base());
        assert_eq!(c.plugins_dir, base());
        let text = format!(
            "flows_dir = \"flows\"\nplugins_dir = \"/opt/plugins\"\n\
             [http]\nheader_read_timeout_ms = 1\nidle_timeout_ms = 2\nbody_timeout_ms = 3\n\
             max_connections = 4\n[egress]\nallow = [\"127.0.0.1\", \"10.1.2.0/24\", \"hooks.internal\"]\n\
             {MINIMAL}"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.flows_dir, base().join("flows"));
        assert_eq!(c.plugins_dir, PathBuf::from("/opt/plugins"));
        assert_eq!(
            (
                c.http.header_read_timeout_ms,
                c.http.idle_timeout_ms,
                c.http.body_timeout_ms,
                c.http.max_connections
            ),
            (1, 2, 3, 4)
        );
        assert!(c.egress.ip_allowed("10.1.2.3".parse().unwrap()));
        for (prefix, field) in [
            ("[http]\nbody_timeout_ms = 0\n", "http.body_timeout_ms"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[egress]\nallow = [\"not a host\"]\n", "egress.allow"),
        ] {
            let message = invalid_message(&format!("{prefix}{MINIMAL}"));
            assert!(message.contains(field), "{field}: {message}");
        }
        // A handover webhook to an internal address needs the allow list.
        let hook =
            format!("{MINIMAL}[endpoints.handover]\nwebhook_url = \"http://127.0.0.1:9/h\"\n");
        let message = invalid_message(&hook);
        assert!(message.contains("handover.webhook_url"), "{message}");
        parse(&format!("[egress]\nallow = [\"127.0.0.1\"]\n{hook}")).unwrap();
    }

    #[test]
    fn empty_file_has_no_endpoints() {
        let c = parse("").unwrap();
        assert!(c.endpoints.is_empty());
    }

    #[test]
    fn every_field_is_read() {
        let text = r#"
listen = "0.0.0.0:9000"
data_dir = "/var/lib/plugboard"
public_url = "https://bot.example.com/"
log_format = "json"
mask_pii = false

[store]
synchronous = "normal"
batch_max = 64
retention_days = 14

[sender]
request_timeout_ms = 5000
workers = 4

[sender.retry]
delays_ms = [10, 20]
jitter = 0.0

[[endpoints]]
id = "shop-eu_1"
enabled = false
plugin = "plugins/custom.wasm"
flow = "f.json"
app_id = "123"
access_token = "tok"
phone_number_id = "555"
waba_id = "777"
verify_token = "vt"
insecure_skip_signature = true
graph_api_base = "http://127.0.0.1:9999/"
graph_api_version = "v24.0"
message_delay_ms = 1500
typing_indicator = true
mark_read = false
session_expiry_secs = 0
history_turns = 3
max_body_bytes = 1024
throughput_per_second = 10
pair_burst = 2
pair_interval_ms = 100
window_template = { name = "reengage", language = "en_US", body_params = ["there"] }
transformer_policy = "abort"

[endpoints.handover]
keywords = ["agent"]
confirmation = "One moment."
mute_for_secs = 60
webhook_url = "https://crm.example.com/hook"

[[endpoints.transformers]]
path = "hooks/a.wasm"

[[endpoints.transformers]]
path = "/abs/b.wasm"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/plugboard"));
        assert_eq!(c.public_url.as_deref(), Some("https://bot.example.com"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.mask_pii);
        assert_eq!(c.store.synchronous, Synchronous::Normal);
        assert_eq!(c.store.batch_max, 64);
        assert_eq!(c.store.retention_days, 14);
        assert_eq!(c.sender.request_timeout_ms, 5000);
        assert_eq!(c.sender.workers, 4);
        assert_eq!(c.sender.retry.delays_ms, vec![10, 20]);
        assert_eq!(c.sender.retry.jitter, 0.0);
        assert_eq!(c.sender.retry.max_retry_after_ms, 300_000);

        let e = &c.endpoints[0];
        assert_eq!(e.id, "shop-eu_1");
        assert!(!e.enabled);
        assert_eq!(
            e.plugin,
            PluginSource::Path(base().join("plugins/custom.wasm"))
        );
        assert_eq!(e.app_id.as_deref(), Some("123"));
        assert_eq!(e.access_token.as_ref().unwrap().expose(), "tok");
        assert_eq!(e.waba_id.as_deref(), Some("777"));
        assert_eq!(e.app_secret, None);
        assert!(!e.needs_signature());
        assert_eq!(e.graph_api_base, "http://127.0.0.1:9999");
        assert_eq!(e.graph_api_version, "v24.0");
        assert_eq!(e.message_delay_ms, 1500);
        assert!(e.typing_indicator);
        assert!(!e.mark_read);
        assert_eq!(e.session_expiry_secs, 0);
        assert_eq!(e.history_turns, 3);
        assert_eq!(e.max_body_bytes, 1024);
        assert_eq!(e.throughput_per_second, 10);
        assert_eq!(e.pair_burst, 2);
        assert_eq!(e.pair_interval_ms, 100);
        assert_eq!(
            e.window_template,
            Some(TemplateRef {
                name: "reengage".into(),
                language: "en_US".into(),
                body_params: vec!["there".into()],
                values: Default::default(),
            })
        );
        assert_eq!(e.transformer_policy, FailurePolicy::Abort);
        assert_eq!(
            e.transformers,
            vec![
                TransformerConfig {
                    path: base().join("hooks/a.wasm")
                },
                TransformerConfig {
                    path: PathBuf::from("/abs/b.wasm")
                },
            ]
        );

        let conv = e.conversation_config();
        assert_eq!(conv.endpoint, "shop-eu_1");
        assert_eq!(conv.session_expiry, Duration::ZERO);
        assert_eq!(conv.history_turns, 3);
        // The sender paces under serve, never the conversation runtime.
        assert_eq!(conv.message_delay, Duration::ZERO);
        assert!(!conv.typing_indicator);
        assert_eq!(conv.handover.keywords, vec!["agent".to_string()]);
        assert_eq!(conv.handover.confirmation, "One moment.");
        assert_eq!(conv.handover.mute_for, Duration::from_secs(60));
        assert_eq!(
            conv.handover.webhook_url.as_deref(),
            Some("https://crm.example.com/hook")
        );
    }

    #[test]
    fn conversation_config_keeps_handover_defaults() {
        let c = parse(MINIMAL).unwrap();
        let conv = c.endpoints[0].conversation_config();
        assert_eq!(conv.handover, HandoverConfig::default());
        assert_eq!(conv.session_expiry, Duration::from_secs(1800));
        assert_eq!(conv.message_delay, Duration::ZERO);

        let text = format!("{MINIMAL}\n[endpoints.handover]\nmute_for_secs = 5\n");
        let conv = parse(&text).unwrap().endpoints[0].conversation_config();
        assert_eq!(conv.handover.mute_for, Duration::from_secs(5));
        assert_eq!(conv.handover.keywords, HandoverConfig::default().keywords);
    }

    #[test]
    fn adapter_settings_by_name() {
        let c = parse(MINIMAL).unwrap();
        let settings = c.endpoints[0].adapter_settings();
        assert_eq!(
            settings,
            vec![
                ("phone_number_id".to_string(), "106540352242922".to_string()),
                ("verify_token".to_string(), "vt-literal".to_string()),
                ("app_secret".to_string(), "as-literal".to_string()),
            ]
        );
    }

    #[test]
    fn env_secrets_are_read_at_load() {
        // SAFETY: the variable names are unique to this test; no other thread reads them.
        unsafe {
            std::env::set_var("PLUGBOARD_TEST_CFG_ENV_VT", "vt-from-env");
            std::env::set_var("PLUGBOARD_TEST_CFG_ENV_AS", "as-from-env");
            std::env::set_var("PLUGBOARD_TEST_CFG_ENV_AT", "at-from-env");
        }
        let text = r#"
[[endpoints]]
id = "main"
flow = "f.json"
phone_number_id = "1"
verify_token = "env:PLUGBOARD_TEST_CFG_ENV_VT"
app_secret = "env:PLUGBOARD_TEST_CFG_ENV_AS"
access_token = "env:PLUGBOARD_TEST_CFG_ENV_AT"
"#;
        let c = parse(text).unwrap();
        let e = &c.endpoints[0];
        assert_eq!(e.verify_token.expose(), "vt-from-env");
        assert_eq!(e.app_secret.as_ref().unwrap().expose(), "as-from-env");
        assert_eq!(e.access_token.as_ref().unwrap().expose(), "at-from-env");
    }

    #[test]
    fn missing_env_variable_is_named_not_valued() {
        let text = MINIMAL.replace(
            "app_secret = \"as-literal\"",
            "app_secret = \"env:PLUGBOARD_TEST_CFG_SURELY_UNSET\"",
        );
        let message = invalid_message(&text);
        assert!(
            message.contains("PLUGBOARD_TEST_CFG_SURELY_UNSET"),
            "{message}"
        );
        assert!(message.contains("endpoints[0].app_secret"), "{message}");
        assert!(!message.contains("vt-literal"), "{message}");
    }

    #[test]
    fn missing_app_secret_is_refused_unless_flagged() {
        let text = MINIMAL.replace("app_secret = \"as-literal\"", "");
        let message = invalid_message(&text);
        assert!(message.contains("app_secret"), "{message}");
        assert!(message.contains("insecure_skip_signature"), "{message}");

        let flagged = format!("{text}insecure_skip_signature = true\n");
        let c = parse(&flagged).unwrap();
        assert!(!c.endpoints[0].needs_signature());
        assert_eq!(c.endpoints[0].app_secret, None);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = MINIMAL.replace("app_secret", "app_secrte");
        match parse(&text) {
            Err(ConfigError::Parse { message, .. }) => {
                assert!(message.contains("app_secrte"), "{message}");
                assert!(message.contains("line "), "{message}");
                // The excerpt `toml` would print holds the (literal) secret.
                assert!(!message.contains("as-literal"), "{message}");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
        for extra in [
            "verbose = true\n",
            "[store]\nsync = \"full\"\n",
            "[sender.retry]\ndelay_ms = [1]\n",
        ] {
            let text = format!("{extra}{MINIMAL}");
            assert!(
                matches!(parse(&text), Err(ConfigError::Parse { .. })),
                "{extra}"
            );
        }
        let text = format!("{MINIMAL}\n[endpoints.handover]\nkeyword = [\"x\"]\n");
        assert!(matches!(parse(&text), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("id = \"main\"", "id = \"Main\"", "endpoints[0].id"),
            ("id = \"main\"", "id = \"\"", "endpoints[0].id"),
            (
                "verify_token = \"vt-literal\"",
                "verify_token = \"\"",
                "verify_token",
            ),
            (
                "phone_number_id = \"106540352242922\"",
                "phone_number_id = \"12/../me\"",
                "phone_number_id",
            ),
            (
                "app_secret = \"as-literal\"",
                "app_secret = \"as-literal\"\ngraph_api_base = \"ftp://x\"",
                "graph_api_base",
            ),
            (
                "app_secret = \"as-literal\"",
                "app_secret = \"as-literal\"\nthroughput_per_second = 0",
                "throughput_per_second",
            ),
            (
                "app_secret = \"as-literal\"",
                "app_secret = \"as-literal\"\nplugin = \"Telegram Bot\"",
                "plugin",
            ),
        ];
        for (from, to, field) in cases {
            let message = invalid_message(&MINIMAL.replace(from, to));
            assert!(message.contains(field), "{field}: {message}");
        }
        for (prefix, field) in [
            ("[store]\nretention_days = 3\n", "retention_days"),
            ("[sender.retry]\ndelays_ms = []\n", "delays_ms"),
            ("listen = \"localhost\"\n", "listen"),
            ("public_url = \"bot.example.com\"\n", "public_url"),
        ] {
            let message = invalid_message(&format!("{prefix}{MINIMAL}"));
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn type_errors_do_not_echo_the_value() {
        let text = MINIMAL.replace("verify_token = \"vt-literal\"", "verify_token = 918273");
        match parse(&text) {
            Err(ConfigError::Parse { message, .. }) => {
                assert!(!message.contains("918273"), "{message}");
                assert!(message.contains("invalid type: integer"), "{message}");
            }
            other => panic!("expected Parse, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let message = invalid_message(&format!("{MINIMAL}{MINIMAL}"));
        assert!(message.contains("endpoints[1].id"), "{message}");
        assert!(message.contains("unique"), "{message}");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        // SAFETY: unique variable name, only this test reads it.
        unsafe { std::env::set_var("PLUGBOARD_TEST_CFG_DEBUG_AT", "at-secret-value") };
        let text = format!("{MINIMAL}access_token = \"env:PLUGBOARD_TEST_CFG_DEBUG_AT\"\n");
        let c = parse(&text).unwrap();
        let debug = format!("{c:?} {c:#?}");
        for secret in ["vt-literal", "as-literal", "at-secret-value"] {
            assert!(!debug.contains(secret), "{secret} leaked");
        }
        assert!(debug.contains("[redacted]"));
        assert_eq!(Secret::new("x").to_string(), "[redacted]");
        assert_eq!(format!("{:?}", Secret::new("x")), "[redacted]");
    }

    #[test]
    fn load_resolves_against_the_file_dir_and_reports_read_errors() {
        let dir = std::env::temp_dir().join(format!("plugboard-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plugboard.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = ServeConfig::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.join("data"));
        assert_eq!(c.endpoints[0].flow, dir.join("flows/support.json"));

        let missing = dir.join("nope.toml");
        let err = ServeConfig::load(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.toml"), "{err}");

        std::fs::write(&path, MINIMAL.replace("id = \"main\"", "id = \"Main\"")).unwrap();
        let err = ServeConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("plugboard.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn demo_config_is_valid() {
        let root = Path::new("/repo");
        let c = ServeConfig::demo(root);
        c.validate().unwrap();
        assert_eq!(c.data_dir, root.join("data"));
        let e = c.endpoint("demo").unwrap();
        assert_eq!(e.flow, root.join("flows/support.json"));
        assert_eq!(e.phone_number_id, "106540352242922");
        assert!(!e.verify_token.is_empty());
        // Without PLUGBOARD_APP_SECRET the demo runs unsigned; with it, signed.
        assert_eq!(e.app_secret.is_none(), e.insecure_skip_signature);
        assert_eq!(e.conversation_config().endpoint, "demo");
    }

    #[test]
    fn admin_token_and_specs() {
        let message = invalid_message(&format!("admin_token = \"short\"\n{MINIMAL}"));
        assert!(message.contains("admin_token"), "{message}");
        assert!(!message.contains("short"), "{message}");
        let c = parse(&format!("admin_token = \"0123456789abcdef\"\n{MINIMAL}")).unwrap();
        assert_eq!(
            c.admin_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        // The seed keeps what was written, paths made absolute.
        let spec = &c.endpoint_specs[0];
        assert_eq!(spec.verify_token, "vt-literal");
        assert_eq!(spec.flow, base().join("flows/support.json"));
        // A spec read back from its JSON resolves to the same endpoint.
        let json = serde_json::to_string(spec).unwrap();
        let back: EndpointSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.resolve(Path::new("/"), "x").unwrap(), c.endpoints[0]);
        assert!(!format!("{spec:?}").contains("vt-literal"));
    }

    #[test]
    fn example_config_parses() {
        // SAFETY: unique variable names, only this test reads them.
        unsafe {
            std::env::set_var("PLUGBOARD_EXAMPLE_ACCESS_TOKEN", "example-at");
            std::env::set_var("PLUGBOARD_EXAMPLE_APP_SECRET", "example-as");
            std::env::set_var("PLUGBOARD_EXAMPLE_VERIFY_TOKEN", "example-vt");
            std::env::set_var("PLUGBOARD_EXAMPLE_ADMIN_TOKEN", "example-admin-token-0123");
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plugboard.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let examples = Path::new(path).parent().unwrap();
        let c = ServeConfig::from_toml(&text, examples).unwrap();
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(
            c.admin_token.as_ref().map(Secret::expose),
            Some("example-admin-token-0123")
        );
        assert_eq!(
            c.endpoint_specs[0].verify_token,
            "env:PLUGBOARD_EXAMPLE_VERIFY_TOKEN"
        );
        let e = &c.endpoints[0];
        assert_eq!(e.verify_token.expose(), "example-vt");
        assert!(e.needs_signature());
        assert!(e.window_template.is_some());
        assert!(
            e.flow
                .canonicalize()
                .unwrap()
                .ends_with("flows/support.json"),
            "{}",
            e.flow.display()
        );
        // `load` agrees with `from_toml`.
        assert_eq!(ServeConfig::load(Path::new(path)).unwrap(), c);
    }
}
