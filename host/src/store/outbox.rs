//! The outbox: replies waiting to be sent, their parts sent, retries, dead sends, and the
//! delivery statuses applied to them monotonically (sent < delivered < read, failed last).

use serde::{Deserialize, Serialize};

use super::{EventRow, NewEvent, StoreFuture, admin};

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

/// A delivery status reported for a message the host sent (Meta's `statuses[].status`).
/// `Played` (a voice message was played) counts as `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
            DeliveryState::Played => "played",
            DeliveryState::Failed => "failed",
        }
    }

    /// The outbox state this status moves a row to.
    pub fn state(self) -> OutboxState {
        match self {
            DeliveryState::Sent => OutboxState::Sent,
            DeliveryState::Delivered => OutboxState::Delivered,
            DeliveryState::Read | DeliveryState::Played => OutboxState::Read,
            DeliveryState::Failed => OutboxState::Failed,
        }
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
    /// Not stored: the conversation's last inbound message as the step that wrote this
    /// row committed it, so the sender need not read back what the worker just wrote.
    /// The window only ever moves later, so "open" by this value is open; `None` (a row
    /// loaded from the store) or "closed" by it is checked against the store.
    pub known_inbound_ms: Option<u64>,
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

/// The sender's and the status applier's view of the outbox.
pub trait OutboxStore: Send + Sync {
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

    /// Applies a delivery status for a channel message id, monotonically (`errors`: the
    /// status's error list, kept as reported).
    fn apply_status(
        &self,
        endpoint: &str,
        message_id: &str,
        status: DeliveryState,
        at_ms: u64,
        errors: serde_json::Value,
    ) -> StoreFuture<'_, StatusApplied>;

    /// An outbox row by id.
    fn outbox_row(&self, outbox_id: i64) -> StoreFuture<'_, Option<OutboxRow>>;
}
