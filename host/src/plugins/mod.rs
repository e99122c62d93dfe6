//! The plugin runtime: loads channel adapters as WebAssembly components and calls them
//! under hard limits.
//!
//! - [`engine`]: the one wasmtime [`Engine`](wasmtime::Engine) of the process, its epoch
//!   ticker, the deny-all WASI linker and the per-store limits. Every store is built there,
//!   so no caller can forget a deadline or a memory cap.
//! - [`bindings`]: one module per supported WIT version (`v0_1_0` for
//!   `plugboard:channel@0.1.0`, `v0_1_1` for 0.1.1), plus `latest`, the neutral types the
//!   rest of the host uses.
//! - [`convert`]: values of an older version into `latest`'s types and back, through their
//!   shared serde form.
//! - [`instance`]: what every plugin kind shares: load checks (export, imports), a small
//!   pool of warm instances and calls under limits.
//! - [`adapter`]: [`AdapterPlugin`], a checked, pre-instantiated adapter exposing typed
//!   `info`/`handshake`/`decode`/`render`/`classify` calls in the latest types, whatever
//!   0.1.x version the component was built against.
//! - [`hook`]: [`HookPlugin`], a transformer hook (`on-input`, `on-output`,
//!   `on-execution-finished`) with its own tighter limits ([`PluginLimits::hook_default`]).
//! - [`offthread`]: where a call runs: never on a thread driving async tasks.
//! - [`limits`]: caps on what one call may answer (events per decode, request specs per
//!   render, outputs per hook call).
//!
//! A trap, a missed deadline or a memory-limit hit in a plugin is a [`PluginError`] naming
//! the plugin and its version; the instance is discarded and the host goes on.

pub mod adapter;
pub mod bindings;
pub(crate) mod convert;
pub mod engine;
mod error;
pub mod hook;
mod instance;
pub mod limits;
pub mod offthread;

pub use adapter::AdapterPlugin;
pub use bindings::latest::hook::{HistoryTurn, InputAction, InputResult, SessionView, Speaker};
pub use bindings::latest::types;
pub use engine::{PluginLimits, PluginRuntime};
pub use error::{FailureKind, PluginError, adapter_error};
pub use hook::HookPlugin;

/// The WhatsApp Cloud API adapter compiled by `host/build.rs`, embedded in the binary.
pub static BUNDLED_WHATSAPP: &[u8] = include_bytes!(env!("PLUGBOARD_WHATSAPP_WASM"));

/// Paths of the test guests `host/build.rs` compiles (read at test time by the
/// `plugboard-tests` crate; build-script env vars are only visible to this crate).
#[doc(hidden)]
pub mod test_guests {
    /// A real `plugboard:channel/adapter@0.1.0` that loops, allocates, panics, sleeps in
    /// WASI, floods events or renders a path escaping its number on demand.
    pub const MISBEHAVING: &str = env!("PLUGBOARD_MISBEHAVING_WASM");
    /// A component exporting `test:other/greeter` instead of the adapter interface.
    pub const WRONG_WORLD: &str = env!("PLUGBOARD_WRONG_WORLD_WASM");
    /// A real `plugboard:channel/transformer@0.1.0` whose `on-input` loops on the text
    /// `loop` and panics on `panic`, and whose `on-output` floods on `flood`.
    pub const MISBEHAVING_HOOK: &str = env!("PLUGBOARD_MISBEHAVING_HOOK_WASM");
    /// A real `plugboard:channel/adapter@0.1.0` that imports `wasi:http`, which the host refuses.
    pub const IMPORTS_HTTP: &str = env!("PLUGBOARD_IMPORTS_HTTP_WASM");
}

/// The example transformer hooks in `flows/hooks/`, compiled by `host/build.rs`.
pub mod example_hooks {
    /// `flows/hooks/mask-pii`: masks card and phone numbers in text input.
    pub const MASK_PII: &str = env!("PLUGBOARD_HOOK_MASK_PII_WASM");
    /// `flows/hooks/signature`: appends a signature line to text outputs.
    pub const SIGNATURE: &str = env!("PLUGBOARD_HOOK_SIGNATURE_WASM");
}
