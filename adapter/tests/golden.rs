//! Golden fixtures, run natively. The same files run through the compiled component in
//! `tests/it/golden.rs`, which must give identical results.
//!
//! - `fixtures/inbound/NAME.json`: a raw webhook body; `NAME.expected.json`: the JSON of
//!   `Result<Decoded, AdapterError>`.
//! - `fixtures/outbound/NAME.json`: `{"output": BotOutput, "context": RenderContext}`;
//!   `NAME.expected.json`: `{"Ok": [{"method", "path", "body": <parsed JSON>}]}` or `{"Err": …}`.
//! - `fixtures/classify/NAME.json`: `{"outcome": SendOutcome, "attempt": N}`;
//!   `NAME.expected.json`: the JSON of `SendResult`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p plugboard-whatsapp --test golden` rewrites the expected
//! files; review every diff before committing it.

use plugboard_whatsapp::types::{BotOutput, RenderContext, SendOutcome};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// Every `NAME.json` (not `*.expected.json`) in a fixture directory, sorted.
fn inputs(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir(kind))
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    files
}

fn expected_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().and_then(|s| s.to_str()).expect("stem");
    input.with_file_name(format!("{stem}.expected.json"))
}

/// Compares `actual` with the stored expectation (or rewrites it under `UPDATE_GOLDEN`).
/// Returns a failure message instead of panicking so one run reports every mismatch.
fn check(input: &Path, actual: Value) -> Option<String> {
    let path = expected_path(input);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).expect("serialize") + "\n";
        std::fs::write(&path, text).expect("write expected");
        return None;
    }
    let expected: Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("expected file is JSON"),
        Err(e) => return Some(format!("{}: no expected file ({e})", input.display())),
    };
    (expected != actual).then(|| {
        format!(
            "{}: mismatch\n--- expected\n{}\n--- actual\n{}",
            input.display(),
            serde_json::to_string_pretty(&expected).unwrap_or_default(),
            serde_json::to_string_pretty(&actual).unwrap_or_default()
        )
    })
}

fn run(kind: &str, minimum: usize, f: impl Fn(&[u8]) -> Value) {
    let files = inputs(kind);
    assert!(
        files.len() >= minimum,
        "{kind}: {} fixtures, at least {minimum} expected",
        files.len()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p| check(p, f(&std::fs::read(p).expect("read fixture"))))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Request specs with their JSON body parsed, so expected files are readable.
pub fn specs_json(
    result: &Result<Vec<plugboard_whatsapp::types::RequestSpec>, plugboard_whatsapp::AdapterError>,
) -> Value {
    match result {
        Ok(specs) => json!({ "Ok": specs.iter().map(|s| json!({
            "method": s.method,
            "path": s.path,
            "body": serde_json::from_str::<Value>(&s.body).unwrap_or(Value::String(s.body.clone())),
        })).collect::<Vec<_>>() }),
        Err(e) => json!({ "Err": e }),
    }
}

#[test]
fn inbound() {
    run("inbound", 35, |body| {
        serde_json::to_value(plugboard_whatsapp::decode(body)).expect("serialize")
    });
}

#[test]
fn outbound() {
    #[derive(serde::Deserialize)]
    struct Case {
        output: BotOutput,
        context: RenderContext,
    }
    run("outbound", 20, |bytes| {
        let case: Case = serde_json::from_slice(bytes).expect("outbound fixture shape");
        specs_json(&plugboard_whatsapp::render(&case.output, &case.context))
    });
}

#[test]
fn classify() {
    #[derive(serde::Deserialize)]
    struct Case {
        outcome: SendOutcome,
        attempt: u32,
    }
    run("classify", 10, |bytes| {
        let case: Case = serde_json::from_slice(bytes).expect("classify fixture shape");
        serde_json::to_value(plugboard_whatsapp::classify(&case.outcome, case.attempt))
            .expect("serialize")
    });
}
