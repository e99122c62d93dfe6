//! Tests of loading, resolving and validating the config.

use super::*;
use crate::conversation::HandoverConfig;
use crate::transform::FailurePolicy;
use std::time::Duration;

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
    let hook = format!("{MINIMAL}[endpoints.handover]\nwebhook_url = \"http://127.0.0.1:9/h\"\n");
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
