//! The inbox: raw webhook bodies, appended by the edge before Meta gets its 200, then
//! decoded by the demux into events (or dead letters) in one transaction per batch.

use super::{EventRow, NewEvent, StoreFuture};

/// A raw webhook body waiting for (or kept after) demux.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow {
    pub id: i64,
    pub endpoint: String,
    pub received_ms: u64,
    pub body: Vec<u8>,
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

/// The inbox and the demux's commit. [`InboxStore::append_inbox`] is fsync'd before it
/// resolves (with `synchronous = "full"`).
pub trait InboxStore: Send + Sync {
    /// Appends a raw webhook body; returns its inbox id.
    fn append_inbox(&self, endpoint: &str, body: Vec<u8>, received_ms: u64)
    -> StoreFuture<'_, i64>;

    /// Inbox rows not yet demuxed, with id > `after_id`, oldest first.
    fn pending_inbox(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<InboxRow>>;

    /// Records a batch of demux results in one transaction: inserts the events (ignoring
    /// duplicate dedupe keys), marks the inbox rows done, or dead with a dead letter.
    /// Returns, per inbox row in order, the newly recorded events (duplicates left out).
    fn record_demux(&self, batch: Vec<Demuxed>) -> StoreFuture<'_, Vec<Vec<EventRow>>>;
}
