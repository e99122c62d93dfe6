//! The flow file format (`schema_version` 1), as serde types.
//!
//! A flow is a JSON object: `{"schema_version": 1, "name", "start", "on_expire"?,
//! "history_turns"?, "nodes": {id: node}}`. Nodes are tagged by `"type"`: `say`, `ask`,
//! `branch`, `set`, `goto`, `http`, `handover`, `end`. Outputs reuse the neutral
//! [`BotOutput`] shape (`{"Text": "…"}`, `{"Choices": {…}}`, …, the same JSON that
//! `plugboard adapter render` reads); every string inside may hold `{{variables}}`. The JSON
//! Schema in `flows/schema/flow.v1.json` describes the same format; node ids are kept in a
//! sorted map so validation messages come out in a stable order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plugins::types::BotOutput;

/// The only `schema_version` this host reads.
pub const SCHEMA_VERSION: u64 = 1;

/// Turns of history kept per session unless the flow says otherwise.
pub const DEFAULT_HISTORY_TURNS: usize = 10;

/// A parsed flow file (nodes parsed one by one, see [`super::Flow::load`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowHeader {
    pub schema_version: u64,
    pub name: String,
    /// Node the flow starts at.
    pub start: String,
    /// Node run when a session expires (before the next input starts the flow afresh).
    #[serde(default)]
    pub on_expire: Option<String>,
    /// Turns of history kept for `{{history}}` (default 10).
    #[serde(default)]
    pub history_turns: Option<usize>,
}

/// One node of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Send outputs, then go on.
    Say {
        messages: Vec<BotOutput>,
        next: String,
    },
    /// Send an optional prompt, wait for the next input, store it under `store`, go on.
    Ask {
        #[serde(default)]
        messages: Vec<BotOutput>,
        #[serde(default)]
        store: Option<String>,
        next: String,
    },
    /// Route on the last input or the context: the first matching case wins.
    Branch { cases: Vec<Case>, default: String },
    /// `context.<key>` = the value, with templates in every string rendered.
    Set {
        key: String,
        value: Value,
        next: String,
    },
    /// Jump.
    Goto { target: String },
    /// Ask the host to call an external service; continue at `next` (2xx) or `on_error`.
    Http(HttpNode),
    /// Hand the conversation to a human: optional messages, then the bot pauses.
    Handover {
        #[serde(default)]
        messages: Vec<BotOutput>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Optional last messages; the next input starts the flow afresh.
    End {
        #[serde(default)]
        messages: Vec<BotOutput>,
    },
}

impl Node {
    /// The `type` tag, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Say { .. } => "say",
            Node::Ask { .. } => "ask",
            Node::Branch { .. } => "branch",
            Node::Set { .. } => "set",
            Node::Goto { .. } => "goto",
            Node::Http(_) => "http",
            Node::Handover { .. } => "handover",
            Node::End { .. } => "end",
        }
    }

    /// Every node this one can continue at, with the field naming it.
    pub fn targets(&self) -> Vec<(&'static str, &str)> {
        match self {
            Node::Say { next, .. } | Node::Ask { next, .. } | Node::Set { next, .. } => {
                vec![("next", next)]
            }
            Node::Branch { cases, default } => cases
                .iter()
                .map(|c| ("cases[].next", c.next.as_str()))
                .chain([("default", default.as_str())])
                .collect(),
            Node::Goto { target } => vec![("target", target)],
            Node::Http(h) => vec![("next", &h.next), ("on_error", &h.on_error)],
            Node::Handover { .. } | Node::End { .. } => Vec::new(),
        }
    }

    /// The outputs this node sends.
    pub fn messages(&self) -> &[BotOutput] {
        match self {
            Node::Say { messages, .. }
            | Node::Ask { messages, .. }
            | Node::Handover { messages, .. }
            | Node::End { messages } => messages,
            _ => &[],
        }
    }
}

/// One case of a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub when: Condition,
    pub next: String,
}

/// What a branch case tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The input text contains any of these words or phrases (case-insensitive, whole words).
    Keyword(Vec<String>),
    /// The input text matches this regular expression.
    Regex(String),
    /// The input is a choice reply (button, list row) with this id.
    Choice(String),
    /// The input is of this type (see [`InputType`]).
    Content(InputType),
    /// A context key exists, or equals a value.
    Context(ContextCondition),
}

/// `{"key": "order_id", "equals": "42"}` or `{"key": "order_id", "exists": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextCondition {
    pub key: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub exists: Option<bool>,
}

/// The type of an input, as `{{input.type}}` renders it and `content` conditions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Text,
    Media,
    Image,
    Audio,
    Video,
    Document,
    Sticker,
    Location,
    Contacts,
    Choice,
    FormReply,
    Reaction,
    Order,
    Edit,
    Revoke,
    RequestWelcome,
    Unsupported,
    Inject,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Text => "text",
            InputType::Media => "media",
            InputType::Image => "image",
            InputType::Audio => "audio",
            InputType::Video => "video",
            InputType::Document => "document",
            InputType::Sticker => "sticker",
            InputType::Location => "location",
            InputType::Contacts => "contacts",
            InputType::Choice => "choice",
            InputType::FormReply => "form_reply",
            InputType::Reaction => "reaction",
            InputType::Order => "order",
            InputType::Edit => "edit",
            InputType::Revoke => "revoke",
            InputType::RequestWelcome => "request_welcome",
            InputType::Unsupported => "unsupported",
            InputType::Inject => "inject",
        }
    }
}

/// HTTP methods an http node may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// Default deadline of an http node.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 5_000;

fn default_timeout() -> u64 {
    DEFAULT_HTTP_TIMEOUT_MS
}

/// A call to an external service (an order API, an AI backend, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpNode {
    pub method: Method,
    /// URL template.
    pub url: String,
    /// Header templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; templates in every string are rendered.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// JSON pointer into the response body → context key.
    #[serde(default)]
    pub result: BTreeMap<String, String>,
    /// Context key that receives the failure reason on the error path.
    #[serde(default)]
    pub error_key: Option<String>,
    pub next: String,
    pub on_error: String,
}
