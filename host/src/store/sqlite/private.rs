//! File modes of the data directory and the database: the database holds tokens and
//! secrets, so only the host's user may read it, whatever the umask.
//!
//! [`private_dir`] creates the data directory (and missing parents) as `0700` and narrows
//! an existing one that others can read. [`private_db`] creates the database file as
//! `0600` before SQLite opens it and narrows an existing database and its `-wal` and `-shm`
//! files. SQLite creates `-wal` and `-shm` with the database file's mode (it copies it,
//! umask-independent), so once the database is `0600` so are they.
//!
//! What must stay true: no file or directory is ever created with a wider mode first and
//! narrowed later (there would be a window where others can open it), except where the
//! file already existed.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// The data directory's mode.
pub const DIR_MODE: u32 = 0o700;
/// The mode of the database, its `-wal` and `-shm` files and the host's lock file.
pub const FILE_MODE: u32 = 0o600;

/// Sets `path`'s mode to `mode` when it has bits others could use (group or world); a
/// path that does not exist is left alone.
fn narrow(path: &Path, mode: u32) -> Result<(), StoreError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError(format!("reading {}: {e}", path.display()))),
    };
    let current = meta.permissions().mode() & 0o777;
    if current & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| StoreError(format!("setting the mode of {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"), "narrowed the mode of a data file: it holds secrets");
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode `0700`; an existing one is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| StoreError(format!("creating directory {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The data directory: created with mode `0700`, or narrowed to `0700` when it exists and
/// others can read it (a directory the host cannot change is reported, not fatal: the
/// files inside are `0600` anyway).
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    create_private_dir(dir)?;
    if let Err(e) = narrow(dir, DIR_MODE) {
        tracing::warn!("{}; the data directory stays readable by others", e.0);
    }
    Ok(())
}

/// A file next to the database: `plugboard.db` → `plugboard.db-wal`.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the database file as `0600` if it does not exist (empty: SQLite initialises
/// it), and narrows an existing database, `-wal` and `-shm` to `0600`.
pub fn private_db(db: &Path) -> Result<(), StoreError> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError(format!("creating {}: {e}", db.display()))),
    }
    // The umask may have taken bits off the new file: set the exact mode.
    for path in [
        db.to_path_buf(),
        sibling(db, "-wal"),
        sibling(db, "-shm"),
        sibling(db, "-journal"),
    ] {
        narrow(&path, FILE_MODE)?;
    }
    Ok(())
}

/// Opens (creating as `0600`) a file that holds nothing secret but must not be writable
/// by others either: the host's lock file.
pub fn private_file(path: &Path) -> Result<fs::File, StoreError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| StoreError(format!("opening {}: {e}", path.display())))?;
    narrow(path, FILE_MODE)?;
    Ok(file)
}

/// The lock file in the data directory: a serving host holds a shared lock on it, the
/// commands that must not run next to a host (`plugboard secrets …`) an exclusive one.
pub const LOCK_FILE: &str = "plugboard.lock";

/// A lock on the data directory, released when dropped (also when the process dies).
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] fs::File);

impl DataDirLock {
    /// The shared lock a serving host holds for as long as it runs.
    pub fn shared(dir: &Path) -> Result<DataDirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = private_file(&path)?;
        file.lock_shared()
            .map_err(|e| StoreError(format!("locking {}: {e}", path.display())))?;
        Ok(DataDirLock(file))
    }

    /// The exclusive lock, or an error when a host is serving from `dir`.
    pub fn exclusive(dir: &Path) -> Result<DataDirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = private_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock(file)),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError(format!(
                "a host is serving from {}: stop it first",
                dir.display()
            ))),
            Err(fs::TryLockError::Error(e)) => {
                Err(StoreError(format!("locking {}: {e}", path.display())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_private_and_old_ones_are_narrowed() {
        let base = std::env::temp_dir().join(format!(
            "plugboard-private-{}-{}",
            std::process::id(),
            super::super::rows::now_ms()
        ));
        let dir = base.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        let db = dir.join("x.db");
        private_db(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        // Files made readable by others (an older version) are narrowed at the next open.
        let wal = sibling(&db, "-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        private_db(&db).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(mode(&wal), FILE_MODE);
        let _ = fs::remove_dir_all(base);
    }
}
