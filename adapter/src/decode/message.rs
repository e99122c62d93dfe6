//! `messages[]` items → neutral events: the common fields (id, timestamp, sender, reply
//! context, ad referral), the mapping of every Meta message type to `MessageContent`, and
//! `system` items, which become `EventBody::System` notices rather than messages. A type
//! this adapter does not know (including interactive subtypes) becomes `Unsupported` with
//! the raw item, so nothing of a well-formed item is lost.

use super::{Scope, canonical, status, wire};
use crate::types::{
    ChoiceReply, ChoiceSource, Contact, ContactAddress, ContactEmail, ContactName, ContactOrg,
    ContactPhone, ContactUrl, Edit, EditedContent, Event, EventBody, FormReply, InboundMessage,
    Location, Media, MediaKind, MessageContent, Order, OrderItem, Reaction, Referral, ReplyContext,
    SkippedItem, SystemChange, SystemNotice, Unsupported, User,
};
use serde::Deserialize;
use serde_json::Value;

/// Decodes one `messages[]` item. `Err` is the reason the item is skipped; malformed
/// entries of the item's own `errors[]` are reported in `skipped` under `path`.
pub(super) fn decode(
    item: &Value,
    scope: &Scope,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> Result<Event, String> {
    let msg = wire::Message::deserialize(item).map_err(|e| format!("message: {e}"))?;
    if msg.id.is_empty() {
        return Err("message: `id` is empty".to_string());
    }
    let user = scope
        .user(msg.from.as_deref(), msg.from_user_id.as_deref())
        .ok_or("message has neither `from` nor `from_user_id`")?;
    let dedupe_key = format!("msg:{}", msg.id);

    if msg.kind == "system" {
        let notice = system(&msg, item, user)?;
        let user = notice.user.clone();
        return Ok(scope.event(dedupe_key, Some(&user), EventBody::System(notice)));
    }

    let content = content(&msg, item, path, skipped)?;
    let message = InboundMessage {
        id: msg.id,
        timestamp: msg.timestamp,
        user,
        context: msg.context.map(context),
        referral: msg.referral.map(referral),
        content,
    };
    let user = message.user.clone();
    Ok(scope.event(dedupe_key, Some(&user), EventBody::Message(message)))
}

/// The type-specific object `item[key]`, deserialized.
fn part<'v, T: Deserialize<'v>>(item: &'v Value, key: &str) -> Result<T, String> {
    let value = item
        .get(key)
        .ok_or_else(|| format!("`{key}` object is missing"))?;
    T::deserialize(value).map_err(|e| format!("{key}: {e}"))
}

fn content(
    msg: &wire::Message,
    item: &Value,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> Result<MessageContent, String> {
    let kind = msg.kind.as_str();
    if let Some(media_kind) = media_kind(kind) {
        return Ok(MessageContent::Media(media(media_kind, part(item, kind)?)));
    }
    Ok(match kind {
        "text" => MessageContent::Text(part::<wire::Text>(item, kind)?.body),
        "location" => {
            let l: wire::Location = part(item, kind)?;
            MessageContent::Location(Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name,
                address: l.address,
                url: l.url,
            })
        }
        "contacts" => {
            let cards: Vec<wire::Card> = part(item, kind)?;
            MessageContent::Contacts(cards.into_iter().map(card).collect())
        }
        "interactive" => return interactive(msg, item, path, skipped),
        "button" => {
            let b: wire::Button = part(item, kind)?;
            MessageContent::Choice(ChoiceReply {
                source: ChoiceSource::TemplateButton,
                id: b.payload.unwrap_or_else(|| b.text.clone()),
                title: b.text,
                description: None,
            })
        }
        "reaction" => {
            let r: wire::Reaction = part(item, kind)?;
            MessageContent::Reaction(Reaction {
                message_id: r.message_id,
                emoji: r.emoji.filter(|e| !e.is_empty()),
            })
        }
        "order" => {
            let o: wire::Order = part(item, kind)?;
            let mut items = Vec::with_capacity(o.product_items.len());
            for i in o.product_items {
                let quantity = u32::try_from(i.quantity)
                    .map_err(|_| format!("order: quantity {} is out of range", i.quantity))?;
                items.push(OrderItem {
                    product_retailer_id: i.product_retailer_id,
                    quantity,
                    item_price: i.item_price,
                    currency: i.currency,
                });
            }
            MessageContent::Order(Order {
                catalog_id: o.catalog_id,
                text: o.text,
                items,
            })
        }
        "edit" => {
            let e: wire::EditBody = part(item, kind)?;
            MessageContent::Edit(Edit {
                original_message_id: e.original_message_id,
                content: edited(&e.message),
            })
        }
        "revoke" => {
            MessageContent::Revoke(part::<wire::RevokeBody>(item, kind)?.original_message_id)
        }
        "request_welcome" => MessageContent::RequestWelcome,
        // `unsupported`, `unknown` and every type this version does not know yet.
        other => unsupported(other.to_string(), msg, item, path, skipped),
    })
}

fn interactive(
    msg: &wire::Message,
    item: &Value,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> Result<MessageContent, String> {
    let head: wire::Interactive = part(item, "interactive")?;
    let Some(body) = item.get("interactive") else {
        return Err("`interactive` object is missing".to_string());
    };
    let choice = |source: ChoiceSource| -> Result<MessageContent, String> {
        let reply: wire::Reply = part(body, &head.kind).map_err(|e| format!("interactive.{e}"))?;
        Ok(MessageContent::Choice(ChoiceReply {
            source,
            id: reply.id,
            title: reply.title,
            description: reply
                .description
                .filter(|_| source == ChoiceSource::ListRow),
        }))
    };
    match head.kind.as_str() {
        "button_reply" => choice(ChoiceSource::Button),
        "list_reply" => choice(ChoiceSource::ListRow),
        "nfm_reply" => {
            let nfm: wire::NfmReply =
                part(body, "nfm_reply").map_err(|e| format!("interactive.{e}"))?;
            Ok(MessageContent::FormReply(FormReply {
                name: nfm.name,
                body: nfm.body,
                response_json: nfm.response_json,
            }))
        }
        other => Ok(unsupported(
            format!("interactive.{other}"),
            msg,
            item,
            path,
            skipped,
        )),
    }
}

fn unsupported(
    channel_type: String,
    msg: &wire::Message,
    item: &Value,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> MessageContent {
    let errors = status::error_list(msg.errors.as_deref(), &format!("{path}.errors"), skipped);
    MessageContent::Unsupported(Unsupported {
        channel_type,
        errors,
        raw: Some(canonical::to_string(item)),
    })
}

fn media_kind(kind: &str) -> Option<MediaKind> {
    Some(match kind {
        "image" => MediaKind::Image,
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        "document" => MediaKind::Document,
        "sticker" => MediaKind::Sticker,
        _ => return None,
    })
}

fn media(kind: MediaKind, m: wire::Media) -> Media {
    Media {
        kind,
        id: m.id,
        url: m.url.or(m.link),
        mime_type: m.mime_type,
        sha256: m.sha256,
        caption: m.caption,
        filename: m.filename,
        voice: m.voice.unwrap_or(false),
        animated: m.animated.unwrap_or(false),
    }
}

/// The new content of an edit: `{"type": "text", "text": {...}}` style message object.
fn edited(message: &Value) -> EditedContent {
    let kind = message.get("type").and_then(Value::as_str).or_else(|| {
        ["text", "image", "audio", "video", "document", "sticker"]
            .into_iter()
            .find(|k| message.get(k).is_some())
    });
    match kind {
        Some("text") => {
            if let Ok(text) = part::<wire::Text>(message, "text") {
                return EditedContent::Text(text.body);
            }
        }
        Some(kind) => {
            if let (Some(media_kind), Ok(m)) =
                (media_kind(kind), part::<wire::Media>(message, kind))
            {
                return EditedContent::Media(media(media_kind, m));
            }
        }
        None => {}
    }
    EditedContent::Other(canonical::to_string(message))
}

fn card(c: wire::Card) -> Contact {
    let n = c.name;
    let formatted_name = n
        .formatted_name
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| {
            [
                &n.prefix,
                &n.first_name,
                &n.middle_name,
                &n.last_name,
                &n.suffix,
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
        });
    Contact {
        name: ContactName {
            formatted_name,
            first_name: n.first_name,
            last_name: n.last_name,
            middle_name: n.middle_name,
            prefix: n.prefix,
            suffix: n.suffix,
        },
        phones: c
            .phones
            .into_iter()
            .filter_map(|p| {
                let phone = p.phone.or_else(|| p.wa_id.clone())?;
                Some(ContactPhone {
                    phone,
                    wa_id: p.wa_id,
                    kind: p.kind,
                })
            })
            .collect(),
        emails: c
            .emails
            .into_iter()
            .filter_map(|e| {
                Some(ContactEmail {
                    email: e.email?,
                    kind: e.kind,
                })
            })
            .collect(),
        urls: c
            .urls
            .into_iter()
            .filter_map(|u| {
                Some(ContactUrl {
                    url: u.url?,
                    kind: u.kind,
                })
            })
            .collect(),
        addresses: c
            .addresses
            .into_iter()
            .map(|a| ContactAddress {
                street: a.street,
                city: a.city,
                state: a.state,
                zip: a.zip,
                country: a.country,
                country_code: a.country_code,
                kind: a.kind,
            })
            .collect(),
        org: c.org.map(|o| ContactOrg {
            company: o.company,
            department: o.department,
            title: o.title,
        }),
        birthday: c.birthday,
    }
}

fn context(c: wire::Context) -> ReplyContext {
    let frequently_forwarded = c.frequently_forwarded.unwrap_or(false);
    let referred_product = c
        .referred_product
        .and_then(|p| Some((p.catalog_id?, p.product_retailer_id?)));
    ReplyContext {
        message_id: c.id,
        sender: c.from,
        // A message forwarded many times is a forwarded message.
        forwarded: c.forwarded.unwrap_or(false) || frequently_forwarded,
        frequently_forwarded,
        referred_product,
    }
}

fn referral(r: wire::Referral) -> Referral {
    Referral {
        source_url: r.source_url,
        source_id: r.source_id,
        source_type: r.source_type,
        headline: r.headline,
        body: r.body,
        media_type: r.media_type,
        image_url: r.image_url,
        video_url: r.video_url,
        thumbnail_url: r.thumbnail_url,
        click_id: r.ctwa_clid,
    }
}

/// A `system` item: number or identity change, or another notice by type name.
fn system(msg: &wire::Message, item: &Value, user: User) -> Result<SystemNotice, String> {
    let s: wire::System = part(item, "system")?;
    let kind = s.kind.unwrap_or_else(|| "system".to_string());
    let change = match kind.as_str() {
        "customer_changed_number" | "user_changed_number" => {
            let phone = s.new_wa_id.or(s.wa_id).filter(|p| !p.is_empty());
            let user_id = s.new_user_id.or(s.user_id).filter(|u| !u.is_empty());
            if phone.is_none() && user_id.is_none() {
                // No new identity to report: keep the notice by name.
                SystemChange::Other(kind)
            } else {
                SystemChange::NumberChanged(User {
                    user_id,
                    phone,
                    name: None,
                    username: None,
                })
            }
        }
        "customer_identity_changed" | "user_identity_changed" => SystemChange::IdentityChanged,
        _ => SystemChange::Other(kind),
    };
    Ok(SystemNotice {
        id: msg.id.clone(),
        timestamp: msg.timestamp,
        user,
        change,
        body: s.body,
    })
}
