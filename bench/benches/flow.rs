//! Flow steps per second on the support flow (`flows/support.json`), one thread, without
//! transformer hooks and with both example hooks (issue 3).
//!
//! A step is one [`step`] for a user message, its returned state fed into the next step.
//! The messages cycle through a realistic walk of the support flow, from the greeting:
//! the "hours" button (opening hours, "Anything else?"), the "done" button (goodbye, end),
//! "hello" (greeting again), a free text with a card and a phone number (fallback,
//! greeting), "hours" again and the "menu" button (greeting), so every step routes through
//! branches and renders templates (`{{user.name}}`). "two-hooks" does per message what the
//! host does with an endpoint's transformers: the session view, [`Transformers::apply_input`]
//! through `mask-pii` then `signature` (warm WASM instances, hook limits), the step on the
//! transformed message, and [`Transformers::apply_outputs`] on the step's `Send` outputs.
//!
//! Run with `cargo bench -p plugboard-bench --bench flow` (release profile). Criterion's
//! groups run first (`flow/support`, then `flow/parts`: the hooked step's pieces alone);
//! then a summary measures both sides again, interleaved in rounds so machine noise hits
//! both alike, and prints steps/s with PASS/MISS against the targets (at least 100,000
//! steps/s without hooks, 20,000 with the two hooks) and where the hooked step's time goes.
//! Before any timing, the walk is checked: the flow's replies, the masked card and phone
//! number, the signed text outputs. Under `cargo test --benches` every case runs once, no
//! summary.

use plugboard_bench::timing::{calibrate, median, micros_per_call};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use plugboard::flow::engine::{Position, Speaker as FlowSpeaker};
use plugboard::flow::{Effect, Flow, FlowInput, MessageInput, SessionState, step};
use plugboard::plugins::example_hooks::{MASK_PII, SIGNATURE};
use plugboard::plugins::types::{
    BotOutput, Business, ChoiceReply, ChoiceSource, InboundMessage, MessageContent, User,
};
use plugboard::plugins::{
    AdapterPlugin, BUNDLED_WHATSAPP, HistoryTurn, HookPlugin, PluginLimits, PluginRuntime,
    SessionView, Speaker,
};
use plugboard::transform::{FailurePolicy, Transformers};

/// Steps per second without hooks, at least…
const TARGET_BARE: f64 = 100_000.0;
/// …and with the two example hooks.
const TARGET_HOOKED: f64 = 20_000.0;

/// Summary: rounds of interleaved batches, and the wall time of one batch of steps.
const ROUNDS: usize = 25;
const BATCH_TIME: Duration = Duration::from_millis(20);

const PII_TEXT: &str = "My card 4111 1111 1111 1111 was charged twice, call me on +49 170 1234567";
const PII_MASKED: &str =
    "My card •••• •••• •••• 1111 was charged twice, call me on +•• ••• •••••67";
const GREETING: &str = "choices: Hi Kerry! How can we help? [hours, order, faq]";
const ANYTHING_ELSE: &str = "choices: Anything else? [menu, done]";
const HOURS: &str = "text: We are open Monday to Saturday, 9:00 to 18:00. Closed on Sundays.";
const BYE: &str = "text: Thanks Kerry, have a nice day!";
const FALLBACK: &str = "text: Sorry, I did not get that.";
const SIGNATURE_LINE: &str = "— Plugboard support";

/// The walk: each message and the replies it gets. It starts and ends at the greeting.
fn walk() -> Vec<(InboundMessage, Vec<&'static str>)> {
    vec![
        (choice("hours"), vec![HOURS, ANYTHING_ELSE]),
        (choice("done"), vec![BYE, "end"]),
        (text("hello"), vec![GREETING]),
        (text(PII_TEXT), vec![FALLBACK, GREETING]),
        (choice("hours"), vec![HOURS, ANYTHING_ELSE]),
        (choice("menu"), vec![GREETING]),
    ]
}

fn message(content: MessageContent) -> InboundMessage {
    InboundMessage {
        id: "wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQTdCNUY2RTk4".into(),
        timestamp: 1_717_171_717,
        user: User {
            user_id: None,
            phone: Some("16315551181".into()),
            name: Some("Kerry".into()),
            username: None,
        },
        context: None,
        referral: None,
        content,
    }
}

fn text(t: &str) -> InboundMessage {
    message(MessageContent::Text(t.into()))
}

fn choice(id: &str) -> InboundMessage {
    message(MessageContent::Choice(ChoiceReply {
        source: ChoiceSource::Button,
        id: id.into(),
        title: id.into(),
        description: None,
    }))
}

fn business() -> Business {
    Business {
        phone_number_id: "106540352242922".into(),
        display_number: Some("15550783881".into()),
        account_id: Some("102290129340398".into()),
    }
}

fn flow_input(message: InboundMessage) -> FlowInput {
    FlowInput::Message(Box::new(MessageInput {
        message,
        business: Some(business()),
    }))
}

/// A compact view of effects, to check the walk.
fn show(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Send(output) => show_output(output),
            Effect::End => "end".into(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn show_output(output: &BotOutput) -> String {
    match output {
        BotOutput::Text(t) => format!("text: {t}"),
        BotOutput::Choices(c) => format!(
            "choices: {} [{}]",
            c.text,
            c.choices
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn sends(effects: Vec<Effect>) -> Vec<BotOutput> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send(output) => Some(output),
            _ => None,
        })
        .collect()
}

/// What hooks see of the session, built as the host builds it.
fn view(state: &SessionState) -> SessionView {
    SessionView {
        conversation_key: "wa_16315551181".into(),
        user: state.user.clone().unwrap_or(User {
            user_id: Some("16315551181".into()),
            phone: None,
            name: None,
            username: None,
        }),
        data: state
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        history: state
            .history
            .iter()
            .map(|t| HistoryTurn {
                speaker: match t.from {
                    FlowSpeaker::User => Speaker::User,
                    FlowSpeaker::Bot => Speaker::Bot,
                },
                text: t.text.clone(),
            })
            .collect(),
    }
}

/// One conversation walking the support flow, one message per step.
struct Session<'a> {
    flow: &'a Flow,
    state: SessionState,
    messages: Vec<InboundMessage>,
    /// The same messages as flow inputs, for the bare steps.
    inputs: Vec<FlowInput>,
    next: usize,
    now_ms: u64,
}

impl<'a> Session<'a> {
    /// A session at the greeting, where the walk starts.
    fn new(flow: &'a Flow) -> Self {
        let (state, effects) = step(flow, &SessionState::new(flow), &flow_input(text("hi")), 0);
        assert_eq!(show(&effects), [GREETING], "the flow greets first");
        let messages: Vec<InboundMessage> = walk().into_iter().map(|(m, _)| m).collect();
        Session {
            flow,
            state,
            inputs: messages.iter().cloned().map(flow_input).collect(),
            messages,
            next: 0,
            now_ms: 0,
        }
    }

    fn advance(&mut self) -> usize {
        let i = self.next;
        self.next = (i + 1) % self.messages.len();
        self.now_ms += 1_000;
        i
    }

    /// One step, no hooks.
    fn bare(&mut self) -> Vec<Effect> {
        let i = self.advance();
        let (state, effects) = step(self.flow, &self.state, &self.inputs[i], self.now_ms);
        self.state = state;
        effects
    }

    /// One step as the host runs it with transformers: input hooks, step, output hooks.
    fn hooked(&mut self, hooks: &Transformers) -> (Vec<Effect>, Vec<BotOutput>) {
        let i = self.advance();
        let outcome = hooks
            .apply_input(self.messages[i].clone(), &view(&self.state))
            .expect("input hooks");
        for (k, v) in outcome.set_data {
            let value = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            self.state.context.insert(k, value);
        }
        let message = outcome.message.expect("no hook drops these inputs");
        let (state, effects) = step(self.flow, &self.state, &flow_input(message), self.now_ms);
        self.state = state;
        let outputs = sends(effects.clone());
        let outputs = hooks
            .apply_outputs(outputs, &view(&self.state))
            .expect("output hooks");
        (effects, outputs)
    }
}

/// Runs the walk twice on each side, checking replies, masking and signatures.
fn check(flow: &Flow, hooks: &Transformers) {
    let expected = walk();
    let mut bare = Session::new(flow);
    let mut hooked = Session::new(flow);
    for round in 0..2 {
        for (i, (_, replies)) in expected.iter().enumerate() {
            let effects = bare.bare();
            assert_eq!(
                show(&effects),
                *replies,
                "no hooks, round {round}, step {i}"
            );
            let (effects, outputs) = hooked.hooked(hooks);
            assert_eq!(show(&effects), *replies, "hooks, round {round}, step {i}");
            let sent = sends(effects);
            assert_eq!(
                outputs.len(),
                sent.len(),
                "hooks, step {i}: one output each"
            );
            for (signed, plain) in outputs.iter().zip(&sent) {
                match (signed, plain) {
                    (BotOutput::Text(s), BotOutput::Text(p)) => {
                        assert!(s.starts_with(p.as_str()), "step {i}: {s:?}");
                        assert!(s.ends_with(SIGNATURE_LINE), "step {i}: unsigned {s:?}");
                    }
                    (s, p) => assert_eq!(s, p, "step {i}: only text is signed"),
                }
            }
        }
        assert_eq!(
            bare.state.position,
            Position::Input {
                node: "greet".into()
            },
            "the walk ends at the greeting"
        );
        assert_eq!(bare.state.position, hooked.state.position);
    }
    let heard: Vec<&str> = hooked
        .state
        .history
        .iter()
        .map(|t| t.text.as_str())
        .collect();
    assert!(heard.contains(&PII_MASKED), "mask-pii masked: {heard:?}");
    assert!(!heard.contains(&PII_TEXT), "the flow never sees the card");
    assert_eq!(
        hooked.state.context.get("pii_masked"),
        Some(&serde_json::Value::Bool(true))
    );
}

fn load(flow_path: &str) -> (Flow, Transformers) {
    let runtime = Arc::new(PluginRuntime::new().expect("wasmtime engine"));
    let adapter = AdapterPlugin::load(&runtime, BUNDLED_WHATSAPP, PluginLimits::default())
        .expect("the bundled adapter loads");
    let flow = Flow::load(flow_path, &adapter.info().limits).expect("the support flow loads");
    let hook = |name, path: &str| {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Arc::new(
            HookPlugin::load(&runtime, name, &bytes, PluginLimits::hook_default())
                .unwrap_or_else(|e| panic!("hook {name}: {e}")),
        )
    };
    let hooks = Transformers::new(
        vec![hook("mask-pii", MASK_PII), hook("signature", SIGNATURE)],
        FailurePolicy::Abort,
    );
    (flow, hooks)
}

/// One pass of the walk with the hooks, kept per message: what each part of a hooked step
/// gets, to time the parts alone.
struct Parts {
    /// (message, session view before the step).
    inputs: Vec<(InboundMessage, SessionView)>,
    /// (the step's sends, session view after the step).
    outputs: Vec<(Vec<BotOutput>, SessionView)>,
    /// The session state before each step.
    states: Vec<SessionState>,
}

fn parts(flow: &Flow, hooks: &Transformers) -> Parts {
    let mut session = Session::new(flow);
    let mut parts = Parts {
        inputs: Vec::new(),
        outputs: Vec::new(),
        states: Vec::new(),
    };
    for message in session.messages.clone() {
        parts.states.push(session.state.clone());
        parts.inputs.push((message, view(&session.state)));
        let (effects, _) = session.hooked(hooks);
        parts.outputs.push((sends(effects), view(&session.state)));
    }
    parts
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // As criterion decides: `cargo bench` passes --bench; `cargo test --benches` does not.
    let benchmarking = has("--bench") && !has("--test") && !has("--list");

    let flow_path = format!("{}/../flows/support.json", env!("CARGO_MANIFEST_DIR"));
    let (flow, hooks) = load(&flow_path);
    check(&flow, &hooks);
    let parts = parts(&flow, &hooks);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("flow/support");
        group.throughput(Throughput::Elements(1));
        let mut bare = Session::new(&flow);
        group.bench_function("no-hooks", |b| b.iter(|| black_box(bare.bare())));
        let mut hooked = Session::new(&flow);
        group.bench_function("two-hooks", |b| b.iter(|| black_box(hooked.hooked(&hooks))));
        group.finish();
    }
    {
        // The hooked step's parts, each over the walk's messages in turn.
        let mut group = criterion.benchmark_group("flow/parts");
        let mut i = 0;
        group.bench_function("apply-input", |b| {
            b.iter(|| {
                i = (i + 1) % parts.inputs.len();
                let (message, view) = &parts.inputs[i];
                black_box(
                    hooks
                        .apply_input(message.clone(), view)
                        .expect("input hooks"),
                )
            })
        });
        group.bench_function("apply-outputs", |b| {
            b.iter(|| {
                i = (i + 1) % parts.outputs.len();
                let (outputs, view) = &parts.outputs[i];
                black_box(
                    hooks
                        .apply_outputs(outputs.clone(), view)
                        .expect("output hooks"),
                )
            })
        });
        group.finish();
    }
    criterion.final_summary();

    if benchmarking {
        summary(&flow, &hooks, &parts);
    }
}

fn summary(flow: &Flow, hooks: &Transformers, parts: &Parts) {
    println!();
    println!(
        "Summary: support flow, one thread, median of {ROUNDS} interleaved rounds, ~{} ms of steps per side per round",
        BATCH_TIME.as_millis()
    );
    let mut bare_session = Session::new(flow);
    let mut hooked_session = Session::new(flow);
    let mut bare = || {
        black_box(bare_session.bare());
    };
    let mut hooked = || {
        black_box(hooked_session.hooked(hooks));
    };
    let [bare_us, hooked_us] = interleaved([&mut bare, &mut hooked]);

    // Where a hooked step's time goes: each part alone, interleaved the same way.
    let (mut a, mut b, mut c, mut d) = (0, 0, 0, 0);
    let mut views = || {
        a = (a + 1) % parts.inputs.len();
        black_box(view(black_box(&parts.states[a])));
    };
    let mut input = || {
        b = (b + 1) % parts.inputs.len();
        let (message, view) = &parts.inputs[b];
        black_box(
            hooks
                .apply_input(message.clone(), view)
                .expect("input hooks"),
        );
    };
    let mut outputs = || {
        c = (c + 1) % parts.outputs.len();
        let (outputs, view) = &parts.outputs[c];
        black_box(
            hooks
                .apply_outputs(outputs.clone(), view)
                .expect("output hooks"),
        );
    };
    let (signature, mask) = (&hooks.hooks[1], &hooks.hooks[0]);
    let mut trivial = || {
        d = (d + 1) % parts.inputs.len();
        let (message, view) = &parts.inputs[d];
        black_box(
            signature
                .on_input(message, view)
                .expect("call")
                .expect("keep"),
        );
    };
    let [view_us, input_us, outputs_us, trivial_us] =
        interleaved([&mut views, &mut input, &mut outputs, &mut trivial]);
    let mask_us = {
        let mut e = 0;
        let mut mask_call = || {
            e = (e + 1) % parts.inputs.len();
            let (message, view) = &parts.inputs[e];
            black_box(mask.on_input(message, view).expect("call").expect("masked"));
        };
        interleaved([&mut mask_call])[0]
    };

    let walk = walk();
    let sends_per_step = walk
        .iter()
        .map(|(_, r)| r.iter().filter(|r| **r != "end").count())
        .sum::<usize>() as f64
        / walk.len() as f64;
    // Per step: 2 on-input + 2 on-output per send + 2 on-execution-finished.
    let calls_per_step = 2.0 + 2.0 * sends_per_step + 2.0;

    println!(
        "{:<12} {:>11} {:>13} {:>16} {:>8}",
        "case", "µs/step", "steps/s", "target steps/s", ""
    );
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    for (name, us, target) in [
        ("no-hooks", bare_us, TARGET_BARE),
        ("two-hooks", hooked_us, TARGET_HOOKED),
    ] {
        let rate = 1e6 / us;
        println!(
            "{name:<12} {us:>11.2} {rate:>13.0} {:>16} {:>8}",
            format!("≥ {target:.0}"),
            verdict(rate >= target)
        );
    }
    println!(
        "two-hooks per step, parts timed alone (need not add up exactly): step {bare_us:.2} µs, \
         2 session views {:.2} µs, apply_input {input_us:.2} µs, apply_outputs {outputs_us:.2} µs",
        2.0 * view_us
    );
    println!(
        "hook calls: {calls_per_step:.1} per step ({sends_per_step:.2} sends per step); one call: \
         signature on-input (keep, no work) {trivial_us:.2} µs, mask-pii on-input {mask_us:.2} µs"
    );
    println!(
        "target issue 3: ≥ {TARGET_BARE:.0} steps/s without hooks: {:.0} {}; ≥ {TARGET_HOOKED:.0} steps/s with two WASM hooks: {:.0} {}",
        1e6 / bare_us,
        verdict(1e6 / bare_us >= TARGET_BARE),
        1e6 / hooked_us,
        verdict(1e6 / hooked_us >= TARGET_HOOKED),
    );
}

/// Median µs per call of each closure, measured in [`ROUNDS`] interleaved rounds.
fn interleaved<const N: usize>(mut sides: [&mut dyn FnMut(); N]) -> [f64; N] {
    let counts: [u32; N] = std::array::from_fn(|i| calibrate(&mut *sides[i], BATCH_TIME));
    let mut times: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(ROUNDS));
    for round in 0..ROUNDS {
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        if round % 2 == 1 {
            order.reverse();
        }
        for side in order {
            times[side].push(micros_per_call(&mut *sides[side], counts[side]));
        }
    }
    std::array::from_fn(|i| median(&times[i]))
}
