//! Tenant isolation and token binding at the wire: a running host on 127.0.0.1, real
//! webhook bodies (signed or not), the admin API and CLI, and mock Graph APIs on loopback.
//!
//! The host serves four endpoints: `shop` (tenant A: app secret [`SECRET`], its account set
//! up from the mock), `sibling` (another number of A's app: the same secret), `rival`
//! (another app: its own secret) and `open` (`insecure_skip_signature`). An attacker holds
//! `rival`'s secret or posts to `open`, and names A's number or account. Nothing of that may
//! act for A: no reply with A's token, no session, no template change, no opt-out; the items
//! are stored as `unowned` and counted by reason. Items between `shop` and `sibling` (one
//! app) still route to each other.
//!
//! Token binding: a new `graph_api_base` with the token as GET shows it (masked), an `env:`
//! reference or no token is refused, by the API, the CLI and account setup, and a second
//! mock standing in for the attacker's base must see no request at all, also after a
//! `verify` and a Webitel `?whatsapp=setup`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_tests::mock_graph::{MockAccount, MockGraph, MockNumber, MockTemplate, describe};
use plugboard_tests::webhook;
use serde_json::{Value, json};

use crate::admin::{Admin, wait_sends};
use crate::serve::{
    ACCESS_TOKEN, ADMIN_TOKEN, PNID, SECRET, WAIT, client, config_toml, send_text, support_flow,
    temp_dir, webhook_url,
};

const SIBLING_NUMBER: &str = "200200200";
const SIBLING_TOKEN: &str = "EAAsibling-token-0001";
const RIVAL_NUMBER: &str = "300300300";
const RIVAL_SECRET: &str = "rival-app-secret";
const RIVAL_TOKEN: &str = "EAArival-token-0002";
const OPEN_NUMBER: &str = "400400400";
const OPEN_TOKEN: &str = "EAAopen-token-0003";
/// The system-user token A's account is set up with.
const SYSTEM_TOKEN: &str = "EAAisolation-system-token-4242";

/// Three more endpoints after `shop`, every one replying to the mock at `GRAPH`.
const OTHERS: &str = "
[[endpoints]]
id = 'sibling'
flow = 'FLOW'
phone_number_id = 'SIBLING_NUMBER'
verify_token = 'vt-sibling'
app_secret = 'SECRET'
access_token = 'SIBLING_TOKEN'
graph_api_base = 'GRAPH'
mark_read = false

[[endpoints]]
id = 'rival'
flow = 'FLOW'
phone_number_id = 'RIVAL_NUMBER'
verify_token = 'vt-rival'
app_secret = 'RIVAL_SECRET'
access_token = 'RIVAL_TOKEN'
graph_api_base = 'GRAPH'
mark_read = false

[[endpoints]]
id = 'open'
flow = 'FLOW'
phone_number_id = 'OPEN_NUMBER'
verify_token = 'vt-open'
insecure_skip_signature = true
access_token = 'OPEN_TOKEN'
graph_api_base = 'GRAPH'
mark_read = false
";

struct Tenants {
    server: Server,
    mock: MockGraph,
    admin: Admin,
    dir: std::path::PathBuf,
}

impl Tenants {
    async fn start(name: &str) -> Tenants {
        let mock = MockGraph::start().await;
        let dir = temp_dir(name);
        let extra = OTHERS
            .replace("GRAPH", &mock.base_url())
            .replace("FLOW", &support_flow().display().to_string())
            .replace("SIBLING_NUMBER", SIBLING_NUMBER)
            .replace("SIBLING_TOKEN", SIBLING_TOKEN)
            .replace("RIVAL_NUMBER", RIVAL_NUMBER)
            .replace("RIVAL_SECRET", RIVAL_SECRET)
            .replace("RIVAL_TOKEN", RIVAL_TOKEN)
            .replace("OPEN_NUMBER", OPEN_NUMBER)
            .replace("OPEN_TOKEN", OPEN_TOKEN)
            .replace("SECRET", SECRET);
        let text = config_toml(
            "127.0.0.1:0",
            &dir.join("data"),
            &mock.base_url(),
            "[50]",
            &extra,
        );
        let config = ServeConfig::from_toml(&text, &dir)
            .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
        let server = Server::start(config).await.expect("server");
        let admin = Admin::new(&server);
        Tenants {
            server,
            mock,
            admin,
            dir,
        }
    }

    /// Posts `body` to `endpoint`'s webhook URL, signed with `secret` (or unsigned), and
    /// asserts the acknowledgement.
    async fn post(&self, endpoint: &str, body: &[u8], secret: Option<&str>) {
        let url = webhook_url(&self.server, endpoint);
        let response = match secret {
            Some(secret) => webhook::post(&client(), &url, body, secret).await,
            None => client()
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .expect("unsigned POST"),
        };
        assert_eq!(
            response.status(),
            200,
            "POST to {endpoint} not acknowledged"
        );
    }

    /// Whether `/metrics` counts `n` unowned items at `endpoint` for `reason`.
    async fn has_unowned(&self, endpoint: &str, reason: &str, n: u32) -> bool {
        let line = format!(
            "plugboard_unowned_events_total{{endpoint=\"{endpoint}\",reason=\"{reason}\"}} {n}"
        );
        let metrics = client()
            .get(format!("http://{}/metrics", self.server.local_addr()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        // The label set is bounded: never a number or account from a request.
        assert!(
            metrics
                .lines()
                .filter(|l| l.starts_with("plugboard_unowned_events_total{"))
                .all(|l| l.contains(",reason=\"") && !l.contains("phone_number_id")),
            "unowned items labelled by something else than the reason:\n{metrics}"
        );
        metrics.lines().any(|l| l == line)
    }

    /// Waits until `/metrics` counts `n` unowned items at `endpoint` for `reason`.
    async fn wait_unowned(&self, endpoint: &str, reason: &str, n: u32) {
        let deadline = Instant::now() + WAIT;
        while !self.has_unowned(endpoint, reason, n).await {
            assert!(
                Instant::now() < deadline,
                "no {n} unowned at {endpoint} for {reason}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Mock requests addressed to `to`.
    fn sent_to(&self, to: &str) -> Vec<String> {
        self.mock
            .requests()
            .into_iter()
            .filter(|r| r.body["to"] == to)
            .map(|r| r.summary())
            .collect()
    }

    async fn stop(self) {
        self.server.shutdown().await.expect("shutdown");
        let _ = std::fs::remove_dir_all(self.dir);
    }
}

/// A's account as the mock knows it: the fixtures' account id, owning A's number, with the
/// two templates `account_template_status_paused.json` changes, both APPROVED.
fn mock_account(mock: &MockGraph) {
    mock.add_account(
        MockAccount::new(webhook::ACCOUNT_ID, "Tenant A")
            .with_numbers([MockNumber::new(PNID, "+1 555-078-3881")])
            .with_templates([
                MockTemplate::approved("1689556908129832", "order_confirmation", "en_US"),
                MockTemplate::approved("806312974732579", "welcome_template", "en_US"),
            ]),
    );
    mock.grant(SYSTEM_TOKEN, &[webhook::ACCOUNT_ID]);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../adapter/tests/fixtures/inbound")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn template_statuses(admin: &Admin) -> Vec<(String, String)> {
    let (status, list) = admin
        .get(&format!("/accounts/{}/templates", webhook::ACCOUNT_ID))
        .await;
    assert_eq!(status, 200, "{list:#}");
    let mut found: Vec<(String, String)> = list["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

async fn opted_out(admin: &Admin, endpoint: &str) -> Vec<String> {
    let (status, list) = admin.get(&format!("/endpoints/{endpoint}/opt-outs")).await;
    assert_eq!(status, 200, "{list:#}");
    list["opt_outs"]
        .as_array()
        .expect("opt_outs")
        .iter()
        .map(|o| o["user"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ------------------------------------------------------------------------- isolation

/// An unsigned POST to the `insecure_skip_signature` endpoint, naming A's number: stored
/// as unowned, no request with A's token, no conversation of A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_endpoint_cannot_speak_for_another_tenant() {
    let t = Tenants::start("iso-unsigned").await;
    let body = webhook::text_message(PNID, "15550101", "wamid.iso.u1", "hi", webhook::now_ts());
    t.post("open", &body, None).await;

    // A barrier: a genuine message to A is answered, so the forged one was long decoded.
    send_text(&t.server, "15550102", "wamid.iso.u2", "hi").await;
    wait_sends(&t.mock, 1, |b| b["to"] == "15550102").await;
    assert!(
        t.sent_to("15550101").is_empty(),
        "the forged item was answered:\n{}",
        describe(&t.mock.requests())
    );
    let store = t.server.store();
    for endpoint in ["shop", "open"] {
        assert_eq!(
            store.session(endpoint, "15550101").await.expect("read"),
            None,
            "a conversation of `{endpoint}` was started"
        );
    }
    t.wait_unowned("open", "untrusted_sender", 1).await;
    // Its own number still works unsigned (local testing).
    let own = webhook::text_message(
        OPEN_NUMBER,
        "15550103",
        "wamid.iso.u3",
        "hi",
        webhook::now_ts(),
    );
    t.post("open", &own, None).await;
    wait_sends(&t.mock, 1, |b| b["to"] == "15550103").await;
    let reply = t
        .mock
        .requests()
        .into_iter()
        .find(|r| r.body["to"] == "15550103")
        .expect("the reply");
    assert_eq!(
        reply.authorization(),
        Some(format!("Bearer {OPEN_TOKEN}").as_str())
    );
    t.stop().await;
}

/// Another app's endpoint, signed with that app's secret, naming A's number: unowned, no
/// reply. Two endpoints of one app (one secret) still route to each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_signature_does_not_reach_this_app_but_one_app_routes_across() {
    let t = Tenants::start("iso-rival").await;
    let body = webhook::text_message(PNID, "15550201", "wamid.iso.r1", "hi", webhook::now_ts());
    t.post("rival", &body, Some(RIVAL_SECRET)).await;

    // One app: shop's URL, sibling's number → answered from sibling with its token; and
    // back the other way.
    let to_sibling = webhook::text_message(
        SIBLING_NUMBER,
        "15550202",
        "wamid.iso.r2",
        "hi",
        webhook::now_ts(),
    );
    t.post("shop", &to_sibling, Some(SECRET)).await;
    let to_shop = webhook::text_message(PNID, "15550203", "wamid.iso.r3", "hi", webhook::now_ts());
    t.post("sibling", &to_shop, Some(SECRET)).await;
    wait_sends(&t.mock, 2, |b| {
        b["to"] == "15550202" || b["to"] == "15550203"
    })
    .await;
    let requests = t.mock.requests();
    let reply = |to: &str| {
        requests
            .iter()
            .find(|r| r.body["to"] == to)
            .unwrap_or_else(|| panic!("no reply to {to}"))
    };
    assert!(
        reply("15550202")
            .path
            .contains(&format!("/{SIBLING_NUMBER}/messages"))
    );
    assert_eq!(
        reply("15550202").authorization(),
        Some(format!("Bearer {SIBLING_TOKEN}").as_str())
    );
    assert!(
        reply("15550203")
            .path
            .contains(&format!("/{PNID}/messages"))
    );
    assert_eq!(
        reply("15550203").authorization(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );

    assert!(
        t.sent_to("15550201").is_empty(),
        "the other app's item was answered:\n{}",
        describe(&t.mock.requests())
    );
    let store = t.server.store();
    assert_eq!(store.session("shop", "15550201").await.expect("read"), None);
    assert_eq!(
        store.session("rival", "15550201").await.expect("read"),
        None
    );
    t.wait_unowned("rival", "untrusted_sender", 1).await;
    t.stop().await;
}

/// A forged `message_template_status_update` for A's account (the adapter's fixture),
/// through another app's endpoint and through the unsigned one: A's templates stay
/// APPROVED. The same body through A's own endpoint is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_template_status_does_not_change_another_accounts_template() {
    let t = Tenants::start("iso-template").await;
    mock_account(&t.mock);
    let (status, answer) = t
        .admin
        .post(
            "/accounts/setup",
            json!({"access_token": SYSTEM_TOKEN, "graph_api_base": t.mock.base_url()}),
        )
        .await;
    assert_eq!(status, 200, "{answer:#}");
    let (status, answer) = t
        .admin
        .post(
            &format!("/accounts/{}/templates/sync", webhook::ACCOUNT_ID),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer:#}");
    let approved = vec![
        ("order_confirmation".to_string(), "APPROVED".to_string()),
        ("welcome_template".to_string(), "APPROVED".to_string()),
    ];
    assert_eq!(template_statuses(&t.admin).await, approved);

    let forged = fixture("account_template_status_paused.json");
    t.post("rival", &forged, Some(RIVAL_SECRET)).await;
    t.post("open", &forged, None).await;
    // Two items in the body, each refused at each endpoint; until both are counted (so
    // decoded and dispatched), A's templates never change.
    let deadline = Instant::now() + WAIT;
    loop {
        assert_eq!(
            template_statuses(&t.admin).await,
            approved,
            "a forged status was applied"
        );
        if t.has_unowned("rival", "foreign_account", 2).await
            && t.has_unowned("open", "foreign_account", 2).await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forged items were not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(template_statuses(&t.admin).await, approved);

    // Signed by A's app at A's endpoint: applied.
    t.post("shop", &forged, Some(SECRET)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now = template_statuses(&t.admin).await;
        if now
            == [
                ("order_confirmation".to_string(), "PAUSED".to_string()),
                ("welcome_template".to_string(), "REJECTED".to_string()),
            ]
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's own webhook not applied: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.stop().await;
}

/// A forged STOP (and a forged 131050 failure) for A's user through an untrusted endpoint:
/// no opt-out recorded for A. A genuine STOP is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_stop_does_not_opt_out_another_endpoints_user() {
    let t = Tenants::start("iso-stop").await;
    let stop = webhook::text_message(PNID, "15550301", "wamid.iso.s1", "STOP", webhook::now_ts());
    t.post("open", &stop, None).await;
    let stop = webhook::text_message(PNID, "15550302", "wamid.iso.s2", "STOP", webhook::now_ts());
    t.post("rival", &stop, Some(RIVAL_SECRET)).await;
    // Meta's 131050 (the user stopped marketing messages) as a forged failed status.
    let failed = webhook::status(
        PNID,
        "wamid.iso.s3",
        "failed",
        "15550303",
        Some((131_050, "stopped marketing messages")),
    );
    t.post("rival", &failed, Some(RIVAL_SECRET)).await;

    // The genuine one, at A's endpoint: recorded (and a barrier for the forged ones).
    send_text(&t.server, "15550304", "wamid.iso.s4", "STOP").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let users = opted_out(&t.admin, "shop").await;
        if !users.is_empty() {
            assert_eq!(users, ["15550304"], "a forged opt-out was recorded for A");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the genuine STOP was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for endpoint in ["open", "rival"] {
        assert_eq!(opted_out(&t.admin, endpoint).await, Vec::<String>::new());
    }
    t.wait_unowned("open", "untrusted_sender", 1).await;
    t.wait_unowned("rival", "untrusted_sender", 2).await;
    // Counted, so decoded: and still nothing for A but the genuine STOP.
    assert_eq!(opted_out(&t.admin, "shop").await, ["15550304"]);
    t.stop().await;
}

// ---------------------------------------------------------------------- token binding

/// `plugboard ARGS --url <host> --token <admin token>` in-process; (exit code, stderr).
async fn cli(server: &Server, args: &[&str]) -> (ExitCode, String, String) {
    let mut argv: Vec<String> = std::iter::once("plugboard")
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    argv.extend([
        "--url".to_string(),
        format!("http://{}", server.local_addr()),
        "--token".to_string(),
        ADMIN_TOKEN.to_string(),
    ]);
    tokio::task::spawn_blocking(move || {
        let mut input: &[u8] = &[];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = plugboard::cli::run_with_input(argv, &mut input, false, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    })
    .await
    .expect("the CLI thread")
}

#[track_caller]
fn assert_refused(answer: &(u16, Value), field: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{body:#}");
    assert_eq!(body["error"]["code"], "invalid_field", "{body:#}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{message:?} should name {field}");
}

/// The stored token never goes to a new `graph_api_base` without a literal new token in
/// the same request: not through PATCH (masked as GET shows it, `env:`, or left out), not
/// through the CLI, not through account setup, and not afterwards through `verify` or the
/// Webitel form. The attacker's base (a second mock) sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_graph_api_base_needs_a_literal_token_in_the_same_request() {
    let t = Tenants::start("iso-binding").await;
    mock_account(&t.mock);
    let evil = MockGraph::start().await;
    let evil_base = evil.base_url();

    let (_, shop) = t.admin.get("/endpoints/shop").await;
    let masked = shop["spec"]["access_token"]
        .as_str()
        .expect("masked token")
        .to_string();
    assert!(masked.starts_with("********"), "{masked}");
    for patch in [
        json!({"graph_api_base": evil_base, "access_token": masked}),
        json!({"graph_api_base": format!("{evil_base}/"), "access_token": masked}),
        json!({"graph_api_base": evil_base, "access_token": "env:HOME"}),
        json!({"graph_api_base": evil_base}),
    ] {
        assert_refused(
            &t.admin.patch("/endpoints/shop", patch).await,
            "spec.access_token",
        );
    }
    // The CLI passes the refusal through (exit 1) and sends nothing else.
    let (code, _, err) = cli(
        &t.server,
        &[
            "endpoint",
            "set",
            "shop",
            &format!("graph_api_base={evil_base}"),
            &format!("access_token={masked}"),
        ],
    )
    .await;
    assert_eq!(code, ExitCode::from(1), "{err}");
    assert!(err.contains("spec.access_token"), "{err}");

    // Nothing was stored: the spec still points at the real base.
    let (_, shop) = t.admin.get("/endpoints/shop").await;
    assert_eq!(
        shop["spec"]["graph_api_base"],
        t.mock.base_url(),
        "{shop:#}"
    );

    // Account setup: set up for real, then again under the attacker's base with the token
    // as the account list shows it, or a reference.
    let (status, answer) = t
        .admin
        .post(
            "/accounts/setup",
            json!({"access_token": SYSTEM_TOKEN, "graph_api_base": t.mock.base_url()}),
        )
        .await;
    assert_eq!(status, 200, "{answer:#}");
    let shown = answer["accounts"][0]["token"]
        .as_str()
        .expect("masked account token")
        .to_string();
    for token in [shown.as_str(), "env:HOME"] {
        assert_refused(
            &t.admin
                .post(
                    "/accounts/setup",
                    json!({"access_token": token, "graph_api_base": evil_base,
                        "account_ids": [webhook::ACCOUNT_ID]}),
                )
                .await,
            "access_token",
        );
    }
    let (code, _, err) = cli(
        &t.server,
        &[
            "account",
            "setup",
            "--access-token",
            &shown,
            "--graph-api-base",
            &evil_base,
        ],
    )
    .await;
    assert_eq!(code, ExitCode::from(1), "{err}");
    assert!(err.contains("access_token"), "{err}");

    // What would send the stored token: verify, and the Webitel setup form.
    let (status, _) = t.admin.post("/endpoints/shop/verify", json!({})).await;
    assert_eq!(status, 200);
    let form = client()
        .get(format!("{}?whatsapp=setup", webhook_url(&t.server, "shop")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("Webitel form");
    // Whatever Meta (the real base's mock) answers; only where it went matters here.
    drop(form);
    // And a reply, which goes out with the endpoint's base.
    send_text(&t.server, "15550401", "wamid.iso.b1", "hi").await;
    wait_sends(&t.mock, 1, |b| b["to"] == "15550401").await;
    assert!(
        evil.requests().is_empty(),
        "the attacker's base was called:\n{}",
        describe(&evil.requests())
    );

    // With the token itself, the base changes, and only the new token goes there.
    let (status, body) = t
        .admin
        .patch(
            "/endpoints/shop",
            json!({"graph_api_base": evil_base, "access_token": "EAAbrand-new-token-5555"}),
        )
        .await;
    assert_eq!(status, 200, "{body:#}");
    t.admin.post("/endpoints/shop/verify", json!({})).await;
    let seen = evil.requests();
    assert!(!seen.is_empty(), "verify did not reach the new base");
    assert!(
        seen.iter()
            .all(|r| r.authorization() == Some("Bearer EAAbrand-new-token-5555")),
        "{}",
        describe(&seen)
    );
    t.stop().await;
}
