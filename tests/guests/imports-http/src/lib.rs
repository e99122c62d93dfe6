//! A channel adapter that imports `wasi:http/outgoing-handler`, built for `wasm32-wasip2` by
//! `host/build.rs`.
//!
//! It exports the real `plugboard:channel/adapter@0.1.0`, but `decode(b"fetch")` sends an
//! HTTP request itself, so the component imports `wasi:http`. The host links only a
//! deny-all WASI p2 without `wasi:http` and must refuse to install it, naming the import.
//! Any other body decodes to nothing.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plugboard:channel/channel-adapter@0.1.0",
});

use exports::plugboard::channel::adapter::Guest;
use plugboard::channel::types::*;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest};

struct ImportsHttp;

impl Guest for ImportsHttp {
    fn info() -> ChannelInfo {
        ChannelInfo {
            name: "imports-http".to_string(),
            version: "0.0.1".to_string(),
            settings: Vec::new(),
            signature: None,
            auth: AuthScheme::None,
            limits: ChannelLimits {
                max_text_length: 1,
                max_buttons: 1,
                max_button_title_length: 1,
                max_button_id_length: 1,
                max_list_rows: 1,
                max_list_sections: 1,
                max_row_title_length: 1,
                max_row_description_length: 1,
                max_row_id_length: 1,
                max_body_length: 1,
                max_header_length: 1,
                max_footer_length: 1,
                max_caption_length: 1,
            },
            api_version: "v0".to_string(),
        }
    }

    fn handshake(
        _query: Vec<(String, String)>,
        _settings: Vec<(String, String)>,
    ) -> HandshakeReply {
        HandshakeReply::NotHandshake
    }

    fn decode(body: Vec<u8>) -> Result<Decoded, AdapterError> {
        if body == b"fetch" {
            let request = OutgoingRequest::new(Fields::new());
            if let Err(error) = outgoing_handler::handle(request, None) {
                return Err(AdapterError::Unsupported(format!(
                    "fetch failed: {error:?}"
                )));
            }
        }
        Ok(Decoded {
            events: Vec::new(),
            skipped: Vec::new(),
        })
    }

    fn render(
        _output: BotOutput,
        _context: RenderContext,
    ) -> Result<Vec<RequestSpec>, AdapterError> {
        Err(AdapterError::Unsupported(
            "the imports-http guest renders nothing".to_string(),
        ))
    }

    fn classify(_outcome: SendOutcome, _attempt: u32) -> SendResult {
        SendResult::Sent(None)
    }
}

export!(ImportsHttp);
