//! The process-wide wasmtime engine, narrowed to what plugins may use.
//!
//! Invariants every plugin call relies on:
//! - epoch interruption is on and a ticker thread advances the epoch every [`TICK`]; every
//!   store gets a deadline in ticks before each call, so a guest that loops forever traps
//!   with `Interrupt` instead of hanging a worker;
//! - every store has a [`MemoryLimiter`]: the plugin's memory limit is a total over every
//!   linear memory of the store, and a store holds at most [`MAX_INSTANCES`] core
//!   instances, [`MAX_TABLES`] tables (of at most [`MAX_TABLE_ELEMENTS`] elements) and
//!   [`MAX_MEMORIES`] memories; growing or instantiating past a limit traps the guest;
//! - the linker holds WASI preview 2 only, with a deny-all context: no preopened
//!   directories, no environment or arguments, no sockets or name lookup, a frozen clock,
//!   fixed randomness, stdout discarded and stderr captured (for panic messages). No
//!   `wasi:http`: a component that imports it fails to link;
//! - nothing a plugin imports can wait: `wasi:io/poll` `poll`, `[method]pollable.block`
//!   and the monotonic clock's `subscribe-duration`/`subscribe-instant` (what
//!   `std::thread::sleep` becomes) are shadowed by functions that trap at once with
//!   [`WAIT_REFUSED`]. A wait runs in host code, where epoch interruption cannot reach it,
//!   so without this a guest could hold a thread past its deadline for as long as it liked.
//!   The remaining host functions finish without waiting (stdin is empty, stdout and
//!   stderr are in-memory pipes).
//!
//! Compiled components are cached by the sha256 of their bytes (a few entries), so the
//! same plugin loaded for many endpoints, or reloaded after an admin change, is compiled
//! once.

use crate::lock::LockExt;
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

/// Core instances one plugin store may create. A Rust component needs a handful (its
/// module, the WASI adapter, shims); the rest is headroom.
pub const MAX_INSTANCES: usize = 32;
/// Tables one plugin store may create.
pub const MAX_TABLES: usize = 32;
/// Linear memories one plugin store may create (their sizes count against one total).
pub const MAX_MEMORIES: usize = 8;
/// Elements one table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The trap message of every WASI import that would wait.
pub const WAIT_REFUSED: &str = "plugins may not wait: time is an argument";

/// The WASI functions that can wait, by interface: shadowed in the linker by
/// [`refuse_waits`]. The interface versions are the ones wasmtime-wasi defines (imports of
/// any older 0.2.x resolve to them); a unit test proves the shadow is what a sleeping guest
/// reaches.
const WAITING_IMPORTS: &[(&str, &[&str])] = &[
    ("wasi:io/poll@0.2.12", &["poll", "[method]pollable.block"]),
    (
        "wasi:clocks/monotonic-clock@0.2.12",
        &["subscribe-duration", "subscribe-instant"],
    ),
];

/// The error of a refused wait: recognised by [`super::instance::failure`] for its detail.
#[derive(Debug)]
pub struct WaitRefused {
    /// The refused import, e.g. `wasi:io/poll@0.2.12#poll`.
    pub import: String,
}

impl std::fmt::Display for WaitRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{WAIT_REFUSED} (`{}`)", self.import)
    }
}

impl std::error::Error for WaitRefused {}

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
    /// The limits of a plugin installed through the admin API, from what the store keeps
    /// for it (memory in bytes, call timeout in milliseconds); the rest as the default.
    pub fn installed(max_memory_bytes: u64, call_timeout_ms: u64) -> Self {
        PluginLimits {
            max_memory_bytes: usize::try_from(max_memory_bytes).unwrap_or(usize::MAX),
            call_deadline: Duration::from_millis(call_timeout_ms),
            ..PluginLimits::default()
        }
    }

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
        refuse_waits(&mut linker)?;

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
            let mut cache = self.compiled.locked();
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
        let mut cache = self.compiled.locked();
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
        self.compiled.locked().clear();
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

/// Replaces every import of [`WAITING_IMPORTS`] with a function that traps with
/// [`WaitRefused`]. Dynamically typed, so the shadow matches whatever signature the
/// import has (borrowed pollables included) without naming wasmtime-wasi's resource types.
fn refuse_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for (interface, functions) in WAITING_IMPORTS {
        let mut instance = linker.instance(interface)?;
        for function in *functions {
            let import = format!("{interface}#{function}");
            instance.func_new(function, move |_store, _ty, _params, _results| {
                Err(wasmtime::Error::new(WaitRefused {
                    import: import.clone(),
                }))
            })?;
        }
    }
    linker.allow_shadowing(false);
    Ok(())
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

/// Caps the total of every linear memory of a store (not each one: a component with
/// several memories gets no multiple of the limit), caps the numbers of instances, tables
/// and memories, and remembers the high-water mark of the total, so the pool can drop an
/// instance that grew large on one big input instead of keeping that memory forever.
pub(crate) struct MemoryLimiter {
    max: usize,
    /// Bytes of every linear memory of the store together.
    total: usize,
    pub(crate) peak: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(max: usize) -> Self {
        MemoryLimiter {
            max,
            total: 0,
            peak: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory grows from 0 to its initial size: counted the same way.
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max {
            self.exceeded = true;
            wasmtime::bail!(
                "memory would grow to {total} bytes in total, over the limit of {} bytes",
                self.max
            );
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_is_a_total_over_every_memory_of_the_store() {
        let mut limiter = MemoryLimiter::new(10 << 20);
        // Two memories of 4 MiB each: 8 MiB in total, within the limit.
        assert!(limiter.memory_growing(0, 4 << 20, None).expect("first"));
        assert!(limiter.memory_growing(0, 4 << 20, None).expect("second"));
        assert_eq!(limiter.peak, 8 << 20);
        // A third memory of 4 MiB would make 12: refused, though each alone is under 10.
        let error = limiter
            .memory_growing(0, 4 << 20, None)
            .expect_err("over the total");
        assert!(limiter.exceeded);
        assert!(error.to_string().contains("in total"), "{error}");
        // Growing one memory counts only the growth.
        let mut limiter = MemoryLimiter::new(10 << 20);
        assert!(limiter.memory_growing(0, 4 << 20, None).expect("start"));
        assert!(
            limiter
                .memory_growing(4 << 20, 9 << 20, None)
                .expect("grow")
        );
        assert_eq!(limiter.peak, 9 << 20);
    }

    #[test]
    fn instance_table_and_memory_counts_are_capped() {
        let limiter = MemoryLimiter::new(1 << 20);
        assert_eq!(limiter.instances(), MAX_INSTANCES);
        assert_eq!(limiter.tables(), MAX_TABLES);
        assert_eq!(limiter.memories(), MAX_MEMORIES);
        let mut limiter = limiter;
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .expect("answers")
        );
    }
}
