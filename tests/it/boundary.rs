//! Large and concurrent inputs through the compiled component: a typed answer (events or
//! an adapter error) identical to the native adapter's, never a trap.

use plugboard_tests::{expected, fixture, to_json, whatsapp};
use serde_json::{Value, json};

/// A webhook with `count` text messages from `senders` different users in one change.
fn batch_body(count: usize, senders: usize, text: &str) -> Vec<u8> {
    let messages: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "from": format!("1555000{:04}", i % senders),
                "id": format!("wamid.batch.{i:05}"),
                "timestamp": (1_717_171_717 + i).to_string(),
                "type": "text",
                "text": {"body": format!("{text} #{i}")},
            })
        })
        .collect();
    let contacts: Vec<Value> = (0..senders)
        .map(|s| json!({"profile": {"name": format!("User {s}")}, "wa_id": format!("1555000{s:04}")}))
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "contacts": contacts,
                    "messages": messages,
                },
            }],
        }],
    }))
    .expect("JSON")
}

/// Decodes through the component and natively; both must agree exactly.
fn decode_both(body: &[u8]) -> Value {
    let component = whatsapp()
        .decode(body)
        .unwrap_or_else(|e| panic!("the component must answer, not fail: {e}"));
    let component = to_json(&component);
    let native = to_json(&plugboard_whatsapp::decode(body));
    assert!(component == native, "component and native results differ");
    component
}

#[test]
fn a_thousand_message_batch_decodes_every_event_in_order() {
    let body = batch_body(1000, 7, "hello");
    let result = decode_both(&body);
    let events = result["Ok"]["events"].as_array().expect("Ok with events");
    assert_eq!(events.len(), 1000);
    assert_eq!(result["Ok"]["skipped"], json!([]));
    for (i, event) in events.iter().enumerate() {
        let message = &event["body"]["Message"];
        assert_eq!(message["id"], json!(format!("wamid.batch.{i:05}")));
        assert_eq!(message["content"]["Text"], json!(format!("hello #{i}")));
        assert_eq!(message["timestamp"], json!(1_717_171_717 + i as u64));
        assert_eq!(
            event["conversation_key"],
            json!(format!("106540352242922:1555000{:04}", i % 7))
        );
        assert_eq!(message["user"]["name"], json!(format!("User {}", i % 7)));
    }
}

#[test]
fn a_five_megabyte_message_is_an_answer_not_a_trap() {
    let text = "x".repeat(5 << 20);
    let body = batch_body(1, 1, &text);
    assert!(body.len() > 5 << 20);
    let result = decode_both(&body);
    // Whatever the adapter's policy on huge texts, it is a typed answer; today it decodes.
    match (&result.get("Ok"), &result.get("Err")) {
        (Some(ok), None) => {
            let events = ok["events"].as_array().expect("events");
            assert_eq!(events.len(), 1);
            assert_eq!(
                events[0]["body"]["Message"]["content"]["Text"]
                    .as_str()
                    .map(str::len),
                Some(text.len() + " #0".len())
            );
        }
        (None, Some(err)) => assert!(err.is_object(), "typed adapter error: {err}"),
        _ => panic!("neither Ok nor Err: {result}"),
    }
    // The instance that grew for this body is not kept; the next call is normal.
    let file = fixture("inbound", "msg_text");
    let small = whatsapp()
        .decode(&std::fs::read(&file).expect("read"))
        .expect("call");
    assert_eq!(to_json(&small), expected(&file));
}

#[test]
fn five_megabytes_of_garbage_is_a_malformed_error() {
    let body = vec![b'{'; 5 << 20];
    let result = decode_both(&body);
    assert!(
        result["Err"]["Malformed"].is_string(),
        "expected Err(Malformed), got {}",
        serde_json::to_string(&result)
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect::<String>()
    );
}

#[test]
fn four_threads_on_one_plugin_get_their_own_answers() {
    let names = [
        "msg_text",
        "batch_several_senders",
        "status_read",
        "malformed_not_object",
    ];
    let plugin = whatsapp();
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(move || {
                    let file = fixture("inbound", name);
                    let body = std::fs::read(&file).expect("read fixture");
                    let want = expected(&file);
                    for round in 0..25 {
                        let got = plugin.decode(&body).expect("plugin call");
                        assert_eq!(to_json(&got), want, "{name}, round {round}");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a decoding thread panicked");
        }
    });
}
