//! The admin CLI (`plugboard plugin|endpoint|conversation …`) against a real host: each test
//! starts an in-process server (one endpoint `shop`, an admin token, a mock Graph API) and
//! drives `plugboard::cli::run_with_input` on a blocking thread (the CLI builds its own
//! runtime), with `--url` and `--token` pointing at it. Assertions are on exact exit codes,
//! the JSON the API answered, and the token never showing up in any output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use plugboard::serve::Server;
use plugboard::serve::config::ServeConfig;
use plugboard_tests::mock_graph::MockGraph;
use serde_json::{Value, json};

/// 32 characters, above the host's minimum.
const TOKEN: &str = "adm1n-t0ken-0123456789abcdefghij";

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
        assert!(
            !self.out.contains(TOKEN) && !self.err.contains(TOKEN),
            "the token was printed:\n--- stdout\n{}\n--- stderr\n{}",
            self.out,
            self.err
        );
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.out))
    }
}

struct Host {
    server: Server,
    _mock: MockGraph,
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
        _mock: mock,
        dir,
        url,
    }
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
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
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
