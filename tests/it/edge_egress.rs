//! The HTTP edge's limits, the egress policy and the confinement of endpoint files, tried
//! the way an attacker would, against a running host on 127.0.0.1.
//!
//! Edge: raw TCP clients that trickle headers (slowloris), sit on an idle keep-alive,
//! trickle a body, or hold every allowed connection. Egress: loopback receivers that must
//! never be reached when no `[egress] allow` lists them (refusals of private, link-local
//! and metadata addresses are shown without traffic, by the URL check and the unit tests
//! of `plugboard::egress`), a redirect that must not be followed, an oversized body, and a
//! template value that tries to change the URL's path and query. Files: flows outside
//! `flows_dir` (directly, through `..`, through a symlink) refused without their content.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_tests::mock_graph::{MockGraph, describe};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::Admin;
use crate::serve::{
    ACCESS_TOKEN, SECRET, SETTLE, VERIFY_TOKEN, WAIT, config_toml, flows_dir, send_text,
    support_flow, temp_dir,
};

const FROM: &str = "16315551181";

/// A host from the shared test config, changed by `edit` (the config text in, out).
async fn host_with(edit: impl FnOnce(String) -> String) -> (Server, MockGraph, PathBuf) {
    let mock = MockGraph::start().await;
    let dir = temp_dir("edge");
    let text = edit(config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        "",
    ));
    let config = ServeConfig::from_toml(&text, &dir)
        .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
    let server = Server::start(config)
        .await
        .unwrap_or_else(|e| panic!("server does not start: {e:#}"));
    (server, mock, dir)
}

/// Adds an `[http]` table to the config.
fn with_http(text: String, http: &str) -> String {
    text.replacen(
        "[event_webhooks]\n",
        &format!("[http]\n{http}\n\n[event_webhooks]\n"),
        1,
    )
}

/// The config without its `[egress] allow` list.
fn without_allow_list(text: String) -> String {
    text.replacen("allow = ['127.0.0.1']", "allow = []", 1)
}

/// The config serving `flow` from the flows dir `flows` instead of the support flow.
fn with_flow(text: String, flows: &Path, flow: &Path) -> String {
    text.replacen(
        &format!("flows_dir = '{}'", flows_dir().display()),
        &format!("flows_dir = '{}'", flows.display()),
        1,
    )
    .replacen(
        &format!("flow = '{}'", support_flow().display()),
        &format!("flow = '{}'", flow.display()),
        1,
    )
}

/// Reads until `needle` has arrived (true) or the connection ended (false).
async fn read_until(stream: &mut TcpStream, needle: &str, within: Duration) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return true;
                }
            }
            Err(_) => panic!(
                "nothing like {needle:?} within {within:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Reads until the peer closes; how long that took, or `None` within `limit`. What was
/// read is returned too.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, String) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    Some(started.elapsed()),
                    String::from_utf8_lossy(&seen).into(),
                );
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (None, String::from_utf8_lossy(&seen).into()),
        }
    }
}

const KEEP_ALIVE_GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: plugboard\r\n\r\n";

// ------------------------------------------------------------------------------ edge

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_at_a_time_are_cut_at_the_header_timeout() {
    let (server, _mock, _dir) = host_with(|t| {
        with_http(
            t,
            "header_read_timeout_ms = 500\nidle_timeout_ms = 60000\nbody_timeout_ms = 60000",
        )
    })
    .await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Slowloris: a head that never ends, a byte every 100 ms.
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: plugboard\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a head trickled for 5 s is still being read (header_read_timeout_ms = 500)"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2_500),
        "closed only after {took:?}"
    );
    trickle.abort();
    // The host still serves.
    let mut fresh = TcpStream::connect(server.local_addr()).await.unwrap();
    fresh.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert!(read_until(&mut fresh, "ok", Duration::from_secs(5)).await);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_is_closed_after_the_idle_timeout() {
    let (server, _mock, _dir) = host_with(|t| {
        with_http(
            t,
            "header_read_timeout_ms = 10000\nidle_timeout_ms = 600\nbody_timeout_ms = 60000",
        )
    })
    .await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert!(read_until(&mut stream, "ok\n", Duration::from_secs(5)).await);
    let (closed, _) = closed_within(&mut stream, Duration::from_secs(5)).await;
    let took = closed.expect("an idle keep-alive is still open after 5 s (idle_timeout_ms = 600)");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(3_000),
        "closed after {took:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_by_the_body_deadline_with_408() {
    let (server, _mock, _dir) = host_with(|t| {
        with_http(
            t,
            "header_read_timeout_ms = 10000\nidle_timeout_ms = 60000\nbody_timeout_ms = 500",
        )
    })
    .await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(
            b"POST /webhooks/shop HTTP/1.1\r\nHost: plugboard\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    // 100 bytes at a byte per 200 ms: 20 s if nothing stops it.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        ended.is_ok(),
        "a body trickled for 5 s is still being read (body_timeout_ms = 500); got {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_millis(3_000),
        "{:?}",
        started.elapsed()
    );
    trickle.abort();
    // Nothing was stored for the cut request.
    let depths = server.store().depths().await.unwrap();
    assert_eq!(depths.inbox, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_cap_wait_until_one_closes() {
    let (server, _mock, _dir) = host_with(|t| {
        with_http(
            t,
            "header_read_timeout_ms = 10000\nidle_timeout_ms = 10000\nmax_connections = 2",
        )
    })
    .await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(KEEP_ALIVE_GET).await.unwrap();
        assert!(read_until(&mut stream, "ok\n", Duration::from_secs(5)).await);
        held.push(stream);
    }
    // The third connects (the kernel's backlog) but is not served while two are held.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(KEEP_ALIVE_GET).await.unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served while max_connections = 2 were held: {early:?}"
    );
    drop(held.pop());
    assert!(read_until(&mut third, "ok\n", Duration::from_secs(5)).await);
    drop(held);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_still_finishes_in_flight_requests() {
    let (server, _mock, _dir) = host_with(|t| t).await;
    let mut idle = TcpStream::connect(server.local_addr()).await.unwrap();
    idle.write_all(KEEP_ALIVE_GET).await.unwrap();
    assert!(read_until(&mut idle, "ok\n", Duration::from_secs(5)).await);
    // An idle keep-alive does not hold the shutdown up.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown waits on an idle connection")
        .unwrap();
    let (closed, _) = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the idle connection outlived the shutdown"
    );
}

// ------------------------------------------------------------------------------ egress

/// A loopback receiver: records each request's path and query; `/redirect` answers 302
/// to `{redirect_to}/hit`, `/big` answers a 2 MiB JSON body, anything else `{}`.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<String>>>,
    redirect_to: Arc<Mutex<String>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = {
            let receiver = receiver.clone();
            Router::new().fallback(move |uri: Uri| {
                let receiver = receiver.clone();
                async move {
                    let path = uri.path_and_query().map(|p| p.as_str().to_string());
                    let path = path.unwrap_or_default();
                    receiver.seen.lock().unwrap().push(path.clone());
                    if uri.path() == "/redirect" {
                        let to = format!("{}/hit", receiver.redirect_to.lock().unwrap());
                        return (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response();
                    }
                    if uri.path() == "/big" {
                        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
                        return (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "application/json")],
                            big,
                        )
                            .into_response();
                    }
                    axum::Json(json!({"status": "shipped"})).into_response()
                }
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, base)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A flow that calls `url` (a template) on the first message and says how it went.
fn http_flow(dir: &Path, url: &str) -> PathBuf {
    let flow = json!({
        "schema_version": 1,
        "name": "egress",
        "start": "call",
        "nodes": {
            "call": {
                "type": "http", "method": "GET", "url": url, "timeout_ms": 3000,
                "error_key": "err", "next": "ok", "on_error": "failed"
            },
            "ok": {"type": "say", "messages": [{"Text": "call ok"}], "next": "done"},
            "failed": {"type": "say", "messages": [{"Text": "call failed: {{context.err}}"}], "next": "done"},
            "done": {"type": "ask", "messages": [], "next": "call"}
        }
    });
    let path = dir.join("egress.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&flow).unwrap()).unwrap();
    path
}

/// A host serving [`http_flow`] for `url` from a flows dir of its own.
async fn flow_host(url: &str, edit: impl FnOnce(String) -> String) -> (Server, MockGraph) {
    let flows = temp_dir("egress-flows");
    let flow = http_flow(&flows, url);
    let (server, mock, _dir) = host_with(|t| edit(with_flow(t, &flows, &flow))).await;
    (server, mock)
}

/// The first text the bot sent to [`FROM`].
async fn reply(mock: &MockGraph) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = mock
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.body["to"] == FROM)
            .find_map(|r| r.body["text"]["body"].as_str().map(str::to_string));
        if let Some(text) = text {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no reply; the mock saw:\n{}",
            describe(&mock.requests())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_http_node_to_loopback_takes_the_error_path_without_an_allow_list() {
    let (receiver, base) = Receiver::start().await;
    let port = base.rsplit(':').next().unwrap().to_string();
    // The host comes from a template, so the flow loads and the call is refused when it
    // is made (a literal loopback URL is refused at load: see below).
    let url = format!("http://{{{{input.text}}}}:{port}/orders");
    let (server, mock) = flow_host(&url, without_allow_list).await;
    send_text(&server, FROM, "wamid.E1", "127.0.0.1").await;
    let text = reply(&mock).await;
    assert!(text.starts_with("call failed: "), "{text}");
    assert!(text.contains("egress"), "{text}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.seen(), Vec::<String>::new());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_loopback_url_in_a_flow_is_refused_at_load() {
    let (receiver, base) = Receiver::start().await;
    let flows = temp_dir("egress-literal");
    let flow = http_flow(&flows, &format!("{base}/orders"));
    // From the config file: the start fails, naming the node.
    let dir = temp_dir("egress-literal-host");
    let text = without_allow_list(with_flow(
        config_toml(
            "127.0.0.1:0",
            &dir.join("data"),
            "http://127.0.0.1:9",
            "[50]",
            "",
        ),
        &flows,
        &flow,
    ));
    let config = ServeConfig::from_toml(&text, &dir).expect("config");
    let error = match Server::start(config).await {
        Ok(_) => panic!("a flow calling loopback was served without an allow list"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("egress"), "{error}");
    assert!(error.contains("call"), "{error}");
    // Through the admin API: 422.
    let support = flows.join("support.json");
    std::fs::copy(support_flow(), &support).unwrap();
    let (server, mock, _dir) =
        host_with(|t| without_allow_list(with_flow(t, &flows, &support))).await;
    let mut spec = other_spec(&mock.base_url());
    spec["flow"] = json!(flow);
    let (status, body) = Admin::new(&server).post("/endpoints", spec).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("egress"), "{body}");
    assert_eq!(receiver.seen(), Vec::<String>::new());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_event_webhook_urls_are_refused_at_creation() {
    let (receiver, base) = Receiver::start().await;
    let (server, _mock, _dir) = host_with(without_allow_list).await;
    let admin = Admin::new(&server);
    // Only the loopback one could have been reached; the rest are refused by the URL
    // check alone (no connection is ever tried).
    for url in [
        format!("{base}/hook"),
        "http://localhost:9/hook".to_string(),
        "http://[::1]:9/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/hook".to_string(),
        "http://192.168.1.1/hook".to_string(),
        "http://[fd00::1]/hook".to_string(),
        "http://metadata.google.internal/computeMetadata/v1/".to_string(),
    ] {
        let (status, body) = admin
            .post("/endpoints/shop/webhooks", json!({"url": url}))
            .await;
        assert!(status == 400 || status == 422, "{url}: {status} {body}");
        assert!(body.to_string().contains("egress"), "{url}: {body}");
    }
    let (_, hooks) = admin.get("/endpoints/shop/webhooks").await;
    assert_eq!(hooks["webhooks"], json!([]), "{hooks}");
    send_text(&server, FROM, "wamid.E2", "hello").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.seen(), Vec::<String>::new());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_handover_webhook_is_refused_at_patch_and_at_load() {
    let (receiver, base) = Receiver::start().await;
    let (server, _mock, dir) = host_with(without_allow_list).await;
    let (status, body) = Admin::new(&server)
        .patch(
            "/endpoints/shop",
            json!({"handover": {"webhook_url": format!("{base}/handover")}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("handover.webhook_url"), "{body}");
    assert!(body.to_string().contains("egress"), "{body}");
    server.shutdown().await.unwrap();
    // The config file is checked the same way.
    let text = without_allow_list(config_toml(
        "127.0.0.1:0",
        &dir.join("data2"),
        "http://127.0.0.1:9",
        "[50]",
        &format!("[endpoints.handover]\nwebhook_url = '{base}/handover'\n"),
    ));
    let error = ServeConfig::from_toml(&text, &dir).unwrap_err().to_string();
    assert!(error.contains("handover.webhook_url"), "{error}");
    assert_eq!(receiver.seen(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let (first, first_base) = Receiver::start().await;
    let (second, second_base) = Receiver::start().await;
    *first.redirect_to.lock().unwrap() = second_base;
    // Both on loopback, allowed by the shared config's `[egress] allow`.
    let (server, mock) = flow_host(&format!("{first_base}/redirect"), |t| t).await;
    send_text(&server, FROM, "wamid.E3", "hi").await;
    let text = reply(&mock).await;
    assert!(text.contains("302"), "{text}");
    assert_eq!(first.seen(), vec!["/redirect".to_string()]);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        second.seen(),
        Vec::<String>::new(),
        "the redirect was followed"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_body_takes_the_error_path() {
    let (receiver, base) = Receiver::start().await;
    let (server, mock) = flow_host(&format!("{base}/big"), |t| t).await;
    send_text(&server, FROM, "wamid.E4", "hi").await;
    let text = reply(&mock).await;
    assert!(text.starts_with("call failed: "), "{text}");
    assert!(text.contains("larger than"), "{text}");
    assert_eq!(receiver.seen(), vec!["/big".to_string()]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_values_cannot_change_the_url_path_or_query() {
    let (receiver, base) = Receiver::start().await;
    let url = format!("{base}/api/orders/{{{{input.text}}}}?fields=status");
    let (server, mock) = flow_host(&url, |t| t).await;
    send_text(&server, FROM, "wamid.E5", "7/../../admin?delete=1#x").await;
    let text = reply(&mock).await;
    assert_eq!(text, "call ok");
    assert_eq!(
        receiver.seen(),
        vec!["/api/orders/7%2F..%2F..%2Fadmin%3Fdelete%3D1%23x?fields=status".to_string()]
    );
    server.shutdown().await.unwrap();
}

// ------------------------------------------------------------------------------ files

const MARKER: &str = "SECRET-MARKER-7f3a91";

/// A second endpoint's spec for the admin API.
fn other_spec(graph: &str) -> Value {
    json!({
        "id": "other",
        "flow": support_flow(),
        "phone_number_id": "200200200",
        "access_token": ACCESS_TOKEN,
        "app_secret": SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_api_base": graph,
        "mark_read": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_outside_flows_dir_are_refused_without_their_content() {
    let root = temp_dir("files");
    let flows = root.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let support = flows.join("support.json");
    std::fs::copy(support_flow(), &support).unwrap();
    // A file that is not a flow, holding a secret in its values (a schema error would
    // quote them), outside flows_dir; and one like it inside.
    let secret = format!(
        "{{\"schema_version\": 1, \"name\": {{\"token\": \"{MARKER}\"}}, \"start\": \"{MARKER}\", \"nodes\": {{\"a\": {{\"type\": \"say\", \"messages\": \"{MARKER}\", \"next\": 7}}}}}}"
    );
    std::fs::write(root.join("secret.json"), &secret).unwrap();
    // Inside, node ids and references are the designer's own and are named in errors;
    // values never are.
    std::fs::write(
        flows.join("not-a-flow.json"),
        secret.replace(&format!("\"start\": \"{MARKER}\""), "\"start\": \"a\""),
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("secret.json"), flows.join("link.json")).unwrap();

    let (server, mock, _dir) = host_with(|t| with_flow(t, &flows, &support)).await;
    let admin = Admin::new(&server);
    let mut outside = vec![
        root.join("secret.json"),
        flows.join("../secret.json"),
        flows.join("sub/../../secret.json"),
        // Missing: the same answer as for an existing file.
        root.join("missing.json"),
        PathBuf::from("/etc/passwd"),
    ];
    if cfg!(unix) {
        outside.push(flows.join("link.json"));
    }
    let mut answers = Vec::new();
    for path in &outside {
        let mut spec = other_spec(&mock.base_url());
        spec["flow"] = json!(path);
        let (status, body) = admin.post("/endpoints", spec).await;
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        assert_eq!(status, 422, "{}: {body}", path.display());
        assert!(
            message.contains("flow path is outside flows_dir"),
            "{}: {message}",
            path.display()
        );
        assert!(!body.to_string().contains(MARKER), "{body}");
        answers.push(message);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "answers differ: {answers:?}");

    // Inside flows_dir, a broken file is reported without quoting its values.
    let mut spec = other_spec(&mock.base_url());
    spec["flow"] = json!(flows.join("not-a-flow.json"));
    let (status, body) = admin.post("/endpoints", spec).await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(MARKER), "{body}");

    // PATCH is held to the same rule.
    let (status, body) = admin
        .patch("/endpoints/shop", json!({"flow": root.join("secret.json")}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(MARKER), "{body}");
    server.shutdown().await.unwrap();
}
