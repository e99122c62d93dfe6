//! Robustness of `decode` against hostile and broken input: deep nesting, multi-megabyte
//! bodies, large batches, arbitrary bytes, and mutated real webhook bodies. Every input is
//! generated here; only the mutation seeds come from `fixtures/inbound`.
//!
//! Invariants checked on every input: `decode` returns (never panics or overflows the
//! stack), and an `Ok` never holds more events than the body has `messages[]`,
//! `statuses[]` and `errors[]` items under `entry[].changes[].value` plus changes of the
//! account-level fields (one event each at most), and account events carry no
//! conversation.

use plugboard_whatsapp::AdapterError;
use plugboard_whatsapp::decode;
use plugboard_whatsapp::types::{Decoded, EventBody, MessageContent};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;

fn envelope(messages: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551181"}],
                    "messages": messages,
                }
            }]
        }]
    }))
    .expect("serialize envelope")
}

fn text_message(id: &str, body: &str) -> Value {
    json!({"from": "16315551181", "id": id, "timestamp": "1717171717", "type": "text", "text": {"body": body}})
}

fn assert_malformed(result: Result<Decoded, AdapterError>) {
    match result {
        Err(AdapterError::Malformed(reason)) => assert!(!reason.is_empty()),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// The account-level webhook fields, whose `value` is one item.
const ACCOUNT_FIELDS: &[&str] = &[
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
    "phone_number_quality_update",
];

/// `messages[]` + `statuses[]` + `errors[]` items under `entry[].changes[].value`, plus one
/// per change of an account-level field.
fn item_count(body: &[u8]) -> usize {
    let Ok(root) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let arrays = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    root.get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("changes").and_then(Value::as_array))
        .flatten()
        .map(|change| {
            let account = change
                .get("field")
                .and_then(Value::as_str)
                .is_some_and(|f| ACCOUNT_FIELDS.contains(&f));
            match change.get("value") {
                Some(_) if account => 1,
                Some(value) => {
                    arrays(value, "messages") + arrays(value, "statuses") + arrays(value, "errors")
                }
                None => 0,
            }
        })
        .sum()
}

/// Decodes `body` and checks the invariants that hold for any input.
fn check_invariants(body: &[u8]) {
    if let Ok(decoded) = decode(body) {
        let items = item_count(body);
        assert!(
            decoded.events.len() <= items,
            "{} events from {items} items",
            decoded.events.len()
        );
        for event in &decoded.events {
            assert!(!event.dedupe_key.is_empty());
            assert!(
                event
                    .conversation_key
                    .starts_with(&event.business.phone_number_id)
            );
            if matches!(event.body, EventBody::Template(_) | EventBody::Number(_)) {
                // Account-level: no conversation, no number id, always the account.
                assert!(event.conversation_key.is_empty());
                assert!(event.business.phone_number_id.is_empty());
                assert!(event.business.account_id.is_some());
            }
        }
    }
}

// ------------------------------------------------------------------ fixed cases

#[test]
fn deep_array_nesting_is_an_error_not_a_stack_overflow() {
    assert_malformed(decode(&vec![b'['; 100_000]));
    let mut closed = vec![b'['; 100_000];
    closed.extend(std::iter::repeat_n(b']', 100_000));
    assert_malformed(decode(&closed));
}

#[test]
fn deep_object_nesting_is_an_error_not_a_stack_overflow() {
    let body = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
    assert_malformed(decode(body.as_bytes()));
}

#[test]
fn deep_nesting_inside_a_valid_envelope_is_an_error() {
    let deep = "[".repeat(50_000) + &"]".repeat(50_000);
    let body = String::from_utf8(envelope(vec![json!({"placeholder": 0})]))
        .expect("utf8")
        .replace(
            "{\"placeholder\":0}",
            &format!(
                "{{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\",\"type\":\"x\",\"x\":{deep}}}"
            ),
        );
    assert_malformed(decode(body.as_bytes()));
}

#[test]
fn nesting_within_the_limit_is_kept_in_unsupported_raw() {
    // 100 levels inside the item: within serde_json's limit of 128 for the whole body.
    let deep = "[".repeat(100) + &"]".repeat(100);
    let body = String::from_utf8(envelope(vec![json!({"placeholder": 0})]))
        .expect("utf8")
        .replace(
            "{\"placeholder\":0}",
            &format!(
                "{{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\",\"type\":\"x\",\"x\":{deep}}}"
            ),
        );
    let decoded = decode(body.as_bytes()).expect("decodes");
    assert_eq!(decoded.events.len(), 1);
    let EventBody::Message(message) = &decoded.events[0].body else {
        panic!("not a message")
    };
    let MessageContent::Unsupported(unsupported) = &message.content else {
        panic!("not unsupported")
    };
    assert!(
        unsupported
            .raw
            .as_deref()
            .is_some_and(|raw| raw.contains(&deep))
    );
}

#[test]
fn five_megabyte_text_decodes() {
    let text = "a".repeat(5 * 1024 * 1024);
    let body = envelope(vec![text_message("wamid.big", &text)]);
    assert!(body.len() > 5 * 1024 * 1024);
    let decoded = decode(&body).expect("decodes");
    assert_eq!(decoded.events.len(), 1);
    let EventBody::Message(message) = &decoded.events[0].body else {
        panic!("not a message")
    };
    assert_eq!(message.content, MessageContent::Text(text));
}

#[test]
fn five_megabytes_of_junk_is_malformed() {
    // Deterministic pseudo-random bytes (xorshift), not valid UTF-8 somewhere for sure.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let junk: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_malformed(decode(&junk));
    // Valid UTF-8 junk: a 5 MB string that never closes, and 5 MB of letters.
    let unterminated = format!("\"{}", "x".repeat(5 * 1024 * 1024));
    assert_malformed(decode(unterminated.as_bytes()));
    assert_malformed(decode("junk ".repeat(1024 * 1024).as_bytes()));
}

#[test]
fn thousand_messages_in_one_change_decode_in_order() {
    let messages = (0..1000)
        .map(|i| text_message(&format!("wamid.{i}"), &format!("message {i}")))
        .collect();
    let decoded = decode(&envelope(messages)).expect("decodes");
    assert!(decoded.skipped.is_empty());
    assert_eq!(decoded.events.len(), 1000);
    for (i, event) in decoded.events.iter().enumerate() {
        assert_eq!(event.dedupe_key, format!("msg:wamid.{i}"));
        let EventBody::Message(message) = &event.body else {
            panic!("not a message")
        };
        assert_eq!(
            message.content,
            MessageContent::Text(format!("message {i}"))
        );
    }
}

#[test]
fn empty_and_tiny_bodies_are_malformed() {
    for body in [
        &b""[..],
        b" ",
        b"null",
        b"0",
        b"\"\"",
        b"{}",
        b"[]",
        b"\xff",
    ] {
        assert_malformed(decode(body));
    }
}

// ------------------------------------------------------------------ property tests

/// The inbound fixture bodies that parse as JSON: the seeds for mutation.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inbound");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("fixture dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".json") && !name.ends_with(".expected.json")
            })
            .collect();
        files.sort();
        let seeds: Vec<Vec<u8>> = files
            .iter()
            .map(|p| std::fs::read(p).expect("read fixture"))
            .filter(|b| serde_json::from_slice::<Value>(b).is_ok())
            .collect();
        assert!(seeds.len() >= 30, "only {} seed fixtures", seeds.len());
        seeds
    })
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let structural = prop::sample::select(b"{}[]\",:0-.enu\\ ".to_vec());
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (any::<usize>(), structural).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| ByteEdit::Remove { at, len }),
        any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
    ]
}

fn apply(body: &mut Vec<u8>, edit: &ByteEdit) {
    let n = body.len().max(1);
    match edit {
        ByteEdit::Flip { at, bit } => {
            if let Some(b) = body.get_mut(at % n) {
                *b ^= 1 << bit;
            }
        }
        ByteEdit::Set { at, byte } => {
            if let Some(b) = body.get_mut(at % n) {
                *b = *byte;
            }
        }
        ByteEdit::Insert { at, bytes } => {
            let at = at % (body.len() + 1);
            body.splice(at..at, bytes.iter().copied());
        }
        ByteEdit::Remove { at, len } => {
            let at = at % n;
            let end = (at + len).min(body.len());
            if at < end {
                body.drain(at..end);
            }
        }
        ByteEdit::Truncate { at } => body.truncate(at % n),
    }
}

/// Number of JSON values in the tree (the root included).
fn node_count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(node_count).sum(),
        Value::Object(map) => map.values().map(node_count).sum(),
        _ => 0,
    }
}

/// Replaces the `n`-th value in pre-order with `replacement`; returns the `n` left over.
fn replace_nth(value: &mut Value, n: usize, replacement: &Value) -> Option<usize> {
    if n == 0 {
        *value = replacement.clone();
        return None;
    }
    let mut n = n - 1;
    let children: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) => map.values_mut().collect(),
        _ => return Some(n),
    };
    for child in children {
        n = replace_nth(child, n, replacement)?;
    }
    Some(n)
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!([null, 1, "x"])),
        Just(json!({})),
        Just(json!({"id": 7, "type": {"a": []}})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_invariants(&body);
    }

    #[test]
    fn arbitrary_text_never_panics(body in "\\PC{0,512}") {
        check_invariants(body.as_bytes());
    }

    #[test]
    fn byte_mutated_fixtures_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        let seeds = seeds();
        let mut body = seeds[seed.index(seeds.len())].clone();
        for edit in &edits {
            apply(&mut body, edit);
        }
        check_invariants(&body);
    }

    #[test]
    fn structurally_mutated_fixtures_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), replacement()), 1..4),
    ) {
        let seeds = seeds();
        let mut root: Value = serde_json::from_slice(&seeds[seed.index(seeds.len())]).expect("seed is JSON");
        for (at, replacement) in &mutations {
            let n = at.index(node_count(&root));
            replace_nth(&mut root, n, replacement);
        }
        let body = serde_json::to_vec(&root).expect("serialize");
        check_invariants(&body);
    }
}
