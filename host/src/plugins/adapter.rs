//! A loaded channel adapter: checked at load, called under limits, instances reused.
//!
//! Load: compile → find the adapter export and its version (refusing any other world with
//! the list of what the component exports) → link against the deny-all linker (refusing
//! imports the host does not provide) → pre-instantiate → smoke call `info`.
//!
//! Call: take a warm instance from the pool (or instantiate one from the pre-instantiated
//! component), reset its deadline, call, and put it back. An instance whose call failed is
//! never reused (a trapped instance is poisoned), nor one that grew past
//! [`RECYCLE_ABOVE_BYTES`]. The adapter is stateless by contract, so reuse changes no result.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;

use super::bindings::v0_1::{self, ChannelAdapter, ChannelAdapterPre};
use super::engine::{HostState, PluginLimits, PluginRuntime};
use super::types::{
    AdapterError, BotOutput, ChannelInfo, Decoded, HandshakeReply, RenderContext, RequestSpec,
    SendOutcome, SendResult,
};
use super::{FailureKind, PluginError};

/// An instance whose memory grew past this is dropped after its call, giving the memory
/// back, instead of returning to the pool.
pub const RECYCLE_ABOVE_BYTES: usize = 16 << 20;

/// Warm instances kept per plugin; more concurrent calls instantiate extra ones.
const POOL_SIZE: usize = 8;

struct Warm {
    store: Store<HostState>,
    adapter: ChannelAdapter,
}

pub struct AdapterPlugin {
    runtime: Arc<PluginRuntime>,
    limits: PluginLimits,
    pre: ChannelAdapterPre<HostState>,
    info: ChannelInfo,
    /// The WIT package version the component was built against, e.g. `0.1.0`.
    wit_version: String,
    /// sha256 of the component bytes, hex.
    hash: String,
    pool: Mutex<Vec<Warm>>,
}

impl AdapterPlugin {
    /// Loads and checks an adapter component.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let component = runtime.compile(bytes)?;
        let engine = runtime.engine();
        let component_type = component.component_type();

        let wit_version = component_type
            .exports(engine)
            .find_map(|(name, _)| {
                name.strip_prefix(v0_1::ADAPTER_EXPORT_PREFIX)
                    .map(|patch| format!("0.1.{patch}"))
            })
            .ok_or_else(|| PluginError::WrongWorld {
                expected: format!("{}x", v0_1::ADAPTER_EXPORT_PREFIX),
                found: describe_exports(&component_type, engine),
            })?;

        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Imports(format!("{e:#}")))?;
        let pre = ChannelAdapterPre::new(instance_pre).map_err(|e| PluginError::WrongWorld {
            expected: v0_1::ADAPTER_EXPORT.to_string(),
            found: format!("{} ({e:#})", describe_exports(&component_type, engine)),
        })?;

        // Smoke call on a first instance, which then becomes the first warm one: a component
        // that cannot describe itself is refused.
        let mut store = runtime.new_store(&limits);
        let smoke = pre
            .instantiate(&mut store)
            .and_then(|adapter| {
                let info = adapter.plugboard_channel_adapter().call_info(&mut store)?;
                Ok((adapter, info))
            })
            .map_err(|e| {
                PluginError::Smoke(failure("<loading>", "", &limits, "info", &store, e).to_string())
            });
        let (adapter, info) = smoke?;
        if info.name.trim().is_empty() || info.version.trim().is_empty() {
            return Err(PluginError::Smoke(
                "`info` returned an empty name or version".to_string(),
            ));
        }
        let pool = if limits.reuse_instances {
            vec![Warm { store, adapter }]
        } else {
            Vec::new()
        };
        Ok(AdapterPlugin {
            runtime: runtime.clone(),
            limits,
            pre,
            info,
            wit_version,
            hash: hex::encode(Sha256::digest(bytes)),
            pool: Mutex::new(pool),
        })
    }

    pub fn info(&self) -> &ChannelInfo {
        &self.info
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn version(&self) -> &str {
        &self.info.version
    }

    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }

    /// sha256 of the component bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    pub fn handshake(
        &self,
        query: &[(String, String)],
        settings: &[(String, String)],
    ) -> Result<HandshakeReply, PluginError> {
        self.call("handshake", |a, s| {
            a.plugboard_channel_adapter()
                .call_handshake(s, query, settings)
        })
    }

    pub fn decode(&self, body: &[u8]) -> Result<Result<Decoded, AdapterError>, PluginError> {
        self.call("decode", |a, s| {
            a.plugboard_channel_adapter().call_decode(s, body)
        })
    }

    pub fn render(
        &self,
        output: &BotOutput,
        context: &RenderContext,
    ) -> Result<Result<Vec<RequestSpec>, AdapterError>, PluginError> {
        self.call("render", |a, s| {
            a.plugboard_channel_adapter()
                .call_render(s, output, context)
        })
    }

    pub fn classify(&self, outcome: &SendOutcome, attempt: u32) -> Result<SendResult, PluginError> {
        self.call("classify", |a, s| {
            a.plugboard_channel_adapter()
                .call_classify(s, outcome, attempt)
        })
    }

    /// Runs one call on a warm or fresh instance under the plugin's limits.
    fn call<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(&ChannelAdapter, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let limits = &self.limits;
        let warm = if limits.reuse_instances {
            self.take_warm()
        } else {
            None
        };
        let mut warm = match warm {
            Some(warm) => warm,
            None => self.instantiate(call)?,
        };
        warm.store.set_epoch_deadline(limits.deadline_ticks());
        match f(&warm.adapter, &mut warm.store) {
            Ok(value) => {
                if limits.reuse_instances && warm.store.data().limiter.peak <= RECYCLE_ABOVE_BYTES {
                    self.put_warm(warm);
                }
                Ok(value)
            }
            Err(error) => Err(self.failure(call, &warm.store, error)),
        }
    }

    fn instantiate(&self, call: &'static str) -> Result<Warm, PluginError> {
        let mut store = self.runtime.new_store(&self.limits);
        match self.pre.instantiate(&mut store) {
            Ok(adapter) => Ok(Warm { store, adapter }),
            Err(error) => Err(self.failure(call, &store, error)),
        }
    }

    fn take_warm(&self) -> Option<Warm> {
        // A poisoned lock only means another call panicked while holding it; the Vec is
        // still a valid pool.
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_warm(&self, warm: Warm) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(warm);
        }
    }

    fn failure(
        &self,
        call: &'static str,
        store: &Store<HostState>,
        error: wasmtime::Error,
    ) -> PluginError {
        failure(
            &self.info.name,
            &self.info.version,
            &self.limits,
            call,
            store,
            error,
        )
    }
}

/// Turns a wasmtime error from a call into a [`PluginError`] naming the plugin, the call
/// and the kind of failure, with what the guest printed to stderr (panic messages).
fn failure(
    plugin: &str,
    version: &str,
    limits: &PluginLimits,
    call: &'static str,
    store: &Store<HostState>,
    error: wasmtime::Error,
) -> PluginError {
    let state = store.data();
    let kind = if state.limiter.exceeded {
        FailureKind::MemoryLimit
    } else if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        FailureKind::DeadlineExceeded
    } else {
        FailureKind::Trap
    };
    let mut detail = match kind {
        FailureKind::DeadlineExceeded => format!("interrupted after {:?}", limits.call_deadline),
        FailureKind::MemoryLimit => format!("limit is {} bytes", limits.max_memory_bytes),
        FailureKind::Trap => first_line(&format!("{error:#}")),
    };
    let stderr = state.stderr_text();
    if !stderr.is_empty() {
        detail.push_str(&format!("; guest stderr: {}", cut(&stderr, 500)));
    }
    tracing::warn!(plugin, version, call, %kind, %detail, "plugin call failed");
    PluginError::Call {
        plugin: plugin.to_string(),
        version: version.to_string(),
        call,
        kind,
        detail,
    }
}

fn describe_exports(
    component_type: &wasmtime::component::types::Component,
    engine: &wasmtime::Engine,
) -> String {
    let exports: Vec<String> = component_type
        .exports(engine)
        .map(|(name, item)| format!("{name} ({})", item_kind(&item.ty)))
        .collect();
    if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    }
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
