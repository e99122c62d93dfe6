//! The writer thread of the SQLite store: the job queue, batching, the fast and careful
//! paths and the selective fsync. Everything that writes (and every read made on an async
//! path) reaches the database through [`Writer::submit`].
//!
//! Every write (and every read made on an async path) is a *job*: a closure over the
//! writer's transaction plus the oneshot that answers its caller. The writer thread blocks
//! for one job, drains whatever else is queued (up to `batch_max`), runs the jobs in a
//! single `BEGIN IMMEDIATE` transaction and commits once. Replies are sent only after that
//! commit succeeded, so an `Ok` means durable (with `synchronous=FULL`), and a hundred
//! concurrent webhook appends cost one fsync instead of a hundred. A failed commit fails
//! every job of the batch.
//!
//! A job that fails only fails its own caller; the rest of the batch commits. The writer
//! gets there in two steps:
//! - *fast path*: the jobs run one after the other straight in the transaction, without
//!   savepoints. If all succeed, the batch commits. This is the common case, and it costs
//!   no `SAVEPOINT`/`RELEASE` pair per job.
//! - *careful path*: at the first job that fails (an error or a panic) the writer rolls
//!   the **whole** transaction back, opens a new one and runs the batch again, each job in
//!   its own `SAVEPOINT`: a failing job rolls back to its savepoint only.
//!
//! This is safe because a failed fast attempt leaves nothing behind: its rollback undoes
//! every job's writes (and the AUTOINCREMENT counters), and no caller has been answered
//! yet, so each job's effects are applied exactly once, by the attempt that commits. Jobs
//! are therefore `Fn` closures over data they own (they may run twice) and must not have
//! effects outside the transaction. A job that panicked is not run again: it is answered
//! as panicked, the others are re-run.
//!
//! Every statement goes through the connection's prepared-statement cache (sized above
//! the number of distinct statements here), transaction control included, so SQLite parses
//! each statement once per connection rather than on every call.
//!
//! **Selective fsync.** Only the webhook edge needs an fsync before it answers (Meta's 200
//! must mean "on disk"): with `synchronous = FULL`, a batch holding an inbox append commits
//! with `FULL`; batches of pipeline writes (steps, sends, statuses) commit with `NORMAL`,
//! which in WAL mode survives a process crash (the commit is in the OS) but not a power cut
//! until the WAL is next synced. The next `FULL` commit syncs the whole WAL, earlier
//! `NORMAL` commits included, and an idle writer runs a passive checkpoint (which syncs)
//! within [`IDLE_SYNC`]. So a power cut can lose at most the last moments of pipeline
//! progress, which is then redone from the durable inbox and events (a reply may go out
//! twice); an acknowledged webhook is never lost.
//!
//! **Admin writes are always fsync'd.** A change made through the admin API (endpoints,
//! plugins, accounts, templates, campaigns, event webhooks, opt-ins) is a [`Durability::Admin`]
//! job: its batch commits with `synchronous=FULL` even under `[store] synchronous =
//! "normal"`, so an admin answer means the change survives a power cut. These writes are
//! rare; the pipeline keeps its cheaper commits.
//!
//! A job is handed to the writer when the method is called, not when its future is first
//! polled: dropping the future does not cancel the write, it only drops the answer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Synchronous;
use super::rows::{Ctx, exec_pragma};
use crate::store::{StoreError, StoreFuture};

/// How long an idle writer waits before syncing commits made with `synchronous=NORMAL`.
pub(super) const IDLE_SYNC: Duration = Duration::from_millis(200);

/// When a job's commit must be synced to disk before its caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Pipeline progress: `synchronous=NORMAL` (synced by the next FULL commit or the idle
    /// checkpoint).
    Batched,
    /// A webhook's inbox row: `FULL` when the store is configured `full`.
    Edge,
    /// An admin change: `FULL` whatever the store is configured with.
    Admin,
}

/// The writer thread and the queue that feeds it. Dropping it lets the writer finish the
/// queued jobs and waits for it.
pub(super) struct Writer {
    /// `None` only while dropping (closing the channel stops the writer).
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    /// Batches committed with `synchronous=FULL` (what the durability rules did).
    full_commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread on `conn` (migrated, pragmas set).
    pub(super) fn start(
        conn: Connection,
        batch_max: usize,
        synchronous: Synchronous,
    ) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let batch_max = batch_max.max(1);
        let full_commits = Arc::new(AtomicU64::new(0));
        let thread = {
            let full_commits = full_commits.clone();
            std::thread::Builder::new()
                .name("plugboard-store".into())
                .spawn(move || writer_loop(conn, queue, batch_max, synchronous, &full_commits))
                .map_err(|e| StoreError(format!("starting the writer thread: {e}")))?
        };
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            full_commits,
        })
    }

    /// Batches committed with `synchronous=FULL` since the writer started.
    pub(super) fn full_commits(&self) -> u64 {
        self.full_commits.load(Ordering::SeqCst)
    }

    /// Queues a job; the future resolves once its batch has committed.
    pub(super) fn submit<R, F>(&self, durable: Durability, f: F) -> StoreFuture<'static, R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            f,
            durable,
            outcome: Outcome::NotRun,
            reply,
        });
        let queued = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        Box::pin(async move {
            if !queued {
                return Err(writer_stopped());
            }
            // A dropped reply means the writer thread went away mid-batch.
            answer.await.map_err(|_| writer_stopped())?
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel makes the writer finish what is queued and return.
        self.jobs.take();
        if let Some(writer) = self.thread.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError("store writer stopped".into())
}

/// A queued unit of work with its result type erased.
trait Job: Send {
    /// When it must be on disk (see "Selective fsync").
    fn durable(&self) -> Durability;
    /// Runs inside the batch transaction and returns whether it succeeded. May run again
    /// after an attempt that was rolled back (see [`run_batch`]); each run replaces the
    /// last one's result. A job whose last run panicked does not run again.
    fn run(&mut self, tx: &Connection) -> bool;
    /// Answers the caller once the batch is over: `batch` is the commit's outcome.
    fn reply(self: Box<Self>, batch: Result<(), StoreError>);
}

/// What a job's last run did.
enum Outcome<R> {
    NotRun,
    /// Also the state during a run: a run that unwinds leaves it.
    Panicked,
    Done(Result<R, StoreError>),
}

struct TypedJob<R, F> {
    /// `Fn`, not `FnOnce`: the fast path may roll a batch back and run it again.
    f: F,
    durable: Durability,
    outcome: Outcome<R>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for TypedJob<R, F>
where
    R: Send + 'static,
    F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
{
    fn durable(&self) -> Durability {
        self.durable
    }

    fn run(&mut self, tx: &Connection) -> bool {
        if matches!(self.outcome, Outcome::Panicked) {
            return false;
        }
        self.outcome = Outcome::Panicked;
        let result = (self.f)(tx);
        let ok = result.is_ok();
        self.outcome = Outcome::Done(result);
        ok
    }

    fn reply(self: Box<Self>, batch: Result<(), StoreError>) {
        let TypedJob { outcome, reply, .. } = *self;
        let answer = match (outcome, batch) {
            // The job's own error is more precise than the batch's.
            (Outcome::Done(Err(e)), _) => Err(e),
            (Outcome::Done(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(e),
            (Outcome::NotRun, Ok(())) => Err(StoreError("store job did not run".into())),
            (Outcome::Panicked, Ok(())) => Err(StoreError("store job panicked".into())),
        };
        // The caller may have dropped its future: nothing to tell then.
        let _ = reply.send(answer);
    }
}

fn writer_loop(
    conn: Connection,
    queue: mpsc::Receiver<Box<dyn Job>>,
    batch_max: usize,
    synchronous: Synchronous,
    full_commits: &AtomicU64,
) {
    let mut batch = Vec::with_capacity(batch_max.min(1024));
    // The connection's current `synchronous` setting, and whether commits made with
    // `NORMAL` are waiting for a sync.
    let mut full = synchronous == Synchronous::Full;
    let mut unsynced = false;
    loop {
        let first = match queue.recv_timeout(IDLE_SYNC) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if unsynced {
                    // A passive checkpoint syncs the WAL: the idle writer makes the last
                    // pipeline commits durable too.
                    match exec_pragma(&conn, "PRAGMA wal_checkpoint(PASSIVE)") {
                        Ok(()) => unsynced = false,
                        Err(e) => tracing::warn!("store checkpoint: {e}"),
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let want_full = wants_full(synchronous, batch.iter().map(|job| job.durable()));
        if want_full != full {
            let value = if want_full { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", value) {
                Ok(()) => full = want_full,
                Err(e) => tracing::warn!("store: cannot set synchronous={value}: {e}"),
            }
        }
        let outcome = run_batch(&conn, &mut batch);
        if outcome.is_ok() {
            // A FULL commit syncs the whole WAL, earlier NORMAL commits included.
            unsynced = !full;
            if full {
                full_commits.fetch_add(1, Ordering::SeqCst);
            }
        }
        if let Err(e) = &outcome {
            tracing::error!(jobs = batch.len(), error = %e, "store batch failed");
        }
        for job in batch.drain(..) {
            job.reply(outcome.clone());
        }
    }
    tracing::debug!("store writer stopped");
}

/// Whether a batch of jobs of these durabilities commits with `synchronous=FULL`: an
/// admin change always does, a webhook's write when the store is configured `full`.
pub(super) fn wants_full(
    synchronous: Synchronous,
    mut jobs: impl Iterator<Item = Durability>,
) -> bool {
    jobs.any(|d| match d {
        Durability::Admin => true,
        Durability::Edge => synchronous == Synchronous::Full,
        Durability::Batched => false,
    })
}

/// Runs one cached statement that returns no rows (transaction control).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs a job, containing a panic: a panicking job must not take the writer (and every
/// later write) down with it.
fn run_job(job: &mut Box<dyn Job>, tx: &Connection) -> bool {
    catch_unwind(AssertUnwindSafe(|| job.run(tx))).unwrap_or(false)
}

/// Rolls back whatever transaction is open; SQLite may already have rolled it back itself
/// (a full disk, an I/O error), which is fine.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = exec_cached(conn, "ROLLBACK");
    }
}

/// Runs a batch in one transaction and commits it.
///
/// Fast path: every job runs straight in the transaction. If all of them succeed, that
/// is the batch. If one fails (or panics), the whole transaction is rolled back and the
/// batch runs again the careful way, each job in its own savepoint, so the failing job
/// only fails its own caller.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    // A rollback that failed earlier can leave a transaction open; BEGIN would then fail
    // forever.
    rollback(conn);
    exec_cached(conn, "BEGIN IMMEDIATE").ctx("beginning a transaction")?;
    let mut all_ok = true;
    for job in batch.iter_mut() {
        if !run_job(job, conn) {
            all_ok = false;
            break;
        }
    }
    if !all_ok {
        // Nothing of the attempt survives this: no job's effects can apply twice.
        rollback(conn);
        exec_cached(conn, "BEGIN IMMEDIATE").ctx("beginning a transaction")?;
        if let Err(e) = run_batch_careful(conn, batch) {
            rollback(conn);
            return Err(e);
        }
    }
    let committed = exec_cached(conn, "COMMIT").ctx("committing");
    if committed.is_err() {
        rollback(conn);
    }
    committed
}

/// Runs each job of the batch in its own savepoint, inside the open transaction.
fn run_batch_careful(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    for job in batch.iter_mut() {
        exec_cached(conn, "SAVEPOINT job").ctx("opening a savepoint")?;
        if !run_job(job, conn) {
            exec_cached(conn, "ROLLBACK TO job").ctx("closing a savepoint")?;
        }
        exec_cached(conn, "RELEASE job").ctx("closing a savepoint")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------
