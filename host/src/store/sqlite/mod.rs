//! The embedded SQLite implementation of the store traits: one database file in WAL mode,
//! one writer thread, two reader connections and versioned migrations.
//!
//! Data flows through it like this: every write (and every read made on an async path) is
//! a job queued to the writer ([`writer`]: batching, the fast and careful paths, which
//! commits are fsync'd); each table group's file (`inbox`, `events`, `sessions`,
//! `outbox`, `timers`, `maintenance`, `admin`, `business`) turns one trait method into
//! such a job, reading and writing rows through [`rows`]. This file opens the database,
//! migrates it, starts the writer and keeps the reader connections.
//!
//! The reads a conversation step needs first ([`StepStore::session`],
//! [`StepStore::last_inbound`]) go to a reader connection instead, run on tokio's blocking
//! pool, so they never wait behind a batch nor block an async thread; WAL lets them read
//! the last committed state while the writer works.
//!
//! **Secrets at rest.** The database and its `-wal`/`-shm` files are created `0600` in a
//! `0700` directory ([`private`]). With a key ([`SqliteOptions::keys`]), the secret columns
//! are sealed on write and opened on read ([`seal`]); opening a store checks that every
//! sealed value opens with the keys given.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

mod admin;
mod business;
mod events;
mod inbox;
mod maintenance;
mod outbox;
pub mod private;
mod rows;
mod seal;
mod steps;
#[cfg(test)]
mod tests;
mod timers;
mod writer;

pub use seal::SecretsReport;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use serde::{Deserialize, Serialize};

use crate::secretbox::Keyring;
#[cfg(doc)]
use crate::store::StepStore;
use crate::store::{StoreError, StoreFuture};
use rows::{Ctx, exec_pragma};
use writer::{Durability, Writer};

/// Schema versions, applied in order; the version lives in SQLite's `user_version`.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("migrations/0001_init.sql")),
    M::up(include_str!("migrations/0002_admin.sql")),
    M::up(include_str!("migrations/0003_business.sql")),
    M::up(include_str!("migrations/0004_pending_indexes.sql")),
];

/// How long a connection waits for a lock held by another process (a CLI command run
/// next to `serve`) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (negative: SQLite's unit for a size in KiB).
const WRITER_CACHE_KIB: i64 = -8_192;
/// WAL pages between automatic checkpoints (SQLite's default is 1000).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_000;
/// The WAL file is truncated back to this size after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Reader connections for the synchronous reads.
const READERS: usize = 2;

/// Prepared statements kept per connection. Above the number of distinct statements this
/// file runs, so none is ever parsed twice (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 128;

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
    /// Dropped first: the writer finishes the queued jobs before the readers close.
    writer: Writer,
    readers: Arc<Readers>,
    /// Seals the secret columns on write, opens them on read.
    keys: Arc<Keyring>,
    /// How the secrets were stored when the store opened.
    secrets: SecretsReport,
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

        let writer = Writer::start(conn, options.batch_max, options.synchronous)?;
        tracing::debug!(path = %path.display(), "store opened");
        Ok(SqliteStore {
            writer,
            readers: Arc::new(Readers {
                conns: readers,
                next: AtomicUsize::new(0),
            }),
            keys: Arc::new(keys),
            secrets,
        })
    }

    /// How the stored secrets were kept when the store opened (clear, sealed, references).
    pub fn secrets_report(&self) -> &SecretsReport {
        &self.secrets
    }

    /// Batches committed with `synchronous=FULL` since the store opened.
    pub fn full_commits(&self) -> u64 {
        self.writer.full_commits()
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
        self.writer.submit(durable, f)
    }

    /// Runs a short read on a free reader connection (or waits for one, round robin), on
    /// the calling thread.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.readers.read(f)
    }

    /// Runs a short read on a reader connection off the async threads (tokio's blocking
    /// pool), so an async caller never blocks on SQLite; without a runtime it reads on the
    /// calling thread.
    fn read_async<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime
                    .spawn_blocking(move || readers.read(f))
                    .await
                    .map_err(|e| StoreError(format!("store read: {e}")))?,
                Err(_) => readers.read(f),
            }
        })
    }
}

/// The reader connections (`query_only`): WAL lets them read the last committed state
/// while the writer works, so a read never waits behind a batch.
struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for reader in &self.conns {
            match reader.try_lock() {
                Ok(conn) => return f(&conn),
                // A panic while holding a reader leaves nothing half done: reads only.
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        let reader = self
            .conns
            .get(n)
            .ok_or_else(|| StoreError("no reader connection".into()))?;
        let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}
