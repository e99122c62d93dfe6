//! Flow tests: the example flows as transcripts through [`step`], the schema, validation
//! errors for broken flows, and the loop guard.

use serde_json::json;

use super::engine::{Position, SessionState};
use super::*;
use crate::plugins::types::{
    BotOutput, Business, ChannelLimits, ChoiceReply, ChoiceSource, InboundMessage, Location, Media,
    MediaKind, MessageContent, User,
};

/// The WhatsApp adapter's declared limits, from the adapter crate itself (its types have the
/// same serde form as the host's), for host unit tests.
pub(crate) static WHATSAPP: std::sync::LazyLock<ChannelLimits> = std::sync::LazyLock::new(|| {
    serde_json::to_value(plugboard_whatsapp::info::LIMITS)
        .and_then(serde_json::from_value)
        .expect("the adapter's limits convert to the host's type")
});

fn example(name: &str) -> Flow {
    let path = format!("{}/../flows/{name}", env!("CARGO_MANIFEST_DIR"));
    match Flow::load(&path, &WHATSAPP) {
        Ok(flow) => flow,
        Err(e) => panic!("{e}"),
    }
}

fn message(content: MessageContent) -> FlowInput {
    FlowInput::Message(Box::new(MessageInput {
        message: InboundMessage {
            id: "wamid.1".into(),
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
        },
        business: Some(Business {
            phone_number_id: "106540352242922".into(),
            display_number: Some("15550783881".into()),
            account_id: Some("102290129340398".into()),
        }),
    }))
}

fn text(t: &str) -> FlowInput {
    message(MessageContent::Text(t.into()))
}

fn choice(id: &str) -> FlowInput {
    message(MessageContent::Choice(ChoiceReply {
        source: ChoiceSource::Button,
        id: id.into(),
        title: id.into(),
        description: None,
    }))
}

fn image() -> FlowInput {
    message(MessageContent::Media(Media {
        kind: MediaKind::Image,
        id: Some("media-1".into()),
        url: None,
        mime_type: Some("image/jpeg".into()),
        sha256: None,
        caption: Some("broken parcel".into()),
        filename: None,
        voice: false,
        animated: false,
    }))
}

/// A compact view of effects for transcript assertions.
fn show(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Send(BotOutput::Text(t)) => format!("text: {t}"),
            Effect::Send(BotOutput::Choices(c)) => format!(
                "choices: {} [{}]",
                c.text,
                c.choices
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Effect::Send(BotOutput::List(l)) => format!("list: {}", l.body),
            Effect::Send(other) => format!("send: {other:?}"),
            Effect::Http(call) => format!("http: {:?} {}", call.method, call.url),
            Effect::Handover { reason } => format!("handover: {}", reason.as_deref().unwrap_or("")),
            Effect::End => "end".into(),
            Effect::Error { reason } => format!("error: {reason}"),
        })
        .collect()
}

/// Runs inputs through `step`, checking each step's effects.
fn transcript(flow: &Flow, turns: &[(FlowInput, &[&str])]) -> SessionState {
    let mut state = SessionState::new(flow);
    for (i, (input, expected)) in turns.iter().enumerate() {
        let (next, effects) = step(flow, &state, input, 1_000 * i as u64);
        assert_eq!(show(&effects), *expected, "turn {i}: {input:?}");
        state = next;
    }
    state
}

fn last_request_id(state: &SessionState) -> String {
    match &state.position {
        Position::Http { request_id, .. } => request_id.clone(),
        other => panic!("not waiting for http: {other:?}"),
    }
}

const GREETING: &str = "choices: Hi Kerry! How can we help? [hours, order, faq]";
const ANYTHING_ELSE: &str = "choices: Anything else? [menu, done]";

#[test]
fn support_greets_and_answers_opening_hours_from_a_choice() {
    let flow = example("support.json");
    let state = transcript(
        &flow,
        &[
            (text("hello"), &[GREETING]),
            (
                choice("hours"),
                &[
                    "text: We are open Monday to Saturday, 9:00 to 18:00. Closed on Sundays.",
                    ANYTHING_ELSE,
                ],
            ),
            (
                choice("done"),
                &["text: Thanks Kerry, have a nice day!", "end"],
            ),
        ],
    );
    assert_eq!(state.position, Position::Idle);
    assert_eq!(state.steps, 3);
}

#[test]
fn support_routes_keywords_on_the_first_message() {
    let flow = example("support.json");
    transcript(
        &flow,
        &[(
            text("When are you OPEN?"),
            &[
                "text: We are open Monday to Saturday, 9:00 to 18:00. Closed on Sundays.",
                ANYTHING_ELSE,
            ],
        )],
    );
}

#[test]
fn support_order_lookup_success_maps_the_result_into_context() {
    let flow = example("support.json");
    let state = transcript(
        &flow,
        &[
            (text("hi"), &[GREETING]),
            (
                choice("order"),
                &["text: Please send your order number (for example A12345)."],
            ),
            (
                text("nonsense"),
                &[
                    "text: \"nonsense\" does not look like an order number.",
                    "text: Please send your order number (for example A12345).",
                ],
            ),
            (
                text("A12345"),
                &["http: Get https://orders.example.com/api/orders/A12345"],
            ),
        ],
    );
    let id = last_request_id(&state);
    let result = FlowInput::HttpResult {
        request_id: id,
        outcome: HttpOutcome::Ok {
            status: 200,
            body: json!({"status": "shipped", "eta": "Tuesday"}),
        },
    };
    let (state, effects) = step(&flow, &state, &result, 9_000);
    assert_eq!(
        show(&effects),
        [
            "text: Order A12345: shipped, expected Tuesday.",
            ANYTHING_ELSE
        ]
    );
    assert_eq!(state.context["order_status"], json!("shipped"));
}

#[test]
fn support_order_lookup_failure_takes_the_error_path_and_hands_over() {
    let flow = example("support.json");
    let state = transcript(
        &flow,
        &[
            (text("where is my order"), &[GREETING]),
            (
                choice("order"),
                &["text: Please send your order number (for example A12345)."],
            ),
            (
                text("77777"),
                &["http: Get https://orders.example.com/api/orders/77777"],
            ),
        ],
    );
    let id = last_request_id(&state);
    // A stale result is ignored.
    let stale = FlowInput::HttpResult {
        request_id: "other#9".into(),
        outcome: HttpOutcome::Err("late".into()),
    };
    let (same, effects) = step(&flow, &state, &stale, 5_000);
    assert!(effects.is_empty());
    assert_eq!(same.position, state.position);

    let failed = FlowInput::HttpResult {
        request_id: id,
        outcome: HttpOutcome::Err("timeout after 3000 ms".into()),
    };
    let (state, effects) = step(&flow, &state, &failed, 6_000);
    assert_eq!(
        show(&effects),
        [
            "text: Sorry, we could not look up order 77777 right now.",
            "choices: Would you like to talk to a person? [human_yes, human_no]"
        ]
    );
    assert_eq!(state.context["order_error"], json!("timeout after 3000 ms"));
    let (state, effects) = step(&flow, &state, &choice("human_yes"), 7_000);
    assert_eq!(
        show(&effects),
        [
            "text: Connecting you with a colleague. They will reply here shortly.",
            "handover: user asked for a human"
        ]
    );
    // Handed over: the bot stays quiet until the flow is started again.
    let (state, effects) = step(&flow, &state, &text("hello?"), 8_000);
    assert!(effects.is_empty());
    let (_, effects) = step(&flow, &state, &FlowInput::Start, 9_000);
    assert_eq!(show(&effects), [GREETING]);
}

#[test]
fn support_non_2xx_is_a_failure_too() {
    let flow = example("support.json");
    let state = transcript(
        &flow,
        &[
            (text("hi"), &[GREETING]),
            (
                choice("order"),
                &["text: Please send your order number (for example A12345)."],
            ),
            (
                text("12345"),
                &["http: Get https://orders.example.com/api/orders/12345"],
            ),
        ],
    );
    let result = FlowInput::HttpResult {
        request_id: last_request_id(&state),
        outcome: HttpOutcome::Ok {
            status: 404,
            body: json!({"error": "not found"}),
        },
    };
    let (state, effects) = step(&flow, &state, &result, 5_000);
    assert_eq!(effects.len(), 2);
    assert_eq!(
        state.context["order_error"],
        json!("the service answered 404")
    );
}

#[test]
fn support_routes_media_location_faq_list_and_fallback() {
    let flow = example("support.json");
    transcript(
        &flow,
        &[
            (text("hi"), &[GREETING]),
            (
                image(),
                &[
                    "text: Thanks for the image! A colleague will look at it.",
                    "text: Connecting you with a colleague. They will reply here shortly.",
                    "handover: user asked for a human",
                ],
            ),
        ],
    );
    let location = message(MessageContent::Location(Location {
        latitude: 52.5,
        longitude: 13.4,
        name: None,
        address: None,
        url: None,
    }));
    transcript(
        &flow,
        &[
            (text("hi"), &[GREETING]),
            (
                location,
                &[
                    "text: Thanks, our nearest shop to you is on Main Street 1.",
                    ANYTHING_ELSE,
                ],
            ),
        ],
    );
    transcript(
        &flow,
        &[
            (text("hi"), &[GREETING]),
            (choice("faq"), &["list: Pick a question:"]),
            (
                choice("faq_shipping"),
                &[
                    "text: Orders ship within 1 business day; delivery takes 2 to 4 days.",
                    ANYTHING_ELSE,
                ],
            ),
            (choice("menu"), &[GREETING]),
            (
                text("blah"),
                &["text: Sorry, I did not get that.", GREETING],
            ),
        ],
    );
}

#[test]
fn support_handover_by_keyword_and_expiry() {
    let flow = example("support.json");
    let state = transcript(
        &flow,
        &[(
            text("I want to talk to a human"),
            &[
                "text: Connecting you with a colleague. They will reply here shortly.",
                "handover: user asked for a human",
            ],
        )],
    );
    let (state, effects) = step(&flow, &state, &FlowInput::Expired, 10_000);
    assert_eq!(
        show(&effects),
        [
            "text: This chat timed out. Send any message to start again.",
            "end"
        ]
    );
    let (_, effects) = step(&flow, &state, &text("hi again"), 11_000);
    assert_eq!(show(&effects), [GREETING]);
}

#[test]
fn feedback_posts_rating_and_comment() {
    let flow = example("feedback.json");
    let state = transcript(
        &flow,
        &[
            (
                FlowInput::Start,
                &["choices: How was your experience with ? [good, ok, bad]"],
            ),
            (
                choice("bad"),
                &["text: Sorry to hear that. What could we do better?"],
            ),
            (
                text("Too slow"),
                &["http: Post https://feedback.example.com/v1/ratings"],
            ),
        ],
    );
    assert_eq!(state.context["rating"], json!("bad"));
    assert_eq!(state.context["comment"], json!("Too slow"));
    // The feedback service failing still thanks the user.
    let done = FlowInput::HttpResult {
        request_id: last_request_id(&state),
        outcome: HttpOutcome::Err("connection refused".into()),
    };
    let (state, effects) = step(&flow, &state, &done, 5_000);
    assert_eq!(
        show(&effects),
        ["text: Thank you for your feedback!", "end"]
    );
    assert_eq!(state.position, Position::Idle);
}

#[test]
fn http_body_and_channel_variables_are_rendered() {
    let flow = example("feedback.json");
    let state = SessionState::new(&flow);
    let (state, effects) = step(&flow, &state, &text("hi"), 0);
    assert_eq!(
        show(&effects),
        ["choices: How was your experience with 15550783881? [good, ok, bad]"]
    );
    let (_, effects) = step(&flow, &state, &choice("good"), 1);
    let [Effect::Http(call)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(
        call.body,
        Some(json!({
            "user": "16315551181",
            "rating": "good",
            "comment": "",
            "business": "106540352242922"
        }))
    );
    assert_eq!(call.timeout_ms, 2000);
    assert_eq!(
        call.headers,
        [("Content-Type".to_string(), "application/json".to_string())]
    );
}

#[test]
fn inject_behaves_like_user_text_and_merges_data() {
    let flow = example("support.json");
    let state = SessionState::new(&flow);
    let inject = FlowInput::Inject {
        text: Some("opening hours please".into()),
        data: json!({"source": "crm"}),
    };
    let (state, effects) = step(&flow, &state, &inject, 0);
    assert_eq!(effects.len(), 2);
    assert_eq!(state.context["source"], json!("crm"));
}

#[test]
fn history_keeps_the_last_turns() {
    let flow = example("support.json");
    let mut state = SessionState::new(&flow);
    state.history_limit = 3;
    for i in 0..5 {
        state = step(&flow, &state, &text(&format!("blah {i}")), i).0;
    }
    assert_eq!(state.history.len(), 3);
    assert_eq!(state.history[2].text, "Hi Kerry! How can we help?");
}

#[test]
fn example_flows_pass_the_json_schema() {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA_V1).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in ["support.json", "feedback.json"] {
        let path = format!("{}/../flows/{name}", env!("CARGO_MANIFEST_DIR"));
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

// ---------------------------------------------------------------- validation

fn refused(file: &str, flow: serde_json::Value) -> Vec<String> {
    match Flow::from_json(file, &flow.to_string(), &WHATSAPP) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn has(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem contains {needle:?}: {problems:#?}"
    );
}

fn base(nodes: serde_json::Value) -> serde_json::Value {
    json!({"schema_version": 1, "name": "t", "start": "a", "nodes": nodes})
}

#[test]
fn unknown_node_type_is_refused() {
    let p = refused(
        "broken/type.json",
        base(json!({"a": {"type": "sing", "next": "b"}, "b": {"type": "end"}})),
    );
    has(&p, "broken/type.json: node `a`: unknown node type `sing`");
    assert_eq!(p.len(), 1, "{p:#?}");
}

#[test]
fn unreachable_node_and_dangling_target_are_all_reported() {
    let p = refused(
        "broken/graph.json",
        base(json!({
            "a": {"type": "goto", "target": "nowhere"},
            "island": {"type": "end"}
        })),
    );
    has(
        &p,
        "broken/graph.json: node `a`: unknown target node `nowhere` (in `target`)",
    );
    has(&p, "broken/graph.json: node `island`: unreachable node");
}

#[test]
fn branch_without_default_is_refused() {
    let p = refused(
        "broken/branch.json",
        base(json!({
            "a": {"type": "branch", "cases": [{"when": {"keyword": ["x"]}, "next": "b"}]},
            "b": {"type": "end"}
        })),
    );
    has(
        &p,
        "broken/branch.json: node `a`: \"default\" is a required property",
    );
}

#[test]
fn outputs_beyond_the_channel_limits_are_refused() {
    let p = refused(
        "broken/limits.json",
        base(json!({
            "a": {"type": "say", "messages": [
                {"Choices": {"text": "Pick", "choices": [
                    {"id": "1", "title": "One"}, {"id": "2", "title": "Two"},
                    {"id": "3", "title": "Three"}, {"id": "4", "title": "Four"}]}}
            ], "next": "b"},
            "b": {"type": "say", "messages": [
                {"Choices": {"text": "Pick", "choices": [
                    {"id": "long", "title": "A title far too long for a button"}]}}
            ], "next": "c"},
            "c": {"type": "end"}
        })),
    );
    has(
        &p,
        "broken/limits.json: node `a`: messages[0]: 4 choices, but the channel shows at most 3 buttons",
    );
    has(
        &p,
        "broken/limits.json: node `b`: messages[0]: choice `long` title \"A title far too long for a button\" is 33 characters; the channel allows 20",
    );
}

#[test]
fn unknown_variable_and_unclosed_template_are_refused() {
    let p = refused(
        "broken/vars.json",
        base(json!({
            "a": {"type": "say", "messages": [{"Text": "Hi {{user.nickname}} {{context.x"}], "next": "b"},
            "b": {"type": "set", "key": "k", "value": {"v": "{{input.txt}}"}, "next": "c"},
            "c": {"type": "end"}
        })),
    );
    has(
        &p,
        "broken/vars.json: node `a`: messages[0]: unknown variable `{{user.nickname}}`",
    );
    has(&p, "broken/vars.json: node `a`: messages[0]: unclosed `{{`");
    has(
        &p,
        "broken/vars.json: node `b`: value: unknown variable `{{input.txt}}`",
    );
}

#[test]
fn many_problems_are_reported_together_and_files_name_themselves() {
    let p = refused(
        "broken/many.json",
        json!({"schema_version": 1, "name": "t", "start": "missing", "nodes": {
            "a": {"type": "branch", "cases": [{"when": {"regex": "("}, "next": "a"}], "default": "a"}
        }}),
    );
    has(&p, "broken/many.json: `start` names no node: `missing`");
    has(&p, "broken/many.json: node `a`: cases[0]: bad regex `(`");
    has(&p, "broken/many.json: node `a`: unreachable node");

    let path = format!(
        "{}/../flows/tests/broken/missing_default.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let err = Flow::load(&path, &WHATSAPP).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing_default.json: flow refused"),
        "{err}"
    );
    has(
        &err.problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        "node `route`: \"default\" is a required property",
    );
    let err = Flow::load("no/such/flow.json", &WHATSAPP).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no/such/flow.json: cannot read")
    );
    let err = Flow::from_json("junk.json", "{not json", &WHATSAPP).unwrap_err();
    assert!(err.to_string().contains("junk.json: not JSON"), "{err}");
}

#[test]
fn a_goto_loop_ends_with_an_error_instead_of_hanging() {
    let flow = Flow::from_json(
        "loop.json",
        &base(json!({
            "a": {"type": "goto", "target": "b"},
            "b": {"type": "goto", "target": "a"}
        }))
        .to_string(),
        &WHATSAPP,
    )
    .unwrap();
    let (state, effects) = step(&flow, &SessionState::new(&flow), &FlowInput::Start, 0);
    assert!(
        matches!(&effects[0], Effect::Error { reason } if reason.contains("more than 1000 nodes"))
    );
    assert_eq!(effects[1], Effect::End);
    assert_eq!(state.position, Position::Idle);
}

#[test]
fn schema_errors_name_the_node_and_list_limits_are_checked() {
    let rows: Vec<_> = (0..11)
        .map(|i| json!({"id": format!("r{i}"), "title": format!("Row {i}")}))
        .collect();
    let p = refused(
        "broken/schema.json",
        base(json!({
            "a": {"type": "say", "nxt": "b", "messages": [{"Text": "hi"}], "next": "b"},
            "b": {"type": "ask", "messages": [{"List": {
                "body": "Pick", "button_label": "Open", "sections": [{"rows": rows}]
            }}], "next": "c"},
            "c": {"type": "end"}
        })),
    );
    has(
        &p,
        "broken/schema.json: node `a`: Additional properties are not allowed ('nxt' was unexpected)",
    );
    has(
        &p,
        "broken/schema.json: node `b`: messages[0]: 11 list rows; the channel allows 10",
    );
}
