//! Webhook decoding: one Meta webhook body → every entry × change × item as neutral events.
//!
//! This file owns the envelope walk (`object`, `entry[]`, `changes[]`, `value`), the
//! business and user identity of a change, the dedupe and conversation keys and the
//! `skipped` report. A body that is not a WhatsApp webhook at all is
//! [`AdapterError::Malformed`]; anything smaller that is wrong (an entry, a change, one
//! item) is skipped, reported with its JSON path, and the rest of the batch still decodes.
//! The body is parsed once into a `serde_json::Value` (serde_json's recursion limit stays
//! on, so deep nesting is an error, not a stack overflow); each item is then read from that
//! tree by reference, never cloned whole.
//!
//! Changes of the `messages` field carry items; the account-level fields (template status,
//! quality and category, number quality) carry one change each; every other field is
//! skipped with its name.
//!
//! - [`wire`]: serde structs for Meta's item shapes.
//! - [`message`]: `messages[]` → message and system events.
//! - [`status`]: `statuses[]` and `errors[]` → status and channel-error events.
//! - [`account`]: account-level changes → template and number events.
//! - [`canonical`]: canonical JSON text and hashes.

mod account;
mod canonical;
mod message;
mod status;
mod wire;

use crate::types::{AdapterError, Business, Decoded, Event, EventBody, SkippedItem, User};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The `object` of every WhatsApp Business Account webhook.
const OBJECT: &str = "whatsapp_business_account";

/// Decodes one webhook body (already signature-checked by the host).
pub fn decode(body: &[u8]) -> Result<Decoded, AdapterError> {
    let malformed = |reason: String| AdapterError::Malformed(reason);
    let text = std::str::from_utf8(body)
        .map_err(|e| malformed(format!("body is not valid UTF-8: {e}")))?;
    let root: Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("body is not JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(malformed(format!(
            "body is {}, not a JSON object",
            kind_of(&root)
        )));
    };
    match root.get("object") {
        Some(Value::String(object)) if object == OBJECT => {}
        Some(Value::String(object)) => {
            return Err(malformed(format!(
                "`object` is {object:?}, expected {OBJECT:?}"
            )));
        }
        Some(other) => {
            return Err(malformed(format!(
                "`object` is {}, not a string",
                kind_of(other)
            )));
        }
        None => return Err(malformed("`object` is missing".to_string())),
    }
    let entries = match root.get("entry") {
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(malformed(format!(
                "`entry` is {}, not an array",
                kind_of(other)
            )));
        }
        None => return Err(malformed("`entry` is missing".to_string())),
    };

    let mut out = Decoded {
        events: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, entry) in entries.iter().enumerate() {
        decode_entry(i, entry, &mut out);
    }
    Ok(out)
}

fn decode_entry(i: usize, entry: &Value, out: &mut Decoded) {
    let path = &format!("entry[{i}]");
    let Some(entry) = entry.as_object() else {
        return skip(
            out,
            path,
            format!("entry is {}, not an object", kind_of(entry)),
        );
    };
    let account_id = entry.get("id").and_then(id_text);
    let time = account::entry_time(entry.get("time"));
    let changes = match entry.get("changes") {
        Some(Value::Array(changes)) => changes,
        Some(other) => {
            return skip(
                out,
                path,
                format!("`changes` is {}, not an array", kind_of(other)),
            );
        }
        None => return skip(out, path, "entry has no `changes`".to_string()),
    };
    for (j, change) in changes.iter().enumerate() {
        let origin = account::Origin {
            account_id: account_id.as_deref(),
            time,
            entry: i,
            change: j,
        };
        decode_change(&format!("{path}.changes[{j}]"), &origin, change, out);
    }
}

fn decode_change(path: &str, origin: &account::Origin, change: &Value, out: &mut Decoded) {
    let Some(change) = change.as_object() else {
        return skip(
            out,
            path,
            format!("change is {}, not an object", kind_of(change)),
        );
    };
    match change.get("field") {
        Some(Value::String(field)) if field == "messages" => {}
        Some(Value::String(field)) => {
            let Some(field) = account::Field::parse(field) else {
                return skip(
                    out,
                    path,
                    format!("webhook field {field:?} is not decoded by this adapter"),
                );
            };
            let Some(value) = change.get("value").and_then(Value::as_object) else {
                return skip(out, path, "change has no `value` object".to_string());
            };
            return match account::decode(field, value, origin) {
                Ok(event) => out.events.push(event),
                Err(reason) => skip(out, &format!("{path}.value"), reason),
            };
        }
        Some(other) => {
            return skip(
                out,
                path,
                format!("`field` is {}, not a string", kind_of(other)),
            );
        }
        None => return skip(out, path, "change has no `field`".to_string()),
    }
    let Some(value) = change.get("value").and_then(Value::as_object) else {
        return skip(out, path, "change has no `value` object".to_string());
    };
    let metadata = value.get("metadata").and_then(Value::as_object);
    let Some(phone_number_id) = metadata
        .and_then(|m| m.get("phone_number_id"))
        .and_then(id_text)
    else {
        return skip(
            out,
            path,
            "`value.metadata.phone_number_id` is missing".to_string(),
        );
    };
    let business = Business {
        phone_number_id,
        display_number: metadata
            .and_then(|m| m.get("display_phone_number"))
            .and_then(id_text),
        account_id: origin.account_id.map(str::to_string),
    };

    let mut contacts = Vec::new();
    for (k, item) in items(out, path, value, "contacts") {
        match wire::Contact::deserialize(item) {
            Ok(contact) => contacts.push(contact),
            Err(e) => skip(
                out,
                &format!("{path}.value.contacts[{k}]"),
                format!("contact: {e}"),
            ),
        }
    }
    let scope = Scope {
        business: &business,
        contacts: &contacts,
    };

    for (k, item) in items(out, path, value, "messages") {
        let item_path = format!("{path}.value.messages[{k}]");
        match message::decode(item, &scope, &item_path, &mut out.skipped) {
            Ok(event) => out.events.push(event),
            Err(reason) => skip(out, &item_path, reason),
        }
    }
    for (k, item) in items(out, path, value, "statuses") {
        let item_path = format!("{path}.value.statuses[{k}]");
        match status::decode_status(item, &scope, &item_path, &mut out.skipped) {
            Ok(event) => out.events.push(event),
            Err(reason) => skip(out, &item_path, reason),
        }
    }
    for (k, item) in items(out, path, value, "errors") {
        match status::decode_channel_error(item, &scope) {
            Ok(event) => out.events.push(event),
            Err(reason) => skip(out, &format!("{path}.value.errors[{k}]"), reason),
        }
    }
}

/// The elements of `value[key]`: none when absent or `null`; reported when not an array.
fn items<'v>(
    out: &mut Decoded,
    path: &str,
    value: &'v Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = (usize, &'v Value)> + use<'v> {
    let list: &[Value] = match value.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(other) => {
            skip(
                out,
                &format!("{path}.value.{key}"),
                format!("`{key}` is {}, not an array", kind_of(other)),
            );
            &[]
        }
    };
    list.iter().enumerate()
}

/// What items of one change share: the business number and the change's contacts.
pub(crate) struct Scope<'a> {
    business: &'a Business,
    contacts: &'a [wire::Contact],
}

impl Scope<'_> {
    /// The user behind a phone (`from`, `recipient_id`) and/or a BSUID (`from_user_id`,
    /// `recipient_user_id`), completed from the matching `contacts[]` entry. `None` when
    /// neither identity is known.
    fn user(&self, phone: Option<&str>, user_id: Option<&str>) -> Option<User> {
        let phone = phone.filter(|p| !p.is_empty());
        let user_id = user_id.filter(|u| !u.is_empty());
        let contact = self.contacts.iter().find(|c| {
            (phone.is_some() && c.wa_id.as_deref() == phone)
                || (user_id.is_some() && c.user_id.as_deref() == user_id)
        });
        let from_contact = |f: fn(&wire::Contact) -> Option<&String>| {
            contact.and_then(f).filter(|s| !s.is_empty()).cloned()
        };
        let user_id = user_id
            .map(str::to_string)
            .or_else(|| from_contact(|c| c.user_id.as_ref()));
        let phone = phone
            .map(str::to_string)
            .or_else(|| from_contact(|c| c.wa_id.as_ref()));
        if user_id.is_none() && phone.is_none() {
            return None;
        }
        Some(User {
            user_id,
            phone,
            name: from_contact(|c| c.profile.as_ref()?.name.as_ref()),
            username: from_contact(|c| {
                c.username
                    .as_ref()
                    .or(c.profile.as_ref()?.username.as_ref())
            }),
        })
    }

    /// An event of this change. `user` is the conversation's user; `None` keys the
    /// conversation on the business number alone (channel errors).
    fn event(&self, dedupe_key: String, user: Option<&User>, body: EventBody) -> Event {
        let phone_number_id = &self.business.phone_number_id;
        let conversation_key = match user.and_then(|u| u.user_id.as_ref().or(u.phone.as_ref())) {
            Some(user_key) => format!("{phone_number_id}:{user_key}"),
            None => phone_number_id.clone(),
        };
        Event {
            dedupe_key,
            conversation_key,
            business: self.business.clone(),
            body,
        }
    }
}

fn skip(out: &mut Decoded, path: &str, reason: String) {
    out.skipped.push(SkippedItem {
        path: path.to_string(),
        reason,
    });
}

/// An id Meta sends as a string (or, in some test tools, a bare integer).
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value's kind, for reasons.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
