//! Cards: an optional header image, a title, a body, a footer and buttons.
//!
//! The title goes at the top of the body in bold (an interactive header can be an image or
//! a text, not both). Reply buttons go out in bubbles of at most 3 (`button` messages) and
//! every URL button as its own `cta_url` message, reply bubbles first; URL and reply buttons
//! are never mixed in one message. The first bubble carries the image header, the body and
//! the footer; later bubbles carry the footer and a `(2/3)`-style body. A card without
//! buttons is an image with the text as its caption, or plain text without an image (the
//! footer becomes the last line). Reply ids are trimmed, must be unique and at most 256
//! chars; reply titles are cut to 20 chars and kept unique.

use serde_json::{Value, json};

use super::fit::{char_len, non_blank, unique_titles};
use super::interactive::{Interactive, cta_action, fit_body, footer, media_ref};
use super::media::with_caption;
use super::{Message, formatted, invalid, texts};
use crate::info::LIMITS;
use crate::types::{AdapterError, CardButton, CardOutput};

pub(crate) fn card(c: &CardOutput) -> Result<Vec<Message>, AdapterError> {
    let body = formatted(&c.body);
    let text = match non_blank(c.title.as_deref()) {
        Some(title) if body.is_empty() => format!("*{title}*"),
        Some(title) => format!("*{title}*\n\n{body}"),
        None => body,
    };
    let image = c.header_image.as_ref().map(media_ref).transpose()?;
    if c.buttons.is_empty() {
        return without_buttons(image, &text, c.footer.as_deref());
    }

    let mut replies = Vec::new();
    let mut actions: Vec<(&'static str, Value)> = Vec::new();
    for button in &c.buttons {
        match button {
            CardButton::Reply(choice) => {
                let id = non_blank(Some(&choice.id))
                    .ok_or_else(|| invalid("a card button has an empty id"))?;
                if char_len(id) > LIMITS.max_button_id_length as usize {
                    return Err(invalid(format!(
                        "card button id {id:?} is longer than 256 chars"
                    )));
                }
                if replies.iter().any(|(seen, _)| *seen == id) {
                    return Err(invalid(format!("duplicate card button id {id:?}")));
                }
                let title = non_blank(Some(&choice.title))
                    .ok_or_else(|| invalid(format!("card button {id:?} has an empty title")))?;
                replies.push((id, title));
            }
            CardButton::Url((label, url)) => actions.push(("cta_url", cta_action(label, url)?)),
        }
    }
    let titles: Vec<&str> = replies.iter().map(|(_, t)| *t).collect();
    let titles = unique_titles(&titles, LIMITS.max_button_title_length as usize);
    let buttons: Vec<Value> = replies
        .iter()
        .zip(titles)
        .map(|((id, _), title)| json!({ "type": "reply", "reply": { "id": id, "title": title } }))
        .collect();
    let bubbles = buttons
        .chunks(LIMITS.max_buttons as usize)
        .map(|chunk| ("button", json!({ "buttons": chunk })));
    let actions: Vec<(&'static str, Value)> = bubbles.chain(actions).collect();

    let (mut messages, first_body) = fit_body(&text, "card")?;
    let count = actions.len();
    let mut image = image;
    for (k, (kind, action)) in actions.into_iter().enumerate() {
        messages.push(
            Interactive {
                kind,
                header: image.take().map(|i| json!({ "type": "image", "image": i })),
                body: if k == 0 {
                    first_body.clone()
                } else {
                    format!("({}/{count})", k + 1)
                },
                footer: footer(c.footer.as_deref()),
                action,
            }
            .into_message(),
        );
    }
    Ok(messages)
}

fn without_buttons(
    image: Option<Value>,
    text: &str,
    footer_text: Option<&str>,
) -> Result<Vec<Message>, AdapterError> {
    let mut text = text.to_string();
    if let Some(f) = non_blank(footer_text) {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(f);
    }
    match image {
        Some(image) => Ok(with_caption("image", image, &text, None, true)),
        None if text.is_empty() => Err(invalid("card without image, text or buttons")),
        None => Ok(texts(&text)),
    }
}
