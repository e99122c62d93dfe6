//! Media, location and contact-card messages.
//!
//! Media: `{"type": kind, kind: {"link" | "id", "caption", "filename"}}`; `filename` is sent
//! for documents only. Audio and stickers cannot carry a caption, and a caption over 1024
//! chars does not fit: in both cases the media goes out without a caption and the caption
//! follows as text message(s) (never cut, so nothing the bot wrote is lost). Captions are
//! markdown like text outputs.
//!
//! Contacts follow Meta's card shape; Meta wants at least one name part besides
//! `formatted_name`, so a card with none gets `first_name` = `formatted_name`.

use serde_json::{Map, Value, json};

use super::fit::{char_len, non_blank};
use super::interactive::media_ref;
use super::{Message, formatted, invalid, texts};
use crate::info::LIMITS;
use crate::types::{AdapterError, Contact, LocationOutput, MediaKind, MediaOutput};

pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Document => "document",
        MediaKind::Sticker => "sticker",
    }
}

pub(crate) fn media(m: &MediaOutput) -> Result<Vec<Message>, AdapterError> {
    let object = media_ref(&m.source)?;
    let caption = m.caption.as_deref().map(formatted).unwrap_or_default();
    let filename = match m.kind {
        MediaKind::Document => non_blank(m.filename.as_deref()),
        _ => None,
    };
    let captionable = matches!(
        m.kind,
        MediaKind::Image | MediaKind::Video | MediaKind::Document
    );
    Ok(with_caption(
        kind_name(m.kind),
        object,
        &caption,
        filename,
        captionable,
    ))
}

/// The media message, with the caption inside when it may and does fit, else after it.
pub(crate) fn with_caption(
    kind: &'static str,
    mut object: Value,
    caption: &str,
    filename: Option<&str>,
    captionable: bool,
) -> Vec<Message> {
    if let Some(name) = filename {
        object["filename"] = json!(name);
    }
    let caption = caption.trim();
    let mut after = Vec::new();
    if !caption.is_empty() {
        if captionable && char_len(caption) <= LIMITS.max_caption_length as usize {
            object["caption"] = json!(caption);
        } else {
            after = texts(caption);
        }
    }
    let mut messages = vec![Message::new(kind, object)];
    messages.extend(after);
    messages
}

pub(crate) fn location(l: &LocationOutput) -> Result<Message, AdapterError> {
    if !(l.latitude.is_finite() && (-90.0..=90.0).contains(&l.latitude)) {
        return Err(invalid(format!("latitude {} is out of range", l.latitude)));
    }
    if !(l.longitude.is_finite() && (-180.0..=180.0).contains(&l.longitude)) {
        return Err(invalid(format!(
            "longitude {} is out of range",
            l.longitude
        )));
    }
    let mut object = Map::new();
    object.insert("latitude".into(), json!(l.latitude));
    object.insert("longitude".into(), json!(l.longitude));
    put(&mut object, "name", l.name.as_deref());
    put(&mut object, "address", l.address.as_deref());
    Ok(Message::new("location", Value::Object(object)))
}

pub(crate) fn contacts(cards: &[Contact]) -> Result<Message, AdapterError> {
    if cards.is_empty() {
        return Err(invalid("contacts output without contacts"));
    }
    let cards = cards.iter().map(contact).collect::<Result<Vec<_>, _>>()?;
    Ok(Message::new("contacts", Value::Array(cards)))
}

fn contact(c: &Contact) -> Result<Value, AdapterError> {
    let formatted_name = non_blank(Some(&c.name.formatted_name))
        .ok_or_else(|| invalid("a contact has an empty formatted name"))?;
    let mut name = Map::new();
    name.insert("formatted_name".into(), json!(formatted_name));
    put(&mut name, "first_name", c.name.first_name.as_deref());
    put(&mut name, "last_name", c.name.last_name.as_deref());
    put(&mut name, "middle_name", c.name.middle_name.as_deref());
    put(&mut name, "prefix", c.name.prefix.as_deref());
    put(&mut name, "suffix", c.name.suffix.as_deref());
    if name.len() == 1 {
        name.insert("first_name".into(), json!(formatted_name));
    }

    let mut card = Map::new();
    card.insert("name".into(), Value::Object(name));
    let phones = c.phones.iter().filter_map(|p| {
        let mut o = Map::new();
        put(&mut o, "phone", Some(&p.phone));
        put(&mut o, "wa_id", p.wa_id.as_deref());
        put(&mut o, "type", p.kind.as_deref());
        o.contains_key("phone").then_some(Value::Object(o))
    });
    put_list(&mut card, "phones", phones.collect());
    let emails = c.emails.iter().filter_map(|e| {
        let mut o = Map::new();
        put(&mut o, "email", Some(&e.email));
        put(&mut o, "type", e.kind.as_deref());
        o.contains_key("email").then_some(Value::Object(o))
    });
    put_list(&mut card, "emails", emails.collect());
    let urls = c.urls.iter().filter_map(|u| {
        let mut o = Map::new();
        put(&mut o, "url", Some(&u.url));
        put(&mut o, "type", u.kind.as_deref());
        o.contains_key("url").then_some(Value::Object(o))
    });
    put_list(&mut card, "urls", urls.collect());
    let addresses = c.addresses.iter().filter_map(|a| {
        let mut o = Map::new();
        put(&mut o, "street", a.street.as_deref());
        put(&mut o, "city", a.city.as_deref());
        put(&mut o, "state", a.state.as_deref());
        put(&mut o, "zip", a.zip.as_deref());
        put(&mut o, "country", a.country.as_deref());
        put(&mut o, "country_code", a.country_code.as_deref());
        let has_content = !o.is_empty();
        put(&mut o, "type", a.kind.as_deref());
        has_content.then_some(Value::Object(o))
    });
    put_list(&mut card, "addresses", addresses.collect());
    if let Some(org) = &c.org {
        let mut o = Map::new();
        put(&mut o, "company", org.company.as_deref());
        put(&mut o, "department", org.department.as_deref());
        put(&mut o, "title", org.title.as_deref());
        if !o.is_empty() {
            card.insert("org".into(), Value::Object(o));
        }
    }
    put(&mut card, "birthday", c.birthday.as_deref());
    Ok(Value::Object(card))
}

/// Inserts a trimmed, non-blank text field; skips blank ones.
fn put(object: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = non_blank(value) {
        object.insert(key.into(), json!(v));
    }
}

fn put_list(object: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        object.insert(key.into(), Value::Array(items));
    }
}
