//! The durable store behind `plugboard serve`: raw inbox, events, sessions, outbox,
//! delivery statuses, timers and dead letters.
//!
//! Data flows through it like this:
//! - the webhook edge appends the raw body to the **inbox** ([`Store::append_inbox`]) and
//!   answers Meta only once that commit is durable;
//! - the demux decodes inbox rows through the adapter and records the **events** they hold
//!   ([`Store::record_demux`]); `UNIQUE(endpoint, dedupe_key)` turns Meta's redeliveries into
//!   no-ops, and a body the adapter refuses becomes a **dead letter** that can be replayed;
//! - a conversation worker handles one event and commits the new **session** record, the
//!   **outbox** rows it produced, the conversation's 24-hour window and its **timers** in
//!   one transaction ([`Store::commit_step`]), so a crash either keeps all of it or none;
//! - the sender walks the outbox, records each part it sent ([`Store::outbox_part_sent`]) or
//!   what went wrong, and ends rows as sent or dead;
//! - **statuses** from webhooks are applied monotonically (sent < delivered < read, failed
//!   last) in whatever order they arrive, also before the send's own response is stored.
//!
//! What the admin API keeps (endpoint specs, plugins, event webhooks) is
//! [`admin::AdminStore`], a supertrait of [`Store`].
//!
//! [`Store`] is object safe (boxed futures) so the serving layer holds an `Arc<dyn Store>`;
//! [`sqlite::SqliteStore`] is the embedded implementation (WAL, one writer thread that
//! commits queued writes in batches, versioned migrations).

pub mod admin;
pub mod business;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use sqlite::{SecretsReport, SqliteOptions, SqliteStore, Synchronous};

/// A boxed future, so [`Store`] can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store failed (I/O, a full disk, a corrupt file, a closed writer).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

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

/// A raw webhook body waiting for (or kept after) demux.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow {
    pub id: i64,
    pub endpoint: String,
    pub received_ms: u64,
    pub body: Vec<u8>,
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

/// What demux made of one inbox row.
#[derive(Debug, Clone, PartialEq)]
pub enum DemuxOutcome {
    /// Decoded: record these events (duplicates are ignored) and mark the row done.
    Events(Vec<NewEvent>),
    /// The adapter refused the body or failed: keep it as a dead letter with the reason.
    Dead { reason: String, detail: String },
}

/// One inbox row's demux result; `record_demux` takes a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Demuxed {
    pub inbox_id: i64,
    pub endpoint: String,
    pub outcome: DemuxOutcome,
}

/// An outbox row to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    /// JSON `User` of the recipient.
    pub recipient: String,
    /// JSON `Business` the reply goes out from.
    pub business: String,
    /// JSON `BotOutput`.
    pub output: String,
    /// A free-form message (needs an open 24-hour window); templates and read receipts
    /// are not.
    pub free_form: bool,
    /// Not sent before this time (message delay).
    pub not_before_ms: u64,
}

/// Outbox row states. `Pending` rows are waiting for their turn or a retry; `Sent` and
/// later are delivery statuses; `Dead` rows went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
    Dead,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Delivered => "delivered",
            OutboxState::Read => "read",
            OutboxState::Failed => "failed",
            OutboxState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxState> {
        Some(match s {
            "pending" => OutboxState::Pending,
            "sent" => OutboxState::Sent,
            "delivered" => OutboxState::Delivered,
            "read" => OutboxState::Read,
            "failed" => OutboxState::Failed,
            "dead" => OutboxState::Dead,
            _ => return None,
        })
    }
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub endpoint: String,
    pub conversation: String,
    pub recipient: String,
    pub business: String,
    pub output: String,
    pub free_form: bool,
    pub state: OutboxState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Request specs of the rendered output already accepted by the channel: a retry
    /// resumes after them.
    pub parts_sent: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub created_ms: u64,
}

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

/// A timer: at `due_ms` the host does `kind` for the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimer {
    pub kind: String,
    pub due_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerRow {
    pub id: i64,
    pub endpoint: String,
    pub conversation: String,
    pub kind: String,
    pub due_ms: u64,
}

/// What a status did to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusApplied {
    /// The outbox row the message id belongs to, when its send has been recorded.
    pub outbox_id: Option<i64>,
    /// The row's state after the status (`None` when no row is known yet).
    pub state: Option<OutboxState>,
    /// The status moved the row forward (false for stale or duplicate statuses).
    pub advanced: bool,
}

/// Why an outbox row became a dead letter, and the event that tells its conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadSend {
    pub outbox_id: i64,
    /// Short machine-readable reason: `permanent`, `window_closed`, `auth_failed`,
    /// `undeliverable`, `retries_exhausted`, `render_failed`.
    pub reason: String,
    pub detail: String,
    /// The `send_failed` event for the conversation (dedupe key `send-failed:{outbox_id}`).
    pub event: Option<NewEvent>,
    /// The `message_failed` event for the endpoint's outbound webhooks.
    pub notice: Option<admin::Notice>,
}

/// A dead letter: an inbox row the adapter refused, or an outbox row given up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub endpoint: String,
    /// `inbox` or `outbox`.
    pub source: String,
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

/// The durable store. A write has committed when its future resolves `Ok`;
/// [`Store::append_inbox`] is also on disk then (fsync'd), other writes survive a process
/// crash and reach the disk with the next sync (see `sqlite` for the exact rule).
pub trait Store: admin::AdminStore + business::BusinessStore + Send + Sync + 'static {
    /// Appends a raw webhook body; returns its inbox id.
    fn append_inbox(&self, endpoint: &str, body: Vec<u8>, received_ms: u64)
    -> StoreFuture<'_, i64>;

    /// Inbox rows not yet demuxed, with id > `after_id`, oldest first.
    fn pending_inbox(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<InboxRow>>;

    /// Records a batch of demux results in one transaction: inserts the events (ignoring
    /// duplicate dedupe keys), marks the inbox rows done, or dead with a dead letter.
    /// Returns, per inbox row in order, the newly recorded events (duplicates left out).
    fn record_demux(&self, batch: Vec<Demuxed>) -> StoreFuture<'_, Vec<Vec<EventRow>>>;

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

    /// Session, outbox rows, window and timers of one step, and the event done: one
    /// transaction. Returns the ids of the new outbox rows.
    fn commit_step(&self, step: StepCommit) -> StoreFuture<'_, Vec<i64>>;

    /// A session record (JSON). Synchronous: a short read on a reader connection.
    fn session(&self, endpoint: &str, conversation: &str) -> Result<Option<String>, StoreError>;

    /// The conversation's last inbound message time.
    fn last_inbound(&self, endpoint: &str, conversation: &str) -> Result<Option<u64>, StoreError>;

    /// Pending outbox rows, oldest first, at most `limit`.
    fn pending_outbox(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxRow>>;

    /// One part of a row was accepted by the channel with message id `message_id`. When
    /// `last` the row becomes `Sent`, or the furthest status already seen for any of its
    /// message ids (a status may arrive before the send's response is stored), and
    /// `notice` (the `message_sent` event) is queued with it.
    fn outbox_part_sent(
        &self,
        outbox_id: i64,
        message_id: Option<String>,
        last: bool,
        notice: Option<admin::Notice>,
    ) -> StoreFuture<'_, OutboxState>;

    /// A failed attempt: counts it and sets the next try.
    fn outbox_retry(
        &self,
        outbox_id: i64,
        next_attempt_ms: u64,
        error: String,
    ) -> StoreFuture<'_, ()>;

    /// Replaces a row's output (the template that stands in for a free-form message
    /// outside the window), resets its parts and makes it due now.
    fn outbox_replace(
        &self,
        outbox_id: i64,
        output: String,
        free_form: bool,
    ) -> StoreFuture<'_, ()>;

    /// Gives up on a row: state `Dead`, a dead letter, and the `send_failed` event, in one
    /// transaction. Returns the event row when one was recorded.
    fn outbox_dead(&self, dead: DeadSend) -> StoreFuture<'_, Option<EventRow>>;

    /// Applies a delivery status (`status` is `sent`, `delivered`, `read`, `played` or
    /// `failed`; `played` counts as `read`) for a channel message id, monotonically.
    fn apply_status(
        &self,
        endpoint: &str,
        message_id: &str,
        status: &str,
        at_ms: u64,
        errors: String,
    ) -> StoreFuture<'_, StatusApplied>;

    /// An outbox row by id.
    fn outbox_row(&self, outbox_id: i64) -> StoreFuture<'_, Option<OutboxRow>>;

    /// Timers due at `now_ms`.
    fn due_timers(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<TimerRow>>;

    /// Removes a fired timer.
    fn timer_done(&self, id: i64) -> StoreFuture<'_, ()>;

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
