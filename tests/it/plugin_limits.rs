//! Plugins that try to wait, flood or reach past their number, against a running host.
//!
//! The hostile adapter is the misbehaving test guest (`tests/guests/misbehaving`), served
//! as endpoint `bad` next to the bundled WhatsApp adapter's `shop`: `decode(b"sleep")`
//! calls `std::thread::sleep(30 s)` in WASI, `decode(b"msg:<phone>:<ts>")` is a message
//! whose reply the guest renders, with a path escaping the endpoint's number for a `666…`
//! recipient and with a 30 s sleep for a `777…` recipient. Every request goes to 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard::plugins::test_guests::{MISBEHAVING, MISBEHAVING_HOOK};
use plugboard::plugins::types::{BotOutput, Decoded, User};
use plugboard::plugins::{FailureKind, PluginLimits, SessionView};
use plugboard::store::{DeadLetter, InboxStore, SqliteOptions, SqliteStore, Store};
use plugboard::transform::{FailurePolicy, Transformers};
use plugboard_tests::mock_graph::MockGraph;
use plugboard_tests::webhook;
use plugboard_tests::{load_file, load_hook};
use serde_json::Value;

use crate::serve::{
    WAIT, client, config_toml, flows_dir, greeting, plugins_dir, send_text, support_flow, temp_dir,
    webhook_url,
};

/// The misbehaving endpoint's number (the shop's is `serve::PNID`).
const BAD_PNID: &str = "200000000000002";

/// The second endpoint, `bad`, on the misbehaving guest and a one-message flow (the guest
/// allows texts of one character). Both files are copied next to the config.
fn bad_endpoint(dir: &Path, graph: &str) -> String {
    std::fs::copy(MISBEHAVING, dir.join("misbehaving.wasm")).expect("copy the guest");
    std::fs::write(
        dir.join("tiny.json"),
        r#"{"schema_version": 1, "name": "tiny", "start": "a", "nodes": {
            "a": {"type": "end", "messages": [{"Text": "x"}]}}}"#,
    )
    .expect("write the flow");
    format!(
        "
[[endpoints]]
id = 'bad'
plugin = 'misbehaving.wasm'
flow = 'tiny.json'
phone_number_id = '{BAD_PNID}'
verify_token = 'vt-bad'
insecure_skip_signature = true
access_token = 'EAAbadtoken'
graph_api_base = '{graph}'
graph_api_version = 'v23.0'
mark_read = false
throughput_per_second = 1000
pair_burst = 1000
pair_interval_ms = 1
"
    )
}

async fn start(dir: &Path, mock: &MockGraph) -> Server {
    let extra = bad_endpoint(dir, &mock.base_url());
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        &extra,
    );
    // Every file lives next to the config: the guest, the tiny flow and a copy of the
    // support flow, so both directories are the test's own.
    std::fs::copy(support_flow(), dir.join("support.json")).expect("copy the support flow");
    let text = text
        .replace(
            &format!("flows_dir = '{}'", flows_dir().display()),
            &format!("flows_dir = '{}'", dir.display()),
        )
        .replace(
            &format!("plugins_dir = '{}'", plugins_dir().display()),
            &format!("plugins_dir = '{}'", dir.display()),
        )
        .replace(
            &format!("'{}'", support_flow().display()),
            &format!("'{}'", dir.join("support.json").display()),
        );
    let config = ServeConfig::from_toml(&text, dir)
        .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
    Server::start(config)
        .await
        .unwrap_or_else(|e| panic!("server does not start: {e:#}"))
}

/// Posts an unsigned body to `bad` and asserts the 200.
async fn post_bad(server: &Server, body: &[u8]) {
    let response = client()
        .post(webhook_url(server, "bad"))
        .body(body.to_vec())
        .send()
        .await
        .expect("POST to bad");
    assert_eq!(response.status(), 200);
}

/// Polls the dead letters until one matches `pick`.
async fn dead_letter(store: &Arc<dyn Store>, pick: impl Fn(&DeadLetter) -> bool) -> DeadLetter {
    let deadline = Instant::now() + WAIT;
    loop {
        let letters = store.dead_letters(100).await.expect("read dead letters");
        if let Some(letter) = letters.into_iter().find(&pick) {
            return letter;
        }
        assert!(
            Instant::now() < deadline,
            "no such dead letter after {WAIT:?}: {:#?}",
            store.dead_letters(100).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn inbox_letters(store_letters: &[DeadLetter]) -> usize {
    store_letters
        .iter()
        .filter(|l| l.endpoint == "bad" && l.source == "inbox")
        .count()
}

/// The shop answers a new conversation with its greeting.
async fn shop_answers(server: &Server, mock: &MockGraph, from: &str, wamid: &str) {
    send_text(server, from, wamid, "hello").await;
    let expected = greeting(from);
    mock.wait_until(WAIT, &format!("the greeting to {from}"), |requests| {
        requests.iter().any(|r| {
            r.to() == Some(from)
                && r.body
                    .pointer("/interactive/body/text")
                    .and_then(Value::as_str)
                    == Some(expected.as_str())
        })
    })
    .await;
}

async fn readyz(server: &Server) -> (u16, Value) {
    let response = client()
        .get(format!("http://{}/readyz", server.local_addr()))
        .send()
        .await
        .expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readyz JSON"))
}

#[test]
fn a_sleep_in_wasi_traps_at_once_instead_of_blocking_past_the_deadline() {
    let deadline = Duration::from_millis(200);
    let plugin = load_file(
        MISBEHAVING,
        PluginLimits {
            max_memory_bytes: 32 << 20,
            call_deadline: deadline,
            reuse_instances: true,
        },
    );
    let started = Instant::now();
    let error = match plugin.decode(b"sleep") {
        Ok(answer) => panic!("a 30 s sleep answered: {answer:?}"),
        Err(e) => e,
    };
    let elapsed = started.elapsed();
    assert!(elapsed < deadline * 2, "took {elapsed:?}");
    assert_eq!(error.failure_kind(), Some(FailureKind::Trap), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("plugins may not wait: time is an argument"),
        "{text}"
    );
    // The instance was dropped; the plugin goes on.
    let decoded = plugin.decode(b"ok").expect("answers").expect("decodes");
    assert_eq!(
        decoded,
        Decoded {
            events: Vec::new(),
            skipped: Vec::new()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_call_on_an_async_worker_thread_does_not_panic_the_host() {
    // The guest's panic message goes through a WASI stream write, which wasmtime-wasi runs
    // with `Handle::block_on`: on an async worker that used to panic the caller.
    let plugin = load_file(MISBEHAVING, PluginLimits::default());
    let error = match plugin.decode(b"panic") {
        Ok(answer) => panic!("a panic answered: {answer:?}"),
        Err(e) => e,
    };
    assert_eq!(error.failure_kind(), Some(FailureKind::Trap), "{error}");
    assert!(error.to_string().contains("panics on purpose"), "{error}");
}

#[test]
fn a_decode_over_the_event_cap_is_a_named_failure() {
    let plugin = load_file(MISBEHAVING, PluginLimits::default());
    let error = match plugin.decode(b"flood") {
        Ok(answer) => panic!(
            "1,001 events accepted: {:?}",
            answer.map(|d| d.events.len())
        ),
        Err(e) => e,
    };
    assert_eq!(error.failure_kind(), Some(FailureKind::OutputLimit));
    assert!(
        error.to_string().contains("answered 1001 events"),
        "{error}"
    );
}

#[test]
fn a_hook_split_over_the_output_cap_is_a_named_failure() {
    let hook = load_hook(MISBEHAVING_HOOK, PluginLimits::hook_default());
    let session = SessionView {
        conversation_key: "wa_15551234567".to_string(),
        user: User {
            user_id: None,
            phone: Some("15551234567".to_string()),
            name: None,
            username: None,
        },
        data: Vec::new(),
        history: Vec::new(),
    };
    let error = match hook.on_output(&BotOutput::Text("flood".to_string()), &session) {
        Ok(answer) => panic!("65 outputs accepted: {:?}", answer.map(|o| o.len())),
        Err(e) => e,
    };
    assert_eq!(error.failure_kind(), Some(FailureKind::OutputLimit));
    assert!(error.to_string().contains("answered 65 outputs"), "{error}");
    // Under `continue` the output goes on untransformed.
    let chain = Transformers::new(vec![hook], FailurePolicy::Continue);
    let outputs = chain
        .apply_outputs(vec![BotOutput::Text("flood".to_string())], &session)
        .expect("continue");
    assert_eq!(outputs, [BotOutput::Text("flood".to_string())]);
}

#[tokio::test]
async fn a_sleeping_decode_is_a_dead_letter_in_time_and_every_endpoint_goes_on() {
    let mock = MockGraph::start().await;
    let dir = temp_dir("plugin-sleep");
    let server = start(&dir, &mock).await;
    let store = server.store();

    let posted = Instant::now();
    post_bad(&server, b"sleep").await;
    let letter = dead_letter(&store, |l| l.endpoint == "bad" && l.source == "inbox").await;
    let elapsed = posted.elapsed();
    assert_eq!(letter.reason, "plugin_failed", "{letter:?}");
    assert!(
        letter
            .detail
            .contains("plugins may not wait: time is an argument"),
        "{letter:?}"
    );
    // Far from the 30 s the guest asked for: the wait was refused, not sat out. (The call
    // itself ends within 2x its deadline, shown exactly by the test above; this also counts
    // the demux's pick-up and the store, hence the margin.)
    assert!(
        elapsed < Duration::from_secs(5),
        "dead-lettered after {elapsed:?}"
    );

    // The demux is alive: another endpoint's webhook is processed and answered.
    shop_answers(&server, &mock, "15551230001", "wamid.sleep.1").await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stopped_stages"], serde_json::json!([]), "{body}");

    // The same body waiting in the inbox when the host starts again: dead-lettered again,
    // and the loop still goes on.
    server.shutdown().await.expect("shutdown");
    drop(store);
    {
        let store = SqliteStore::open(SqliteOptions {
            path: dir.join("data").join("plugboard.db"),
            ..SqliteOptions::default()
        })
        .expect("open the store");
        store
            .append_inbox("bad", b"sleep".to_vec(), webhook::now_ts() * 1000)
            .await
            .expect("append a pending inbox row");
    }
    let server = start(&dir, &mock).await;
    let store = server.store();
    let deadline = Instant::now() + WAIT;
    loop {
        let letters = store.dead_letters(100).await.expect("dead letters");
        if inbox_letters(&letters) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{letters:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shop_answers(&server, &mock, "15551230002", "wamid.sleep.2").await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(store.depths().await.expect("depths").inbox, 0);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_render_path_escaping_the_number_is_refused_and_nothing_is_sent() {
    let mock = MockGraph::start().await;
    let dir = temp_dir("plugin-path");
    let server = start(&dir, &mock).await;
    let store = server.store();

    let body = format!("msg:6660001:{}", webhook::now_ts());
    post_bad(&server, body.as_bytes()).await;
    let letter = dead_letter(&store, |l| l.endpoint == "bad" && l.source == "outbox").await;
    assert_eq!(letter.reason, "graph_path_refused", "{letter:?}");
    assert!(letter.detail.contains("../../other/messages"), "{letter:?}");
    assert!(letter.detail.contains("`.` and `..`"), "{letter:?}");

    // A render that sleeps is refused at once too: retried on the schedule, then a dead
    // letter, the sender never stuck.
    let body = format!("msg:7770001:{}", webhook::now_ts());
    post_bad(&server, body.as_bytes()).await;
    let letter = dead_letter(&store, |l| {
        l.endpoint == "bad" && l.source == "outbox" && l.reason != "graph_path_refused"
    })
    .await;
    assert_eq!(letter.reason, "retries_exhausted", "{letter:?}");
    assert!(letter.detail.contains("plugins may not wait"), "{letter:?}");

    // The shop still sends; the bad endpoint never reached the Graph API.
    shop_answers(&server, &mock, "15551230003", "wamid.path.1").await;
    let strays: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.authorization() != Some(&format!("Bearer {}", crate::serve::ACCESS_TOKEN)))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        strays.is_empty(),
        "requests with the bad endpoint's token: {strays:?}"
    );
    assert!(
        mock.requests().iter().all(|r| !r.path.contains("other")),
        "{:?}",
        mock.requests()
    );
    server.shutdown().await.expect("shutdown");
}
