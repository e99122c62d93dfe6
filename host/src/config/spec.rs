//! [`EndpointSpec`]: one `[[endpoints]]` as written (TOML) or posted to the admin API
//! (JSON), and how it resolves into an [`EndpointConfig`].
//!
//! The store keeps specs, not resolved configs: an `env:NAME` secret is read again at every
//! start and never copied into the database. Paths are made absolute when a spec is taken
//! in ([`EndpointSpec::absolute`], [`EndpointSpec::absolute_in`]) so a stored spec means the
//! same wherever it is read later.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::endpoint::{
    BUNDLED_PLUGIN, EndpointConfig, HandoverSettings, PluginSource, ReplyQuota, TemplateRef,
    TransformerConfig, default_endpoint,
};
use super::secret::{Secret, resolve_secret};
use super::{ENV_PREFIX, valid_id};
use crate::transform::FailurePolicy;

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
