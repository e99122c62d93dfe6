//! The WhatsApp Cloud API channel adapter.
//!
//! Pure translation between Meta's wire format and the neutral `plugboard:channel@0.1.1`
//! model: no clock, network, files or state. The same code runs natively (tests, the
//! `rlib`) and as a `wasm32-wasip2` component (the `cdylib` the host loads).
//!
//! Data flow:
//! - [`decode`]: a webhook body → every entry × change × message/status/error as neutral
//!   events, each with a dedupe key and a conversation key, plus the account-level template
//!   and number changes (WIT 0.1.1); other webhook fields are skipped and reported, a
//!   malformed body is an [`AdapterError`], never a trap.
//! - [`render`]: a neutral output → Graph API `/{phone-number-id}/messages` request specs
//!   within Meta's limits, degrading deterministically.
//! - [`classify`]: a Graph API response (or timeout) → a typed send result.
//! - [`info`] and [`handshake`]: identity, settings and the webhook subscription check.
//!
//! The neutral types are generated from the WIT contract by `wit-bindgen`, with serde
//! derives: their JSON form is what the CLI prints and the golden fixtures hold.

// The generated `export!` macro names `crate::bindings` on purpose (`default_bindings_module`).
#[allow(clippy::crate_in_macro_def)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1.1",
        world: "plugboard:channel/channel-adapter@0.1.1",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        pub_export_macro: true,
        default_bindings_module: "crate::bindings",
    });
}

pub mod classify;
pub mod decode;
pub mod info;
pub mod render;

pub use bindings::plugboard::channel::types;
pub use types::AdapterError;

pub use classify::classify;
pub use decode::decode;
pub use info::{handshake, info};
pub use render::render;

/// The component's export glue: forwards each WIT function to the pure module behind it.
#[cfg(target_arch = "wasm32")]
mod component {
    use crate::bindings::exports::plugboard::channel::adapter::Guest;
    use crate::types::*;

    struct WhatsApp;

    impl Guest for WhatsApp {
        fn info() -> ChannelInfo {
            crate::info()
        }

        fn handshake(
            query: Vec<(String, String)>,
            settings: Vec<(String, String)>,
        ) -> HandshakeReply {
            crate::handshake(&query, &settings)
        }

        fn decode(body: Vec<u8>) -> Result<Decoded, AdapterError> {
            crate::decode(&body)
        }

        fn render(
            output: BotOutput,
            context: RenderContext,
        ) -> Result<Vec<RequestSpec>, AdapterError> {
            crate::render(&output, &context)
        }

        fn classify(outcome: SendOutcome, attempt: u32) -> SendResult {
            crate::classify(&outcome, attempt)
        }
    }

    crate::bindings::export!(WhatsApp);
}
