//! The server-wide sections of the config file: `log_format`, `[store]`, `[sender]`,
//! `[event_webhooks]`, `[http]` and `[egress]`, each with its defaults.
//!
//! Plain data read by serde (unknown keys are errors); [`super::ServeConfig::validate`]
//! checks the values a file can get wrong.

use serde::Deserialize;

use super::retry::RetrySchedule;
pub use crate::store::Synchronous;

/// Meta redelivers an unacknowledged webhook for up to 7 days; the dedupe keys must live at
/// least that long or a late redelivery would be handled twice.
pub const MIN_RETENTION_DAYS: u32 = 7;

/// The most connections `[http] max_connections` may allow (a semaphore's limit).
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[store]`: the embedded durable store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `"full"`: fsync at every commit, an acknowledged webhook survives a power cut (the
    /// default); `"normal"`: fsync at checkpoints only.
    pub synchronous: Synchronous,
    /// Most writes the writer thread commits in one transaction.
    pub batch_max: usize,
    /// Days handled rows (inbox, events, sent outbox) are kept; at least 7.
    pub retention_days: u32,
    /// Stored webhooks waiting for the demux; when full the edge answers 503 with
    /// `Retry-After` before storing anything.
    pub inbox_queue: usize,
}

/// The default `[store] inbox_queue`.
pub const INBOX_QUEUE: usize = 4_096;

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            synchronous: Synchronous::Full,
            batch_max: 256,
            retention_days: MIN_RETENTION_DAYS,
            inbox_queue: INBOX_QUEUE,
        }
    }
}

/// `[sender]`: the outbound sender shared by all endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderSettings {
    /// `[sender.retry]`.
    pub retry: RetrySchedule,
    /// Timeout of one Graph API request.
    pub request_timeout_ms: u64,
    /// Sends in flight at once, across endpoints.
    pub workers: usize,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            retry: RetrySchedule::default(),
            request_timeout_ms: 10_000,
            workers: 16,
        }
    }
}

/// `[event_webhooks]`: delivery of the outbound event webhooks (admin API).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventWebhookSettings {
    /// `[event_webhooks.retry]`: waits between attempts; exhausted, a delivery is dead.
    pub retry: RetrySchedule,
    /// Timeout of one delivery.
    pub request_timeout_ms: u64,
}

impl Default for EventWebhookSettings {
    fn default() -> Self {
        EventWebhookSettings {
            // About a day: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h.
            retry: RetrySchedule {
                delays_ms: vec![
                    5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000,
                    43_200_000,
                ],
                jitter: 0.2,
                ..RetrySchedule::default()
            },
            request_timeout_ms: 10_000,
        }
    }
}

/// `[http]`: the HTTP edge's connection limits (see `serve::http`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// A request's head (request line and headers) must arrive within this, counted from
    /// its first byte (or from accept, for a new connection).
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request in progress is closed after this.
    pub idle_timeout_ms: u64,
    /// A request's whole body must arrive within this, counted from its head; else 408.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait (unaccepted) until one closes.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

/// `[egress]`: internal destinations URLs from config, admin input or flows may reach.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// IPs (`127.0.0.1`), CIDRs (`10.1.2.0/24`) and host names (`hooks.internal`).
    pub allow: Vec<String>,
}
