//! The pure flow engine: [`step`] maps (flow, session state, input, now) to (new state,
//! effects).
//!
//! No I/O, no clock, no randomness: the host executes the [`Effect`]s (send, call a
//! service, hand over, end) and feeds results back as [`FlowInput`]s. A step runs nodes
//! until one waits (an `ask` for input, an `http` node for its result, a `handover`) or the
//! flow ends; more than [`MAX_NODES_PER_STEP`] nodes in one step (a `goto` loop) ends the
//! session with an [`Effect::Error`] instead of hanging.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Flow;
use super::model::{Condition, InputType, Node};
use super::template;
use crate::plugins::types::{BotOutput, Business, InboundMessage, MessageContent, User};

/// Nodes one step may run before the engine calls it a loop.
pub const MAX_NODES_PER_STEP: usize = 1_000;

/// What the session is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub enum Position {
    /// Nothing yet, or the flow ended: the next input starts at `start`.
    #[default]
    Idle,
    /// An `ask` node waits for the next input.
    Input { node: String },
    /// An `http` node waits for the result of this request.
    Http { node: String, request_id: String },
    /// Handed over to a human; the bot is paused until the flow is started again.
    Handover { node: String },
}

/// Who spoke in a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    User,
    Bot,
}

/// One turn of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub from: Speaker,
    pub text: String,
    pub at_ms: u64,
}

/// The last input, as branch conditions and `{{input.*}}` see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LastInput {
    pub kind: Option<InputType>,
    pub text: String,
    pub choice_id: Option<String>,
    /// The value an `ask` node stores.
    pub value: Value,
}

/// A session's state between steps (the host stores it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub position: Position,
    pub context: Map<String, Value>,
    pub history: Vec<Turn>,
    /// Turns kept in `history`.
    pub history_limit: usize,
    /// Steps run so far.
    pub steps: u64,
    /// Http requests issued so far (request ids are `<node>#<n>`).
    pub requests: u64,
    pub last_input: LastInput,
    pub user: Option<User>,
    pub business: Option<Business>,
    /// When the last step ran (the host computes expiry from it).
    pub last_active_ms: u64,
}

impl SessionState {
    /// A fresh session for a flow.
    pub fn new(flow: &Flow) -> Self {
        SessionState {
            position: Position::Idle,
            context: Map::new(),
            history: Vec::new(),
            history_limit: flow.history_turns(),
            steps: 0,
            requests: 0,
            last_input: LastInput::default(),
            user: None,
            business: None,
            last_active_ms: 0,
        }
    }

    /// Appends a turn to the history, keeping at most `history_limit` turns.
    pub fn remember(&mut self, from: Speaker, text: String, now_ms: u64) {
        self.history.push(Turn {
            from,
            text,
            at_ms: now_ms,
        });
        let excess = self.history.len().saturating_sub(self.history_limit);
        self.history.drain(..excess);
    }
}

/// A user message with who sent it and to which business number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageInput {
    pub message: InboundMessage,
    pub business: Option<Business>,
}

/// What an http call came back with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HttpOutcome {
    /// The service answered: status and JSON body (`null` when the body is not JSON).
    Ok { status: u16, body: Value },
    /// No answer: timeout, connection failure, …
    Err(String),
}

/// What drives a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlowInput {
    /// Start (or restart) the flow at `start`.
    Start,
    Message(Box<MessageInput>),
    HttpResult {
        request_id: String,
        outcome: HttpOutcome,
    },
    /// The session expired: context cleared, `on_expire` run if the flow has one.
    Expired,
    /// Text and/or data put into the flow as if the user had sent it.
    Inject {
        text: Option<String>,
        data: Value,
    },
}

/// A request for the host to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    pub request_id: String,
    pub method: super::model::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub timeout_ms: u64,
}

/// What the host must do after a step, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    Send(BotOutput),
    Http(HttpCall),
    Handover {
        reason: Option<String>,
    },
    /// The flow ended; the next input starts it afresh.
    End,
    /// The flow broke at run time (a loop, a missing node); an `End` follows.
    Error {
        reason: String,
    },
}

/// Runs one step. Pure: same arguments, same result.
pub fn step(
    flow: &Flow,
    state: &SessionState,
    input: &FlowInput,
    now_ms: u64,
) -> (SessionState, Vec<Effect>) {
    let mut s = state.clone();
    let mut effects = Vec::new();
    s.steps += 1;
    s.last_active_ms = now_ms;
    let resume_at: Option<String> = match input {
        FlowInput::Start => {
            s.context.clear();
            s.position = Position::Idle;
            Some(flow.header.start.clone())
        }
        FlowInput::Expired => {
            s.context.clear();
            s.position = Position::Idle;
            flow.header.on_expire.clone()
        }
        FlowInput::Message(m) => {
            s.user = Some(m.message.user.clone());
            if m.business.is_some() {
                s.business = m.business.clone();
            }
            s.last_input = describe(&m.message.content);
            s.remember(Speaker::User, s.last_input.text.clone(), now_ms);
            after_input(flow, &mut s)
        }
        FlowInput::Inject { text, data } => {
            if let Value::Object(map) = data {
                for (k, v) in map {
                    s.context.insert(k.clone(), v.clone());
                }
            }
            match text {
                Some(text) => {
                    s.last_input = LastInput {
                        kind: Some(InputType::Text),
                        text: text.clone(),
                        choice_id: None,
                        value: Value::String(text.clone()),
                    };
                    s.remember(Speaker::User, text.clone(), now_ms);
                    after_input(flow, &mut s)
                }
                // Data only: the flow sees it in the context at its next step.
                None => None,
            }
        }
        FlowInput::HttpResult {
            request_id,
            outcome,
        } => match s.position.clone() {
            Position::Http {
                node,
                request_id: waiting,
            } if &waiting == request_id => http_result(flow, &mut s, node, outcome),
            // A stale or unknown result: nothing to do.
            _ => None,
        },
    };
    if let Some(node) = resume_at {
        run(flow, &mut s, node, now_ms, &mut effects);
    }
    (s, effects)
}

/// Where an input continues the flow, storing it for an `ask`.
fn after_input(flow: &Flow, s: &mut SessionState) -> Option<String> {
    match s.position.clone() {
        Position::Idle => Some(flow.header.start.clone()),
        Position::Input { node } => match flow.node(&node) {
            Some(Node::Ask { store, next, .. }) => {
                if let Some(key) = store {
                    s.context.insert(key.clone(), s.last_input.value.clone());
                }
                Some(next.clone())
            }
            _ => Some(flow.header.start.clone()),
        },
        // Waiting for a service, or a human has the conversation: the bot stays quiet.
        Position::Http { .. } | Position::Handover { .. } => None,
    }
}

fn http_result(
    flow: &Flow,
    s: &mut SessionState,
    node: String,
    outcome: &HttpOutcome,
) -> Option<String> {
    let Some(Node::Http(h)) = flow.node(&node) else {
        return Some(flow.header.start.clone());
    };
    let failure = match outcome {
        HttpOutcome::Ok { status, body } if (200..300).contains(status) => {
            for (pointer, key) in &h.result {
                let v = body.pointer(pointer).cloned().unwrap_or(Value::Null);
                s.context.insert(key.clone(), v);
            }
            None
        }
        HttpOutcome::Ok { status, .. } => Some(format!("the service answered {status}")),
        HttpOutcome::Err(reason) => Some(reason.clone()),
    };
    match failure {
        None => Some(h.next.clone()),
        Some(reason) => {
            if let Some(key) = &h.error_key {
                s.context.insert(key.clone(), Value::String(reason));
            }
            Some(h.on_error.clone())
        }
    }
}

/// Runs nodes from `start` until one waits or the flow ends.
fn run(flow: &Flow, s: &mut SessionState, start: String, now_ms: u64, effects: &mut Vec<Effect>) {
    let mut current = start;
    for _ in 0..MAX_NODES_PER_STEP {
        let Some(node) = flow.node(&current) else {
            fail(s, effects, format!("node `{current}` does not exist"));
            return;
        };
        let next = match node {
            Node::Say { messages, next } => {
                send(flow, s, messages, now_ms, effects);
                next.clone()
            }
            Node::Ask { messages, .. } => {
                send(flow, s, messages, now_ms, effects);
                s.position = Position::Input { node: current };
                return;
            }
            Node::Branch { cases, default } => cases
                .iter()
                .find(|c| matches(flow, s, &c.when))
                .map_or(default, |c| &c.next)
                .clone(),
            Node::Set { key, value, next } => {
                let v = template::render_value(value, &|p| lookup(flow, s, p));
                s.context.insert(key.clone(), v);
                next.clone()
            }
            Node::Goto { target } => target.clone(),
            Node::Http(h) => {
                s.requests += 1;
                let request_id = format!("{current}#{}", s.requests);
                let look = |p: &str| lookup(flow, s, p);
                let call = HttpCall {
                    request_id: request_id.clone(),
                    method: h.method,
                    url: template::render_url(&h.url, look),
                    headers: h
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), template::render(v, look)))
                        .collect(),
                    body: h.body.as_ref().map(|b| template::render_value(b, &look)),
                    timeout_ms: h.timeout_ms,
                };
                effects.push(Effect::Http(call));
                s.position = Position::Http {
                    node: current,
                    request_id,
                };
                return;
            }
            Node::Handover { messages, reason } => {
                send(flow, s, messages, now_ms, effects);
                effects.push(Effect::Handover {
                    reason: reason.clone(),
                });
                s.position = Position::Handover { node: current };
                return;
            }
            Node::End { messages } => {
                send(flow, s, messages, now_ms, effects);
                effects.push(Effect::End);
                s.position = Position::Idle;
                return;
            }
        };
        current = next;
    }
    fail(
        s,
        effects,
        format!(
            "more than {MAX_NODES_PER_STEP} nodes in one step (a goto loop?), last at `{current}`"
        ),
    );
}

fn fail(s: &mut SessionState, effects: &mut Vec<Effect>, reason: String) {
    effects.push(Effect::Error { reason });
    effects.push(Effect::End);
    s.position = Position::Idle;
}

fn send(
    flow: &Flow,
    s: &mut SessionState,
    messages: &[BotOutput],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for m in messages {
        let out = render_output(flow, s, m);
        s.remember(Speaker::Bot, output_text(&out), now_ms);
        effects.push(Effect::Send(out));
    }
}

/// Renders the templates in every string of an output (through its JSON form).
fn render_output(flow: &Flow, s: &SessionState, output: &BotOutput) -> BotOutput {
    let Ok(value) = serde_json::to_value(output) else {
        return output.clone();
    };
    let rendered = template::render_value(&value, &|p| lookup(flow, s, p));
    serde_json::from_value(rendered).unwrap_or_else(|_| output.clone())
}

fn output_text(out: &BotOutput) -> String {
    match out {
        BotOutput::Text(t) => t.clone(),
        BotOutput::Choices(c) => c.text.clone(),
        BotOutput::List(l) => l.body.clone(),
        BotOutput::Card(c) => c.body.clone(),
        BotOutput::Media(m) => m.caption.clone().unwrap_or_else(|| "[media]".into()),
        _ => String::new(),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value of a template variable.
fn lookup(flow: &Flow, s: &SessionState, path: &str) -> Option<String> {
    let user = s.user.as_ref();
    let business = s.business.as_ref();
    match path {
        "user.name" => user.and_then(|u| u.name.clone()),
        "user.id" => user.and_then(|u| u.user_id.clone().or_else(|| u.phone.clone())),
        "user.phone" => user.and_then(|u| u.phone.clone()),
        "user.username" => user.and_then(|u| u.username.clone()),
        "input.text" => Some(s.last_input.text.clone()),
        "input.type" => s.last_input.kind.map(|k| k.as_str().to_string()),
        "input.choice_id" => s.last_input.choice_id.clone(),
        "whatsapp.business" => business.map(|b| b.phone_number_id.clone()),
        "whatsapp.account" => business.and_then(|b| b.account_id.clone()),
        "whatsapp.number" => business.and_then(|b| b.display_number.clone()),
        "flow.name" => Some(flow.header.name.clone()),
        "history" => Some(
            s.history
                .iter()
                .map(|t| {
                    let who = match t.from {
                        Speaker::User => "user",
                        Speaker::Bot => "bot",
                    };
                    format!("{who}: {}", t.text)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => {
            let key = path.strip_prefix("context.")?;
            let mut parts = key.split('.');
            let mut v = s.context.get(parts.next()?)?;
            for part in parts {
                v = match v {
                    Value::Object(m) => m.get(part)?,
                    Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Some(value_text(v))
        }
    }
}

/// How an inbound message looks to conditions and templates.
fn describe(content: &MessageContent) -> LastInput {
    use crate::plugins::types::MediaKind;
    let plain = |kind, text: String| LastInput {
        kind: Some(kind),
        value: Value::String(text.clone()),
        text,
        choice_id: None,
    };
    match content {
        MessageContent::Text(t) => plain(InputType::Text, t.clone()),
        MessageContent::Media(m) => {
            let kind = match m.kind {
                MediaKind::Image => InputType::Image,
                MediaKind::Audio => InputType::Audio,
                MediaKind::Video => InputType::Video,
                MediaKind::Document => InputType::Document,
                MediaKind::Sticker => InputType::Sticker,
            };
            LastInput {
                kind: Some(kind),
                text: m.caption.clone().unwrap_or_default(),
                choice_id: None,
                value: serde_json::to_value(m).unwrap_or(Value::Null),
            }
        }
        MessageContent::Location(l) => LastInput {
            kind: Some(InputType::Location),
            text: format!("{},{}", l.latitude, l.longitude),
            choice_id: None,
            value: serde_json::to_value(l).unwrap_or(Value::Null),
        },
        MessageContent::Choice(c) => LastInput {
            kind: Some(InputType::Choice),
            text: c.title.clone(),
            choice_id: Some(c.id.clone()),
            value: Value::String(c.id.clone()),
        },
        MessageContent::Contacts(c) => LastInput {
            kind: Some(InputType::Contacts),
            text: String::new(),
            choice_id: None,
            value: serde_json::to_value(c).unwrap_or(Value::Null),
        },
        MessageContent::FormReply(f) => LastInput {
            kind: Some(InputType::FormReply),
            text: f.body.clone().unwrap_or_default(),
            choice_id: None,
            value: serde_json::from_str(&f.response_json).unwrap_or(Value::Null),
        },
        MessageContent::Reaction(r) => {
            plain(InputType::Reaction, r.emoji.clone().unwrap_or_default())
        }
        MessageContent::Order(o) => LastInput {
            kind: Some(InputType::Order),
            text: o.text.clone().unwrap_or_default(),
            choice_id: None,
            value: serde_json::to_value(o).unwrap_or(Value::Null),
        },
        MessageContent::Edit(e) => {
            use crate::plugins::types::EditedContent;
            let text = match &e.content {
                EditedContent::Text(t) => t.clone(),
                EditedContent::Media(m) => m.caption.clone().unwrap_or_default(),
                EditedContent::Other(_) => String::new(),
            };
            plain(InputType::Edit, text)
        }
        MessageContent::Revoke(id) => plain(InputType::Revoke, id.clone()),
        MessageContent::RequestWelcome => plain(InputType::RequestWelcome, String::new()),
        MessageContent::Unsupported(u) => plain(InputType::Unsupported, u.channel_type.clone()),
    }
}

fn is_media(kind: InputType) -> bool {
    matches!(
        kind,
        InputType::Image
            | InputType::Audio
            | InputType::Video
            | InputType::Document
            | InputType::Sticker
    )
}

/// Whole-word, case-insensitive containment of a word or phrase.
fn has_keyword(text: &str, keyword: &str) -> bool {
    let norm = |s: &str| {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let words = norm(text);
    let needle = norm(keyword);
    !needle.is_empty() && words.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn matches(flow: &Flow, s: &SessionState, when: &Condition) -> bool {
    let input = &s.last_input;
    match when {
        Condition::Keyword(words) => words.iter().any(|w| has_keyword(&input.text, w)),
        Condition::Regex(pattern) => flow
            .regex(pattern)
            .is_some_and(|re| re.is_match(&input.text)),
        Condition::Choice(id) => input.choice_id.as_deref() == Some(id.as_str()),
        Condition::Content(kind) => match (input.kind, kind) {
            (Some(actual), InputType::Media) => is_media(actual),
            (Some(actual), wanted) => actual == *wanted,
            (None, _) => false,
        },
        Condition::Context(c) => {
            let v = s.context.get(&c.key);
            match (&c.equals, c.exists) {
                (Some(expected), _) => v == Some(expected),
                (None, Some(false)) => v.is_none_or(Value::is_null),
                (None, _) => v.is_some_and(|v| !v.is_null()),
            }
        }
    }
}
