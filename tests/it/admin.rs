//! The admin API end to end: a real host (in-process, or a `plugboard-node` process for
//! the log capture), real HTTP with the bearer token, the real store, the compiled
//! WhatsApp component and test guests, and the mock Graph API.
//!
//! Every route is exercised with its success and its refusals (auth, validation, missing
//! things, conflicts). Every admin response is checked for the secrets the test
//! configured: none may appear (only masks ending in their last 4 characters).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_tests::mock_graph::{MOCK_DISPLAY_NUMBER, MockGraph, Reply, describe};
use plugboard_tests::webhook;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::serve::{
    ACCESS_TOKEN, ADMIN_TOKEN, Node, PNID, SECRET, SETTLE, VERIFY_TOKEN, WAIT, client, config_toml,
    greeting, node_config, send_text, start_host, support_flow, webhook_url,
};

/// Long, distinctive secrets for endpoints made through the API: any of them showing up
/// in a response or a log line is a leak, not a coincidence.
const API_ACCESS_TOKEN: &str = "EAAapiAccessToken0987654321zyxw";
const API_APP_SECRET: &str = "apiAppSecret-5f6e7d8c9b0a-qrst";
const API_VERIFY_TOKEN: &str = "apiVerifyToken-1234-5678-mnop";
const SECOND_PNID: &str = "200000000000002";

fn secrets() -> [&'static str; 7] {
    [
        crate::business::SYSTEM_TOKEN,
        ACCESS_TOKEN,
        SECRET,
        ADMIN_TOKEN,
        API_ACCESS_TOKEN,
        API_APP_SECRET,
        API_VERIFY_TOKEN,
    ]
}

/// Fails when any configured secret appears in `text`.
fn assert_no_secret(what: &str, text: &str) {
    for secret in secrets() {
        assert!(
            !text.contains(secret),
            "{what} leaks a secret ({}…):\n{text}",
            &secret[..4]
        );
    }
}

pub(crate) struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub(crate) fn new(server: &Server) -> Admin {
        Admin::at(format!("http://{}", server.local_addr()))
    }

    fn at(base: String) -> Admin {
        Admin {
            base,
            http: client(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/admin/v1{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("admin response body");
        assert_no_secret(&format!("{method} {path}"), &text);
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(ADMIN_TOKEN), None)
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, Some(ADMIN_TOKEN), None)
            .await
    }

    /// Uploads a plugin; `query` is appended as is (`?name=x`).
    async fn install(&self, bytes: Vec<u8>, query: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/admin/v1/plugins{query}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/wasm")
            // A refused upload (413) ends its connection before the body is read; a
            // pooled connection must not carry the next request into that close.
            .header("connection", "close")
            .body(bytes)
            .send()
            .await
            .expect("plugin upload");
        let status = response.status().as_u16();
        let text = response.text().await.expect("upload answer");
        assert_no_secret("plugin upload", &text);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Asserts an error answer: status, `error.code`, and a message containing `mentions`.
fn assert_error(answer: &(u16, Value), status: u16, code: &str, mentions: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body:#}");
    assert_eq!(body["error"]["code"], code, "{body:#}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "error message {message:?} should mention {mentions:?}"
    );
}

/// An endpoint spec for the API, on the support flow, replying to `graph`.
fn second_spec(graph: &str) -> Value {
    json!({
        "id": "second",
        "flow": support_flow(),
        "phone_number_id": SECOND_PNID,
        "access_token": API_ACCESS_TOKEN,
        "app_secret": API_APP_SECRET,
        "verify_token": API_VERIFY_TOKEN,
        "graph_api_base": graph,
        "graph_api_version": "v23.0",
        "mark_read": false,
        "pair_interval_ms": 1
    })
}

async fn restart(server: Server, dir: &std::path::Path, mock: &MockGraph) -> Server {
    server.shutdown().await.expect("shutdown");
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        "",
    );
    let config = ServeConfig::from_toml(&text, dir).expect("config");
    Server::start(config).await.expect("restart")
}

/// Polls until the mock has recorded `n` requests whose body matches `pick`.
pub(crate) async fn wait_sends(
    mock: &MockGraph,
    n: usize,
    pick: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found: Vec<Value> = mock
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && pick(&r.body))
            .map(|r| r.body)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {n} sends, have:\n{}",
            describe(&mock.requests())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text_to(to: &str, text: &str) -> impl Fn(&Value) -> bool {
    let (to, text) = (to.to_string(), text.to_string());
    move |body| body["to"] == to.as_str() && body["text"]["body"] == text.as_str()
}

// ------------------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_admin_token_and_the_document_lists_them_all() {
    let (server, _mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    let doc = admin
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(doc.0, 200);
    let paths = doc.1["paths"].as_object().expect("paths");
    // Each documented route without a token, then with a wrong one: 401 JSON errors.
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{id}", "shop")
                .replace("{name}", "whatsapp")
                .replace("{user}", "16315551181")
                .replace("{hook}", "1")
                .trim_start_matches("/admin/v1")
                .to_string();
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            for token in [None, Some("wrong-token-wrong-token-wrong")] {
                let answer = admin.call(method.clone(), &concrete, token, None).await;
                assert_error(&answer, 401, "unauthorized", "");
            }
        }
    }
    for route in [
        "/plugins",
        "/endpoints",
        "/endpoints/{id}",
        "/endpoints/{id}/enable",
        "/endpoints/{id}/disable",
        "/endpoints/{id}/disconnect",
        "/endpoints/{id}/verify",
        "/endpoints/{id}/qr.svg",
        "/endpoints/{id}/webhooks",
        "/endpoints/{id}/webhooks/{hook}",
        "/endpoints/{id}/conversations",
        "/endpoints/{id}/conversations/{user}",
        "/endpoints/{id}/conversations/{user}/takeover",
        "/endpoints/{id}/conversations/{user}/release",
        "/endpoints/{id}/conversations/{user}/ai",
        "/endpoints/{id}/conversations/{user}/send",
        "/endpoints/{id}/conversations/{user}/inject",
        "/endpoints/{id}/conversations/{user}/notify",
        "/plugins/{name}",
    ] {
        assert!(
            paths.contains_key(&format!("/admin/v1{route}")),
            "{route} missing from the OpenAPI document"
        );
    }
    assert_error(&admin.get("/no/such/route").await, 404, "not_found", "");
    // axum's own rejections come in the same shape.
    assert_error(
        &admin.delete("/endpoints/shop/webhooks/not-a-number").await,
        400,
        "invalid_request",
        "",
    );
    let put = admin
        .call(
            reqwest::Method::PUT,
            "/endpoints/shop",
            Some(ADMIN_TOKEN),
            Some(json!({})),
        )
        .await;
    assert_error(&put, 405, "method_not_allowed", "");
    assert_error(
        &admin.get("/endpoints/shop/conversations?limit=many").await,
        400,
        "invalid_request",
        "limit",
    );
    // Secrets come through the API as values, never as references to the host's
    // environment; a secret sent in the wrong type is not echoed.
    assert_error(
        &admin
            .patch("/endpoints/shop", json!({"access_token": "env:HOME"}))
            .await,
        400,
        "invalid_field",
        "spec.access_token",
    );
    let typed = admin
        .patch(
            "/endpoints/shop",
            json!({"verify_token": 918273645546372u64}),
        )
        .await;
    assert_error(&typed, 400, "invalid_body", "");
    assert!(
        !typed.1.to_string().contains("918273645546372"),
        "{typed:?}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_created_changed_and_removed_without_a_restart_and_survive_one() {
    let (server, mock, dir) = start_host("").await;
    let admin = Admin::new(&server);

    // The TOML endpoint, seeded into the store, secrets masked.
    let (status, list) = admin.get("/endpoints").await;
    assert_eq!(status, 200, "{list:#}");
    let shop = &list["endpoints"][0];
    assert_eq!(shop["id"], "shop");
    assert_eq!(shop["state"], "active");
    assert_eq!(shop["spec"]["access_token"], "********");
    assert_eq!(shop["verify_token"], "********");
    assert_eq!(
        shop["callback_url"],
        format!("http://{}/webhooks/shop", server.local_addr())
    );
    assert_eq!(shop["health"]["status"], "ok", "{shop:#}");
    assert_eq!(shop["plugin"], "whatsapp");

    // Validation: the body, then fields, then the load; nothing is stored on a refusal.
    let spec = second_spec(&mock.base_url());
    let missing = {
        let mut s = spec.clone();
        s.as_object_mut().expect("object").remove("phone_number_id");
        s
    };
    assert_error(
        &admin.post("/endpoints", missing).await,
        400,
        "invalid_body",
        "phone_number_id",
    );
    assert_error(
        &admin
            .post("/endpoints", json!({"id": "x", "flow": "f", "phone_number_id": "1", "verify_token": "v", "colour": "red"}))
            .await,
        400,
        "invalid_body",
        "colour",
    );
    let mut bad_id = spec.clone();
    bad_id["id"] = json!("Not Valid");
    assert_error(
        &admin.post("/endpoints", bad_id).await,
        400,
        "invalid_field",
        "spec.id",
    );
    let mut unsigned = spec.clone();
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("app_secret");
    assert_error(
        &admin.post("/endpoints", unsigned).await,
        400,
        "invalid_field",
        "spec.app_secret",
    );
    let mut broken_flow = spec.clone();
    // Inside flows_dir (outside, the answer would not say whether the file exists).
    broken_flow["flow"] = json!(support_flow().with_file_name("no-such-flow.json"));
    assert_error(
        &admin.post("/endpoints", broken_flow).await,
        422,
        "invalid_config",
        "no-such-flow.json",
    );
    let mut same_number = spec.clone();
    same_number["phone_number_id"] = json!(PNID);
    assert_error(
        &admin.post("/endpoints", same_number).await,
        409,
        "number_in_use",
        "shop",
    );
    assert_error(
        &admin.post("/endpoints", json!([1, 2])).await,
        400,
        "invalid_body",
        "",
    );
    assert_eq!(
        admin.get("/endpoints").await.1["endpoints"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Created: served at once (a signed webhook is answered from its number).
    let (status, created) = admin.post("/endpoints", spec.clone()).await;
    assert_eq!(status, 201, "{created:#}");
    assert_eq!(created["spec"]["access_token"], "********zyxw");
    assert_eq!(created["spec"]["app_secret"], "********qrst");
    assert_eq!(created["verify_token"], "********mnop");
    assert_error(
        &admin.post("/endpoints", spec.clone()).await,
        409,
        "exists",
        "second",
    );
    let from = "4915100000001";
    let body = webhook::text_message(SECOND_PNID, from, "wamid.second.1", "hi", webhook::now_ts());
    let response = webhook::post(
        &client(),
        &webhook_url(&server, "second"),
        &body,
        API_APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 200);
    let sends = wait_sends(&mock, 1, |b| b["to"] == from).await;
    assert_eq!(sends[0]["interactive"]["body"]["text"], greeting(from));
    let second_send = mock
        .requests()
        .into_iter()
        .find(|r| r.body["to"] == from)
        .expect("the send");
    assert_eq!(
        second_send.authorization(),
        Some(format!("Bearer {API_ACCESS_TOKEN}").as_str())
    );
    assert_eq!(second_send.path, format!("/v23.0/{SECOND_PNID}/messages"));

    // Patched: a masked secret sent back keeps the stored one; fields name themselves.
    let (status, patched) = admin
        .patch(
            "/endpoints/second",
            json!({"message_delay_ms": 250, "access_token": "********zyxw", "handover": {"mute_for_secs": 60}}),
        )
        .await;
    assert_eq!(status, 200, "{patched:#}");
    assert_eq!(patched["spec"]["message_delay_ms"], 250);
    assert_eq!(patched["spec"]["handover"]["mute_for_secs"], 60);
    assert_eq!(patched["spec"]["access_token"], "********zyxw");
    assert_error(
        &admin
            .patch("/endpoints/second", json!({"id": "third"}))
            .await,
        400,
        "invalid_field",
        "spec.id",
    );
    assert_error(
        &admin
            .patch("/endpoints/second", json!({"throughput_per_second": 0}))
            .await,
        400,
        "invalid_field",
        "spec.throughput_per_second",
    );
    assert_error(
        &admin
            .patch("/endpoints/second", json!({"message_delay_ms": "soon"}))
            .await,
        400,
        "invalid_body",
        "",
    );
    assert_error(
        &admin.patch("/endpoints/second", json!(7)).await,
        400,
        "invalid_body",
        "",
    );
    assert_error(
        &admin.patch("/endpoints/nope", json!({})).await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &admin.get("/endpoints/nope").await,
        404,
        "not_found",
        "nope",
    );

    // Disabled: acknowledged, stored, not answered; enabled again: answered.
    let (status, disabled) = admin.post("/endpoints/second/disable", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["health"]["status"], "disabled");
    let before = mock.requests().len();
    let body = webhook::text_message(
        SECOND_PNID,
        from,
        "wamid.second.2",
        "hours",
        webhook::now_ts(),
    );
    let response = webhook::post(
        &client(),
        &webhook_url(&server, "second"),
        &body,
        API_APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mock.requests().len(), before, "a disabled endpoint replied");
    let (status, enabled) = admin.post("/endpoints/second/enable", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(enabled["enabled"], true);
    assert_error(
        &admin.post("/endpoints/nope/enable", json!({})).await,
        404,
        "not_found",
        "",
    );
    assert_error(
        &admin.post("/endpoints/nope/disable", json!({})).await,
        404,
        "not_found",
        "",
    );

    // Survives a restart: the patch, the created endpoint; the TOML seed does not undo it.
    let server = restart(server, &dir, &mock).await;
    let admin = Admin::new(&server);
    let (status, second) = admin.get("/endpoints/second").await;
    assert_eq!(status, 200, "{second:#}");
    assert_eq!(second["spec"]["message_delay_ms"], 250);
    assert!(second["last_webhook_ms"].as_u64().is_some(), "{second:#}");

    // Disconnected: credentials gone, not served, history kept; verify says so.
    let (status, gone) = admin.post("/endpoints/second/disconnect", json!({})).await;
    assert_eq!(status, 200, "{gone:#}");
    assert_eq!(gone["state"], "disconnected");
    assert_error(
        &admin.post("/endpoints/second/enable", json!({})).await,
        409,
        "disconnected",
        "credentials",
    );
    assert!(gone["spec"].get("access_token").is_none(), "{gone:#}");
    assert!(gone["spec"].get("app_secret").is_none(), "{gone:#}");
    let response = webhook::post(
        &client(),
        &webhook_url(&server, "second"),
        &body,
        API_APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 404);
    let (status, report) = admin.post("/endpoints/second/verify", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["code"], "disconnected");
    let (status, conversations) = admin.get("/endpoints/second/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(
        conversations["conversations"][0]["user"], from,
        "{conversations:#}"
    );
    assert_error(
        &admin.post("/endpoints/nope/disconnect", json!({})).await,
        404,
        "not_found",
        "",
    );
    // Reconnected by giving credentials again.
    let (status, back) = admin
        .patch(
            "/endpoints/second",
            json!({"access_token": API_ACCESS_TOKEN, "app_secret": API_APP_SECRET, "verify_token": API_VERIFY_TOKEN}),
        )
        .await;
    assert_eq!(status, 200, "{back:#}");
    assert_eq!(back["state"], "active");

    // Deleted: gone now and after a restart.
    assert_eq!(admin.delete("/endpoints/second").await.0, 204);
    assert_error(
        &admin.delete("/endpoints/second").await,
        404,
        "not_found",
        "",
    );
    assert_eq!(
        webhook::post(
            &client(),
            &webhook_url(&server, "second"),
            &body,
            API_APP_SECRET
        )
        .await
        .status(),
        404
    );
    let server = restart(server, &dir, &mock).await;
    let admin = Admin::new(&server);
    assert_error(&admin.get("/endpoints/second").await, 404, "not_found", "");
    assert_eq!(admin.get("/endpoints/shop").await.0, 200);

    // The config file's endpoint, deleted, stays deleted although the file still has it;
    // its id can be created again.
    assert_eq!(admin.delete("/endpoints/shop").await.0, 204);
    let server = restart(server, &dir, &mock).await;
    let admin = Admin::new(&server);
    assert_error(
        &admin.get("/endpoints/shop").await,
        404,
        "not_found",
        "shop",
    );
    let hi = webhook::text_message(PNID, from, "wamid.shop.x", "hi", webhook::now_ts());
    assert_eq!(
        webhook::post(&client(), &webhook_url(&server, "shop"), &hi, SECRET)
            .await
            .status(),
        404
    );
    let mut again = second_spec(&mock.base_url());
    again["id"] = json!("shop");
    assert_eq!(admin.post("/endpoints", again).await.0, 201);
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_credentials_and_explains_graph_errors() {
    let (server, mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    // Before verify the number is unknown: no link, no QR code; no handshake yet.
    let (_, shop) = admin.get("/endpoints/shop").await;
    assert_eq!(shop["wa_me_link"], Value::Null);
    assert_eq!(shop["last_handshake_ms"], Value::Null);
    let handshake = client()
        .get(format!(
            "{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=77",
            webhook_url(&server, "shop")
        ))
        .send()
        .await
        .expect("handshake");
    assert_eq!(handshake.status(), 200);
    let (_, shop) = admin.get("/endpoints/shop").await;
    assert!(shop["last_handshake_ms"].as_u64().is_some(), "{shop:#}");
    assert_error(
        &admin.get("/endpoints/shop/qr.svg").await,
        404,
        "not_found",
        "verify",
    );

    let (status, report) = admin.post("/endpoints/shop/verify", json!({})).await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["phone_number"]["display_phone_number"],
        MOCK_DISPLAY_NUMBER
    );
    assert_eq!(report["phone_number"]["id"], PNID);
    let lookup = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .expect("the phone number lookup");
    assert_eq!(lookup.path, format!("/v23.0/{PNID}"));
    assert_eq!(
        lookup.authorization(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );

    // Now the endpoint shows its wa.me link and serves the QR code as SVG.
    let (_, shop) = admin.get("/endpoints/shop").await;
    assert_eq!(shop["wa_me_link"], "https://wa.me/15550783881");
    assert_eq!(shop["display_phone_number"], MOCK_DISPLAY_NUMBER);
    let qr = client()
        .get(format!(
            "http://{}/admin/v1/endpoints/shop/qr.svg",
            server.local_addr()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("qr");
    assert_eq!(qr.status(), 200);
    assert_eq!(
        qr.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    let svg = qr.text().await.expect("svg");
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");

    for (code, expected) in [
        (190, "access_token_invalid"),
        (200, "permission_missing"),
        (100, "phone_number_id_unknown"),
    ] {
        mock.push(Reply::Error {
            status: 400,
            code,
            details: "scripted".into(),
        });
        let (status, report) = admin.post("/endpoints/shop/verify", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(report["ok"], false, "{report:#}");
        assert_eq!(report["problems"][0]["code"], expected, "{report:#}");
    }
    assert_error(
        &admin.post("/endpoints/nope/verify", json!({})).await,
        404,
        "not_found",
        "",
    );

    // A send the Graph API refuses for the token degrades the endpoint's health.
    mock.push(Reply::Error {
        status: 401,
        code: 190,
        details: "Session has expired".into(),
    });
    send_text(&server, "16315551199", "wamid.v.1", "hi").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, shop) = admin.get("/endpoints/shop").await;
        if shop["health"]["status"] == "degraded" {
            assert!(
                shop["health"]["problems"][0]
                    .as_str()
                    .is_some_and(|p| p.contains("refused the access token")),
                "{shop:#}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{shop:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.expect("shutdown");

    // A Graph API that is not there is a problem report, not an error.
    let (server, _mock, dir2) = start_host("").await;
    let admin = Admin::new(&server);
    // Where the token goes changes only with the token given in the same request.
    assert_error(
        &admin
            .patch(
                "/endpoints/shop",
                json!({"graph_api_base": "http://127.0.0.1:9"}),
            )
            .await,
        400,
        "invalid_field",
        "spec.graph_api_base",
    );
    let (status, _) = admin
        .patch(
            "/endpoints/shop",
            json!({"graph_api_base": "http://127.0.0.1:9", "access_token": ACCESS_TOKEN}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, report) = admin.post("/endpoints/shop/verify", json!({})).await;
    assert_eq!(
        report["problems"][0]["code"], "graph_unreachable",
        "{report:#}"
    );
    let (_, no_token) = admin
        .patch("/endpoints/shop", json!({"access_token": null}))
        .await;
    assert!(
        no_token["health"]["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("access_token"))
    );
    let (_, report) = admin.post("/endpoints/shop/verify", json!({})).await;
    assert_eq!(
        report["problems"][0]["code"], "no_access_token",
        "{report:#}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_installs_are_checked_and_nothing_bad_is_stored() {
    use plugboard::plugins::test_guests;
    let (server, _mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    let read = |path: &str| std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));

    let (status, list) = admin.get("/plugins").await;
    assert_eq!(status, 200);
    let builtin = &list["plugins"][0];
    assert_eq!(builtin["name"], "whatsapp");
    assert_eq!(builtin["builtin"], true);
    assert_eq!(builtin["wit_version"], "0.1.1");
    assert_eq!(builtin["used_by"], json!(["shop"]));
    assert!(
        builtin["settings"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["name"] == "app_secret" && s["secret"] == true)),
        "{builtin:#}"
    );

    // The bundled adapter under its own name collides with the builtin; under another
    // name it installs.
    let bundled = plugboard::plugins::BUNDLED_WHATSAPP.to_vec();
    assert_error(
        &admin.install(bundled.clone(), "").await,
        409,
        "builtin",
        "name",
    );
    let (status, installed) = admin
        .install(
            bundled.clone(),
            "?name=wa2&max_memory_mb=32&call_timeout_ms=800",
        )
        .await;
    assert_eq!(status, 201, "{installed:#}");
    assert_eq!(installed["name"], "wa2");
    assert_eq!(installed["builtin"], false);
    assert_eq!(
        installed["limits"],
        json!({"max_memory_mb": 32, "call_timeout_ms": 800})
    );
    assert_eq!(installed["sha256"], builtin["sha256"]);
    assert_eq!(installed["size_bytes"], bundled.len());
    assert_error(
        &admin.install(bundled.clone(), "?name=wa2").await,
        409,
        "exists",
        "replace",
    );
    // Limits change without a new upload.
    let (status, limited) = admin
        .patch("/plugins/wa2", json!({"call_timeout_ms": 250}))
        .await;
    assert_eq!(status, 200, "{limited:#}");
    assert_eq!(
        limited["limits"],
        json!({"max_memory_mb": 32, "call_timeout_ms": 250})
    );
    assert_error(
        &admin
            .patch("/plugins/wa2", json!({"call_timeout_ms": 0}))
            .await,
        400,
        "invalid_field",
        "call_timeout_ms",
    );
    assert_error(
        &admin.patch("/plugins/wa2", json!({"memory": 1})).await,
        400,
        "invalid_body",
        "memory",
    );
    assert_error(
        &admin.patch("/plugins/whatsapp", json!({})).await,
        409,
        "builtin",
        "",
    );
    assert_error(
        &admin.patch("/plugins/none", json!({})).await,
        404,
        "not_found",
        "none",
    );
    assert_eq!(
        admin
            .install(bundled.clone(), "?name=wa2&replace=true")
            .await
            .0,
        201
    );
    assert_eq!(
        admin.get("/plugins/wa2").await.1["version"],
        builtin["version"]
    );

    // Refusals, each with the loader's reason, none stored.
    assert_error(
        &admin.install(read(test_guests::WRONG_WORLD), "").await,
        422,
        "plugin_rejected",
        "plugboard:channel/adapter",
    );
    assert_error(
        &admin
            .install(read(test_guests::IMPORTS_HTTP), "?name=http")
            .await,
        422,
        "plugin_rejected",
        "wasi:http",
    );
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_error(
        &admin.install(random, "?name=noise").await,
        422,
        "plugin_rejected",
        "",
    );
    assert_error(
        &admin.install(Vec::new(), "").await,
        400,
        "invalid_body",
        ".wasm",
    );
    assert_error(
        &admin
            .install(bundled.clone(), "?name=wa3&max_memory_mb=0")
            .await,
        400,
        "invalid_field",
        "max_memory_mb",
    );
    assert_error(
        &admin.install(bundled.clone(), "?name=Bad%20Name").await,
        400,
        "invalid_field",
        "name",
    );
    assert_error(
        &admin
            .install(vec![0u8; 33 * 1024 * 1024], "?name=huge")
            .await,
        413,
        "too_large",
        "",
    );
    let names: Vec<Value> = admin.get("/plugins").await.1["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("whatsapp"), json!("wa2")]);

    // An endpoint moves to the installed plugin; it cannot be removed while in use.
    let (status, moved) = admin
        .patch("/endpoints/shop", json!({"plugin": "wa2"}))
        .await;
    assert_eq!(status, 200, "{moved:#}");
    assert_eq!(moved["plugin"], "wa2");
    assert_error(
        &admin
            .patch("/endpoints/shop", json!({"plugin": "absent"}))
            .await,
        422,
        "invalid_config",
        "absent",
    );
    assert_error(
        &admin.delete("/plugins/wa2").await,
        409,
        "plugin_in_use",
        "shop",
    );
    // Limits the endpoint cannot run under are refused whole: nothing changes.
    assert_error(
        &admin
            .patch("/plugins/wa2", json!({"max_memory_mb": 1}))
            .await,
        422,
        "plugin_rejected",
        "endpoint `shop`",
    );
    assert_eq!(
        admin.get("/plugins/wa2").await.1["limits"]["max_memory_mb"],
        64
    );
    let (_, shop) = admin.get("/endpoints/shop").await;
    assert_eq!(shop["plugin"], "wa2");
    assert_eq!(shop["health"]["status"], "ok", "{shop:#}");
    assert_error(&admin.delete("/plugins/whatsapp").await, 409, "builtin", "");
    admin
        .patch("/endpoints/shop", json!({"plugin": null}))
        .await;
    assert_eq!(admin.delete("/plugins/wa2").await.0, 204);
    assert_error(&admin.get("/plugins/wa2").await, 404, "not_found", "wa2");
    assert_error(&admin.delete("/plugins/wa2").await, 404, "not_found", "wa2");
    assert_eq!(admin.get("/plugins/whatsapp").await.0, 200);
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_take_over_send_release_and_toggle_the_ai() {
    let (server, mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    let user = "16315551190";
    send_text(&server, user, "wamid.a.1", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == user).await;

    let (status, list) = admin.get("/endpoints/shop/conversations").await;
    assert_eq!(status, 200, "{list:#}");
    let conversation = &list["conversations"][0];
    assert_eq!(conversation["user"], user);
    assert_eq!(conversation["window"]["open"], true);
    assert_eq!(conversation["handover"]["active"], false);
    assert_eq!(conversation["ai_enabled"], true);
    assert_error(
        &admin.get("/endpoints/nope/conversations").await,
        404,
        "not_found",
        "",
    );
    assert_error(
        &admin.get("/endpoints/shop/conversations/4900000").await,
        404,
        "not_found",
        "",
    );

    // Take over: the bot is muted; the user's next message gets no bot reply.
    let (status, taken) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/takeover"),
            json!({"reason": "vip"}),
        )
        .await;
    assert_eq!(status, 200, "{taken:#}");
    assert_eq!(taken["handover"]["active"], true);
    assert_eq!(taken["handover"]["reason"], "vip");
    let before = mock.requests().len();
    send_text(&server, user, "wamid.a.2", "hours").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mock.requests().len(), before, "the muted bot replied");

    // The agent speaks; the transcript shows it with its delivery status.
    let (status, queued) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/send"),
            json!({"text": "Hello, Ana here."}),
        )
        .await;
    assert_eq!(status, 202, "{queued:#}");
    assert_eq!(queued["outbox_ids"].as_array().map(Vec::len), Some(1));
    wait_sends(&mock, 1, text_to(user, "Hello, Ana here.")).await;
    assert_error(
        &admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/send"),
                json!({"text": "a", "template": {"name": "t", "language": "en"}}),
            )
            .await,
        400,
        "invalid_field",
        "exactly one",
    );
    assert_error(
        &admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/send"),
                json!({"txt": "a"}),
            )
            .await,
        400,
        "invalid_body",
        "txt",
    );
    let deadline = Instant::now() + WAIT;
    let transcript = loop {
        let (_, detail) = admin
            .get(&format!("/endpoints/shop/conversations/{user}"))
            .await;
        let turns = detail["transcript"].as_array().cloned().unwrap_or_default();
        if turns
            .iter()
            .any(|t| t["text"] == "Hello, Ana here." && t["status"] == "sent")
        {
            break turns;
        }
        assert!(Instant::now() < deadline, "{detail:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let inbound: Vec<&Value> = transcript
        .iter()
        .filter(|t| t["direction"] == "in")
        .collect();
    assert_eq!(inbound.len(), 2, "{transcript:#?}");
    assert_eq!(inbound[0]["text"], "hi");
    assert_eq!(inbound[1]["text"], "hours");
    assert!(
        transcript
            .iter()
            .any(|t| t["direction"] == "out" && t["kind"] == "choices"),
        "{transcript:#?}"
    );

    // Released: the bot answers again.
    let (status, released) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/release"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(released["handover"]["active"], false);
    assert_error(
        &admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/release"),
                json!({}),
            )
            .await,
        409,
        "not_applied",
        "",
    );
    send_text(&server, user, "wamid.a.3", "hours").await;
    wait_sends(&mock, 1, |b| {
        b["to"] == user
            && b["text"]["body"]
                .as_str()
                .is_some_and(|t| t.contains("Monday"))
    })
    .await;

    // AI off: silence without a handover; on: answered.
    let (status, off) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/ai"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(off["ai_enabled"], false);
    assert_error(
        &admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/ai"),
                json!({"enabled": "no"}),
            )
            .await,
        400,
        "invalid_body",
        "",
    );
    let before = mock.requests().len();
    send_text(&server, user, "wamid.a.4", "hours").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        mock.requests().len(),
        before,
        "the bot replied with the AI off"
    );
    let (_, on) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/ai"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(on["ai_enabled"], true);

    // Inject runs the flow as if the user wrote (it was asking "Anything else?", and
    // "no" ends the conversation); notify goes straight to the user.
    let before = mock.requests().len();
    let (status, injected) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/inject"),
            json!({"text": "no"}),
        )
        .await;
    assert_eq!(status, 202, "{injected:#}");
    assert_eq!(
        injected["outbox_ids"].as_array().map(Vec::len),
        Some(1),
        "{injected:#}"
    );
    let sends = wait_sends(&mock, before + 1, |b| b["to"] == user).await;
    assert_eq!(
        sends.last().map(|b| b["text"]["body"].clone()),
        Some(json!("Thanks User 1190, have a nice day!"))
    );
    assert_error(
        &admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/inject"),
                json!({}),
            )
            .await,
        400,
        "invalid_field",
        "text",
    );
    let (status, _) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/notify"),
            json!({"text": "Your order shipped."}),
        )
        .await;
    assert_eq!(status, 202);
    wait_sends(&mock, 1, text_to(user, "Your order shipped.")).await;
    assert_error(
        &admin
            .post(
                "/endpoints/nope/conversations/1/notify",
                json!({"text": "x"}),
            )
            .await,
        404,
        "not_found",
        "",
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_send_outside_the_window_is_409_and_a_template_goes_out() {
    let (server, mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    let user = "16315551191";
    // The user's last message is 25 hours old: the window is closed.
    let old = webhook::now_ts() - 25 * 3600;
    let body = webhook::text_message(PNID, user, "wamid.old.1", "hi", old);
    assert_eq!(
        webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET)
            .await
            .status(),
        200
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, detail) = admin
            .get(&format!("/endpoints/shop/conversations/{user}"))
            .await;
        if status == 200 {
            assert_eq!(detail["window"]["open"], false, "{detail:#}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = mock.requests().len();
    for action in ["send", "notify"] {
        assert_error(
            &admin
                .post(
                    &format!("/endpoints/shop/conversations/{user}/{action}"),
                    json!({"text": "Still there?"}),
                )
                .await,
            409,
            "WA_WINDOW_CLOSED",
            "template",
        );
    }
    // Never wrote at all: only a template.
    assert_error(
        &admin
            .post(
                "/endpoints/shop/conversations/4917000999/notify",
                json!({"text": "Hi"}),
            )
            .await,
        409,
        "WA_WINDOW_CLOSED",
        "template",
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(mock.requests().len(), before, "a refused send reached Meta");

    let (status, queued) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/send"),
            json!({"template": {"name": "follow_up", "language": "en_US", "body_params": ["Ana"]}}),
        )
        .await;
    assert_eq!(status, 202, "{queued:#}");
    let sent = wait_sends(&mock, 1, |b| b["to"] == user && b["type"] == "template").await;
    assert_eq!(sent[0]["template"]["name"], "follow_up");
    assert_eq!(sent[0]["template"]["language"]["code"], "en_US");
    assert_eq!(
        sent[0]["template"]["components"][0]["parameters"][0]["text"],
        "Ana"
    );
    // A first template to a new user starts the conversation.
    let (status, _) = admin
        .post(
            "/endpoints/shop/conversations/4917000999/notify",
            json!({"template": {"name": "welcome", "language": "en_US"}}),
        )
        .await;
    assert_eq!(status, 202);
    wait_sends(&mock, 1, |b| {
        b["to"] == "4917000999" && b["type"] == "template"
    })
    .await;
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// What the test receiver got: headers and raw body per request.
pub(crate) type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A local HTTP receiver for event webhooks; answers 500 to the first `fail_first`
/// requests, then 200.
pub(crate) async fn receiver(fail_first: usize) -> (String, Received) {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let mut log = log.lock().expect("log");
                log.push((headers, body));
                if log.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), received)
}

/// Checks a delivery's Standard Webhooks signature the way a receiver would.
fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a whsec_ secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header("webhook-signature") == expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_webhooks_are_signed_retried_and_verified_by_a_receiver() {
    let (server, mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    let (url, received) = receiver(1).await;

    assert_error(
        &admin
            .post("/endpoints/shop/webhooks", json!({"url": "ftp://x"}))
            .await,
        400,
        "invalid_field",
        "url",
    );
    assert_error(
        &admin
            .post(
                "/endpoints/shop/webhooks",
                json!({"url": url, "events": ["lead_captured"]}),
            )
            .await,
        400,
        "invalid_field",
        "lead_captured",
    );
    assert_error(
        &admin
            .post(
                "/endpoints/shop/webhooks",
                json!({"url": url, "secret": "short"}),
            )
            .await,
        400,
        "invalid_field",
        "secret",
    );
    assert_error(
        &admin
            .post("/endpoints/nope/webhooks", json!({"url": url}))
            .await,
        404,
        "not_found",
        "",
    );
    let (status, hook) = admin
        .post("/endpoints/shop/webhooks", json!({"url": url}))
        .await;
    assert_eq!(status, 201, "{hook:#}");
    let secret = hook["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(hook["events"].as_array().map(Vec::len), Some(7));
    let (_, hooks) = admin.get("/endpoints/shop/webhooks").await;
    assert_eq!(hooks["webhooks"][0]["url"], url.as_str());
    assert_ne!(
        hooks["webhooks"][0]["secret"],
        secret.as_str(),
        "listed unmasked"
    );

    let user = "16315551192";
    send_text(&server, user, "wamid.e.1", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == user).await;
    for action in ["takeover", "release"] {
        let (status, answer) = admin
            .post(
                &format!("/endpoints/shop/conversations/{user}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{action}: {answer:#}");
    }

    // The first delivery failed (500) and came again with the same id.
    let wanted = [
        "conversation_started",
        "message_received",
        "message_sent",
        "handover_started",
        "handover_ended",
    ];
    let deadline = Instant::now() + WAIT;
    let deliveries = loop {
        let got: Vec<(HeaderMap, Value, Bytes)> = received
            .lock()
            .expect("log")
            .iter()
            .map(|(h, b)| {
                (
                    h.clone(),
                    serde_json::from_slice(b).unwrap_or(Value::Null),
                    b.clone(),
                )
            })
            .collect();
        let types: Vec<&str> = got
            .iter()
            .filter_map(|(_, v, _)| v["type"].as_str())
            .collect();
        if wanted.iter().all(|w| types.contains(w)) && got.len() > wanted.len() {
            break got;
        }
        assert!(Instant::now() < deadline, "deliveries so far: {types:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (headers, value, raw) in &deliveries {
        assert!(
            verify_signature(&secret, headers, raw),
            "bad signature on {value:#}"
        );
        assert_eq!(value["endpoint"], "shop");
        assert_eq!(value["data"]["conversation"], user, "{value:#}");
        assert!(!verify_signature(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            headers,
            raw
        ));
    }
    let first_id = deliveries[0].0.get("webhook-id").cloned();
    assert_eq!(
        deliveries
            .iter()
            .filter(|(h, _, _)| h.get("webhook-id") == first_id.as_ref())
            .count(),
        2,
        "the failed delivery was retried once with its id"
    );
    let received_event = deliveries
        .iter()
        .find(|(_, v, _)| v["type"] == "message_received")
        .expect("message_received");
    assert_eq!(received_event.1["data"]["message_id"], "wamid.e.1");
    // One conversation, one start (the agent actions on it start nothing).
    let starts: std::collections::HashSet<_> = deliveries
        .iter()
        .filter(|(_, v, _)| v["type"] == "conversation_started")
        .map(|(_, v, _)| v["id"].clone())
        .collect();
    assert_eq!(starts.len(), 1, "{deliveries:#?}");
    // Read receipts are not messages: exactly one message_sent, for the greeting. Counted
    // by id: deliveries run concurrently, so the one the receiver failed (and saw twice)
    // may be any of them.
    let sent: std::collections::HashSet<_> = deliveries
        .iter()
        .filter(|(_, v, _)| v["type"] == "message_sent")
        .map(|(_, v, _)| v["id"].clone())
        .collect();
    assert_eq!(sent.len(), 1, "{deliveries:#?}");

    // A receiver that always fails gets the first try and the schedule's three retries
    // (50, 100, 200 ms here), then the delivery is given up.
    let (broken_url, broken) = receiver(usize::MAX).await;
    let (status, _) = admin
        .post(
            "/endpoints/shop/webhooks",
            json!({"url": broken_url, "events": ["message_received"]}),
        )
        .await;
    assert_eq!(status, 201);
    send_text(&server, "16315551193", "wamid.e.broken", "hi").await;
    let deadline = Instant::now() + WAIT;
    while broken.lock().expect("log").len() < 4 {
        assert!(Instant::now() < deadline, "retries did not come");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tries = broken.lock().expect("log").clone();
    assert_eq!(tries.len(), 4, "one try and three retries, then dead");
    let ids: Vec<_> = tries
        .iter()
        .map(|(h, _)| h.get("webhook-id").cloned())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

    // Removed: nothing more is delivered to it.
    let id = hook["id"].as_i64().expect("id");
    assert_eq!(
        admin
            .delete(&format!("/endpoints/shop/webhooks/{id}"))
            .await
            .0,
        204
    );
    assert_error(
        &admin
            .delete(&format!("/endpoints/shop/webhooks/{id}"))
            .await,
        404,
        "not_found",
        "",
    );
    let count = received.lock().expect("log").len();
    send_text(&server, user, "wamid.e.2", "hours").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(received.lock().expect("log").len(), count);
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// An endpoint's `handover.webhook_url` is served by the event webhooks: registered as a
/// subscription of the endpoint, its notices are written in the step's commit (one
/// `handover_started` with the transcript, never re-sent by a restart), signed the
/// Standard Webhooks way and retried with the same id after a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handover_webhook_url_gets_signed_retried_notices_from_the_commit() {
    let (url, received) = receiver(1).await;
    let extra = format!("[endpoints.handover]\nwebhook_url = '{url}'\n");
    let (server, mock, dir) = start_host(&extra).await;
    let admin = Admin::new(&server);
    let user = "16315551194";
    send_text(&server, user, "wamid.h.1", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == user).await;
    send_text(&server, user, "wamid.h.2", "talk to a human").await;
    wait_sends(&mock, 2, |b| b["to"] == user).await;
    let (status, _) = admin
        .post(
            &format!("/endpoints/shop/conversations/{user}/release"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // The URL is one of the endpoint's event webhooks (listed, its key masked).
    let (_, hooks) = admin.get("/endpoints/shop/webhooks").await;
    let hook = hooks["webhooks"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["url"] == url.as_str()).cloned())
        .unwrap_or_else(|| panic!("webhook_url not registered: {hooks:#}"));
    assert_eq!(
        hook["events"],
        json!(["handover_started", "handover_ended", "message_received"])
    );

    let wanted = ["handover_started", "handover_ended"];
    let deadline = Instant::now() + WAIT;
    let deliveries = loop {
        let got: Vec<(HeaderMap, Value)> = received
            .lock()
            .expect("log")
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap_or(Value::Null)))
            .collect();
        let types: Vec<&str> = got.iter().filter_map(|(_, v)| v["type"].as_str()).collect();
        if wanted.iter().all(|w| types.contains(w)) && got.len() > 4 {
            break got;
        }
        assert!(Instant::now() < deadline, "deliveries so far: {types:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (headers, value) in &deliveries {
        // Signed: a Standard Webhooks id, timestamp and v1 HMAC on every request.
        let signature = headers
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(signature.starts_with("v1,"), "unsigned: {value:#}");
        assert!(headers.get("webhook-id").is_some() && headers.get("webhook-timestamp").is_some());
        assert_eq!(value["data"]["conversation"], user, "{value:#}");
    }
    // Retried: the first request failed (500) and came again with its id.
    let first_id = deliveries[0].0.get("webhook-id").cloned();
    assert_eq!(
        deliveries
            .iter()
            .filter(|(h, _)| h.get("webhook-id") == first_id.as_ref())
            .count(),
        2
    );
    let started: Vec<&Value> = deliveries
        .iter()
        .filter(|(_, v)| v["type"] == "handover_started")
        .map(|(_, v)| v)
        .collect();
    let ids: std::collections::HashSet<_> = started.iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids.len(), 1, "one handover, one notice: {started:#?}");
    let transcript: Vec<&str> = started[0]["data"]["transcript"]
        .as_array()
        .expect("a transcript")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(transcript.contains(&"talk to a human"), "{transcript:?}");
    assert_eq!(started[0]["data"]["reason"], "keyword: talk to a human");

    // Nothing of it is sent again: a restart finds the steps committed and the
    // deliveries done (the old in-step POST is gone: every request above was signed).
    let count = received.lock().expect("log").len();
    server.shutdown().await.expect("shutdown");
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        &extra,
    );
    let config = ServeConfig::from_toml(&text, &dir).expect("config");
    let server = Server::start(config).await.expect("restart");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(received.lock().expect("log").len(), count);
    let (_, hooks) = Admin::new(&server).get("/endpoints/shop/webhooks").await;
    assert_eq!(
        hooks["webhooks"].as_array().map(Vec::len),
        Some(1),
        "registered once: {hooks:#}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// A real `plugboard` process with debug logs: every secret it was configured with is
/// kept out of its output while the admin API, a webhook, a send and a verify run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_a_response() {
    let mock = MockGraph::start().await;
    let (dir, base, config) = node_config("secrets", &mock, "[50, 100]");
    let mut node = Node::spawn_with_env(&config, &dir, 1, &[("RUST_LOG", "debug")]);
    node.wait_ready(&base).await;
    let admin = Admin::at(base.clone());

    let (status, _) = admin
        .post("/endpoints", second_spec(&mock.base_url()))
        .await;
    assert_eq!(status, 201);
    let body = webhook::text_message(
        SECOND_PNID,
        "4915100000009",
        "wamid.s.1",
        "hi",
        webhook::now_ts(),
    );
    let http = client();
    assert_eq!(
        webhook::post(
            &http,
            &format!("{base}/webhooks/second"),
            &body,
            API_APP_SECRET
        )
        .await
        .status(),
        200
    );
    // A wrong signature and a wrong admin token are logged as refusals, without values.
    assert_eq!(
        webhook::post(
            &http,
            &format!("{base}/webhooks/second"),
            &body,
            "wrong-secret"
        )
        .await
        .status(),
        403
    );
    admin
        .call(
            reqwest::Method::GET,
            "/endpoints",
            Some("not-the-admin-token-at-all"),
            None,
        )
        .await;
    wait_sends(&mock, 1, |b| b["to"] == "4915100000009").await;
    mock.push(Reply::Error {
        status: 401,
        code: 190,
        details: "expired".into(),
    });
    admin.post("/endpoints/second/verify", json!({})).await;
    admin.post("/endpoints/shop/verify", json!({})).await;
    admin.get("/endpoints").await;
    admin.get("/endpoints/second").await;
    admin
        .patch("/endpoints/second", json!({"message_delay_ms": 10}))
        .await;
    admin
        .post(
            "/endpoints/second/webhooks",
            json!({"url": "http://127.0.0.1:9/x", "secret": "hook-secret-0000-1111-2222"}),
        )
        .await;
    admin.get("/endpoints/second/webhooks").await;
    admin.get("/endpoints/second/conversations").await;
    admin
        .get("/endpoints/second/conversations/4915100000009")
        .await;
    admin.post("/endpoints/second/disconnect", json!({})).await;
    tokio::time::sleep(SETTLE).await;
    node.kill();

    let output = node.all_output();
    assert!(
        !output.contains("hook-secret-0000-1111-2222"),
        "the event webhook secret is in the logs"
    );
    assert!(
        output.contains("webhook refused"),
        "debug logs were captured:\n{output}"
    );
    assert!(output.lines().count() > 20, "too few log lines:\n{output}");
    assert_no_secret("the host's logs", &output);
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
