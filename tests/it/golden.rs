//! Every golden fixture through the compiled component AND natively: both must equal the
//! stored `NAME.expected.json`, and the native result must survive the trip into the
//! host's types unchanged (same serde shape on both sides of the WIT boundary).

use std::path::Path;

use plugboard::plugins::types as host;
use plugboard_tests::{
    convert, expected, fixture_inputs, fixture_name, host_specs_json, mismatch, native_specs_json,
    parse_both, to_json, whatsapp,
};
use plugboard_whatsapp::types as native;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Runs `check` on every fixture of `kind` and asserts once with every failure.
fn run(kind: &str, minimum: usize, check: impl Fn(&Path, &[u8], &mut Vec<String>)) {
    let files = fixture_inputs(kind);
    assert!(
        files.len() >= minimum,
        "{kind}: {} fixtures, at least {minimum} expected",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read fixture");
        check(file, &bytes, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) over {} {kind} fixtures:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// Compares the component's and the native result with the expectation, and checks that the
/// native value re-typed as the host type serializes to the same JSON.
fn compare<N, H>(
    file: &Path,
    component: Result<Value, String>,
    native_value: &N,
    native_json: Value,
    failures: &mut Vec<String>,
) where
    N: Serialize,
    H: Serialize + DeserializeOwned,
{
    let name = fixture_name(file);
    let expected = expected(file);
    match component {
        Ok(actual) if actual == expected => {}
        Ok(actual) => failures.push(mismatch(&format!("{name} (component)"), &expected, &actual)),
        Err(e) => failures.push(format!("{name} (component): plugin error: {e}")),
    }
    if native_json != expected {
        failures.push(mismatch(
            &format!("{name} (native)"),
            &expected,
            &native_json,
        ));
    }
    match convert::<N, H>(native_value) {
        Ok(host_value) => {
            let (before, after) = (to_json(native_value), to_json(&host_value));
            if before != after {
                failures.push(mismatch(
                    &format!("{name} (native -> host type round trip)"),
                    &before,
                    &after,
                ));
            }
        }
        Err(e) => failures.push(format!(
            "{name}: native value does not convert to the host type: {e}"
        )),
    }
}

#[test]
fn inbound_component_and_native_match_golden() {
    let plugin = whatsapp();
    run("inbound", 35, |file, body, failures| {
        let component = plugin
            .decode(body)
            .map(|r| to_json(&r))
            .map_err(|e| e.to_string());
        let native_result = plugboard_whatsapp::decode(body);
        let native_json = to_json(&native_result);
        compare::<_, Result<host::Decoded, host::AdapterError>>(
            file,
            component,
            &native_result,
            native_json,
            failures,
        );
    });
}

#[test]
fn outbound_component_and_native_match_golden() {
    #[derive(Deserialize)]
    struct NativeCase {
        output: native::BotOutput,
        context: native::RenderContext,
    }
    #[derive(Deserialize)]
    struct HostCase {
        output: host::BotOutput,
        context: host::RenderContext,
    }
    let plugin = whatsapp();
    run("outbound", 20, |file, bytes, failures| {
        let name = fixture_name(file);
        let (native_case, host_case) = match parse_both::<NativeCase, HostCase>(&name, bytes) {
            Ok(cases) => cases,
            Err(e) => return failures.push(e),
        };
        // The host's input, built from the native one, must be what the fixture parses to.
        match convert::<_, host::BotOutput>(&native_case.output) {
            Ok(output) if output == host_case.output => {}
            Ok(_) => failures.push(format!("{name}: output differs after native -> host")),
            Err(e) => failures.push(format!("{name}: output does not convert: {e}")),
        }
        let component = plugin
            .render(&host_case.output, &host_case.context)
            .map(|r| host_specs_json(&r))
            .map_err(|e| e.to_string());
        let native_result = plugboard_whatsapp::render(&native_case.output, &native_case.context);
        let native_json = native_specs_json(&native_result);
        compare::<_, Result<Vec<host::RequestSpec>, host::AdapterError>>(
            file,
            component,
            &native_result,
            native_json,
            failures,
        );
    });
}

#[test]
fn classify_component_and_native_match_golden() {
    #[derive(Deserialize)]
    struct NativeCase {
        outcome: native::SendOutcome,
        attempt: u32,
    }
    #[derive(Deserialize)]
    struct HostCase {
        outcome: host::SendOutcome,
        attempt: u32,
    }
    let plugin = whatsapp();
    run("classify", 10, |file, bytes, failures| {
        let name = fixture_name(file);
        let (native_case, host_case) = match parse_both::<NativeCase, HostCase>(&name, bytes) {
            Ok(cases) => cases,
            Err(e) => return failures.push(e),
        };
        let component = plugin
            .classify(&host_case.outcome, host_case.attempt)
            .map(|r| to_json(&r))
            .map_err(|e| e.to_string());
        let native_result = plugboard_whatsapp::classify(&native_case.outcome, native_case.attempt);
        let native_json = to_json(&native_result);
        compare::<_, host::SendResult>(file, component, &native_result, native_json, failures);
    });
}

#[test]
fn info_component_equals_native() {
    let component = to_json(whatsapp().info());
    let native = to_json(&plugboard_whatsapp::info());
    assert_eq!(component, native);
    let host_info: host::ChannelInfo =
        convert(&plugboard_whatsapp::info()).expect("native info converts to the host type");
    assert_eq!(&host_info, whatsapp().info());
}
