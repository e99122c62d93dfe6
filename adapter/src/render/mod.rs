//! Rendering neutral bot outputs into Graph API `/{phone-number-id}/messages` requests.
//!
//! [`render`] dispatches on the output kind; each kind's module builds the message payloads
//! (`type` plus the object of that type) and this module wraps them in the envelope every
//! send shares: `messaging_product`, `recipient_type`, the addressee and, on the first
//! message of an output only, the quoted message (`context.message_id`). Outputs that do not
//! fit Meta's limits degrade deterministically into several messages (see each module); an
//! output that cannot be sent at all is an [`AdapterError::Invalid`], never a trap.
//!
//! Addressing: a phone number goes in `to`; a user known only by a business-scoped user id
//! (BSUID) goes in `recipient`, never in `to` (Meta accepts a BSUID in `to` and silently
//! drops the message). Mark-read requests are addressed by message id only.

mod card;
mod choices;
mod fit;
mod interactive;
mod markdown;
mod media;
mod split;
mod template;

use serde_json::{Map, Value, json};

use crate::info::LIMITS;
use crate::types::{
    AdapterError, BotOutput, HttpMethod, MarkReadOutput, ReactionOutput, RenderContext,
    RequestSpec, User,
};

pub(crate) use fit::non_blank;

/// One message before the envelope: its `type` and the object under that key.
pub(crate) struct Message {
    kind: &'static str,
    payload: Value,
}

impl Message {
    pub(crate) fn new(kind: &'static str, payload: Value) -> Self {
        Self { kind, payload }
    }

    /// A text message; `preview_url` is set when the text holds an http(s) URL.
    pub(crate) fn text(body: String) -> Self {
        let mut text = json!({ "body": body });
        if has_url(&body) {
            text["preview_url"] = json!(true);
        }
        Self::new("text", text)
    }
}

fn has_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("http://") || lower.contains("https://")
}

/// Renders one output into the requests that deliver it, in order.
pub fn render(output: &BotOutput, ctx: &RenderContext) -> Result<Vec<RequestSpec>, AdapterError> {
    let path = messages_path(&ctx.business.phone_number_id)?;
    if let BotOutput::MarkRead(read) = output {
        return Ok(vec![spec(&path, &mark_read(read)?)]);
    }
    let addressee = address(&ctx.recipient)?;
    let messages = match output {
        BotOutput::Text(markdown) => text(markdown)?,
        BotOutput::Media(m) => media::media(m)?,
        BotOutput::Location(l) => vec![media::location(l)?],
        BotOutput::Contacts(c) => vec![media::contacts(c)?],
        BotOutput::Choices(c) => choices::choices(c)?,
        BotOutput::List(l) => choices::list(l)?,
        BotOutput::Card(c) => card::card(c)?,
        BotOutput::CtaUrl(c) => interactive::cta_url(c)?,
        BotOutput::Template(t) => vec![template::template(t)?],
        BotOutput::Reaction(r) => vec![reaction(r)?],
        BotOutput::LocationRequest(prompt) => interactive::location_request(prompt)?,
        BotOutput::MarkRead(_) => Vec::new(),
    };
    // A reaction already points at its message; Meta takes no reply context on it.
    let quote = match output {
        BotOutput::Reaction(_) => None,
        _ => non_blank(ctx.reply_to.as_deref()),
    };
    Ok(messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| spec(&path, &envelope(&addressee, quote.filter(|_| i == 0), m)))
        .collect())
}

/// `{phone-number-id}/messages`; the id must be a plain path segment.
fn messages_path(phone_number_id: &str) -> Result<String, AdapterError> {
    let id = phone_number_id.trim();
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if id.is_empty() || !plain {
        return Err(invalid(format!(
            "phone_number_id {phone_number_id:?} is not a plain id"
        )));
    }
    Ok(format!("{id}/messages"))
}

/// The addressee key and value: `to` for a phone, `recipient` for a BSUID-only user.
fn address(user: &User) -> Result<(&'static str, String), AdapterError> {
    if let Some(phone) = non_blank(user.phone.as_deref()) {
        return Ok(("to", phone.to_string()));
    }
    if let Some(user_id) = non_blank(user.user_id.as_deref()) {
        return Ok(("recipient", user_id.to_string()));
    }
    Err(invalid(
        "the recipient has neither a phone number nor a user id",
    ))
}

fn envelope(addressee: &(&'static str, String), quote: Option<&str>, message: Message) -> Value {
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("recipient_type".into(), json!("individual"));
    body.insert(addressee.0.into(), json!(addressee.1));
    if let Some(id) = quote {
        body.insert("context".into(), json!({ "message_id": id }));
    }
    body.insert("type".into(), json!(message.kind));
    body.insert(message.kind.into(), message.payload);
    Value::Object(body)
}

fn spec(path: &str, body: &Value) -> RequestSpec {
    RequestSpec {
        method: HttpMethod::Post,
        path: path.to_string(),
        body: body.to_string(),
    }
}

pub(crate) fn invalid(reason: impl Into<String>) -> AdapterError {
    AdapterError::Invalid(reason.into())
}

/// Markdown text → WhatsApp text messages of at most 4096 chars each.
fn text(markdown: &str) -> Result<Vec<Message>, AdapterError> {
    let messages = texts(&markdown::to_whatsapp(markdown));
    if messages.is_empty() {
        return Err(invalid("text output is empty"));
    }
    Ok(messages)
}

/// Already-converted WhatsApp text → text messages (none for blank text).
pub(crate) fn texts(text: &str) -> Vec<Message> {
    split::split_text(text, LIMITS.max_text_length as usize)
        .into_iter()
        .map(Message::text)
        .collect()
}

/// Markdown for a field that WhatsApp shows formatted (bodies, captions, prompts).
pub(crate) fn formatted(markdown: &str) -> String {
    markdown::to_whatsapp(markdown)
}

/// `emoji: none` (or blank) removes the reaction: Meta takes an empty emoji for that.
fn reaction(r: &ReactionOutput) -> Result<Message, AdapterError> {
    let message_id =
        non_blank(Some(&r.message_id)).ok_or_else(|| invalid("reaction without a message id"))?;
    let emoji = non_blank(r.emoji.as_deref()).unwrap_or("");
    Ok(Message::new(
        "reaction",
        json!({ "message_id": message_id, "emoji": emoji }),
    ))
}

fn mark_read(read: &MarkReadOutput) -> Result<Value, AdapterError> {
    let message_id = non_blank(Some(&read.message_id))
        .ok_or_else(|| invalid("mark-read without a message id"))?;
    let mut body =
        json!({ "messaging_product": "whatsapp", "status": "read", "message_id": message_id });
    if read.typing {
        body["typing_indicator"] = json!({ "type": "text" });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Business;

    fn ctx(phone: Option<&str>, user_id: Option<&str>) -> RenderContext {
        RenderContext {
            business: Business {
                phone_number_id: "106540352242922".into(),
                display_number: None,
                account_id: None,
            },
            recipient: User {
                user_id: user_id.map(Into::into),
                phone: phone.map(Into::into),
                name: None,
                username: None,
            },
            reply_to: Some("wamid.IN".into()),
        }
    }

    fn bodies(specs: &[RequestSpec]) -> Vec<Value> {
        specs
            .iter()
            .map(|s| serde_json::from_str(&s.body).unwrap_or_default())
            .collect()
    }

    #[test]
    fn phone_wins_over_user_id_and_bsuid_goes_in_recipient() {
        let out = BotOutput::Text("hi".into());
        let b =
            bodies(&render(&out, &ctx(Some("15550001111"), Some("US.123"))).unwrap_or_default());
        assert_eq!(b[0]["to"], "15550001111");
        assert!(b[0].get("recipient").is_none());
        let b = bodies(&render(&out, &ctx(None, Some("US.123"))).unwrap_or_default());
        assert_eq!(b[0]["recipient"], "US.123");
        assert!(b[0].get("to").is_none());
        assert!(matches!(
            render(&out, &ctx(Some(" "), None)),
            Err(AdapterError::Invalid(_))
        ));
    }

    #[test]
    fn context_only_on_the_first_message() {
        let long = "word ".repeat(2000);
        let b = bodies(&render(&BotOutput::Text(long), &ctx(Some("1"), None)).unwrap_or_default());
        assert_eq!(b.len(), 3);
        assert_eq!(b[0]["context"]["message_id"], "wamid.IN");
        assert!(b[1].get("context").is_none() && b[2].get("context").is_none());
    }

    #[test]
    fn path_must_be_a_plain_segment() {
        let mut c = ctx(Some("1"), None);
        c.business.phone_number_id = "123/../../me".into();
        assert!(render(&BotOutput::Text("x".into()), &c).is_err());
    }

    #[test]
    fn preview_url_only_with_a_link() {
        assert!(Message::text("see https://x.io".into()).payload["preview_url"] == json!(true));
        assert!(
            Message::text("no link here".into())
                .payload
                .get("preview_url")
                .is_none()
        );
    }
}
