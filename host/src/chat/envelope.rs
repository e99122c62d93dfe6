//! A typed line → a Meta webhook envelope, byte for byte the shape Meta posts.
//!
//! [`parse_line`] reads what the user typed (text or a `/command`); [`Envelope::build`]
//! wraps the resulting [`UserInput`] in `object: whatsapp_business_account` →
//! `entry[].changes[].value` with `metadata`, `contacts` and one `messages[]` item with a
//! fresh wamid and timestamp. Pure: the caller passes the sequence number and the time.

use serde_json::{Value, json};

/// What one typed line means.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Something to send as the user.
    Send(UserInput),
    /// `/quit` (or `/exit`).
    Quit,
    /// Nothing to do (an empty line).
    Empty,
    /// An unknown command or bad arguments: show the help, with this complaint.
    Help(String),
}

/// A user message, before it becomes an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum UserInput {
    Text(String),
    /// `/button ID`: a reply-button tap.
    Button(String),
    /// `/list ID`: a list-row pick.
    List(String),
    /// `/location LAT LON`.
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// `/image [CAPTION]`.
    Image {
        caption: Option<String>,
    },
}

/// The commands, one per line, for the help text.
pub const HELP: &str = "\
commands:
  TEXT                 send a text message
  /button ID           tap a reply button (ID as shown under the buttons)
  /list ID             pick a list row (ID as shown in the menu)
  /location LAT LON    share a location, e.g. /location 52.37 4.90
  /image [CAPTION]     send a photo with an optional caption
  /help                show this help
  /quit                end the chat";

/// Reads one typed line.
pub fn parse_line(line: &str) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Line::Empty;
    }
    let Some(command) = line.trim_start().strip_prefix('/') else {
        return Line::Send(UserInput::Text(line.to_string()));
    };
    let (name, rest) = match command.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (command, ""),
    };
    match name {
        "quit" | "exit" | "q" => Line::Quit,
        "help" | "?" => Line::Help(String::new()),
        "button" | "b" if !rest.is_empty() => Line::Send(UserInput::Button(rest.to_string())),
        "list" | "l" if !rest.is_empty() => Line::Send(UserInput::List(rest.to_string())),
        "button" | "b" | "list" | "l" => Line::Help(format!("/{name} needs an ID")),
        "location" | "loc" => {
            let numbers: Vec<Option<f64>> = rest
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<f64>().ok())
                .collect();
            match numbers.as_slice() {
                [Some(lat), Some(lon)]
                    if (-90.0..=90.0).contains(lat) && (-180.0..=180.0).contains(lon) =>
                {
                    Line::Send(UserInput::Location {
                        latitude: *lat,
                        longitude: *lon,
                    })
                }
                _ => Line::Help(
                    "/location needs LAT LON in degrees, e.g. /location 52.37 4.90".to_string(),
                ),
            }
        }
        "image" | "img" => Line::Send(UserInput::Image {
            caption: (!rest.is_empty()).then(|| rest.to_string()),
        }),
        other => Line::Help(format!("unknown command /{other}")),
    }
}

/// A choice the bot offered, remembered so a `/button` or `/list` reply carries the title
/// the user saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

/// Who is chatting with whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties {
    /// The user's phone number (`wa_id`, without `+`).
    pub user_phone: String,
    /// The user's profile name.
    pub user_name: String,
    /// `metadata.phone_number_id`.
    pub phone_number_id: String,
    /// `metadata.display_phone_number`.
    pub display_number: String,
    /// `entry[].id`: the WhatsApp Business Account.
    pub account_id: String,
}

impl Default for Parties {
    fn default() -> Self {
        Parties {
            user_phone: "15551234567".to_string(),
            user_name: "Alex".to_string(),
            phone_number_id: "106540352242922".to_string(),
            display_number: "15550783881".to_string(),
            account_id: "102290129340398".to_string(),
        }
    }
}

/// A fresh message id shaped like Meta's: `wamid.` and base64 of the same framing Meta uses
/// (the sender's number, then a 20-character hex id), unique per time and sequence number.
pub fn wamid(user_phone: &str, seq: u64, unix_secs: u64) -> String {
    let mut raw = vec![0x1C, 0x18, user_phone.len().min(255) as u8];
    raw.extend_from_slice(user_phone.as_bytes());
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
    let tail = format!(
        "{:012X}{:08X}",
        unix_secs & 0xFFFF_FFFF_FFFF,
        seq & 0xFFFF_FFFF
    );
    raw.extend_from_slice(tail.as_bytes());
    raw.push(0x00);
    format!("wamid.{}", base64(&raw))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Builds envelopes for one chat.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub parties: Parties,
}

impl Envelope {
    pub fn new(parties: Parties) -> Self {
        Envelope { parties }
    }

    /// The `messages[]` item for an input. `offered` is what the bot offered last (titles of
    /// buttons and list rows); an id not found there is its own title.
    pub fn message(
        &self,
        input: &UserInput,
        offered: &[Offered],
        id: &str,
        unix_secs: u64,
    ) -> Value {
        let mut message = json!({
            "from": self.parties.user_phone,
            "id": id,
            "timestamp": unix_secs.to_string(),
        });
        let (kind, body) = match input {
            UserInput::Text(text) => ("text", json!({ "body": text })),
            UserInput::Button(choice) => {
                let found = lookup(offered, choice);
                let id = found.map_or(choice.as_str(), |o| o.id.as_str());
                let title = found.map_or(choice.as_str(), |o| o.title.as_str());
                (
                    "interactive",
                    json!({
                        "type": "button_reply",
                        "button_reply": { "id": id, "title": title },
                    }),
                )
            }
            UserInput::List(choice) => {
                let found = lookup(offered, choice);
                let mut reply = json!({
                    "id": found.map_or(choice.as_str(), |o| o.id.as_str()),
                    "title": found.map_or(choice.as_str(), |o| o.title.as_str()),
                });
                if let Some(description) = found.and_then(|o| o.description.as_ref()) {
                    reply["description"] = json!(description);
                }
                (
                    "interactive",
                    json!({ "type": "list_reply", "list_reply": reply }),
                )
            }
            UserInput::Location {
                latitude,
                longitude,
            } => (
                "location",
                json!({ "latitude": latitude, "longitude": longitude }),
            ),
            UserInput::Image { caption } => {
                let mut image = json!({
                    "mime_type": "image/jpeg",
                    "sha256": base64(format!("sha256:{id}").as_bytes()),
                    "id": media_id(unix_secs, id),
                });
                if let Some(caption) = caption {
                    image["caption"] = json!(caption);
                }
                ("image", image)
            }
        };
        message["type"] = json!(kind);
        message[kind] = body;
        message
    }

    /// The whole webhook body for one input, as Meta posts it.
    pub fn build(
        &self,
        input: &UserInput,
        offered: &[Offered],
        seq: u64,
        unix_secs: u64,
    ) -> Vec<u8> {
        let id = wamid(&self.parties.user_phone, seq, unix_secs);
        let envelope = json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": self.parties.account_id,
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": self.parties.display_number,
                            "phone_number_id": self.parties.phone_number_id,
                        },
                        "contacts": [{
                            "profile": { "name": self.parties.user_name },
                            "wa_id": self.parties.user_phone,
                        }],
                        "messages": [self.message(input, offered, &id, unix_secs)],
                    },
                    "field": "messages",
                }],
            }],
        });
        serde_json::to_vec(&envelope).expect("a JSON value serialises")
    }
}

/// An offered choice by id, or by its 1-based position when no id matches.
fn lookup<'a>(offered: &'a [Offered], choice: &str) -> Option<&'a Offered> {
    offered.iter().find(|o| o.id == choice).or_else(|| {
        let n: usize = choice.parse().ok()?;
        offered.get(n.checked_sub(1)?)
    })
}

/// A numeric media id (Meta's are 15–16 digits), derived from the time and the message id.
fn media_id(unix_secs: u64, wamid: &str) -> String {
    let tail = wamid
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000;
    format!("{}{:06}", 1_000_000_000 + unix_secs % 1_000_000_000, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::types::{ChoiceSource, EventBody, MediaKind, MessageContent};
    use crate::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, PluginLimits, PluginRuntime};
    use std::sync::{Arc, OnceLock};

    const NOW: u64 = 1_717_171_717;

    fn adapter() -> &'static AdapterPlugin {
        static ADAPTER: OnceLock<AdapterPlugin> = OnceLock::new();
        ADAPTER.get_or_init(|| {
            let runtime = Arc::new(PluginRuntime::new().expect("runtime"));
            AdapterPlugin::load(&runtime, BUNDLED_WHATSAPP, PluginLimits::default())
                .expect("bundled adapter")
        })
    }

    fn offered() -> Vec<Offered> {
        vec![
            Offered {
                id: "hours".into(),
                title: "Opening hours".into(),
                description: None,
            },
            Offered {
                id: "faq_returns".into(),
                title: "Returns".into(),
                description: Some("How do I return an item?".into()),
            },
        ]
    }

    fn envelope(input: &UserInput) -> Value {
        let bytes = Envelope::default().build(input, &offered(), 7, NOW);
        serde_json::from_slice(&bytes).expect("JSON")
    }

    fn message_of(input: &UserInput) -> Value {
        envelope(input)["entry"][0]["changes"][0]["value"]["messages"][0].clone()
    }

    /// Decodes through the compiled component: exactly one message event, its content.
    fn decoded(input: &UserInput) -> MessageContent {
        let bytes = Envelope::default().build(input, &offered(), 7, NOW);
        let decoded = adapter()
            .decode(&bytes)
            .expect("no trap")
            .expect("accepted");
        assert!(decoded.skipped.is_empty(), "skipped: {:?}", decoded.skipped);
        assert_eq!(decoded.events.len(), 1);
        let event = &decoded.events[0];
        assert_eq!(event.business.phone_number_id, "106540352242922");
        assert_eq!(
            event.business.account_id.as_deref(),
            Some("102290129340398")
        );
        match &event.body {
            EventBody::Message(m) => {
                assert_eq!(m.user.phone.as_deref(), Some("15551234567"));
                assert_eq!(m.user.name.as_deref(), Some("Alex"));
                assert_eq!(m.timestamp, NOW);
                assert_eq!(m.id, wamid("15551234567", 7, NOW));
                m.content.clone()
            }
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn lines_parse_into_inputs_and_commands() {
        assert_eq!(
            parse_line("hello there\n"),
            Line::Send(UserInput::Text("hello there".into()))
        );
        assert_eq!(
            parse_line("/button hours"),
            Line::Send(UserInput::Button("hours".into()))
        );
        assert_eq!(
            parse_line("/list faq_returns"),
            Line::Send(UserInput::List("faq_returns".into()))
        );
        assert_eq!(
            parse_line("/location 52.37 4.9"),
            Line::Send(UserInput::Location {
                latitude: 52.37,
                longitude: 4.9
            })
        );
        assert_eq!(
            parse_line("/image my broken screen"),
            Line::Send(UserInput::Image {
                caption: Some("my broken screen".into())
            })
        );
        assert_eq!(
            parse_line("/image"),
            Line::Send(UserInput::Image { caption: None })
        );
        assert_eq!(parse_line("/quit"), Line::Quit);
        assert_eq!(parse_line("   "), Line::Empty);
        assert_eq!(
            parse_line("/frobnicate"),
            Line::Help("unknown command /frobnicate".into())
        );
        assert!(matches!(parse_line("/button"), Line::Help(_)));
        assert!(matches!(parse_line("/location 95 4"), Line::Help(_)));
        assert!(matches!(parse_line("/location north"), Line::Help(_)));
    }

    #[test]
    fn the_envelope_has_meta_s_frame() {
        let v = envelope(&UserInput::Text("hi".into()));
        assert_eq!(v["object"], "whatsapp_business_account");
        let entry = &v["entry"][0];
        assert_eq!(entry["id"], "102290129340398");
        let change = &entry["changes"][0];
        assert_eq!(change["field"], "messages");
        let value = &change["value"];
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(
            value["metadata"],
            json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
        );
        assert_eq!(
            value["contacts"],
            json!([{"profile": {"name": "Alex"}, "wa_id": "15551234567"}])
        );
    }

    #[test]
    fn wamids_are_fresh_and_shaped_like_meta_s() {
        let a = wamid("15551234567", 1, NOW);
        let b = wamid("15551234567", 2, NOW);
        assert_ne!(a, b);
        assert!(a.starts_with("wamid.HBgL"), "{a}");
        assert!(
            a[6..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        );
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn text_becomes_a_text_message() {
        let id = wamid("15551234567", 7, NOW);
        assert_eq!(
            message_of(&UserInput::Text("Where is my order?".into())),
            json!({
                "from": "15551234567", "id": id, "timestamp": "1717171717",
                "type": "text", "text": {"body": "Where is my order?"}
            })
        );
        assert_eq!(
            decoded(&UserInput::Text("Where is my order?".into())),
            MessageContent::Text("Where is my order?".into())
        );
    }

    #[test]
    fn button_becomes_a_button_reply_with_the_offered_title() {
        let m = message_of(&UserInput::Button("hours".into()));
        assert_eq!(m["type"], "interactive");
        assert_eq!(
            m["interactive"],
            json!({"type": "button_reply", "button_reply": {"id": "hours", "title": "Opening hours"}})
        );
        let MessageContent::Choice(choice) = decoded(&UserInput::Button("hours".into())) else {
            panic!("not a choice");
        };
        assert_eq!(choice.source, ChoiceSource::Button);
        assert_eq!(choice.id, "hours");
        assert_eq!(choice.title, "Opening hours");
        // By position, and an id never offered is its own title.
        let m = message_of(&UserInput::Button("1".into()));
        assert_eq!(m["interactive"]["button_reply"]["id"], "hours");
        let m = message_of(&UserInput::Button("nope".into()));
        assert_eq!(
            m["interactive"]["button_reply"],
            json!({"id": "nope", "title": "nope"})
        );
    }

    #[test]
    fn list_becomes_a_list_reply_with_title_and_description() {
        let m = message_of(&UserInput::List("faq_returns".into()));
        assert_eq!(
            m["interactive"],
            json!({"type": "list_reply", "list_reply": {
                "id": "faq_returns", "title": "Returns", "description": "How do I return an item?"
            }})
        );
        let MessageContent::Choice(choice) = decoded(&UserInput::List("faq_returns".into())) else {
            panic!("not a choice");
        };
        assert_eq!(choice.source, ChoiceSource::ListRow);
        assert_eq!(choice.id, "faq_returns");
        assert_eq!(choice.title, "Returns");
        assert_eq!(
            choice.description.as_deref(),
            Some("How do I return an item?")
        );
    }

    #[test]
    fn location_becomes_a_location_pin() {
        let input = UserInput::Location {
            latitude: 52.3676,
            longitude: 4.9041,
        };
        let m = message_of(&input);
        assert_eq!(m["type"], "location");
        assert_eq!(
            m["location"],
            json!({"latitude": 52.3676, "longitude": 4.9041})
        );
        let MessageContent::Location(location) = decoded(&input) else {
            panic!("not a location");
        };
        assert_eq!((location.latitude, location.longitude), (52.3676, 4.9041));
        assert_eq!(location.name, None);
    }

    #[test]
    fn image_becomes_an_image_with_id_and_caption() {
        let input = UserInput::Image {
            caption: Some("My broken screen".into()),
        };
        let m = message_of(&input);
        assert_eq!(m["type"], "image");
        assert_eq!(m["image"]["caption"], "My broken screen");
        assert_eq!(m["image"]["mime_type"], "image/jpeg");
        let id = m["image"]["id"].as_str().expect("id");
        assert!(
            id.len() >= 15 && id.chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
        let MessageContent::Media(media) = decoded(&input) else {
            panic!("not media");
        };
        assert_eq!(media.kind, MediaKind::Image);
        assert_eq!(media.id.as_deref(), Some(id));
        assert_eq!(media.caption.as_deref(), Some("My broken screen"));
        assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));

        let m = message_of(&UserInput::Image { caption: None });
        assert!(m["image"].get("caption").is_none());
    }
}
