//! WhatsApp Business at the HTTP boundary: strict routing on the number, opt-outs, and
//! campaigns against the mock Graph API.

use std::time::{Duration, Instant};

use plugboard_tests::mock_graph::{
    MockAccount, MockGraph, MockNumber, MockTemplate, Reply, describe,
};
use plugboard_tests::webhook;
use serde_json::{Value, json};

use crate::admin::{Admin, wait_sends};
use plugboard::app::Server;
use plugboard::config::ServeConfig;

use crate::serve::{
    ACCESS_TOKEN, ADMIN_TOKEN, PNID, SECRET, SETTLE, VERIFY_TOKEN, WAIT, client, config_toml,
    send_text, start_host, support_flow, temp_dir, webhook_url,
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

/// Waits until `/metrics` has this line.
async fn wait_metric(server: &Server, line: &str) {
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
        if metrics.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` in:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    wait_metric(
        &server,
        "plugboard_unowned_events_total{endpoint=\"shop\",reason=\"unknown_number\"} 1",
    )
    .await;
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

/// The system-user token the mock grants accounts to (a secret: never in an answer).
pub(crate) const SYSTEM_TOKEN: &str = "EAAsystem-user-token-0123456789";

fn mock_accounts(mock: &MockGraph) {
    mock.add_account(
        MockAccount::new("1001", "Shop WABA")
            .with_portfolio("portfolio-1")
            .with_numbers([
                MockNumber {
                    messaging_limit_tier: "TIER_UNLIMITED".into(),
                    ..MockNumber::new(PNID, "+1 555-078-3881")
                },
                MockNumber::new("300300300", "+1 555-000-0300"),
                MockNumber::new("400400400", "+1 555-000-0400"),
            ])
            .with_templates([
                MockTemplate {
                    components: json!([{"type": "BODY", "text": "Hi {{1}}, 10% off today"}]),
                    ..MockTemplate::approved("t1", "promo", "en_US")
                },
                MockTemplate {
                    components: json!([
                        {"type": "BODY", "text": "Order {{1}} ships {{2}}"},
                        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/{{1}}"}]}
                    ]),
                    ..MockTemplate::approved("t2", "order_update", "en_US")
                },
                MockTemplate::new("t3", "paused_one", "en_US", "MARKETING", "PAUSED"),
            ]),
    );
    mock.add_account(MockAccount::new("1002", "Other WABA"));
    mock.grant(SYSTEM_TOKEN, &["1001", "1002"]);
}

async fn setup(admin: &Admin, mock: &MockGraph) -> (u16, Value) {
    admin
        .post(
            "/accounts/setup",
            json!({"access_token": SYSTEM_TOKEN, "graph_api_base": mock.base_url()}),
        )
        .await
}

fn assert_code(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{:#}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{:#}", answer.1);
    assert!(
        !answer.1.to_string().contains(SYSTEM_TOKEN),
        "token leaked: {:#}",
        answer.1
    );
}

/// Every management call against the mock Graph API: discovery with paging, subscription,
/// removal, templates, the Webitel form, and Meta's 190, 200 and 100 errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_templates_are_managed_through_the_graph_api() {
    let (server, mock, dir) = start_host("").await;
    mock_accounts(&mock);
    let admin = Admin::new(&server);

    // Meta's errors, each as our code, nothing stored.
    mock.fail_next("debug_token", Reply::token_expired());
    assert_code(&setup(&admin, &mock).await, 422, "access_token_invalid");
    mock.fail_next("phone_numbers", Reply::permission_denied());
    assert_code(&setup(&admin, &mock).await, 422, "permission_missing");
    assert_eq!(admin.get("/accounts").await.1["accounts"], json!([]));

    let (status, answer) = setup(&admin, &mock).await;
    assert_eq!(status, 200, "{answer:#}");
    assert!(!answer.to_string().contains(SYSTEM_TOKEN));
    let accounts = answer["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), 2);
    let shop = accounts.iter().find(|a| a["id"] == "1001").expect("1001");
    assert_eq!(shop["portfolio"], "portfolio-1");
    assert_eq!(shop["subscribed"], false);
    assert_eq!(shop["token"], "********6789");
    let numbers = shop["numbers"].as_array().expect("numbers");
    assert_eq!(numbers.len(), 3, "all pages read: {shop:#}");
    let own = numbers
        .iter()
        .find(|n| n["id"] == PNID)
        .expect("shop's number");
    assert_eq!(own["endpoint"], "shop");
    assert_eq!(own["messaging_limit_tier"], "TIER_UNLIMITED");
    assert_eq!(own["quality_rating"], "GREEN");
    assert_eq!(own["throughput_level"], "STANDARD");
    // Paged with the cursor against our base URL, the token only in the header.
    let pages: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/1001/phone_numbers") && r.status == Some(200))
        .collect();
    assert_eq!(pages.len(), 2, "{}", describe(&mock.requests()));
    assert!(pages[1].query_param("after").is_some());
    assert!(mock.requests().iter().all(|r| {
        r.query
            .as_deref()
            .is_none_or(|q| !q.contains("access_token"))
            && r.authorization().is_some()
    }));

    // Subscribe and unsubscribe (and Meta refusing one with 100).
    assert_eq!(
        admin.post("/accounts/1001/subscribe", json!({})).await.1["subscribed"],
        true
    );
    assert!(mock.account_state("1001").expect("state").subscribed);
    mock.fail_next(
        "subscribed_apps",
        Reply::invalid_parameter("Unsupported post request"),
    );
    assert_code(
        &admin.post("/accounts/1001/unsubscribe", json!({})).await,
        422,
        "invalid_parameter",
    );
    assert_eq!(
        admin.post("/accounts/1001/unsubscribe", json!({})).await.1["subscribed"],
        false
    );
    assert!(!mock.account_state("1001").expect("state").subscribed);

    // Templates: every page synced, one created (pending), a duplicate refused, one deleted.
    let (status, synced) = admin.post("/accounts/1001/templates/sync", json!({})).await;
    assert_eq!(status, 200, "{synced:#}");
    assert_eq!(synced["templates"].as_array().map(Vec::len), Some(3));
    let body = json!({"name": "welcome", "language": "en_US", "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Welcome {{1}}"}]});
    let (status, created) = admin.post("/accounts/1001/templates", body.clone()).await;
    assert_eq!(status, 201, "{created:#}");
    assert_eq!(created["status"], "PENDING");
    assert_code(
        &admin.post("/accounts/1001/templates", body).await,
        422,
        "invalid_parameter",
    );
    assert_code(
        &admin
            .post(
                "/accounts/1001/templates",
                json!({"name": "Bad Name", "language": "en_US",
            "category": "UTILITY", "components": []}),
            )
            .await,
        400,
        "invalid_field",
    );
    assert_eq!(
        admin.get("/accounts/1001/templates").await.1["templates"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert_eq!(
        admin.delete("/accounts/1001/templates/welcome").await.0,
        204
    );
    assert!(
        mock.account_state("1001")
            .expect("state")
            .template("welcome", "en_US")
            .is_none()
    );
    assert_code(
        &admin.delete("/accounts/1001/templates/welcome").await,
        404,
        "not_found",
    );
    // An agent's template send is checked against the synced template before it is queued.
    let send = "/endpoints/shop/conversations/15550077/send";
    let wrong =
        json!({"template": {"name": "order_update", "language": "en_US", "body_params": ["A-1"]}});
    assert_code(&admin.post(send, wrong).await, 422, "template_invalid");
    let unknown = json!({"template": {"name": "nope", "language": "en_US"}});
    assert_code(&admin.post(send, unknown).await, 422, "template_invalid");
    let right = json!({"template": {"name": "order_update", "language": "en_US",
        "values": {"1": "A-1", "2": "today", "button.0": "A-1"}}});
    let (status, queued) = admin.post(send, right).await;
    assert_eq!(status, 202, "{queued:#}");
    let sent = wait_sends(&mock, 1, |b| b["to"] == "15550077").await;
    assert_eq!(sent[0]["template"]["name"], "order_update");
    assert_eq!(sent.len(), 1, "only the valid send went out");
    mock.fail_next("message_templates", Reply::token_expired());
    assert_code(
        &admin.post("/accounts/1001/templates/sync", json!({})).await,
        422,
        "access_token_invalid",
    );

    // The Webitel form on the webhook URL, behind the admin token.
    let form = |q: &str| format!("{}?whatsapp={q}", webhook_url(&server, "shop"));
    let unauthorised = client().get(form("search")).send().await.expect("form");
    assert_eq!(unauthorised.status(), 401);
    let form_json = |q: &'static str| {
        let url = form(q);
        async move {
            let response = client()
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("form");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (_, search) = form_json("search&id=1001").await;
    assert_eq!(search["accounts"][0]["id"], "1001");
    let (_, subscribed) = form_json("subscribe").await;
    assert_eq!(
        subscribed["accounts"][0]["subscribed"], true,
        "the endpoint's own account: {subscribed:#}"
    );
    assert_eq!(form_json("remove&id=1002").await.0, 200);
    assert_code(&admin.get("/accounts/1002").await, 404, "not_found");
    // setup with the endpoint's own token (which the mock grants too).
    mock.grant(ACCESS_TOKEN, &["1002"]);
    let (_, again) = form_json("setup").await;
    assert_eq!(again["accounts"][0]["id"], "1002", "{again:#}");
    assert_eq!(form_json("nonsense").await.0, 400);
    // The handshake still works on the same URL.
    let handshake = client()
        .get(format!(
            "{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42",
            webhook_url(&server, "shop")
        ))
        .send()
        .await
        .expect("handshake");
    assert_eq!(handshake.text().await.expect("body"), "42");

    assert_eq!(admin.delete("/accounts/1001").await.0, 204);
    assert_code(&admin.get("/accounts/1001").await, 404, "not_found");
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

async fn campaign_host(dir: &std::path::Path, mock: &MockGraph) -> Server {
    // 1000/s × 2 % = 20 campaign messages a second: slow enough to stop half-way.
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50]",
        "campaign_share = 2",
    );
    let config = ServeConfig::from_toml(&text, dir).expect("config");
    Server::start(config).await.expect("server")
}

async fn progress(admin: &Admin, id: i64) -> Value {
    let (status, view) = admin.get(&format!("/endpoints/shop/campaigns/{id}")).await;
    assert_eq!(status, 200, "{view:#}");
    view
}

fn template_sends(mock: &MockGraph) -> Vec<String> {
    mock.requests()
        .into_iter()
        .filter(|r| r.message_type() == Some("template"))
        .filter_map(|r| r.to().map(str::to_string))
        .collect()
}

/// A campaign end to end: wrong values refused before anything is sent; opt-outs (STOP
/// before, 131050 during) honoured; a restart half-way sends nobody twice; a reply enters
/// the flow with the campaign as context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_sent_once_to_each_recipient_across_a_restart() {
    let mock = MockGraph::start().await;
    mock_accounts(&mock);
    let dir = temp_dir("campaign");
    let server = campaign_host(&dir, &mock).await;
    let admin = Admin::new(&server);
    assert_eq!(setup(&admin, &mock).await.0, 200);
    assert_eq!(
        admin
            .post("/accounts/1001/templates/sync", json!({}))
            .await
            .0,
        200
    );

    // Wrong values: refused before anything is stored or sent.
    let wrong = json!({"name": "bad", "template": "order_update", "language": "en_US",
    "recipients": [
        {"to": "+15550100", "values": {"1": "A-1", "2": "today", "button.0": "A-1"}},
        {"to": "+15550101", "values": {"1": "A-2"}}
    ]});
    let answer = admin.post("/endpoints/shop/campaigns", wrong).await;
    assert_code(&answer, 400, "invalid_recipient");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("recipient 2") && m.contains("{{2}}")),
        "{:#}",
        answer.1
    );
    let paused = json!({"name": "p", "template": "paused_one", "language": "en_US",
        "recipients": [{"to": "+15550100", "values": {"1": "x"}}]});
    assert_code(
        &admin.post("/endpoints/shop/campaigns", paused).await,
        400,
        "invalid_recipient",
    );
    assert_eq!(
        admin.get("/endpoints/shop/campaigns").await.1["campaigns"],
        json!([])
    );

    // One user opted out before, one refused by Meta with 131050 during.
    send_text(&server, "15550009", "wamid.c.stop", "STOP").await;
    mock.fail_recipient("15550010", Reply::marketing_opted_out());
    let deadline = Instant::now() + WAIT;
    while admin.get("/endpoints/shop/opt-outs").await.1["opt_outs"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "STOP not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut csv = String::from("to,1\n");
    for i in 0..120 {
        csv.push_str(&format!("+1555000{i:04},User {i}\n"));
    }
    csv.push_str("+15550009,Stopped\n+15550010,Refused\n+1 555 000 0000,Duplicate\n");
    let created: Value = client()
        .post(format!(
            "http://{}/admin/v1/endpoints/shop/campaigns?name=winter&template=promo&language=en_US",
            server.local_addr()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    assert_eq!(created["progress"]["total"], 122, "{created:#}");
    assert_eq!(created["duplicates"], 1);
    let id = created["id"].as_i64().expect("id");

    // Stop half-way, start again on the same store.
    let deadline = Instant::now() + WAIT;
    while template_sends(&mock).len() < 40 {
        assert!(
            Instant::now() < deadline,
            "campaign not sending: {:#}",
            progress(&admin, id).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await.expect("shutdown");
    let before = template_sends(&mock).len();
    assert!(before < 122, "finished before the restart ({before})");
    let server = campaign_host(&dir, &mock).await;
    let admin = Admin::new(&server);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let view = progress(&admin, id).await;
        let p = &view["progress"];
        if view["state"] == "completed" && p["sending"] == 0 && p["queued"] == 0 {
            break view;
        }
        assert!(Instant::now() < deadline, "campaign not done: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sends = template_sends(&mock);
    let unique: std::collections::HashSet<&String> = sends.iter().collect();
    assert_eq!(
        sends.len(),
        unique.len(),
        "a recipient got the campaign twice"
    );
    assert_eq!(sends.len(), 121, "everyone but the opted-out user, once");
    assert!(!unique.contains(&"15550009".to_string()));
    let p = &done["progress"];
    assert_eq!(
        (p["opted_out"].as_u64(), p["failed"].as_u64()),
        (Some(1), Some(1)),
        "{done:#}"
    );
    assert_eq!(
        p["sent"].as_u64().unwrap_or(0) + p["delivered"].as_u64().unwrap_or(0),
        120
    );
    let outs = admin.get("/endpoints/shop/opt-outs").await.1;
    assert!(
        outs["opt_outs"].as_array().is_some_and(|o| o
            .iter()
            .any(|x| x["user"] == "15550010" && x["reason"] == "meta_131050")),
        "{outs:#}"
    );
    // The metrics show the campaign.
    wait_metric(
        &server,
        &format!("plugboard_campaign_recipients{{campaign=\"{id}\",endpoint=\"shop\",state=\"opted_out\"}} 1"),
    )
    .await;

    // Meta pauses the template (a signed status webhook): the next campaign with it is
    // refused before anything is stored, and so is an agent's template send.
    let paused = json!({"object": "whatsapp_business_account", "entry": [{"id": "1001",
        "time": 1800000000, "changes": [{"field": "message_template_status_update", "value": {
            "event": "PAUSED", "message_template_id": "t1", "message_template_name": "promo",
            "message_template_language": "en_US", "reason": "NONE"}}]}]});
    let body = serde_json::to_vec(&paused).expect("json");
    let response = webhook::post(&client(), &webhook_url(&server, "shop"), &body, SECRET).await;
    assert_eq!(response.status(), 200);
    let again = json!({"name": "again", "template": "promo", "language": "en_US",
        "recipients": [{"to": "+15550100", "values": {"1": "x"}}]});
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = admin.post("/endpoints/shop/campaigns", again.clone()).await;
        if answer.0 == 400 {
            assert!(
                answer.1["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("PAUSED")),
                "{:#}",
                answer.1
            );
            break;
        }
        assert_eq!(answer.0, 201, "{:#}", answer.1);
        // Created before the webhook was applied: cancel it and look again.
        let cid = answer.1["id"].as_i64().expect("id");
        admin
            .post(
                &format!("/endpoints/shop/campaigns/{cid}/cancel"),
                json!({}),
            )
            .await;
        assert!(
            Instant::now() < deadline,
            "the template status webhook was not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, templates) = admin.get("/accounts/1001/templates").await;
    assert!(
        templates["templates"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["name"] == "promo" && t["status"] == "PAUSED")),
        "{templates:#}"
    );

    // A recipient answers: the flow sees the campaign.
    send_text(&server, "15550000003", "wamid.c.reply", "hi").await;
    wait_sends(&mock, 1, |b| {
        b["to"] == "15550000003" && b["type"] != "template"
    })
    .await;
    let session = server
        .store()
        .session("shop", "15550000003")
        .await
        .expect("read")
        .expect("session");
    assert!(
        session.contains("\"campaign\"") && session.contains("winter"),
        "{session}"
    );
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

/// The monthly reply quota: replies up to the cap, then the quota message once per user,
/// then silence; the owner hears `quota_reached` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_quota_caps_bot_replies_and_tells_each_user_once() {
    let (server, mock, dir) =
        start_host("[endpoints.reply_quota]\nmonthly = 2\nmessage = 'Out of replies this month.'")
            .await;
    let admin = Admin::new(&server);
    let (url, received) = crate::admin::receiver(0).await;
    let (status, _) = admin
        .post(
            "/endpoints/shop/webhooks",
            json!({"url": url, "events": ["quota_reached"]}),
        )
        .await;
    assert_eq!(status, 201);
    let texts = |to: &str| -> Vec<String> {
        mock.requests()
            .into_iter()
            .filter(|r| r.to() == Some(to))
            .filter_map(|r| {
                r.text().or_else(|| {
                    r.body["interactive"]["body"]["text"]
                        .as_str()
                        .map(str::to_string)
                })
            })
            .collect()
    };
    send_text(&server, "15550201", "wamid.q.1", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == "15550201").await;
    send_text(&server, "15550202", "wamid.q.2", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == "15550202").await;
    // The cap is reached: the next message gets the quota message, once.
    send_text(&server, "15550201", "wamid.q.3", "hours").await;
    wait_sends(&mock, 2, |b| b["to"] == "15550201").await;
    send_text(&server, "15550201", "wamid.q.4", "hours").await;
    tokio::time::sleep(SETTLE).await;
    let first = texts("15550201");
    assert_eq!(first.len(), 2, "{}", describe(&mock.requests()));
    assert_eq!(first[1], "Out of replies this month.");
    // Another user is told once too.
    send_text(&server, "15550202", "wamid.q.5", "hours").await;
    wait_sends(&mock, 2, |b| b["to"] == "15550202").await;
    assert_eq!(texts("15550202")[1], "Out of replies this month.");
    // The owner's event, once.
    let deadline = Instant::now() + WAIT;
    while received.lock().expect("log").is_empty() {
        assert!(Instant::now() < deadline, "no quota_reached event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let events = received.lock().expect("log").clone();
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_slice(&events[0].1).expect("json");
    assert_eq!(event["type"], "quota_reached");
    assert_eq!(event["data"]["monthly"], 2);
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
