//! A deliberately hostile channel adapter, built for `wasm32-wasip2` by `host/build.rs`.
//!
//! It exports the real `plugboard:channel/adapter@0.1.0` so the host accepts it, then
//! misbehaves on demand so the runtime tests can show that the host stops it and goes on:
//! `decode(b"loop")` never returns, `decode(b"alloc")` allocates until something stops it,
//! `decode(b"panic")` panics (a trap), `decode(b"sleep")` sleeps for 30 s in WASI (a
//! wait the host must refuse), `decode(b"flood")` answers 1,001 events (over the host's
//! cap). `decode(b"msg:<phone>:<unix seconds>")` is one text message `hi` from `<phone>`
//! (so a flow runs and something is rendered). Any other body decodes to nothing.
//!
//! `render` is told apart by the recipient's phone: `666…` renders a request spec whose
//! path escapes the endpoint's number (`../../other/messages`), `777…` sleeps for 30 s;
//! anything else is refused as unsupported.

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
            b"sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                Ok(nothing())
            }
            b"flood" => Ok(Decoded {
                events: (0..1_001)
                    .map(|i| message(&format!("flood-{i}"), "1", 0))
                    .collect(),
                skipped: Vec::new(),
            }),
            other => match std::str::from_utf8(other)
                .ok()
                .and_then(|text| text.strip_prefix("msg:"))
                .and_then(|rest| rest.split_once(':'))
            {
                Some((phone, seconds)) => Ok(Decoded {
                    events: vec![message(
                        &format!("msg:{phone}:{seconds}"),
                        phone,
                        seconds.parse().unwrap_or(0),
                    )],
                    skipped: Vec::new(),
                }),
                None => Ok(nothing()),
            },
        }
    }

    fn render(
        _output: BotOutput,
        context: RenderContext,
    ) -> Result<Vec<RequestSpec>, AdapterError> {
        let phone = context.recipient.phone.unwrap_or_default();
        if phone.starts_with("666") {
            return Ok(vec![RequestSpec {
                method: HttpMethod::Post,
                path: "../../other/messages".to_string(),
                body: "{}".to_string(),
            }]);
        }
        if phone.starts_with("777") {
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        Err(AdapterError::Unsupported(
            "the misbehaving guest renders nothing".to_string(),
        ))
    }

    fn classify(_outcome: SendOutcome, _attempt: u32) -> SendResult {
        SendResult::Sent(None)
    }
}

fn nothing() -> Decoded {
    Decoded {
        events: Vec::new(),
        skipped: Vec::new(),
    }
}

/// A text message `hi` from `phone`, for the endpoint that received it.
fn message(id: &str, phone: &str, timestamp: u64) -> Event {
    Event {
        dedupe_key: id.to_string(),
        conversation_key: String::new(),
        business: Business {
            phone_number_id: String::new(),
            display_number: None,
            account_id: None,
        },
        body: EventBody::Message(InboundMessage {
            id: id.to_string(),
            timestamp,
            user: User {
                user_id: None,
                phone: Some(phone.to_string()),
                name: Some("m".to_string()),
                username: None,
            },
            context: None,
            referral: None,
            content: MessageContent::Text("hi".to_string()),
        }),
    }
}

export!(Misbehaving);
