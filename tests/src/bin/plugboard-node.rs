//! `plugboard-node`: the `plugboard` binary's entry point, built inside the test package so
//! that `tests/it/serve.rs` can spawn a real host process (`env!("CARGO_BIN_EXE_…")`) and
//! SIGKILL it. Mirrors `host/src/main.rs`; keep the two in step.

fn main() -> std::process::ExitCode {
    // Unlocked handles, as in `host/src/main.rs`: `serve` logs from other threads while the
    // command runs, and a stderr lock held here for the whole run would block them.
    plugboard::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
