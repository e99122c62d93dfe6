//! Plugboard: a host that runs chatbot channel adapters as WebAssembly components.
//!
//! # Layout
//! - [`plugins`]: the wasmtime runtime. Loads adapter components (the bundled WhatsApp
//!   adapter or an installed `.wasm`), checks what they export and import, and calls them
//!   under a memory limit and an epoch deadline; traps become [`plugins::PluginError`]s.
//! - [`cli`]: the `plugboard` command line. `adapter decode` and `adapter render` run
//!   webhook bodies and neutral outputs through a compiled adapter, for flow designers and
//!   support.
//!
//! Data flows one way through a plugin: bytes or neutral values in, neutral values or
//! request specs out. The plugin decides, the host does: time, network and state stay here.

pub mod cli;
pub mod plugins;
