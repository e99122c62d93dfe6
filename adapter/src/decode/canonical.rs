//! Canonical JSON text: object keys sorted by code point, no whitespace, numbers and
//! strings as serde_json writes them. Used wherever the decoder turns channel JSON back
//! into text (raw items of unsupported messages, edited content it cannot model) and for
//! the hash in channel-error dedupe keys, so the same input gives the same text and key
//! whatever serde_json features the build enables.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `value`. Depth is bounded by the parser's recursion limit.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// The first 16 hex digits of the SHA-256 of the canonical text of `value`.
pub fn short_hash(value: &Value) -> String {
    let digest = Sha256::digest(to_string(value).as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(16);
    hex
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key.as_str()).unwrap_or_default());
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
        scalar => push_scalar(scalar, out),
    }
}

/// Writes a scalar (null, bool, number, string) with serde_json's escaping.
fn push_scalar(value: &Value, out: &mut String) {
    // Serialising a scalar cannot fail; fall back to `null` rather than panic.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".to_string()));
}
