//! `loadgen`: drives a running Plugboard host (or any webhook endpoint) with signed,
//! distinct WhatsApp text-message webhooks and prints what it measured.
//!
//! Closed loop by default (each of `--connections` keep-alive connections sends its next
//! envelope as soon as the previous response arrives); with `--rate` it is open loop at
//! that many requests per second in total, latency counted from each request's scheduled
//! time. Stops after `--requests` requests or `--duration-secs` seconds (10 s if neither).
//! All envelopes are built and signed before the clock starts. Non-200 answers and
//! transport errors are reported apart from the 200s; the exit status is 1 if any occurred.
//!
//! ```text
//! cargo run --release -p plugboard-bench --bin loadgen -- \
//!     --url http://127.0.0.1:8080/webhooks/support --secret "$APP_SECRET" \
//!     --phone-number-id 106540352242922 --connections 32 --duration-secs 10 --rate 2000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use plugboard_bench::loadgen::{self, EnvelopeSpec, Load, Pace, Stop};

#[derive(Debug, Parser)]
#[command(about = "Send signed WhatsApp webhooks to a host and measure acks")]
struct Args {
    /// The webhook URL, e.g. http://127.0.0.1:8080/webhooks/support.
    #[arg(long)]
    url: String,
    /// The endpoint's app secret (signs `x-hub-signature-256`).
    #[arg(long)]
    secret: String,
    /// `metadata.phone_number_id` of the envelopes.
    #[arg(long, default_value = "106540352242922")]
    phone_number_id: String,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Stop after this many requests.
    #[arg(long, conflicts_with = "duration_secs")]
    requests: Option<usize>,
    /// Stop after this many seconds (after the warm-up).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Open loop at this many requests per second in total (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Responses within this many seconds of the start are not recorded.
    #[arg(long, default_value_t = 0.0)]
    warmup_secs: f64,
    /// Envelope `i` comes from sender 15550000000 + first-sender + i.
    #[arg(long, default_value_t = 0)]
    first_sender: u64,
    /// Wamids are `wamid.<run-id>.<i>` (default: from the clock, distinct per run).
    #[arg(long)]
    run_id: Option<String>,
    /// How many distinct envelopes to build for a timed run (default: enough for
    /// 20,000 requests/s, or the fixed rate); more requests than that reuse them.
    #[arg(long)]
    envelopes: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        args.rate.is_none_or(|r| r > 0.0 && r.is_finite()),
        "--rate must be positive"
    );
    let warmup = Duration::from_secs_f64(args.warmup_secs.max(0.0));
    let stop = match (args.requests, args.duration_secs) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(secs)) => Stop::Duration(Duration::from_secs_f64(secs.max(0.0))),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let count = args.envelopes.unwrap_or(match stop {
        Stop::Requests(n) => n,
        Stop::Duration(d) => {
            let per_sec = args.rate.unwrap_or(20_000.0);
            ((d + warmup).as_secs_f64() * per_sec).ceil() as usize + args.connections
        }
    });
    let spec = EnvelopeSpec {
        phone_number_id: args.phone_number_id,
        run_id: args.run_id.unwrap_or_else(loadgen::default_run_id),
        secret: args.secret,
    };
    let built = Instant::now();
    let envelopes: Arc<[_]> =
        loadgen::build_envelopes(&spec, args.first_sender, count.max(1)).into();
    eprintln!(
        "built and signed {} envelopes (run {}) in {:.2} s",
        envelopes.len(),
        spec.run_id,
        built.elapsed().as_secs_f64()
    );
    let load = Load {
        url: args.url,
        connections: args.connections,
        stop,
        pace: args
            .rate
            .map_or(Pace::AsFastAsPossible, |rate| Pace::Fixed { rate }),
        warmup,
        timeout: Duration::from_secs(30),
        send_log: None,
    };
    let report = loadgen::run(load, envelopes).await?;
    println!("{}", report.summary());
    if report.non_200 + report.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
