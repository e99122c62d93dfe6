//! Operations over the whole store: dead letters and their replay, queue depths for
//! `/metrics`, retention (prune) and the readiness ping.

use serde::Serialize;

use super::StoreFuture;

/// Where a dead letter's row lives: the inbox (a body the adapter refused, replayable) or
/// the outbox (a send given up on). Serialized (admin JSON) and stored as `inbox`/`outbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterSource {
    Inbox,
    Outbox,
}

impl DeadLetterSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterSource::Inbox => "inbox",
            DeadLetterSource::Outbox => "outbox",
        }
    }

    pub fn parse(s: &str) -> Option<DeadLetterSource> {
        match s {
            "inbox" => Some(DeadLetterSource::Inbox),
            "outbox" => Some(DeadLetterSource::Outbox),
            _ => None,
        }
    }
}

/// Compares with the stored name (`letter.source == "inbox"`).
impl PartialEq<&str> for DeadLetterSource {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A dead letter: an inbox row the adapter refused, or an outbox row given up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub endpoint: String,
    pub source: DeadLetterSource,
    /// The inbox or outbox row id.
    pub source_id: i64,
    pub reason: String,
    pub detail: String,
    pub created_ms: u64,
    pub replayed_ms: Option<u64>,
}

/// Rows waiting, per queue (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct QueueDepths {
    pub inbox: u64,
    pub events: u64,
    pub outbox: u64,
    pub dead_letters: u64,
}

/// Dead letters, depths, retention and readiness.
pub trait MaintenanceStore: Send + Sync {
    /// Dead letters, newest first.
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>>;

    /// Puts dead-lettered inbox rows back to pending (all of them with `None`), marking
    /// their dead letters replayed. Returns how many.
    fn replay_inbox(&self, dead_letter_id: Option<i64>, now_ms: u64) -> StoreFuture<'_, u64>;

    /// Rows waiting per queue.
    fn depths(&self) -> StoreFuture<'_, QueueDepths>;

    /// Deletes done events and inbox rows older than `before_ms` (callers keep at least
    /// seven days: Meta redelivers for that long). Returns how many rows went.
    fn prune(&self, before_ms: u64) -> StoreFuture<'_, u64>;

    /// A cheap round trip through the writer (readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;
}
