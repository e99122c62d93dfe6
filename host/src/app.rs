//! The composition root: the one place the whole host is assembled and taken apart.
//!
//! [`Server::start`] opens the store (0700 data directory, shared lock), loads the plugin
//! runtime and every endpoint, builds the serving context ([`Shared`]), resumes what a
//! previous run left pending (outbox rows, recorded events, inbox rows), spawns the
//! pipeline's long-running stages (demux, sender, timers, event-webhook delivery,
//! campaigns) and binds the HTTP edge with the admin API merged into its router.
//!
//! Shutdown is one mechanism: a [`CancellationToken`] every stage watches and a
//! [`TaskTracker`] every stage and background task is spawned on. [`Server::shutdown`]
//! cancels (the edge stops accepting and drains its connections; loops finish the batch
//! in hand; the sender finishes the sends in flight), closes the tracker and waits for
//! it. What is not finished stays pending in the store for the next start.
//!
//! Nothing below this module names it: the stages get their handles from here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServeConfig;
use crate::endpoints::endpoint;
use crate::endpoints::files;
use crate::endpoints::registry;
use crate::plugins::PluginRuntime;
use crate::serve::metrics::Metrics;
use crate::serve::sender::{self, SenderHandle};
use crate::serve::workers::Workers;
use crate::serve::{Shared, edge, http, logging, notices, pipeline, stages};
use crate::store::sqlite::private;
use crate::store::{SqliteOptions, SqliteStore, Store};

/// Outbox rows loaded at start, oldest first (newer ones wait for the next start; a
/// warning says so).
const RESUME_OUTBOX: usize = 1_000_000;
/// Inbox rows handed to the demux at start; the periodic scan picks up the rest.
const RESUME_INBOX: usize = 10_000;

/// Threads of the pipeline runtime.
const PIPELINE_THREADS: usize = 2;

/// Threads the pipeline runtime may add for plugin calls (`block_in_place`) and store
/// reads and batch decodes (`spawn_blocking`). Both are short CPU work: more threads than
/// cores only add switches and stacks; a few more than the worker threads keep a
/// `block_in_place` from waiting for a hand-off thread while decodes run. Tokio's default (512) let a burst of concurrent sends grow the
/// process to 160 threads and 100 MiB more resident memory under load.
const PIPELINE_BLOCKING_THREADS: usize = 8;

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
    /// `None` once shut down (a runtime must not be dropped inside an async context, so it
    /// is shut down in the background, also when a `Server` is dropped without shutdown).
    pipeline: Option<tokio::runtime::Runtime>,
    /// The data directory's shared lock, released when the server goes.
    _data_lock: private::DataDirLock,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped without `shutdown`: still stop accepting and let every loop end.
        self.shared.cancel.cancel();
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
                .max_blocking_threads(PIPELINE_BLOCKING_THREADS)
                .thread_name("plugboard-pipeline")
                .enable_all()
                .build()
                .context("cannot start the pipeline runtime")?,
        ));
        let pipeline_rt = guard.runtime()?;
        let (sender, sender_rx) = SenderHandle::new();
        let (inbox, inbox_rx) = mpsc::channel(config.store.inbox_queue);
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
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });

        // Resume, oldest work first: events already recorded go to their workers before
        // anything decoded now, so each conversation keeps its order.
        let outbox = store.pending_outbox(RESUME_OUTBOX).await?;
        if outbox.len() == RESUME_OUTBOX {
            tracing::warn!(
                "more than {RESUME_OUTBOX} pending outbox rows; the rest wait for the next start"
            );
        }
        // The sender first: resumed steps below may wait for room in its backlog (and the
        // demux for room in the workers'), which only a running sender makes.
        let stages = &shared.stages;
        let on = pipeline_rt.handle();
        let tasks = &shared.tasks;
        let resumed_outbox = outbox.len();
        tasks.spawn_on(
            stages.watch(
                "sender",
                sender::sender_loop(shared.clone(), sender, sender_rx, outbox),
            ),
            on,
        );
        let mut after = 0;
        loop {
            let events = store.pending_events(after, 1_000).await?;
            let Some(last) = events.last() else { break };
            after = last.id;
            pipeline::dispatch(&shared, events).await;
        }
        // The first rows go straight to the demux; the periodic scan takes the rest.
        let resumed_inbox = store.pending_inbox(0, RESUME_INBOX).await?;
        if !(resumed_outbox == 0 && after == 0 && resumed_inbox.is_empty()) {
            tracing::info!(
                outbox = resumed_outbox,
                inbox = resumed_inbox.len(),
                "resuming work left pending by the previous run"
            );
        }
        for row in resumed_inbox {
            shared.notify_inbox(row);
        }

        tasks.spawn_on(
            stages.watch("demux", pipeline::demux_loop(shared.clone(), inbox_rx)),
            on,
        );
        tasks.spawn_on(
            stages.watch("timers", pipeline::timer_loop(shared.clone())),
            on,
        );
        tasks.spawn_on(
            stages.watch(
                "event_delivery",
                crate::admin::events::delivery_loop(shared.clone()),
            ),
            on,
        );
        tasks.spawn_on(
            stages.watch(
                "campaigns",
                crate::serve::campaigns::campaign_loop(shared.clone()),
            ),
            on,
        );

        // Compiling the plugins left megabytes of free heap behind: give them back.
        crate::memory::give_back();

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let _ = shared.local_addr.set(addr);
        let app = edge::router(shared.clone()).merge(crate::admin::router(shared.clone()));
        shared.tasks.spawn(http::serve(
            listener,
            app,
            config.http.clone(),
            shared.cancel.clone(),
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
        // One signal, one wait: the edge drains its connections, each loop finishes what it
        // holds (the sender its sends in flight), workers stop between steps.
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        if let Some(runtime) = self.pipeline.take() {
            runtime.shutdown_background();
        }
        tracing::info!("plugboard stopped");
        Ok(())
    }
}
