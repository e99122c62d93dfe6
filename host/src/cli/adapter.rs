//! `plugboard adapter decode|render`: webhook bodies and neutral outputs run through one
//! adapter component (the bundled WhatsApp adapter unless `--plugin PATH`), for flow
//! designers and support. Bytes or JSON in from a file or stdin, one JSON line per event or
//! request spec out; nothing here touches a store or the network.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Failure, PluginArg, adapter_error};
use crate::plugins::types::{BotOutput, RenderContext, RequestSpec};
use crate::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, PluginLimits, PluginRuntime};

/// The `render` input: one context and one or several outputs.
#[derive(Deserialize)]
struct RenderInput {
    context: RenderContext,
    #[serde(default)]
    output: Option<BotOutput>,
    #[serde(default)]
    outputs: Vec<BotOutput>,
}

pub(super) fn decode(
    file: &Path,
    plugin: &PluginArg,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let body = read_input(file)?;
    let adapter = load_plugin(plugin)?;
    let decoded = adapter.decode(&body)?.map_err(|e| {
        Failure(format!(
            "the {} adapter rejected the body: {}",
            adapter.name(),
            adapter_error(&e)
        ))
    })?;
    for skipped in &decoded.skipped {
        writeln!(err, "skipped {}: {}", skipped.path, skipped.reason)?;
    }
    for event in &decoded.events {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
    }
    Ok(())
}

pub(super) fn render(file: &Path, plugin: &PluginArg, out: &mut dyn Write) -> Result<(), Failure> {
    let bytes = read_input(file)?;
    let input: RenderInput = serde_json::from_slice(&bytes).map_err(|e| {
        Failure(format!(
            "{}: not a render input ({e}); see README \"adapter render\"",
            file.display()
        ))
    })?;
    let outputs: Vec<BotOutput> = input.output.into_iter().chain(input.outputs).collect();
    if outputs.is_empty() {
        return Err(Failure(format!(
            "{}: no \"output\" or \"outputs\" to render",
            file.display()
        )));
    }
    let adapter = load_plugin(plugin)?;
    for (index, output) in outputs.iter().enumerate() {
        let specs = adapter.render(output, &input.context)?.map_err(|e| {
            Failure(format!(
                "output {index}: the {} adapter refused it: {}",
                adapter.name(),
                adapter_error(&e)
            ))
        })?;
        for spec in &specs {
            writeln!(out, "{}", serde_json::to_string(&spec_json(spec))?)?;
        }
    }
    Ok(())
}

/// A request spec as JSON with its body parsed (the body is JSON text in the contract).
pub fn spec_json(spec: &RequestSpec) -> Value {
    json!({
        "method": spec.method,
        "path": spec.path,
        "body": serde_json::from_str::<Value>(&spec.body).unwrap_or_else(|_| Value::String(spec.body.clone())),
    })
}

fn read_input(file: &Path) -> Result<Vec<u8>, Failure> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    std::fs::read(file).map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))
}

fn load_plugin(arg: &PluginArg) -> Result<AdapterPlugin, Failure> {
    let runtime = Arc::new(
        PluginRuntime::new()
            .map_err(|e| Failure(format!("cannot start the plugin runtime: {e:#}")))?,
    );
    let (bytes, origin) = match &arg.plugin {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| Failure(format!("cannot read plugin {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => (
            BUNDLED_WHATSAPP.to_vec(),
            "the bundled WhatsApp adapter".to_string(),
        ),
    };
    AdapterPlugin::load(&runtime, &bytes, PluginLimits::default())
        .map_err(|e| Failure(format!("cannot load {origin}: {e}")))
}
