//! What is kept per conversation between inputs.
//!
//! A [`SessionRecord`] is the flow's [`SessionState`] plus the conversation's own fields
//! (handover mute, AI toggle, last activity, last inbound message id). It is serde so a
//! durable store can keep it as JSON. Where records live is the callers' business: `serve`
//! commits them with the step's other writes, `plugboard chat` keeps them in memory.

use serde::{Deserialize, Serialize};

use crate::flow::SessionState;

/// An active handover: the bot is muted until `until_ms` unless released earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverStatus {
    pub since_ms: u64,
    pub until_ms: u64,
    pub reason: Option<String>,
}

/// One conversation's stored state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The flow's state, including the history.
    pub state: SessionState,
    pub handover: Option<HandoverStatus>,
    /// `false`: the flow stays silent for this conversation (no handover).
    pub ai_enabled: bool,
    /// When the last input (message or inject) arrived; `None` before the first. Expiry is
    /// measured from here.
    pub last_input_ms: Option<u64>,
    /// The last inbound message id, for read receipts and the typing indicator.
    pub last_inbound_id: Option<String>,
}

impl SessionRecord {
    pub fn new(state: SessionState) -> Self {
        SessionRecord {
            state,
            handover: None,
            ai_enabled: true,
            last_input_ms: None,
            last_inbound_id: None,
        }
    }
}

/// A session store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);
