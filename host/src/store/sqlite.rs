//! The embedded SQLite implementation of [`Store`]: one database file in WAL mode, one
//! writer thread, two reader connections and versioned migrations.
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
//! The synchronous reads of the conversation runtime ([`Store::session`],
//! [`Store::last_inbound`]) go to a reader connection instead, so they never wait behind a
//! batch; WAL lets them read the last committed state while the writer works.
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
//! **Secrets at rest.** The database and its `-wal`/`-shm` files are created `0600` in a
//! `0700` directory ([`private`]). With a key ([`SqliteOptions::keys`]), the secret columns
//! are sealed on write and opened on read ([`seal`]); opening a store checks that every
//! sealed value opens with the keys given.
//!
//! A job is handed to the writer when the method is called, not when its future is first
//! polled: dropping the future does not cancel the write, it only drops the answer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::now_ms;

mod admin;
mod business;
pub mod private;
mod seal;

pub use seal::SecretsReport;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use rusqlite_migration::{M, Migrations};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::admin::Notice;
use super::{
    DeadLetter, DeadSend, DemuxOutcome, Demuxed, EventKind, EventRow, InboxRow, NewEvent,
    OutboxRow, OutboxState, QueueDepths, StatusApplied, StepCommit, Store, StoreError, StoreFuture,
    TimerRow,
};
use crate::secretbox::Keyring;

/// Schema versions, applied in order; the version lives in SQLite's `user_version`.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("sqlite/migrations/0001_init.sql")),
    M::up(include_str!("sqlite/migrations/0002_admin.sql")),
    M::up(include_str!("sqlite/migrations/0003_business.sql")),
    M::up(include_str!("sqlite/migrations/0004_pending_indexes.sql")),
];

/// How long a connection waits for a lock held by another process (a CLI command run
/// next to `serve`) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle writer waits before syncing commits made with `synchronous=NORMAL`.
const IDLE_SYNC: Duration = Duration::from_millis(200);

/// The writer's page cache, in KiB (negative: SQLite's unit for a size in KiB).
const WRITER_CACHE_KIB: i64 = -16_384;
/// WAL pages between automatic checkpoints (SQLite's default is 1000).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_000;
/// The WAL file is truncated back to this size after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Reader connections for the synchronous reads.
const READERS: usize = 2;

/// Prepared statements kept per connection. Above the number of distinct statements this
/// file runs, so none is ever parsed twice (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 128;

/// When a job's commit must be synced to disk before its caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Pipeline progress: `synchronous=NORMAL` (synced by the next FULL commit or the idle
    /// checkpoint).
    Batched,
    /// A webhook's inbox row: `FULL` when the store is configured `full`.
    Edge,
    /// An admin change: `FULL` whatever the store is configured with.
    Admin,
}

/// How hard SQLite syncs the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync at every commit: a commit that returned survives a power cut.
    #[default]
    Full,
    /// fsync at checkpoints only: still consistent after a crash, but the last commits may
    /// be lost on power failure. Faster on slow disks.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Where the database lives and how it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file (created `0600`); missing parent directories are created `0700`.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Most jobs committed in one transaction (at least 1).
    pub batch_max: usize,
    /// The keys stored secrets are sealed and opened with (default: none, clear).
    pub keys: Keyring,
}

impl SqliteOptions {
    /// Options for `path` with the defaults: `synchronous=FULL`, batches of 256.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            ..SqliteOptions::default()
        }
    }
}

/// The defaults, with an empty `path` to fill in:
/// `SqliteOptions { path, ..SqliteOptions::default() }`.
impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            path: PathBuf::new(),
            synchronous: Synchronous::default(),
            batch_max: 256,
            keys: Keyring::default(),
        }
    }
}

/// The embedded store. Cheap to share behind an `Arc`; dropping it lets the writer finish
/// the queued jobs and waits for it.
pub struct SqliteStore {
    /// `None` only while dropping (closing the channel stops the writer).
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    writer: Option<JoinHandle<()>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Seals the secret columns on write, opens them on read.
    keys: Arc<Keyring>,
    /// How the secrets were stored when the store opened.
    secrets: SecretsReport,
    /// Batches committed with `synchronous=FULL` (what the durability rules did).
    full_commits: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database, migrates it to the latest schema and starts
    /// the writer thread.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let path = options.path;
        // SQLite opens an empty path as a private temporary database: each connection
        // would see its own.
        if path.as_os_str().is_empty() {
            return Err(StoreError("no database path given".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            private::create_private_dir(parent)?;
        }
        // Created 0600 before SQLite opens it: SQLite gives -wal and -shm the same mode.
        private::private_db(&path)?;
        let mut conn = Connection::open(&path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting busy_timeout")?;
        // journal_mode must be set outside a transaction, so before the migrations.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .ctx("setting journal_mode=WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())
            .ctx("setting synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx("setting foreign_keys")?;
        // The writer's page cache holds the hot index pages (dedupe keys, conversations):
        // SQLite's default 2 MiB made every batch re-read them from the file.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .ctx("setting cache_size")?;
        // Checkpoints copy each WAL page back into the database; spaced out, a page changed
        // by many batches is copied once. `journal_size_limit` keeps the WAL file bounded.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .ctx("setting wal_autocheckpoint")?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .ctx("setting journal_size_limit")?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .ctx("setting temp_store")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|e| StoreError(format!("migrating {}: {e}", path.display())))?;
        // -wal and -shm exist now; a database of an older version may have had them 0644.
        private::private_db(&path)?;
        let keys = options.keys;
        let secrets = seal::check(&conn, &keys)
            .map_err(|e| StoreError(format!("{}: {}", path.display(), e.0)))?;
        if keys.current_id().is_some() && secrets.clear > 0 {
            tracing::info!(
                clear = secrets.clear,
                "stored secrets in clear: each is encrypted at its next change, or all at once by `plugboard secrets encrypt`"
            );
        }

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(&path)
                .map_err(|e| StoreError(format!("opening reader on {}: {e}", path.display())))?;
            reader
                .busy_timeout(BUSY_TIMEOUT)
                .ctx("setting busy_timeout")?;
            // Readers never write: make a mistake loud instead of a second writer.
            reader
                .pragma_update(None, "query_only", "ON")
                .ctx("setting query_only")?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            readers.push(Mutex::new(reader));
        }

        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let batch_max = options.batch_max.max(1);
        let synchronous = options.synchronous;
        let full_commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let full_commits = full_commits.clone();
            std::thread::Builder::new()
                .name("plugboard-store".into())
                .spawn(move || writer_loop(conn, queue, batch_max, synchronous, &full_commits))
                .map_err(|e| StoreError(format!("starting the writer thread: {e}")))?
        };
        tracing::debug!(path = %path.display(), "store opened");
        Ok(SqliteStore {
            jobs: Some(jobs),
            writer: Some(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            keys: Arc::new(keys),
            secrets,
            full_commits,
        })
    }

    /// How the stored secrets were kept when the store opened (clear, sealed, references).
    pub fn secrets_report(&self) -> &SecretsReport {
        &self.secrets
    }

    /// Batches committed with `synchronous=FULL` since the store opened.
    pub fn full_commits(&self) -> u64 {
        self.full_commits.load(Ordering::SeqCst)
    }

    /// Rewrites every stored secret with the keyring's current key (none: in clear), in
    /// one durable transaction; values sealed with an older key of the keyring are opened
    /// first. `plugboard secrets rotate|encrypt|decrypt`.
    pub async fn reseal_secrets(&self) -> Result<SecretsReport, StoreError> {
        let keys = self.keys.clone();
        self.submit_admin(move |tx| seal::reseal(tx, &keys)).await
    }

    /// Rewrites the closed database at `path` without free pages and empties its WAL, so
    /// values replaced earlier (secrets before a reseal) are gone from the files as well.
    /// No other connection may be open (the caller holds the data directory's lock).
    pub fn scrub(path: &Path) -> Result<(), StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting busy_timeout")?;
        conn.execute_batch("VACUUM").ctx("vacuuming")?;
        exec_pragma(&conn, "PRAGMA wal_checkpoint(TRUNCATE)").ctx("checkpointing")?;
        Ok(())
    }

    /// Opens `dir/plugboard.db` with the default options.
    pub fn open_in(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(SqliteOptions::new(dir.join("plugboard.db")))
    }

    /// Queues a job for the writer; the future resolves once its batch has committed.
    fn submit<R, F>(&self, f: F) -> StoreFuture<'_, R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_job(Durability::Batched, f)
    }

    /// Like [`SqliteStore::submit`], for a webhook's write that must be fsync'd before its
    /// answer when the store is configured `synchronous = "full"`.
    fn submit_durable<R, F>(&self, f: F) -> StoreFuture<'_, R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_job(Durability::Edge, f)
    }

    /// Like [`SqliteStore::submit`], for an admin change: fsync'd before its answer
    /// whatever `synchronous` is configured.
    fn submit_admin<R, F>(&self, f: F) -> StoreFuture<'_, R>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit_job(Durability::Admin, f)
    }

    fn submit_job<R, F>(&self, durable: Durability, f: F) -> StoreFuture<'_, R>
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

    /// Runs a short read on a free reader connection (or waits for one, round robin).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(conn) => return f(&conn),
                // A panic while holding a reader leaves nothing half done: reads only.
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        let reader = self
            .readers
            .get(n)
            .ok_or_else(|| StoreError("no reader connection".into()))?;
        let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel makes the writer finish what is queued and return.
        self.jobs.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError("store writer stopped".into())
}

// ---------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------

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
fn wants_full(synchronous: Synchronous, mut jobs: impl Iterator<Item = Durability>) -> bool {
    jobs.any(|d| match d {
        Durability::Admin => true,
        Durability::Edge => synchronous == Synchronous::Full,
        Durability::Batched => false,
    })
}

/// A pragma that may return a row (`wal_checkpoint` does); the row is not needed.
fn exec_pragma(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
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

/// Adds context to rusqlite errors.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, rusqlite::Error> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError(format!("{what}: {e}")))
    }
}

/// `execute` through the statement cache: a statement is parsed once per connection.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the statement cache.
fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// A u64 (time, count) as an SQLite integer; saturates instead of wrapping.
fn db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn db_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An SQLite integer as a u64; negative values (never written by us) read as 0.
fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn conversion_error(col: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, what.into())
}

/// Status name → rank; the ranks follow [`OutboxState`]'s order.
fn status_rank(status: &str) -> Option<(OutboxState, i64)> {
    Some(match status {
        "sent" => (OutboxState::Sent, 1),
        "delivered" => (OutboxState::Delivered, 2),
        "read" | "played" => (OutboxState::Read, 3),
        "failed" => (OutboxState::Failed, 4),
        _ => return None,
    })
}

fn state_of_rank(rank: i64) -> OutboxState {
    match rank {
        ..=1 => OutboxState::Sent,
        2 => OutboxState::Delivered,
        3 => OutboxState::Read,
        _ => OutboxState::Failed,
    }
}

/// States a delivery status may move (a `Pending` row becomes `Sent` through
/// `outbox_part_sent`; a `Dead` row stays dead).
fn takes_statuses(state: OutboxState) -> bool {
    matches!(
        state,
        OutboxState::Sent | OutboxState::Delivered | OutboxState::Read | OutboxState::Failed
    )
}

/// The columns [`event_row`] reads, as a macro so queries are `concat!`ed at compile time.
macro_rules! event_columns {
    () => {
        "id, endpoint, conversation, kind, body, created_ms"
    };
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let kind: String = row.get(3)?;
    Ok(EventRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        conversation: row.get(2)?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| conversion_error(3, format!("unknown event kind {kind:?}")))?,
        body: row.get(4)?,
        created_ms: from_db(row.get(5)?),
    })
}

/// The columns [`outbox_row`] reads.
macro_rules! outbox_columns {
    () => {
        "id, endpoint, conversation, recipient, business, output, free_form, state, attempts, \
         parts_sent, next_attempt_ms, last_error, created_ms"
    };
}

fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let state: String = row.get(7)?;
    let attempts: i64 = row.get(8)?;
    let parts_sent: i64 = row.get(9)?;
    Ok(OutboxRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        conversation: row.get(2)?,
        recipient: row.get(3)?,
        business: row.get(4)?,
        output: row.get(5)?,
        free_form: row.get(6)?,
        state: OutboxState::parse(&state)
            .ok_or_else(|| conversion_error(7, format!("unknown outbox state {state:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        parts_sent: u32::try_from(parts_sent).unwrap_or(0),
        next_attempt_ms: from_db(row.get(10)?),
        last_error: row.get(11)?,
        created_ms: from_db(row.get(12)?),
    })
}

/// Inserts an event unless its dedupe key is known; returns the new row.
fn insert_event(
    tx: &Connection,
    endpoint: &str,
    event: &NewEvent,
    now: u64,
) -> Result<Option<EventRow>, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (endpoint, dedupe_key, conversation, kind, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (endpoint, dedupe_key) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                endpoint,
                event.dedupe_key,
                event.conversation,
                event.kind.as_str(),
                event.body,
                db_int(now),
            ])
        })
        .ctx("inserting an event")?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(EventRow {
        id: tx.last_insert_rowid(),
        endpoint: endpoint.to_owned(),
        conversation: event.conversation.clone(),
        kind: event.kind,
        body: event.body.clone(),
        created_ms: now,
    }))
}

fn insert_dead_letter(
    tx: &Connection,
    endpoint: &str,
    source: &str,
    source_id: i64,
    reason: &str,
    detail: &str,
    now: u64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO dead_letters (endpoint, source, source_id, reason, detail, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![endpoint, source, source_id, reason, detail, db_int(now)],
    )
    .ctx("inserting a dead letter")?;
    Ok(())
}

fn set_outbox_state(
    tx: &Connection,
    outbox_id: i64,
    state: OutboxState,
    now: u64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE outbox SET state = ?2, updated_ms = ?3 WHERE id = ?1",
        params![outbox_id, state.as_str(), db_int(now)],
    )
    .ctx("updating an outbox state")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The Store implementation
// ---------------------------------------------------------------------------------------

impl Store for SqliteStore {
    fn append_inbox(
        &self,
        endpoint: &str,
        body: Vec<u8>,
        received_ms: u64,
    ) -> StoreFuture<'_, i64> {
        let endpoint = endpoint.to_owned();
        self.submit_durable(move |tx| {
            tx.prepare_cached("INSERT INTO inbox (endpoint, received_ms, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut stmt| stmt.insert(params![endpoint, db_int(received_ms), body]))
                .ctx("appending to the inbox")
        })
    }

    fn pending_inbox(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<InboxRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, received_ms, body FROM inbox
                     WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2",
                )
                .ctx("reading the inbox")?;
            let rows = stmt
                .query_map(params![after_id, db_limit(limit)], |row| {
                    Ok(InboxRow {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        received_ms: from_db(row.get(2)?),
                        body: row.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading the inbox")?;
            Ok(rows)
        })
    }

    fn record_demux(&self, batch: Vec<Demuxed>) -> StoreFuture<'_, Vec<Vec<EventRow>>> {
        self.submit(move |tx| {
            let now = now_ms();
            let mut recorded = Vec::with_capacity(batch.len());
            for item in &batch {
                match &item.outcome {
                    DemuxOutcome::Events(events) => {
                        let mut new = Vec::new();
                        for event in events {
                            let endpoint = event.endpoint.as_deref().unwrap_or(&item.endpoint);
                            new.extend(insert_event(tx, endpoint, event, now)?);
                        }
                        exec(
                            tx,
                            "UPDATE inbox SET state = 'done', done_ms = ?2 WHERE id = ?1",
                            params![item.inbox_id, db_int(now)],
                        )
                        .ctx("marking an inbox row done")?;
                        recorded.push(new);
                    }
                    DemuxOutcome::Dead { reason, detail } => {
                        // Only a row still pending: the same row decoded twice (the
                        // channel and the periodic scan) must not leave two dead letters.
                        let changed = exec(
                            tx,
                            "UPDATE inbox SET state = 'dead', done_ms = ?2
                                 WHERE id = ?1 AND state = 'pending'",
                            params![item.inbox_id, db_int(now)],
                        )
                        .ctx("marking an inbox row dead")?;
                        if changed == 0 {
                            recorded.push(Vec::new());
                            continue;
                        }
                        insert_dead_letter(
                            tx,
                            &item.endpoint,
                            "inbox",
                            item.inbox_id,
                            reason,
                            detail,
                            now,
                        )?;
                        recorded.push(Vec::new());
                    }
                }
            }
            Ok(recorded)
        })
    }

    fn pending_events(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<EventRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2"
                ))
                .ctx("reading events")?;
            let rows = stmt
                .query_map(params![after_id, db_limit(limit)], event_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading events")?;
            Ok(rows)
        })
    }

    fn insert_events(
        &self,
        endpoint: &str,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'_, Vec<EventRow>> {
        let endpoint = endpoint.to_owned();
        self.submit(move |tx| {
            let now = now_ms();
            let mut new = Vec::new();
            for event in &events {
                new.extend(insert_event(tx, &endpoint, event, now)?);
            }
            Ok(new)
        })
    }

    fn events_done(&self, ids: Vec<i64>) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            let now = db_int(now_ms());
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE events SET state = 'done', done_ms = ?2
                     WHERE id = ?1 AND state <> 'done'",
                )
                .ctx("marking events done")?;
            for &id in &ids {
                stmt.execute(params![id, now])
                    .ctx("marking an event done")?;
            }
            Ok(())
        })
    }

    fn commit_step(&self, step: StepCommit) -> StoreFuture<'_, Vec<i64>> {
        self.submit(move |tx| {
            let now = db_int(now_ms());
            let StepCommit {
                endpoint,
                conversation,
                session,
                outbox,
                inbound_ms,
                timers,
                cancel_timers,
                event_done,
                notices,
                quota,
            } = &step;
            if let Some(record) = session {
                exec(
                    tx,
                    "INSERT INTO sessions (endpoint, conversation, record, updated_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (endpoint, conversation)
                     DO UPDATE SET record = excluded.record, updated_ms = excluded.updated_ms",
                    params![endpoint, conversation, record, now],
                )
                .ctx("saving the session")?;
            }
            let mut ids = Vec::with_capacity(outbox.len());
            for out in outbox {
                let id = tx
                    .prepare_cached(
                        "INSERT INTO outbox (endpoint, conversation, recipient, business, output,
                             free_form, next_attempt_ms, source_event, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                    )
                    .and_then(|mut stmt| {
                        stmt.insert(params![
                            endpoint,
                            conversation,
                            out.recipient,
                            out.business,
                            out.output,
                            out.free_form,
                            db_int(out.not_before_ms),
                            event_done,
                            now,
                        ])
                    })
                    .ctx("inserting an outbox row")?;
                ids.push(id);
            }
            if let Some(inbound) = inbound_ms {
                // A late, older message must not move the window back.
                exec(
                    tx,
                    "INSERT INTO windows (endpoint, conversation, last_inbound_ms)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (endpoint, conversation) DO UPDATE
                     SET last_inbound_ms = MAX(last_inbound_ms, excluded.last_inbound_ms)",
                    params![endpoint, conversation, db_int(*inbound)],
                )
                .ctx("updating the window")?;
            }
            // Cancel first so a kind both cancelled and set ends up set.
            for kind in cancel_timers.iter().chain(timers.iter().map(|t| &t.kind)) {
                exec(
                    tx,
                    "DELETE FROM timers WHERE endpoint = ?1 AND conversation = ?2 AND kind = ?3",
                    params![endpoint, conversation, kind],
                )
                .ctx("cancelling a timer")?;
            }
            // A replaced timer gets a new id (delete + insert, AUTOINCREMENT), so a
            // `timer_done` for the old one that fired meanwhile cannot remove it.
            for timer in timers {
                exec(
                    tx,
                    "INSERT INTO timers (endpoint, conversation, kind, due_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![endpoint, conversation, timer.kind, db_int(timer.due_ms)],
                )
                .ctx("setting a timer")?;
            }
            if let Some(id) = event_done {
                exec(
                    tx,
                    "UPDATE events SET state = 'done', done_ms = ?2
                     WHERE id = ?1 AND state <> 'done'",
                    params![id, now],
                )
                .ctx("marking the event done")?;
            }
            for notice in notices {
                admin::emit(tx, endpoint, notice)?;
            }
            if let Some(q) = quota {
                business::count_replies(tx, endpoint, &q.month, q.replies, q.told.as_deref())?;
            }
            Ok(ids)
        })
    }

    fn session(&self, endpoint: &str, conversation: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT record FROM sessions WHERE endpoint = ?1 AND conversation = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![endpoint, conversation], |row| row.get(0))
                    .optional()
            })
            .ctx("reading a session")
        })
    }

    fn last_inbound(&self, endpoint: &str, conversation: &str) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT last_inbound_ms FROM windows WHERE endpoint = ?1 AND conversation = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![endpoint, conversation], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map(|ms| ms.map(from_db))
            .ctx("reading a window")
        })
    }

    fn pending_outbox(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?1"
                ))
                .ctx("reading the outbox")?;
            let rows = stmt
                .query_map([db_limit(limit)], outbox_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading the outbox")?;
            Ok(rows)
        })
    }

    fn outbox_part_sent(
        &self,
        outbox_id: i64,
        message_id: Option<String>,
        last: bool,
        notice: Option<Notice>,
    ) -> StoreFuture<'_, OutboxState> {
        self.submit(move |tx| {
            let now = now_ms();
            // Counting the part also reads the row (the update leaves both columns as
            // they were); no row, no update.
            let (endpoint, state): (String, String) = query_one(tx,
                    "UPDATE outbox SET parts_sent = parts_sent + 1, updated_ms = ?2 WHERE id = ?1
                     RETURNING endpoint, state",
                    params![outbox_id, db_int(now)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .ctx("counting a sent part")?
                .ok_or_else(|| StoreError(format!("outbox row {outbox_id} not found")))?;
            let state = OutboxState::parse(&state)
                .ok_or_else(|| StoreError(format!("unknown outbox state {state:?}")))?;
            if let Some(message_id) = &message_id {
                exec(tx,
                    "INSERT INTO sent_messages (endpoint, message_id, outbox_id)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (endpoint, message_id) DO UPDATE SET outbox_id = excluded.outbox_id",
                    params![endpoint, message_id, outbox_id],
                )
                .ctx("recording a sent message id")?;
            }
            if !last || state == OutboxState::Dead {
                return Ok(state);
            }
            // Statuses that beat this response to the store were kept by message id.
            let furthest: Option<i64> = query_one(tx,
                    "SELECT MAX(s.rank) FROM sent_messages m
                     JOIN statuses s ON s.endpoint = m.endpoint AND s.message_id = m.message_id
                     WHERE m.outbox_id = ?1",
                    [outbox_id],
                    |row| row.get(0),
                )
                .ctx("reading earlier statuses")?;
            let new = state
                .max(OutboxState::Sent)
                .max(furthest.map_or(OutboxState::Sent, state_of_rank));
            if new != state {
                set_outbox_state(tx, outbox_id, new, now)?;
            }
            if let Some(notice) = &notice {
                admin::emit(tx, &endpoint, notice)?;
            }
            Ok(new)
        })
    }

    fn outbox_retry(
        &self,
        outbox_id: i64,
        next_attempt_ms: u64,
        error: String,
    ) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(
                tx,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,
                     last_error = ?3, updated_ms = ?4
                 WHERE id = ?1",
                params![outbox_id, db_int(next_attempt_ms), error, db_int(now_ms())],
            )
            .ctx("recording a failed attempt")?;
            Ok(())
        })
    }

    fn outbox_replace(
        &self,
        outbox_id: i64,
        output: String,
        free_form: bool,
    ) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(
                tx,
                "UPDATE outbox SET output = ?2, free_form = ?3, parts_sent = 0,
                     next_attempt_ms = 0, updated_ms = ?4
                 WHERE id = ?1",
                params![outbox_id, output, free_form, db_int(now_ms())],
            )
            .ctx("replacing an outbox output")?;
            Ok(())
        })
    }

    fn outbox_dead(&self, dead: DeadSend) -> StoreFuture<'_, Option<EventRow>> {
        self.submit(move |tx| {
            let now = now_ms();
            let endpoint: String = query_one(
                tx,
                "UPDATE outbox SET state = 'dead', last_error = ?2, updated_ms = ?3 WHERE id = ?1
                 RETURNING endpoint",
                params![dead.outbox_id, dead.detail, db_int(now)],
                |row| row.get(0),
            )
            .optional()
            .ctx("marking an outbox row dead")?
            .ok_or_else(|| StoreError(format!("outbox row {} not found", dead.outbox_id)))?;
            insert_dead_letter(
                tx,
                &endpoint,
                "outbox",
                dead.outbox_id,
                &dead.reason,
                &dead.detail,
                now,
            )?;
            if let Some(notice) = &dead.notice {
                admin::emit(tx, &endpoint, notice)?;
            }
            match &dead.event {
                Some(event) => insert_event(tx, &endpoint, event, now),
                None => Ok(None),
            }
        })
    }

    fn apply_status(
        &self,
        endpoint: &str,
        message_id: &str,
        status: &str,
        at_ms: u64,
        errors: String,
    ) -> StoreFuture<'_, StatusApplied> {
        let endpoint = endpoint.to_owned();
        let message_id = message_id.to_owned();
        let status = status.to_owned();
        self.submit(move |tx| {
            // The message id's row and that row's state, in one lookup.
            let found: Option<(i64, Option<String>)> = query_one(
                tx,
                "SELECT m.outbox_id, o.state FROM sent_messages m
                 LEFT JOIN outbox o ON o.id = m.outbox_id
                 WHERE m.endpoint = ?1 AND m.message_id = ?2",
                params![endpoint, message_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .ctx("looking up a message id")?;
            let outbox_id = found.as_ref().map(|(id, _)| *id);
            let current = found
                .and_then(|(_, state)| state)
                .map(|s| {
                    OutboxState::parse(&s)
                        .ok_or_else(|| StoreError(format!("unknown outbox state {s:?}")))
                })
                .transpose()?;
            // A status this store does not rank (a future Meta addition) changes nothing.
            let Some((target, rank)) = status_rank(&status) else {
                tracing::debug!(status, "ignoring an unknown delivery status");
                return Ok(StatusApplied {
                    outbox_id,
                    state: current,
                    advanced: false,
                });
            };
            // Keep the furthest status per message id, whether or not its row is known.
            let message_advanced = exec(
                tx,
                "INSERT INTO statuses (endpoint, message_id, status, rank, at_ms, errors)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (endpoint, message_id) DO UPDATE
                     SET status = excluded.status, rank = excluded.rank,
                         at_ms = excluded.at_ms, errors = excluded.errors
                     WHERE excluded.rank > statuses.rank",
                params![endpoint, message_id, status, rank, db_int(at_ms), errors],
            )
            .ctx("recording a status")?
                > 0;
            match (outbox_id, current) {
                (Some(id), Some(state)) if takes_statuses(state) => {
                    if target > state {
                        set_outbox_state(tx, id, target, now_ms())?;
                        Ok(StatusApplied {
                            outbox_id,
                            state: Some(target),
                            advanced: true,
                        })
                    } else {
                        Ok(StatusApplied {
                            outbox_id,
                            state: Some(state),
                            advanced: false,
                        })
                    }
                }
                // No row yet, or one still pending (its later parts are not out) or dead:
                // the status is kept for `outbox_part_sent` to reconcile.
                _ => Ok(StatusApplied {
                    outbox_id,
                    state: current,
                    advanced: message_advanced,
                }),
            }
        })
    }

    fn outbox_row(&self, outbox_id: i64) -> StoreFuture<'_, Option<OutboxRow>> {
        self.submit(move |tx| {
            query_one(
                tx,
                concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE id = ?1"),
                [outbox_id],
                outbox_row,
            )
            .optional()
            .ctx("reading an outbox row")
        })
    }

    fn due_timers(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<TimerRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, conversation, kind, due_ms FROM timers
                     WHERE due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
                )
                .ctx("reading timers")?;
            let rows = stmt
                .query_map(params![db_int(now_ms), db_limit(limit)], |row| {
                    Ok(TimerRow {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        conversation: row.get(2)?,
                        kind: row.get(3)?,
                        due_ms: from_db(row.get(4)?),
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading timers")?;
            Ok(rows)
        })
    }

    fn timer_done(&self, id: i64) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(tx, "DELETE FROM timers WHERE id = ?1", [id]).ctx("removing a timer")?;
            Ok(())
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, source, source_id, reason, detail, created_ms,
                         replayed_ms
                     FROM dead_letters ORDER BY id DESC LIMIT ?1",
                )
                .ctx("reading dead letters")?;
            let rows = stmt
                .query_map([db_limit(limit)], |row| {
                    Ok(DeadLetter {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        source: row.get(2)?,
                        source_id: row.get(3)?,
                        reason: row.get(4)?,
                        detail: row.get(5)?,
                        created_ms: from_db(row.get(6)?),
                        replayed_ms: row.get::<_, Option<i64>>(7)?.map(from_db),
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading dead letters")?;
            Ok(rows)
        })
    }

    fn replay_inbox(&self, dead_letter_id: Option<i64>, now_ms: u64) -> StoreFuture<'_, u64> {
        self.submit(move |tx| {
            let targets: Vec<(i64, i64)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, source_id FROM dead_letters
                         WHERE source = 'inbox' AND replayed_ms IS NULL
                           AND (?1 IS NULL OR id = ?1)
                         ORDER BY id",
                    )
                    .ctx("reading dead letters")?;
                stmt.query_map([dead_letter_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .ctx("reading dead letters")?
            };
            let mut replayed = 0;
            for (letter, inbox_id) in targets {
                exec(
                    tx,
                    "UPDATE inbox SET state = 'pending', done_ms = NULL WHERE id = ?1",
                    [inbox_id],
                )
                .ctx("putting an inbox row back")?;
                exec(
                    tx,
                    "UPDATE dead_letters SET replayed_ms = ?2 WHERE id = ?1",
                    params![letter, db_int(now_ms)],
                )
                .ctx("marking a dead letter replayed")?;
                replayed += 1;
            }
            Ok(replayed)
        })
    }

    fn depths(&self) -> StoreFuture<'_, QueueDepths> {
        self.submit(|tx| {
            query_one(
                tx,
                "SELECT (SELECT COUNT(*) FROM inbox WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM events WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM dead_letters WHERE replayed_ms IS NULL)",
                [],
                |row| {
                    Ok(QueueDepths {
                        inbox: from_db(row.get(0)?),
                        events: from_db(row.get(1)?),
                        outbox: from_db(row.get(2)?),
                        dead_letters: from_db(row.get(3)?),
                    })
                },
            )
            .ctx("counting rows")
        })
    }

    fn prune(&self, before_ms: u64) -> StoreFuture<'_, u64> {
        self.submit(move |tx| {
            let before = db_int(before_ms);
            business::keep_campaign_states(tx, before)?;
            // Finished outbox rows go too (dead ones stay with their dead letters), with
            // their message ids and those ids' statuses; then statuses whose message never
            // got a row. The outbox predicate is the same in each statement and nothing
            // else writes in between: they all see the same rows.
            let statements = [
                "DELETE FROM events WHERE state = 'done' AND created_ms < ?1",
                "DELETE FROM inbox WHERE state = 'done' AND received_ms < ?1",
                "DELETE FROM statuses WHERE (endpoint, message_id) IN (
                     SELECT m.endpoint, m.message_id FROM sent_messages m
                     JOIN outbox o ON o.id = m.outbox_id
                     WHERE o.state IN ('sent', 'delivered', 'read', 'failed')
                       AND o.updated_ms < ?1)",
                "DELETE FROM sent_messages WHERE outbox_id IN (
                     SELECT id FROM outbox
                     WHERE state IN ('sent', 'delivered', 'read', 'failed') AND updated_ms < ?1)",
                "DELETE FROM outbox
                 WHERE state IN ('sent', 'delivered', 'read', 'failed') AND updated_ms < ?1",
                "DELETE FROM statuses WHERE at_ms < ?1 AND NOT EXISTS (
                     SELECT 1 FROM sent_messages m
                     WHERE m.endpoint = statuses.endpoint AND m.message_id = statuses.message_id)",
                // Finished event webhook deliveries (their payloads hold message content);
                // orphans of a deleted subscription whatever their state.
                "DELETE FROM hook_deliveries WHERE (state <> 'pending' AND done_ms < ?1)
                     OR (created_ms < ?1 AND subscription NOT IN (SELECT id FROM hook_subscriptions))",
            ];
            let mut deleted = 0u64;
            for sql in statements {
                let n = exec(tx, sql, [before]).ctx("pruning")?;
                deleted = deleted.saturating_add(u64::try_from(n).unwrap_or(0));
            }
            Ok(deleted)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.submit(|_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewOutbox;
    use crate::store::NewTimer;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "plugboard-store-{name}-{}-{}-{}",
                std::process::id(),
                now_ms(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(name: &str) -> (TempDir, SqliteStore) {
        let dir = TempDir::new(name);
        let store = SqliteStore::open_in(&dir.0.join("nested")).unwrap();
        (dir, store)
    }

    fn event(key: &str, conversation: &str) -> NewEvent {
        NewEvent {
            endpoint: None,
            dedupe_key: key.into(),
            conversation: conversation.into(),
            kind: EventKind::Message,
            body: format!("{{\"key\":\"{key}\"}}"),
        }
    }

    fn new_outbox(output: &str, not_before_ms: u64) -> NewOutbox {
        NewOutbox {
            recipient: "{\"id\":\"u1\"}".into(),
            business: "{\"id\":\"b1\"}".into(),
            output: output.into(),
            free_form: true,
            not_before_ms,
        }
    }

    /// One pending outbox row for conversation `u1` of endpoint `ep`.
    async fn one_outbox(store: &SqliteStore) -> i64 {
        let ids = store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                outbox: vec![new_outbox("{\"text\":\"hi\"}", 0)],
                ..StepCommit::default()
            })
            .await
            .unwrap();
        ids[0]
    }

    #[tokio::test]
    async fn append_and_pending_inbox() {
        let (_dir, store) = open("inbox");
        let a = store.append_inbox("ep", b"one".to_vec(), 10).await.unwrap();
        let b = store.append_inbox("ep", b"two".to_vec(), 20).await.unwrap();
        assert!(b > a);
        let rows = store.pending_inbox(0, 10).await.unwrap();
        assert_eq!(
            rows,
            vec![
                InboxRow {
                    id: a,
                    endpoint: "ep".into(),
                    received_ms: 10,
                    body: b"one".to_vec()
                },
                InboxRow {
                    id: b,
                    endpoint: "ep".into(),
                    received_ms: 20,
                    body: b"two".to_vec()
                },
            ]
        );
        assert_eq!(store.pending_inbox(a, 10).await.unwrap().len(), 1);
        assert_eq!(store.pending_inbox(0, 1).await.unwrap().len(), 1);
        assert_eq!(store.depths().await.unwrap().inbox, 2);
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn demux_dedupes_across_batches() {
        let (_dir, store) = open("dedupe");
        let a = store.append_inbox("ep", b"a".to_vec(), 1).await.unwrap();
        let b = store.append_inbox("ep", b"b".to_vec(), 2).await.unwrap();
        let first = store
            .record_demux(vec![Demuxed {
                inbox_id: a,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Events(vec![event("m1", "u1"), event("m2", "u1")]),
            }])
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].len(), 2);
        assert_eq!(first[0][0].kind, EventKind::Message);
        assert_eq!(first[0][0].conversation, "u1");
        // Meta redelivers m1 in another body: only m3 is new.
        let second = store
            .record_demux(vec![Demuxed {
                inbox_id: b,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Events(vec![event("m1", "u1"), event("m3", "u2")]),
            }])
            .await
            .unwrap();
        assert_eq!(second[0].len(), 1);
        assert_eq!(second[0][0].body, "{\"key\":\"m3\"}");
        // The same key on another endpoint is another event.
        let other = store
            .insert_events("other", vec![event("m1", "u1")])
            .await
            .unwrap();
        assert_eq!(other.len(), 1);

        assert!(store.pending_inbox(0, 10).await.unwrap().is_empty());
        let pending = store.pending_events(0, 10).await.unwrap();
        assert_eq!(pending.len(), 4);
        assert_eq!(pending[0], first[0][0]);
        store
            .events_done(vec![pending[0].id, pending[1].id])
            .await
            .unwrap();
        let depths = store.depths().await.unwrap();
        assert_eq!(depths.events, 2);
        assert_eq!(depths.inbox, 0);
    }

    #[tokio::test]
    async fn dead_demux_then_replay() {
        let (_dir, store) = open("replay");
        let a = store.append_inbox("ep", b"junk".to_vec(), 1).await.unwrap();
        let b = store
            .append_inbox("ep", b"junk2".to_vec(), 2)
            .await
            .unwrap();
        let out = store
            .record_demux(vec![
                Demuxed {
                    inbox_id: a,
                    endpoint: "ep".into(),
                    outcome: DemuxOutcome::Dead {
                        reason: "decode".into(),
                        detail: "bad json".into(),
                    },
                },
                Demuxed {
                    inbox_id: b,
                    endpoint: "ep".into(),
                    outcome: DemuxOutcome::Dead {
                        reason: "decode".into(),
                        detail: "bad json 2".into(),
                    },
                },
            ])
            .await
            .unwrap();
        assert_eq!(out, vec![Vec::new(), Vec::new()]);
        assert!(store.pending_inbox(0, 10).await.unwrap().is_empty());
        let letters = store.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 2);
        // Newest first.
        assert_eq!(letters[0].source_id, b);
        assert_eq!(letters[1].source, "inbox");
        assert_eq!(letters[1].reason, "decode");
        assert_eq!(letters[1].detail, "bad json");
        assert_eq!(letters[1].replayed_ms, None);
        assert_eq!(store.depths().await.unwrap().dead_letters, 2);

        assert_eq!(
            store.replay_inbox(Some(letters[1].id), 99).await.unwrap(),
            1
        );
        // Replaying twice does nothing.
        assert_eq!(
            store.replay_inbox(Some(letters[1].id), 99).await.unwrap(),
            0
        );
        let pending = store.pending_inbox(0, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, a);
        assert_eq!(pending[0].body, b"junk");
        assert_eq!(store.replay_inbox(None, 100).await.unwrap(), 1);
        assert_eq!(store.pending_inbox(0, 10).await.unwrap().len(), 2);
        let letters = store.dead_letters(10).await.unwrap();
        assert_eq!(letters[0].replayed_ms, Some(100));
        assert_eq!(letters[1].replayed_ms, Some(99));
        assert_eq!(store.depths().await.unwrap().dead_letters, 0);
    }

    #[tokio::test]
    async fn commit_step_writes_everything() {
        let (_dir, store) = open("step");
        let events = store
            .insert_events("ep", vec![event("m1", "u1")])
            .await
            .unwrap();
        let ids = store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                session: Some("{\"v\":1}".into()),
                outbox: vec![new_outbox("{\"n\":1}", 0), new_outbox("{\"n\":2}", 500)],
                inbound_ms: Some(1_000),
                timers: vec![
                    NewTimer {
                        kind: "expire".into(),
                        due_ms: 5_000,
                    },
                    NewTimer {
                        kind: "nudge".into(),
                        due_ms: 3_000,
                    },
                ],
                cancel_timers: vec![],
                event_done: Some(events[0].id),
                notices: Vec::new(),
                quota: None,
            })
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids[1] > ids[0]);
        assert_eq!(
            store.session("ep", "u1").unwrap().as_deref(),
            Some("{\"v\":1}")
        );
        assert_eq!(store.session("ep", "u2").unwrap(), None);
        assert_eq!(store.last_inbound("ep", "u1").unwrap(), Some(1_000));
        assert!(store.pending_events(0, 10).await.unwrap().is_empty());

        let outbox = store.pending_outbox(10).await.unwrap();
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox[0].id, ids[0]);
        assert_eq!(outbox[0].output, "{\"n\":1}");
        assert_eq!(outbox[0].state, OutboxState::Pending);
        assert_eq!(outbox[0].conversation, "u1");
        assert!(outbox[0].free_form);
        assert_eq!(outbox[1].next_attempt_ms, 500);
        assert_eq!(
            store.outbox_row(ids[1]).await.unwrap(),
            Some(outbox[1].clone())
        );
        assert_eq!(store.outbox_row(9_999).await.unwrap(), None);

        let due = store.due_timers(10_000, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
            ["nudge", "expire"]
        );
        let old_expire = due[1].id;

        // An older message arriving late leaves the window; `None` session keeps the
        // record; timers are replaced and cancelled.
        store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                inbound_ms: Some(400),
                timers: vec![NewTimer {
                    kind: "expire".into(),
                    due_ms: 8_000,
                }],
                cancel_timers: vec!["nudge".into()],
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert_eq!(store.last_inbound("ep", "u1").unwrap(), Some(1_000));
        assert_eq!(
            store.session("ep", "u1").unwrap().as_deref(),
            Some("{\"v\":1}")
        );
        assert!(store.due_timers(7_999, 10).await.unwrap().is_empty());
        let due = store.due_timers(8_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].kind.as_str(), due[0].due_ms), ("expire", 8_000));
        // The replaced timer has a new id: the old one firing late cannot remove it.
        assert_ne!(due[0].id, old_expire);
        store.timer_done(old_expire).await.unwrap();
        assert_eq!(store.due_timers(8_000, 10).await.unwrap().len(), 1);
        store.timer_done(due[0].id).await.unwrap();
        assert!(store.due_timers(u64::MAX, 10).await.unwrap().is_empty());

        // A newer message moves the window forward.
        store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                inbound_ms: Some(2_000),
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert_eq!(store.last_inbound("ep", "u1").unwrap(), Some(2_000));
        assert_eq!(store.last_inbound("ep", "nobody").unwrap(), None);
    }

    #[tokio::test]
    async fn status_before_send_response() {
        let (_dir, store) = open("early-status");
        let id = one_outbox(&store).await;
        // The status webhook beats the send's own response.
        let applied = store
            .apply_status("ep", "wamid.X", "delivered", 10, String::new())
            .await
            .unwrap();
        assert_eq!(
            applied,
            StatusApplied {
                outbox_id: None,
                state: None,
                advanced: true
            }
        );
        let state = store
            .outbox_part_sent(id, Some("wamid.X".into()), true, None)
            .await
            .unwrap();
        assert_eq!(state, OutboxState::Delivered);
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!(row.state, OutboxState::Delivered);
        assert_eq!(row.parts_sent, 1);
        assert!(store.pending_outbox(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn multi_part_rows_and_pending_rows() {
        let (_dir, store) = open("parts");
        let id = one_outbox(&store).await;
        let state = store
            .outbox_part_sent(id, Some("wamid.A".into()), false, None)
            .await
            .unwrap();
        assert_eq!(state, OutboxState::Pending);
        // A status for the first part does not move a row whose next part is not out.
        let applied = store
            .apply_status("ep", "wamid.A", "read", 10, String::new())
            .await
            .unwrap();
        assert_eq!(applied.outbox_id, Some(id));
        assert_eq!(applied.state, Some(OutboxState::Pending));
        assert_eq!(
            store.outbox_row(id).await.unwrap().unwrap().state,
            OutboxState::Pending
        );
        // The last part: the row takes the furthest status of its parts.
        let state = store
            .outbox_part_sent(id, Some("wamid.B".into()), true, None)
            .await
            .unwrap();
        assert_eq!(state, OutboxState::Read);
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!((row.state, row.parts_sent), (OutboxState::Read, 2));
        // No message id (a read receipt): plain Sent.
        let other = one_outbox(&store).await;
        assert_eq!(
            store
                .outbox_part_sent(other, None, true, None)
                .await
                .unwrap(),
            OutboxState::Sent
        );
        assert!(
            store
                .outbox_part_sent(9_999, None, true, None)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn statuses_out_of_order() {
        let (_dir, store) = open("order");
        let id = one_outbox(&store).await;
        let state = store
            .outbox_part_sent(id, Some("wamid.Y".into()), true, None)
            .await
            .unwrap();
        assert_eq!(state, OutboxState::Sent);
        let sent = store
            .apply_status("ep", "wamid.Y", "sent", 1, String::new())
            .await
            .unwrap();
        assert_eq!(
            sent,
            StatusApplied {
                outbox_id: Some(id),
                state: Some(OutboxState::Sent),
                advanced: false
            }
        );
        let read = store
            .apply_status("ep", "wamid.Y", "played", 3, String::new())
            .await
            .unwrap();
        assert_eq!(
            read,
            StatusApplied {
                outbox_id: Some(id),
                state: Some(OutboxState::Read),
                advanced: true
            }
        );
        let late = store
            .apply_status("ep", "wamid.Y", "delivered", 2, String::new())
            .await
            .unwrap();
        assert_eq!(late.state, Some(OutboxState::Read));
        assert!(!late.advanced);
        let failed = store
            .apply_status("ep", "wamid.Y", "failed", 4, "[{\"code\":131047}]".into())
            .await
            .unwrap();
        assert_eq!(failed.state, Some(OutboxState::Failed));
        assert!(failed.advanced);
        let unknown = store
            .apply_status("ep", "wamid.Y", "deleted", 5, String::new())
            .await
            .unwrap();
        assert_eq!(unknown.state, Some(OutboxState::Failed));
        assert!(!unknown.advanced);
        // Another endpoint's message id is another message.
        let elsewhere = store
            .apply_status("ep2", "wamid.Y", "read", 5, String::new())
            .await
            .unwrap();
        assert_eq!(elsewhere.outbox_id, None);
    }

    #[tokio::test]
    async fn retry_replace_dead() {
        let (_dir, store) = open("retry");
        let id = one_outbox(&store).await;
        store
            .outbox_part_sent(id, Some("wamid.1".into()), false, None)
            .await
            .unwrap();
        store
            .outbox_retry(id, 5_000, "503 from graph".into())
            .await
            .unwrap();
        store
            .outbox_retry(id, 9_000, "timeout".into())
            .await
            .unwrap();
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!(row.attempts, 2);
        assert_eq!(row.next_attempt_ms, 9_000);
        assert_eq!(row.last_error.as_deref(), Some("timeout"));
        assert_eq!(row.parts_sent, 1);
        assert_eq!(row.state, OutboxState::Pending);

        store
            .outbox_replace(id, "{\"template\":\"hello\"}".into(), false)
            .await
            .unwrap();
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!(row.output, "{\"template\":\"hello\"}");
        assert!(!row.free_form);
        assert_eq!(
            (row.parts_sent, row.next_attempt_ms, row.attempts),
            (0, 0, 2)
        );

        let dead = DeadSend {
            outbox_id: id,
            reason: "retries_exhausted".into(),
            detail: "gave up after 2".into(),
            event: Some(NewEvent {
                endpoint: None,
                dedupe_key: format!("send-failed:{id}"),
                conversation: "u1".into(),
                kind: EventKind::SendFailed,
                body: "{}".into(),
            }),
            notice: None,
        };
        let event = store.outbox_dead(dead.clone()).await.unwrap().unwrap();
        assert_eq!(event.kind, EventKind::SendFailed);
        assert_eq!(event.endpoint, "ep");
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!(row.state, OutboxState::Dead);
        assert!(store.pending_outbox(10).await.unwrap().is_empty());
        let letters = store.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (letters[0].source.as_str(), letters[0].source_id),
            ("outbox", id)
        );
        assert_eq!(letters[0].reason, "retries_exhausted");
        // The same event again is a duplicate; an outbox dead letter is not replayable
        // as inbox.
        assert_eq!(store.outbox_dead(dead).await.unwrap(), None);
        assert_eq!(store.replay_inbox(None, 1).await.unwrap(), 0);
        // A status never revives a dead row.
        let applied = store
            .apply_status("ep", "wamid.1", "read", 1, String::new())
            .await
            .unwrap();
        assert_eq!(applied.state, Some(OutboxState::Dead));
        assert_eq!(store.pending_events(0, 10).await.unwrap(), vec![event]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_under_concurrency() {
        let dir = TempDir::new("group");
        let store = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.0.join("plugboard.db"),
                batch_max: 64,
                ..SqliteOptions::default()
            })
            .unwrap(),
        );
        let tasks: Vec<_> = (0..500u64)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .append_inbox("ep", i.to_le_bytes().to_vec(), i)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 500);
        assert_eq!(store.depths().await.unwrap().inbox, 500);
        assert_eq!(store.pending_inbox(0, 1_000).await.unwrap().len(), 500);
    }

    #[tokio::test]
    async fn reopen_sees_the_data() {
        let dir = TempDir::new("reopen");
        let options = SqliteOptions {
            path: dir.0.join("plugboard.db"),
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        };
        let (inbox, outbox) = {
            let store = SqliteStore::open(options.clone()).unwrap();
            let inbox = store.append_inbox("ep", b"x".to_vec(), 1).await.unwrap();
            let outbox = one_outbox(&store).await;
            store
                .commit_step(StepCommit {
                    endpoint: "ep".into(),
                    conversation: "u1".into(),
                    session: Some("{\"s\":1}".into()),
                    ..StepCommit::default()
                })
                .await
                .unwrap();
            (inbox, outbox)
        };
        // Migrations run again on an up-to-date file: a no-op.
        let store = SqliteStore::open(options).unwrap();
        assert_eq!(store.pending_inbox(0, 10).await.unwrap()[0].id, inbox);
        assert_eq!(store.pending_outbox(10).await.unwrap()[0].id, outbox);
        assert_eq!(
            store.session("ep", "u1").unwrap().as_deref(),
            Some("{\"s\":1}")
        );
        // New ids continue after the old ones.
        assert!(store.append_inbox("ep", b"y".to_vec(), 2).await.unwrap() > inbox);
    }

    /// Holds the writer until the returned sender is dropped or sent to, so the jobs
    /// submitted meanwhile are drained as one batch: the holding job is already running
    /// (its own batch drained) when this returns.
    fn hold_writer(store: &SqliteStore) -> (mpsc::Sender<()>, StoreFuture<'_, ()>) {
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, released) = mpsc::channel::<()>();
        let hold = store.submit(move |_| {
            let _ = started_tx.send(());
            let _ = released.recv();
            Ok(())
        });
        started.recv().unwrap();
        (release, hold)
    }

    /// A job inserting an inbox row with `body` that then fails when `fail`; `runs` counts
    /// how many times it ran.
    fn counted_insert<'a>(
        store: &'a SqliteStore,
        body: &'static str,
        fail: bool,
        runs: &Arc<AtomicUsize>,
    ) -> StoreFuture<'a, i64> {
        let runs = Arc::clone(runs);
        store.submit(move |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            tx.execute(
                "INSERT INTO inbox (endpoint, received_ms, body) VALUES ('ep', 1, ?1)",
                [body.as_bytes()],
            )
            .ctx("test insert")?;
            if fail {
                return Err(StoreError("boom".into()));
            }
            Ok(tx.last_insert_rowid())
        })
    }

    async fn inbox_bodies(store: &SqliteStore) -> Vec<Vec<u8>> {
        store
            .pending_inbox(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.body)
            .collect()
    }

    #[tokio::test]
    async fn failing_job_keeps_the_rest_of_its_batch() {
        let (dir, store) = open("savepoint");
        let (release, hold) = hold_writer(&store);
        let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let good1 = counted_insert(&store, "good1", false, &runs[0]);
        let bad = counted_insert(&store, "bad", true, &runs[1]);
        let broken_sql = store.submit(|tx| {
            tx.execute("INSERT INTO nowhere VALUES (1)", [])
                .ctx("test insert")
        });
        let good2 = counted_insert(&store, "good2", false, &runs[2]);
        // Proves the group commit: inside the batch both good rows are there, yet another
        // connection sees nothing committed.
        let path = dir.0.join("nested").join("plugboard.db");
        let probe = store.submit(move |tx| {
            let count = |conn: &Connection| {
                conn.query_row("SELECT COUNT(*) FROM inbox", [], |row| row.get::<_, i64>(0))
                    .ctx("test count")
            };
            let other = Connection::open(&path).ctx("test open")?;
            Ok((count(tx)?, count(&other)?))
        });
        release.send(()).unwrap();
        hold.await.unwrap();
        assert!(good1.await.is_ok());
        assert_eq!(bad.await.unwrap_err().0, "boom");
        assert!(broken_sql.await.unwrap_err().0.contains("nowhere"));
        assert!(good2.await.is_ok());
        assert_eq!(probe.await.unwrap(), (2, 0));
        // The fast attempt stopped at `bad` and was rolled back; the careful re-run ran
        // every job once more, each in its own savepoint.
        let runs = runs.map(|r| r.load(Ordering::SeqCst));
        assert_eq!(runs, [2, 2, 1]);
        // Rolled back, then re-run: one row each, ids as if run once.
        assert_eq!(
            inbox_bodies(&store).await,
            [b"good1".to_vec(), b"good2".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_batch_without_failures_runs_each_job_once() {
        let (_dir, store) = open("fast-path");
        let (release, hold) = hold_writer(&store);
        let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let jobs: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .zip(&runs)
            .map(|(body, runs)| counted_insert(&store, body, false, runs))
            .collect();
        release.send(()).unwrap();
        hold.await.unwrap();
        let mut ids = Vec::new();
        for job in jobs {
            ids.push(job.await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(runs.map(|r| r.load(Ordering::SeqCst)), [1, 1, 1]);
        assert_eq!(
            inbox_bodies(&store).await,
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[tokio::test]
    async fn panicking_job_is_contained() {
        let (_dir, store) = open("panic");
        let panicked = store.submit::<(), _>(|_| panic!("job panic (expected by the test)"));
        let after = store.append_inbox("ep", b"x".to_vec(), 1);
        assert!(panicked.await.is_err());
        assert!(after.await.is_ok());
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn panicking_job_in_a_batch_runs_once_and_fails_alone() {
        let (_dir, store) = open("panic-batch");
        let (release, hold) = hold_writer(&store);
        let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let before = counted_insert(&store, "before", false, &runs[0]);
        let panics = Arc::clone(&runs[1]);
        let panicked = store.submit::<(), _>(move |tx| {
            panics.fetch_add(1, Ordering::SeqCst);
            tx.execute(
                "INSERT INTO inbox (endpoint, received_ms, body) VALUES ('ep', 1, x'00')",
                [],
            )
            .ctx("test insert")?;
            panic!("job panic (expected by the test)")
        });
        let after = counted_insert(&store, "after", false, &runs[2]);
        release.send(()).unwrap();
        hold.await.unwrap();
        assert!(before.await.is_ok());
        assert_eq!(panicked.await.unwrap_err().0, "store job panicked");
        assert!(after.await.is_ok());
        // The panicking job is not run again by the careful re-run.
        assert_eq!(runs.map(|r| r.load(Ordering::SeqCst)), [2, 1, 1]);
        assert_eq!(
            inbox_bodies(&store).await,
            [b"before".to_vec(), b"after".to_vec()]
        );
    }

    #[tokio::test]
    async fn deleting_a_seeded_endpoint_leaves_a_tombstone_and_closes_its_outbox() {
        use crate::store::admin::{AdminStore, EndpointState, Seeded};
        let (_dir, store) = open("tombstone");
        let seeded = store.seed_endpoint("ep", "{}".into(), "h1".into()).await;
        assert_eq!(seeded.unwrap(), Seeded::Inserted);
        let id = one_outbox(&store).await;
        store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                session: Some("{}".into()),
                inbound_ms: Some(1),
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert!(store.delete_endpoint("ep").await.unwrap());
        // Its unsent reply is a dead letter, its sessions and windows are gone.
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!(row.state, OutboxState::Dead);
        let letters = store.dead_letters(10).await.unwrap();
        assert!(
            letters
                .iter()
                .any(|d| d.reason == "endpoint_deleted" && d.source_id == id),
            "{letters:?}"
        );
        assert_eq!(store.session("ep", "u1").unwrap(), None);
        assert_eq!(store.last_inbound("ep", "u1").unwrap(), None);
        assert!(store.endpoint_row("ep").unwrap().is_none());
        assert!(store.endpoints().unwrap().is_empty());
        // The unchanged config keeps it deleted; a second delete finds nothing.
        let seeded = store.seed_endpoint("ep", "{}".into(), "h1".into()).await;
        assert_eq!(seeded.unwrap(), Seeded::Kept);
        assert!(store.endpoint_row("ep").unwrap().is_none());
        assert!(!store.delete_endpoint("ep").await.unwrap());
        // Its id can be created again, once.
        assert!(
            store
                .insert_endpoint("ep", "{\"v\":2}".into())
                .await
                .unwrap()
        );
        let row = store.endpoint_row("ep").unwrap().unwrap();
        assert_eq!(
            (row.state, row.spec.as_str()),
            (EndpointState::Active, "{\"v\":2}")
        );
        assert!(!store.insert_endpoint("ep", "{}".into()).await.unwrap());
        // A changed config brings a deleted endpoint back as the file has it.
        assert!(store.delete_endpoint("ep").await.unwrap());
        let seeded = store
            .seed_endpoint("ep", "{\"v\":3}".into(), "h2".into())
            .await;
        assert_eq!(seeded.unwrap(), Seeded::Updated);
        assert_eq!(store.endpoint_row("ep").unwrap().unwrap().spec, "{\"v\":3}");
    }

    #[tokio::test]
    async fn prune_removes_old_finished_rows() {
        let (_dir, store) = open("prune");
        let old = store
            .append_inbox("ep", b"old".to_vec(), 100)
            .await
            .unwrap();
        let new = store
            .append_inbox("ep", b"new".to_vec(), now_ms())
            .await
            .unwrap();
        let events = store
            .record_demux(vec![
                Demuxed {
                    inbox_id: old,
                    endpoint: "ep".into(),
                    outcome: DemuxOutcome::Events(vec![event("m1", "u1")]),
                },
                Demuxed {
                    inbox_id: new,
                    endpoint: "ep".into(),
                    outcome: DemuxOutcome::Dead {
                        reason: "decode".into(),
                        detail: String::new(),
                    },
                },
            ])
            .await
            .unwrap();
        let id = one_outbox(&store).await;
        store
            .outbox_part_sent(id, Some("wamid.P".into()), true, None)
            .await
            .unwrap();
        store
            .apply_status("ep", "wamid.P", "read", 1, String::new())
            .await
            .unwrap();
        // Nothing is done yet but the inbox row: events are still pending.
        assert_eq!(store.prune(200).await.unwrap(), 1);
        store.events_done(vec![events[0][0].id]).await.unwrap();
        let pending = one_outbox(&store).await;
        // Everything done before the future goes; pending and dead rows stay.
        let deleted = store.prune(u64::MAX).await.unwrap();
        assert_eq!(deleted, 4); // event, outbox row, its message id, its status
        assert_eq!(store.outbox_row(id).await.unwrap(), None);
        assert!(store.outbox_row(pending).await.unwrap().is_some());
        assert_eq!(store.replay_inbox(None, 1).await.unwrap(), 1);
        // The message id is forgotten: a late status finds no row.
        let late = store
            .apply_status("ep", "wamid.P", "read", 2, String::new())
            .await
            .unwrap();
        assert_eq!(late.outbox_id, None);
        // Ids are never reused after a prune.
        assert!(store.append_inbox("ep", b"z".to_vec(), 1).await.unwrap() > new);
    }

    /// CPU time (ns) the writer thread has used so far, from `/proc` (Linux only).
    fn writer_cpu_ns() -> Option<u64> {
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let task = task.ok()?.path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim() == "plugboard-store" {
                let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
                return stat.split_whitespace().next()?.parse().ok();
            }
        }
        None
    }

    /// Micro-benchmark: `cargo test -p plugboard --release --lib store::sqlite::tests::bench_append_inbox -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "benchmark"]
    async fn bench_append_inbox() {
        const TASKS: u64 = 32;
        const PER_TASK: u64 = 625;
        let dir = TempDir::new("bench");
        let store = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: dir.0.join("plugboard.db"),
                synchronous: Synchronous::Normal,
                ..SqliteOptions::default()
            })
            .unwrap(),
        );
        store.ping().await.unwrap();
        let cpu_before = writer_cpu_ns();
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        let body =
                            format!("{{\"task\":{t},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200));
                        store
                            .append_inbox("ep", body.into_bytes(), i)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let wall = started.elapsed();
        let jobs = TASKS * PER_TASK;
        let cpu = writer_cpu_ns().zip(cpu_before).map(|(a, b)| a - b);
        println!(
            "append_inbox x{jobs} from {TASKS} tasks: wall {:.1} ms ({:.2} µs/job), writer CPU {}",
            wall.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e6 / jobs as f64,
            cpu.map_or("n/a".to_string(), |ns| format!(
                "{:.1} ms ({:.2} µs/job)",
                ns as f64 / 1e6,
                ns as f64 / 1e3 / jobs as f64
            )),
        );
        assert_eq!(store.depths().await.unwrap().inbox, jobs);
    }

    #[test]
    fn empty_path_is_refused() {
        assert!(SqliteStore::open(SqliteOptions::default()).is_err());
    }

    #[test]
    fn store_is_object_safe_and_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SqliteStore>();
        let dir = TempDir::new("dyn");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&dir.0).unwrap());
        assert_eq!(store.session("ep", "u").unwrap(), None);
        assert!(dir.0.join("plugboard.db").exists());
    }

    /// The `synchronous` setting a job of this durability commits under.
    async fn synchronous_seen(store: &SqliteStore, durability: Durability) -> i64 {
        store
            .submit_job(durability, |tx| {
                query_one(tx, "PRAGMA synchronous", [], |row| row.get(0)).ctx("pragma")
            })
            .await
            .unwrap()
    }

    /// Admin changes are fsync'd (`synchronous=FULL`, 2) before their answer even when the
    /// store is configured `normal`; pipeline and webhook writes then stay `NORMAL` (1).
    #[tokio::test]
    async fn admin_writes_commit_with_full_sync_whatever_the_setting() {
        use crate::store::admin::AdminStore;
        let dir = TempDir::new("admin-durable");
        let store = SqliteStore::open(SqliteOptions {
            path: dir.0.join("plugboard.db"),
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        })
        .unwrap();
        assert_eq!(synchronous_seen(&store, Durability::Admin).await, 2);
        assert_eq!(synchronous_seen(&store, Durability::Edge).await, 1);
        assert_eq!(synchronous_seen(&store, Durability::Batched).await, 1);
        // The admin methods take that path: each commit counted as a FULL one.
        let before = store.full_commits();
        assert!(store.insert_endpoint("ep", "{}".into()).await.unwrap());
        assert_eq!(store.full_commits(), before + 1);
        store.append_inbox("ep", b"{}".to_vec(), 1).await.unwrap();
        assert_eq!(
            store.full_commits(),
            before + 1,
            "a webhook write under `normal`"
        );
        // Under `full` the webhook's write is FULL too, the pipeline's not.
        drop(store);
        let store = SqliteStore::open(SqliteOptions::new(dir.0.join("plugboard.db"))).unwrap();
        assert_eq!(synchronous_seen(&store, Durability::Admin).await, 2);
        assert_eq!(synchronous_seen(&store, Durability::Edge).await, 2);
        assert_eq!(synchronous_seen(&store, Durability::Batched).await, 1);
        assert!(wants_full(
            Synchronous::Normal,
            [Durability::Batched, Durability::Admin].into_iter()
        ));
    }

    /// With a key, the secret columns hold sealed values only; the store reads them back
    /// in clear, refuses to open without the key, and a reseal rotates them.
    #[tokio::test]
    async fn secret_columns_are_sealed_with_a_key_and_rotated() {
        use crate::secretbox::{Keyring, SecretKey};
        use crate::store::admin::AdminStore;
        use crate::store::business::{BusinessStore, StoredAccount};
        let dir = TempDir::new("sealed");
        let path = dir.0.join("plugboard.db");
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([2; 32]);
        let options = |keys: Keyring| SqliteOptions {
            path: path.clone(),
            keys,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(options(Keyring::new(Some(old.clone())))).unwrap();
        let spec = r#"{"id":"ep","flow":"/f.json","phone_number_id":"1","verify_token":"vt-secret","access_token":"tok-secret","app_secret":"env:APP_SECRET"}"#;
        assert!(store.insert_endpoint("ep", spec.into()).await.unwrap());
        store
            .add_subscription(
                "ep",
                "https://h.test/".into(),
                "hook-secret-0123456789".into(),
                vec![],
            )
            .await
            .unwrap();
        store
            .save_account(
                StoredAccount {
                    id: "1001".into(),
                    name: Some("n".into()),
                    portfolio: None,
                    graph_api_base: "https://g.test".into(),
                    graph_api_version: "v23.0".into(),
                    token: "system-secret".into(),
                    subscribed: None,
                    refreshed_ms: 1,
                    created_ms: 1,
                },
                vec![],
            )
            .await
            .unwrap();
        // Clear through the store.
        let row = store.endpoint_row("ep").unwrap().unwrap();
        let read: serde_json::Value = serde_json::from_str(&row.spec).unwrap();
        assert_eq!(read["access_token"], "tok-secret");
        assert_eq!(read["verify_token"], "vt-secret");
        assert_eq!(read["app_secret"], "env:APP_SECRET");
        assert_eq!(
            store.subscriptions("ep").unwrap()[0].secret,
            "hook-secret-0123456789"
        );
        assert_eq!(store.accounts().unwrap()[0].token, "system-secret");
        let due = store.due_deliveries(u64::MAX, 0, 10).await.unwrap();
        assert!(due.is_empty());
        // Sealed in the columns.
        let raw = |sql: &str| -> String {
            store
                .read(|conn| query_one(conn, sql, [], |r| r.get(0)).ctx("raw"))
                .unwrap()
        };
        let raw_spec = raw("SELECT spec FROM endpoints");
        assert!(!raw_spec.contains("tok-secret") && !raw_spec.contains("vt-secret"));
        assert!(
            raw_spec.contains("env:APP_SECRET"),
            "references stay references"
        );
        assert!(raw("SELECT secret FROM hook_subscriptions").starts_with("enc:v1:"));
        assert!(raw("SELECT token FROM wa_accounts").starts_with("enc:v1:"));
        assert_eq!(store.secrets_report().sealed, 0, "counted at open");
        drop(store);

        // No key, a wrong key: refused at open, with the reason.
        let e = SqliteStore::open(options(Keyring::default()))
            .err()
            .unwrap();
        assert!(
            e.0.contains("PLUGBOARD_SECRET_KEY") && e.0.contains(old.id()),
            "{e}"
        );
        let e = SqliteStore::open(options(Keyring::new(Some(new.clone()))))
            .err()
            .unwrap();
        assert!(e.0.contains(old.id()), "{e}");

        // Rotate: everything re-sealed with the new key in one go.
        let store = SqliteStore::open(options(
            Keyring::new(Some(new.clone())).also_opening(Some(old)),
        ))
        .unwrap();
        assert_eq!(store.secrets_report().sealed, 4);
        assert_eq!(store.secrets_report().references, 1);
        let report = store.reseal_secrets().await.unwrap();
        assert_eq!((report.rewritten, report.sealed, report.clear), (4, 4, 0));
        drop(store);
        let store = SqliteStore::open(options(Keyring::new(Some(new.clone())))).unwrap();
        assert_eq!(store.accounts().unwrap()[0].token, "system-secret");
        // Back to clear.
        drop(store);
        let store = SqliteStore::open(options(Keyring::new(None).also_opening(Some(new)))).unwrap();
        let report = store.reseal_secrets().await.unwrap();
        assert_eq!((report.sealed, report.clear), (0, 4));
        drop(store);
        let store = SqliteStore::open(options(Keyring::default())).unwrap();
        assert_eq!(
            store.subscriptions("ep").unwrap()[0].secret,
            "hook-secret-0123456789"
        );
    }
}
