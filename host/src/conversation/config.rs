//! An endpoint's conversation settings: session expiry and history, message delay with an
//! optional typing indicator, and handover (keywords, confirmation, mute time, webhook).
//!
//! Plain data with defaults matching the issue (30 min expiry, 10 turns, no delay, 24 h
//! mute); the runtime reads it, never changes it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Phrases that hand a conversation to a human by default.
pub const DEFAULT_HANDOVER_KEYWORDS: [&str; 6] = [
    "talk to a human",
    "speak to someone",
    "human please",
    "speak to an agent",
    "real person",
    "live agent",
];

/// What the user is told when a handover starts.
pub const DEFAULT_CONFIRMATION: &str =
    "Connecting you with a member of our team. They will reply here shortly.";

/// Handover settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverConfig {
    /// Case-insensitive phrases; one contained anywhere in the user's text starts a handover.
    pub keywords: Vec<String>,
    /// Sent to the user when a keyword or a flow node starts a handover.
    pub confirmation: String,
    /// How long the bot stays muted unless released earlier.
    pub mute_for: Duration,
    /// Served: registered as one of the endpoint's event webhooks for the handover
    /// notices (durable, signed, retried; see `serve::notices`); `None` = none.
    pub webhook_url: Option<String>,
}

impl Default for HandoverConfig {
    fn default() -> Self {
        HandoverConfig {
            keywords: DEFAULT_HANDOVER_KEYWORDS.map(String::from).to_vec(),
            confirmation: DEFAULT_CONFIRMATION.to_string(),
            mute_for: Duration::from_secs(24 * 60 * 60),
            webhook_url: None,
        }
    }
}

/// One endpoint's conversation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationConfig {
    /// The endpoint's name; part of every [`super::SessionKey`].
    pub endpoint: String,
    /// Inactivity after which the next input restarts the flow; `ZERO` = never.
    pub session_expiry: Duration,
    /// Turns of history kept per session (for `{{history}}`, hooks and transcripts).
    pub history_turns: usize,
    /// Minimum gap between consecutive deliveries to one conversation.
    pub message_delay: Duration,
    /// Send a typing indicator (with the read receipt) before a delayed batch.
    pub typing_indicator: bool,
    pub handover: HandoverConfig,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        ConversationConfig {
            endpoint: "default".to_string(),
            session_expiry: Duration::from_secs(30 * 60),
            history_turns: crate::flow::model::DEFAULT_HISTORY_TURNS,
            message_delay: Duration::ZERO,
            typing_indicator: false,
            handover: HandoverConfig::default(),
        }
    }
}
