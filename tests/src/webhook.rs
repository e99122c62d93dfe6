//! Meta WhatsApp Cloud API webhook bodies, built the way Meta posts them, and their
//! `X-Hub-Signature-256` signatures.
//!
//! The shapes follow the adapter's inbound fixtures (`adapter/tests/fixtures/inbound`):
//! `object: whatsapp_business_account` → `entry[].changes[]` with `field: "messages"` and a
//! `value` holding `messaging_product`, `metadata`, `contacts`, and `messages[]` or
//! `statuses[]`. Bodies are returned as the exact bytes to post: the signature is an HMAC
//! over the raw body, so the caller must send what was signed, not a re-serialisation.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// `entry[].id`: the WhatsApp Business Account every body here comes from.
pub const ACCOUNT_ID: &str = "102290129340398";
/// `metadata.display_phone_number` of the business number.
pub const DISPLAY_NUMBER: &str = "15550783881";
/// The signature header Meta sends.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Now, in Unix seconds, for message timestamps (a stale timestamp could look like a
/// message from outside the 24-hour window).
pub fn now_ts() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The profile name the builders give a sender: `User` and the last four digits of the
/// number, so every sender of a batch greets back with a different name.
pub fn profile_name(wa_id: &str) -> String {
    let tail = wa_id
        .char_indices()
        .rev()
        .nth(3)
        .map_or(wa_id, |(at, _)| &wa_id[at..]);
    format!("User {tail}")
}

/// A `contacts[]` item.
fn contact(wa_id: &str) -> Value {
    json!({ "profile": { "name": profile_name(wa_id) }, "wa_id": wa_id })
}

/// A text `messages[]` item.
fn text_item(from: &str, wamid: &str, text: &str, ts: u64) -> Value {
    json!({
        "from": from,
        "id": wamid,
        "timestamp": ts.to_string(),
        "type": "text",
        "text": { "body": text }
    })
}

/// One `changes[]` item around a `value` body (metadata and product added).
fn change(pnid: &str, mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("messaging_product".into(), json!("whatsapp"));
        map.insert(
            "metadata".into(),
            json!({ "display_phone_number": DISPLAY_NUMBER, "phone_number_id": pnid }),
        );
    }
    json!({ "value": value, "field": "messages" })
}

/// The envelope around some changes, serialised.
fn envelope(changes: Vec<Value>) -> Vec<u8> {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": ACCOUNT_ID, "changes": changes }]
    });
    serde_json::to_vec(&body).expect("a JSON value serialises")
}

/// One text message from `from` to the business number `pnid`.
pub fn text_message(pnid: &str, from: &str, wamid: &str, text: &str, ts: u64) -> Vec<u8> {
    envelope(vec![change(
        pnid,
        json!({
            "contacts": [contact(from)],
            "messages": [text_item(from, wamid, text, ts)]
        }),
    )])
}

/// Several text messages `(from, wamid, text)` in one body, as Meta batches them: the list
/// is split in two `changes` (first half, second half), each holding the `contacts` of its
/// senders and their messages in the given order. Messages of one sender therefore keep
/// their order across the changes.
pub fn batch(pnid: &str, messages: Vec<(&str, &str, &str)>) -> Vec<u8> {
    let ts = now_ts();
    let half = messages.len().div_ceil(2);
    let changes = messages
        .chunks(half.max(1))
        .map(|chunk| {
            let mut senders: Vec<&str> = Vec::new();
            for (from, _, _) in chunk {
                if !senders.contains(from) {
                    senders.push(from);
                }
            }
            change(
                pnid,
                json!({
                    "contacts": senders.iter().map(|s| contact(s)).collect::<Vec<_>>(),
                    "messages": chunk
                        .iter()
                        .map(|(from, wamid, text)| text_item(from, wamid, text, ts))
                        .collect::<Vec<_>>()
                }),
            )
        })
        .collect();
    envelope(changes)
}

/// A delivery status (`sent`, `delivered`, `read`, `failed`) of an outbound message
/// `wamid` to `recipient`; `errors` (code, details) for a `failed` one.
pub fn status(
    pnid: &str,
    wamid: &str,
    status: &str,
    recipient: &str,
    errors: Option<(i64, &str)>,
) -> Vec<u8> {
    let mut item = json!({
        "id": wamid,
        "status": status,
        "timestamp": now_ts().to_string(),
        "recipient_id": recipient,
    });
    if status != "failed" {
        // Meta attaches conversation and pricing to sent/delivered/read statuses.
        item["conversation"] = json!({
            "id": "a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5",
            "origin": { "type": "service" }
        });
        item["pricing"] = json!({
            "billable": false,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service"
        });
    }
    if let Some((code, details)) = errors {
        item["errors"] = json!([{
            "code": code,
            "title": "Message failed",
            "message": "Message failed",
            "error_data": { "details": details },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
        }]);
    }
    envelope(vec![change(pnid, json!({ "statuses": [item] }))])
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Hub-Signature-256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a body signed with `secret`; transport errors are returned (a test that kills the
/// host expects some).
pub async fn try_post(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    secret: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header(SIGNATURE_HEADER, sign(secret, body))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
}

/// Posts a body signed with `secret`; panics on a transport error.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    secret: &str,
) -> reqwest::Response {
    try_post(client, url, body, secret)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn batch_keeps_per_sender_order_across_changes() {
        let body = batch(
            "1",
            vec![
                ("a", "w1", "x"),
                ("b", "w2", "y"),
                ("a", "w3", "z"),
                ("b", "w4", "t"),
            ],
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let changes = v["entry"][0]["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0]["value"]["messages"][0]["id"], "w1");
        assert_eq!(changes[1]["value"]["messages"][0]["id"], "w3");
        assert_eq!(changes[1]["value"]["contacts"].as_array().unwrap().len(), 2);
        assert_eq!(profile_name("16315551181"), "User 1181");
        assert_eq!(profile_name("12"), "User 12");
    }
}
