//! The process-wide wasmtime engine, narrowed to what plugins may use.
//!
//! Invariants every plugin call relies on:
//! - epoch interruption is on and a ticker thread advances the epoch every [`TICK`]; every
//!   store gets a deadline in ticks before each call, so a guest that loops forever traps
//!   with `Interrupt` instead of hanging a worker;
//! - every store has a [`MemoryLimiter`]; growing past the plugin's limit traps the guest;
//! - the linker holds WASI preview 2 only, with a deny-all context: no preopened
//!   directories, no environment or arguments, no sockets or name lookup, a frozen clock,
//!   fixed randomness, stdout discarded and stderr captured (for panic messages). No
//!   `wasi:http`: a component that imports it fails to link.
//!
//! Compiled components are cached by the sha256 of their bytes (a few entries), so the
//! same plugin loaded for many endpoints, or reloaded after an admin change, is compiled
//! once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::PluginError;

/// How often the epoch advances: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(5);

/// How much of a guest's stderr is kept for error messages.
const STDERR_CAPTURE: usize = 4096;

/// Per-plugin limits, applied to every call.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Largest linear memory a plugin instance may grow to.
    pub max_memory_bytes: usize,
    /// Wall-clock budget of one call.
    pub call_deadline: Duration,
    /// Keep warm instances between calls (the default). Off, every call instantiates a
    /// fresh instance: slower, only useful to measure that cost.
    pub reuse_instances: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            max_memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(500),
            reuse_instances: true,
        }
    }
}

impl PluginLimits {
    /// Defaults for transformer hooks, which run on every message and every output: a 50 ms
    /// deadline and 32 MiB of memory.
    pub fn hook_default() -> Self {
        PluginLimits {
            max_memory_bytes: 32 << 20,
            call_deadline: Duration::from_millis(50),
            reuse_instances: true,
        }
    }

    /// The deadline in epoch ticks, rounded up, at least one.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self
            .call_deadline
            .as_micros()
            .div_ceil(TICK.as_micros().max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// Compiled components kept by content hash, so loading the same bytes again (every
/// endpoint on the bundled adapter, an endpoint reloaded after an admin change) skips
/// Cranelift. Bounded: the least recently used entry goes when it is full.
const COMPILED_CACHE: usize = 16;

/// Owns the engine, the linker and the epoch ticker. Cheap to share behind an `Arc`.
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    /// sha256 of the bytes → the compiled component (a `Component` is a cheap handle),
    /// least recently used first.
    compiled: Mutex<Vec<([u8; 32], Component)>>,
}

impl PluginRuntime {
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

        spawn_ticker(&engine);
        Ok(PluginRuntime {
            engine,
            linker: Arc::new(linker),
            compiled: Mutex::new(Vec::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Compiles component bytes, or returns the component compiled from the same bytes
    /// before. Anything that is not a component is a clear error (and is not cached).
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        {
            let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = cache.iter().position(|(h, _)| *h == hash) {
                // Most recently used last: what is loaded again stays.
                let hit = cache.remove(at);
                let component = hit.1.clone();
                cache.push(hit);
                return Ok(component);
            }
        }
        // Not under the lock: compiling takes long, and two first loads of the same bytes
        // at once only cost a duplicate compile.
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.iter().any(|(h, _)| *h == hash) {
            if cache.len() >= COMPILED_CACHE {
                cache.remove(0);
            }
            cache.push((hash, component.clone()));
        }
        Ok(component)
    }

    /// Forgets compiled components, so the next load compiles again (benchmarks compare
    /// both).
    pub fn clear_compiled(&self) {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A store with the deny-all WASI context and the memory limiter installed.
    pub(crate) fn new_store(&self, limits: &PluginLimits) -> Store<HostState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5]))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.max_memory_bytes),
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(limits.deadline_ticks());
        store
    }
}

/// Advances the epoch every [`TICK`] for as long as the engine lives. Holds only a weak
/// handle so the thread ends when the last engine clone is dropped.
fn spawn_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("plugboard-epoch".to_string())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
    if let Err(e) = spawned {
        // Without a ticker deadlines never fire; say so loudly rather than fail to start.
        tracing::error!("could not start the plugin epoch ticker: {e}; plugin deadlines are off");
    }
}

/// The data of one plugin store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
}

impl HostState {
    /// What the guest wrote to stderr (a Rust guest's panic message goes there).
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear-memory growth and remembers the high-water mark, so the pool can drop an
/// instance that grew large on one big input instead of keeping that memory forever.
pub(crate) struct MemoryLimiter {
    max: usize,
    pub(crate) peak: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(max: usize) -> Self {
        MemoryLimiter {
            max,
            peak: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = true;
            wasmtime::bail!(
                "memory would grow to {desired} bytes, over the limit of {} bytes",
                self.max
            );
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Plugins get no clock: time is an argument. Both clocks read zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
