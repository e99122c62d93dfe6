//! Events: what the demux decoded (messages, statuses, notices), deduplicated per
//! endpoint, waiting for their conversation worker or the status applier.

use serde::{Deserialize, Serialize};

use super::StoreFuture;

/// Event kinds, stored as their snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A user message: goes to its conversation's worker.
    Message,
    /// A delivery status: applied to the outbox.
    Status,
    /// A system notice (number or identity changed).
    System,
    /// A channel-level error.
    Error,
    /// The host gave up on an outbox row: told to the conversation.
    SendFailed,
    /// For a phone number no endpoint serves: stored and reported, never answered.
    Unowned,
    /// An account-level change (WIT 0.1.1: a template's status, quality or category, a
    /// business number's quality or limit). Belongs to no conversation.
    Account,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Status => "status",
            EventKind::System => "system",
            EventKind::Error => "error",
            EventKind::SendFailed => "send_failed",
            EventKind::Unowned => "unowned",
            EventKind::Account => "account",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "message" => EventKind::Message,
            "status" => EventKind::Status,
            "system" => EventKind::System,
            "error" => EventKind::Error,
            "send_failed" => EventKind::SendFailed,
            "unowned" => EventKind::Unowned,
            "account" => EventKind::Account,
            _ => return None,
        })
    }
}

/// An event to record. `conversation` is the session user (`SessionKey::user`); empty for
/// events that belong to no conversation (statuses, channel errors, account changes).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Recorded under this endpoint instead of the inbox row's: the webhook came in at one
    /// endpoint's URL for a number another endpoint serves (Meta posts every number of an
    /// app to one callback).
    pub endpoint: Option<String>,
    pub dedupe_key: String,
    pub conversation: String,
    pub kind: EventKind,
    /// JSON: the neutral event (or, for `send_failed`, the failure).
    pub body: String,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub endpoint: String,
    pub conversation: String,
    pub kind: EventKind,
    pub body: String,
    pub created_ms: u64,
}

/// Recorded events and their progress.
pub trait EventStore: Send + Sync {
    /// Events not yet done, oldest first (resume after a restart).
    fn pending_events(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<EventRow>>;

    /// Inserts events outside demux (the `send_failed` of a dead send); duplicates are
    /// ignored. Returns the new rows.
    fn insert_events(
        &self,
        endpoint: &str,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'_, Vec<EventRow>>;

    /// Marks events done without a session change (statuses, system notices).
    fn events_done(&self, ids: Vec<i64>) -> StoreFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn event_kinds_round_trip_through_their_stored_names() {
        for kind in [
            EventKind::Message,
            EventKind::Status,
            EventKind::System,
            EventKind::Error,
            EventKind::SendFailed,
            EventKind::Account,
        ] {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            // The serde name (admin JSON) is the stored name.
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::String(kind.as_str().to_string()))
            );
        }
        assert_eq!(EventKind::parse("template"), None);
    }
}
