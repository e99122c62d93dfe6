//! Serving benchmark: how fast `plugboard::app::Server` acknowledges signed webhooks,
//! next to a bare axum server on the same machine in the same run (the machine is small
//! and shared, so the ratios are what to read), and how many replies per second the whole
//! pipeline (durable write → adapter decode → flow → sender) gets out to a mock Graph API.
//!
//! Scenarios, each `PLUGBOARD_BENCH_SECS` seconds (default 5) of load from
//! [`plugboard_bench::loadgen`] over 32 keep-alive connections with distinct, pre-signed
//! text-message envelopes:
//! 1. **bare ceiling**: an axum POST handler that reads the body and answers 200;
//! 2. **host ingest**: the same closed-loop load at `POST /webhooks/bench` of a host with
//!    `flows/support.json` and a fresh SQLite store (`synchronous = "full"`): 200s/s and
//!    ack latency, as a ratio of the bare ceiling (target ≥ 50%);
//! 3. **fixed rate**: 2,000 requests/s open loop at a fresh host, latency from each
//!    request's scheduled time (no coordinated omission): p99 ack target < 10 ms;
//! 4. **end to end**: closed-loop load at a fresh host whose Graph API is an in-process
//!    mock; replies/s counted at the mock from its first to its last reply (target
//!    ≥ 5,000/s), p50/p99 from each webhook's send to its reply's arrival.
//!
//! Servers (bare and host) run on one 2-thread Tokio runtime, the load generator and the
//! mock Graph API on another, as if they were separate processes. `RUST_LOG` defaults to
//! `warn`. Run with `cargo bench -p plugboard-bench --bench serve`; the table goes to
//! stdout. Under `cargo test --benches` each scenario runs for a fraction of a second as
//! a smoke test (errors fail it; no targets are judged).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use plugboard::app::Server;
use plugboard::config::ServeConfig;
use plugboard_bench::loadgen::{
    self, EnvelopeSpec, Load, Pace, Report, SENDER_BASE, SendLog, Signed, percentile,
};
use tokio::runtime::Runtime;

const PHONE_NUMBER_ID: &str = "106540352242922";
const SECRET: &str = "bench-secret";
const ACCESS_TOKEN: &str = "EAAbench";
const GRAPH_VERSION: &str = "v23.0";
/// Keep-alive connections of the closed-loop scenarios (`PLUGBOARD_BENCH_CONNECTIONS`).
const DEFAULT_CONNECTIONS: usize = 32;

/// Connections for this run: a durable ack costs an fsync, so with closed-loop clients the
/// ingest rate is bounded by connections / fsync latency; Meta itself opens many.
fn connections() -> usize {
    std::env::var("PLUGBOARD_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CONNECTIONS)
}
const FIXED_RATE: f64 = 2_000.0;

/// Targets.
const INGEST_RATIO: f64 = 0.50;
const FIXED_P99_MS: f64 = 10.0;
const REPLIES_PER_SEC: f64 = 5_000.0;

/// Timing knobs; shortened for the smoke run.
struct Knobs {
    secs: Duration,
    warmup: Duration,
    /// The longest the end-to-end run waits for replies after its load stops.
    drain: Duration,
    /// The longest a host gets to shut down.
    shutdown: Duration,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let benchmarking = has("--bench") && !has("--test") && !has("--list");
    if has("--list") {
        return Ok(());
    }
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    let knobs = if benchmarking {
        let secs = std::env::var("PLUGBOARD_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .unwrap_or(5.0);
        Knobs {
            secs: Duration::from_secs_f64(secs),
            warmup: Duration::from_millis(500),
            drain: Duration::from_secs(20),
            shutdown: Duration::from_secs(30),
        }
    } else {
        Knobs {
            secs: Duration::from_millis(300),
            warmup: Duration::ZERO,
            drain: Duration::from_secs(10),
            shutdown: Duration::from_secs(30),
        }
    };
    let bench = Bench::new(knobs)?;
    let rows = bench.run_all()?;
    print_table(&rows, benchmarking);
    if !benchmarking {
        let broken: Vec<&Row> = rows.iter().filter(|r| !r.clean).collect();
        anyhow::ensure!(broken.is_empty(), "smoke run had errors: {broken:#?}");
    }
    Ok(())
}

/// One line of the table.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    rate: f64,
    unit: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    ratio: Option<f64>,
    target: String,
    pass: Option<bool>,
    /// No non-200s, transport errors or missing replies.
    clean: bool,
    notes: Vec<String>,
}

struct Bench {
    knobs: Knobs,
    servers: Runtime,
    clients: Runtime,
    root: PathBuf,
    mock: Arc<MockGraph>,
    mock_addr: SocketAddr,
    run_id: String,
    /// The store's `synchronous` pragma: `full` unless `PLUGBOARD_BENCH_SYNC` says otherwise.
    synchronous: String,
}

impl Bench {
    fn new(knobs: Knobs) -> anyhow::Result<Self> {
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(name)
                .enable_all()
                .build()
        };
        let servers = runtime("bench-server")?;
        let clients = runtime("bench-client")?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()?;
        let mock = Arc::new(MockGraph::default());
        let mock_addr = clients.block_on(MockGraph::serve(mock.clone()))?;
        Ok(Self {
            knobs,
            servers,
            clients,
            root,
            mock,
            mock_addr,
            run_id: loadgen::default_run_id(),
            synchronous: std::env::var("PLUGBOARD_BENCH_SYNC").unwrap_or_else(|_| "full".into()),
        })
    }

    fn run_all(&self) -> anyhow::Result<Vec<Row>> {
        let started = Instant::now();
        eprintln!(
            "{} s per scenario, {} connections, store synchronous = {}",
            self.knobs.secs.as_secs_f64(),
            connections(),
            self.synchronous
        );
        let (bare, bare_cpu) = self.bare_ceiling()?;
        eprintln!("bare ceiling: {}", bare.summary());
        let ingest = self.host_ingest(&bare)?;
        eprintln!("host ingest: {}", ingest.1.summary());
        let fixed = self.fixed_rate()?;
        let e2e = self.end_to_end(ingest.1.ok_per_sec().max(bare.ok_per_sec()))?;
        eprintln!("total bench time {:.1} s", started.elapsed().as_secs_f64());

        let bare_rate = bare.ok_per_sec();
        let bare_row = Row {
            scenario: "bare ceiling (axum 200)",
            rate: bare_rate,
            unit: "req/s",
            p50_ms: bare.latency_ms(0.50),
            p99_ms: bare.latency_ms(0.99),
            ratio: Some(1.0),
            target: "-".to_string(),
            pass: None,
            clean: errors(&bare) == 0,
            notes: [load_notes(&bare), vec![bare_cpu]].concat(),
        };
        let (mut ingest_row, ingest) = ingest;
        let ratio = if bare_rate > 0.0 {
            ingest.ok_per_sec() / bare_rate
        } else {
            0.0
        };
        ingest_row.ratio = Some(ratio);
        ingest_row.pass = Some(ingest_row.clean && ratio >= INGEST_RATIO);
        Ok(vec![bare_row, ingest_row, fixed, e2e])
    }

    /// Envelopes `first..first + count` of this run, built and signed.
    fn envelopes(&self, first: u64, count: usize) -> Arc<[Signed]> {
        let spec = EnvelopeSpec {
            phone_number_id: PHONE_NUMBER_ID.to_string(),
            run_id: self.run_id.clone(),
            secret: SECRET.to_string(),
        };
        let started = Instant::now();
        let envelopes: Arc<[Signed]> = loadgen::build_envelopes(&spec, first, count).into();
        eprintln!(
            "  built and signed {count} envelopes in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        envelopes
    }

    fn closed_load(&self, addr: SocketAddr) -> Load {
        let mut load = Load::closed(
            format!("http://{addr}/webhooks/bench"),
            connections(),
            self.knobs.secs,
        );
        load.warmup = self.knobs.warmup;
        load
    }

    /// Envelopes for `rate` per second over the warm-up and the measurement, and some.
    fn pool_for(&self, rate: f64) -> usize {
        ((self.knobs.warmup + self.knobs.secs).as_secs_f64() * rate * 1.2) as usize
            + 2 * connections()
            + 1_000
    }

    fn bare_ceiling(&self) -> anyhow::Result<(Report, String)> {
        eprintln!("bare ceiling…");
        let listener = self
            .servers
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/webhooks/bench",
            post(|body: Bytes| async move {
                drop(body);
                StatusCode::OK
            }),
        );
        let server = self
            .servers
            .spawn(async move { axum::serve(listener, app).await });
        let envelopes = self.envelopes(0, self.pool_for(40_000.0));
        let (report, cpu) = measure_cpu(|| {
            self.clients
                .block_on(loadgen::run(self.closed_load(addr), envelopes))
        });
        server.abort();
        let report = report?;
        Ok((report.clone(), cpu.note("server", report.ok)))
    }

    fn host_ingest(&self, bare: &Report) -> anyhow::Result<(Row, Report)> {
        eprintln!("host ingest…");
        let envelopes = self.envelopes(1_000_000_000, self.pool_for(bare.ok_per_sec()));
        let host = self.start_host("ingest")?;
        let (report, cpu) = measure_cpu(|| {
            self.clients
                .block_on(loadgen::run(self.closed_load(host.addr), envelopes))
        });
        let mut notes = self.stop_host(host)?;
        let report = report?;
        notes.extend(load_notes(&report));
        notes.push(cpu.note("host", report.ok));
        let row = Row {
            scenario: "host ingest (200 acks)",
            rate: report.ok_per_sec(),
            unit: "req/s",
            p50_ms: report.latency_ms(0.50),
            p99_ms: report.latency_ms(0.99),
            ratio: None,
            target: format!(">= {:.0}% of bare", INGEST_RATIO * 100.0),
            pass: None,
            clean: errors(&report) == 0 && !report.wrapped,
            notes,
        };
        Ok((row, report))
    }

    fn fixed_rate(&self) -> anyhow::Result<Row> {
        eprintln!("fixed rate…");
        let envelopes = self.envelopes(2_000_000_000, self.pool_for(FIXED_RATE));
        let host = self.start_host("fixed")?;
        let mut load = self.closed_load(host.addr);
        load.pace = Pace::Fixed { rate: FIXED_RATE };
        let (report, cpu) = measure_cpu(|| self.clients.block_on(loadgen::run(load, envelopes)));
        let mut notes = self.stop_host(host)?;
        let report = report?;
        eprintln!("fixed rate: {}", report.summary());
        notes.extend(load_notes(&report));
        notes.push(cpu.note("host", report.ok));
        notes.push(format!(
            "service time (from the actual send) p50 {:.2} ms, p99 {:.2} ms; latency counts from the schedule (timer granularity ~1 ms)",
            report.service_ms(0.50),
            report.service_ms(0.99)
        ));
        let achieved = report.ok_per_sec();
        let clean = errors(&report) == 0 && !report.wrapped;
        let p99 = report.latency_ms(0.99);
        Ok(Row {
            scenario: "fixed 2,000/s (open loop)",
            rate: achieved,
            unit: "req/s",
            p50_ms: report.latency_ms(0.50),
            p99_ms: p99,
            ratio: Some(achieved / FIXED_RATE),
            target: format!("p99 < {FIXED_P99_MS:.0} ms"),
            pass: Some(clean && p99 < FIXED_P99_MS && achieved >= 0.95 * FIXED_RATE),
            clean,
            notes,
        })
    }

    fn end_to_end(&self, rate_estimate: f64) -> anyhow::Result<Row> {
        eprintln!("end to end…");
        let first = 3_000_000_000;
        let envelopes = self.envelopes(first, self.pool_for(rate_estimate));
        let log = Arc::new(SendLog::new(Instant::now(), envelopes.len()));
        self.mock.reset(log.clone(), first, envelopes.len());
        let host = self.start_host("e2e")?;
        let mut load = self.closed_load(host.addr);
        // Every acked envelope should be answered, so count from the first request.
        load.warmup = Duration::ZERO;
        load.send_log = Some(log);
        let before = CpuSample::now();
        let report = self.clients.block_on(loadgen::run(load, envelopes));
        let expected = report.as_ref().map_or(0, |r| r.ok);
        let load_end = Instant::now();
        let mut last_count = 0;
        let mut last_progress = Instant::now();
        loop {
            let count = self.mock.distinct.load(Ordering::Relaxed);
            if count >= expected {
                break;
            }
            if count != last_count {
                last_count = count;
                last_progress = Instant::now();
            }
            if load_end.elapsed() >= self.knobs.drain
                || last_progress.elapsed() >= Duration::from_secs(5)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let drained_in = load_end.elapsed();
        let cpu = before.zip(CpuSample::now()).map(|(a, b)| b.since(&a));
        let mut notes = self.stop_host(host)?;
        let report = report?;
        eprintln!("end to end (acks): {}", report.summary());
        let replies = self.mock.snapshot();
        let replies_per_sec = replies.per_sec();
        notes.push(format!(
            "{} webhooks acked, {} replied ({} POSTs: {} duplicate, {} unknown recipient, {} bad token) over {:.2} s first→last reply; waited {:.1} s after the load for the rest",
            expected,
            replies.distinct,
            replies.posts,
            replies.duplicates,
            replies.unknown,
            replies.bad_token,
            replies.window.as_secs_f64(),
            drained_in.as_secs_f64()
        ));
        notes.push(format!(
            "ack p50 {:.2} ms, p99 {:.2} ms at {:.0} acks/s; p50/p99 columns are webhook send → reply at the mock",
            report.latency_ms(0.50),
            report.latency_ms(0.99),
            report.ok_per_sec()
        ));
        notes.extend(load_notes(&report));
        notes.push(cpu.note("host", replies.distinct));
        let clean = errors(&report) == 0
            && !report.wrapped
            && replies.distinct >= expected
            && replies.unknown == 0
            && replies.bad_token == 0;
        Ok(Row {
            scenario: "end to end (replies at mock)",
            rate: replies_per_sec,
            unit: "replies/s",
            p50_ms: f64::from(percentile(&replies.latencies_us, 0.50)) / 1000.0,
            p99_ms: f64::from(percentile(&replies.latencies_us, 0.99)) / 1000.0,
            ratio: (report.ok_per_sec() > 0.0).then(|| replies_per_sec / report.ok_per_sec()),
            target: format!(">= {REPLIES_PER_SEC:.0} replies/s"),
            pass: Some(clean && replies_per_sec >= REPLIES_PER_SEC),
            clean,
            notes,
        })
    }

    /// Starts a host with a fresh data dir whose Graph API is the mock.
    fn start_host(&self, name: &str) -> anyhow::Result<Host> {
        let data_dir = std::env::temp_dir().join(format!(
            "plugboard-bench-serve-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let flow = self.root.join("flows/support.json");
        let toml_text = format!(
            r#"listen = "127.0.0.1:0"
data_dir = {data_dir}
mask_pii = false
log_format = "text"
flows_dir = {flows_dir}

[store]
synchronous = "{synchronous}"

[[endpoints]]
id = "bench"
flow = {flow}
phone_number_id = "{PHONE_NUMBER_ID}"
verify_token = "vt"
app_secret = "{SECRET}"
access_token = "{ACCESS_TOKEN}"
graph_api_base = "http://{mock}"
graph_api_version = "{GRAPH_VERSION}"
mark_read = false
throughput_per_second = 100000
pair_burst = 1000
pair_interval_ms = 1
"#,
            data_dir = toml_string(&data_dir),
            flow = toml_string(&flow),
            flows_dir = toml_string(&self.root.join("flows")),
            mock = self.mock_addr,
            synchronous = self.synchronous,
        );
        let config = ServeConfig::from_toml(&toml_text, &self.root)
            .with_context(|| format!("bench config:\n{toml_text}"))?;
        let started = Instant::now();
        let server = self.servers.block_on(Server::start(config))?;
        let addr = server.local_addr();
        eprintln!(
            "  host started in {:.2} s on {addr}",
            started.elapsed().as_secs_f64()
        );
        Ok(Host {
            server,
            addr,
            data_dir,
        })
    }

    /// Shuts a host down (bounded) and removes its data dir; notes how long it took.
    fn stop_host(&self, host: Host) -> anyhow::Result<Vec<String>> {
        let started = Instant::now();
        let result = self.servers.block_on(async {
            tokio::time::timeout(self.knobs.shutdown, host.server.shutdown()).await
        });
        let took = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&host.data_dir);
        match result {
            Ok(Ok(())) => Ok(if took > 1.0 {
                vec![format!("shutdown took {took:.1} s")]
            } else {
                Vec::new()
            }),
            Ok(Err(e)) => Err(e.context("host shutdown")),
            Err(_) => Ok(vec![format!(
                "shutdown did not finish within {:.0} s",
                self.knobs.shutdown.as_secs_f64()
            )]),
        }
    }
}

struct Host {
    server: Server,
    addr: SocketAddr,
    data_dir: PathBuf,
}

/// `path` as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn errors(report: &Report) -> u64 {
    report.non_200 + report.failed
}

fn load_notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    if errors(report) > 0 {
        notes.push(format!(
            "{} non-200, {} failed (not counted as throughput); first: {}",
            report.non_200,
            report.failed,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
    if report.wrapped {
        notes.push("ran out of distinct envelopes; some were sent twice (harmless for the bare server, which ignores content)".to_string());
    }
    notes
}

/// The Graph API stand-in: answers every `POST /v23.0/{pnid}/messages` like Meta does and
/// counts the replies, each matched to its webhook's send time through its recipient.
#[derive(Default)]
struct MockGraph {
    posts: AtomicU64,
    /// Recipients answered at least once.
    distinct: AtomicU64,
    duplicates: AtomicU64,
    unknown: AtomicU64,
    bad_token: AtomicU64,
    /// µs since the send log's base of the first and the last reply (u64::MAX/0 = none).
    first_us: AtomicU64,
    last_us: AtomicU64,
    tracking: Mutex<Option<Tracking>>,
}

/// Which envelopes the current scenario sent, and which were answered.
struct Tracking {
    log: Arc<SendLog>,
    first: u64,
    replied: Vec<AtomicBool>,
    latencies_us: Mutex<Vec<u32>>,
}

struct Replies {
    posts: u64,
    distinct: u64,
    duplicates: u64,
    unknown: u64,
    bad_token: u64,
    window: Duration,
    latencies_us: Vec<u32>,
}

impl Replies {
    /// Replies per second from the first reply to the last.
    fn per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if self.posts > 1 && secs > 0.0 {
            (self.posts - 1) as f64 / secs
        } else {
            0.0
        }
    }
}

impl MockGraph {
    async fn serve(mock: Arc<Self>) -> anyhow::Result<SocketAddr> {
        let app = axum::Router::new()
            .route(&format!("/{GRAPH_VERSION}/{{pnid}}/messages"), post(reply))
            .with_state(mock);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    fn reset(&self, log: Arc<SendLog>, first: u64, len: usize) {
        for counter in [
            &self.posts,
            &self.distinct,
            &self.duplicates,
            &self.unknown,
            &self.bad_token,
            &self.last_us,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.first_us.store(u64::MAX, Ordering::Relaxed);
        *self.tracking.lock().unwrap() = Some(Tracking {
            log,
            first,
            replied: (0..len).map(|_| AtomicBool::new(false)).collect(),
            latencies_us: Mutex::new(Vec::with_capacity(len)),
        });
    }

    fn snapshot(&self) -> Replies {
        let tracking = self.tracking.lock().unwrap().take();
        let mut latencies_us = tracking
            .map(|t| t.latencies_us.into_inner().unwrap())
            .unwrap_or_default();
        latencies_us.sort_unstable();
        let first = self.first_us.load(Ordering::Relaxed);
        let last = self.last_us.load(Ordering::Relaxed);
        Replies {
            posts: self.posts.load(Ordering::Relaxed),
            distinct: self.distinct.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
            bad_token: self.bad_token.load(Ordering::Relaxed),
            window: Duration::from_micros(last.saturating_sub(first)),
            latencies_us,
        }
    }

    /// Counts one reply; returns its number (for the wamid).
    fn record(&self, pnid: &str, headers: &HeaderMap, body: &[u8]) -> u64 {
        let n = self.posts.fetch_add(1, Ordering::Relaxed) + 1;
        let authorized = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {ACCESS_TOKEN}"));
        if !authorized {
            self.bad_token.fetch_add(1, Ordering::Relaxed);
        }
        let guard = self.tracking.lock().unwrap();
        let Some(tracking) = guard.as_ref() else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return n;
        };
        let now = tracking.log.base.elapsed();
        let now_us = now.as_micros() as u64;
        self.first_us.fetch_min(now_us, Ordering::Relaxed);
        self.last_us.fetch_max(now_us, Ordering::Relaxed);
        let index = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["to"].as_str().and_then(|to| to.parse::<u64>().ok()))
            .and_then(|to| to.checked_sub(SENDER_BASE + tracking.first))
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < tracking.replied.len() && pnid == PHONE_NUMBER_ID);
        let Some(index) = index else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return n;
        };
        if tracking.replied[index].swap(true, Ordering::Relaxed) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return n;
        }
        self.distinct.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = tracking.log.sent_at(index) {
            let micros = now.saturating_sub(sent).as_micros();
            tracking
                .latencies_us
                .lock()
                .unwrap()
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
        n
    }
}

async fn reply(
    State(mock): State<Arc<MockGraph>>,
    UrlPath(pnid): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let n = mock.record(&pnid, &headers, &body);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        format!(
            r#"{{"messaging_product":"whatsapp","contacts":[{{"input":"x","wa_id":"x"}}],"messages":[{{"id":"wamid.{n}"}}]}}"#
        ),
    )
}

fn print_table(rows: &[Row], benchmarking: bool) {
    if !benchmarking {
        println!("(smoke run under `cargo test --benches`: numbers are not measurements)");
    }
    println!(
        "{:<30} {:>16} {:>9} {:>9} {:>7} {:<22} result",
        "scenario", "rate", "p50 ms", "p99 ms", "ratio", "target"
    );
    for row in rows {
        let result = match row.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "-",
        };
        println!(
            "{:<30} {:>16} {:>9.2} {:>9.2} {:>7} {:<22} {}",
            row.scenario,
            format!("{:.0} {}", row.rate, row.unit),
            row.p50_ms,
            row.p99_ms,
            row.ratio
                .map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0)),
            row.target,
            result
        );
    }
    for row in rows {
        for note in &row.notes {
            println!("  {}: {note}", row.scenario);
        }
    }
}

/// CPU time of this process (split into the load generator's threads and the rest) and of
/// the whole machine, from `/proc` (Linux; nothing elsewhere).
#[derive(Debug, Clone)]
struct CpuSample {
    at: Instant,
    /// Clock ticks of the `bench-client` threads: load generator and mock Graph API.
    client: u64,
    /// Clock ticks of the other live threads, by thread name.
    threads: BTreeMap<String, u64>,
    /// Clock ticks of the whole process (threads that exited included).
    process: u64,
    /// The machine's busy and total ticks over all cores.
    machine_busy: u64,
    machine_total: u64,
}

/// What a scenario used, from two samples.
#[derive(Debug, Clone)]
struct CpuUse {
    wall: Duration,
    client: Duration,
    process: Duration,
    /// Server-side threads by name, busiest first.
    threads: Vec<(String, Duration)>,
    /// Busy share of the whole machine (0..=1) and its core count.
    machine_busy: f64,
    cores: usize,
}

/// Linux's `USER_HZ`: /proc reports CPU time in these ticks.
const TICKS_PER_SEC: f64 = 100.0;

impl CpuSample {
    fn now() -> Option<Self> {
        let process = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let mut client = 0;
        let mut threads = BTreeMap::new();
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let ticks = stat_ticks(&stat).unwrap_or(0);
            let name = comm.trim_end();
            if name.starts_with("bench-client") {
                client += ticks;
            } else {
                *threads.entry(name.to_string()).or_default() += ticks;
            }
        }
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        Some(Self {
            at: Instant::now(),
            client,
            threads,
            process,
            machine_busy: total - idle,
            machine_total: total,
        })
    }

    fn since(&self, earlier: &Self) -> CpuUse {
        let ticks = |t: u64| Duration::from_secs_f64(t as f64 / TICKS_PER_SEC);
        let total = self.machine_total.saturating_sub(earlier.machine_total);
        let mut threads: Vec<(String, Duration)> = self
            .threads
            .iter()
            .map(|(name, t)| {
                let before = earlier.threads.get(name).copied().unwrap_or(0);
                (name.clone(), ticks(t.saturating_sub(before)))
            })
            .filter(|(_, d)| !d.is_zero())
            .collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        CpuUse {
            threads,
            wall: self.at - earlier.at,
            client: ticks(self.client.saturating_sub(earlier.client)),
            process: ticks(self.process.saturating_sub(earlier.process)),
            machine_busy: if total > 0 {
                self.machine_busy.saturating_sub(earlier.machine_busy) as f64 / total as f64
            } else {
                0.0
            },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// utime + stime of a `/proc/.../stat` line (fields 14 and 15; the name may hold spaces).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Runs `f` and measures the CPU it (and everything else on the machine) used meanwhile.
fn measure_cpu<T>(f: impl FnOnce() -> T) -> (T, Option<CpuUse>) {
    let before = CpuSample::now();
    let out = f();
    let after = CpuSample::now();
    (out, before.zip(after).map(|(a, b)| b.since(&a)))
}

trait CpuNote {
    /// One note line: CPU per unit of work for the server side and the generator side,
    /// and how busy the machine was, including other processes.
    fn note(&self, server: &str, units: u64) -> String;
}

impl CpuNote for Option<CpuUse> {
    fn note(&self, server: &str, units: u64) -> String {
        let Some(cpu) = self else {
            return "CPU use: not available (no /proc)".to_string();
        };
        let wall = cpu.wall.as_secs_f64().max(1e-9);
        let server_time = cpu.process.saturating_sub(cpu.client);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / units.max(1) as f64;
        let ours = cpu.process.as_secs_f64() / wall / cpu.cores as f64;
        let by_thread: Vec<String> = cpu
            .threads
            .iter()
            .take(4)
            .map(|(name, d)| format!("{name} {:.0}", per(*d)))
            .collect();
        format!(
            "CPU: {server} {:.0} µs/unit ({:.2} cores; by thread, µs/unit: {}), generator+mock {:.0} µs/unit ({:.2} cores); machine {:.0}% busy of {} cores, {:.0}% of it other processes",
            per(server_time),
            server_time.as_secs_f64() / wall,
            by_thread.join(", "),
            per(cpu.client),
            cpu.client.as_secs_f64() / wall,
            cpu.machine_busy * 100.0,
            cpu.cores,
            (cpu.machine_busy - ours).max(0.0) * 100.0,
        )
    }
}
