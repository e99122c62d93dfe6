//! The plugin runtime: loads channel adapters as WebAssembly components and calls them
//! under hard limits.
//!
//! - [`engine`]: the one wasmtime [`Engine`](wasmtime::Engine) of the process, its epoch
//!   ticker, the deny-all WASI linker and the per-store limits. Every store is built there,
//!   so no caller can forget a deadline or a memory cap.
//! - [`bindings`]: one module per supported WIT version (`v0_1` for
//!   `plugboard:channel@0.1.x`), plus `latest`, the neutral types the rest of the host uses.
//! - [`adapter`]: [`AdapterPlugin`], a checked, pre-instantiated adapter with a small pool
//!   of warm instances, exposing typed `info`/`handshake`/`decode`/`render`/`classify` calls.
//!
//! A trap, a missed deadline or a memory-limit hit in a plugin is a [`PluginError`] naming
//! the plugin and its version; the instance is discarded and the host goes on.

pub mod adapter;
pub mod bindings;
pub mod engine;
mod error;

pub use adapter::AdapterPlugin;
pub use bindings::latest::types;
pub use engine::{PluginLimits, PluginRuntime};
pub use error::{FailureKind, PluginError};

/// The WhatsApp Cloud API adapter compiled by `host/build.rs`, embedded in the binary.
pub static BUNDLED_WHATSAPP: &[u8] = include_bytes!(env!("PLUGBOARD_WHATSAPP_WASM"));

/// Paths of the test guests `host/build.rs` compiles (read at test time by the
/// `plugboard-tests` crate; build-script env vars are only visible to this crate).
#[doc(hidden)]
pub mod test_guests {
    /// A real `plugboard:channel/adapter@0.1.0` that loops, allocates or panics on demand.
    pub const MISBEHAVING: &str = env!("PLUGBOARD_MISBEHAVING_WASM");
    /// A component exporting `test:other/greeter` instead of the adapter interface.
    pub const WRONG_WORLD: &str = env!("PLUGBOARD_WRONG_WORLD_WASM");
}
