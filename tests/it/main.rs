//! End-to-end tests of Plugboard at its real boundaries: the compiled WhatsApp component
//! against the golden fixtures (and against the native adapter), the plugin runtime's
//! refusals and limits with hostile guests, and the `plugboard` CLI in-process.
//!
//! One test binary on purpose: the WhatsApp component is compiled once
//! (`plugboard_tests::whatsapp()`) and shared by every test.

mod admin;
mod admin_cli;
mod backpressure;
mod boundary;
mod business;
mod chat;
mod cli;
mod edge_egress;
mod golden;
mod hooks;
mod isolation;
mod plugin_limits;
mod runtime;
mod secrets_at_rest;
mod serve;
