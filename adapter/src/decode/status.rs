//! `statuses[]` items → `EventBody::Status`, `value.errors[]` items → `EventBody::Error`,
//! and the mapping of Meta's error objects to `ChannelError` shared by messages and
//! statuses. An unknown status name skips the item (a future state must not be mistaken
//! for a known one).

use super::{Scope, canonical, wire};
use crate::types::{
    ChannelError, ConversationInfo, DeliveryStatus, Event, EventBody, Pricing, SkippedItem,
    StatusUpdate,
};
use serde::Deserialize;
use serde_json::Value;

/// Decodes one `statuses[]` item. `Err` is the reason the item is skipped.
pub(super) fn decode_status(
    item: &Value,
    scope: &Scope,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> Result<Event, String> {
    let s = wire::Status::deserialize(item).map_err(|e| format!("status: {e}"))?;
    if s.id.is_empty() {
        return Err("status: `id` is empty".to_string());
    }
    let name = s.status.to_ascii_lowercase();
    let status = match name.as_str() {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "played" => DeliveryStatus::Played,
        "failed" => DeliveryStatus::Failed,
        _ => return Err(format!("status: unknown status {:?}", s.status)),
    };
    let recipient = scope
        .user(s.recipient_id.as_deref(), s.recipient_user_id.as_deref())
        .ok_or("status has neither `recipient_id` nor `recipient_user_id`")?;
    let errors = error_list(s.errors.as_deref(), &format!("{path}.errors"), skipped);
    let update = StatusUpdate {
        message_id: s.id,
        status,
        timestamp: s.timestamp,
        recipient,
        conversation: s.conversation.map(|c| ConversationInfo {
            id: c.id,
            expiration_timestamp: c.expiration_timestamp,
            origin_type: c.origin.and_then(|o| o.kind),
        }),
        pricing: s.pricing.map(|p| Pricing {
            billable: p.billable,
            model: p.pricing_model,
            category: p.category,
            pricing_type: p.kind,
        }),
        errors,
        callback_data: s.biz_opaque_callback_data,
    };
    let dedupe_key = format!("status:{}:{name}", update.message_id);
    let recipient = update.recipient.clone();
    Ok(scope.event(dedupe_key, Some(&recipient), EventBody::Status(update)))
}

/// Decodes one `value.errors[]` item into a channel-level error event.
pub(super) fn decode_channel_error(item: &Value, scope: &Scope) -> Result<Event, String> {
    let error = channel_error(item)?;
    let dedupe_key = format!(
        "error:{}:{}:{}",
        scope.business.phone_number_id,
        error.code,
        canonical::short_hash(item)
    );
    Ok(scope.event(dedupe_key, None, EventBody::Error(error)))
}

/// Meta's error object → `ChannelError`; `Err` when it has no integer `code`.
pub(super) fn channel_error(item: &Value) -> Result<ChannelError, String> {
    let e = wire::Error::deserialize(item).map_err(|e| format!("error: {e}"))?;
    Ok(ChannelError {
        code: e.code,
        title: e.title,
        message: e.message,
        details: e.error_data.and_then(|d| d.details),
        href: e.href,
    })
}

/// An item's own `errors[]`; malformed entries are reported under `path[i]` and left out.
pub(super) fn error_list(
    errors: Option<&[Value]>,
    path: &str,
    skipped: &mut Vec<SkippedItem>,
) -> Vec<ChannelError> {
    let mut out = Vec::new();
    for (i, item) in errors.unwrap_or_default().iter().enumerate() {
        match channel_error(item) {
            Ok(error) => out.push(error),
            Err(reason) => skipped.push(SkippedItem {
                path: format!("{path}[{i}]"),
                reason,
            }),
        }
    }
    out
}
