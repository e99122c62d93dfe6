//! The `plugboard` binary: a thin wrapper over [`plugboard::cli`].

fn main() -> std::process::ExitCode {
    plugboard::memory::limit_arenas();
    plugboard::cli::main()
}
