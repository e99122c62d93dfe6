//! WhatsApp Business at the HTTP boundary: strict routing on the number, opt-outs, and
//! campaigns against the mock Graph API.

use std::time::{Duration, Instant};

use plugboard_tests::mock_graph::describe;
use plugboard_tests::webhook;

use crate::admin::{Admin, wait_sends};
use plugboard::serve::Server;
use plugboard::serve::config::ServeConfig;

use crate::serve::{
    SECRET, SETTLE, WAIT, client, config_toml, send_text, start_host, support_flow, temp_dir,
    webhook_url,
};

/// A second endpoint on another number, sharing the app (and so the callback's secret).
const OTHER: &str = "
[[endpoints]]
id = 'other'
flow = 'FLOW'
phone_number_id = '200200200'
verify_token = 'vt2'
app_secret = 's3cret'
access_token = 'EAAother-token'
graph_api_base = 'GRAPH'
mark_read = false
";

/// Meta posts every number of an app to one callback URL: an item for another endpoint's
/// number is answered from that endpoint; one for a number nobody serves is stored and
/// counted, never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_routed_strictly_on_the_phone_number_id() {
    let mock = plugboard_tests::mock_graph::MockGraph::start().await;
    let dir = temp_dir("routing");
    let extra = OTHER
        .replace("GRAPH", &mock.base_url())
        .replace("FLOW", &support_flow().display().to_string());
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50]",
        &extra,
    );
    let config = ServeConfig::from_toml(&text, &dir).expect("config");
    let server = Server::start(config).await.expect("server");
    // Sent to shop's URL, for the other endpoint's number.
    let body = webhook::text_message(
        "200200200",
        "15550001",
        "wamid.r.1",
        "hi",
        webhook::now_ts(),
    );
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);
    let sends = wait_sends(&mock, 1, |b| b["to"] == "15550001").await;
    assert_eq!(sends.len(), 1);
    let request = mock
        .requests()
        .into_iter()
        .find(|r| r.body["to"] == "15550001")
        .expect("the reply");
    assert!(
        request.path.contains("/200200200/messages"),
        "{}",
        request.path
    );
    assert_eq!(request.authorization(), Some("Bearer EAAother-token"));

    // A number nobody serves: acknowledged, kept, counted, not answered.
    let body = webhook::text_message("999999", "15550002", "wamid.r.2", "hi", webhook::now_ts());
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = client()
            .get(format!("http://{}/metrics", server.local_addr()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        if metrics.contains(
            "plugboard_unowned_events_total{endpoint=\"shop\",phone_number_id=\"999999\"} 1",
        ) {
            break;
        }
        assert!(Instant::now() < deadline, "not counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    assert!(
        mock.requests().iter().all(|r| r.body["to"] != "15550002"),
        "an unowned number was answered:\n{}",
        describe(&mock.requests())
    );
    // Kept: a redelivery adds nothing, and the row is in the store as `unowned`.
    let store = server.store();
    let rows = store.pending_events(0, 100).await.expect("events");
    assert!(
        rows.iter().all(|r| r.kind.as_str() != "unowned"),
        "unowned rows are done, not pending"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// STOP opts a user out of campaigns (and START back in); the admin API lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_change_the_opt_out_list() {
    let (server, _mock, dir) = start_host("").await;
    let admin = Admin::new(&server);
    send_text(&server, "15550003", "wamid.o.1", "  Stop ").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, list) = admin.get("/endpoints/shop/opt-outs").await;
        assert_eq!(status, 200, "{list:#}");
        if list["opt_outs"][0]["user"] == "15550003" {
            assert_eq!(list["opt_outs"][0]["reason"], "stop");
            break;
        }
        assert!(Instant::now() < deadline, "no opt-out: {list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_text(&server, "15550003", "wamid.o.2", "START").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, list) = admin.get("/endpoints/shop/opt-outs").await;
        if list["opt_outs"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still opted out: {list:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        admin.delete("/endpoints/shop/opt-outs/15550003").await.0,
        404
    );
    // No account set up: a campaign has no template to check against and is refused.
    let (status, answer) = admin
        .post(
            "/endpoints/shop/campaigns",
            serde_json::json!({"name": "x", "template": "promo", "language": "en_US",
                "recipients": [{"to": "+15550003", "values": {"1": "a"}}]}),
        )
        .await;
    assert_eq!(status, 422, "{answer:#}");
    assert_eq!(answer["error"]["code"], "template_unknown");
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
