//! `plugboard serve`: Meta's webhook traffic in, replies out, nothing lost on the way.
//!
//! ```text
//! Meta POST ─▶ edge: size limit, signature over the raw bytes, inbox row (durable) ─▶ 200
//!   demux (pipeline): adapter.decode ─▶ events under UNIQUE dedupe keys (retries: no-ops)
//!   workers: one conversation at a time, in order; the pure conversation step (handover,
//!     hooks, flow) ─▶ session + outbox rows + window + timers + notices in ONE transaction
//!   sender: window check ─▶ adapter.render ─▶ pacing and rate limits ─▶ Graph API ─▶
//!     adapter.classify ─▶ sent / retry (schedule as data) / template / dead letter
//!   statuses: applied monotonically to the outbox, also before the send's response
//! ```
//!
//! The stages, in the order a message meets them:
//! - [`http`]: the accept loop: header, idle and body timeouts, a connection cap.
//! - [`edge`]: the axum router (webhooks, `/healthz`, `/readyz`, `/metrics`); a webhook is
//!   checked by [`signature`], committed to the inbox, then acknowledged, and handed to the
//!   demux over the bounded inbox queue ([`INBOX_QUEUE`]; full: 503 + Retry-After).
//! - [`pipeline`]: demux (routed by [`tenancy`]: which endpoint a webhook item may be
//!   recorded for, else `unowned`), dispatch, statuses, timers, pruning.
//! - [`workers`]: per-conversation ordered steps and their one-transaction commits.
//! - [`sender`]: the outbound schedule and the Graph API calls; [`graph_paths`]: which
//!   Graph API routes an adapter's request specs may name.
//! - Beside them: [`campaigns`] (the campaign runner's ticks; business rules in
//!   [`crate::business`]), [`notices`] (the events announced to an endpoint's outbound
//!   webhooks), [`stages`] (liveness of the long-running loops, for `/readyz`),
//!   [`metrics`] and [`logging`].
//!
//! Endpoints (loaded, served, changed at run time) are [`crate::endpoints`]; the TOML file
//! the host is started with is [`crate::config`]; the `serve` and `replay` commands are
//! [`crate::cli::serve`].
//!
//! The composition root ([`crate::app::Server::start`]) builds these stages' context and
//! resumes whatever a previous run left pending (inbox rows, events, outbox rows, timers)
//! before it accepts traffic; [`crate::app::Server::shutdown`] stops accepting, lets
//! in-flight requests, steps and sends finish, and leaves the rest pending.

pub mod campaigns;
pub mod edge;
pub mod graph_paths;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notices;
pub mod pipeline;
pub mod sender;
pub mod signature;
pub mod stages;
pub mod store_retry;
pub mod tenancy;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::endpoints::endpoint::{self, Endpoint};
use crate::endpoints::registry::Registry;
use crate::plugins::PluginRuntime;
use crate::store::{InboxRow, QueueDepths, Store};

use crate::config::{RetrySchedule, Secret};
use metrics::Metrics;
use sender::SenderHandle;
use workers::Workers;

/// Kept for code not yet moved to the leaf; new code uses [`crate::clock::now_ms`].
pub use crate::clock::now_ms;

pub use crate::endpoints::endpoint::SignatureCheck;

/// What every part of the serving pipeline shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub endpoints: Registry,
    /// Loads endpoints and plugins the admin API adds while serving.
    pub runtime: Arc<PluginRuntime>,
    /// The admin API's bearer token; `None` turns the admin API off (401).
    pub admin_token: Option<Secret>,
    /// The base URL Meta reaches (callback URLs); else the listening address.
    pub public_url: Option<String>,
    /// The address the edge listens on, once bound.
    pub local_addr: std::sync::OnceLock<SocketAddr>,
    /// Held by every admin change to endpoints and plugins, from reading the stored state
    /// to swapping the result in, so two changes cannot interleave (a disconnect undone by
    /// a PATCH that read the row before it).
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Which events each endpoint's outbound webhooks want (see [`notices`]).
    pub subscribed: notices::Subscribed,
    /// Accounts, templates, campaigns and quotas in memory (see [`crate::business`]).
    pub business: crate::business::BusinessState,
    pub metrics: Arc<Metrics>,
    pub workers: Workers,
    pub sender: SenderHandle,
    /// The Graph API client (not under the egress policy: the base is bound to its token).
    pub http: reqwest::Client,
    /// Files endpoints may read, URLs they and event webhooks may reach.
    pub bounds: endpoint::Bounds,
    pub retry: RetrySchedule,
    pub request_timeout: Duration,
    /// `[event_webhooks]`: how outbound event webhooks are delivered.
    pub event_webhooks: crate::config::EventWebhookSettings,
    pub sender_workers: usize,
    pub retention_days: u32,
    /// The runtime the pipeline (demux, workers, sender, timers) runs on: its own threads,
    /// so the edge's acknowledgements never queue behind pipeline work (see [`crate::app::Server`]).
    pub pipeline: tokio::runtime::Handle,
    /// Which long-running loops are still running (`/readyz` names a stopped one).
    pub stages: stages::Stages,
    /// Stored webhooks on their way to the demux; bounded (`[store] inbox_queue`).
    pub inbox: mpsc::Sender<InboxRow>,
    /// Shutdown: cancelled once, watched by every stage (see [`StopSignal`]).
    pub cancel: CancellationToken,
    /// Every stage and background task, so shutdown can wait for all of them at once.
    pub tasks: TaskTracker,
}

impl Shared {
    /// The shutdown signal for a loop's `select!`: see [`StopSignal`].
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal {
            token: self.cancel.clone(),
            seen: false,
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Hands a stored inbox row to the demux if the queue has room. A row that does not
    /// fit is durable and pending: the demux's periodic scan picks it up.
    pub fn notify_inbox(&self, row: InboxRow) {
        let _ = self.inbox.try_send(row);
    }

    /// Runs `work` as a task that shutdown waits for.
    pub fn track(self: Arc<Self>, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_on(work, &self.pipeline);
    }

    pub fn observe_plugin(&self, endpoint: &Endpoint, call: &str, started: Instant) {
        self.metrics
            .plugin_call_seconds
            .with_label_values(&[endpoint.adapter.name(), call])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Stored webhooks waiting for the demux, by default (`[store] inbox_queue`). When the
/// demux falls this far behind, the edge answers 503 with `Retry-After` before storing
/// anything, so Meta redelivers later and the backlog cannot grow without bound in memory.
pub use crate::config::settings::INBOX_QUEUE;

/// A loop's view of the shutdown token: [`changed`](StopSignal::changed) resolves once,
/// when shutdown starts, and then never again, so a loop that goes on after it (the
/// sender finishing its sends in flight) waits on its other branches instead of spinning
/// on an always-ready cancellation.
pub struct StopSignal {
    token: CancellationToken,
    seen: bool,
}

impl StopSignal {
    pub async fn changed(&mut self) {
        if self.seen {
            std::future::pending::<()>().await;
        }
        self.token.cancelled().await;
        self.seen = true;
    }
}

/// Queue depths into their gauges.
pub fn set_depths(metrics: &Metrics, depths: &QueueDepths) {
    for (queue, value) in [
        ("inbox", depths.inbox),
        ("events", depths.events),
        ("outbox", depths.outbox),
        ("dead_letters", depths.dead_letters),
    ] {
        metrics
            .queue_depth
            .with_label_values(&[queue])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
}
