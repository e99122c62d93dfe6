//! The `plugboard` binary: a thin wrapper over [`plugboard::cli`].

fn main() -> std::process::ExitCode {
    // Unlocked handles: `serve` logs from other threads while the command runs, and a
    // stderr lock held here for the whole run would block them forever.
    plugboard::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}
