//! The admin API's costs, side by side in one run (ratios, since machines here are shared):
//!
//! 1. **Event webhooks on the pipeline.** The same fixed batch of signed webhooks (distinct
//!    senders, each answered with one greeting) through a host with no event webhook and
//!    through a host whose endpoint has one subscriber for every event (a local receiver
//!    answering 200): replies per second at the mock Graph API, and the deliveries the
//!    receiver got. The ratio is what announcing events costs the pipeline.
//! 2. **Endpoint changes.** `PATCH /admin/v1/endpoints/{id}` reloads the endpoint (spec,
//!    flow, plugin): median latency with the compiled component cached (what a running
//!    host does) against a forced recompile of the adapter (what every change would cost
//!    without the cache).
//! 3. **Admin reads** on the store the first scenario filled: `GET …/conversations` (50
//!    most recent) and one transcript, median latency.
//!
//! `cargo bench -p plugboard-bench --bench admin` (`PLUGBOARD_BENCH_MESSAGES`, default
//! 4000). Under `cargo test --benches` it runs a small smoke version.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::http::StatusCode;
use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_bench::loadgen::{self, EnvelopeSpec, Load, Stop};
use plugboard_bench::timing::median;
use serde_json::{Value, json};

const PHONE_NUMBER_ID: &str = "106540352242922";
const SECRET: &str = "bench-app-secret";
const TOKEN: &str = "bench-admin-token-0123456789";
const CONNECTIONS: usize = 32;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return Ok(());
    }
    let benchmarking = has("--bench") && !has("--test");
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    let messages = if benchmarking {
        std::env::var("PLUGBOARD_BENCH_MESSAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4_000)
    } else {
        200
    };
    let patches = if benchmarking { 9 } else { 2 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(messages, patches))
}

async fn run(messages: usize, patches: usize) -> anyhow::Result<()> {
    let graph = Counter::serve("graph").await?;
    let receiver = Counter::serve("receiver").await?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;

    let plain = pipeline(&root, &graph, None, messages, "plain").await?;
    let campaign_rate = campaign(&plain.host, &graph, messages).await?;
    plain.host.shutdown().await?;
    let hooked = pipeline(&root, &graph, Some(&receiver), messages, "hooked").await?;

    let host = hooked.host;
    let admin = Admin::new(host.local_addr());
    let warm = patch_latencies(&admin, patches, None).await?;
    let cold = patch_latencies(&admin, patches, Some(&host)).await?;
    let list = read_latencies(&admin, "/endpoints/bench/conversations?limit=50", patches).await?;
    let transcript = read_latencies(
        &admin,
        &format!("/endpoints/bench/conversations/{}", loadgen::SENDER_BASE),
        patches,
    )
    .await?;
    host.shutdown().await?;

    println!();
    println!("{:<48} {:>14} {:>10}", "scenario", "value", "ratio");
    println!(
        "{:<48} {:>10.0} r/s {:>10}",
        "pipeline, no event webhooks", plain.replies_per_sec, "100%"
    );
    println!(
        "{:<48} {:>10.0} r/s {:>9.0}%",
        "pipeline, 1 subscriber for every event",
        hooked.replies_per_sec,
        100.0 * hooked.replies_per_sec / plain.replies_per_sec.max(1e-9)
    );
    println!(
        "{:<48} {:>10.0} m/s {:>9.0}%",
        format!("campaign of {messages} recipients (template sends)"),
        campaign_rate,
        100.0 * campaign_rate / plain.replies_per_sec.max(1e-9)
    );
    println!(
        "  {} webhooks each; the subscriber received {} deliveries ({:.1} per webhook), the last {:.2} s after the first webhook ({:.0} deliveries/s)",
        messages,
        hooked.deliveries,
        hooked.deliveries as f64 / messages.max(1) as f64,
        hooked.delivered_in.as_secs_f64(),
        hooked.deliveries as f64 / hooked.delivered_in.as_secs_f64().max(1e-9)
    );
    println!(
        "{:<48} {:>11.2} ms {:>10}",
        "endpoint PATCH, adapter recompiled", cold, "100%"
    );
    println!(
        "{:<48} {:>11.2} ms {:>9.1}%",
        "endpoint PATCH, compiled adapter cached",
        warm,
        100.0 * warm / cold.max(1e-9)
    );
    println!(
        "{:<48} {:>11.2} ms",
        format!("GET conversations (50 of {messages})"),
        list
    );
    println!(
        "{:<48} {:>11.2} ms",
        "GET one conversation + transcript", transcript
    );
    Ok(())
}

/// A campaign of `recipients` on a running host (account and template written to its
/// store), at the endpoint's full throughput: template sends per second at the mock, from
/// the upload's answer to the last send.
async fn campaign(host: &Server, graph: &Counter, recipients: usize) -> anyhow::Result<f64> {
    use plugboard::store::business::{StoredAccount, StoredNumber, StoredTemplate};
    let store = host.store();
    store
        .save_account(
            StoredAccount {
                id: "bench-waba".into(),
                name: None,
                portfolio: None,
                graph_api_base: format!("http://{}", graph.addr),
                graph_api_version: "v23.0".into(),
                token: "bench-system-token".into(),
                subscribed: Some(true),
                refreshed_ms: 0,
                created_ms: 0,
            },
            vec![StoredNumber {
                id: PHONE_NUMBER_ID.into(),
                account: "bench-waba".into(),
                display_phone_number: None,
                verified_name: None,
                quality_rating: None,
                throughput_level: None,
                messaging_limit_tier: Some("TIER_UNLIMITED".into()),
                updated_ms: 0,
            }],
        )
        .await?;
    store
        .replace_templates(
            "bench-waba",
            vec![StoredTemplate {
                account: "bench-waba".into(),
                name: "promo".into(),
                language: "en_US".into(),
                template_id: Some("1".into()),
                category: Some("MARKETING".into()),
                status: "APPROVED".into(),
                quality: None,
                components: r#"[{"type":"BODY","text":"Hi {{1}}"}]"#.into(),
                updated_ms: 0,
            }],
        )
        .await?;
    host.reload_business()?;
    let mut csv = String::from("to,1\n");
    for i in 0..recipients {
        csv.push_str(&format!("1999{i:08},User {i}\n"));
    }
    let before = graph.count();
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/admin/v1/endpoints/bench/campaigns?name=bench&template=promo&language=en_US",
            host.local_addr()
        ))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "campaign refused: {}",
        response.text().await?
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while graph.count() - before < recipients as u64 {
        anyhow::ensure!(Instant::now() < deadline, "campaign sends missing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "campaign: {recipients} sends in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(recipients as f64 / elapsed.as_secs_f64())
}

struct Pipeline {
    host: Server,
    replies_per_sec: f64,
    deliveries: u64,
    /// From the first webhook to the last delivery.
    delivered_in: Duration,
}

/// Posts `messages` distinct webhooks and times them until the last reply reaches the mock.
async fn pipeline(
    root: &Path,
    graph: &Counter,
    receiver: Option<&Counter>,
    messages: usize,
    name: &str,
) -> anyhow::Result<Pipeline> {
    let host = start_host(root, graph.addr, name).await?;
    let admin = Admin::new(host.local_addr());
    if let Some(receiver) = receiver {
        let (status, body) = admin
            .call(
                reqwest::Method::POST,
                "/endpoints/bench/webhooks",
                Some(json!({ "url": format!("http://{}/", receiver.addr) })),
            )
            .await?;
        anyhow::ensure!(status == 201, "subscription refused: {body}");
    }
    let spec = EnvelopeSpec {
        phone_number_id: PHONE_NUMBER_ID.to_string(),
        run_id: loadgen::default_run_id(),
        secret: SECRET.to_string(),
    };
    let envelopes = loadgen::build_envelopes(&spec, 0, messages).into();
    let mut load = Load::closed(
        format!("http://{}/webhooks/bench", host.local_addr()),
        CONNECTIONS,
        Duration::from_secs(600),
    );
    load.stop = Stop::Requests(messages);
    let replies_before = graph.count();
    let deliveries_before = receiver.map_or(0, Counter::count);
    let started = Instant::now();
    let report = loadgen::run(load, envelopes).await?;
    anyhow::ensure!(
        report.ok as usize == messages,
        "{name}: {} of {messages} acknowledged ({:?})",
        report.ok,
        report.first_error
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while graph.count() - replies_before < messages as u64 {
        anyhow::ensure!(Instant::now() < deadline, "{name}: replies missing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    // Deliveries trail the replies: wait for all three per webhook (conversation_started,
    // message_received, message_sent), timing how long they take.
    let mut delivered_in = Duration::ZERO;
    if let Some(receiver) = receiver {
        let wanted = deliveries_before + 3 * messages as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while receiver.count() < wanted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delivered_in = started.elapsed();
    }
    eprintln!(
        "{name}: {messages} replies in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(Pipeline {
        host,
        replies_per_sec: messages as f64 / elapsed.as_secs_f64(),
        deliveries: receiver.map_or(0, Counter::count) - deliveries_before,
        delivered_in,
    })
}

/// Median latency of endpoint PATCHes (each a real change: the message delay toggles);
/// with `recompile`, the compiled-component cache is emptied before each.
async fn patch_latencies(
    admin: &Admin,
    n: usize,
    recompile: Option<&Server>,
) -> anyhow::Result<f64> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(host) = recompile {
            host.plugin_runtime().clear_compiled();
        }
        let started = Instant::now();
        let (status, body) = admin
            .call(
                reqwest::Method::PATCH,
                "/endpoints/bench",
                Some(json!({ "message_delay_ms": i % 2 })),
            )
            .await?;
        anyhow::ensure!(status == 200, "PATCH refused: {body}");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&ms))
}

async fn read_latencies(admin: &Admin, path: &str, n: usize) -> anyhow::Result<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (status, body) = admin.call(reqwest::Method::GET, path, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {body}");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&ms))
}

async fn start_host(root: &Path, graph: SocketAddr, name: &str) -> anyhow::Result<Server> {
    let data_dir: PathBuf = std::env::temp_dir().join(format!(
        "plugboard-bench-admin-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data_dir);
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{data}"
mask_pii = false
admin_token = "{TOKEN}"
flows_dir = "{flows_dir}"

[[endpoints]]
id = "bench"
flow = "{flow}"
phone_number_id = "{PHONE_NUMBER_ID}"
verify_token = "vt"
app_secret = "{SECRET}"
access_token = "bench-access-token"
graph_api_base = "http://{graph}"
mark_read = false
throughput_per_second = 100000
pair_burst = 1000
pair_interval_ms = 1
"#,
        data = data_dir.display(),
        flow = root.join("flows/support.json").display(),
        flows_dir = root.join("flows").display(),
    );
    let config = ServeConfig::from_toml(&text, root).context("bench config")?;
    Server::start(config).await
}

struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    fn new(addr: SocketAddr) -> Admin {
        Admin {
            base: format!("http://{addr}/admin/v1"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

/// A local HTTP peer that answers every POST like the Graph API's send (200 with a fresh
/// message id) and counts them: the Graph mock and the event webhook receiver.
struct Counter {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
}

impl Counter {
    async fn serve(name: &'static str) -> anyhow::Result<Counter> {
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        let app = axum::Router::new().fallback(move |_body: Bytes| {
            let seen = seen.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::Relaxed);
                let body = json!({
                    "messaging_product": "whatsapp",
                    "messages": [{ "id": format!("wamid.{name}{n}") }]
                });
                (StatusCode::OK, axum::Json(body))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Counter { addr, count })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
