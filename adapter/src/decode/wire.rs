//! Meta's webhook wire format, item by item: serde structs for one `messages[]`,
//! `statuses[]` or `errors[]` element and the objects inside them, the `value` of the
//! account-level changes (template status, quality and category, number quality), plus the
//! lenient scalar readers Meta's payloads need (timestamps as strings or numbers, codes and
//! quantities that sometimes arrive quoted, template ids that arrive as numbers). Unknown
//! fields are ignored everywhere; a field of the wrong type fails the one item it belongs
//! to, never the batch.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

// ------------------------------------------------------------------ lenient scalars

/// Unix seconds: Meta sends `"1717171717"`; a bare number is accepted too.
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(UnsignedVisitor("a unix timestamp (string or number)"))
}

/// An optional unix timestamp (`null` or absent → `None`).
pub fn opt_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_option(OptVisitor(UnsignedVisitor(
        "a unix timestamp (string or number)",
    )))
}

/// An unsigned integer sent as a number or a decimal string.
pub fn unsigned<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(UnsignedVisitor("an unsigned integer (string or number)"))
}

/// A signed integer (error codes) sent as a number or a decimal string.
pub fn signed<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(SignedVisitor)
}

/// A decimal number (prices) sent as a number or a decimal string.
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(FloatVisitor)
}

/// An optional boolean that Meta may also send as `"true"`/`"false"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_option(OptVisitor(BoolVisitor))
}

/// A text value sent either as a JSON string or as a JSON value (kept as JSON text).
/// Used for `response_json`, which Meta documents as a string.
pub fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::String(s) => s,
        other => super::canonical::to_string(&other),
    })
}

/// An identifier Meta sends as a string (occasionally as a bare number in test tools).
pub fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(IdVisitor)
}

/// An optional text value Meta may send as a string or a bare number (tier names, dates):
/// numbers are kept as their decimal text; `null`, absent or empty → `None`.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = d.deserialize_option(OptVisitor(IdVisitor))?;
    Ok(text.filter(|t| !t.is_empty()))
}

struct UnsignedVisitor(&'static str);

impl Visitor<'_> for UnsignedVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

struct SignedVisitor;

impl Visitor<'_> for SignedVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer (string or number)")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number (string or number)")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an id (string or integer)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Wraps a visitor so `null` becomes `None`.
struct OptVisitor<V>(V);

impl<'de, V: Visitor<'de> + Copy> Visitor<'de> for OptVisitor<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

impl Clone for UnsignedVisitor {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for UnsignedVisitor {}
impl Clone for IdVisitor {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for IdVisitor {}
impl Clone for BoolVisitor {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for BoolVisitor {}

// ------------------------------------------------------------------ value-level pieces

/// `value.contacts[]`: the profile of a user the change is about.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Contact {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub profile: Option<Profile>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Profile {
    pub name: Option<String>,
    pub username: Option<String>,
}

/// An error object: `{code, title, message, error_data: {details}, href}`.
#[derive(Deserialize, Debug)]
pub struct Error {
    #[serde(deserialize_with = "signed")]
    pub code: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
    #[serde(default)]
    pub href: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ErrorData {
    pub details: Option<String>,
}

// ------------------------------------------------------------------ messages[]

/// The fields every `messages[]` item shares. The type-specific object (`text`, `image`, …)
/// is read separately, by type, from the same item.
#[derive(Deserialize, Debug)]
pub struct Message {
    pub id: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub from_user_id: Option<String>,
    #[serde(deserialize_with = "timestamp")]
    pub timestamp: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub context: Option<Context>,
    #[serde(default)]
    pub referral: Option<Referral>,
    #[serde(default)]
    pub errors: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Context {
    pub id: Option<String>,
    pub from: Option<String>,
    #[serde(deserialize_with = "opt_bool")]
    pub forwarded: Option<bool>,
    #[serde(deserialize_with = "opt_bool")]
    pub frequently_forwarded: Option<bool>,
    pub referred_product: Option<ReferredProduct>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ReferredProduct {
    pub catalog_id: Option<String>,
    pub product_retailer_id: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Referral {
    pub source_url: Option<String>,
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub headline: Option<String>,
    pub body: Option<String>,
    pub media_type: Option<String>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub ctwa_clid: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct Text {
    pub body: String,
}

/// `image`, `audio`, `video`, `document` and `sticker` objects.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Media {
    pub id: Option<String>,
    pub url: Option<String>,
    pub link: Option<String>,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
    #[serde(deserialize_with = "opt_bool")]
    pub voice: Option<bool>,
    #[serde(deserialize_with = "opt_bool")]
    pub animated: Option<bool>,
}

#[derive(Deserialize, Debug)]
pub struct Location {
    #[serde(deserialize_with = "float")]
    pub latitude: f64,
    #[serde(deserialize_with = "float")]
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// One card of a `contacts` message.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Card {
    pub name: CardName,
    pub phones: Vec<CardPhone>,
    pub emails: Vec<CardEmail>,
    pub urls: Vec<CardUrl>,
    pub addresses: Vec<CardAddress>,
    pub org: Option<CardOrg>,
    pub birthday: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardName {
    pub formatted_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub middle_name: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardPhone {
    pub phone: Option<String>,
    pub wa_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardEmail {
    pub email: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardUrl {
    pub url: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardAddress {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub country_code: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct CardOrg {
    pub company: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
}

/// `interactive`: only the subtype tag; the reply object is read by subtype.
#[derive(Deserialize, Debug)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
}

/// `interactive.button_reply` and `interactive.list_reply`.
#[derive(Deserialize, Debug)]
pub struct Reply {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// `interactive.nfm_reply` (WhatsApp Flows, address messages).
#[derive(Deserialize, Debug)]
pub struct NfmReply {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(deserialize_with = "json_text")]
    pub response_json: String,
}

/// `button`: a template quick-reply button.
#[derive(Deserialize, Debug)]
pub struct Button {
    #[serde(default)]
    pub payload: Option<String>,
    pub text: String,
}

#[derive(Deserialize, Debug)]
pub struct Reaction {
    pub message_id: String,
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct Order {
    #[serde(deserialize_with = "id_string")]
    pub catalog_id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<OrderItem>,
}

#[derive(Deserialize, Debug)]
pub struct OrderItem {
    #[serde(deserialize_with = "id_string")]
    pub product_retailer_id: String,
    #[serde(deserialize_with = "unsigned")]
    pub quantity: u64,
    #[serde(deserialize_with = "float")]
    pub item_price: f64,
    pub currency: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct System {
    pub body: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub new_wa_id: Option<String>,
    pub wa_id: Option<String>,
    pub new_user_id: Option<String>,
    pub user_id: Option<String>,
}

/// `edit`: the id of the edited message and its new content as a message object.
#[derive(Deserialize, Debug)]
pub struct EditBody {
    pub original_message_id: String,
    pub message: serde_json::Value,
}

/// `revoke`.
#[derive(Deserialize, Debug)]
pub struct RevokeBody {
    pub original_message_id: String,
}

// ------------------------------------------------------------------ statuses[]

#[derive(Deserialize, Debug)]
pub struct Status {
    pub id: String,
    pub status: String,
    #[serde(deserialize_with = "timestamp")]
    pub timestamp: u64,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    #[serde(default)]
    pub conversation: Option<Conversation>,
    #[serde(default)]
    pub pricing: Option<Pricing>,
    #[serde(default)]
    pub errors: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Conversation {
    pub id: Option<String>,
    #[serde(deserialize_with = "opt_timestamp")]
    pub expiration_timestamp: Option<u64>,
    pub origin: Option<Origin>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Origin {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct Pricing {
    #[serde(deserialize_with = "opt_bool")]
    pub billable: Option<bool>,
    pub pricing_model: Option<String>,
    pub category: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

// ------------------------------------------------------------------ account changes

/// `message_template_status_update`: `{event, message_template_id, message_template_name,
/// message_template_language, reason, other_info?, rejection_info?, disable_info?}`.
#[derive(Deserialize, Debug)]
pub struct TemplateStatus {
    pub event: String,
    #[serde(deserialize_with = "id_string")]
    pub message_template_id: String,
    pub message_template_name: String,
    pub message_template_language: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub reason: Option<String>,
    #[serde(default)]
    pub other_info: Option<OtherInfo>,
    #[serde(default)]
    pub rejection_info: Option<RejectionInfo>,
    #[serde(default)]
    pub disable_info: Option<DisableInfo>,
}

/// `other_info` of a paused, locked or unlocked template.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct OtherInfo {
    #[serde(deserialize_with = "opt_text")]
    pub title: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub description: Option<String>,
}

/// `rejection_info` of a template rejected for its format.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct RejectionInfo {
    #[serde(deserialize_with = "opt_text")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "opt_text")]
    pub recommendation: Option<String>,
}

/// `disable_info` of a disabled template (`disable_date`: unix seconds or a date).
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct DisableInfo {
    #[serde(deserialize_with = "opt_text")]
    pub disable_date: Option<String>,
}

/// `message_template_quality_update`.
#[derive(Deserialize, Debug)]
pub struct TemplateQuality {
    #[serde(deserialize_with = "id_string")]
    pub message_template_id: String,
    pub message_template_name: String,
    pub message_template_language: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub previous_quality_score: Option<String>,
    pub new_quality_score: String,
}

/// `template_category_update`: a completed change has `previous_category` and
/// `new_category`; an impending one (24 hours ahead) has `correct_category`, with
/// `new_category` holding the category still in force.
#[derive(Deserialize, Debug)]
pub struct TemplateCategory {
    #[serde(deserialize_with = "id_string")]
    pub message_template_id: String,
    pub message_template_name: String,
    pub message_template_language: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub previous_category: Option<String>,
    pub new_category: String,
    #[serde(default, deserialize_with = "opt_text")]
    pub correct_category: Option<String>,
}

/// `phone_number_quality_update`. Other keys (`old_limit`,
/// `max_daily_conversation_per_phone`, …) are ignored.
#[derive(Deserialize, Debug)]
pub struct NumberQuality {
    #[serde(default, deserialize_with = "opt_text")]
    pub display_phone_number: Option<String>,
    pub event: String,
    /// Deprecated by Meta (February 2026) for `max_daily_conversations_per_business`.
    #[serde(default, deserialize_with = "opt_text")]
    pub current_limit: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub max_daily_conversations_per_business: Option<String>,
}
