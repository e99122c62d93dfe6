//! `plugboard serve`: Meta's webhook traffic in, replies out, nothing lost on the way.
//!
//! ```text
//! Meta POST ─▶ edge: size limit, signature over the raw bytes, inbox row (durable) ─▶ 200
//!   demux (pipeline): adapter.decode ─▶ events under UNIQUE dedupe keys (retries: no-ops)
//!   workers: one conversation at a time, in order; the conversation runtime (handover,
//!     hooks, flow) ─▶ session + outbox rows + window + timers in ONE transaction
//!   sender: window check ─▶ adapter.render ─▶ pacing and rate limits ─▶ Graph API ─▶
//!     adapter.classify ─▶ sent / retry (schedule as data) / template / dead letter
//!   statuses: applied monotonically to the outbox, also before the send's response
//! ```
//!
//! - [`cli`]: `plugboard serve` and `plugboard replay`.
//! - [`edge`]: the axum router (webhooks, `/healthz`, `/readyz`, `/metrics`).
//! - [`http`]: the accept loop under it: header, idle and body timeouts, a connection cap.
//! - [`files`]: flows and plugins confined to `flows_dir` and `plugins_dir`.
//! - [`pipeline`]: demux, dispatch, statuses, timers, pruning.
//! - [`workers`]: per-conversation ordered steps and their one-transaction commits.
//! - [`staging`]: the session store and output collector a step runs against.
//! - [`sender`]: the outbound schedule and the Graph API calls.
//! - [`graph_paths`]: which Graph API routes an adapter's request specs may name.
//! - [`endpoint`]: one endpoint's adapter, flow, hooks and conversations.
//! - [`registry`]: the endpoints being served, changeable at run time (admin API), seeded
//!   from the config into the store at start.
//! - [`notices`]: the events announced to an endpoint's outbound webhooks.
//! - [`campaigns`]: the campaign runner's ticks (business rules in [`crate::business`]).
//! - [`stages`]: liveness of the long-running loops, for `/readyz`.
//! - [`tenancy`]: the isolation rule: which endpoint a webhook item may be recorded for,
//!   whatever endpoint received it (else `unowned`).
//! - [`signature`], [`metrics`], [`logging`]: what their names say.
//!
//! The TOML file it is started with is [`crate::config`].
//!
//! [`Server::start`] resumes whatever a previous run left pending (inbox rows, events,
//! outbox rows, timers) before it accepts traffic; [`Server::shutdown`] stops accepting,
//! lets in-flight requests, steps and sends finish, and leaves the rest pending.

pub mod campaigns;
pub mod cli;
pub mod edge;
pub mod endpoint;
pub mod files;
pub mod graph_paths;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notices;
pub mod pipeline;
pub mod registry;
pub mod sender;
pub mod signature;
pub mod stages;
pub mod staging;
pub mod tenancy;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::plugins::PluginRuntime;
use crate::store::sqlite::private;
use crate::store::{InboxRow, QueueDepths, SqliteOptions, SqliteStore, Store};

use crate::config::{RetrySchedule, Secret, ServeConfig};
use endpoint::Endpoint;
use metrics::Metrics;
use registry::Registry;
use sender::SenderHandle;
use workers::Workers;

/// Outbox rows loaded at start, oldest first (newer ones wait for the next start; a
/// warning says so).
const RESUME_OUTBOX: usize = 1_000_000;
/// Inbox rows handed to the demux at start; the periodic scan picks up the rest.
const RESUME_INBOX: usize = 10_000;

/// Kept for code not yet moved to the leaf; new code uses [`crate::clock::now_ms`].
pub use crate::clock::now_ms;

/// How an endpoint's webhooks are signed (from the adapter) and the key (from the config).
#[derive(Clone)]
pub struct SignatureCheck {
    pub header: String,
    pub prefix: String,
    pub secret: Secret,
}

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
    /// so the edge's acknowledgements never queue behind pipeline work (see [`Server`]).
    pub pipeline: tokio::runtime::Handle,
    /// Which long-running loops are still running (`/readyz` names a stopped one).
    pub stages: stages::Stages,
    inbox: mpsc::UnboundedSender<InboxRow>,
    stop: watch::Sender<bool>,
    tracked: AtomicUsize,
    tracked_done: Notify,
}

impl Shared {
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Hands a stored inbox row to the demux.
    pub fn notify_inbox(&self, row: InboxRow) {
        // Closed only at shutdown; the row is durable and picked up at the next start.
        let _ = self.inbox.send(row);
    }

    /// Runs `work` as a task that shutdown waits for.
    pub fn track(self: Arc<Self>, work: impl Future<Output = ()> + Send + 'static) {
        self.tracked.fetch_add(1, Ordering::SeqCst);
        self.pipeline.clone().spawn(async move {
            work.await;
            if self.tracked.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.tracked_done.notify_waiters();
            }
        });
    }

    async fn wait_tracked(&self) {
        loop {
            let notified = self.tracked_done.notified();
            if self.tracked.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn observe_plugin(&self, endpoint: &Endpoint, call: &str, started: Instant) {
        self.metrics
            .plugin_call_seconds
            .with_label_values(&[endpoint.adapter.name(), call])
            .observe(started.elapsed().as_secs_f64());
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

/// Threads of the pipeline runtime.
const PIPELINE_THREADS: usize = 2;

/// A running host.
///
/// The edge runs on the caller's runtime; the pipeline on a runtime of its own
/// ([`PIPELINE_THREADS`] threads). Both could share one, but then a burst of webhooks puts
/// pipeline steps and sends ahead of the next acknowledgements in the same run queues;
/// with separate threads the OS scheduler, which favours threads that mostly wait (the
/// edge), keeps acks fast while the pipeline works through the backlog.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    http: JoinHandle<()>,
    demux: JoinHandle<()>,
    sender: JoinHandle<()>,
    timers: JoinHandle<()>,
    hooks: JoinHandle<()>,
    campaigns: JoinHandle<()>,
    /// `None` once shut down (a runtime must not be dropped inside an async context, so it
    /// is shut down in the background, also when a `Server` is dropped without shutdown).
    pipeline: Option<tokio::runtime::Runtime>,
    /// The data directory's shared lock, released when the server goes.
    _data_lock: private::DataDirLock,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.pipeline.take() {
            runtime.shutdown_background();
        }
    }
}

/// The pipeline runtime until it is handed to the [`Server`]: a start that fails half way
/// (port taken, store unreadable) must not drop a runtime inside an async context.
struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl RuntimeGuard {
    fn runtime(&self) -> anyhow::Result<&tokio::runtime::Runtime> {
        self.0
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the pipeline runtime is gone"))
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Server {
    /// Opens the store, loads every endpoint, resumes pending work, binds and serves.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Server> {
        logging::set_mask_pii(config.mask_pii);
        // 0700: the store holds tokens and secrets (the database files are 0600).
        private::private_dir(&config.data_dir)
            .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
        // Held while serving: `plugboard secrets …` refuses to rewrite the store meanwhile.
        let data_lock = private::DataDirLock::shared(&config.data_dir)?;
        let options = SqliteOptions {
            path: config.data_dir.join("plugboard.db"),
            synchronous: config.store.synchronous,
            batch_max: config.store.batch_max,
            keys: crate::secretbox::Keyring::new(config.secret_key.clone()),
        };
        let store: Arc<dyn Store> = Arc::new(
            tokio::task::spawn_blocking(move || SqliteStore::open(options))
                .await
                .context("store task")??,
        );

        let runtime = Arc::new(
            PluginRuntime::new()
                .map_err(|e| anyhow::anyhow!("cannot start the plugin runtime: {e}"))?,
        );
        let bounds = endpoint::Bounds {
            files: files::FileRoots {
                flows_dir: config.flows_dir.clone(),
                plugins_dir: config.plugins_dir.clone(),
            },
            egress: crate::egress::Egress::new(config.egress.clone()),
        };
        let endpoints = registry::seed(&config, &store, &runtime, &bounds).await?;
        let subscribed = notices::Subscribed::default();
        {
            let store = store.clone();
            let subscribed = &subscribed;
            let ids: Vec<String> = store.endpoints()?.into_iter().map(|e| e.id).collect();
            for id in ids {
                subscribed.refresh(store.as_ref(), &id)?;
            }
        }

        let mut guard = RuntimeGuard(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(PIPELINE_THREADS)
                .thread_name("plugboard-pipeline")
                .enable_all()
                .build()
                .context("cannot start the pipeline runtime")?,
        ));
        let pipeline_rt = guard.runtime()?;
        let (sender, sender_rx) = SenderHandle::new();
        let (inbox, inbox_rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: store.clone(),
            endpoints,
            runtime,
            admin_token: config.admin_token.clone(),
            public_url: config.public_url.clone(),
            local_addr: std::sync::OnceLock::new(),
            admin_lock: tokio::sync::Mutex::new(()),
            subscribed,
            business: crate::business::BusinessState::load(store.as_ref())?,
            metrics: Arc::new(Metrics::new()),
            workers: Workers::default(),
            sender: sender.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .context("cannot build the HTTP client")?,
            bounds,
            retry: config.sender.retry.clone(),
            request_timeout: Duration::from_millis(config.sender.request_timeout_ms),
            event_webhooks: config.event_webhooks.clone(),
            sender_workers: config.sender.workers,
            retention_days: config.store.retention_days,
            pipeline: pipeline_rt.handle().clone(),
            stages: stages::Stages::default(),
            inbox,
            stop,
            tracked: AtomicUsize::new(0),
            tracked_done: Notify::new(),
        });

        // Resume, oldest work first: events already recorded go to their workers before
        // anything decoded now, so each conversation keeps its order.
        let outbox = store.pending_outbox(RESUME_OUTBOX).await?;
        if outbox.len() == RESUME_OUTBOX {
            tracing::warn!(
                "more than {RESUME_OUTBOX} pending outbox rows; the rest wait for the next start"
            );
        }
        let mut after = 0;
        loop {
            let events = store.pending_events(after, 1_000).await?;
            let Some(last) = events.last() else { break };
            after = last.id;
            pipeline::dispatch(&shared, events).await;
        }
        // The first rows go straight to the demux; the periodic scan takes the rest.
        let resumed_inbox = store.pending_inbox(0, RESUME_INBOX).await?;
        if !(outbox.is_empty() && after == 0 && resumed_inbox.is_empty()) {
            tracing::info!(
                outbox = outbox.len(),
                inbox = resumed_inbox.len(),
                "resuming work left pending by the previous run"
            );
        }
        for row in resumed_inbox {
            shared.notify_inbox(row);
        }

        let stages = &shared.stages;
        let sender = pipeline_rt.spawn(stages.watch(
            "sender",
            sender::sender_loop(shared.clone(), sender, sender_rx, outbox),
        ));
        let demux = pipeline_rt
            .spawn(stages.watch("demux", pipeline::demux_loop(shared.clone(), inbox_rx)));
        let timers =
            pipeline_rt.spawn(stages.watch("timers", pipeline::timer_loop(shared.clone())));
        let hooks = pipeline_rt.spawn(stages.watch(
            "event_delivery",
            crate::admin::events::delivery_loop(shared.clone()),
        ));
        let campaigns =
            pipeline_rt.spawn(stages.watch("campaigns", campaigns::campaign_loop(shared.clone())));

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let _ = shared.local_addr.set(addr);
        let app = edge::router(shared.clone()).merge(crate::admin::router(shared.clone()));
        let http = tokio::spawn(http::serve(
            listener,
            app,
            config.http.clone(),
            shared.stop_signal(),
        ));
        for endpoint in shared.endpoints.all() {
            let id = &endpoint.config.id;
            if endpoint.config.access_token.is_none() {
                tracing::warn!(endpoint = %id, "no access_token: replies cannot be sent and will be kept as dead letters");
            }
            if endpoint.signature.is_none() {
                tracing::warn!(endpoint = %id, "insecure_skip_signature = true: webhooks to this endpoint are NOT authenticated");
            }
        }
        if shared.admin_token.is_none() {
            tracing::info!("no admin_token: the admin API at /admin/v1 refuses every request");
        }
        tracing::info!(%addr, endpoints = shared.endpoints.len(), "plugboard serving");
        Ok(Server {
            shared,
            addr,
            http,
            demux,
            sender,
            timers,
            hooks,
            campaigns,
            pipeline: guard.0.take(),
            _data_lock: data_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }

    /// The ids of the endpoints being served (the store's, after seeding from the config).
    pub fn endpoint_ids(&self) -> Vec<String> {
        self.shared
            .endpoints
            .all()
            .iter()
            .map(|e| e.config.id.clone())
            .collect()
    }

    /// Reads accounts and templates from the store again (after writing them to the store
    /// directly, as benchmarks do; the admin API does this itself).
    pub fn reload_business(&self) -> anyhow::Result<()> {
        Ok(self.shared.business.reload(self.shared.store.as_ref())?)
    }

    /// The plugin runtime (benchmarks clear its compiled-component cache).
    pub fn plugin_runtime(&self) -> Arc<PluginRuntime> {
        self.shared.runtime.clone()
    }

    /// Stops accepting, lets in-flight requests, steps and sends finish; the rest stays
    /// pending in the store for the next start.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shared.stop.send_replace(true);
        let _ = (&mut self.http).await;
        let _ = (&mut self.demux).await;
        let _ = (&mut self.timers).await;
        let _ = (&mut self.hooks).await;
        // The runner stops between claims: a claim either committed (its rows are pending
        // outbox rows the next start sends) or did not happen.
        let _ = (&mut self.campaigns).await;
        self.shared.workers.wait_idle().await;
        self.shared.wait_tracked().await;
        let _ = (&mut self.sender).await;
        if let Some(runtime) = self.pipeline.take() {
            runtime.shutdown_background();
        }
        tracing::info!("plugboard stopped");
        Ok(())
    }
}
