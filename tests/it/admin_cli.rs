//! The admin CLI (`plugboard plugin|endpoint|conversation|account|template|campaign …`)
//! against a real host: each test starts an in-process server (one endpoint `shop`, an admin
//! token, a mock Graph API) and drives `plugboard::cli::run_with_input` on a blocking thread
//! (the CLI builds its own runtime), with `--url` and `--token` pointing at it. Assertions
//! are on exact exit codes, the JSON the API answered, and the tokens (admin and Meta) never
//! showing up in any output. The business commands run against the same mock Graph API,
//! given one account ([`mock_account`]) that owns shop's number.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_tests::mock_graph::{MockAccount, MockGraph, MockNumber, MockTemplate};
use plugboard_tests::webhook;
use serde_json::{Value, json};

/// 32 characters, above the host's minimum.
const TOKEN: &str = "adm1n-t0ken-0123456789abcdefghij";
/// The Meta system-user token `account setup` sends; never printed.
const META_TOKEN: &str = "EAAmeta-system-user-token-4242";
/// The WhatsApp Business Account of [`mock_account`], owning shop's number.
const WABA: &str = "1029384756";
/// Shop's `phone_number_id` (see [`config_toml`]).
const SHOP_NUMBER: &str = "106540352242922";
/// A campaign watch that does not end within this long fails the test.
const WATCH_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    code: ExitCode,
    out: String,
    err: String,
}

impl Run {
    #[track_caller]
    fn assert_code(&self, code: u8) {
        assert_eq!(
            self.code,
            ExitCode::from(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.out,
            self.err
        );
        for token in [TOKEN, META_TOKEN] {
            assert!(
                !self.out.contains(token) && !self.err.contains(token),
                "a token was printed:\n--- stdout\n{}\n--- stderr\n{}",
                self.out,
                self.err
            );
        }
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.out))
    }
}

struct Host {
    server: Server,
    mock: MockGraph,
    dir: PathBuf,
    url: String,
}

impl Host {
    /// Runs `plugboard ARGS --url <host> --token <TOKEN>`.
    async fn cli(&self, args: &[&str]) -> Run {
        let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        argv.extend([
            "--url".into(),
            self.url.clone(),
            "--token".into(),
            TOKEN.into(),
        ]);
        run_cli(argv, Vec::new()).await
    }

    /// `plugboard campaign create shop --name "Spring sale" --template spring_sale
    /// --language en_US --recipients FILE`.
    async fn create_campaign(&self, recipients: &Path) -> Run {
        let path = recipients.to_str().expect("UTF-8 path");
        self.cli(&[
            "campaign",
            "create",
            "shop",
            "--name",
            "Spring sale",
            "--template",
            "spring_sale",
            "--language",
            "en_US",
            "--recipients",
            path,
        ])
        .await
    }

    async fn stop(self) {
        self.server.shutdown().await.expect("graceful shutdown");
        let _ = std::fs::remove_dir_all(self.dir);
    }
}

/// `plugboard ARGS` in-process, `stdin` as its input.
async fn run_cli(args: Vec<String>, stdin: Vec<u8>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut input: &[u8] = &stdin;
        let mut out = Vec::new();
        let mut err = Vec::new();
        let argv = std::iter::once("plugboard".to_string()).chain(args);
        let code = plugboard::cli::run_with_input(argv, &mut input, false, &mut out, &mut err);
        Run {
            code,
            out: String::from_utf8(out).expect("stdout is UTF-8"),
            err: String::from_utf8(err).expect("stderr is UTF-8"),
        }
    })
    .await
    .expect("the CLI thread")
}

fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "plugboard-admin-cli-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn config_toml(data_dir: &Path, graph: &str) -> String {
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows/support.json");
    format!(
        "listen = '127.0.0.1:0'
data_dir = '{data}'
admin_token = '{TOKEN}'
flows_dir = '{flows_dir}'

[[endpoints]]
id = 'shop'
flow = '{flow}'
phone_number_id = '106540352242922'
verify_token = 'vt'
app_secret = 's3cret'
access_token = 'EAAtoken'
graph_api_base = '{graph}'
graph_api_version = 'v23.0'
mark_read = false
",
        data = data_dir.display(),
        flow = flow.display(),
        flows_dir = crate::serve::flows_dir().display(),
    )
}

async fn start_host(name: &str) -> Host {
    let mock = MockGraph::start().await;
    let dir = temp_dir(name);
    let text = config_toml(&dir.join("data"), &mock.base_url());
    let config = ServeConfig::from_toml(&text, &dir)
        .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
    let server = Server::start(config)
        .await
        .unwrap_or_else(|e| panic!("server does not start: {e:#}"));
    let url = format!("http://{}", server.local_addr());
    Host {
        server,
        mock,
        dir,
        url,
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

fn ids(list: &Value, key: &str, id: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` array in {list:#}"))
        .iter()
        .map(|item| item[id].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_listed_changed_disabled_and_enabled() {
    let host = start_host("endpoints").await;

    let list = host.cli(&["endpoint", "list", "--json"]).await;
    list.assert_code(0);
    let listed = list.json();
    assert_eq!(ids(&listed, "endpoints", "id"), ["shop"], "{listed:#}");
    assert_eq!(listed["endpoints"][0]["state"], "active", "{listed:#}");
    assert_eq!(listed["endpoints"][0]["enabled"], true, "{listed:#}");
    // Global flags go before the subcommand too; the table names the endpoint.
    let table = host.cli(&["endpoint", "list"]).await;
    table.assert_code(0);
    assert!(table.out.starts_with("ID "), "{}", table.out);
    assert!(
        table.out.lines().any(|l| l.starts_with("shop ")),
        "{}",
        table.out
    );
    let before = host.cli(&["endpoint", "--json", "show", "shop"]).await;
    before.assert_code(0);
    assert_eq!(before.json()["id"], "shop");

    let set = host
        .cli(&["endpoint", "set", "shop", "message_delay_ms=250"])
        .await;
    set.assert_code(0);
    assert!(set.out.contains("message_delay_ms = 250"), "{}", set.out);
    let shown = host.cli(&["endpoint", "show", "shop", "--json"]).await;
    shown.assert_code(0);
    let shown = shown.json();
    assert_eq!(shown["spec"]["message_delay_ms"], 250, "{shown:#}");
    // Secrets come back masked, never in the clear.
    assert!(!shown.to_string().contains("EAAtoken"), "{shown:#}");

    let disabled = host.cli(&["endpoint", "disable", "shop", "--json"]).await;
    disabled.assert_code(0);
    let disabled = disabled.json();
    // `enabled` and the health say so (the host keeps `state` for active/disconnected).
    assert_eq!(
        (&disabled["enabled"], &disabled["health"]["status"]),
        (&json!(false), &json!("disabled")),
        "{disabled:#}"
    );
    let enabled = host.cli(&["endpoint", "enable", "shop", "--json"]).await;
    enabled.assert_code(0);
    let enabled = enabled.json();
    assert_eq!(
        (&enabled["state"], &enabled["enabled"]),
        (&json!("active"), &json!(true)),
        "{enabled:#}"
    );
    assert_ne!(enabled["health"]["status"], "disabled", "{enabled:#}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_their_exit_codes() {
    let host = start_host("refusals").await;

    let unknown = host.cli(&["endpoint", "show", "nope"]).await;
    unknown.assert_code(1);
    assert!(
        unknown.err.starts_with("error: not_found: "),
        "{}",
        unknown.err
    );
    assert_eq!(unknown.out, "");

    let wrong = run_cli(
        [
            "endpoint",
            "list",
            "--url",
            &host.url,
            "--token",
            "not-the-token-0123456789abcdefgh",
        ]
        .map(String::from)
        .to_vec(),
        Vec::new(),
    )
    .await;
    wrong.assert_code(4);
    assert!(
        wrong.err.starts_with("error: unauthorized: "),
        "{}",
        wrong.err
    );
    assert!(!wrong.err.contains("not-the-token"), "{}", wrong.err);

    // Malformed settings never reach the host.
    let malformed = host.cli(&["endpoint", "set", "shop", "novalue"]).await;
    malformed.assert_code(2);
    assert!(malformed.err.contains("KEY=VALUE"), "{}", malformed.err);
    host.cli(&["endpoint", "set", "shop"]).await.assert_code(2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_exits_3() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let args = ["endpoint", "list", "--url", &url, "--token", TOKEN];
    let run = run_cli(args.map(String::from).to_vec(), Vec::new()).await;
    run.assert_code(3);
    assert!(
        run.err.starts_with("error: cannot reach the host: "),
        "{}",
        run.err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_is_installed_listed_and_removed() {
    let host = start_host("plugins").await;
    let file = host.dir.join("whatsapp.wasm");
    std::fs::write(&file, plugboard::plugins::BUNDLED_WHATSAPP).expect("write the plugin");
    let path = file.to_str().expect("UTF-8 path");

    let installed = host
        .cli(&["plugin", "install", path, "--name", "wa2", "--json"])
        .await;
    installed.assert_code(0);
    let installed = installed.json();
    assert_eq!(installed["name"], "wa2", "{installed:#}");
    assert_eq!(installed["builtin"], false, "{installed:#}");
    assert_eq!(
        installed["size_bytes"],
        plugboard::plugins::BUNDLED_WHATSAPP.len(),
        "{installed:#}"
    );

    let list = host.cli(&["plugin", "list", "--json"]).await;
    list.assert_code(0);
    assert!(
        ids(&list.json(), "plugins", "name").contains(&"wa2".to_string()),
        "{}",
        list.out
    );
    let inspect = host.cli(&["plugin", "inspect", "wa2"]).await;
    inspect.assert_code(0);
    assert!(inspect.out.starts_with("name: wa2\n"), "{}", inspect.out);

    let removed = host.cli(&["plugin", "remove", "wa2"]).await;
    removed.assert_code(0);
    assert_eq!(removed.out, "removed plugin wa2\n");
    let list = host.cli(&["plugin", "list", "--json"]).await;
    list.assert_code(0);
    assert!(
        !ids(&list.json(), "plugins", "name").contains(&"wa2".to_string()),
        "{}",
        list.out
    );
    let gone = host.cli(&["plugin", "inspect", "wa2"]).await;
    gone.assert_code(1);
    assert!(gone.err.starts_with("error: not_found: "), "{}", gone.err);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_endpoint_has_no_conversations() {
    let host = start_host("conversations").await;
    let list = host
        .cli(&["conversation", "list", "shop", "--limit", "10", "--json"])
        .await;
    list.assert_code(0);
    assert_eq!(list.json(), json!({"conversations": []}));
    let table = host.cli(&["conversation", "list", "shop"]).await;
    table.assert_code(0);
    assert!(table.out.ends_with("(none)\n"), "{}", table.out);
    host.stop().await;
}

#[tokio::test]
async fn every_group_has_help_with_the_exit_codes() {
    for args in [
        &["plugin", "--help"][..],
        &["endpoint", "--help"],
        &["conversation", "--help"],
        &["plugin", "install", "--help"],
        &["endpoint", "set", "--help"],
        &["conversation", "show", "--help"],
        &["account", "--help"],
        &["template", "--help"],
        &["campaign", "--help"],
        &["account", "setup", "--help"],
        &["template", "create", "--help"],
        &["campaign", "create", "--help"],
        &["campaign", "watch", "--help"],
    ] {
        let run = run_cli(args.iter().map(|a| a.to_string()).collect(), Vec::new()).await;
        assert_eq!(run.code, ExitCode::SUCCESS, "{args:?}: {}", run.err);
        assert!(
            run.out.contains("Usage: plugboard"),
            "{args:?}: {}",
            run.out
        );
        assert!(
            run.out.contains("Exit codes: 0 success"),
            "{args:?}: {}",
            run.out
        );
    }
}

#[tokio::test]
async fn the_business_groups_list_their_commands() {
    for (group, commands) in [
        (
            "account",
            &[
                "setup",
                "list",
                "show",
                "subscribe",
                "unsubscribe",
                "remove",
            ][..],
        ),
        ("template", &["sync", "list", "create", "delete"]),
        (
            "campaign",
            &[
                "create", "list", "show", "pause", "resume", "cancel", "watch", "opt-outs",
                "opt-in",
            ],
        ),
    ] {
        let run = run_cli(vec![group.to_string(), "--help".to_string()], Vec::new()).await;
        assert_eq!(run.code, ExitCode::SUCCESS, "{group}: {}", run.err);
        for command in commands {
            assert!(
                run.out.lines().any(|l| l.trim_start().starts_with(command)),
                "{group} --help does not list {command}:\n{}",
                run.out
            );
        }
    }
    let setup = run_cli(
        ["account", "setup", "--help"].map(String::from).to_vec(),
        Vec::new(),
    )
    .await;
    assert!(setup.out.contains("PLUGBOARD_META_TOKEN"), "{}", setup.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_accounts_lists_none() {
    let host = start_host("no-accounts").await;
    let table = host.cli(&["account", "list"]).await;
    table.assert_code(0);
    assert!(table.out.starts_with("ACCOUNT "), "{}", table.out);
    assert!(table.out.ends_with("(none)\n"), "{}", table.out);
    let list = host.cli(&["account", "list", "--json"]).await;
    list.assert_code(0);
    assert_eq!(list.json(), json!({"accounts": []}));

    let unknown = host.cli(&["account", "show", "nope"]).await;
    unknown.assert_code(1);
    assert_eq!(unknown.err, "error: not_found: no account `nope`\n");
    assert_eq!(unknown.out, "");
    // No account, no templates.
    let templates = host.cli(&["template", "list", "nope"]).await;
    templates.assert_code(1);
    assert!(
        templates.err.starts_with("error: not_found: "),
        "{}",
        templates.err
    );
    host.stop().await;
}

/// The host answers 502 `graph_unreachable`: a 5xx, so exit 3 like an unreachable host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_against_an_unreachable_graph_api_exits_3() {
    let host = start_host("setup-unreachable").await;
    let graph = format!("http://127.0.0.1:{}", closed_port());
    let run = host
        .cli(&[
            "account",
            "setup",
            "--access-token",
            META_TOKEN,
            "--graph-api-base",
            &graph,
        ])
        .await;
    run.assert_code(3);
    assert!(
        run.err.starts_with("error: graph_unreachable: "),
        "{}",
        run.err
    );
    assert_eq!(run.out, "");
    // Nothing was stored.
    let list = host.cli(&["account", "list", "--json"]).await;
    list.assert_code(0);
    assert_eq!(list.json(), json!({"accounts": []}));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_a_template_the_host_does_not_know_is_refused() {
    let host = start_host("campaign-unknown").await;
    let csv = host.dir.join("recipients.csv");
    std::fs::write(&csv, "to,1\n+15550100,Ada\n").expect("write the CSV");
    let json_file = host.dir.join("recipients.json");
    std::fs::write(
        &json_file,
        r#"[{"to": "+15550100", "values": {"1": "Ada"}}]"#,
    )
    .expect("write the JSON");
    for file in [&csv, &json_file] {
        let run = host.create_campaign(file).await;
        run.assert_code(1);
        assert!(
            run.err.starts_with("error: template_unknown: "),
            "{}: {}",
            file.display(),
            run.err
        );
    }
    // A file that is neither CSV nor JSON never reaches the host.
    let other = host.dir.join("recipients.txt");
    std::fs::write(&other, "to\n").expect("write");
    let run = host.create_campaign(&other).await;
    run.assert_code(2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_endpoint_has_no_campaigns_and_no_opt_outs() {
    let host = start_host("no-campaigns").await;
    let list = host.cli(&["campaign", "list", "shop", "--json"]).await;
    list.assert_code(0);
    assert_eq!(list.json(), json!({"campaigns": []}));
    let table = host.cli(&["campaign", "list", "shop"]).await;
    table.assert_code(0);
    assert!(table.out.starts_with("ID "), "{}", table.out);
    assert!(table.out.ends_with("(none)\n"), "{}", table.out);
    let opt_outs = host.cli(&["campaign", "opt-outs", "shop", "--json"]).await;
    opt_outs.assert_code(0);
    assert_eq!(opt_outs.json(), json!({"opt_outs": []}));

    for args in [
        &["campaign", "show", "shop", "99"][..],
        &["campaign", "pause", "shop", "99"],
        &["campaign", "opt-in", "shop", "+15550100"],
        &["campaign", "watch", "shop", "99", "--every-ms", "10"],
    ] {
        let run = host.cli(args).await;
        run.assert_code(1);
        assert!(
            run.err.starts_with("error: not_found: "),
            "{args:?}: {}",
            run.err
        );
    }
    let bad_id = host.cli(&["campaign", "show", "shop", "seven"]).await;
    bad_id.assert_code(2);
    let unknown = host.cli(&["campaign", "list", "nope"]).await;
    unknown.assert_code(1);
    host.stop().await;
}

/// A user who wrote STOP is listed by `campaign opt-outs` and opted back in by `opt-in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_user_is_listed_and_opted_back_in() {
    let host = start_host("opt-in").await;
    let user = "15550042";
    let body = webhook::text_message(
        SHOP_NUMBER,
        user,
        "wamid.cli.stop",
        "STOP",
        webhook::now_ts(),
    );
    let client = reqwest::Client::new();
    let url = format!("{}/webhooks/shop", host.url);
    let response = webhook::post(&client, &url, &body, "s3cret").await;
    assert_eq!(response.status(), 200);
    let deadline = std::time::Instant::now() + WATCH_LIMIT;
    loop {
        let list = host.cli(&["campaign", "opt-outs", "shop", "--json"]).await;
        list.assert_code(0);
        if list.json()["opt_outs"][0]["user"] == user {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no opt-out: {}",
            list.out
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let table = host.cli(&["campaign", "opt-outs", "shop"]).await;
    table.assert_code(0);
    assert!(
        table
            .out
            .lines()
            .any(|l| l.starts_with(user) && l.contains("stop")),
        "{}",
        table.out
    );
    let opt_in = host.cli(&["campaign", "opt-in", "shop", user]).await;
    opt_in.assert_code(0);
    assert_eq!(opt_in.out, format!("{user} opted back in\n"));
    let list = host.cli(&["campaign", "opt-outs", "shop", "--json"]).await;
    assert_eq!(list.json(), json!({"opt_outs": []}));
    let again = host.cli(&["campaign", "opt-in", "shop", user]).await;
    again.assert_code(1);
    assert_eq!(
        again.err,
        format!("error: not_found: `{user}` has not opted out\n")
    );
    host.stop().await;
}

/// Setup → accounts and numbers → template sync → a CSV campaign watched to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_set_up_sent_and_watched_to_the_end() {
    let host = start_host("campaign-watch").await;
    mock_account(&host.mock);
    let graph = host.mock.base_url();

    let setup = host
        .cli(&[
            "account",
            "setup",
            "--access-token",
            META_TOKEN,
            "--account",
            WABA,
            "--graph-api-base",
            &graph,
            "--graph-api-version",
            "v23.0",
            "--json",
        ])
        .await;
    setup.assert_code(0);
    let accounts = setup.json();
    assert_eq!(ids(&accounts, "accounts", "id"), [WABA], "{accounts:#}");
    let account = &accounts["accounts"][0];
    assert_eq!(account["token"], "********4242", "{account:#}");
    assert_eq!(account["numbers"][0]["endpoint"], "shop", "{account:#}");
    // Every call about the account went with the Meta token the CLI was given.
    let account_calls: Vec<_> = host
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(WABA))
        .collect();
    assert!(!account_calls.is_empty());
    let bearer = format!("Bearer {META_TOKEN}");
    for call in &account_calls {
        assert_eq!(
            call.authorization(),
            Some(bearer.as_str()),
            "{}",
            call.summary()
        );
    }

    let table = host.cli(&["account", "list"]).await;
    table.assert_code(0);
    assert!(
        table
            .out
            .lines()
            .any(|l| l.starts_with(WABA) && l.contains("Test Shop") && l.contains("false")),
        "{}",
        table.out
    );
    assert!(
        table
            .out
            .lines()
            .any(|l| l.contains(SHOP_NUMBER) && l.contains("TIER_1K") && l.ends_with("shop")),
        "{}",
        table.out
    );
    let subscribed = host.cli(&["account", "subscribe", WABA]).await;
    subscribed.assert_code(0);
    assert!(
        subscribed.out.contains("subscribed: true\n"),
        "{}",
        subscribed.out
    );

    let synced = host.cli(&["template", "sync", WABA, "--json"]).await;
    synced.assert_code(0);
    let synced = synced.json();
    assert_eq!(
        ids(&synced, "templates", "name"),
        ["spring_sale"],
        "{synced:#}"
    );
    let templates = host.cli(&["template", "list", WABA]).await;
    templates.assert_code(0);
    assert!(
        templates
            .out
            .lines()
            .any(|l| l.starts_with("spring_sale") && l.contains("APPROVED")),
        "{}",
        templates.out
    );

    // Three rows, one number twice: two recipients.
    let csv = host.dir.join("recipients.csv");
    std::fs::write(
        &csv,
        "to,1\n+15550100,Ada\n+1 555 0101,Grace\n15550100,Ada\n",
    )
    .expect("write the CSV");
    let created = host.create_campaign(&csv).await;
    created.assert_code(0);
    for line in ["name: Spring sale\n", "total: 2\n", "duplicates: 1\n"] {
        assert!(created.out.contains(line), "{line}: {}", created.out);
    }
    let id = created
        .out
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("the campaign's id")
        .to_string();

    let watched = tokio::time::timeout(
        WATCH_LIMIT,
        host.cli(&[
            "campaign",
            "watch",
            "shop",
            &id,
            "--every-ms",
            "50",
            "--json",
        ]),
    )
    .await
    .expect("the watch ends");
    watched.assert_code(0);
    let polls: Vec<Value> = watched
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = polls.last().expect("at least one poll");
    assert_eq!(last["state"], "completed", "{}", watched.out);
    let progress = &last["progress"];
    assert_eq!(
        (
            &progress["total"],
            &progress["queued"],
            &progress["sending"]
        ),
        (&json!(2), &json!(0), &json!(0)),
        "{last:#}"
    );
    assert_eq!(progress["sent"], 2, "{last:#}");

    // Over already: one line (the bar is hidden off a terminal), exit 0.
    let again = host.cli(&["campaign", "watch", "shop", &id]).await;
    again.assert_code(0);
    assert_eq!(
        again.out,
        "completed 2/2 · sent 2 · delivered 0 · read 0 · failed 0 · opted out 0\n"
    );
    let list = host.cli(&["campaign", "list", "shop"]).await;
    list.assert_code(0);
    assert!(
        list.out
            .lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains("completed")),
        "{}",
        list.out
    );
    let sends: Vec<Value> = host
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.message_type() == Some("template"))
        .map(|r| r.body)
        .collect();
    assert_eq!(sends.len(), 2, "{sends:#?}");
    host.stop().await;
}

/// Account [`WABA`] "Test Shop", owning shop's number, not subscribed until asked, with one
/// approved template `spring_sale` (en_US, `{{1}}`), granted to [`META_TOKEN`].
fn mock_account(mock: &MockGraph) {
    mock.add_account(
        MockAccount::new(WABA, "Test Shop")
            .with_portfolio("5550001")
            .with_numbers([MockNumber::new(SHOP_NUMBER, "+1 555-078-3881")])
            .with_templates([MockTemplate {
                category: "MARKETING".into(),
                components: json!([{"type": "BODY", "text": "Hi {{1}}, spring is here: 20% off."}]),
                ..MockTemplate::approved("880001", "spring_sale", "en_US")
            }]),
    );
    mock.grant(META_TOKEN, &[WABA]);
}
