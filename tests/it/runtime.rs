//! The plugin runtime at its boundary: what it refuses to load, how it stops a hostile
//! guest (deadline, memory limit, trap), that the host goes on afterwards, and what the
//! bundled adapter says about itself through the component.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use plugboard::plugins::test_guests::{MISBEHAVING, WRONG_WORLD};
use plugboard::plugins::types::{AuthScheme, Decoded, HandshakeReply};
use plugboard::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, FailureKind, PluginError, PluginLimits};
use plugboard_tests::{expected, fixture, load_file, runtime, to_json, whatsapp};

fn hostile_limits() -> PluginLimits {
    PluginLimits {
        max_memory_bytes: 32 << 20,
        call_deadline: Duration::from_millis(200),
        reuse_instances: true,
    }
}

fn misbehaving() -> AdapterPlugin {
    load_file(MISBEHAVING, hostile_limits())
}

fn load_error(bytes: &[u8]) -> PluginError {
    match AdapterPlugin::load(runtime(), bytes, PluginLimits::default()) {
        Ok(plugin) => panic!(
            "loaded {} {}, expected a refusal",
            plugin.name(),
            plugin.version()
        ),
        Err(e) => e,
    }
}

/// The plugin still answers a normal call after a failure: the failed instance was dropped
/// and a fresh one (or a warm one) serves the next call.
fn assert_still_answers(plugin: &AdapterPlugin) {
    for _ in 0..2 {
        let decoded = plugin
            .decode(b"ok")
            .expect("a normal call after a failure works")
            .expect("the guest decodes anything else to nothing");
        assert_eq!(
            decoded,
            Decoded {
                events: Vec::new(),
                skipped: Vec::new()
            }
        );
    }
    // And the rest of the host is unaffected.
    let file = fixture("inbound", "msg_text");
    let body = std::fs::read(&file).expect("read fixture");
    let result = whatsapp()
        .decode(&body)
        .expect("the WhatsApp adapter answers");
    assert_eq!(to_json(&result), expected(&file));
}

fn call_error(
    result: Result<Result<Decoded, plugboard::plugins::types::AdapterError>, PluginError>,
) -> PluginError {
    match result {
        Ok(answer) => panic!("expected a plugin error, got {answer:?}"),
        Err(e) => e,
    }
}

#[test]
fn refuses_wrong_world_naming_its_exports() {
    let bytes = std::fs::read(WRONG_WORLD).expect("read the wrong-world guest");
    let error = load_error(&bytes);
    let text = error.to_string();
    assert!(
        matches!(error, PluginError::WrongWorld { .. }),
        "expected WrongWorld, got {error:?}"
    );
    assert!(text.contains("test:other/greeter"), "{text}");
    assert!(text.contains("plugboard:channel/adapter@0.1."), "{text}");
    assert_eq!(error.failure_kind(), None);
}

#[test]
fn refuses_random_bytes_empty_file_and_core_module() {
    // Deterministic "random" bytes (xorshift), so a failure reproduces.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    // A valid but empty core module: WebAssembly, yet not a component.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    for (what, bytes) in [
        ("random bytes", random),
        ("an empty file", Vec::new()),
        ("a core module", core_module),
    ] {
        let error = load_error(&bytes);
        assert!(
            matches!(error, PluginError::Invalid(_)),
            "{what}: expected Invalid, got {error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("not a loadable WebAssembly component: "),
            "{what}: {error}"
        );
    }
}

#[test]
fn misbehaving_guest_loads_and_answers() {
    let plugin = misbehaving();
    assert_eq!(plugin.name(), "misbehaving");
    assert_eq!(plugin.version(), "0.0.1");
    assert_eq!(plugin.wit_version(), "0.1.0");
    assert_still_answers(&plugin);
}

#[test]
fn endless_loop_hits_the_deadline_and_the_host_goes_on() {
    let plugin = misbehaving();
    let started = Instant::now();
    let error = call_error(plugin.decode(b"loop"));
    let elapsed = started.elapsed();
    assert_eq!(
        error.failure_kind(),
        Some(FailureKind::DeadlineExceeded),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // The epoch ticker cannot fire 40 ticks of 5 ms much sooner than 200 ms.
    assert!(
        elapsed >= Duration::from_millis(150),
        "interrupted after only {elapsed:?}: not the deadline"
    );
    let text = error.to_string();
    assert!(text.contains("misbehaving 0.0.1"), "{text}");
    assert!(text.contains("deadline exceeded in `decode`"), "{text}");
    assert_still_answers(&plugin);
    // A second loop on the same plugin is stopped the same way.
    let again = call_error(plugin.decode(b"loop"));
    assert_eq!(again.failure_kind(), Some(FailureKind::DeadlineExceeded));
    assert_still_answers(&plugin);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit_and_the_host_goes_on() {
    let plugin = misbehaving();
    let started = Instant::now();
    let error = call_error(plugin.decode(b"alloc"));
    assert_eq!(
        error.failure_kind(),
        Some(FailureKind::MemoryLimit),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = error.to_string();
    assert!(text.contains("misbehaving 0.0.1"), "{text}");
    assert!(
        text.contains(&format!("limit is {} bytes", 32 << 20)),
        "{text}"
    );
    assert_still_answers(&plugin);
}

#[test]
fn panic_is_a_trap_naming_the_plugin_and_its_message() {
    let plugin = misbehaving();
    let error = call_error(plugin.decode(b"panic"));
    assert_eq!(error.failure_kind(), Some(FailureKind::Trap), "{error}");
    let text = error.to_string();
    assert!(text.contains("misbehaving"), "{text}");
    assert!(text.contains("0.0.1"), "{text}");
    assert!(text.contains("trapped in `decode`"), "{text}");
    assert!(
        text.contains("the misbehaving guest panics on purpose"),
        "the guest's panic message is missing: {text}"
    );
    match &error {
        PluginError::Call {
            plugin: name,
            version,
            call,
            ..
        } => {
            assert_eq!(
                (name.as_str(), version.as_str(), *call),
                ("misbehaving", "0.0.1", "decode")
            );
        }
        other => panic!("expected a call error, got {other:?}"),
    }
    assert_still_answers(&plugin);
    // The next failure reports only its own stderr: a fresh instance, not the poisoned one.
    let again = call_error(plugin.decode(b"panic")).to_string();
    assert_eq!(
        again.matches("panics on purpose").count(),
        1,
        "stderr leaked between instances: {again}"
    );
}

#[test]
fn every_failure_kind_in_turn_on_one_plugin() {
    let plugin = misbehaving();
    for (body, kind) in [
        (&b"panic"[..], FailureKind::Trap),
        (b"alloc", FailureKind::MemoryLimit),
        (b"loop", FailureKind::DeadlineExceeded),
        (b"panic", FailureKind::Trap),
    ] {
        let error = call_error(plugin.decode(body));
        assert_eq!(error.failure_kind(), Some(kind), "{error}");
        assert_still_answers(&plugin);
    }
}

#[test]
fn fresh_instances_per_call_behave_the_same() {
    let plugin = load_file(
        MISBEHAVING,
        PluginLimits {
            reuse_instances: false,
            ..hostile_limits()
        },
    );
    let error = call_error(plugin.decode(b"panic"));
    assert_eq!(error.failure_kind(), Some(FailureKind::Trap));
    assert_still_answers(&plugin);
}

#[test]
fn bundled_adapter_describes_itself() {
    let plugin = whatsapp();
    let info = plugin.info();
    assert_eq!(info.name, "whatsapp");
    assert_eq!(plugin.name(), "whatsapp");
    // The adapter crate's own version, which need not be the workspace's.
    assert_eq!(info.version, plugboard_whatsapp::info().version);
    assert_eq!(plugin.wit_version(), "0.1.1");
    assert_eq!(info.api_version, "v23.0");
    let signature = info.signature.as_ref().expect("a signature scheme");
    assert_eq!(signature.header, "x-hub-signature-256");
    assert_eq!(signature.prefix, "sha256=");
    assert_eq!(signature.secret_setting, "app_secret");
    assert_eq!(info.auth, AuthScheme::Bearer("access_token".to_string()));
    let secrets: BTreeSet<&str> = info
        .settings
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        secrets,
        BTreeSet::from(["access_token", "app_secret", "verify_token"])
    );
    let required: BTreeSet<&str> = info
        .settings
        .iter()
        .filter(|s| s.required)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from([
            "access_token",
            "app_secret",
            "phone_number_id",
            "verify_token"
        ])
    );
    assert_eq!(info.limits.max_text_length, 4096);
    assert_eq!(info.limits.max_buttons, 3);
    assert_eq!(plugin.hash().len(), 64);
    assert!(plugin.hash().bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!BUNDLED_WHATSAPP.is_empty());
}

#[test]
fn handshake_through_the_component() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let settings = pairs(&[("verify_token", "s3cret-token"), ("app_secret", "x")]);
    let query = |token: &str, mode: &str| {
        pairs(&[
            ("hub.mode", mode),
            ("hub.verify_token", token),
            ("hub.challenge", "1158201444"),
        ])
    };
    let plugin = whatsapp();
    let cases = [
        (
            query("s3cret-token", "subscribe"),
            settings.clone(),
            HandshakeReply::Accept("1158201444".to_string()),
        ),
        (
            query("wrong-token!", "subscribe"),
            settings.clone(),
            HandshakeReply::Reject("hub.verify_token does not match".to_string()),
        ),
        (
            query("s3cret-token", "unsubscribe"),
            settings.clone(),
            HandshakeReply::Reject("unexpected hub.mode \"unsubscribe\"".to_string()),
        ),
        (
            query("s3cret-token", "subscribe"),
            Vec::new(),
            HandshakeReply::Reject("the endpoint has no verify_token setting".to_string()),
        ),
        (Vec::new(), settings.clone(), HandshakeReply::NotHandshake),
        (
            pairs(&[("hub.mode", "subscribe")]),
            settings.clone(),
            HandshakeReply::NotHandshake,
        ),
    ];
    for (query, settings, want) in cases {
        let got = plugin.handshake(&query, &settings).expect("handshake call");
        assert_eq!(got, want, "query {query:?}");
        // Same answer natively.
        assert_eq!(
            to_json(&plugboard_whatsapp::handshake(&query, &settings)),
            to_json(&want)
        );
        // A rejection never echoes either token.
        if let HandshakeReply::Reject(reason) = &got {
            assert!(!reason.contains("s3cret-token") && !reason.contains("wrong-token!"));
        }
    }
}
