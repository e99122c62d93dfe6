//! The `plugboard` binary: a thin wrapper over [`plugboard::cli`].

fn main() -> std::process::ExitCode {
    plugboard::cli::init_tracing();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    plugboard::cli::run(std::env::args_os(), &mut stdout.lock(), &mut stderr.lock())
}
