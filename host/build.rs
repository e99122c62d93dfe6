//! Builds the WebAssembly components the host embeds or tests with.
//!
//! Runs cargo for `wasm32-wasip2` (release) on the bundled WhatsApp adapter and the test
//! guests, in a target directory of their own (`<target>/wasm-plugins`) so the nested build
//! never waits on the outer build's lock. `cargo build`/`cargo test` at the root thus need
//! nothing else. The paths come back to the crate as environment variables:
//! `PLUGBOARD_WHATSAPP_WASM` (embedded in the binary), `PLUGBOARD_MISBEHAVING_WASM` and
//! `PLUGBOARD_WRONG_WORLD_WASM`, `PLUGBOARD_MISBEHAVING_HOOK_WASM`,
//! `PLUGBOARD_IMPORTS_HTTP_WASM` (tests only), and the
//! example transformer hooks of `flows/hooks/` (`PLUGBOARD_HOOK_MASK_PII_WASM`,
//! `PLUGBOARD_HOOK_SIGNATURE_WASM`).

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[(&str, &str, &str)] = &[
    (
        "plugboard-whatsapp",
        "plugboard_whatsapp",
        "PLUGBOARD_WHATSAPP_WASM",
    ),
    (
        "misbehaving-guest",
        "misbehaving_guest",
        "PLUGBOARD_MISBEHAVING_WASM",
    ),
    (
        "wrong-world-guest",
        "wrong_world_guest",
        "PLUGBOARD_WRONG_WORLD_WASM",
    ),
    (
        "misbehaving-hook-guest",
        "misbehaving_hook_guest",
        "PLUGBOARD_MISBEHAVING_HOOK_WASM",
    ),
    (
        "imports-http-guest",
        "imports_http_guest",
        "PLUGBOARD_IMPORTS_HTTP_WASM",
    ),
    (
        "plugboard-hook-mask-pii",
        "plugboard_hook_mask_pii",
        "PLUGBOARD_HOOK_MASK_PII_WASM",
    ),
    (
        "plugboard-hook-signature",
        "plugboard_hook_signature",
        "PLUGBOARD_HOOK_SIGNATURE_WASM",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-plugins");

    for watched in [
        "adapter/src",
        "adapter/Cargo.toml",
        "wit",
        "tests/guests",
        "flows/hooks",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Release wasm without DWARF: small enough to embed, names kept for trap messages.
        .args(["--config", "profile.release.debug=false"]);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host build (coverage, sanitizers, target-cpu) must not leak into
    // the wasm build; nor must `cargo clippy`'s wrapper and lint flags (CI lints the guests
    // itself), or the components would rebuild between `cargo clippy` and `cargo test`.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for wasm32-wasip2");
    assert!(
        status.success(),
        "building the wasm32-wasip2 components failed ({status}); is the target installed? \
         run `rustup target add wasm32-wasip2`"
    );

    for (_, artifact, var) in GUESTS {
        let path = artifact_path(&target_dir, artifact);
        assert!(path.exists(), "{} was not produced", path.display());
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

fn artifact_path(target_dir: &Path, artifact: &str) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{artifact}.wasm"))
}
