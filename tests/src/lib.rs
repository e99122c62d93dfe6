//! End-to-end test support, shared by the `it` test binary.
//!
//! - [`whatsapp`]: the bundled WhatsApp adapter, compiled and loaded once per test binary
//!   (Cranelift compiling the component is the slow part; every test shares it).
//! - Fixture discovery over `adapter/tests/fixtures/{inbound,outbound,classify}`, the same
//!   files and naming as the adapter's native golden runner (`adapter/tests/golden.rs`).
//! - [`convert`]: moves a value between the adapter's native types
//!   (`plugboard_whatsapp::types`) and the host's (`plugboard::plugins::types`) through
//!   `serde_json::Value`. Both are generated from the same WIT with the same serde derives,
//!   so the JSON shape must be identical; a failure here is a real contract bug.

pub mod mock_graph;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use plugboard::plugins::{
    AdapterPlugin, BUNDLED_WHATSAPP, HookPlugin, PluginLimits, PluginRuntime,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The one plugin runtime (engine + epoch ticker) of the test binary.
pub fn runtime() -> &'static Arc<PluginRuntime> {
    static RUNTIME: OnceLock<Arc<PluginRuntime>> = OnceLock::new();
    RUNTIME.get_or_init(|| Arc::new(PluginRuntime::new().expect("start the plugin runtime")))
}

/// The bundled WhatsApp adapter, loaded once with default limits.
pub fn whatsapp() -> &'static AdapterPlugin {
    static WHATSAPP: OnceLock<AdapterPlugin> = OnceLock::new();
    WHATSAPP.get_or_init(|| {
        AdapterPlugin::load(runtime(), BUNDLED_WHATSAPP, PluginLimits::default())
            .expect("the bundled WhatsApp adapter loads")
    })
}

/// Loads a component from a file with the given limits (on the shared runtime).
pub fn load_file(path: &str, limits: PluginLimits) -> AdapterPlugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    AdapterPlugin::load(runtime(), &bytes, limits).unwrap_or_else(|e| panic!("load {path}: {e}"))
}

/// Loads a transformer hook component from a file, named after the file, with the given
/// limits (on the shared runtime).
pub fn load_hook(path: &str, limits: PluginLimits) -> Arc<HookPlugin> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let name = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("hook");
    match HookPlugin::load(runtime(), name, &bytes, limits) {
        Ok(hook) => Arc::new(hook),
        Err(e) => panic!("load {path}: {e}"),
    }
}

/// `adapter/tests/fixtures/KIND`.
pub fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../adapter/tests/fixtures")
        .join(kind)
}

/// `adapter/tests/fixtures/KIND/NAME.json`.
pub fn fixture(kind: &str, name: &str) -> PathBuf {
    fixture_dir(kind).join(format!("{name}.json"))
}

/// Every `NAME.json` (not `*.expected.json`) of a fixture kind, sorted.
pub fn fixture_inputs(kind: &str) -> Vec<PathBuf> {
    let dir = fixture_dir(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    files
}

/// `NAME.expected.json` next to `NAME.json`.
pub fn expected_path(input: &Path) -> PathBuf {
    let stem = input.file_stem().and_then(|s| s.to_str()).expect("stem");
    input.with_file_name(format!("{stem}.expected.json"))
}

/// The parsed `NAME.expected.json` of a fixture input.
pub fn expected(input: &Path) -> Value {
    let path = expected_path(input);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Short display name of a fixture: `kind/NAME`.
pub fn fixture_name(input: &Path) -> String {
    let kind = input
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("?");
    let stem = input.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
    format!("{kind}/{stem}")
}

/// Re-types a value through its JSON form (native adapter types ↔ host types).
pub fn convert<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, String> {
    let json = serde_json::to_value(value).map_err(|e| format!("serialize: {e}"))?;
    serde_json::from_value(json.clone()).map_err(|e| format!("deserialize {json}: {e}"))
}

/// Serializes to a JSON value (the types here always serialize).
pub fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialize to JSON")
}

/// The expected-file form of a render result: `{"Ok": [spec…]}` (bodies parsed) or
/// `{"Err": …}`, from the host types, as the CLI prints specs.
pub fn host_specs_json(
    result: &Result<
        Vec<plugboard::plugins::types::RequestSpec>,
        plugboard::plugins::types::AdapterError,
    >,
) -> Value {
    match result {
        Ok(specs) => {
            json!({ "Ok": specs.iter().map(plugboard::cli::spec_json).collect::<Vec<_>>() })
        }
        Err(e) => json!({ "Err": e }),
    }
}

/// The same from the adapter's native types, through the host types (their serde forms are
/// identical by construction; a native value that does not convert is a contract bug).
pub fn native_specs_json(
    result: &Result<Vec<plugboard_whatsapp::types::RequestSpec>, plugboard_whatsapp::AdapterError>,
) -> Value {
    match convert(result) {
        Ok(host) => host_specs_json(&host),
        Err(e) => panic!("native render result does not convert to host types: {e}"),
    }
}

/// Parses one fixture file into both the native and the host form of a case.
pub fn parse_both<N: DeserializeOwned, H: DeserializeOwned>(
    name: &str,
    bytes: &[u8],
) -> Result<(N, H), String> {
    match (
        serde_json::from_slice::<N>(bytes),
        serde_json::from_slice::<H>(bytes),
    ) {
        (Ok(n), Ok(h)) => Ok((n, h)),
        (n, h) => Err(format!(
            "{name}: fixture does not parse (native: {:?}, host: {:?})",
            n.err().map(|e| e.to_string()),
            h.err().map(|e| e.to_string())
        )),
    }
}

/// A pretty-printed diff section for assertion messages.
pub fn mismatch(what: &str, expected: &Value, actual: &Value) -> String {
    format!(
        "{what}: mismatch\n--- expected\n{}\n--- actual\n{}",
        serde_json::to_string_pretty(expected).unwrap_or_default(),
        serde_json::to_string_pretty(actual).unwrap_or_default()
    )
}
