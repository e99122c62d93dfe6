//! The durable store behind `plugboard serve`: raw inbox, events, sessions, outbox,
//! delivery statuses, timers and dead letters.
//!
//! Data flows through it like this:
//! - the webhook edge appends the raw body to the **inbox** ([`InboxStore::append_inbox`]) and
//!   answers Meta only once that commit is durable;
//! - the demux decodes inbox rows through the adapter and records the **events** they hold
//!   ([`InboxStore::record_demux`]); `UNIQUE(endpoint, dedupe_key)` turns Meta's redeliveries into
//!   no-ops, and a body the adapter refuses becomes a **dead letter** that can be replayed;
//! - a conversation worker handles one event and commits the new **session** record, the
//!   **outbox** rows it produced, the conversation's 24-hour window and its **timers** in
//!   one transaction ([`StepStore::commit_step`]), so a crash either keeps all of it or none;
//! - the sender walks the outbox, records each part it sent ([`OutboxStore::outbox_part_sent`]) or
//!   what went wrong, and ends rows as sent or dead;
//! - **statuses** from webhooks are applied monotonically (sent < delivered < read, failed
//!   last) in whatever order they arrive, also before the send's own response is stored.
//!
//! The interface is split by table group, one trait per file, each with its row types:
//! [`InboxStore`] (`inbox`), [`EventStore`] (`events`), [`StepStore`] (a step's commit,
//! the session and window reads), [`OutboxStore`] (`outbox`, statuses), [`TimerStore`],
//! [`MaintenanceStore`] (dead letters, depths, prune, ping), [`admin::AdminStore`]
//! (endpoint specs, plugins, event webhooks) and [`business::BusinessStore`]. [`Store`] is
//! all of them. Rows are types, states are enums; no SQL and no serde of stored columns
//! here: that stays inside `sqlite/`, so a second backend implements the same traits.
//!
//! [`Store`] is object safe (boxed futures) so the serving layer holds an `Arc<dyn Store>`;
//! [`sqlite::SqliteStore`] is the embedded implementation (WAL, one writer thread that
//! commits queued writes in batches, versioned migrations).

pub mod admin;
pub mod business;
pub mod events;
pub mod inbox;
pub mod maintenance;
pub mod outbox;
pub mod sqlite;
pub mod steps;
pub mod timers;

use std::future::Future;
use std::pin::Pin;

pub use events::{EventKind, EventRow, EventStore, NewEvent};
pub use inbox::{DemuxOutcome, Demuxed, InboxRow, InboxStore};
pub use maintenance::{DeadLetter, DeadLetterSource, MaintenanceStore, QueueDepths};
pub use outbox::{
    DeadSend, DeliveryState, NewOutbox, OutboxRow, OutboxState, OutboxStore, StatusApplied,
};
pub use sqlite::{SecretsReport, SqliteOptions, SqliteStore, Synchronous};
pub use steps::{QuotaTally, StepCommit, StepStore};
pub use timers::{NewTimer, TimerRow, TimerStore};

/// A boxed future, so [`Store`] can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store failed (I/O, a full disk, a corrupt file, a closed writer).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// The durable store: every table group's trait. A write has committed when its future
/// resolves `Ok`; [`InboxStore::append_inbox`] is also on disk then (fsync'd), other writes
/// survive a process crash and reach the disk with the next sync (see `sqlite` for the
/// exact rule).
///
/// Implemented for every type that implements all of them, so a backend implements the
/// sub-traits and holders keep an `Arc<dyn Store>`. The sub-traits hold no SQL: a second
/// backend (PostgreSQL) implements the same interface.
pub trait Store:
    InboxStore
    + EventStore
    + StepStore
    + OutboxStore
    + TimerStore
    + MaintenanceStore
    + admin::AdminStore
    + business::BusinessStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: InboxStore
        + EventStore
        + StepStore
        + OutboxStore
        + TimerStore
        + MaintenanceStore
        + admin::AdminStore
        + business::BusinessStore
        + Send
        + Sync
        + 'static
{
}
