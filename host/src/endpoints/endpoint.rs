//! One served endpoint: its settings, its adapter, its flow and its conversations.
//!
//! Built once at start from an [`EndpointConfig`]: the adapter component is loaded and
//! checked, the flow is loaded and validated against the adapter's declared limits, the
//! transformer hooks are loaded, and the conversation [`Core`] the serving workers step
//! is built. Anything wrong here fails
//! the start with a message naming the endpoint: a host never serves half-configured.
//!
//! [`Bounds`] is what the endpoint may reach: its files only under `flows_dir` and
//! `plugins_dir` (checked before anything is read), its flow's http nodes and handover
//! webhook only under the egress policy (literal http-node URLs checked here, at load; the
//! handover webhook where it is configured, and both again at connect time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conversation::{Core, ReqwestHttp};
use crate::egress::Egress;
use crate::flow::{Flow, Node};
use crate::plugins::types::Business;
use crate::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, HookPlugin, PluginLimits, PluginRuntime};
use crate::store::Store;
use crate::store::admin::StoredPlugin;
use crate::transform::Transformers;

use super::files::FileRoots;
use crate::config::{EndpointConfig, PluginSource, Secret};

/// Settings only the host uses; adapters never get them.
const HOST_ONLY_SECRETS: [&str; 2] = ["access_token", "app_secret"];
/// Settings never shown, stored in errors or logged.
const SECRET_SETTINGS: [&str; 3] = ["access_token", "app_secret", "verify_token"];

/// How an endpoint's webhooks are signed (from the adapter) and the key (from the config).
#[derive(Clone)]
pub struct SignatureCheck {
    pub header: String,
    pub prefix: String,
    pub secret: Secret,
}

/// What a loaded endpoint may reach: files under these roots, URLs under this policy.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    pub files: FileRoots,
    pub egress: Egress,
}

pub type EndpointConversations = Core<ReqwestHttp>;

pub struct Endpoint {
    pub config: EndpointConfig,
    pub adapter: Arc<AdapterPlugin>,
    /// The adapter's settings by name, secrets included (the signature key is looked up
    /// here); never logged.
    pub settings: Vec<(String, String)>,
    /// What the adapter's handshake gets: the settings without the access token and the
    /// app secret, which only the host uses (bearer token, signature check), so an adapter
    /// answering an unauthenticated GET cannot echo them.
    pub handshake_settings: Vec<(String, String)>,
    /// The number replies go out from when an event does not say.
    pub business: Business,
    pub conversations: EndpointConversations,
    /// `None`: the endpoint is configured with `insecure_skip_signature`.
    pub signature: Option<SignatureCheck>,
    /// Where the adapter came from, for the admin API (`whatsapp`, a plugin name, a path).
    pub plugin_name: String,
    pub activity: Activity,
}

/// What the host has seen of an endpoint since it started (milliseconds; 0 = never).
#[derive(Default)]
pub struct Activity {
    pub last_webhook_ms: AtomicU64,
    pub last_auth_failure_ms: AtomicU64,
    pub last_send_ms: AtomicU64,
}

impl Activity {
    pub fn set(field: &AtomicU64, ms: u64) {
        field.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn get(field: &AtomicU64) -> Option<u64> {
        Some(field.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
    }

    pub(super) fn carry_over(&self, old: &Activity) {
        for (new, old) in [
            (&self.last_webhook_ms, &old.last_webhook_ms),
            (&self.last_auth_failure_ms, &old.last_auth_failure_ms),
            (&self.last_send_ms, &old.last_send_ms),
        ] {
            new.fetch_max(old.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

impl Endpoint {
    /// `text` (a Graph API error, say: Meta quotes a malformed token back) with this
    /// endpoint's secrets replaced by their masks, before it is logged, stored or shown.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (name, value) in &self.settings {
            if SECRET_SETTINGS.contains(&name.as_str())
                && value.len() >= 4
                && text.contains(value.as_str())
            {
                text = text.replace(value.as_str(), &crate::secretbox::mask(value));
            }
        }
        text
    }

    pub fn load(
        runtime: &Arc<PluginRuntime>,
        config: EndpointConfig,
        store: Arc<dyn Store>,
        bounds: &Bounds,
    ) -> Result<Endpoint, String> {
        Endpoint::load_with(runtime, config, store, None, bounds)
    }

    /// [`Endpoint::load`], with `candidate` standing in for the installed plugin of its
    /// name (a replacement or new limits, checked against every endpoint using it before
    /// anything is stored).
    pub fn load_with(
        runtime: &Arc<PluginRuntime>,
        config: EndpointConfig,
        store: Arc<dyn Store>,
        candidate: Option<&StoredPlugin>,
        bounds: &Bounds,
    ) -> Result<Endpoint, String> {
        let id = config.id.clone();
        let fail = |what: String| format!("endpoint `{id}`: {what}");
        let mut limits = PluginLimits::default();
        let (bytes, origin, plugin_name) = match &config.plugin {
            PluginSource::Bundled => (
                BUNDLED_WHATSAPP.to_vec(),
                "the bundled WhatsApp adapter".to_string(),
                crate::config::BUNDLED_PLUGIN.to_string(),
            ),
            PluginSource::Path(path) => (
                std::fs::read(bounds.files.plugin(path).map_err(fail)?)
                    .map_err(|e| fail(format!("cannot read plugin {}: {e}", path.display())))?,
                path.display().to_string(),
                path.display().to_string(),
            ),
            PluginSource::Installed(name) => {
                let plugin = match candidate.filter(|c| c.name == *name) {
                    Some(candidate) => candidate.clone(),
                    None => store
                        .plugin(name)
                        .map_err(|e| fail(e.to_string()))?
                        .ok_or_else(|| fail(format!("plugin `{name}` is not installed")))?,
                };
                limits = PluginLimits::installed(plugin.max_memory_bytes, plugin.call_timeout_ms);
                (plugin.wasm, format!("plugin `{name}`"), name.clone())
            }
        };
        let adapter = AdapterPlugin::load(runtime, &bytes, limits)
            .map_err(|e| fail(format!("cannot load {origin}: {e}")))?;
        let flow_path = bounds.files.flow(&config.flow).map_err(fail)?;
        let flow = Flow::load(&flow_path, &adapter.info().limits).map_err(|e| {
            // Named as configured, not as resolved (a link's target stays private).
            fail(e.to_string().replace(
                &flow_path.display().to_string(),
                &config.flow.display().to_string(),
            ))
        })?;
        check_http_nodes(&flow, &bounds.egress).map_err(fail)?;
        let mut hooks = Vec::new();
        for hook in &config.transformers {
            let path = bounds.files.plugin(&hook.path).map_err(fail)?;
            let bytes = std::fs::read(path).map_err(|e| {
                fail(format!(
                    "cannot read transformer {}: {e}",
                    hook.path.display()
                ))
            })?;
            let name = hook
                .path
                .file_stem()
                .map_or_else(|| "hook".to_string(), |s| s.to_string_lossy().into_owned());
            let plugin = HookPlugin::load(runtime, &name, &bytes, PluginLimits::hook_default())
                .map_err(|e| fail(format!("cannot load transformer {name}: {e}")))?;
            hooks.push(Arc::new(plugin));
        }
        let conversations = Core {
            config: config.conversation_config(),
            flow: Arc::new(flow),
            transformers: Transformers::new(hooks, config.transformer_policy),
            http: ReqwestHttp::with_egress(bounds.egress.clone()),
        };
        let business = Business {
            phone_number_id: config.phone_number_id.clone(),
            display_number: None,
            account_id: config.waba_id.clone(),
        };
        let settings = config.adapter_settings();
        let handshake_settings = settings
            .iter()
            .filter(|(name, _)| !HOST_ONLY_SECRETS.contains(&name.as_str()))
            .cloned()
            .collect();
        let signature = signature_check(&config, &adapter, &settings)?;
        Ok(Endpoint {
            signature,
            plugin_name,
            activity: Activity::default(),
            settings,
            handshake_settings,
            config,
            adapter: Arc::new(adapter),
            business,
            conversations,
        })
    }
}

/// The http nodes whose destination is known at load (the URL up to its path has no
/// `{{ }}` hole) checked against the egress policy; the rest are checked per call.
fn check_http_nodes(flow: &Flow, egress: &Egress) -> Result<(), String> {
    for (id, node) in &flow.nodes {
        let Node::Http(h) = node else { continue };
        let Some(origin) = literal_origin(&h.url) else {
            continue;
        };
        egress
            .policy()
            .check_url(&origin)
            .map_err(|e| format!("flow node `{id}`: url: {e}"))?;
    }
    Ok(())
}

/// `scheme://authority/` of a URL template when that much of it is literal text.
fn literal_origin(template: &str) -> Option<String> {
    let literal = template.split("{{").next().unwrap_or("");
    let (scheme, rest) = literal.split_once("://")?;
    let end = rest.find(['/', '?', '#']);
    match end {
        Some(end) => Some(format!("{scheme}://{}/", &rest[..end])),
        // No hole at all: the whole URL is literal.
        None if literal.len() == template.len() => Some(format!("{scheme}://{rest}/")),
        None => None,
    }
}

/// How the endpoint's webhooks are signed (declared by the adapter) and the key (from the
/// settings); `None` with `insecure_skip_signature`.
fn signature_check(
    config: &EndpointConfig,
    adapter: &AdapterPlugin,
    settings: &[(String, String)],
) -> Result<Option<SignatureCheck>, String> {
    if !config.needs_signature() {
        return Ok(None);
    }
    let id = &config.id;
    let Some(scheme) = adapter.info().signature.clone() else {
        return Err(format!(
            "endpoint `{id}`: the {} adapter declares no signature scheme; set insecure_skip_signature = true to accept unsigned webhooks",
            adapter.name()
        ));
    };
    let secret = settings
        .iter()
        .find(|(name, _)| *name == scheme.secret_setting)
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty());
    let Some(secret) = secret else {
        return Err(format!(
            "endpoint `{id}`: `{}` is required to check webhook signatures (or set insecure_skip_signature = true)",
            scheme.secret_setting
        ));
    };
    Ok(Some(SignatureCheck {
        header: scheme.header,
        prefix: scheme.prefix,
        secret: Secret::new(secret),
    }))
}
