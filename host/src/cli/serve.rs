//! The `serve`, `replay` and `secrets` commands: configuration discovery, the demo endpoint, the
//! runtime, signals.
//!
//! Config discovery: `--config FILE`, else `$PLUGBOARD_CONFIG`, else `./plugboard.toml`,
//! else the demo (one endpoint running `flows/support.json` on an embedded SQLite store in
//! `data/`), whose callback URL and verify token are printed so it can be wired to a Meta
//! app (or driven by hand with curl) right away.
//!
//! The key sealing the store's secrets comes from `PLUGBOARD_SECRET_KEY` (never a flag or
//! the file). `plugboard secrets status|encrypt|rotate|decrypt` ([`secrets`]) rewrites
//! every stored secret in one transaction, with the data directory locked against a
//! running host.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::app::Server;
use crate::config::ServeConfig;
use crate::secretbox::{KEY_ENV, Keyring, SecretKey};
use crate::store::sqlite::private::DataDirLock;
use crate::store::{MaintenanceStore, SecretsReport, SqliteOptions, SqliteStore};

/// Which configuration to run, and whether it is the demo.
fn discover(config: Option<PathBuf>) -> Result<(ServeConfig, bool), String> {
    let path = config
        .or_else(|| std::env::var_os("PLUGBOARD_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("plugboard.toml");
            local.is_file().then_some(local)
        });
    let (mut config, demo) = match path {
        Some(path) => ServeConfig::load(&path)
            .map(|c| (c, false))
            .map_err(|e| e.to_string())?,
        None => (ServeConfig::demo(&repo_root()), true),
    };
    config.secret_key = SecretKey::from_env(KEY_ENV).map_err(|e| e.to_string())?;
    Ok((config, demo))
}

/// The checkout the demo's flow comes from: the working directory when it has the example
/// flows (`cargo run` from the repo), else the checkout this binary was built from.
fn repo_root() -> PathBuf {
    let here = PathBuf::from(".");
    if here.join("flows/support.json").is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn serve(config: Option<PathBuf>, out: &mut dyn Write) -> Result<(), String> {
    let (config, demo) = discover(config)?;
    crate::serve::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let server = Server::start(config.clone())
            .await
            .map_err(|e| format!("cannot start: {e:#}"))?;
        let base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", server.local_addr()));
        let io = |e: std::io::Error| format!("cannot write: {e}");
        writeln!(out, "plugboard listening on {}", server.local_addr()).map_err(io)?;
        for id in server.endpoint_ids() {
            writeln!(
                out,
                "endpoint `{id}`: callback URL {}/webhooks/{id}",
                base.trim_end_matches('/'),
            )
            .map_err(io)?;
        }
        for endpoint in &config.endpoints {
            if demo {
                // The demo's token is a fixed, documented value (or the one you exported);
                // Meta's dashboard asks for it next to the callback URL.
                writeln!(
                    out,
                    "endpoint `{}`: verify token {}",
                    endpoint.id,
                    endpoint.verify_token.expose()
                )
                .map_err(io)?;
            }
        }
        if demo {
            writeln!(
                out,
                "demo: flow {}, data in {}; Ctrl-C stops",
                config
                    .endpoints
                    .first()
                    .map(|e| e.flow.display().to_string())
                    .unwrap_or_default(),
                config.data_dir.display()
            )
            .map_err(io)?;
        }
        out.flush().map_err(io)?;
        wait_for_signal().await;
        server
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e:#}"))
    })
}

/// Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub fn replay(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    id: Option<i64>,
    all: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => discover(config)?.0.data_dir,
    };
    let store = SqliteStore::open(SqliteOptions {
        path: data_dir.join("plugboard.db"),
        keys: Keyring::new(SecretKey::from_env(KEY_ENV).map_err(|e| e.to_string())?),
        ..SqliteOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let io = |e: std::io::Error| format!("cannot write: {e}");
    runtime.block_on(async {
        if id.is_none() && !all {
            let letters = store.dead_letters(100).await.map_err(|e| e.to_string())?;
            if letters.is_empty() {
                writeln!(out, "no dead letters").map_err(io)?;
            }
            for letter in letters {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&letter).map_err(|e| e.to_string())?
                )
                .map_err(io)?;
            }
            return Ok(());
        }
        let count = store
            .replay_inbox(id, crate::clock::now_ms())
            .await
            .map_err(|e| e.to_string())?;
        writeln!(out, "{count} webhook(s) queued again").map_err(io)?;
        Ok(())
    })
}

/// What `plugboard secrets` does to the stored secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsAction {
    /// Counts them (and checks that the key given opens every encrypted one).
    Status,
    /// Encrypts those still in clear with the current key.
    Encrypt,
    /// Re-encrypts every one with the new key (the old one may be absent: all in clear).
    Rotate,
    /// Writes every one in clear again.
    Decrypt,
}

/// The keys of a `plugboard secrets` run: `current` is the key the secrets are sealed
/// with now (`PLUGBOARD_SECRET_KEY`), `new` the one to seal them with (`rotate`).
#[derive(Debug, Clone, Default)]
pub struct SecretKeys {
    pub current: Option<SecretKey>,
    pub new: Option<SecretKey>,
}

/// The keyring that opens what is stored and seals as `action` asks, or why the keys do
/// not fit the action.
fn keyring(action: SecretsAction, keys: SecretKeys) -> Result<Keyring, String> {
    match action {
        SecretsAction::Status => Ok(Keyring::new(keys.current)),
        SecretsAction::Encrypt => match keys.current {
            Some(key) => Ok(Keyring::new(Some(key))),
            None => Err(format!("secrets encrypt needs the key in {KEY_ENV}")),
        },
        SecretsAction::Rotate => match keys.new {
            Some(new) => Ok(Keyring::new(Some(new)).also_opening(keys.current)),
            None => Err(format!(
                "secrets rotate needs the new key in {} (and the current one in {KEY_ENV})",
                crate::secretbox::NEW_KEY_ENV
            )),
        },
        SecretsAction::Decrypt => Ok(Keyring::new(None).also_opening(keys.current)),
    }
}

/// Runs `action` on the store in `data_dir`: refuses while a host serves from it, opens
/// the store (which checks every encrypted secret opens with the keys given) and, unless
/// `Status`, rewrites every secret that needs it in one durable transaction.
pub fn rewrite_secrets(
    data_dir: &Path,
    action: SecretsAction,
    keys: SecretKeys,
) -> Result<SecretsReport, String> {
    let db = data_dir.join("plugboard.db");
    if !db.is_file() {
        return Err(format!("no store at {}", db.display()));
    }
    let keys = keyring(action, keys)?;
    let _lock = DataDirLock::exclusive(data_dir).map_err(|e| e.to_string())?;
    let store = SqliteStore::open(SqliteOptions {
        path: db,
        keys,
        ..SqliteOptions::default()
    })
    .map_err(|e| e.to_string())?;
    if action == SecretsAction::Status {
        return Ok(store.secrets_report().clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = runtime
        .block_on(store.reseal_secrets())
        .map_err(|e| e.to_string())?;
    // Closed (its writer finished), then rewritten: the replaced values must not linger
    // in free pages or old WAL frames.
    drop(store);
    if report.rewritten > 0 {
        SqliteStore::scrub(&data_dir.join("plugboard.db")).map_err(|e| e.to_string())?;
    }
    Ok(report)
}

/// `plugboard secrets …`: keys from the environment variables named (by default
/// `PLUGBOARD_SECRET_KEY` and `PLUGBOARD_SECRET_KEY_NEW`), never from the command line.
pub fn secrets(
    action: SecretsAction,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    key_env: &str,
    new_key_env: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => discover(config)?.0.data_dir,
    };
    let keys = SecretKeys {
        current: SecretKey::from_env(key_env).map_err(|e| e.to_string())?,
        new: SecretKey::from_env(new_key_env).map_err(|e| e.to_string())?,
    };
    let new_id = match action {
        SecretsAction::Rotate => keys.new.as_ref().map(|k| k.id().to_string()),
        SecretsAction::Encrypt | SecretsAction::Status => {
            keys.current.as_ref().map(|k| k.id().to_string())
        }
        SecretsAction::Decrypt => None,
    };
    let report = rewrite_secrets(&data_dir, action, keys)?;
    let io = |e: std::io::Error| format!("cannot write: {e}");
    writeln!(
        out,
        "{} encrypted{}, {} in clear, {} env references; {} rewritten",
        report.sealed,
        new_id.map(|id| format!(" (key {id})")).unwrap_or_default(),
        report.clear,
        report.references,
        report.rewritten
    )
    .map_err(io)?;
    if action == SecretsAction::Rotate {
        writeln!(
            out,
            "start the host with {KEY_ENV} set to the new key from now on"
        )
        .map_err(io)?;
    }
    Ok(())
}
