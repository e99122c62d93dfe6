//! Inputs for the adapter benchmarks (`benches/adapter.rs`), built deterministically so
//! every run, native or component, measures the same bytes.
//!
//! - [`ONE_MESSAGE`]: the golden one-text-message webhook (`inbound/msg_text.json`).
//! - [`batch_envelope`]: a synthetic webhook with many messages of mixed types from a few
//!   senders plus delivery statuses, in two changes of one entry, as Meta batches them.
//! - [`REPLY`] and [`CHOICES`]: golden render inputs (`{"output", "context"}`), read into
//!   the native adapter's types or the host's with [`render_input`]: the two sides derive
//!   the same serde form, so both get equal values.
//!
//! Run the benchmarks with `cargo bench -p plugboard-bench`.

use serde_json::{Value, json};

pub mod loadgen;

/// One text message from one sender: the common webhook.
pub const ONE_MESSAGE: &str = include_str!("../../adapter/tests/fixtures/inbound/msg_text.json");

/// A plain-text reply quoting the user's message.
pub const REPLY: &str = include_str!("../../adapter/tests/fixtures/outbound/text_reply_to.json");

/// A question with three reply buttons.
pub const CHOICES: &str =
    include_str!("../../adapter/tests/fixtures/outbound/choices_buttons.json");

const PHONE_NUMBER_ID: &str = "106540352242922";
const SENDERS: [(&str, &str); 4] = [
    ("16315551181", "Kerry Fisher"),
    ("16315551182", "Ana Lima"),
    ("447700900123", "Sam Okafor"),
    ("4915112345678", "Jonas Weber"),
];
const STATUSES: [&str; 3] = ["sent", "delivered", "read"];

/// A webhook body with `messages` messages (text, image, button reply, location, reaction,
/// in turn, from four senders) and `statuses` statuses: `messages + statuses` events.
pub fn batch_envelope(messages: usize, statuses: usize) -> Vec<u8> {
    let msgs: Vec<Value> = (0..messages).map(message).collect();
    let stats: Vec<Value> = (0..statuses)
        .map(|i| {
            let (phone, _) = SENDERS[i % SENDERS.len()];
            json!({
                "id": format!("wamid.HBgLMTYzMTU1NTExODEVAgASGBQzOUT{i:03}"),
                "status": STATUSES[i % STATUSES.len()],
                "timestamp": (1_717_171_800 + i).to_string(),
                "recipient_id": phone,
                "conversation": {
                    "id": "CONVERSATION_ID",
                    "origin": { "type": "service" }
                },
                "pricing": { "billable": true, "pricing_model": "PMP", "category": "service" }
            })
        })
        .collect();
    let contacts: Vec<Value> = SENDERS
        .iter()
        .map(|(phone, name)| json!({ "profile": { "name": name }, "wa_id": phone }))
        .collect();
    let metadata = json!({
        "display_phone_number": "15550783881",
        "phone_number_id": PHONE_NUMBER_ID
    });
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": metadata,
                        "contacts": contacts,
                        "messages": msgs
                    },
                    "field": "messages"
                },
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": metadata,
                        "statuses": stats
                    },
                    "field": "messages"
                }
            ]
        }]
    });
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

fn message(i: usize) -> Value {
    let (phone, _) = SENDERS[i % SENDERS.len()];
    let mut msg = json!({
        "from": phone,
        "id": format!("wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQTdCNUY2RTk4{i:03}"),
        "timestamp": (1_717_171_717 + i).to_string(),
    });
    let (kind, content) = match i % 5 {
        0 => (
            "text",
            json!({ "body": format!("Hi, is the shop open on Sunday? ({i})") }),
        ),
        1 => (
            "image",
            json!({
                "caption": "My broken screen",
                "mime_type": "image/jpeg",
                "sha256": "v7XhBZbkbrFjHuW0VRnR1QFA8Nm/S7xB8DhYP/ifhXY=",
                "id": format!("1296498418143{i:03}")
            }),
        ),
        2 => (
            "interactive",
            json!({
                "type": "button_reply",
                "button_reply": { "id": "order:yes", "title": "Yes, order" }
            }),
        ),
        3 => (
            "location",
            json!({
                "latitude": 38.9806263495,
                "longitude": -131.9428612257,
                "name": "Philz Coffee",
                "address": "101 Forest Ave, Palo Alto, CA 94301"
            }),
        ),
        _ => (
            "reaction",
            json!({
                "message_id": format!("wamid.HBgLMTYzMTU1NTExODEVAgASGBQzOUT{:03}", i - 1),
                "emoji": "👍"
            }),
        ),
    };
    msg["type"] = json!(kind);
    msg[kind] = content;
    msg
}

/// Reads a render fixture (`{"output", "context"}`) into either side's types.
pub fn render_input<O, C>(fixture: &str) -> (O, C)
where
    O: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
{
    let mut value: Value = serde_json::from_str(fixture).expect("render fixture is JSON");
    let output = serde_json::from_value(value["output"].take()).expect("fixture `output`");
    let context = serde_json::from_value(value["context"].take()).expect("fixture `context`");
    (output, context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_decodes_to_one_event_per_item() {
        let decoded = plugboard_whatsapp::decode(&batch_envelope(30, 20)).expect("decodes");
        assert_eq!(decoded.events.len(), 50);
        assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
    }
}

/// Timing helpers shared by the benches' interleaved summaries.
pub mod timing {
    use std::time::{Duration, Instant};

    /// How many calls of `f` take about `batch` (after a short warm-up).
    pub fn calibrate(f: &mut dyn FnMut(), batch: Duration) -> u32 {
        let mut n = 1u32;
        loop {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            let elapsed = start.elapsed();
            if elapsed >= batch / 4 || n >= 1 << 24 {
                let per_call = elapsed.as_secs_f64() / f64::from(n);
                return ((batch.as_secs_f64() / per_call) as u32).max(1);
            }
            n *= 2;
        }
    }

    /// Microseconds per call of `f` over `n` calls.
    pub fn micros_per_call(f: &mut dyn FnMut(), n: u32) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    }

    /// The median of `values` (0 for none).
    pub fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        match (
            sorted.len() % 2,
            sorted.get(mid),
            mid.checked_sub(1).and_then(|i| sorted.get(i)),
        ) {
            (1, Some(m), _) => *m,
            (0, Some(hi), Some(lo)) => (lo + hi) / 2.0,
            _ => 0.0,
        }
    }
}
