//! `plugboard-node`: the `plugboard` binary's entry point, built inside the test package so
//! that `tests/it/serve.rs` can spawn a real host process (`env!("CARGO_BIN_EXE_…")`) and
//! SIGKILL it. Both binaries are `plugboard::cli::main`.

fn main() -> std::process::ExitCode {
    plugboard::cli::main()
}
