//! Template messages: the only kind that may open a conversation outside the 24-hour window.
//!
//! `{"type":"template","template":{"name","language":{"code"},"components":[…]}}` with a
//! `header` and a `body` component when they have parameters and one `button` component per
//! button with parameters (empty components are omitted). Parameters carry
//! `parameter_name` when the template uses named parameters. Values map as Meta documents:
//! text, currency (`fallback_value`, `code`, `amount_1000`), date-time (`fallback_value`),
//! image/video/document media (`link` or `id`); in buttons, a quick reply takes a `payload`,
//! a URL button the `text` of its URL suffix and a copy-code button a `coupon_code` (text or
//! payload values are accepted for each). Anything else where it cannot go is invalid.
//! Template parameters are sent verbatim: no markdown conversion.

use serde_json::{Map, Value, json};

use super::fit::non_blank;
use super::interactive::media_ref;
use super::media::kind_name;
use super::{Message, invalid};
use crate::types::{
    AdapterError, MediaKind, TemplateButton, TemplateButtonKind, TemplateOutput, TemplateParameter,
    TemplateValue,
};

pub(crate) fn template(t: &TemplateOutput) -> Result<Message, AdapterError> {
    let name = non_blank(Some(&t.name)).ok_or_else(|| invalid("template without a name"))?;
    let language =
        non_blank(Some(&t.language)).ok_or_else(|| invalid("template without a language"))?;
    let mut components = Vec::new();
    for (kind, params) in [("header", &t.header), ("body", &t.body)] {
        if !params.is_empty() {
            let parameters = params
                .iter()
                .map(parameter)
                .collect::<Result<Vec<_>, _>>()?;
            components.push(json!({ "type": kind, "parameters": parameters }));
        }
    }
    let mut indexes = Vec::new();
    for b in &t.buttons {
        if indexes.contains(&b.index) {
            return Err(invalid(format!(
                "two template buttons have index {}",
                b.index
            )));
        }
        indexes.push(b.index);
        if let Some(component) = button(b)? {
            components.push(component);
        }
    }
    let mut template = json!({ "name": name, "language": { "code": language } });
    if !components.is_empty() {
        template["components"] = Value::Array(components);
    }
    Ok(Message::new("template", template))
}

fn parameter(p: &TemplateParameter) -> Result<Value, AdapterError> {
    let mut value = match &p.value {
        TemplateValue::Text(text) => json!({ "type": "text", "text": text }),
        TemplateValue::Currency((fallback, code, amount_1000)) => json!({
            "type": "currency",
            "currency": { "fallback_value": fallback, "code": code, "amount_1000": amount_1000 },
        }),
        TemplateValue::DateTime(fallback) => {
            json!({ "type": "date_time", "date_time": { "fallback_value": fallback } })
        }
        TemplateValue::Media(m) => {
            if !matches!(
                m.kind,
                MediaKind::Image | MediaKind::Video | MediaKind::Document
            ) {
                return Err(invalid(
                    "template media parameters are image, video or document",
                ));
            }
            let kind = kind_name(m.kind);
            let mut object = media_ref(&m.source)?;
            if let (MediaKind::Document, Some(f)) = (m.kind, non_blank(m.filename.as_deref())) {
                object["filename"] = json!(f);
            }
            json!({ "type": kind, kind: object })
        }
        TemplateValue::Payload(_) => {
            return Err(invalid("payload parameters belong to quick-reply buttons"));
        }
    };
    named(&mut value, p);
    Ok(value)
}

fn named(value: &mut Value, p: &TemplateParameter) {
    if let (Some(name), Value::Object(object)) = (non_blank(p.name.as_deref()), value) {
        object.insert("parameter_name".into(), json!(name));
    }
}

fn button(b: &TemplateButton) -> Result<Option<Value>, AdapterError> {
    if b.parameters.is_empty() {
        return Ok(None);
    }
    let (sub_type, key) = match b.kind {
        TemplateButtonKind::QuickReply => ("quick_reply", "payload"),
        TemplateButtonKind::Url => ("url", "text"),
        TemplateButtonKind::CopyCode => ("copy_code", "coupon_code"),
    };
    let parameters = b
        .parameters
        .iter()
        .map(|p| {
            let (TemplateValue::Text(v) | TemplateValue::Payload(v)) = &p.value else {
                return Err(invalid(format!(
                    "template {sub_type} button {} takes text parameters",
                    b.index
                )));
            };
            let mut object = Map::new();
            object.insert("type".into(), json!(key));
            object.insert(key.into(), json!(v));
            let mut value = Value::Object(object);
            named(&mut value, p);
            Ok(value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(json!({
        "type": "button",
        "sub_type": sub_type,
        "index": b.index.to_string(),
        "parameters": parameters,
    })))
}
