//! A conversation step's commit (session record, outbox rows, window, timers, notices,
//! quota, the event done: one transaction) and the per-conversation state a step reads
//! first (the session record and the 24-hour window's last inbound time).

use super::{NewOutbox, NewTimer, StoreFuture, admin};

/// The outcome of one step of a conversation, committed atomically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepCommit {
    pub endpoint: String,
    pub conversation: String,
    /// The session record as JSON; `None` leaves the stored one as it is.
    pub session: Option<String>,
    pub outbox: Vec<NewOutbox>,
    /// The conversation's last inbound message time (opens the 24-hour window).
    pub inbound_ms: Option<u64>,
    /// Timers of this conversation to set, replacing any pending one of the same kind.
    pub timers: Vec<NewTimer>,
    /// Timer kinds of this conversation to cancel.
    pub cancel_timers: Vec<String>,
    /// The event this step handled: marked done.
    pub event_done: Option<i64>,
    /// Events for the endpoint's outbound webhooks, queued in the same transaction.
    pub notices: Vec<admin::Notice>,
    /// Bot replies counted towards the endpoint's monthly quota (only with a quota set).
    pub quota: Option<QuotaTally>,
}

/// A step's share of the monthly reply quota.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuotaTally {
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub replies: u64,
    /// The user who got the over-quota message in this step.
    pub told: Option<String>,
}

/// What a conversation worker reads before a step and commits after it.
pub trait StepStore: Send + Sync {
    /// Session, outbox rows, window and timers of one step, and the event done: one
    /// transaction. Returns the ids of the new outbox rows.
    fn commit_step(&self, step: StepCommit) -> StoreFuture<'_, Vec<i64>>;

    /// A session record (JSON). A short read that does not wait behind the writer's
    /// batches (the SQLite store runs it on a reader connection, off the async threads).
    fn session(&self, endpoint: &str, conversation: &str) -> StoreFuture<'_, Option<String>>;

    /// The conversation's last inbound message time.
    fn last_inbound(&self, endpoint: &str, conversation: &str) -> StoreFuture<'_, Option<u64>>;
}
