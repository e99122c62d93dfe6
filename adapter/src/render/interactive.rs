//! Interactive message envelopes, CTA URL buttons and location requests.
//!
//! Every interactive message has a body of at most 1024 chars. When a body is longer, it
//! goes out first as text message(s) and the interactive message carries the short fixed
//! prompt [`FOLLOW_UP_PROMPT`] instead (language-neutral: it points at the buttons below).
//! Headers and footers are plain text cut to 60 chars; an empty body is an error, because
//! an interactive message without a prompt would be an invented text.

use serde_json::{Value, json};

use super::fit::{cut, non_blank};
use super::{Message, formatted, invalid, texts};
use crate::info::LIMITS;
use crate::types::{AdapterError, CtaUrlOutput, MediaSource};

/// Body of an interactive message whose real body went out as text just before it.
pub(crate) const FOLLOW_UP_PROMPT: &str = "👇";

/// The parts of an interactive message (`interactive.type` = `kind`).
pub(crate) struct Interactive {
    pub kind: &'static str,
    pub header: Option<Value>,
    pub body: String,
    pub footer: Option<String>,
    pub action: Value,
}

impl Interactive {
    pub(crate) fn into_message(self) -> Message {
        let mut payload =
            json!({ "type": self.kind, "body": { "text": self.body }, "action": self.action });
        if let Some(header) = self.header {
            payload["header"] = header;
        }
        if let Some(footer) = self.footer {
            payload["footer"] = json!({ "text": footer });
        }
        Message::new("interactive", payload)
    }
}

/// Splits a converted body into the text messages that must precede the interactive message
/// and the body it carries: the body itself when it fits, else [`FOLLOW_UP_PROMPT`].
pub(crate) fn fit_body(body: &str, what: &str) -> Result<(Vec<Message>, String), AdapterError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(invalid(format!("{what} has an empty body")));
    }
    if body.chars().count() <= LIMITS.max_body_length as usize {
        Ok((Vec::new(), body.to_string()))
    } else {
        Ok((texts(body), FOLLOW_UP_PROMPT.to_string()))
    }
}

/// A text header (cut to 60 chars), or none for a blank one.
pub(crate) fn text_header(header: Option<&str>) -> Option<Value> {
    non_blank(header)
        .map(|h| json!({ "type": "text", "text": cut(h, LIMITS.max_header_length as usize) }))
}

/// A footer cut to 60 chars, or none for a blank one.
pub(crate) fn footer(footer: Option<&str>) -> Option<String> {
    non_blank(footer).map(|f| cut(f, LIMITS.max_footer_length as usize))
}

/// `{"link": url}` or `{"id": id}`.
pub(crate) fn media_ref(source: &MediaSource) -> Result<Value, AdapterError> {
    match source {
        MediaSource::Link(url) => non_blank(Some(url))
            .map(|url| json!({ "link": url }))
            .ok_or_else(|| invalid("media link is empty")),
        MediaSource::Id(id) => non_blank(Some(id))
            .map(|id| json!({ "id": id }))
            .ok_or_else(|| invalid("media id is empty")),
    }
}

/// The action of a `cta_url` message: one link button.
pub(crate) fn cta_action(label: &str, url: &str) -> Result<Value, AdapterError> {
    let label = non_blank(Some(label)).ok_or_else(|| invalid("URL button without a label"))?;
    let url = non_blank(Some(url)).ok_or_else(|| invalid("URL button without a URL"))?;
    Ok(json!({
        "name": "cta_url",
        "parameters": { "display_text": cut(label, LIMITS.max_button_title_length as usize), "url": url },
    }))
}

pub(crate) fn cta_url(c: &CtaUrlOutput) -> Result<Vec<Message>, AdapterError> {
    let action = cta_action(&c.button_label, &c.url)?;
    let (mut messages, body) = fit_body(&formatted(&c.body), "CTA URL output")?;
    messages.push(
        Interactive {
            kind: "cta_url",
            header: text_header(c.header.as_deref()),
            body,
            footer: footer(c.footer.as_deref()),
            action,
        }
        .into_message(),
    );
    Ok(messages)
}

pub(crate) fn location_request(prompt: &str) -> Result<Vec<Message>, AdapterError> {
    let (mut messages, body) = fit_body(&formatted(prompt), "location request")?;
    messages.push(
        Interactive {
            kind: "location_request_message",
            header: None,
            body,
            footer: None,
            action: json!({ "name": "send_location" }),
        }
        .into_message(),
    );
    Ok(messages)
}
