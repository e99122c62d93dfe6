//! Conversion between the types of two WIT versions, for plugins built against an older one.
//!
//! Every version's bindings derive serde, and the WIT README promises that the JSON form of
//! what two versions share is identical (records are objects with `snake_case` fields,
//! variants `{"Case": payload}`, …). So a value converts by a serde_json round trip: the
//! older version's value is always a valid newer value (a patch only adds), and a newer
//! value converts down unless it uses an addition (a new variant case), which is an error,
//! never a panic.
//!
//! Only the legacy path pays for it: a component of the latest version is called with the
//! host's values as they are.
//!
//! JSON has no NaN or infinity: a non-finite float (which no adapter decodes from the
//! channel's JSON) fails the conversion with an error instead of changing its value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` as the same value of another version's type. `Err` says why it has no such form.
pub(crate) fn convert<From: Serialize + ?Sized, To: DeserializeOwned>(
    value: &From,
) -> Result<To, String> {
    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    serde_json::from_value(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::convert;
    use crate::plugins::bindings::{v0_1_0, v0_1_1};
    use serde_json::json;

    #[test]
    fn a_legacy_decode_result_converts_to_the_latest_types() {
        let legacy: Result<v0_1_0::types::Decoded, v0_1_0::types::AdapterError> =
            serde_json::from_value(json!({ "Ok": {
                "events": [{
                    "dedupe_key": "msg:wamid.1",
                    "conversation_key": "106540352242922:15551234567",
                    "business": {
                        "phone_number_id": "106540352242922",
                        "display_number": null,
                        "account_id": "102290129340398"
                    },
                    "body": { "Message": {
                        "id": "wamid.1",
                        "timestamp": 1717171717,
                        "user": { "user_id": null, "phone": "15551234567", "name": "Alex", "username": null },
                        "context": null,
                        "referral": null,
                        "content": { "Location": {
                            "latitude": 52.52, "longitude": 13.405,
                            "name": null, "address": null, "url": null
                        } }
                    } }
                }],
                "skipped": [{ "path": "entry[0].changes[1]", "reason": "not decoded" }]
            } }))
            .expect("a legacy value");
        let latest: Result<v0_1_1::types::Decoded, v0_1_1::types::AdapterError> =
            convert(&legacy).expect("converts");
        assert_eq!(
            serde_json::to_value(&latest).expect("serialize"),
            serde_json::to_value(&legacy).expect("serialize")
        );
    }

    #[test]
    fn a_latest_value_without_a_legacy_form_is_an_error() {
        use v0_1_1::types::{
            Business, EventBody, NumberUpdate, TemplateChange, TemplateStatusChange, TemplateUpdate,
        };
        let template = EventBody::Template(TemplateUpdate {
            template_id: "1".to_string(),
            name: "order_confirmation".to_string(),
            language: "en_US".to_string(),
            change: TemplateChange::Status(TemplateStatusChange {
                status: "APPROVED".to_string(),
                reason: None,
                detail: None,
            }),
        });
        let error = convert::<_, v0_1_0::types::EventBody>(&template).expect_err("no 0.1.0 form");
        assert!(error.contains("Template"), "{error}");
        let number = EventBody::Number(NumberUpdate {
            display_number: None,
            event: "FLAGGED".to_string(),
            messaging_limit: None,
        });
        assert!(convert::<_, v0_1_0::types::EventBody>(&number).is_err());
        // What both versions share converts down.
        let business = Business {
            phone_number_id: "1".to_string(),
            display_number: None,
            account_id: None,
        };
        let down: v0_1_0::types::Business = convert(&business).expect("converts");
        assert_eq!(down.phone_number_id, "1");
    }

    #[test]
    fn every_output_converts_down_and_back() {
        let outputs = json!([
            { "Text": "hello" },
            { "Media": { "kind": "Image", "source": { "Link": "https://example.com/a.png" }, "caption": "a", "filename": null } },
            { "Location": { "latitude": 1.5, "longitude": -2.25, "name": null, "address": "x" } },
            { "Choices": { "text": "pick", "choices": [{ "id": "a", "title": "A", "description": null }], "button_label": null } },
            { "Template": { "name": "t", "language": "en_US", "header": [], "body": [{ "name": null, "value": { "Currency": ["$1", "USD", 1000] } }], "buttons": [] } },
            { "MarkRead": { "message_id": "wamid.1", "typing": true } },
            { "LocationRequest": "where?" }
        ]);
        let latest: Vec<v0_1_1::types::BotOutput> =
            serde_json::from_value(outputs).expect("latest outputs");
        let legacy: Vec<v0_1_0::types::BotOutput> = convert(&latest).expect("converts down");
        let back: Vec<v0_1_1::types::BotOutput> = convert(&legacy).expect("converts back");
        assert_eq!(back, latest);
    }

    #[test]
    fn a_non_finite_float_is_an_error_not_a_panic() {
        let location = v0_1_1::types::LocationOutput {
            latitude: f64::NAN,
            longitude: 0.0,
            name: None,
            address: None,
        };
        assert!(convert::<_, v0_1_0::types::LocationOutput>(&location).is_err());
    }
}
