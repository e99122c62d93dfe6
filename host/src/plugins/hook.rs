//! A loaded transformer hook: a component exporting `plugboard:channel/transformer@0.1.x`,
//! checked at load, called under tight limits (default 50 ms, 32 MiB; see
//! [`PluginLimits::hook_default`]), instances reused through the shared [`InstancePool`].
//!
//! A hook has no `info` call: it is named by whoever configures it (the endpoint's hook
//! list), and versioned by the hash of its bytes.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::PluginError;
use super::bindings::v0_1::hook::{InputResult, SessionView, TransformerHook};
use super::engine::{PluginLimits, PluginRuntime};
use super::instance::{self, InstancePool};
use super::types::{BotOutput, InboundMessage};

pub struct HookPlugin {
    name: String,
    wit_version: String,
    hash: String,
    pool: InstancePool<TransformerHook>,
}

impl HookPlugin {
    /// Loads and checks a hook component. `name` identifies it in logs and errors.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        name: &str,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let prepared = instance::prepare::<TransformerHook>(runtime, bytes)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let version = format!("sha256:{}", hash.get(..12).unwrap_or(&hash));
        // Instantiate once at load, so a component whose start-up traps is refused here
        // rather than on the first message; the instance becomes the first warm one.
        let warm = instance::first_instance::<TransformerHook>(runtime, &prepared.pre, &limits)
            .map_err(|(store, e)| {
                PluginError::Smoke(
                    instance::failure(name, &version, &limits, "instantiate", &store, e)
                        .to_string(),
                )
            })?;
        let pool = InstancePool::new(
            runtime.clone(),
            limits,
            prepared.pre,
            name.to_string(),
            version,
            Some(warm),
        );
        Ok(HookPlugin {
            name: name.to_string(),
            wit_version: prepared.wit_version,
            hash,
            pool,
        })
    }

    /// The name the hook was configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The WIT package version the component was built against, e.g. `0.1.0`.
    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }

    /// sha256 of the component bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn limits(&self) -> &PluginLimits {
        self.pool.limits()
    }

    /// `on-input`: the outer error is a failed call (trap, deadline, memory), the inner one
    /// the hook's own `err`.
    pub fn on_input(
        &self,
        message: &InboundMessage,
        session: &SessionView,
    ) -> Result<Result<InputResult, String>, PluginError> {
        self.pool.call("on-input", |h, s| {
            h.plugboard_channel_transformer()
                .call_on_input(s, message, session)
        })
    }

    /// `on-output`: the outputs that replace `output` (none = drop, several = split).
    pub fn on_output(
        &self,
        output: &BotOutput,
        session: &SessionView,
    ) -> Result<Result<Vec<BotOutput>, String>, PluginError> {
        self.pool.call("on-output", |h, s| {
            h.plugboard_channel_transformer()
                .call_on_output(s, output, session)
        })
    }

    /// `on-execution-finished`: sees every output of the step.
    pub fn on_execution_finished(
        &self,
        outputs: &[BotOutput],
        session: &SessionView,
    ) -> Result<Result<(), String>, PluginError> {
        self.pool.call("on-execution-finished", |h, s| {
            h.plugboard_channel_transformer()
                .call_on_execution_finished(s, outputs, session)
        })
    }
}
