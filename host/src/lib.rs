//! Plugboard: a host that runs chatbot channel adapters as WebAssembly components.
//!
//! # Layout
//! - [`plugins`]: the wasmtime runtime. Loads adapter components (the bundled WhatsApp
//!   adapter or an installed `.wasm`), checks what they export and import, and calls them
//!   under a memory limit and an epoch deadline; traps become [`plugins::PluginError`]s.
//! - [`transform`]: an endpoint's transformer hooks chained in order (`on-input` before the
//!   flow, `on-output` and `on-execution-finished` after it) under its failure policy.
//! - [`flow`]: the conversation engine: the flow file format and its JSON Schema, load-time
//!   validation against a channel's limits, `{{variable}}` templates and the pure
//!   [`flow::step`] function that turns (session state, input) into effects.
//! - [`conversation`]: the runtime around the engine: sessions by `wa_<user>` key (expiry,
//!   history), one conversation at a time in order, message delay and typing indicator,
//!   handover (keywords, mute, webhook), inject and notify, and the http executor.
//! - [`admin`]: the admin HTTP API under `/admin/v1` (plugins, endpoints, conversations,
//!   agents, event webhooks) with its generated OpenAPI document.
//! - [`cli`]: the `plugboard` command line: clap definitions and dispatch (`cli/mod.rs`);
//!   `adapter decode` and `adapter render` run webhook bodies and neutral outputs through a
//!   compiled adapter (`cli/adapter.rs`); `serve`, `replay` and `secrets` (`cli/serve.rs`);
//!   `chat` talks to a flow in the terminal as a WhatsApp user.
//! - [`business`]: WhatsApp Business accounts (numbers, webhook subscriptions), message
//!   templates (sync, create, delete, checks before a send), outbound campaigns (paced,
//!   within the messaging limit, once per recipient), opt-outs and the monthly reply quota.
//! - [`cli::admin`]: `plugboard plugin|endpoint|conversation|account|template|campaign …`, an
//!   HTTP client of a running host's admin API (flags or environment or config → one request
//!   (`client.rs`) → a table or JSON (`tables.rs`); `campaign watch` polls and draws a
//!   progress bar).
//! - [`egress`]: where URLs from configuration, admin input or flows may point (internal
//!   addresses refused unless `[egress] allow`s them, no redirects, capped bodies).
//! - [`redact`]: error text without the values serde quotes (secrets, file content).
//! - [`secretbox`]: secrets at rest: the key from `PLUGBOARD_SECRET_KEY` and the sealing
//!   (XChaCha20-Poly1305) of the tokens and secrets the store keeps.
//! - [`chat`]: the `plugboard chat` driver: typed lines → real Meta webhook envelopes →
//!   the adapter → the conversation runtime → rendered replies shown as the user sees them.
//!
//! Data flows one way through a plugin: bytes or neutral values in, neutral values or
//! request specs out. The plugin decides, the host does: time, network and state stay here.

pub mod admin;
pub mod app;
pub mod business;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conversation;
pub mod egress;
pub mod endpoints;
pub mod flow;
pub mod ids;
pub mod lock;
pub mod memory;
pub mod pii;
pub mod plugins;
pub mod redact;
pub mod secretbox;
pub mod serve;
pub mod store;
pub mod transform;
pub mod whatsapp;
