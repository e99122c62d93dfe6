//! Plugboard: a host that runs chatbot channel adapters as WebAssembly components.
//!
//! # Layout
//!
//! The modules follow the data: leaves at the bottom, domain modules above them, and at
//! the top the composition root, the serving stages, the admin API and the command line.
//! The rule that keeps it readable: nothing below the top names the top (no module outside
//! [`app`], [`serve`], [`admin`], [`cli`] and [`chat`] imports any of them).
//!
//! **Leaves** (they import nothing of the crate):
//! - [`clock`]: wall-clock time in unix milliseconds ([`clock::now_ms`]).
//! - [`lock`]: std mutexes and rwlocks locked also after a holder panicked (one idiom).
//! - [`memory`]: glibc's heap kept small (arena cap, free memory given back after start).
//! - [`pii`]: phone numbers and message texts masked in log lines (one process-wide switch).
//! - [`ids`]: typed ids the stages pass to each other ([`ids::EndpointId`],
//!   [`ids::SessionKey`]).
//! - [`secretbox`]: secrets at rest: the key from `PLUGBOARD_SECRET_KEY`, the keyring and
//!   the sealing (XChaCha20-Poly1305) of the tokens and secrets the store keeps.
//! - [`redact`]: error text without the values serde quotes (secrets, file content).
//! - [`egress`]: where URLs from configuration, admin input or flows may point (internal
//!   addresses refused unless `[egress] allow`s them, no redirects, capped bodies).
//! - [`whatsapp`]: Meta's WhatsApp Business rules in one place:
//!   [`whatsapp::window`] (the 24-hour customer-service window), [`whatsapp::codes`]
//!   (Meta's error codes the host acts on), [`whatsapp::opt_out`] (opt-out keywords),
//!   [`whatsapp::quota`] (the calendar month a reply counts against).
//!
//! **Domain modules** (below the top; they know no HTTP handler, stage or command):
//! - [`config`]: the TOML configuration of `plugboard serve`, read, resolved and validated:
//!   [`config::settings`] (the server-wide sections), [`config::retry`] (a retry schedule
//!   as data and the wait it gives), [`config::endpoint`] (one endpoint resolved, its
//!   defaults), [`config::spec`] (one endpoint as written or posted, and its resolution),
//!   [`config::secret`] (secret values and `env:NAME` references), [`config::demo`] (the
//!   configuration used without a file).
//! - [`plugins`]: the wasmtime runtime: [`plugins::engine`] (the one engine, epoch ticker,
//!   deny-all linker, per-store limits), [`plugins::bindings`] (one module per WIT
//!   version), `convert` (values between versions), `instance` (load
//!   checks, the warm-instance pool, calls under limits), [`plugins::adapter`] (a loaded
//!   channel adapter), [`plugins::hook`] (a loaded transformer hook), [`plugins::offthread`]
//!   (never a call on a thread driving async tasks), [`plugins::limits`] (caps on what one
//!   call may answer), `error` (failures naming the plugin).
//! - [`flow`]: the conversation engine: [`flow::model`] (the flow file format),
//!   [`flow::validate`] (load-time checks), [`flow::template`] (`{{ path }}` substitution),
//!   [`flow::engine`] (the pure [`flow::step`]: flow, state, input, now → state, effects).
//! - [`transform`]: an endpoint's transformer hooks chained in order (`on-input` before the
//!   flow, `on-output` and `on-execution-finished` after it) under its failure policy.
//! - [`store`]: the durable store's typed, async interface, one trait per table group:
//!   [`store::inbox`], [`store::events`], [`store::steps`] (a step's one-transaction
//!   commit and the reads it needs first), [`store::outbox`] (sends and statuses),
//!   [`store::timers`], [`store::maintenance`] (dead letters, depths, prune, ping),
//!   [`store::admin`] (endpoint specs, plugins, event webhooks, conversation views),
//!   [`store::business`] (accounts, templates, campaigns, opt-outs, quota); and
//!   [`store::sqlite`], the embedded implementation: `writer` (the writer thread: batching,
//!   selective fsync), `rows` (row mapping), one file per table group, `seal` (secret
//!   columns), [`store::sqlite::private`] (file modes), `migrations/`.
//! - [`conversation`]: the conversation core, one step as a pure function:
//!   [`conversation::step`] ([`conversation::handle`]: record, input, now → outcome),
//!   [`conversation::store`] (the session record), [`conversation::config`] (expiry,
//!   history, delay, handover settings), [`conversation::handover`] (handover events and
//!   keywords), [`conversation::http`] (the flow's http executor, through [`egress`]).
//! - [`business`]: WhatsApp Business: [`business::graph`] (the Graph API's management
//!   calls), [`business::templates`] (the template catalogue and the rules a template send
//!   meets), [`business::upload`] (a campaign's recipient upload read within bounds),
//!   [`business::campaigns`] (recipients and the runner's pacing, once per recipient).
//! - [`endpoints`]: endpoints as a domain: [`endpoints::endpoint`] (one loaded endpoint:
//!   adapter, flow, hooks, conversation core), [`endpoints::registry`] (the endpoints
//!   served, swapped at run time), [`endpoints::files`] (flows under `flows_dir`,
//!   components under `plugins_dir`), [`endpoints::lifecycle`] (create, change, enable,
//!   disconnect, delete; domain errors, no HTTP), [`endpoints::plugins`] (install, limits,
//!   remove of installed plugins), [`endpoints::token_binding`] (where a Meta token may go).
//!
//! **The top**:
//! - [`app`]: the composition root: opens the store, loads plugins and endpoints, builds
//!   the stages' context, resumes pending work, spawns the loops, merges the edge and
//!   admin routers, and owns shutdown (one cancellation token and task tracker).
//! - [`serve`]: `plugboard serve`'s stages, in data-flow order: [`serve::http`] (the
//!   accept loop: timeouts, connection cap) and [`serve::edge`] (webhooks in: size limit,
//!   [`serve::signature`], the durable inbox row, then 200; health and metrics routes) →
//!   the bounded inbox queue ([`serve::INBOX_QUEUE`]; full: 503 + Retry-After) →
//!   [`serve::pipeline`] (demux through the adapter into deduplicated events, routed by
//!   [`serve::tenancy`]; dispatch; statuses applied monotonically; the timer loop and
//!   pruning) → [`serve::workers`] (per-conversation workers, in order, each step committed
//!   in one transaction) → the pure conversation step → [`serve::sender`] (schedule,
//!   window check, render, rate limits, Graph API, classify, retries) with
//!   [`serve::graph_paths`] (which Graph routes an adapter may ask for); beside them
//!   [`serve::campaigns`] (the campaign runner's ticks), [`serve::notices`] (the events
//!   announced to outbound webhooks), [`serve::stages`] (loop liveness for `/readyz`),
//!   [`serve::metrics`] (Prometheus) and [`serve::logging`] (the tracing subscriber).
//! - [`admin`]: thin HTTP handlers under `/admin/v1` over the domain modules:
//!   [`admin::plugins`], [`admin::endpoints`], [`admin::conversations`] (views and agent
//!   actions), [`admin::events`] (outbound event webhooks and their delivery loop),
//!   [`admin::accounts`], [`admin::campaigns`], [`admin::webitel`] (account operations in
//!   Webitel's form), [`admin::error`] (the one error shape); with the OpenAPI document.
//! - [`cli`]: the `plugboard` command line (clap definitions and dispatch):
//!   [`cli::adapter`] (`adapter decode|render`), [`cli::serve`] (`serve`, `replay`,
//!   `secrets`: config discovery, the runtime, signals), [`cli::admin`] (the admin CLI, an
//!   HTTP client of `/admin/v1`: `client` the wire, `tables`
//!   the printing, `business` the account, template and campaign groups).
//! - [`chat`]: `plugboard chat`, a terminal conversation with a flow: [`chat::envelope`]
//!   (typed line → Meta webhook body), [`chat::conversations`] (the conversation core
//!   driven for the chat, with its ordering, pacing and side effects), `lanes`
//!   (per-conversation lock and paced delivery), [`chat::sessions`] (in-memory session
//!   records), [`chat::clock`] (the chat's time, controllable in tests), [`chat::view`]
//!   (a rendered Graph request → what the user sees).
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
