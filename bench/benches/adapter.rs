//! The WhatsApp adapter as a WebAssembly component against the same code compiled natively.
//!
//! Measures, per call: decoding a one-message webhook and a 50-item batch (30 messages of
//! mixed types from four senders + 20 statuses), and rendering a reply (plain text quoting
//! a message) and a three-button question. The component side goes through
//! [`AdapterPlugin`] exactly as the host calls it (pool, deadline, canonical ABI both ways):
//! "component" reuses a warm instance, "component-fresh-instance" instantiates a new one
//! per call from the pre-instantiated component (`reuse_instances: false`). `overhead/classify-timeout` is a call that
//! does almost nothing, i.e. the cost of crossing into the component and back.
//!
//! Run with `cargo bench -p plugboard-bench` (release profile). Criterion's groups run
//! first; then a summary measures each native/component pair again, interleaved in rounds
//! so machine noise hits both sides alike, and prints µs per call, the component/native
//! ratio and the fresh-instance cost, with PASS/MISS against the targets for the
//! one-message decode: within 3× native and under 20 µs per call. Criterion arguments
//! work as usual (`cargo bench -p plugboard-bench -- decode/` filters the groups; the
//! summary always runs in full). Before any timing, every case checks that native and
//! component results are equal. Under `cargo test --benches` every case runs once, no summary.

use plugboard_bench::timing::{calibrate, median, micros_per_call};
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use plugboard::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, PluginLimits, PluginRuntime, types};
use plugboard_bench::{CHOICES, ONE_MESSAGE, REPLY, batch_envelope, render_input};
use plugboard_whatsapp::types as native;
use serde::Serialize;
use serde_json::Value;

/// The one-message component decode must be within this factor of native…
const TARGET_RATIO: f64 = 3.0;
/// …and take under this many µs per call, call overhead included.
const TARGET_MICROS: f64 = 20.0;

/// Summary: rounds of interleaved batches, and the wall time of one batch of calls.
const ROUNDS: usize = 25;
const BATCH_TIME: Duration = Duration::from_millis(8);

/// Runs one case's call on both sides and returns (native, component) results as JSON.
type Results = Box<dyn Fn(&AdapterPlugin) -> (Value, Value)>;

/// One benchmark case: the same work natively and through a loaded component.
struct Case {
    name: &'static str,
    native: Box<dyn Fn()>,
    component: Box<dyn Fn(&AdapterPlugin)>,
    /// Both results as JSON, to check the two sides agree before timing them.
    results: Results,
}

fn case<RN, RC>(
    name: &'static str,
    native: impl Fn() -> RN + 'static,
    component: impl Fn(&AdapterPlugin) -> RC + 'static,
) -> Case
where
    RN: Serialize + 'static,
    RC: Serialize + 'static,
{
    let native = Rc::new(native);
    let component = Rc::new(component);
    let (n, c) = (native.clone(), component.clone());
    Case {
        name,
        native: Box::new(move || {
            black_box(n());
        }),
        component: Box::new(move |plugin| {
            black_box(c(plugin));
        }),
        results: Box::new(move |plugin| (json(&native()), json(&component(plugin)))),
    }
}

fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("results serialize")
}

fn cases() -> Vec<Case> {
    // Inputs live for the whole process; leaking them lets the boxed closures borrow them.
    let one: &'static [u8] = ONE_MESSAGE.as_bytes();
    let batch: &'static [u8] = batch_envelope(30, 20).leak();
    let decode = |name, body: &'static [u8]| {
        case(
            name,
            move || plugboard_whatsapp::decode(black_box(body)),
            move |p: &AdapterPlugin| p.decode(black_box(body)).expect("decode call"),
        )
    };
    let render = |name, fixture: &str| {
        let (n_out, n_ctx): (native::BotOutput, native::RenderContext) = render_input(fixture);
        let (h_out, h_ctx): (types::BotOutput, types::RenderContext) = render_input(fixture);
        case(
            name,
            move || plugboard_whatsapp::render(black_box(&n_out), black_box(&n_ctx)),
            move |p: &AdapterPlugin| {
                p.render(black_box(&h_out), black_box(&h_ctx))
                    .expect("render call")
            },
        )
    };
    vec![
        decode("decode/one-message", one),
        decode("decode/batch-50", batch),
        render("render/reply", REPLY),
        render("render/choices", CHOICES),
        // Next to no work on either side: the cost of the call itself.
        case(
            "overhead/classify-timeout",
            || plugboard_whatsapp::classify(black_box(&native::SendOutcome::Timeout), 0),
            |p: &AdapterPlugin| {
                p.classify(black_box(&types::SendOutcome::Timeout), 0)
                    .expect("classify call")
            },
        ),
    ]
}

struct Plugins {
    /// Warm instances reused between calls: how the host runs.
    warm: AdapterPlugin,
    /// A fresh instance per call, from the same pre-instantiated component.
    fresh: AdapterPlugin,
}

fn plugins() -> Plugins {
    let runtime = Arc::new(PluginRuntime::new().expect("wasmtime engine"));
    let load = |reuse_instances| {
        AdapterPlugin::load(
            &runtime,
            BUNDLED_WHATSAPP,
            PluginLimits {
                reuse_instances,
                ..PluginLimits::default()
            },
        )
        .expect("the bundled adapter loads")
    };
    Plugins {
        warm: load(true),
        fresh: load(false),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // As criterion decides: `cargo bench` passes --bench; `cargo test --benches` does not.
    let benchmarking = has("--bench") && !has("--test") && !has("--list");

    let plugins = plugins();
    let cases = cases();
    for case in &cases {
        for (side, plugin) in [("warm", &plugins.warm), ("fresh", &plugins.fresh)] {
            let (native, component) = (case.results)(plugin);
            assert_eq!(
                native, component,
                "{}: native and component ({side} instance) disagree",
                case.name
            );
        }
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    for case in &cases {
        let mut group = criterion.benchmark_group(case.name);
        group.bench_function("native", |b| b.iter(|| (case.native)()));
        group.bench_function("component", |b| b.iter(|| (case.component)(&plugins.warm)));
        if case.name == "decode/one-message" {
            group.bench_function("component-fresh-instance", |b| {
                b.iter(|| (case.component)(&plugins.fresh))
            });
        }
        group.finish();
    }
    criterion.final_summary();

    if benchmarking {
        summary(&cases, &plugins);
    }
}

/// Median µs per call of each side, measured in interleaved rounds.
struct Row {
    name: &'static str,
    native: f64,
    warm: f64,
    fresh: f64,
    /// Median over rounds of warm/native measured in the same round.
    ratio: f64,
}

fn summary(cases: &[Case], plugins: &Plugins) {
    println!();
    println!(
        "Summary: median of {ROUNDS} interleaved rounds, ~{} ms of calls per side per round",
        BATCH_TIME.as_millis()
    );
    let rows: Vec<Row> = cases.iter().map(|case| measure(case, plugins)).collect();
    println!(
        "{:<27} {:>11} {:>14} {:>8} {:>19}",
        "case", "native µs", "component µs", "ratio", "fresh-instance µs"
    );
    for row in &rows {
        println!(
            "{:<27} {:>11.2} {:>14.2} {:>7.2}x {:>19.1}",
            row.name, row.native, row.warm, row.ratio, row.fresh
        );
    }
    if let Some(overhead) = rows.iter().find(|r| r.name == "overhead/classify-timeout") {
        println!(
            "call overhead (component − native, trivial call): {:.2} µs; fresh instance adds {:.1} µs per call",
            overhead.warm - overhead.native,
            overhead.fresh - overhead.warm
        );
    }
    let one = rows
        .iter()
        .find(|r| r.name == "decode/one-message")
        .expect("the one-message case runs");
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "target decode/one-message, warm component: ≤ {TARGET_RATIO:.0}× native: {:.2}x {}; \
         < {TARGET_MICROS:.0} µs per call: {:.2} µs {}",
        one.ratio,
        verdict(one.ratio <= TARGET_RATIO),
        one.warm,
        verdict(one.warm < TARGET_MICROS),
    );
}

fn measure(case: &Case, plugins: &Plugins) -> Row {
    let native = || (case.native)();
    let warm = || (case.component)(&plugins.warm);
    let fresh = || (case.component)(&plugins.fresh);
    let (mut native, mut warm, mut fresh) = (native, warm, fresh);
    let mut sides: [&mut dyn FnMut(); 3] = [&mut native, &mut warm, &mut fresh];
    let counts: [u32; 3] = std::array::from_fn(|i| calibrate(&mut *sides[i], BATCH_TIME));
    let mut times: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        let mut order = [0, 1, 2];
        if round % 2 == 1 {
            order.reverse();
        }
        for side in order {
            times[side].push(micros_per_call(&mut *sides[side], counts[side]));
        }
    }
    let ratios: Vec<f64> = times[1]
        .iter()
        .zip(&times[0])
        .map(|(warm, native)| warm / native)
        .collect();
    Row {
        name: case.name,
        native: median(&times[0]),
        warm: median(&times[1]),
        fresh: median(&times[2]),
        ratio: median(&ratios),
    }
}
