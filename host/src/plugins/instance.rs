//! What every kind of plugin shares: loading a component against one world, a small pool
//! of warm instances, and calls under the plugin's limits with failures turned into
//! [`PluginError`]s.
//!
//! Load: [`compile`] → find the plugin kind's export and its WIT version (refusing any
//! other world with the list of what the component exports, and saying so when it is another
//! kind of Plugboard plugin); the caller picks the bindings of that version
//! ([`Compiled::exports`]) → [`prepare`]: link against the deny-all linker (refusing imports
//! the host does not provide) → pre-instantiate.
//!
//! Call ([`InstancePool::call`]): always through [`off_async`], so a call is safe from any
//! thread (see [`super::offthread`]); take a warm instance from the pool (or instantiate
//! one from the pre-instantiated component), reset its deadline, call, and put it back. An
//! instance whose call failed is never reused (a trapped instance is poisoned), nor one that
//! grew past [`RECYCLE_ABOVE_BYTES`]. Plugins are stateless by contract, so reuse changes no
//! result.

use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use super::bindings::{latest, v0_1_0, v0_1_1};
use super::engine::{HostState, PluginLimits, PluginRuntime, WaitRefused};
use super::offthread::off_async;
use super::{FailureKind, PluginError};

/// An instance whose memory grew past this is dropped after its call, giving the memory
/// back, instead of returning to the pool.
pub const RECYCLE_ABOVE_BYTES: usize = 16 << 20;

/// Warm instances kept per plugin; more concurrent calls instantiate extra ones.
const POOL_SIZE: usize = 8;

/// The kinds of Plugboard plugin, by the export that marks them, for refusal messages.
const KNOWN_KINDS: &[(&str, &str)] = &[
    (latest::ADAPTER_EXPORT_PREFIX, "a channel adapter"),
    (latest::HOOK_EXPORT_PREFIX, "a transformer hook"),
];

/// A generated world binding the pool can instantiate.
pub(crate) trait WorldBindings: Sized + 'static {
    /// The bindings' pre-instantiated form (`…Pre<HostState>`).
    type Pre: Send + Sync;
    /// Export name prefix a component must carry, e.g. `plugboard:channel/adapter@0.1.`:
    /// the plugin kind in every version of the supported minor version.
    const EXPORT_PREFIX: &'static str;
    /// The exact export name the bindings look up.
    const EXPORT: &'static str;

    fn new_pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
}

/// Implements [`WorldBindings`] for one version's generated world.
macro_rules! world_bindings {
    ($world:ty, $pre:ty, $prefix:expr, $export:expr) => {
        impl WorldBindings for $world {
            type Pre = $pre;
            const EXPORT_PREFIX: &'static str = $prefix;
            const EXPORT: &'static str = $export;

            fn new_pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                <$pre>::new(pre)
            }

            fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }
        }
    };
}

world_bindings!(
    v0_1_0::ChannelAdapter,
    v0_1_0::ChannelAdapterPre<HostState>,
    v0_1_0::ADAPTER_EXPORT_PREFIX,
    v0_1_0::ADAPTER_EXPORT
);
world_bindings!(
    v0_1_1::ChannelAdapter,
    v0_1_1::ChannelAdapterPre<HostState>,
    v0_1_1::ADAPTER_EXPORT_PREFIX,
    v0_1_1::ADAPTER_EXPORT
);
world_bindings!(
    v0_1_0::hook::TransformerHook,
    v0_1_0::hook::TransformerHookPre<HostState>,
    v0_1_0::HOOK_EXPORT_PREFIX,
    v0_1_0::HOOK_EXPORT
);
world_bindings!(
    v0_1_1::hook::TransformerHook,
    v0_1_1::hook::TransformerHookPre<HostState>,
    v0_1_1::HOOK_EXPORT_PREFIX,
    v0_1_1::HOOK_EXPORT
);

/// A compiled component and the plugin kind's export it carries, not yet linked.
pub(crate) struct Compiled {
    component: Component,
    /// The export that marks the plugin kind, e.g. `plugboard:channel/adapter@0.1.0`.
    export: String,
    /// The WIT package version of that export, e.g. `0.1.0`.
    pub wit_version: String,
}

impl Compiled {
    /// Whether the component exports exactly what world `B` looks up, i.e. was built
    /// against `B`'s version.
    pub fn exports<B: WorldBindings>(&self) -> bool {
        self.export == B::EXPORT
    }
}

/// Compiles and finds the export of world `B`'s plugin kind in any version `B`'s prefix
/// covers (e.g. `plugboard:channel/adapter@0.1.` + patch), and that version.
pub(crate) fn compile<B: WorldBindings>(
    runtime: &PluginRuntime,
    bytes: &[u8],
) -> Result<Compiled, PluginError> {
    let export_prefix = B::EXPORT_PREFIX;
    let component = runtime.compile(bytes)?;
    let engine = runtime.engine();
    let component_type = component.component_type();
    let (export, wit_version) = component_type
        .exports(engine)
        .find_map(|(name, _)| {
            name.strip_prefix(export_prefix)?;
            // The version is what follows the export name's `@`.
            let (_, version) = name.rsplit_once('@')?;
            Some((name.to_string(), version.to_string()))
        })
        .ok_or_else(|| PluginError::WrongWorld {
            expected: format!("{export_prefix}x"),
            found: describe_exports(&component_type, engine),
        })?;
    Ok(Compiled {
        component,
        export,
        wit_version,
    })
}

/// Links `compiled` against the deny-all linker (checking its imports) and pre-instantiates
/// it with world `B`'s bindings (checking the export's types).
pub(crate) fn prepare<B: WorldBindings>(
    runtime: &PluginRuntime,
    compiled: Compiled,
) -> Result<Prepared<B>, PluginError> {
    let engine = runtime.engine();
    let instance_pre = runtime
        .linker()
        .instantiate_pre(&compiled.component)
        .map_err(|e| PluginError::Imports(format!("{e:#}")))?;
    let pre = B::new_pre(instance_pre).map_err(|e| PluginError::WrongWorld {
        expected: B::EXPORT.to_string(),
        found: format!(
            "{} ({e:#})",
            describe_exports(&compiled.component.component_type(), engine)
        ),
    })?;
    Ok(Prepared { pre })
}

/// A component checked against world `B`, pre-instantiated, not yet called.
pub(crate) struct Prepared<B: WorldBindings> {
    pub pre: B::Pre,
}

/// One instance and its store.
pub(crate) struct Warm<B> {
    pub store: Store<HostState>,
    pub bindings: B,
}

/// Instantiates a first instance for a load-time check. `plugin` names the component in a
/// failure (it has no name of its own yet).
pub(crate) fn first_instance<B: WorldBindings + Send>(
    runtime: &PluginRuntime,
    pre: &B::Pre,
    limits: &PluginLimits,
) -> Result<Warm<B>, (Store<HostState>, wasmtime::Error)> {
    let mut store = runtime.new_store(limits);
    // Instantiation runs guest code (start functions): off the async threads too.
    match off_async(|| B::instantiate(pre, &mut store)) {
        Ok(bindings) => Ok(Warm { store, bindings }),
        Err(e) => Err((store, e)),
    }
}

/// The warm instances of one loaded plugin and the limits its calls run under.
pub(crate) struct InstancePool<B: WorldBindings> {
    runtime: Arc<PluginRuntime>,
    limits: PluginLimits,
    pre: B::Pre,
    plugin: String,
    version: String,
    pool: Mutex<Vec<Warm<B>>>,
}

impl<B: WorldBindings> InstancePool<B> {
    /// A pool named after its plugin (for errors), seeded with the load-time instance.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        limits: PluginLimits,
        pre: B::Pre,
        plugin: String,
        version: String,
        first: Option<Warm<B>>,
    ) -> Self {
        let pool = match first {
            Some(warm) if limits.reuse_instances => vec![warm],
            _ => Vec::new(),
        };
        InstancePool {
            runtime,
            limits,
            pre,
            plugin,
            version,
            pool: Mutex::new(pool),
        }
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Runs one call on a warm or fresh instance under the plugin's limits, from any
    /// thread ([`off_async`]).
    pub fn call<R: Send>(
        &self,
        call: &'static str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginError>
    where
        B: Send,
        B::Pre: Sync,
    {
        off_async(|| self.call_here(call, f))
    }

    fn call_here<R>(
        &self,
        call: &'static str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<R>,
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
        match f(&warm.bindings, &mut warm.store) {
            Ok(value) => {
                if limits.reuse_instances && warm.store.data().limiter.peak <= RECYCLE_ABOVE_BYTES {
                    self.put_warm(warm);
                }
                Ok(value)
            }
            Err(error) => Err(self.failure(call, &warm.store, error)),
        }
    }

    fn instantiate(&self, call: &'static str) -> Result<Warm<B>, PluginError> {
        let mut store = self.runtime.new_store(&self.limits);
        match B::instantiate(&self.pre, &mut store) {
            Ok(bindings) => Ok(Warm { store, bindings }),
            Err(error) => Err(self.failure(call, &store, error)),
        }
    }

    fn take_warm(&self) -> Option<Warm<B>> {
        // A poisoned lock only means another call panicked while holding it; the Vec is
        // still a valid pool.
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_warm(&self, warm: Warm<B>) {
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
            &self.plugin,
            &self.version,
            &self.limits,
            call,
            store,
            error,
        )
    }
}

/// Turns a wasmtime error from a call into a [`PluginError`] naming the plugin, the call
/// and the kind of failure, with what the guest printed to stderr (panic messages).
pub(crate) fn failure(
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
        // The trap itself (e.g. "wasm `unreachable` instruction executed"), not wasmtime's
        // multi-line backtrace preamble.
        FailureKind::Trap => match (
            error.downcast_ref::<WaitRefused>(),
            error.downcast_ref::<wasmtime::Trap>(),
        ) {
            (Some(refused), _) => refused.to_string(),
            (None, Some(trap)) => trap.to_string(),
            (None, None) => first_line(&format!("{error:#}")),
        },
        // Not a wasmtime error: checked on the answer (`limits`), never classified here.
        FailureKind::OutputLimit => first_line(&format!("{error:#}")),
    };
    let stderr = state.stderr_text();
    if !stderr.is_empty() {
        // One line: the error ends up in log lines and CLI messages.
        let stderr: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        detail.push_str(&format!(
            "; guest stderr: {}",
            cut(&stderr.join(" | "), 500)
        ));
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

/// The component's exports with their kinds; an export of another kind of Plugboard plugin
/// is named as such (`… — a transformer hook`).
fn describe_exports(
    component_type: &wasmtime::component::types::Component,
    engine: &wasmtime::Engine,
) -> String {
    let exports: Vec<String> = component_type
        .exports(engine)
        .map(|(name, item)| {
            let known = KNOWN_KINDS
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|(_, kind)| format!(": {kind}"))
                .unwrap_or_default();
            format!("{name} ({}{known})", item_kind(&item.ty))
        })
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
