//! A deliberately hostile channel adapter, built for `wasm32-wasip2` by `host/build.rs`.
//!
//! It exports the real `plugboard:channel/adapter@0.1.0` so the host accepts it, then
//! misbehaves on demand so the runtime tests can show that the host stops it and goes on:
//! `decode(b"loop")` never returns, `decode(b"alloc")` allocates until something stops it,
//! `decode(b"panic")` panics (a trap). Any other body decodes to nothing.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plugboard:channel/channel-adapter@0.1.0",
});

use exports::plugboard::channel::adapter::Guest;
use plugboard::channel::types::*;

struct Misbehaving;

impl Guest for Misbehaving {
    fn info() -> ChannelInfo {
        ChannelInfo {
            name: "misbehaving".to_string(),
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
        match body.as_slice() {
            b"loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            b"alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the allocation is real.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"panic" => panic!("the misbehaving guest panics on purpose"),
            _ => Ok(Decoded {
                events: Vec::new(),
                skipped: Vec::new(),
            }),
        }
    }

    fn render(
        _output: BotOutput,
        _context: RenderContext,
    ) -> Result<Vec<RequestSpec>, AdapterError> {
        Err(AdapterError::Unsupported(
            "the misbehaving guest renders nothing".to_string(),
        ))
    }

    fn classify(_outcome: SendOutcome, _attempt: u32) -> SendResult {
        SendResult::Sent(None)
    }
}

export!(Misbehaving);
