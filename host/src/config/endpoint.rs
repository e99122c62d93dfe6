//! One `[[endpoints]]` resolved: [`EndpointConfig`] (a WhatsApp number, its flow and how
//! it is served) with the tables it is made of, the defaults of every field
//! ([`default_endpoint`]) and its validation.
//!
//! An endpoint is written as an [`super::EndpointSpec`] (TOML or admin JSON) and resolved
//! into this; the serving layer maps it into what other modules take
//! ([`EndpointConfig::conversation_config`], [`EndpointConfig::adapter_settings`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::secret::Secret;
use super::{check_http_url, valid_id};
use crate::conversation::{ConversationConfig, HandoverConfig};
use crate::egress::EgressPolicy;
use crate::transform::FailurePolicy;

/// Name of the adapter compiled into the binary.
pub const BUNDLED_PLUGIN: &str = "whatsapp";

pub const DEFAULT_GRAPH_API_BASE: &str = "https://graph.facebook.com";
pub const DEFAULT_GRAPH_API_VERSION: &str = "v23.0";

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

    pub(super) fn validate(&self, at: &str) -> Result<(), String> {
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

/// An endpoint with every default filled in; the one source of the defaults.
pub(super) fn default_endpoint(
    id: String,
    flow: PathBuf,
    phone_number_id: String,
) -> EndpointConfig {
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
