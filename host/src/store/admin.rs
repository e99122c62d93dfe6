//! What the admin API keeps in the store: endpoint specs, installed plugins, outbound
//! event webhooks (subscriptions and their deliveries), and the reads behind the
//! conversation views.
//!
//! Data flows like this:
//! - the TOML config *seeds* the endpoint table at start ([`AdminStore::seed_endpoint`]);
//!   the admin API then creates, changes and deletes rows, and the running host swaps the
//!   loaded endpoint in after the row has committed, so a change survives a restart;
//! - a pipeline write that is also an event for third parties (a message received, a reply
//!   sent or failed, a handover) carries [`Notice`]s that are fanned out into one
//!   delivery row per matching subscription **in the same transaction**, so an event is
//!   never announced for work that did not commit, nor lost for work that did;
//! - the delivery loop takes due deliveries ([`AdminStore::due_deliveries`]) and records
//!   the attempts ([`AdminStore::deliveries_attempted`]).
//!
//! The list and transcript reads are synchronous, on a reader connection, so they never
//! queue behind the writer; callers on async paths run them in `spawn_blocking`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{OutboxState, StoreError, StoreFuture};

/// The events an endpoint's outbound webhooks can subscribe to.
pub const HOOK_EVENTS: [&str; 7] = [
    "conversation_started",
    "message_received",
    "message_sent",
    "message_failed",
    "handover_started",
    "handover_ended",
    "quota_reached",
];

/// Whether an endpoint takes traffic. Enabled/disabled is part of the spec; a
/// disconnected endpoint has had its credentials removed and is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    Active,
    Disconnected,
    /// Deleted, but seeded from the config file: kept as a tombstone so the unchanged
    /// config does not bring it back at the next start. Never listed.
    Deleted,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Active => "active",
            EndpointState::Disconnected => "disconnected",
            EndpointState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointState> {
        match s {
            "active" => Some(EndpointState::Active),
            "disconnected" => Some(EndpointState::Disconnected),
            "deleted" => Some(EndpointState::Deleted),
            _ => None,
        }
    }
}

/// One endpoint row (`Debug` by hand: the spec holds literal secrets).
#[derive(Clone, PartialEq)]
pub struct StoredEndpoint {
    pub id: String,
    /// JSON `EndpointSpec`.
    pub spec: String,
    pub state: EndpointState,
    pub last_handshake_ms: Option<u64>,
    /// JSON: what the last `verify` learned about the number.
    pub verified: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// What seeding one TOML endpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    /// No row yet: inserted.
    Inserted,
    /// The TOML changed since it last seeded the row: the row follows the TOML.
    Updated,
    /// The TOML is as it was when it last seeded: the row (maybe changed through the
    /// admin API since) is kept.
    Kept,
}

/// An installed adapter component.
#[derive(Clone, PartialEq)]
pub struct StoredPlugin {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub sha256: String,
    pub wasm: Vec<u8>,
    /// JSON `ChannelInfo` the install's smoke call returned.
    pub info: String,
    pub max_memory_bytes: u64,
    pub call_timeout_ms: u64,
    pub installed_ms: u64,
}

/// An outbound event webhook of an endpoint.
#[derive(Clone, PartialEq)]
pub struct Subscription {
    pub id: i64,
    pub endpoint: String,
    pub url: String,
    /// The HMAC key deliveries are signed with.
    pub secret: String,
    pub events: Vec<String>,
    pub created_ms: u64,
}

/// An event for the endpoint's outbound webhooks, written with the work it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// One of [`HOOK_EVENTS`].
    pub event: String,
    /// JSON: the event's `data`.
    pub data: String,
}

/// A delivery that is due.
#[derive(Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub endpoint: String,
    pub url: String,
    pub secret: String,
    pub event: String,
    /// JSON: the event's `data`.
    pub data: String,
    pub attempts: u32,
    pub created_ms: u64,
}

// By hand: the derived forms would print secrets and the wasm bytes.
impl fmt::Debug for StoredEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEndpoint")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StoredPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .field("wasm_bytes", &self.wasm.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .field("events", &self.events)
            .finish()
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .field("event", &self.event)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    Retry { next_attempt_ms: u64, error: String },
    GaveUp { error: String },
}

/// A conversation as the list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub conversation: String,
    pub last_inbound_ms: Option<u64>,
    /// JSON `SessionRecord`.
    pub session: Option<String>,
    pub last_event: Option<TranscriptItem>,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptItem {
    /// A recorded event of the conversation (JSON neutral event or send failure).
    Inbound {
        at_ms: u64,
        kind: String,
        body: String,
    },
    /// An outbox row (JSON `BotOutput`) with its delivery state.
    Outbound {
        at_ms: u64,
        id: i64,
        output: String,
        state: OutboxState,
        last_error: Option<String>,
    },
}

impl TranscriptItem {
    pub fn at_ms(&self) -> u64 {
        match self {
            TranscriptItem::Inbound { at_ms, .. } | TranscriptItem::Outbound { at_ms, .. } => {
                *at_ms
            }
        }
    }
}

/// The admin side of the store (see the module docs).
pub trait AdminStore: Send + Sync + 'static {
    /// Seeds an endpoint from the TOML: inserts it, or replaces its spec when `seed_hash`
    /// differs from the one it was last seeded with.
    fn seed_endpoint(&self, id: &str, spec: String, seed_hash: String) -> StoreFuture<'_, Seeded>;

    /// Inserts a new endpoint (or revives a deleted one's id); `false` when the id is taken.
    fn insert_endpoint(&self, id: &str, spec: String) -> StoreFuture<'_, bool>;

    /// Replaces an endpoint's spec and state; `false` when there is no such endpoint.
    fn update_endpoint(
        &self,
        id: &str,
        spec: String,
        state: EndpointState,
    ) -> StoreFuture<'_, bool>;

    /// Deletes an endpoint and its subscriptions (conversations stay until pruned); one
    /// the config file seeded stays as a [`EndpointState::Deleted`] tombstone. `false`
    /// when there is no such endpoint.
    fn delete_endpoint(&self, id: &str) -> StoreFuture<'_, bool>;

    /// Records a successful subscription handshake.
    fn endpoint_handshake(&self, id: &str, at_ms: u64) -> StoreFuture<'_, ()>;

    /// Records what `verify` learned (JSON) on the endpoint created at `created_ms`.
    fn endpoint_verified(&self, id: &str, created_ms: u64, verified: String)
    -> StoreFuture<'_, ()>;

    fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError>;

    fn endpoint_row(&self, id: &str) -> Result<Option<StoredEndpoint>, StoreError>;

    /// When the endpoint's last webhook arrived (from the inbox, kept ≥ 7 days).
    fn last_webhook_ms(&self, id: &str) -> Result<Option<u64>, StoreError>;

    /// Installs a plugin; with `replace` an existing one of that name is replaced.
    /// `false` when the name is taken and `replace` is not set.
    fn install_plugin(&self, plugin: StoredPlugin, replace: bool) -> StoreFuture<'_, bool>;

    /// Removes a plugin; `false` when there is none of that name.
    fn remove_plugin(&self, name: &str) -> StoreFuture<'_, bool>;

    fn plugins(&self) -> Result<Vec<StoredPlugin>, StoreError>;

    fn plugin(&self, name: &str) -> Result<Option<StoredPlugin>, StoreError>;

    fn add_subscription(
        &self,
        endpoint: &str,
        url: String,
        secret: String,
        events: Vec<String>,
    ) -> StoreFuture<'_, Subscription>;

    /// `false` when the endpoint has no such subscription.
    fn delete_subscription(&self, endpoint: &str, id: i64) -> StoreFuture<'_, bool>;

    fn subscriptions(&self, endpoint: &str) -> Result<Vec<Subscription>, StoreError>;

    /// Pending deliveries due at `now_ms` with an id above `after_id`, oldest first.
    fn due_deliveries(
        &self,
        now_ms: u64,
        after_id: i64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Delivery>>;

    /// Records delivery attempts (one transaction for many).
    fn deliveries_attempted(&self, attempts: Vec<(i64, Attempt)>) -> StoreFuture<'_, ()>;

    /// The endpoint's conversations, most recently active first.
    fn conversations(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<ConversationRow>, StoreError>;

    fn conversation(
        &self,
        endpoint: &str,
        conversation: &str,
    ) -> Result<Option<ConversationRow>, StoreError>;

    /// The conversation's last `limit` events and outbox rows, oldest first.
    fn transcript(
        &self,
        endpoint: &str,
        conversation: &str,
        limit: usize,
    ) -> Result<Vec<TranscriptItem>, StoreError>;
}
