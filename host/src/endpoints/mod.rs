//! Endpoints as a domain: what one served endpoint is, which are served, and how they
//! change while the host runs. Below the top: nothing here knows HTTP, the serving
//! pipeline's stages or the command line.
//!
//! - [`endpoint`]: one loaded endpoint (adapter, flow, hooks, conversations, signature
//!   check), what it may reach ([`endpoint::Bounds`]) and what it has seen
//!   ([`endpoint::Activity`]).
//! - [`registry`]: the endpoints being served, swapped one at a time; seeded at start.
//! - [`files`]: file confinement (flows under `flows_dir`, components under `plugins_dir`).
//! - [`lifecycle`]: create, change (merge patch), enable/disable, disconnect and delete,
//!   each validated and loaded completely, then committed, then swapped in; errors are
//!   [`lifecycle::EndpointError`]s, which the admin API turns into answers.
//! - [`plugins`]: install, change the limits of and remove installed plugins, checked
//!   against every endpoint on them first.
//! - [`token_binding`]: the one rule for where a Meta token may be sent.
//!
//! Data flows: a spec (TOML or admin JSON) → resolved
//! `EndpointConfig` → [`endpoint::Endpoint::load`] → the store's row → the [`registry`].

pub mod endpoint;
pub mod files;
pub mod lifecycle;
pub mod plugins;
pub mod registry;
pub mod token_binding;
