//! Channel identity, settings schema, limits and the webhook subscription handshake.

use crate::types::{
    AuthScheme, ChannelInfo, ChannelLimits, HandshakeReply, SettingSpec, SignatureScheme,
};

/// Graph API version the rendered requests target.
pub const API_VERSION: &str = "v23.0";

/// Meta's limits for the WhatsApp Cloud API (see `shared/field-notes.md`, facts 15 and 16).
pub const LIMITS: ChannelLimits = ChannelLimits {
    max_text_length: 4096,
    max_buttons: 3,
    max_button_title_length: 20,
    max_button_id_length: 256,
    max_list_rows: 10,
    max_list_sections: 10,
    max_row_title_length: 24,
    max_row_description_length: 72,
    max_row_id_length: 200,
    max_body_length: 1024,
    max_header_length: 60,
    max_footer_length: 60,
    max_caption_length: 1024,
};

fn setting(
    name: &str,
    label: &str,
    required: bool,
    secret: bool,
    description: &str,
) -> SettingSpec {
    SettingSpec {
        name: name.to_string(),
        label: label.to_string(),
        required,
        secret,
        description: Some(description.to_string()),
    }
}

pub fn info() -> ChannelInfo {
    ChannelInfo {
        name: "whatsapp".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        settings: vec![
            setting("app_id", "App ID", false, false, "Meta app id"),
            setting(
                "access_token",
                "Access token",
                true,
                true,
                "System-user access token, sent as a bearer token",
            ),
            setting(
                "phone_number_id",
                "Phone number ID",
                true,
                false,
                "Meta phone_number_id of the business number",
            ),
            setting(
                "waba_id",
                "WhatsApp Business Account ID",
                false,
                false,
                "WABA id, for account and template management",
            ),
            setting(
                "verify_token",
                "Verify token",
                true,
                true,
                "Token Meta echoes in the webhook subscription check",
            ),
            setting(
                "app_secret",
                "App secret",
                true,
                true,
                "Key of the X-Hub-Signature-256 HMAC over each webhook body",
            ),
        ],
        signature: Some(SignatureScheme {
            header: "x-hub-signature-256".to_string(),
            prefix: "sha256=".to_string(),
            secret_setting: "app_secret".to_string(),
        }),
        auth: AuthScheme::Bearer("access_token".to_string()),
        limits: LIMITS,
        api_version: API_VERSION.to_string(),
    }
}

/// Meta's subscription check: `hub.mode=subscribe`, `hub.verify_token` equal to the
/// endpoint's verify token, answer `hub.challenge`.
pub fn handshake(query: &[(String, String)], settings: &[(String, String)]) -> HandshakeReply {
    let (Some(mode), Some(token), Some(challenge)) = (
        get(query, "hub.mode"),
        get(query, "hub.verify_token"),
        get(query, "hub.challenge"),
    ) else {
        return HandshakeReply::NotHandshake;
    };
    if mode != "subscribe" {
        return HandshakeReply::Reject(format!("unexpected hub.mode {mode:?}"));
    }
    match get(settings, "verify_token") {
        None | Some("") => {
            HandshakeReply::Reject("the endpoint has no verify_token setting".to_string())
        }
        Some(expected) if constant_time_eq(expected.as_bytes(), token.as_bytes()) => {
            HandshakeReply::Accept(challenge.to_string())
        }
        // Never echo either token: they are secrets.
        Some(_) => HandshakeReply::Reject("hub.verify_token does not match".to_string()),
    }
}

fn get<'a>(list: &'a [(String, String)], key: &str) -> Option<&'a str> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Length-leaking but content-constant-time comparison (the length of a verify token is not
/// the secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
