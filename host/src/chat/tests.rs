//! The conversation core driven by the chat's [`Conversations`], with paused tokio time: a
//! small inline flow, a recording outbound, a scripted http executor and a recording
//! handover sink. These are the conversation behaviours' spec (ordering, pacing, expiry,
//! handover, inject and notify), ported from the former runtime's tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::clock::TokioClock;
use super::conversations::{Conversations, HandoverSink, Outbound};
use crate::conversation::{
    ConversationConfig, ConversationError, HandoverConfig, HandoverEvent, HandoverKind,
    HttpExecutor, SessionKey, Skipped, StepReport, config, handover, step as runtime,
};
use crate::flow::model::Method;
use crate::flow::{Flow, HttpCall, HttpOutcome};
use crate::plugins::types::{
    BotOutput, Business, InboundMessage, MarkReadOutput, MessageContent, User,
};
use crate::transform::Transformers;

use crate::flow::tests::WHATSAPP as LIMITS;

const FLOW: &str = r#"{
  "schema_version": 1,
  "name": "runtime-test",
  "start": "greet",
  "on_expire": "expired",
  "nodes": {
    "greet": { "type": "say", "messages": [{ "Text": "Hello" }], "next": "wait" },
    "wait": { "type": "ask", "store": "last", "next": "route" },
    "route": {
      "type": "branch",
      "cases": [
        { "when": { "keyword": ["three"] }, "next": "three" },
        { "when": { "keyword": ["order"] }, "next": "lookup" },
        { "when": { "keyword": ["agent"] }, "next": "human" }
      ],
      "default": "echo"
    },
    "three": {
      "type": "say",
      "messages": [{ "Text": "one" }, { "Text": "two" }, { "Text": "three" }],
      "next": "wait"
    },
    "echo": { "type": "say", "messages": [{ "Text": "You said {{input.text}}" }], "next": "wait" },
    "lookup": {
      "type": "http",
      "method": "GET",
      "url": "https://orders.example.com/v1/{{user.id}}",
      "timeout_ms": 2000,
      "result": { "/status": "status" },
      "error_key": "error",
      "next": "found",
      "on_error": "failed"
    },
    "found": { "type": "say", "messages": [{ "Text": "Status: {{context.status}}" }], "next": "wait" },
    "failed": { "type": "say", "messages": [{ "Text": "Lookup failed: {{context.error}}" }], "next": "wait" },
    "human": { "type": "handover", "reason": "flow asked" },
    "expired": { "type": "end", "messages": [{ "Text": "Session expired" }] }
  }
}"#;

type Deliveries = Arc<Mutex<Vec<(Instant, SessionKey, BotOutput)>>>;

/// Records deliveries; refuses a text equal to `.1` (to test failed deliveries).
#[derive(Clone, Default)]
struct Recorder(Deliveries, Arc<Mutex<Option<String>>>);

impl Outbound for Recorder {
    async fn deliver(&self, key: &SessionKey, output: BotOutput) -> Result<(), String> {
        if let BotOutput::Text(t) = &output
            && self.1.lock().unwrap().as_deref() == Some(t.as_str())
        {
            return Err("channel said no".into());
        }
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), key.clone(), output));
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<HttpOutcome>>>,
    calls: Arc<Mutex<Vec<HttpCall>>>,
}

impl HttpExecutor for Scripted {
    async fn call(&self, call: HttpCall) -> HttpOutcome {
        self.calls.lock().unwrap().push(call);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(HttpOutcome::Err("no scripted answer".into()))
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<HandoverEvent>>>);

impl HandoverSink for Sink {
    async fn post(&self, event: HandoverEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Harness {
    conv: Arc<Conversations<Recorder, Scripted, Sink>>,
    out: Deliveries,
    refuse: Arc<Mutex<Option<String>>>,
    http: Scripted,
    sink: Sink,
}

fn harness(config: ConversationConfig) -> Harness {
    harness_with(config, FLOW)
}

fn harness_with(config: ConversationConfig, flow: &str) -> Harness {
    let flow = match Flow::from_json("runtime-test.json", flow, &LIMITS) {
        Ok(flow) => flow,
        Err(e) => panic!("{e}"),
    };
    let out = Recorder::default();
    let http = Scripted::default();
    let sink = Sink::default();
    let conv = Conversations::new(
        config,
        Arc::new(flow),
        Transformers::default(),
        out.clone(),
        http.clone(),
        sink.clone(),
        Arc::new(TokioClock::starting_at(1_700_000_000_000)),
    );
    Harness {
        conv: Arc::new(conv),
        refuse: out.1,
        out: out.0,
        http,
        sink,
    }
}

fn config() -> ConversationConfig {
    ConversationConfig {
        endpoint: "shop".into(),
        ..ConversationConfig::default()
    }
}

fn key(phone: &str) -> SessionKey {
    SessionKey::new("shop", phone)
}

fn business() -> Business {
    Business {
        phone_number_id: "106540352242922".into(),
        display_number: Some("15550783881".into()),
        account_id: None,
    }
}

fn message(phone: &str, id: &str, text: &str) -> InboundMessage {
    InboundMessage {
        id: id.into(),
        timestamp: 1_700_000_000,
        user: User {
            user_id: None,
            phone: Some(phone.into()),
            name: Some("Kerry".into()),
            username: None,
        },
        context: None,
        referral: None,
        content: MessageContent::Text(text.into()),
    }
}

impl Harness {
    async fn say(&self, phone: &str, text: &str) -> StepReport {
        match self
            .conv
            .handle(message(phone, "wamid.1", text), business())
            .await
        {
            Ok(report) => report,
            Err(e) => panic!("{e}"),
        }
    }

    /// Texts delivered so far (typing indicators shown as `[typing]`), then cleared.
    fn take(&self) -> Vec<String> {
        let mut out = self.out.lock().unwrap();
        out.drain(..).map(|(_, _, o)| show(&o)).collect()
    }

    fn events(&self) -> Vec<(HandoverKind, Option<String>)> {
        let events = self.sink.0.lock().unwrap();
        events.iter().map(|e| (e.kind, e.reason.clone())).collect()
    }
}

fn show(output: &BotOutput) -> String {
    match output {
        BotOutput::Text(t) => t.clone(),
        BotOutput::MarkRead(m) if m.typing => format!("[typing {}]", m.message_id),
        other => format!("{other:?}"),
    }
}

fn texts(outputs: &[BotOutput]) -> Vec<String> {
    outputs.iter().map(show).collect()
}

#[test]
fn session_key_prefers_the_bsuid_and_shows_as_wa() {
    let mut user = message("15551234567", "m", "hi").user;
    assert_eq!(
        SessionKey::for_user("shop", &user).unwrap().to_string(),
        "wa_15551234567"
    );
    user.user_id = Some("US.1234".into());
    assert_eq!(SessionKey::for_user("shop", &user).unwrap().user, "US.1234");
    user.user_id = None;
    user.phone = None;
    assert!(matches!(
        SessionKey::for_user("shop", &user),
        Err(ConversationError::NoUser)
    ));
}

#[test]
fn keywords_are_case_insensitive_substrings() {
    let keywords = HandoverConfig::default().keywords;
    assert_eq!(
        handover::keyword_in("Can I TALK TO A HUMAN?", &keywords),
        Some("talk to a human")
    );
    assert_eq!(handover::keyword_in("humans are great", &keywords), None);
}

#[tokio::test(start_paused = true)]
async fn first_message_greets_and_later_ones_run_the_flow() {
    let h = harness(config());
    let report = h.say("1555", "hi").await;
    assert_eq!(texts(&report.delivered), ["Hello"]);
    assert_eq!(h.say("1555", "how are you").await.delivered.len(), 1);
    assert_eq!(h.take(), ["Hello", "You said how are you"]);
    let snapshot = h.conv.session(&key("1555")).await.unwrap();
    assert_eq!(snapshot.history.len(), 4);
    assert!(snapshot.ai_enabled && snapshot.handover.is_none());
}

#[tokio::test(start_paused = true)]
async fn history_keeps_the_configured_number_of_turns() {
    let h = harness(ConversationConfig {
        history_turns: 3,
        ..config()
    });
    for text in ["a", "b", "c", "d"] {
        h.say("1555", text).await;
    }
    let history = h.conv.session(&key("1555")).await.unwrap().history;
    let lines: Vec<_> = history.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(lines, ["You said c", "d", "You said d"]);
}

#[tokio::test(start_paused = true)]
async fn message_delay_spaces_outputs_in_order() {
    let h = harness(ConversationConfig {
        message_delay: Duration::from_secs(2),
        ..config()
    });
    h.say("1555", "hi").await;
    tokio::time::advance(Duration::from_secs(10)).await;
    h.take();
    let t0 = Instant::now();
    h.say("1555", "three").await;
    let out = h.out.lock().unwrap().clone();
    let timed: Vec<_> = out.iter().map(|(t, _, o)| (*t - t0, show(o))).collect();
    assert_eq!(
        timed,
        [
            (Duration::ZERO, "one".to_string()),
            (Duration::from_secs(2), "two".to_string()),
            (Duration::from_secs(4), "three".to_string()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn typing_indicator_goes_first_when_a_batch_waits() {
    let h = harness(ConversationConfig {
        message_delay: Duration::from_secs(2),
        typing_indicator: true,
        ..config()
    });
    // One output with no earlier delivery: nothing to wait for, no indicator.
    h.say("1555", "hi").await;
    assert_eq!(h.take(), ["Hello"]);
    tokio::time::advance(Duration::from_secs(10)).await;
    let t0 = Instant::now();
    let report = h.say("1555", "three").await;
    assert_eq!(texts(&report.delivered), ["one", "two", "three"]);
    let out = h.out.lock().unwrap().clone();
    assert_eq!(
        out[0].2,
        BotOutput::MarkRead(MarkReadOutput {
            message_id: "wamid.1".into(),
            typing: true
        })
    );
    assert_eq!(out[0].0, t0);
    assert_eq!(out[3].0 - t0, Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn the_gap_holds_across_calls_and_for_notify() {
    let h = harness(ConversationConfig {
        message_delay: Duration::from_secs(2),
        ..config()
    });
    let t0 = Instant::now();
    h.say("1555", "hi").await;
    h.conv
        .notify(&key("1555"), BotOutput::Text("Your parcel shipped".into()))
        .await
        .unwrap();
    let out = h.out.lock().unwrap().clone();
    assert_eq!(show(&out[1].2), "Your parcel shipped");
    assert_eq!(out[1].0 - t0, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn expiry_runs_on_expire_then_starts_afresh() {
    let h = harness(config());
    h.say("1555", "hi").await;
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(
        texts(&h.say("1555", "still here").await.delivered),
        ["You said still here"]
    );
    tokio::time::advance(Duration::from_secs(31 * 60)).await;
    let report = h.say("1555", "back").await;
    assert!(report.expired);
    assert_eq!(texts(&report.delivered), ["Session expired", "Hello"]);
}

#[tokio::test(start_paused = true)]
async fn zero_expiry_never_resets() {
    let h = harness(ConversationConfig {
        session_expiry: Duration::ZERO,
        ..config()
    });
    h.say("1555", "hi").await;
    tokio::time::advance(Duration::from_secs(48 * 3600)).await;
    let report = h.say("1555", "back").await;
    assert!(!report.expired);
    assert_eq!(texts(&report.delivered), ["You said back"]);
}

#[tokio::test(start_paused = true)]
async fn keyword_handover_mutes_the_bot_until_released() {
    let h = harness(config());
    let k = key("1555");
    h.say("1555", "hi").await;
    h.take();
    let report = h.say("1555", "Can I talk to a human please").await;
    assert!(report.handover_started);
    assert_eq!(texts(&report.delivered), [config::DEFAULT_CONFIRMATION]);
    {
        let events = h.sink.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        let started = &events[0];
        assert_eq!(started.kind, HandoverKind::Started);
        assert_eq!(started.conversation, "wa_1555");
        assert_eq!(started.endpoint, "shop");
        let transcript: Vec<_> = started.transcript.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            transcript,
            [
                "hi",
                "Hello",
                "Can I talk to a human please",
                config::DEFAULT_CONFIRMATION
            ]
        );
    }
    h.take();

    let report = h.say("1555", "hello?").await;
    assert_eq!(report.skipped, Some(Skipped::HandedOver));
    assert!(h.take().is_empty());
    {
        let events = h.sink.0.lock().unwrap();
        assert_eq!(events[1].kind, HandoverKind::Message);
        assert_eq!(events[1].text.as_deref(), Some("hello?"));
    }
    let snapshot = h.conv.session(&k).await.unwrap();
    let muted = snapshot.handover.unwrap();
    assert_eq!(muted.until_ms - muted.since_ms, 24 * 3600 * 1000);

    h.conv
        .agent_send(&k, BotOutput::Text("Agent Ana here".into()))
        .await
        .unwrap();
    assert_eq!(h.take(), ["Agent Ana here"]);
    let history = h.conv.session(&k).await.unwrap().history;
    assert_eq!(history.last().unwrap().text, "Agent Ana here");

    h.conv.release(&k).await.unwrap();
    assert_eq!(
        h.events().last().unwrap(),
        &(HandoverKind::Ended, Some("released".into()))
    );
    assert!(matches!(
        h.conv.release(&k).await,
        Err(ConversationError::NotHandedOver(_))
    ));
    assert_eq!(
        texts(&h.say("1555", "three").await.delivered),
        ["one", "two", "three"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_mute_runs_out_after_a_day() {
    let h = harness(ConversationConfig {
        session_expiry: Duration::ZERO,
        ..config()
    });
    h.say("1555", "hi").await;
    h.say("1555", "live agent").await;
    tokio::time::advance(Duration::from_secs(23 * 3600)).await;
    assert_eq!(
        h.say("1555", "anyone?").await.skipped,
        Some(Skipped::HandedOver)
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    let report = h.say("1555", "hello again").await;
    assert!(report.handover_ended);
    assert_eq!(texts(&report.delivered), ["You said hello again"]);
    assert_eq!(
        h.events(),
        [
            (HandoverKind::Started, Some("keyword: live agent".into())),
            (HandoverKind::Message, None),
            (HandoverKind::Ended, Some("expired".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_flow_handover_node_confirms_and_mutes() {
    let h = harness(config());
    let k = key("1555");
    h.say("1555", "hi").await;
    h.take();
    let report = h.say("1555", "get me an agent").await;
    assert!(report.handover_started);
    assert_eq!(h.take(), [config::DEFAULT_CONFIRMATION]);
    assert_eq!(
        h.events(),
        [(HandoverKind::Started, Some("flow asked".into()))]
    );
    assert!(h.say("1555", "hi").await.delivered.is_empty());
    h.conv.release(&k).await.unwrap();
    // The engine was parked at the handover node; the bot starts over.
    assert_eq!(texts(&h.say("1555", "hi").await.delivered), ["Hello"]);
}

#[tokio::test(start_paused = true)]
async fn take_over_sends_no_confirmation_and_set_ai_silences_the_flow() {
    let h = harness(config());
    let k = key("1555");
    h.say("1555", "hi").await;
    h.take();
    h.conv
        .take_over(&k, Some("supervisor".into()))
        .await
        .unwrap();
    assert!(h.take().is_empty());
    assert_eq!(
        h.events(),
        [(HandoverKind::Started, Some("supervisor".into()))]
    );
    assert_eq!(h.say("1555", "x").await.skipped, Some(Skipped::HandedOver));
    h.conv.release(&k).await.unwrap();

    h.conv.set_ai(&k, false).await.unwrap();
    let report = h.say("1555", "anyone?").await;
    assert_eq!(report.skipped, Some(Skipped::AiOff));
    assert!(h.take().is_empty());
    assert!(!h.conv.session(&k).await.unwrap().ai_enabled);
    // No handover events for AI-off input.
    assert_eq!(h.events().len(), 3);
    h.conv.set_ai(&k, true).await.unwrap();
    assert_eq!(
        texts(&h.say("1555", "back").await.delivered),
        ["You said back"]
    );
}

#[tokio::test(start_paused = true)]
async fn inject_runs_the_flow_and_notify_skips_it() {
    let h = harness(config());
    let k = key("1555");
    h.say("1555", "hi").await;
    h.take();
    let report = h.conv.inject(&k, None, json!({"vip": true})).await.unwrap();
    assert!(report.delivered.is_empty());
    let report = h
        .conv
        .inject(&k, Some("three".into()), json!({"tier": "gold"}))
        .await
        .unwrap();
    assert_eq!(texts(&report.delivered), ["one", "two", "three"]);
    let state = h.conv.session(&k).await.unwrap().state;
    assert_eq!(state.context.get("vip"), Some(&json!(true)));
    assert_eq!(state.context.get("tier"), Some(&json!("gold")));
    h.take();

    h.conv
        .notify(&k, BotOutput::Text("Your parcel shipped".into()))
        .await
        .unwrap();
    assert_eq!(h.take(), ["Your parcel shipped"]);
    // The flow did not move: the next message still lands on the ask.
    assert_eq!(texts(&h.say("1555", "ok").await.delivered), ["You said ok"]);
}

#[tokio::test(start_paused = true)]
async fn http_results_are_fed_back() {
    let h = harness(config());
    h.say("1555", "hi").await;
    h.http.answers.lock().unwrap().extend([
        HttpOutcome::Ok {
            status: 200,
            body: json!({"status": "shipped"}),
        },
        HttpOutcome::Err("timed out after 2000 ms".into()),
        HttpOutcome::Ok {
            status: 503,
            body: Value::Null,
        },
    ]);
    assert_eq!(
        texts(&h.say("1555", "my order").await.delivered),
        ["Status: shipped"]
    );
    {
        let calls = h.http.calls.lock().unwrap();
        assert_eq!(calls[0].method, Method::Get);
        assert_eq!(calls[0].url, "https://orders.example.com/v1/1555");
        assert_eq!(calls[0].timeout_ms, 2000);
    }
    assert_eq!(
        texts(&h.say("1555", "order again").await.delivered),
        ["Lookup failed: timed out after 2000 ms"]
    );
    assert_eq!(
        texts(&h.say("1555", "order once more").await.delivered),
        ["Lookup failed: the service answered 503"]
    );
}

#[tokio::test(start_paused = true)]
async fn conversations_run_in_parallel_and_one_is_queued_in_order() {
    let h = harness(ConversationConfig {
        message_delay: Duration::from_secs(2),
        ..config()
    });
    h.say("1555", "hi").await;
    tokio::time::advance(Duration::from_secs(10)).await;
    h.take();
    let t0 = Instant::now();
    let a = {
        let conv = h.conv.clone();
        tokio::spawn(async move {
            conv.handle(message("1555", "m2", "three"), business())
                .await
        })
    };
    tokio::task::yield_now().await;
    let queued = {
        let conv = h.conv.clone();
        tokio::spawn(async move {
            conv.handle(message("1555", "m3", "after"), business())
                .await
        })
    };
    tokio::task::yield_now().await;
    // Another conversation is answered at once while the first waits out its gaps.
    let b = h.say("2666", "hi").await;
    assert_eq!(texts(&b.delivered), ["Hello"]);
    assert_eq!(Instant::now(), t0);
    a.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    let out = h.out.lock().unwrap().clone();
    let first: Vec<_> = out
        .iter()
        .filter(|(_, k, _)| k.user == "1555")
        .map(|(t, _, o)| (*t - t0, show(o)))
        .collect();
    assert_eq!(
        first,
        [
            (Duration::ZERO, "one".to_string()),
            (Duration::from_secs(2), "two".to_string()),
            (Duration::from_secs(4), "three".to_string()),
            (Duration::from_secs(6), "You said after".to_string()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn http_round_trips_per_input_are_bounded() {
    let flow = r#"{
      "schema_version": 1,
      "name": "poll-forever",
      "start": "poll",
      "nodes": {
        "poll": {
          "type": "http", "method": "GET", "url": "https://status.example.com/",
          "next": "poll", "on_error": "poll"
        }
      }
    }"#;
    let h = harness_with(config(), flow);
    let report = h.say("1555", "hi").await;
    assert_eq!(h.http.calls.lock().unwrap().len(), runtime::MAX_HTTP_ROUNDS);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let state = h.conv.session(&key("1555")).await.unwrap().state;
    assert_eq!(state.position, crate::flow::engine::Position::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_stops_the_batch_and_is_reported() {
    let h = harness(config());
    let k = key("1555");
    h.say("1555", "hi").await;
    *h.refuse.lock().unwrap() = Some("two".into());
    let report = h.say("1555", "three").await;
    assert_eq!(texts(&report.delivered), ["one"]);
    assert_eq!(report.errors, ["delivery failed: channel said no"]);
    // The flow still moved on: the next input lands on the ask.
    *h.refuse.lock().unwrap() = None;
    assert_eq!(texts(&h.say("1555", "ok").await.delivered), ["You said ok"]);

    *h.refuse.lock().unwrap() = Some("psst".into());
    let err = h.conv.notify(&k, BotOutput::Text("psst".into())).await;
    assert!(
        matches!(&err, Err(ConversationError::Delivery { key, .. }) if key == "wa_1555"),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_without_a_user_is_refused() {
    let h = harness(config());
    let mut m = message("1555", "m", "hi");
    m.user.phone = None;
    let err = h.conv.handle(m, business()).await;
    assert!(matches!(err, Err(ConversationError::NoUser)));
    assert!(h.take().is_empty());
}
