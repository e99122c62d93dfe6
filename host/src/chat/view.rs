//! A Graph API request body (what the adapter rendered) → what the user sees in the chat.
//!
//! Text as text; reply buttons as `[ Yes ]  [ No ]` followed by the ids `/button` takes;
//! lists as a titled menu of rows with the ids `/list` takes; media as
//! `[image] caption (link)`; locations, contacts, CTA URLs (`[Open: label] url`), templates
//! and reactions as one tagged line each; a mark-read with a typing indicator as `typing…`,
//! without one as nothing. Pure: JSON in, lines out.

use serde_json::Value;

use super::envelope::Offered;

/// One rendered request as the user sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shown {
    /// The lines to print, without any prompt prefix.
    pub lines: Vec<String>,
    /// A status line (typing indicator), printed dim on a terminal.
    pub status: bool,
    /// The buttons or list rows this message offers, when it offers any: the titles a
    /// later `/button` or `/list` reply carries.
    pub offered: Option<Vec<Offered>>,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Shows one request body (`messages` payload) as chat lines.
pub fn show(body: &Value) -> Shown {
    let mut shown = Shown::default();
    if s(body, "status") == Some("read") {
        if body.get("typing_indicator").is_some() {
            shown.lines.push("typing…".to_string());
            shown.status = true;
        }
        return shown;
    }
    let kind = s(body, "type").unwrap_or("");
    let part = body.get(kind).unwrap_or(&Value::Null);
    let lines = &mut shown.lines;
    match kind {
        "text" => lines.extend(text_lines(s(part, "body").unwrap_or(""))),
        "image" | "video" | "audio" | "document" | "sticker" => lines.push(media(kind, part)),
        "location" => lines.push(location(part)),
        "contacts" => {
            for contact in part.as_array().into_iter().flatten() {
                lines.push(contact_line(contact));
            }
        }
        "interactive" => shown.offered = interactive(part, lines),
        "template" => lines.push(template(part)),
        "reaction" => {
            let target = s(part, "message_id").unwrap_or("?");
            match s(part, "emoji") {
                Some(emoji) if !emoji.is_empty() => {
                    lines.push(format!("[reacted {emoji} to {target}]"))
                }
                _ => lines.push(format!("[reaction removed from {target}]")),
            }
        }
        other => lines.push(format!("[{other}] {part}")),
    }
    shown
}

fn text_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split('\n').map(str::to_string)
}

/// `[image] caption (link)`; documents show their file name; an uploaded item its id.
fn media(kind: &str, part: &Value) -> String {
    let mut line = format!("[{kind}]");
    if let Some(filename) = s(part, "filename") {
        line.push(' ');
        line.push_str(filename);
    }
    if let Some(caption) = s(part, "caption") {
        line.push(' ');
        line.push_str(caption);
    }
    if let Some(link) = s(part, "link") {
        line.push_str(&format!(" ({link})"));
    } else if let Some(id) = s(part, "id") {
        line.push_str(&format!(" (media id {id})"));
    }
    line
}

/// `[location] name, address (lat, lon)`.
fn location(part: &Value) -> String {
    let mut line = "[location]".to_string();
    let named: Vec<&str> = [s(part, "name"), s(part, "address")]
        .into_iter()
        .flatten()
        .collect();
    if !named.is_empty() {
        line.push(' ');
        line.push_str(&named.join(", "));
    }
    let coord = |k| part.get(k).map_or("?".to_string(), Value::to_string);
    line.push_str(&format!(" ({}, {})", coord("latitude"), coord("longitude")));
    line
}

/// `[contact] Name, phone, email`.
fn contact_line(contact: &Value) -> String {
    let mut fields = vec![
        contact
            .get("name")
            .and_then(|n| s(n, "formatted_name"))
            .unwrap_or("?")
            .to_string(),
    ];
    for (list, key) in [("phones", "phone"), ("emails", "email"), ("urls", "url")] {
        for item in contact
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(value) = s(item, key) {
                fields.push(value.to_string());
            }
        }
    }
    format!("[contact] {}", fields.join(", "))
}

/// `[template name (lang)] param, param, …`.
fn template(part: &Value) -> String {
    let name = s(part, "name").unwrap_or("?");
    let language = part
        .get("language")
        .and_then(|l| s(l, "code"))
        .unwrap_or("?");
    let mut params = Vec::new();
    for component in part
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in component
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = s(p, "type").unwrap_or("");
            let value = match kind {
                "text" => s(p, "text").map(str::to_string),
                "payload" => s(p, "payload").map(|x| format!("button {x}")),
                "coupon_code" => s(p, "coupon_code").map(|x| format!("code {x}")),
                "currency" | "date_time" => p
                    .get(kind)
                    .and_then(|v| s(v, "fallback_value"))
                    .map(str::to_string),
                _ => p.get(kind).map(|m| media(kind, m)),
            };
            if let Some(value) = value {
                params.push(match s(p, "parameter_name") {
                    Some(name) => format!("{name}={value}"),
                    None => value,
                });
            }
        }
    }
    let mut line = format!("[template {name} ({language})]");
    if !params.is_empty() {
        line.push(' ');
        line.push_str(&params.join(", "));
    }
    line
}

/// Header, body and footer of an interactive message, then its action. Returns what it
/// offers (buttons, list rows).
fn interactive(part: &Value, lines: &mut Vec<String>) -> Option<Vec<Offered>> {
    if let Some(header) = part.get("header") {
        let kind = s(header, "type").unwrap_or("text");
        match kind {
            "text" => lines.push(format!("*{}*", s(header, "text").unwrap_or(""))),
            _ => lines.push(media(kind, header.get(kind).unwrap_or(&Value::Null))),
        }
    }
    if let Some(body) = part.get("body").and_then(|b| s(b, "text")) {
        lines.extend(text_lines(body));
    }
    if let Some(footer) = part.get("footer").and_then(|f| s(f, "text")) {
        lines.push(format!("_{footer}_"));
    }
    let action = part.get("action").unwrap_or(&Value::Null);
    match s(part, "type").unwrap_or("") {
        "button" => {
            let offered: Vec<Offered> = action
                .get("buttons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| b.get("reply"))
                .map(|r| Offered {
                    id: s(r, "id").unwrap_or("").to_string(),
                    title: s(r, "title").unwrap_or("").to_string(),
                    description: None,
                })
                .collect();
            let drawn: Vec<String> = offered.iter().map(|o| format!("[ {} ]", o.title)).collect();
            lines.push(drawn.join("  "));
            let ids: Vec<&str> = offered.iter().map(|o| o.id.as_str()).collect();
            lines.push(format!("  /button {}", ids.join(" | ")));
            Some(offered)
        }
        "list" => {
            lines.push(format!("[≡ {}]", s(action, "button").unwrap_or("Menu")));
            let mut offered = Vec::new();
            for section in action
                .get("sections")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(title) = s(section, "title") {
                    lines.push(format!("  {title}"));
                }
                for row in section
                    .get("rows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let row = Offered {
                        id: s(row, "id").unwrap_or("").to_string(),
                        title: s(row, "title").unwrap_or("").to_string(),
                        description: s(row, "description").map(str::to_string),
                    };
                    let mut line = format!("    {} ({})", row.title, row.id);
                    if let Some(d) = &row.description {
                        line.push_str(&format!(": {d}"));
                    }
                    lines.push(line);
                    offered.push(row);
                }
            }
            lines.push("  /list ID".to_string());
            Some(offered)
        }
        "cta_url" => {
            let parameters = action.get("parameters").unwrap_or(&Value::Null);
            lines.push(format!(
                "[Open: {}] {}",
                s(parameters, "display_text").unwrap_or("link"),
                s(parameters, "url").unwrap_or("")
            ));
            None
        }
        "location_request_message" => {
            lines.push("[Send location]  /location LAT LON".to_string());
            None
        }
        other => {
            lines.push(format!("[interactive {other}] {action}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(body: Value) -> Vec<String> {
        show(&body).lines
    }

    fn msg(kind: &str, part: Value) -> Value {
        json!({
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "15551234567", "type": kind, kind: part
        })
    }

    #[test]
    fn text_is_shown_line_by_line() {
        assert_eq!(
            lines(msg("text", json!({"body": "Hi *Alex*!\nHow can we help?"}))),
            ["Hi *Alex*!", "How can we help?"]
        );
    }

    #[test]
    fn reply_buttons_are_drawn_with_their_ids() {
        let shown = show(&msg(
            "interactive",
            json!({
                "type": "button",
                "body": {"text": "Did this answer your question?"},
                "action": {"buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}}
                ]}
            }),
        ));
        assert_eq!(
            shown.lines,
            [
                "Did this answer your question?",
                "[ Yes ]  [ No ]",
                "  /button yes | no"
            ]
        );
        let offered = shown.offered.expect("offers buttons");
        assert_eq!(offered.len(), 2);
        assert_eq!(
            (offered[0].id.as_str(), offered[0].title.as_str()),
            ("yes", "Yes")
        );
    }

    #[test]
    fn a_card_shows_header_footer_and_buttons() {
        assert_eq!(
            lines(msg(
                "interactive",
                json!({
                    "type": "button",
                    "header": {"type": "image", "image": {"link": "https://cdn.example.com/x.jpg"}},
                    "body": {"text": "*Runner X*"},
                    "footer": {"text": "Free returns"},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": "buy", "title": "Buy now"}}]}
                })
            )),
            [
                "[image] (https://cdn.example.com/x.jpg)",
                "*Runner X*",
                "_Free returns_",
                "[ Buy now ]",
                "  /button buy"
            ]
        );
    }

    #[test]
    fn a_list_is_a_titled_menu_of_rows_with_ids() {
        let shown = show(&msg(
            "interactive",
            json!({
                "type": "list",
                "header": {"type": "text", "text": "FAQ"},
                "body": {"text": "Pick a question:"},
                "action": {"button": "Questions", "sections": [{"title": "Popular", "rows": [
                    {"id": "faq_returns", "title": "Returns", "description": "How do I return an item?"},
                    {"id": "faq_human", "title": "Talk to a human"}
                ]}]}
            }),
        ));
        assert_eq!(
            shown.lines,
            [
                "*FAQ*",
                "Pick a question:",
                "[≡ Questions]",
                "  Popular",
                "    Returns (faq_returns): How do I return an item?",
                "    Talk to a human (faq_human)",
                "  /list ID"
            ]
        );
        let offered = shown.offered.expect("offers rows");
        assert_eq!(
            offered[0].description.as_deref(),
            Some("How do I return an item?")
        );
        assert_eq!(offered[1].description, None);
    }

    #[test]
    fn media_shows_kind_caption_and_source() {
        assert_eq!(
            lines(msg(
                "image",
                json!({"caption": "Your receipt", "link": "https://cdn.example.com/r.png"})
            )),
            ["[image] Your receipt (https://cdn.example.com/r.png)"]
        );
        assert_eq!(
            lines(msg(
                "document",
                json!({"filename": "contract.pdf", "id": "1013859600285441"})
            )),
            ["[document] contract.pdf (media id 1013859600285441)"]
        );
    }

    #[test]
    fn location_contacts_cta_and_location_request() {
        assert_eq!(
            lines(msg(
                "location",
                json!({"latitude": 52.3676, "longitude": 4.9041, "name": "Plugboard HQ", "address": "Keizersgracht 123"})
            )),
            ["[location] Plugboard HQ, Keizersgracht 123 (52.3676, 4.9041)"]
        );
        assert_eq!(
            lines(msg(
                "contacts",
                json!([{"name": {"formatted_name": "Support line"}, "phones": [{"phone": "+31 20 555 0100"}]}])
            )),
            ["[contact] Support line, +31 20 555 0100"]
        );
        assert_eq!(
            lines(msg(
                "interactive",
                json!({"type": "cta_url", "body": {"text": "Invoice ready."},
                       "action": {"name": "cta_url", "parameters": {"display_text": "Download", "url": "https://x.example/i/1"}}})
            )),
            ["Invoice ready.", "[Open: Download] https://x.example/i/1"]
        );
        assert_eq!(
            lines(msg(
                "interactive",
                json!({"type": "location_request_message", "body": {"text": "Where are you?"},
                       "action": {"name": "send_location"}})
            )),
            ["Where are you?", "[Send location]  /location LAT LON"]
        );
    }

    #[test]
    fn templates_and_reactions() {
        assert_eq!(
            lines(msg(
                "template",
                json!({"name": "order_confirmation", "language": {"code": "en_US"}, "components": [
                    {"type": "body", "parameters": [
                        {"type": "text", "parameter_name": "customer_name", "text": "Ana"},
                        {"type": "currency", "currency": {"fallback_value": "€89.00", "code": "EUR", "amount_1000": 89000}}
                    ]},
                    {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "track-42"}]}
                ]})
            )),
            ["[template order_confirmation (en_US)] customer_name=Ana, €89.00, button track-42"]
        );
        assert_eq!(
            lines(msg(
                "reaction",
                json!({"message_id": "wamid.X", "emoji": "👍"})
            )),
            ["[reacted 👍 to wamid.X]"]
        );
        assert_eq!(
            lines(msg(
                "reaction",
                json!({"message_id": "wamid.X", "emoji": ""})
            )),
            ["[reaction removed from wamid.X]"]
        );
    }

    #[test]
    fn mark_read_is_typing_or_nothing() {
        let typing = show(&json!({
            "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X",
            "typing_indicator": {"type": "text"}
        }));
        assert_eq!(typing.lines, ["typing…"]);
        assert!(typing.status);
        let read = show(
            &json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}),
        );
        assert!(read.lines.is_empty());
    }
}
