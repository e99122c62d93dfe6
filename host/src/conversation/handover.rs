//! Handover events and keyword detection.
//!
//! A step returns a [`HandoverEvent`] in its outcome's notices when a handover starts
//! (with the transcript so far), for every user message while muted, and when it ends
//! (released or the mute ran out). `serve` turns `started` and `ended` into event-webhook
//! notices in the step's commit; `plugboard chat` shows them all as notes.

use serde::{Deserialize, Serialize};

use crate::flow::engine::Turn;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverKind {
    Started,
    Message,
    Ended,
}

/// One handover event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverEvent {
    pub kind: HandoverKind,
    pub endpoint: String,
    /// The conversation key, `wa_<user>`.
    pub conversation: String,
    /// The channel user id (BSUID or phone).
    pub user: String,
    /// Why: the keyword or flow node reason on `started`, `released` or `expired` on `ended`.
    pub reason: Option<String>,
    /// On `message`: the user's text.
    pub text: Option<String>,
    /// The conversation's history turns (oldest first), as kept in the session.
    pub transcript: Vec<Turn>,
    pub at_ms: u64,
}

/// The first configured keyword contained in `text` (case-insensitive substring).
pub fn keyword_in<'k>(text: &str, keywords: &'k [String]) -> Option<&'k str> {
    let text = text.to_lowercase();
    keywords
        .iter()
        .map(String::as_str)
        .find(|k| !k.trim().is_empty() && text.contains(&k.to_lowercase()))
}
