//! The configuration `plugboard serve --demo` uses without a file: one endpoint serving
//! the repository's support flow, secrets from `PLUGBOARD_*` variables when set.

use std::path::Path;

use super::{
    ENV_PREFIX, EndpointSpec, EventWebhookSettings, HttpSettings, LogFormat, MIN_ADMIN_TOKEN,
    Secret, SenderSettings, ServeConfig, StoreSettings, default_listen,
};
use crate::egress::EgressPolicy;

/// The verify token `plugboard serve --demo` uses without `PLUGBOARD_VERIFY_TOKEN`.
pub const DEMO_VERIFY_TOKEN: &str = "plugboard-demo";

/// The phone number id of the demo endpoint: the one of Meta's sample payloads and of the
/// adapter's fixtures (`adapter/tests/fixtures/inbound/`), so the README's curl of a fixture
/// reaches the demo flow instead of being stored as another number's (unowned).
pub const DEMO_PHONE_NUMBER_ID: &str = "106540352242922";

impl ServeConfig {
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
                .map(Secret::new),
            endpoints,
            endpoint_specs: vec![spec],
            secret_key: None,
        }
    }
}
