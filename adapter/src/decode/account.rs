//! Account-level changes (WIT 0.1.1) → `EventBody::Template` and `EventBody::Number`:
//! the webhook fields `message_template_status_update`, `message_template_quality_update`,
//! `template_category_update` and `phone_number_quality_update`. Their `value` is the change
//! itself (no `metadata`, `contacts` or item lists), so one change is one event, or one
//! skipped item with the reason.
//!
//! The events belong to the account, not to a conversation: the conversation key is empty,
//! `business.account-id` is the WABA id (`entry.id`, required here) and
//! `business.phone-number-id` is empty (Meta names a number only by its display number).
//!
//! Dedupe keys: a redelivery of a webhook is the same body, so a key built from the entry
//! and the change alone is stable across Meta's retries. Two real changes differ in their
//! trigger time (`entry.time`) or in what changed, so the key holds both:
//! `tpl:{waba}:{template-id}:{status|quality|category}:{event or new value}:{when}` and
//! `num:{waba}:{display-number}:{event}:{limit}:{when}`, where `when` is `entry.time` or,
//! when Meta leaves it out, `p{entry}.{change}`, the change's position in the body (the
//! only thing left that tells two changes of one body apart).

use super::wire;
use crate::types::{
    Business, Event, EventBody, NumberUpdate, RatingChange, TemplateChange, TemplateStatusChange,
    TemplateUpdate,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The account-level webhook fields this adapter decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    TemplateStatus,
    TemplateQuality,
    TemplateCategory,
    NumberQuality,
}

impl Field {
    /// The field for a change's `field` name; `None` for every other name.
    pub(super) fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "message_template_status_update" => Field::TemplateStatus,
            "message_template_quality_update" => Field::TemplateQuality,
            "template_category_update" => Field::TemplateCategory,
            "phone_number_quality_update" => Field::NumberQuality,
            _ => return None,
        })
    }

    /// Meta's name, for reasons.
    fn name(self) -> &'static str {
        match self {
            Field::TemplateStatus => "message_template_status_update",
            Field::TemplateQuality => "message_template_quality_update",
            Field::TemplateCategory => "template_category_update",
            Field::NumberQuality => "phone_number_quality_update",
        }
    }
}

/// Where a change sits: its entry's account and trigger time, and its position in the body.
pub(super) struct Origin<'a> {
    /// `entry.id`, the WABA id.
    pub account_id: Option<&'a str>,
    /// `entry.time`, unix seconds, when present and readable.
    pub time: Option<u64>,
    /// Index of the entry in `entry[]`.
    pub entry: usize,
    /// Index of the change in the entry's `changes[]`.
    pub change: usize,
}

impl Origin<'_> {
    /// The last part of a dedupe key: the trigger time, or the position in the body.
    fn when(&self) -> String {
        match self.time {
            Some(time) => time.to_string(),
            None => format!("p{}.{}", self.entry, self.change),
        }
    }
}

/// Decodes the `value` of one account-level change. `Err` is the reason it is skipped.
pub(super) fn decode(
    field: Field,
    value: &Map<String, Value>,
    origin: &Origin,
) -> Result<Event, String> {
    let what = field.name();
    let account_id = origin
        .account_id
        .ok_or_else(|| format!("{what}: `entry.id` (the account id) is missing"))?;
    let (body, dedupe_key) = match field {
        Field::NumberQuality => {
            let n = wire::NumberQuality::deserialize(value).map_err(|e| format!("{what}: {e}"))?;
            let event = upper(&n.event).ok_or_else(|| format!("{what}: `event` is empty"))?;
            let messaging_limit = n.max_daily_conversations_per_business.or(n.current_limit);
            let key = format!(
                "num:{account_id}:{}:{event}:{}:{}",
                n.display_phone_number.as_deref().unwrap_or_default(),
                messaging_limit.as_deref().unwrap_or_default(),
                origin.when()
            );
            let update = NumberUpdate {
                display_number: n.display_phone_number,
                event,
                messaging_limit,
            };
            (EventBody::Number(update), key)
        }
        _ => {
            let (update, tag, discriminator) = template(field, value)?;
            let key = format!(
                "tpl:{account_id}:{}:{tag}:{discriminator}:{}",
                update.template_id,
                origin.when()
            );
            (EventBody::Template(update), key)
        }
    };
    let display_number = match &body {
        EventBody::Number(n) => n.display_number.clone(),
        _ => None,
    };
    Ok(Event {
        dedupe_key,
        conversation_key: String::new(),
        business: Business {
            phone_number_id: String::new(),
            display_number,
            account_id: Some(account_id.to_string()),
        },
        body,
    })
}

/// A template change: the update, the key tag of its kind and what changed (status event
/// or new value), for the dedupe key.
fn template(
    field: Field,
    value: &Map<String, Value>,
) -> Result<(TemplateUpdate, &'static str, String), String> {
    let what = field.name();
    let fail = |e: serde_json::Error| format!("{what}: {e}");
    let (id, name, language, change, tag) = match field {
        Field::TemplateStatus => {
            let t = wire::TemplateStatus::deserialize(value).map_err(fail)?;
            let status = upper(&t.event).ok_or_else(|| format!("{what}: `event` is empty"))?;
            let change = TemplateStatusChange {
                status,
                // Meta says `NONE` when there is no reason.
                reason: t.reason.filter(|r| !r.eq_ignore_ascii_case("NONE")),
                detail: status_detail(t.other_info, t.rejection_info, t.disable_info),
            };
            let change = TemplateChange::Status(change);
            (
                t.message_template_id,
                t.message_template_name,
                t.message_template_language,
                change,
                "status",
            )
        }
        Field::TemplateQuality => {
            let t = wire::TemplateQuality::deserialize(value).map_err(fail)?;
            let change = TemplateChange::Quality(rating(
                what,
                t.previous_quality_score,
                &t.new_quality_score,
                "new_quality_score",
            )?);
            (
                t.message_template_id,
                t.message_template_name,
                t.message_template_language,
                change,
                "quality",
            )
        }
        Field::TemplateCategory => {
            let t = wire::TemplateCategory::deserialize(value).map_err(fail)?;
            // An impending change (24 hours ahead) has not happened: `new_category` is still
            // the current one, and 0.1.1 has no home for a warning.
            if let Some(correct) = t.correct_category {
                return Err(format!(
                    "{what}: an impending change to {correct:?} is not a change yet"
                ));
            }
            let change = TemplateChange::Category(rating(
                what,
                t.previous_category,
                &t.new_category,
                "new_category",
            )?);
            (
                t.message_template_id,
                t.message_template_name,
                t.message_template_language,
                change,
                "category",
            )
        }
        Field::NumberQuality => return Err(format!("{what}: not a template change")),
    };
    if id.is_empty() {
        return Err(format!("{what}: `message_template_id` is empty"));
    }
    let discriminator = match &change {
        TemplateChange::Status(s) => s.status.clone(),
        TemplateChange::Quality(r) | TemplateChange::Category(r) => r.current.clone(),
    };
    let update = TemplateUpdate {
        template_id: id,
        name,
        language,
        change,
    };
    Ok((update, tag, discriminator))
}

/// A rating change; `Err` when the new value is empty.
fn rating(
    what: &str,
    previous: Option<String>,
    current: &str,
    key: &str,
) -> Result<RatingChange, String> {
    if current.is_empty() {
        return Err(format!("{what}: `{key}` is empty"));
    }
    Ok(RatingChange {
        previous,
        current: current.to_string(),
    })
}

/// The human-readable detail of a status change: the first of `other_info.description`
/// (or its `title`), `rejection_info.recommendation` (or its `reason`) and
/// `disable_info.disable_date` that Meta sent.
fn status_detail(
    other: Option<wire::OtherInfo>,
    rejection: Option<wire::RejectionInfo>,
    disable: Option<wire::DisableInfo>,
) -> Option<String> {
    other
        .and_then(|o| o.description.or(o.title))
        .or_else(|| rejection.and_then(|r| r.recommendation.or(r.reason)))
        .or_else(|| {
            disable
                .and_then(|d| d.disable_date)
                .map(|date| format!("disabled at {date}"))
        })
}

/// `text` in ASCII upper case; `None` when empty.
fn upper(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_ascii_uppercase())
}

/// `entry.time`: unix seconds as a number or a decimal string.
pub(super) fn entry_time(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::decode;
    use crate::types::{Decoded, Event, EventBody, TemplateChange};
    use serde_json::{Value, json};

    /// One entry of account `102290129340398` with these changes (`time` left out when
    /// `None`).
    fn body(time: Option<Value>, changes: Value) -> Vec<u8> {
        let mut entry = json!({ "id": "102290129340398", "changes": changes });
        if let Some(time) = time {
            entry["time"] = time;
        }
        serde_json::to_vec(&json!({ "object": "whatsapp_business_account", "entry": [entry] }))
            .expect("serialize")
    }

    fn decoded(time: Option<Value>, changes: Value) -> Decoded {
        decode(&body(time, changes)).expect("a webhook")
    }

    fn status(event: &str, id: Value) -> Value {
        json!({
            "field": "message_template_status_update",
            "value": {
                "event": event,
                "message_template_id": id,
                "message_template_name": "order_confirmation",
                "message_template_language": "en_US",
                "reason": "NONE"
            }
        })
    }

    fn only_event(decoded: &Decoded) -> &Event {
        assert!(decoded.skipped.is_empty(), "skipped: {:?}", decoded.skipped);
        assert_eq!(decoded.events.len(), 1, "{decoded:?}");
        &decoded.events[0]
    }

    #[test]
    fn numeric_and_string_template_ids_give_the_same_event() {
        let number = decoded(
            Some(json!(1717171717)),
            json!([status("APPROVED", json!(1689556908129832u64))]),
        );
        let text = decoded(
            Some(json!("1717171717")),
            json!([status("APPROVED", json!("1689556908129832"))]),
        );
        assert_eq!(number, text);
        let event = only_event(&number);
        assert_eq!(
            event.dedupe_key,
            "tpl:102290129340398:1689556908129832:status:APPROVED:1717171717"
        );
        assert_eq!(event.conversation_key, "");
        assert_eq!(event.business.phone_number_id, "");
        assert_eq!(
            event.business.account_id.as_deref(),
            Some("102290129340398")
        );
        match &event.body {
            EventBody::Template(t) => {
                assert_eq!(t.template_id, "1689556908129832");
                match &t.change {
                    TemplateChange::Status(s) => {
                        assert_eq!(s.status, "APPROVED");
                        assert_eq!(s.reason, None, "NONE is no reason");
                    }
                    other => panic!("not a status change: {other:?}"),
                }
            }
            other => panic!("not a template event: {other:?}"),
        }
    }

    #[test]
    fn a_redelivery_keeps_its_key_and_a_new_change_gets_another() {
        let key = |time: Option<Value>, event: &str| {
            only_event(&decoded(time, json!([status(event, json!(42))])))
                .dedupe_key
                .clone()
        };
        let first = key(Some(json!(100)), "APPROVED");
        assert_eq!(first, key(Some(json!(100)), "APPROVED"), "a redelivery");
        assert_ne!(first, key(Some(json!(100)), "PAUSED"), "another event");
        assert_ne!(
            first,
            key(Some(json!(200)), "APPROVED"),
            "approved again later"
        );
        // Without `entry.time` the position tells two changes of one body apart.
        let both = decoded(
            None,
            json!([status("APPROVED", json!(42)), status("APPROVED", json!(42))]),
        );
        assert_eq!(both.events.len(), 2);
        assert_ne!(both.events[0].dedupe_key, both.events[1].dedupe_key);
        assert!(
            both.events[1].dedupe_key.ends_with(":p0.1"),
            "{}",
            both.events[1].dedupe_key
        );
    }

    #[test]
    fn status_is_upper_cased_and_detail_comes_from_other_info() {
        let change = json!({
            "field": "message_template_status_update",
            "value": {
                "event": "paused",
                "message_template_id": 7,
                "message_template_name": "promo",
                "message_template_language": "en",
                "reason": null,
                "other_info": { "title": "SECOND_PAUSE", "description": "Paused for 6 hours." }
            }
        });
        let decoded = decoded(Some(json!(1)), json!([change]));
        let EventBody::Template(t) = &only_event(&decoded).body else {
            panic!("not a template event");
        };
        let TemplateChange::Status(s) = &t.change else {
            panic!("not a status change");
        };
        assert_eq!(s.status, "PAUSED");
        assert_eq!(s.reason, None);
        assert_eq!(s.detail.as_deref(), Some("Paused for 6 hours."));
    }

    #[test]
    fn number_updates_prefer_the_newer_limit_and_ignore_extra_keys() {
        let change = json!({
            "field": "phone_number_quality_update",
            "value": {
                "display_phone_number": "15550783881",
                "event": "UPGRADE",
                "current_limit": "TIER_1K",
                "old_limit": "TIER_250",
                "max_daily_conversations_per_business": "TIER_10K",
                "max_daily_conversation_per_phone": 1000
            }
        });
        let decoded = decoded(Some(json!(5)), json!([change]));
        let event = only_event(&decoded);
        assert_eq!(
            event.dedupe_key,
            "num:102290129340398:15550783881:UPGRADE:TIER_10K:5"
        );
        assert_eq!(
            event.business.display_number.as_deref(),
            Some("15550783881")
        );
        let EventBody::Number(n) = &event.body else {
            panic!("not a number event");
        };
        assert_eq!(n.messaging_limit.as_deref(), Some("TIER_10K"));
        assert_eq!(n.event, "UPGRADE");
    }

    #[test]
    fn malformed_changes_are_skipped_with_a_reason_and_the_rest_decodes() {
        let decoded = decoded(
            Some(json!(1)),
            json!([
                { "field": "message_template_status_update", "value": { "message_template_id": 1 } },
                { "field": "message_template_quality_update", "value": "GREEN" },
                status("APPROVED", json!({ "id": 1 })),
                status("", json!(3)),
                status("APPROVED", json!("")),
                status("APPROVED", json!(9))
            ]),
        );
        assert_eq!(decoded.events.len(), 1, "{decoded:?}");
        let paths: Vec<&str> = decoded.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "entry[0].changes[0].value",
                "entry[0].changes[1]",
                "entry[0].changes[2].value",
                "entry[0].changes[3].value",
                "entry[0].changes[4].value",
            ]
        );
        assert!(
            decoded.skipped.iter().all(|s| !s.reason.is_empty()),
            "{:?}",
            decoded.skipped
        );
    }

    #[test]
    fn an_account_change_without_the_account_id_is_skipped() {
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{ "time": 1, "changes": [status("APPROVED", json!(1))] }]
        }))
        .expect("serialize");
        let decoded = decode(&body).expect("a webhook");
        assert!(decoded.events.is_empty());
        assert!(
            decoded.skipped[0].reason.contains("`entry.id`"),
            "{decoded:?}"
        );
    }

    #[test]
    fn an_impending_category_change_is_skipped() {
        let change = json!({
            "field": "template_category_update",
            "value": {
                "message_template_id": 278077987957091u64,
                "message_template_name": "welcome_template",
                "message_template_language": "en_US",
                "correct_category": "MARKETING",
                "new_category": "UTILITY",
                "category_update_timestamp": 1760711433
            }
        });
        let decoded = decoded(Some(json!(1)), json!([change]));
        assert!(decoded.events.is_empty());
        assert!(
            decoded.skipped[0].reason.contains("impending"),
            "{decoded:?}"
        );
    }

    #[test]
    fn other_fields_are_still_skipped() {
        let change = json!({ "field": "account_update", "value": { "event": "VERIFIED_ACCOUNT" } });
        let decoded = decoded(Some(json!(1)), json!([change]));
        assert!(decoded.events.is_empty());
        assert_eq!(
            decoded.skipped[0].reason,
            "webhook field \"account_update\" is not decoded by this adapter"
        );
    }
}
