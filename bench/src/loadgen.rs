//! A load generator for webhook endpoints: pre-built, pre-signed WhatsApp text-message
//! envelopes sent over N keep-alive HTTP/1.1 connections, closed-loop (each connection
//! sends its next envelope as soon as the previous response arrives) or open-loop at a
//! fixed rate (sends scheduled on a clock, latency measured from the *scheduled* time so a
//! stalled server cannot hide its stall: no coordinated omission).
//!
//! Envelope `i` is one text message from sender `15550000000 + i` with wamid
//! `wamid.<run>.<i>`, so a host that dedupes on the wamid keeps every one. Bodies are
//! built and signed (`x-hub-signature-256: sha256=<hex hmac-sha256(secret, body)>`)
//! before timing starts: signing is the generator's cost, not the server's. Every
//! connection has its own [`reqwest::Client`] (one idle connection each) so the
//! connections stay distinct. Latencies of 200 responses are kept per connection in
//! microseconds, merged and sorted into a [`Report`]; non-200 answers and transport
//! failures are counted apart and never count as throughput.
//!
//! Used by `benches/serve.rs` and by the `loadgen` binary (`src/bin/loadgen.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first sender: envelope `i` comes from `SENDER_BASE + i`.
pub const SENDER_BASE: u64 = 15_550_000_000;

/// The header Meta signs webhooks with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// What the envelopes say: no keyword of `flows/support.json`, so its flow answers every
/// new sender with exactly one message (the greeting with choices).
pub const TEXT_BODY: &str = "Hello";

/// How the envelopes are built.
#[derive(Debug, Clone)]
pub struct EnvelopeSpec {
    /// `metadata.phone_number_id`: which endpoint the webhook is for.
    pub phone_number_id: String,
    /// Makes wamids distinct across runs against the same store: `wamid.<run>.<i>`.
    pub run_id: String,
    /// The app secret the bodies are signed with.
    pub secret: String,
}

/// One pre-built request: the raw body and its signature header value.
#[derive(Debug, Clone)]
pub struct Signed {
    pub body: Bytes,
    pub signature: String,
}

/// A run id from the wall clock (for wamids distinct across runs).
pub fn default_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("bench{nanos:x}")
}

/// The webhook body of envelope `i`: one text message from sender `SENDER_BASE + i`.
pub fn text_envelope(spec: &EnvelopeSpec, i: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    envelope_at(&json_string(&spec.phone_number_id), &spec.run_id, i, now)
}

/// `value` as a JSON string literal, quotes included.
fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

/// The body of envelope `i` with an already quoted phone number id; the run id goes inside
/// a JSON string, so it is escaped here (it normally needs none).
fn envelope_at(pnid_json: &str, run_id: &str, i: u64, timestamp: u64) -> String {
    let from = SENDER_BASE + i;
    let wamid = json_string(&format!("wamid.{run_id}.{i}"));
    let text = json_string(TEXT_BODY);
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":{pnid_json}}},"contacts":[{{"profile":{{"name":"Bench User {i}"}},"wa_id":"{from}"}}],"messages":[{{"from":"{from}","id":{wamid},"timestamp":"{timestamp}","type":"text","text":{{"body":{text}}}}}]}},"field":"messages"}}]}}]}}"#
    )
}

/// `sha256=<hex hmac-sha256(secret, body)>`: the `x-hub-signature-256` value.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Envelopes `first..first + count`, built and signed.
pub fn build_envelopes(spec: &EnvelopeSpec, first: u64, count: usize) -> Vec<Signed> {
    let pnid = json_string(&spec.phone_number_id);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    (first..first + count as u64)
        .map(|i| {
            let body = envelope_at(&pnid, &spec.run_id, i, now);
            let signature = sign(&spec.secret, body.as_bytes());
            Signed {
                body: Bytes::from(body),
                signature,
            }
        })
        .collect()
}

/// The `q` quantile (0.0..=1.0) of sorted values, nearest rank; 0 for none.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests (warm-up included).
    Requests(usize),
    /// After this long of measurement (after the warm-up).
    Duration(Duration),
}

/// Whether connections send back to back or on a schedule.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Closed loop: each connection sends as soon as its previous response arrives.
    AsFastAsPossible,
    /// Open loop: `rate` requests per second in total, spread over the connections on one
    /// global schedule; latency counts from each request's scheduled time.
    Fixed { rate: f64 },
}

/// Records when each envelope was sent, in µs since `base`, for end-to-end latency.
#[derive(Debug)]
pub struct SendLog {
    pub base: Instant,
    sent_at: Vec<AtomicU64>,
}

impl SendLog {
    /// A log for `len` envelopes (indexes into the envelope slice), none sent yet.
    pub fn new(base: Instant, len: usize) -> Self {
        Self {
            base,
            sent_at: (0..len).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }

    fn record(&self, index: usize, at: Instant) {
        if let Some(slot) = self.sent_at.get(index) {
            let micros = at.saturating_duration_since(self.base).as_micros() as u64;
            slot.store(micros, Ordering::Relaxed);
        }
    }

    /// When envelope `index` was sent, if it was.
    pub fn sent_at(&self, index: usize) -> Option<Duration> {
        let micros = self.sent_at.get(index)?.load(Ordering::Relaxed);
        (micros != u64::MAX).then(|| Duration::from_micros(micros))
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    pub connections: usize,
    pub stop: Stop,
    pub pace: Pace,
    /// Responses completed within this long of the start are not recorded.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// If set, each envelope's send time is logged here (by envelope index).
    pub send_log: Option<Arc<SendLog>>,
}

impl Load {
    /// A closed-loop run of `duration` against `url` over `connections` connections.
    pub fn closed(url: impl Into<String>, connections: usize, duration: Duration) -> Self {
        Self {
            url: url.into(),
            connections,
            stop: Stop::Duration(duration),
            pace: Pace::AsFastAsPossible,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(30),
            send_log: None,
        }
    }
}

/// What a run measured (recorded responses only: warm-up excluded).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests sent (recorded ones).
    pub sent: u64,
    /// 200 responses.
    pub ok: u64,
    /// Other HTTP statuses, counted apart.
    pub non_200: u64,
    /// Transport errors and timeouts.
    pub failed: u64,
    /// The first non-200 status or error, for the report.
    pub first_error: Option<String>,
    /// From the end of the warm-up to the last recorded response.
    pub elapsed: Duration,
    /// Latencies of the 200 responses in µs, sorted.
    pub latencies_us: Vec<u32>,
    /// For fixed-rate runs: service time (from the actual send) of the 200s in µs, sorted.
    pub service_us: Vec<u32>,
    /// More requests were sent than there were envelopes, so some were sent twice.
    pub wrapped: bool,
}

impl Report {
    /// 200 responses per second.
    pub fn ok_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q` quantile of the 200s' latency, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        f64::from(percentile(&self.latencies_us, q)) / 1000.0
    }

    /// The `q` quantile of the 200s' service time (fixed rate), in milliseconds.
    pub fn service_ms(&self, q: f64) -> f64 {
        f64::from(percentile(&self.service_us, q)) / 1000.0
    }

    /// One line: counts, rate and latency quantiles.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} sent, {} ok, {} non-200, {} failed in {:.2} s: {:.0} ok/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.sent,
            self.ok,
            self.non_200,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.ok_per_sec(),
            self.latency_ms(0.50),
            self.latency_ms(0.99),
            self.latency_ms(1.0),
        );
        if !self.service_us.is_empty() {
            line += &format!(
                " (service time p50 {:.2} ms, p99 {:.2} ms)",
                self.service_ms(0.50),
                self.service_ms(0.99)
            );
        }
        if self.wrapped {
            line += " [envelopes reused: not all distinct]";
        }
        if let Some(error) = &self.first_error {
            line += &format!(" [first error: {error}]");
        }
        line
    }
}

/// One connection's tallies.
#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    non_200: u64,
    failed: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
    service_us: Vec<u32>,
    last_done: Option<Instant>,
}

/// Shared state of one run.
struct Shared {
    load: Load,
    envelopes: Arc<[Signed]>,
    next: AtomicUsize,
    wrapped: AtomicBool,
    start: Instant,
    record_from: Instant,
}

/// Runs `load` with `envelopes` (sent in order, wrapping around if there are too few) and
/// returns what it measured. Call from inside a Tokio runtime: connections are tasks on it.
pub async fn run(load: Load, envelopes: Arc<[Signed]>) -> anyhow::Result<Report> {
    anyhow::ensure!(!envelopes.is_empty(), "no envelopes to send");
    anyhow::ensure!(load.connections > 0, "need at least one connection");
    if let Pace::Fixed { rate } = load.pace {
        anyhow::ensure!(rate > 0.0, "the rate must be positive");
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        record_from: start + load.warmup,
        load,
        envelopes,
        next: AtomicUsize::new(0),
        wrapped: AtomicBool::new(false),
        start,
    });
    let mut tasks = Vec::with_capacity(shared.load.connections);
    for connection in 0..shared.load.connections {
        let client = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(shared.load.timeout)
            .build()?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            match shared.load.pace {
                Pace::AsFastAsPossible => closed_loop(&shared, &client).await,
                Pace::Fixed { rate } => open_loop(&shared, &client, connection, rate).await,
            }
        }));
    }
    let mut report = Report::default();
    let mut last_done = shared.record_from;
    for task in tasks {
        let tally = task.await?;
        report.sent += tally.sent;
        report.ok += tally.ok;
        report.non_200 += tally.non_200;
        report.failed += tally.failed;
        if report.first_error.is_none() {
            report.first_error = tally.first_error;
        }
        report.latencies_us.extend(tally.latencies_us);
        report.service_us.extend(tally.service_us);
        if let Some(done) = tally.last_done {
            last_done = last_done.max(done);
        }
    }
    report.elapsed = last_done.saturating_duration_since(shared.record_from);
    report.wrapped = shared.wrapped.load(Ordering::Relaxed);
    report.latencies_us.sort_unstable();
    report.service_us.sort_unstable();
    Ok(report)
}

async fn closed_loop(shared: &Shared, client: &reqwest::Client) -> Tally {
    let mut tally = Tally::default();
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        match shared.load.stop {
            Stop::Requests(n) if index >= n => break,
            Stop::Duration(d) if Instant::now() >= shared.record_from + d => break,
            _ => {}
        }
        let sent = Instant::now();
        send(shared, client, index, sent, sent, false, &mut tally).await;
    }
    tally
}

async fn open_loop(
    shared: &Shared,
    client: &reqwest::Client,
    connection: usize,
    rate: f64,
) -> Tally {
    let mut tally = Tally::default();
    let total = match shared.load.stop {
        Stop::Requests(n) => n,
        Stop::Duration(d) => ((shared.load.warmup + d).as_secs_f64() * rate).ceil() as usize,
    };
    let mut index = connection;
    while index < total {
        let scheduled = shared.start + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let sent = Instant::now();
        send(shared, client, index, scheduled, sent, true, &mut tally).await;
        index += shared.load.connections;
    }
    tally
}

/// Sends envelope `index` (modulo the slice), timing from `from` (the send itself, or the
/// scheduled time for fixed-rate runs), and tallies the outcome.
async fn send(
    shared: &Shared,
    client: &reqwest::Client,
    index: usize,
    from: Instant,
    sent: Instant,
    keep_service: bool,
    tally: &mut Tally,
) {
    let slot = index % shared.envelopes.len();
    if slot != index {
        shared.wrapped.store(true, Ordering::Relaxed);
    }
    let envelope = &shared.envelopes[slot];
    if let Some(log) = &shared.load.send_log {
        log.record(slot, sent);
    }
    let result = client
        .post(&shared.load.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, &envelope.signature)
        .body(envelope.body.clone())
        .send()
        .await;
    // Read the whole body so the connection goes back to the pool.
    let outcome = match result {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(_) => Ok(status),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    let done = Instant::now();
    if done < shared.record_from {
        return;
    }
    tally.sent += 1;
    tally.last_done = Some(done);
    match outcome {
        Ok(status) if status == reqwest::StatusCode::OK => {
            tally.ok += 1;
            tally.latencies_us.push(micros(done - from));
            if keep_service {
                tally.service_us.push(micros(done - sent));
            }
        }
        Ok(status) => {
            tally.non_200 += 1;
            tally
                .first_error
                .get_or_insert_with(|| format!("HTTP {status}"));
        }
        Err(error) => {
            tally.failed += 1;
            tally.first_error.get_or_insert(error);
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EnvelopeSpec {
        EnvelopeSpec {
            phone_number_id: "106540352242922".to_string(),
            run_id: "t1".to_string(),
            secret: "bench-secret".to_string(),
        }
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.0), 7);
        assert_eq!(percentile(&[7], 0.99), 7);
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.0), 1);
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 0.999), 100);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&values, 2.0), 100);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 0.51), 3);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn envelope_decodes_to_one_text_message_from_its_sender() {
        let body = text_envelope(&spec(), 7);
        let decoded = plugboard_whatsapp::decode(body.as_bytes()).expect("decodes");
        assert_eq!(decoded.events.len(), 1, "{body}");
        assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let change = &value["entry"][0]["changes"][0]["value"];
        assert_eq!(change["metadata"]["phone_number_id"], "106540352242922");
        let message = &change["messages"][0];
        assert_eq!(message["from"], "15550000007");
        assert_eq!(message["id"], "wamid.t1.7");
        assert_eq!(message["type"], "text");
        assert_eq!(message["text"]["body"], TEXT_BODY);
        assert_eq!(change["contacts"][0]["wa_id"], "15550000007");
        let event = serde_json::to_string(&decoded.events[0]).unwrap();
        assert!(
            event.contains("15550000007") && event.contains("wamid.t1.7"),
            "{event}"
        );
    }

    #[test]
    fn envelopes_are_distinct_and_signed() {
        let spec = spec();
        let envelopes = build_envelopes(&spec, 10, 3);
        assert_eq!(envelopes.len(), 3);
        assert_ne!(envelopes[0].body, envelopes[1].body);
        for (k, envelope) in envelopes.iter().enumerate() {
            assert_eq!(envelope.signature, sign(&spec.secret, &envelope.body));
            let value: serde_json::Value = serde_json::from_slice(&envelope.body).unwrap();
            let message = &value["entry"][0]["changes"][0]["value"]["messages"][0];
            assert_eq!(message["from"], (SENDER_BASE + 10 + k as u64).to_string());
            assert_eq!(message["id"], format!("wamid.t1.{}", 10 + k));
        }
    }

    #[test]
    fn odd_ids_are_escaped() {
        let spec = EnvelopeSpec {
            phone_number_id: "1\"2".to_string(),
            run_id: "r\\".to_string(),
            secret: "s".to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(&text_envelope(&spec, 0)).unwrap();
        let change = &value["entry"][0]["changes"][0]["value"];
        assert_eq!(change["metadata"]["phone_number_id"], "1\"2");
        assert_eq!(change["messages"][0]["id"], "wamid.r\\.0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_and_open_loops_against_a_local_server() {
        use axum::http::StatusCode;
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(|headers: axum::http::HeaderMap, body: Bytes| async move {
                let signature = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if signature == sign("bench-secret", &body) {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/hook");
        let envelopes: Arc<[Signed]> = build_envelopes(&spec(), 0, 50).into();

        let mut load = Load::closed(&url, 4, Duration::ZERO);
        load.stop = Stop::Requests(200);
        let report = run(load.clone(), envelopes.clone()).await.unwrap();
        assert_eq!(
            (report.sent, report.ok, report.non_200, report.failed),
            (200, 200, 0, 0)
        );
        assert_eq!(report.latencies_us.len(), 200);
        assert!(report.wrapped);

        load.pace = Pace::Fixed { rate: 1000.0 };
        load.stop = Stop::Requests(40);
        let report = run(load, envelopes).await.unwrap();
        assert_eq!((report.ok, report.non_200), (40, 0));
        assert_eq!(report.service_us.len(), 40);
        assert!(!report.wrapped);
        assert!(
            report.elapsed >= Duration::from_millis(35),
            "{:?}",
            report.elapsed
        );

        let wrong = EnvelopeSpec {
            secret: "other".to_string(),
            ..spec()
        };
        let mut load = Load::closed(&url, 2, Duration::ZERO);
        load.stop = Stop::Requests(10);
        let report = run(load, build_envelopes(&wrong, 0, 10).into())
            .await
            .unwrap();
        assert_eq!((report.ok, report.non_200), (0, 10));
        assert_eq!(report.ok_per_sec(), 0.0);
        assert!(
            report.summary().contains("HTTP 401"),
            "{}",
            report.summary()
        );
    }
}
