//! Secrets at rest and upload limits, at the boundary: a host started on a fresh data
//! directory keeps it `0700` and its database files `0600`; with a key
//! (`ServeConfig::secret_key`, what `PLUGBOARD_SECRET_KEY` fills in) the tokens written
//! through the admin API are not in the database files, yet the host still sends with
//! them; `plugboard secrets rotate` (a real `plugboard-node` process, keys in its
//! environment) re-encrypts them, after which only the new key starts the host and a
//! missing or wrong key is a clear start error; a campaign CSV bomb is refused.
//!
//! Keys go into the config, never into this process's environment: the tests run on
//! parallel threads.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard::secretbox::{KEY_ENV, NEW_KEY_ENV, SecretKey};
use plugboard_tests::mock_graph::{MockAccount, MockGraph, MockNumber, MockTemplate, describe};
use plugboard_tests::webhook;
use serde_json::json;

use crate::admin::{Admin, wait_sends};
use crate::serve::{
    ACCESS_TOKEN, ADMIN_TOKEN, PNID, client, config_toml, start_host, support_flow, temp_dir,
    webhook_url,
};

const SECOND_PNID: &str = "200000000000077";
/// Secrets only the admin API ever sees: none may be in the database files.
const SECOND_TOKEN: &str = "EAAsecondEndpointToken-at-rest-4711";
const SECOND_APP_SECRET: &str = "secondAppSecret-at-rest-0815";
const SECOND_VERIFY: &str = "secondVerify-at-rest-2342";
const SYSTEM_TOKEN: &str = "EAAsystemUserToken-at-rest-1337";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn key(byte: u8) -> [u8; 32] {
    [byte; 32]
}

fn key_text(bytes: [u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The database, its WAL and shared memory, concatenated: everything SQLite has on disk.
fn db_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["plugboard.db", "plugboard.db-wal", "plugboard.db-shm"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn config(dir: &Path, mock: &MockGraph, secret_key: Option<[u8; 32]>) -> ServeConfig {
    let text = config_toml(
        "127.0.0.1:0",
        &dir.join("data"),
        &mock.base_url(),
        "[50, 100, 200]",
        "",
    );
    let mut config = ServeConfig::from_toml(&text, dir).expect("config");
    config.secret_key = secret_key.map(SecretKey::from_bytes);
    config
}

/// `plugboard secrets <action> --config FILE` as a process, keys in its environment only.
fn secrets_cli(
    action: &str,
    config_file: &Path,
    current: Option<[u8; 32]>,
    new: Option<[u8; 32]>,
) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugboard-node"));
    cmd.args(["secrets", action, "--config"])
        .arg(config_file)
        .env_remove(KEY_ENV)
        .env_remove(NEW_KEY_ENV)
        .env_remove("PLUGBOARD_ADMIN_TOKEN");
    if let Some(k) = current {
        cmd.env(KEY_ENV, key_text(k));
    }
    if let Some(k) = new {
        cmd.env(NEW_KEY_ENV, key_text(k));
    }
    let output = cmd.output().expect("run plugboard-node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn mock_account(mock: &MockGraph) {
    mock.add_account(
        MockAccount::new("1001", "Shop WABA")
            .with_portfolio("portfolio-1")
            .with_numbers([MockNumber::new(PNID, "+1 555-078-3881")])
            .with_templates([MockTemplate {
                components: json!([{"type": "BODY", "text": "Hi {{1}}"}]),
                ..MockTemplate::approved("t1", "promo", "en_US")
            }]),
    );
    mock.grant(SYSTEM_TOKEN, &["1001"]);
}

/// A signed message to the API-created endpoint; waits for its reply and returns the
/// `Authorization` it went out with.
async fn reply_authorization(server: &Server, mock: &MockGraph, from: &str, wamid: &str) -> String {
    let body = webhook::text_message(SECOND_PNID, from, wamid, "hello", webhook::now_ts());
    let response = webhook::post(
        &client(),
        &webhook_url(server, "second"),
        &body,
        SECOND_APP_SECRET,
    )
    .await;
    assert_eq!(response.status(), 200);
    wait_sends(mock, 1, |b| b["to"] == from).await;
    mock.requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.to() == Some(from))
        .and_then(|r| r.authorization().map(str::to_string))
        .unwrap_or_else(|| panic!("no reply to {from}:\n{}", describe(&mock.requests())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_dir_is_0700_and_the_database_files_0600() {
    let (server, _mock, dir) = start_host("").await;
    // Something written, so the WAL has frames.
    let admin = Admin::new(&server);
    assert_eq!(admin.get("/endpoints").await.0, 200);
    let data = dir.join("data");
    assert_eq!(mode(&data), 0o700, "data dir");
    for name in [
        "plugboard.db",
        "plugboard.db-wal",
        "plugboard.db-shm",
        "plugboard.lock",
    ] {
        let path = data.join(name);
        assert!(path.exists(), "{name} missing");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tokens_are_encrypted_used_and_rotated() {
    let mock = MockGraph::start().await;
    mock_account(&mock);
    let dir = temp_dir("secrets");
    let data = dir.join("data");
    let (old, new) = (key(11), key(22));
    let server = Server::start(config(&dir, &mock, Some(old)))
        .await
        .expect("start with a key");
    let admin = Admin::new(&server);
    let spec = json!({
        "id": "second",
        "flow": support_flow(),
        "phone_number_id": SECOND_PNID,
        "access_token": SECOND_TOKEN,
        "app_secret": SECOND_APP_SECRET,
        "verify_token": SECOND_VERIFY,
        "graph_api_base": mock.base_url(),
        "graph_api_version": "v23.0",
        "mark_read": false,
        "pair_interval_ms": 1
    });
    let (status, answer) = admin.post("/endpoints", spec).await;
    assert_eq!(status, 201, "{answer:#}");
    let (status, answer) = admin
        .post(
            "/accounts/setup",
            json!({"access_token": SYSTEM_TOKEN, "graph_api_base": mock.base_url()}),
        )
        .await;
    assert_eq!(status, 200, "{answer:#}");

    // The host sends with the token it stored.
    assert_eq!(
        reply_authorization(&server, &mock, "15550001", "wamid.sar.1").await,
        format!("Bearer {SECOND_TOKEN}")
    );
    // No secret is in the database files (the config file's `EAAtoken` neither: the
    // seeded spec is sealed too).
    let bytes = db_bytes(&data);
    for secret in [
        SECOND_TOKEN,
        SECOND_APP_SECRET,
        SECOND_VERIFY,
        SYSTEM_TOKEN,
        ACCESS_TOKEN,
    ] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is in the database in clear"
        );
    }
    assert!(
        contains(&bytes, "enc:v1:"),
        "no sealed value in the database"
    );

    // Rotating next to a running host is refused.
    let config_file = dir.join("plugboard.toml");
    std::fs::write(
        &config_file,
        config_toml("127.0.0.1:0", &data, &mock.base_url(), "[50, 100, 200]", ""),
    )
    .expect("write the config");
    let (ok, text) = secrets_cli("rotate", &config_file, Some(old), Some(new));
    assert!(!ok && text.contains("stop it first"), "{text}");
    server.shutdown().await.expect("shutdown");

    let (ok, text) = secrets_cli("rotate", &config_file, Some(old), Some(new));
    assert!(ok, "rotate failed: {text}");
    assert!(
        text.contains(SecretKey::from_bytes(new).id()) && text.contains("rewritten"),
        "{text}"
    );
    assert!(!text.contains(&key_text(new)) && !text.contains(&key_text(old)));

    // The old key, or none, no longer starts the host: a clear error, no panic.
    for (label, k) in [("old key", Some(old)), ("no key", None)] {
        let e = match Server::start(config(&dir, &mock, k)).await {
            Ok(_) => panic!("the host started with the {label}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            e.contains(KEY_ENV) && e.contains(SecretKey::from_bytes(new).id()),
            "{label}: {e}"
        );
        for secret in [SECOND_TOKEN, SYSTEM_TOKEN, &key_text(new)] {
            assert!(
                !e.contains(secret),
                "{label}: the error shows a secret: {e}"
            );
        }
    }
    // The old key is refused by the command too.
    let (ok, text) = secrets_cli("status", &config_file, Some(old), None);
    assert!(!ok && text.contains(KEY_ENV), "{text}");

    // The new key: everything still works, with the same tokens.
    let server = Server::start(config(&dir, &mock, Some(new)))
        .await
        .expect("start with the new key");
    assert_eq!(
        reply_authorization(&server, &mock, "15550002", "wamid.sar.2").await,
        format!("Bearer {SECOND_TOKEN}")
    );
    let admin = Admin::new(&server);
    let (status, answer) = admin.post("/accounts/1001/templates/sync", json!({})).await;
    assert_eq!(status, 200, "{answer:#}");
    let sync = mock
        .requests()
        .into_iter()
        .rfind(|r| r.path.contains("message_templates"))
        .expect("the template sync reached the mock");
    assert_eq!(
        sync.authorization(),
        Some(format!("Bearer {SYSTEM_TOKEN}").as_str())
    );
    server.shutdown().await.expect("shutdown");
    let bytes = db_bytes(&data);
    for secret in [SECOND_TOKEN, SECOND_APP_SECRET, SYSTEM_TOKEN] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is in the database in clear"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Secrets stored in clear (no key yet) are read with a key set, and `secrets encrypt`
/// seals them: afterwards they are nowhere in the database files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_secrets_are_read_with_a_key_and_encrypted_by_the_command() {
    let mock = MockGraph::start().await;
    let dir = temp_dir("secrets-clear");
    let data = dir.join("data");
    let server = Server::start(config(&dir, &mock, None))
        .await
        .expect("start");
    assert!(
        contains(&db_bytes(&data), ACCESS_TOKEN),
        "without a key the token is stored as it is"
    );
    server.shutdown().await.expect("shutdown");

    // Read in clear with a key set.
    let k = key(33);
    let server = Server::start(config(&dir, &mock, Some(k)))
        .await
        .expect("start with a key over clear secrets");
    crate::serve::send_text(&server, "15550003", "wamid.sac.1", "hi").await;
    wait_sends(&mock, 1, |b| b["to"] == "15550003").await;
    let reply = mock
        .requests()
        .into_iter()
        .find(|r| r.to() == Some("15550003"))
        .expect("reply");
    assert_eq!(
        reply.authorization(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    server.shutdown().await.expect("shutdown");

    let config_file = dir.join("plugboard.toml");
    std::fs::write(
        &config_file,
        config_toml("127.0.0.1:0", &data, &mock.base_url(), "[50]", ""),
    )
    .expect("write the config");
    let (ok, text) = secrets_cli("encrypt", &config_file, Some(k), None);
    assert!(ok, "encrypt failed: {text}");
    assert!(
        !contains(&db_bytes(&data), ACCESS_TOKEN),
        "still in clear after encrypt"
    );
    let (ok, text) = secrets_cli("status", &config_file, Some(k), None);
    assert!(ok && text.contains("0 in clear"), "{text}");
    // Without the key now: refused with the reason.
    let e = match Server::start(config(&dir, &mock, None)).await {
        Ok(_) => panic!("started without the key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains(KEY_ENV), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The header name copied into every row was the bomb: the upload is refused on its
/// header (400) and on its row count (413) before anything is built from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_csv_bomb_is_refused() {
    let (server, _mock, dir) = start_host("").await;
    let url = format!(
        "http://{}/admin/v1/endpoints/shop/campaigns?name=b&template=promo&language=en_US",
        server.local_addr()
    );
    let upload = |body: Vec<u8>| {
        let url = url.clone();
        async move {
            let response = client()
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .await
                .expect("upload");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("JSON error");
            (status, body)
        }
    };
    // A 100 KB column name and a thousand rows.
    let mut bomb = format!("to,{}\n", "x".repeat(100_000)).into_bytes();
    for _ in 0..1_000 {
        bomb.extend_from_slice(b"1,2\n");
    }
    let (status, body) = upload(bomb).await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")),
        "{body:#}"
    );
    // One row past the cap: 413, before any row is checked.
    let rows = format!("to\n{}", "1\n".repeat(1_000_001)).into_bytes();
    let (status, body) = upload(rows).await;
    assert_eq!(status, 413, "{body:#}");
    assert_eq!(body["error"]["code"], "too_large", "{body:#}");
    // The host still answers.
    assert_eq!(Admin::new(&server).get("/endpoints").await.0, 200);
    server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
