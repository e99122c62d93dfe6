//! `plugboard serve` end to end: real Meta webhook bodies, signed, posted to a running
//! server (in-process, or a spawned `plugboard-node` process for the crash test), the
//! support flow answering through the bundled WhatsApp adapter, and the replies caught by
//! a mock Graph API that can be scripted to fail the way Meta fails.
//!
//! Each test gets its own temporary data directory, store and mock; the retry schedule is
//! shortened (50/100/200 ms, no jitter, `Retry-After` clamped to 2 s) so that retries show
//! up in seconds. Assertions are on exact request counts and bodies: a reply sent twice,
//! late, out of order or to the wrong person fails a test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard::store::{DeadLetter, OutboxRow, OutboxState, QueueDepths, Store};
use plugboard_tests::mock_graph::{MockGraph, Reply, Request, describe};
use plugboard_tests::webhook::{self, SIGNATURE_HEADER};
use serde_json::{Value, json};

pub(crate) const PNID: &str = "106540352242922";
pub(crate) const SECRET: &str = "s3cret";
pub(crate) const ACCESS_TOKEN: &str = "EAAtoken";
pub(crate) const VERIFY_TOKEN: &str = "vt";
/// The admin API's bearer token in every test config.
pub(crate) const ADMIN_TOKEN: &str = "admin-test-token-0123456789abcdef";
/// Where the host must send: `{graph_api_base}/{graph_api_version}/{phone_number_id}/messages`.
const SEND_PATH: &str = "/v23.0/106540352242922/messages";
/// Long enough for a debug-build host to pick work up, short enough for a quick failure.
pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// How long "nothing more happens" is watched for.
pub(crate) const SETTLE: Duration = Duration::from_millis(600);

/// The support flow's answer to a first message that is neither "hours" nor "human": the
/// greeting with three reply buttons (`flows/support.json`, node `greet`).
pub(crate) fn greeting(from: &str) -> String {
    format!("Hi {}! How can we help?", webhook::profile_name(from))
}
const HOURS: &str = "We are open Monday to Saturday, 9:00 to 18:00. Closed on Sundays.";
const ANYTHING_ELSE: &str = "Anything else?";

/// A fresh directory under the system temp dir (kept on failure for a post-mortem).
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "plugboard-serve-{name}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

pub(crate) fn support_flow() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows/support.json")
}

/// The test configuration: one endpoint `shop` on the support flow, replying to `graph`;
/// flows from the repository's `flows/`, event webhook and flow receivers on loopback
/// allowed (`[egress] allow = ['127.0.0.1']`).
/// `extra` is appended inside the `[[endpoints]]` table (it comes last), and `delays_ms`
/// is the retry schedule.
pub(crate) fn config_toml(
    listen: &str,
    data_dir: &Path,
    graph: &str,
    delays_ms: &str,
    extra: &str,
) -> String {
    // Literal TOML strings: paths are taken as they are, no escapes.
    format!(
        "listen = '{listen}'
data_dir = '{data}'
mask_pii = false
admin_token = '{ADMIN_TOKEN}'
flows_dir = '{flows_dir}'
plugins_dir = '{plugins_dir}'

[egress]
allow = ['127.0.0.1']

[event_webhooks]
request_timeout_ms = 1500

[event_webhooks.retry]
delays_ms = {delays_ms}
jitter = 0.0
max_retry_after_ms = 2000
min_retry_after_ms = 10

[sender]
request_timeout_ms = 1500

[sender.retry]
delays_ms = {delays_ms}
jitter = 0.0
max_retry_after_ms = 2000
min_retry_after_ms = 10

[[endpoints]]
id = 'shop'
flow = '{flow}'
phone_number_id = '{PNID}'
verify_token = '{VERIFY_TOKEN}'
app_secret = '{SECRET}'
access_token = '{ACCESS_TOKEN}'
graph_api_base = '{graph}'
graph_api_version = 'v23.0'
mark_read = false
throughput_per_second = 1000
pair_burst = 1000
pair_interval_ms = 1
{extra}
",
        data = data_dir.display(),
        flow = support_flow().display(),
        flows_dir = flows_dir().display(),
        plugins_dir = plugins_dir().display(),
    )
}

/// The repository's `flows/`: the test configs' `flows_dir`.
pub(crate) fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows")
}

/// The repository root: the test configs' `plugins_dir` (built guests and hooks are under
/// it).
pub(crate) fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A server on `127.0.0.1:0` with a fresh store, wired to a fresh mock Graph API.
pub(crate) async fn start_host(extra_toml: &str) -> (Server, MockGraph, PathBuf) {
    let mock = MockGraph::start().await;
    let dir = temp_dir("host");
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        extra_toml,
    );
    let config = ServeConfig::from_toml(&text, &dir)
        .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
    let server = Server::start(config)
        .await
        .unwrap_or_else(|e| panic!("server does not start: {e:#}"));
    (server, mock, dir)
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

pub(crate) fn webhook_url(server: &Server, endpoint: &str) -> String {
    format!("http://{}/webhooks/{endpoint}", server.local_addr())
}

/// Posts a signed text message from `from` and asserts the 200.
pub(crate) async fn send_text(server: &Server, from: &str, wamid: &str, text: &str) {
    let body = webhook::text_message(PNID, from, wamid, text, webhook::now_ts());
    let response = webhook::post(&client(), &webhook_url(server, "shop"), &body, SECRET).await;
    assert_eq!(
        response.status(),
        200,
        "webhook for {wamid} not acknowledged"
    );
}

/// Polls an outbox row until `done` holds, or returns what it is after `timeout`.
async fn outbox_row_when(
    store: &Arc<dyn Store>,
    id: i64,
    timeout: Duration,
    done: impl Fn(&OutboxRow) -> bool,
) -> Option<OutboxRow> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = store.outbox_row(id).await.expect("read the outbox row");
        if row.as_ref().is_some_and(&done) || Instant::now() >= deadline {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the dead letters until there are at least `n`, then returns them (newest first).
async fn dead_letters_when(store: &Arc<dyn Store>, n: usize) -> Vec<DeadLetter> {
    let deadline = Instant::now() + WAIT;
    loop {
        let letters = store.dead_letters(100).await.expect("read dead letters");
        if letters.len() >= n {
            return letters;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {n} dead letter(s); have {letters:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The exact send the support flow's greeting renders to (`choices_buttons` shape).
fn greeting_body(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": { "text": greeting(to) },
            "action": { "buttons": [
                { "type": "reply", "reply": { "id": "hours", "title": "Opening hours" } },
                { "type": "reply", "reply": { "id": "order", "title": "Order status" } },
                { "type": "reply", "reply": { "id": "faq", "title": "Questions" } }
            ] }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_text_gets_exactly_one_reply_through_the_graph_api() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551181";
    send_text(&server, from, "wamid.in.one", "hi").await;

    let requests = mock.wait_for(1, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = {
        let all = mock.requests();
        assert_eq!(all.len(), 1, "one reply expected:\n{}", describe(&all));
        assert_eq!(all[0].seq, requests[0].seq);
        all
    };
    let send = &requests[0];
    assert_eq!(send.method, "POST");
    assert_eq!(send.path, SEND_PATH);
    assert_eq!(
        send.authorization(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    assert!(
        send.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type: {:?}",
        send.header("content-type")
    );
    assert_eq!(
        send.body,
        greeting_body(from),
        "{}",
        plugboard_tests::mismatch("greeting send", &greeting_body(from), &send.body)
    );
    assert!(send.answered_ok());

    // The row ends sent, with the mock's message id recorded as its part.
    let row = outbox_row_when(&server.store(), 1, WAIT, |r| r.state == OutboxState::Sent)
        .await
        .expect("outbox row 1 exists");
    assert_eq!(row.state, OutboxState::Sent, "{row:#?}");
    assert_eq!(row.parts_sent, 1, "{row:#?}");
    assert_eq!(row.conversation, from);
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_twice_is_answered_once() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551182";
    let body = webhook::text_message(PNID, from, "wamid.in.dup", "hi", webhook::now_ts());
    let url = webhook_url(&server, "shop");
    // Meta redelivers the identical body when it did not see our 200 in time.
    for attempt in 0..2 {
        let response = webhook::post(&client(), &url, &body, SECRET).await;
        assert_eq!(response.status(), 200, "delivery {attempt}");
    }
    mock.wait_for(1, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        1,
        "one reply expected:\n{}",
        describe(&requests)
    );
    assert_eq!(requests[0].to(), Some(from));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_senders_is_answered_per_conversation_in_order() {
    let (server, mock, dir) = start_host("").await;
    let senders = ["4915112340001", "4915112340002", "4915112340003"];
    let wamids: Vec<[String; 2]> = (0..3)
        .map(|i| [format!("wamid.in.b{i}.0"), format!("wamid.in.b{i}.1")])
        .collect();
    // Interleaved as Meta may batch them: every sender's "hi", then every sender's "hours"
    // (split over two `changes` by the builder). "hi" greets; "hours" at the menu answers
    // the opening hours and asks "Anything else?", so order per recipient is visible.
    let mut items: Vec<(&str, &str, &str)> = Vec::new();
    for (round, text) in ["hi", "hours"].into_iter().enumerate() {
        for (i, from) in senders.iter().enumerate() {
            items.push((from, wamids[i][round].as_str(), text));
        }
    }
    let body = webhook::batch(PNID, items);
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);

    mock.wait_for(9, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        9,
        "3 replies × 3 senders:\n{}",
        describe(&requests)
    );
    let mut per_recipient: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &requests {
        assert!(r.answered_ok(), "{}", r.summary());
        per_recipient
            .entry(r.to().unwrap_or("<no to>").to_string())
            .or_default()
            .push(r.text().unwrap_or_default());
    }
    assert_eq!(
        per_recipient.keys().collect::<Vec<_>>(),
        senders.iter().collect::<Vec<_>>(),
        "three conversations:\n{}",
        describe(&requests)
    );
    for from in senders {
        assert_eq!(
            per_recipient[from],
            vec![greeting(from), HOURS.to_string(), ANYTHING_ELSE.to_string()],
            "replies to {from} out of order:\n{}",
            describe(&requests)
        );
    }
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_arrives_before_the_send_response_is_kept() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551184";
    // The send is held for 600 ms; meanwhile Meta's `delivered` for the id it is about to
    // return is posted and stored with no outbox row to attach to yet.
    mock.push(Reply::Delayed(
        Duration::from_millis(600),
        Box::new(Reply::OkWithId("wamid.known".into())),
    ));
    send_text(&server, from, "wamid.in.early", "hi").await;
    mock.wait_for(1, WAIT).await;
    let status = webhook::status(PNID, "wamid.known", "delivered", from, None);
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &status, SECRET).await;
    assert_eq!(response.status(), 200);
    assert!(
        mock.requests()[0].status.is_none(),
        "the status must be posted while the send is still held (the test is too slow)"
    );

    mock.wait_until(WAIT, "the held send answered", |r| r[0].status.is_some())
        .await;
    let row = outbox_row_when(&server.store(), 1, Duration::from_secs(3), |r| {
        r.state == OutboxState::Delivered
    })
    .await
    .expect("outbox row 1 exists");
    assert_eq!(
        row.state,
        OutboxState::Delivered,
        "the early `delivered` was lost: {row:#?}"
    );
    assert_eq!(mock.requests().len(), 1);
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551185";
    mock.push(Reply::RateLimited {
        retry_after_secs: 1,
    });
    send_text(&server, from, "wamid.in.429", "hi").await;
    mock.wait_for(2, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "{}", describe(&requests));
    assert_eq!(requests[0].status, Some(429));
    assert!(requests[1].answered_ok(), "{}", requests[1].summary());
    assert_eq!(
        requests[0].body, requests[1].body,
        "the retry resends the same message"
    );
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(998),
        "retried {gap:?} after a 429 with Retry-After: 1"
    );
    assert!(gap < Duration::from_secs(4), "retry waited {gap:?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_on_the_schedule_until_success() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551186";
    mock.push_all([Reply::ServerError, Reply::ServerError, Reply::ServerError]);
    send_text(&server, from, "wamid.in.500", "hi").await;
    mock.wait_for(4, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 4, "{}", describe(&requests));
    let statuses: Vec<Option<u16>> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(500), Some(200)]);
    assert!(requests.iter().all(|r| r.body == greeting_body(from)));
    // No jitter: each retry waits at least its delay (2 ms of slack for ms rounding).
    for (i, delay) in [50u64, 100, 200].into_iter().enumerate() {
        let gap = requests[i + 1].at - requests[i].at;
        assert!(
            gap >= Duration::from_millis(delay - 2),
            "retry {i} after {gap:?}, schedule says {delay} ms"
        );
    }
    let store = server.store();
    let row = outbox_row_when(&store, 1, WAIT, |r| r.state == OutboxState::Sent)
        .await
        .expect("outbox row 1");
    assert_eq!(row.state, OutboxState::Sent, "{row:#?}");
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert!(letters.is_empty(), "{letters:#?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_becomes_a_dead_letter() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551187";
    mock.push(Reply::Error {
        status: 400,
        code: 131009,
        details: "Parameter value is not valid".into(),
    });
    send_text(&server, from, "wamid.in.400", "hi").await;
    let store = server.store();
    let letters = dead_letters_when(&store, 1).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        1,
        "no retry of a permanent error:\n{}",
        describe(&requests)
    );
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(
        (
            letter.endpoint.as_str(),
            letter.source.as_str(),
            letter.source_id
        ),
        ("shop", "outbox", 1),
        "{letter:#?}"
    );
    assert_eq!(letter.reason, "permanent", "{letter:#?}");
    let row = store.outbox_row(1).await.expect("read").expect("row 1");
    assert_eq!(row.state, OutboxState::Dead, "{row:#?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

fn window_closed() -> Reply {
    Reply::Error {
        status: 400,
        code: 131047,
        details: "Message failed to send because more than 24 hours have passed since the \
                  customer last replied to this number."
            .into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_window_is_reopened_with_the_configured_template() {
    let (server, mock, dir) =
        start_host("window_template = { name = 'reopen', language = 'en_US' }").await;
    let from = "16315551188";
    mock.push(window_closed());
    send_text(&server, from, "wamid.in.131047", "hi").await;
    mock.wait_for(2, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "{}", describe(&requests));
    assert_eq!(requests[0].status, Some(400));
    assert_eq!(requests[0].message_type(), Some("interactive"));
    let template = &requests[1];
    assert_eq!(template.path, SEND_PATH);
    assert_eq!(template.to(), Some(from));
    assert_eq!(
        template.message_type(),
        Some("template"),
        "{}",
        template.raw_body
    );
    assert_eq!(
        template.body.pointer("/template/name"),
        Some(&json!("reopen")),
        "{}",
        template.raw_body
    );
    assert_eq!(
        template.body.pointer("/template/language/code"),
        Some(&json!("en_US")),
        "{}",
        template.raw_body
    );
    assert!(template.answered_ok());
    let store = server.store();
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert!(letters.is_empty(), "{letters:#?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_window_without_a_template_becomes_a_dead_letter() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551189";
    mock.push(window_closed());
    send_text(&server, from, "wamid.in.131047b", "hi").await;
    let store = server.store();
    let letters = dead_letters_when(&store, 1).await;
    tokio::time::sleep(SETTLE).await;
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "{}", describe(&requests));
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].source, "outbox", "{letters:#?}");
    assert_eq!(letters[0].reason, "window_closed", "{letters:#?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// Nothing reached the store: no queued rows, no dead letters, no conversation window
/// opened for `from`, and no Graph request.
async fn assert_nothing_stored(server: &Server, mock: &MockGraph, from: &str, what: &str) {
    tokio::time::sleep(SETTLE).await;
    let store = server.store();
    let depths = store.depths().await.expect("depths");
    assert_eq!(
        depths,
        QueueDepths::default(),
        "{what}: something was queued"
    );
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert!(letters.is_empty(), "{what}: {letters:#?}");
    let pending = store.pending_inbox(0, 10).await.expect("pending inbox");
    assert!(pending.is_empty(), "{what}: {pending:#?}");
    assert_eq!(
        store
            .last_inbound("shop", from)
            .await
            .expect("last inbound"),
        None,
        "{what}: the message was handled"
    );
    let requests = mock.requests();
    assert!(requests.is_empty(), "{what}:\n{}", describe(&requests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_webhooks_store_nothing() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551190";
    let url = webhook_url(&server, "shop");
    let body = webhook::text_message(PNID, from, "wamid.in.rejected", "hi", webhook::now_ts());
    let http = client();

    // Signed with another secret.
    let response = webhook::post(&http, &url, &body, "not-the-secret").await;
    assert_eq!(response.status(), 403, "wrong signature");
    // The right signature of other bytes (a re-serialised body never matches).
    let response = http
        .post(&url)
        .header(SIGNATURE_HEADER, webhook::sign(SECRET, b"{}"))
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 403, "signature of another body");
    // No signature at all.
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 401, "missing signature");
    // Correctly signed, for an endpoint that does not exist.
    let response = webhook::post(&http, &webhook_url(&server, "nope"), &body, SECRET).await;
    assert_eq!(response.status(), 404, "unknown endpoint");
    // Over 4 MiB, correctly signed: refused on size alone.
    let huge = webhook::text_message(
        PNID,
        from,
        "wamid.in.huge",
        &"a".repeat(4 * 1024 * 1024),
        webhook::now_ts(),
    );
    let response = webhook::post(&http, &url, &huge, SECRET).await;
    assert_eq!(response.status(), 413, "oversized body");

    assert_nothing_stored(&server, &mock, from, "rejected webhooks").await;
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_the_adapter_cannot_parse_is_acknowledged_and_dead_lettered() {
    let (server, mock, dir) = start_host("").await;
    // Truncated JSON: Meta must not redeliver it for a week, so it is a 200 and kept.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"#;
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), body, SECRET).await;
    assert_eq!(response.status(), 200);
    let store = server.store();
    let letters = dead_letters_when(&store, 1).await;
    tokio::time::sleep(SETTLE).await;
    let letters_now = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters_now.len(), 1, "{letters_now:#?}");
    assert_eq!(letters[0].source, "inbox", "{letters:#?}");
    assert_eq!(letters[0].endpoint, "shop", "{letters:#?}");
    let requests = mock.requests();
    assert!(requests.is_empty(), "{}", describe(&requests));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_handshake_echoes_the_challenge_for_the_right_token() {
    let (server, mock, dir) = start_host("").await;
    let http = client();
    let url = webhook_url(&server, "shop");
    let response = http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "1158201444");

    let response = http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444"
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 403);
    let text = response.text().await.expect("body");
    assert!(
        !text.contains("1158201444"),
        "challenge echoed on 403: {text}"
    );

    for path in ["healthz", "readyz"] {
        let response = http
            .get(format!("http://{}/{path}", server.local_addr()))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "/{path}");
    }
    assert!(mock.requests().is_empty());
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_stores_but_never_replies() {
    let (server, mock, dir) = start_host("enabled = false").await;
    let from = "16315551191";
    let ts = webhook::now_ts();
    let body = webhook::text_message(PNID, from, "wamid.in.disabled", "hi", ts);
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);

    // Stored and handled: the message's event is recorded and the conversation's window
    // opened at the message's timestamp, yet the flow never ran.
    let store = server.store();
    let deadline = Instant::now() + WAIT;
    let inbound = loop {
        if let Some(ms) = store
            .last_inbound("shop", from)
            .await
            .expect("last inbound")
        {
            break ms;
        }
        assert!(Instant::now() < deadline, "the message was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(inbound, ts * 1000);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(store.session("shop", from).await.expect("session"), None);
    let depths = store.depths().await.expect("depths");
    assert_eq!(depths, QueueDepths::default());
    assert!(store.outbox_row(1).await.expect("outbox").is_none());
    let requests = mock.requests();
    assert!(requests.is_empty(), "{}", describe(&requests));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// A spawned `plugboard-node serve`, SIGKILLed when dropped.
pub(crate) struct Node {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Node {
    pub(crate) fn spawn(config: &Path, dir: &Path, run: u32) -> Node {
        Node::spawn_with_env(config, dir, run, &[])
    }

    /// [`Node::spawn`] with extra environment variables (`RUST_LOG`, say).
    pub(crate) fn spawn_with_env(
        config: &Path,
        dir: &Path,
        run: u32,
        env: &[(&str, &str)],
    ) -> Node {
        let stdout = dir.join(format!("node-{run}.stdout"));
        let stderr = dir.join(format!("node-{run}.stderr"));
        let file = |p: &Path| std::fs::File::create(p).expect("create a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_plugboard-node"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file(&stdout)))
            .stderr(Stdio::from(file(&stderr)))
            .spawn()
            .expect("spawn plugboard-node");
        Node {
            child,
            stdout,
            stderr,
        }
    }

    /// Everything the process wrote so far, stdout then stderr.
    pub(crate) fn all_output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}\n{}", read(&self.stdout), read(&self.stderr))
    }

    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            tail(read(&self.stdout)),
            tail(read(&self.stderr))
        )
    }

    /// Panics (with the logs) when the process has already exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("plugboard-node exited with {status}\n{}", self.logs());
        }
    }

    pub(crate) async fn wait_ready(&mut self, base: &str) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        // Generous: a debug build compiles the adapter with Cranelift at start-up.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.assert_running();
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plugboard-node not ready\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (on unix `Child::kill` sends SIGKILL) and reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The config file of a `plugboard-node` on a free port (the same one across restarts),
/// replying to `mock`, retrying on `delays_ms`: its directory, base URL and path.
pub(crate) fn node_config(
    name: &str,
    mock: &MockGraph,
    delays_ms: &str,
) -> (PathBuf, String, PathBuf) {
    let dir = temp_dir(name);
    let port = free_port();
    let text = config_toml(
        &format!("127.0.0.1:{port}"),
        &dir.join("data"),
        &mock.base_url(),
        delays_ms,
        "",
    );
    let config = dir.join("plugboard.toml");
    std::fs::write(&config, text).expect("write the config");
    (dir, format!("http://127.0.0.1:{port}"), config)
}

/// A port that was free a moment ago (the node is restarted on the same address).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message_and_sends_no_reply_twice() {
    const MESSAGES: usize = 40;
    let mock = MockGraph::start().await;
    // Longer retry delays than the other tests: every send fails until the kill, and no
    // row may run out of retries (and go dead) in the few ms before it.
    let (dir, base, config) =
        node_config("sigkill", &mock, "[300, 300, 300, 300, 300, 300, 300, 300]");

    let mut node = Node::spawn(&config, &dir, 1);
    node.wait_ready(&base).await;
    mock.set_default(Reply::ServerError);

    let senders: Vec<String> = (0..MESSAGES).map(|i| format!("4917000{i:05}")).collect();
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let http = client();
    let url = format!("{base}/webhooks/shop");
    let mut posts = Vec::new();
    for (i, from) in senders.iter().enumerate() {
        let (http, url, from, acked) = (http.clone(), url.clone(), from.clone(), acked.clone());
        posts.push(tokio::spawn(async move {
            let body = webhook::text_message(
                PNID,
                &from,
                &format!("wamid.in.kill{i}"),
                "hi",
                webhook::now_ts(),
            );
            if let Ok(response) = webhook::try_post(&http, &url, &body, SECRET).await
                && response.status() == 200
            {
                acked.lock().expect("acked").push(from);
            }
        }));
    }

    // Kill mid-flight: enough acknowledged, and the sender already at work.
    let deadline = Instant::now() + WAIT;
    loop {
        let n_acked = acked.lock().expect("acked").len();
        if n_acked >= MESSAGES / 2 && !mock.requests().is_empty() {
            break;
        }
        node.assert_running();
        assert!(
            Instant::now() < deadline,
            "before the kill: {n_acked} acked, sends:\n{}\n{}",
            describe(&mock.requests()),
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    node.kill();
    for post in posts {
        post.await.expect("post task");
    }
    let acked: Vec<String> = acked.lock().expect("acked").clone();
    let before_kill = mock.requests();
    assert!(
        before_kill.iter().all(|r| !r.answered_ok()),
        "nothing may succeed before the kill:\n{}",
        describe(&before_kill)
    );
    assert!(acked.len() >= MESSAGES / 2);

    // Same command, same data dir; Graph works again.
    mock.set_default(Reply::Ok);
    let mut node = Node::spawn(&config, &dir, 2);
    node.wait_ready(&base).await;
    let ok_per_recipient = |requests: &[Request]| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in requests.iter().filter(|r| r.answered_ok()) {
            *counts
                .entry(r.to().unwrap_or("<no to>").to_string())
                .or_default() += 1;
        }
        counts
    };
    mock.wait_until(
        Duration::from_secs(30),
        "a reply to every acknowledged sender",
        |requests| {
            let counts = ok_per_recipient(requests);
            acked.iter().all(|s| counts.contains_key(s))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests = mock.requests();
    let counts = ok_per_recipient(&requests);
    let report = || {
        format!(
            "acked {} of {MESSAGES}; OK replies per recipient {counts:?}\n{}",
            acked.len(),
            node.logs()
        )
    };
    for from in &acked {
        assert_eq!(
            counts.get(from),
            Some(&1),
            "acknowledged {from}: {}",
            report()
        );
    }
    for (to, n) in &counts {
        assert!(
            senders.contains(to),
            "reply to a stranger {to}: {}",
            report()
        );
        assert!(*n <= 1, "{to} answered {n} times: {}", report());
    }
    for r in requests.iter().filter(|r| r.answered_ok()) {
        assert_eq!(r.path, SEND_PATH);
        let to = r.to().unwrap_or_default();
        assert_eq!(r.body, greeting_body(to), "{}", r.summary());
    }
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_failure_reported_later_in_a_status_sends_the_template() {
    // Meta often accepts the send and reports 131047 afterwards in a `failed` status: the
    // host reconciles it like a synchronous refusal.
    let (server, mock, dir) =
        start_host("window_template = { name = 'reopen', language = 'en_US' }").await;
    let from = "16315551191";
    mock.push(Reply::OkWithId("wamid.late-fail".into()));
    send_text(&server, from, "wamid.in.late", "hi").await;
    mock.wait_for(1, WAIT).await;
    outbox_row_when(&server.store(), 1, WAIT, |r| r.state == OutboxState::Sent).await;
    let failed = webhook::status(
        PNID,
        "wamid.late-fail",
        "failed",
        from,
        Some((131047, "Re-engagement message")),
    );
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &failed, SECRET).await;
    assert_eq!(response.status(), 200);

    let requests = mock.wait_for(2, WAIT).await;
    assert_eq!(
        requests[1].message_type(),
        Some("template"),
        "{}",
        describe(&requests)
    );
    assert_eq!(requests[1].to(), Some(from));
    assert_eq!(
        requests[1].body.pointer("/template/name"),
        Some(&json!("reopen"))
    );
    // The free-form row ends dead, saying what replaced it; a redelivered status is a no-op.
    let row = outbox_row_when(&server.store(), 1, WAIT, |r| r.state == OutboxState::Dead)
        .await
        .expect("row 1");
    assert_eq!(row.state, OutboxState::Dead);
    let letters = dead_letters_when(&server.store(), 1).await;
    assert_eq!(letters[0].reason, "window_closed");
    assert!(
        letters[0]
            .detail
            .contains("replaced by the window template"),
        "{letters:#?}"
    );
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &failed, SECRET).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mock.requests().len(), 2, "{}", describe(&mock.requests()));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_outside_the_window_is_never_attempted_free_form() {
    // The user's message is 25 hours old when it finally arrives (Meta redelivers for days):
    // a free-form reply is not even tried; without a template it is a dead letter.
    let (server, mock, dir) = start_host("").await;
    let from = "16315551192";
    let old = webhook::now_ts() - 25 * 3600;
    let body = webhook::text_message(PNID, from, "wamid.in.old", "hi", old);
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);
    let letters = dead_letters_when(&server.store(), 1).await;
    assert_eq!(letters[0].reason, "window_closed", "{letters:#?}");
    assert_eq!(letters[0].source, "outbox");
    tokio::time::sleep(SETTLE).await;
    assert!(mock.requests().is_empty(), "{}", describe(&mock.requests()));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_delay_spaces_replies_and_a_typing_indicator_leads_them() {
    let (server, mock, dir) = start_host("message_delay_ms = 400\ntyping_indicator = true").await;
    let from = "16315551193";
    send_text(&server, from, "wamid.in.d1", "hi").await;
    // The receipt with typing indicator, then the greeting.
    mock.wait_for(2, WAIT).await;
    send_text(&server, from, "wamid.in.d2", "hours").await;
    // A second receipt+typing, then the hours and "Anything else?".
    let requests = mock.wait_for(5, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    let requests_now = mock.requests();
    assert_eq!(requests_now.len(), 5, "{}", describe(&requests_now));
    assert!(requests[0].is_mark_read(), "{}", describe(&requests));
    assert_eq!(
        requests[0].body.pointer("/typing_indicator/type"),
        Some(&json!("text")),
        "{}",
        requests[0].raw_body
    );
    let messages: Vec<&Request> = requests.iter().filter(|r| !r.is_mark_read()).collect();
    assert_eq!(messages.len(), 3, "{}", describe(&requests));
    assert_eq!(messages[1].text().as_deref(), Some(HOURS));
    assert_eq!(messages[2].text().as_deref(), Some(ANYTHING_ELSE));
    // The typing indicator shows for the delay; consecutive messages keep the gap, also
    // across two steps of the conversation.
    assert!(messages[0].at - requests[0].at >= Duration::from_millis(390));
    for pair in messages.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(390),
            "gap {gap:?}: {}",
            describe(&requests)
        );
    }
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_api_that_does_not_answer_in_time_is_retried() {
    let (server, mock, dir) = start_host("").await;
    let from = "16315551194";
    // Longer than `request_timeout_ms` (1.5 s): the host gives up waiting and retries.
    mock.push(Reply::Hang(Duration::from_secs(4)));
    send_text(&server, from, "wamid.in.hang", "hi").await;
    let requests = mock.wait_for(2, WAIT).await;
    assert_eq!(
        requests[1].body,
        greeting_body(from),
        "{}",
        describe(&requests)
    );
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(1500) && gap < Duration::from_millis(3900),
        "the retry must follow the timeout, not the hung answer: {gap:?}"
    );
    let row = outbox_row_when(&server.store(), 1, WAIT, |r| r.state == OutboxState::Sent)
        .await
        .expect("row 1");
    assert_eq!(row.state, OutboxState::Sent);
    assert_eq!(row.attempts, 1, "{row:#?}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_failure_that_arrives_before_the_send_response_is_reconciled() {
    let (server, mock, dir) =
        start_host("window_template = { name = 'reopen', language = 'en_US' }").await;
    let from = "16315551195";
    // The send is held while Meta's `failed` (131047) for its id arrives.
    mock.push(Reply::Delayed(
        Duration::from_millis(800),
        Box::new(Reply::OkWithId("wamid.early-fail".into())),
    ));
    send_text(&server, from, "wamid.in.earlyfail", "hi").await;
    mock.wait_for(1, WAIT).await;
    let failed = webhook::status(
        PNID,
        "wamid.early-fail",
        "failed",
        from,
        Some((131047, "Re-engagement message")),
    );
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &failed, SECRET).await;
    assert_eq!(response.status(), 200);
    assert!(
        mock.requests()[0].status.is_none(),
        "the status must arrive while the send is held (the test is too slow)"
    );
    let requests = mock.wait_for(2, WAIT).await;
    assert_eq!(
        requests[1].message_type(),
        Some("template"),
        "{}",
        describe(&requests)
    );
    assert_eq!(requests[1].to(), Some(from));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mock.requests().len(), 2, "{}", describe(&mock.requests()));
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_start_error_not_a_panic() {
    let (server, _mock, dir) = start_host("").await;
    let taken = server.local_addr().to_string();
    let text = config_toml(&taken, &dir.join("data2"), "http://127.0.0.1:9", "[50]", "");
    let config = ServeConfig::from_toml(&text, &dir).expect("config");
    let error = match Server::start(config).await {
        Ok(_) => panic!("a second server on {taken} must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("cannot listen on"), "{error}");
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
