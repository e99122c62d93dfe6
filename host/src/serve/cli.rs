//! The `serve` and `replay` commands: configuration discovery, the demo endpoint, the
//! runtime, signals.
//!
//! Config discovery: `--config FILE`, else `$PLUGBOARD_CONFIG`, else `./plugboard.toml`,
//! else the demo (one endpoint running `flows/support.json` on an embedded SQLite store in
//! `data/`), whose callback URL and verify token are printed so it can be wired to a Meta
//! app (or driven by hand with curl) right away.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Server;
use super::config::ServeConfig;
use crate::store::{SqliteOptions, SqliteStore, Store};

/// Which configuration to run, and whether it is the demo.
fn discover(config: Option<PathBuf>) -> Result<(ServeConfig, bool), String> {
    let path = config
        .or_else(|| std::env::var_os("PLUGBOARD_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("plugboard.toml");
            local.is_file().then_some(local)
        });
    match path {
        Some(path) => ServeConfig::load(&path)
            .map(|c| (c, false))
            .map_err(|e| e.to_string()),
        None => Ok((ServeConfig::demo(&repo_root()), true)),
    }
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
    super::logging::init(config.log_format);
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
            .replay_inbox(id, super::now_ms())
            .await
            .map_err(|e| e.to_string())?;
        writeln!(out, "{count} webhook(s) queued again").map_err(io)?;
        Ok(())
    })
}
