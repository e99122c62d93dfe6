//! A loaded transformer hook: a component exporting `plugboard:channel/transformer@0.1.x`,
//! checked at load, called under tight limits (default 50 ms, 32 MiB; see
//! [`PluginLimits::hook_default`]), instances reused through the shared [`InstancePool`].
//!
//! A hook has no `info` call: it is named by whoever configures it (the endpoint's hook
//! list), and versioned by the hash of its bytes.
//!
//! Versions work as for adapters ([`crate::plugins::adapter`]): a hook of the latest
//! version is called with the host's values as they are; a 0.1.0 hook through the 0.1.0
//! bindings, its arguments converted down and its answers up ([`convert`]).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::PluginError;
use super::bindings::latest::hook::{InputResult, SessionView};
use super::bindings::{latest, v0_1_0};
use super::convert::convert;
use super::engine::{PluginLimits, PluginRuntime};
use super::instance::{self, InstancePool, WorldBindings};
use super::limits;
use super::types::{BotOutput, InboundMessage};

pub struct HookPlugin {
    name: String,
    /// `sha256:` and the first 12 hex digits of the hash: the version in errors.
    version: String,
    wit_version: String,
    hash: String,
    pool: Pool,
}

/// The instances of a hook, by the WIT version its bindings speak.
enum Pool {
    /// The latest version: no conversion.
    Latest(InstancePool<latest::hook::TransformerHook>),
    /// `plugboard:channel@0.1.0`: values convert through [`convert`].
    V0_1_0(InstancePool<v0_1_0::hook::TransformerHook>),
}

impl HookPlugin {
    /// Loads and checks a hook component. `name` identifies it in logs and errors.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        name: &str,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let compiled = instance::compile::<latest::hook::TransformerHook>(runtime, bytes)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let version = format!("sha256:{}", hash.get(..12).unwrap_or(&hash));
        let wit_version = compiled.wit_version.clone();
        // Exactly 0.1.0 takes the legacy bindings; every other 0.1.x tries the latest ones.
        let pool = if compiled.exports::<v0_1_0::hook::TransformerHook>() {
            let prepared = instance::prepare(runtime, compiled)?;
            Pool::V0_1_0(start(runtime, name, &version, prepared, limits)?)
        } else {
            let prepared = instance::prepare(runtime, compiled)?;
            Pool::Latest(start(runtime, name, &version, prepared, limits)?)
        };
        Ok(HookPlugin {
            name: name.to_string(),
            version,
            wit_version,
            hash,
            pool,
        })
    }

    /// The name the hook was configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:` and the first 12 hex digits of the hash: the version in errors.
    pub fn version(&self) -> &str {
        &self.version
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
        match &self.pool {
            Pool::Latest(pool) => pool.limits(),
            Pool::V0_1_0(pool) => pool.limits(),
        }
    }

    /// `on-input`: the outer error is a failed call (trap, deadline, memory), the inner one
    /// the hook's own `err`.
    pub fn on_input(
        &self,
        message: &InboundMessage,
        session: &SessionView,
    ) -> Result<Result<InputResult, String>, PluginError> {
        const CALL: &str = "on-input";
        match &self.pool {
            Pool::Latest(pool) => pool.call(CALL, |h, s| {
                h.plugboard_channel_transformer()
                    .call_on_input(s, message, session)
            }),
            Pool::V0_1_0(pool) => {
                let message: v0_1_0::types::InboundMessage = self.down(CALL, message)?;
                let session: v0_1_0::hook::SessionView = self.down(CALL, session)?;
                let answer = pool.call(CALL, |h, s| {
                    h.plugboard_channel_transformer()
                        .call_on_input(s, &message, &session)
                })?;
                self.up(CALL, &answer)
            }
        }
    }

    /// `on-output`: the outputs that replace `output` (none = drop, several = split), at
    /// most [`limits::MAX_OUTPUTS_PER_HOOK_CALL`], else a failure.
    pub fn on_output(
        &self,
        output: &BotOutput,
        session: &SessionView,
    ) -> Result<Result<Vec<BotOutput>, String>, PluginError> {
        let answer = self.on_output_unchecked(output, session)?;
        if let Ok(outputs) = &answer {
            limits::check(
                &self.name,
                &self.version,
                "on-output",
                "outputs",
                outputs.len(),
                limits::MAX_OUTPUTS_PER_HOOK_CALL,
            )?;
        }
        Ok(answer)
    }

    fn on_output_unchecked(
        &self,
        output: &BotOutput,
        session: &SessionView,
    ) -> Result<Result<Vec<BotOutput>, String>, PluginError> {
        const CALL: &str = "on-output";
        match &self.pool {
            Pool::Latest(pool) => pool.call(CALL, |h, s| {
                h.plugboard_channel_transformer()
                    .call_on_output(s, output, session)
            }),
            Pool::V0_1_0(pool) => {
                let output: v0_1_0::types::BotOutput = self.down(CALL, output)?;
                let session: v0_1_0::hook::SessionView = self.down(CALL, session)?;
                let answer = pool.call(CALL, |h, s| {
                    h.plugboard_channel_transformer()
                        .call_on_output(s, &output, &session)
                })?;
                self.up(CALL, &answer)
            }
        }
    }

    /// `on-execution-finished`: sees every output of the step.
    pub fn on_execution_finished(
        &self,
        outputs: &[BotOutput],
        session: &SessionView,
    ) -> Result<Result<(), String>, PluginError> {
        const CALL: &str = "on-execution-finished";
        match &self.pool {
            Pool::Latest(pool) => pool.call(CALL, |h, s| {
                h.plugboard_channel_transformer()
                    .call_on_execution_finished(s, outputs, session)
            }),
            Pool::V0_1_0(pool) => {
                let outputs: Vec<v0_1_0::types::BotOutput> = self.down(CALL, outputs)?;
                let session: v0_1_0::hook::SessionView = self.down(CALL, session)?;
                // `result<_, string>` is the same in every version: nothing to convert up.
                pool.call(CALL, |h, s| {
                    h.plugboard_channel_transformer()
                        .call_on_execution_finished(s, &outputs, &session)
                })
            }
        }
    }

    /// An argument in the hook's (older) types.
    fn down<T: Serialize + ?Sized, U: DeserializeOwned>(
        &self,
        call: &'static str,
        value: &T,
    ) -> Result<U, PluginError> {
        convert(value).map_err(|detail| self.incompatible(call, "an argument", detail))
    }

    /// An answer in the host's (latest) types.
    fn up<T: Serialize, U: DeserializeOwned>(
        &self,
        call: &'static str,
        value: &T,
    ) -> Result<U, PluginError> {
        convert(value).map_err(|detail| self.incompatible(call, "the answer", detail))
    }

    fn incompatible(&self, call: &'static str, what: &str, detail: String) -> PluginError {
        PluginError::Incompatible {
            plugin: self.name.clone(),
            version: self.version.clone(),
            wit_version: self.wit_version.clone(),
            call,
            detail: format!("{what} has no form in the other version: {detail}"),
        }
    }
}

/// Instantiates once at load, so a component whose start-up traps is refused here rather
/// than on the first message; the instance becomes the first warm one of the pool.
fn start<B: WorldBindings + Send>(
    runtime: &Arc<PluginRuntime>,
    name: &str,
    version: &str,
    prepared: instance::Prepared<B>,
    limits: PluginLimits,
) -> Result<InstancePool<B>, PluginError> {
    let warm =
        instance::first_instance::<B>(runtime, &prepared.pre, &limits).map_err(|(store, e)| {
            PluginError::Smoke(
                instance::failure(name, version, &limits, "instantiate", &store, e).to_string(),
            )
        })?;
    Ok(InstancePool::new(
        runtime.clone(),
        limits,
        prepared.pre,
        name.to_string(),
        version.to_string(),
        Some(warm),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_guests::MISBEHAVING_HOOK;
    use crate::plugins::types::User;

    #[test]
    fn a_0_1_0_hook_still_loads_and_answers_through_the_conversion() {
        let runtime = Arc::new(PluginRuntime::new().expect("runtime"));
        let bytes = std::fs::read(MISBEHAVING_HOOK).expect("read the 0.1.0 test hook");
        let hook = HookPlugin::load(
            &runtime,
            "misbehaving",
            &bytes,
            PluginLimits::hook_default(),
        )
        .expect("a 0.1.0 hook loads");
        assert_eq!(hook.wit_version(), "0.1.0");
        assert!(matches!(hook.pool, Pool::V0_1_0(_)));
        let session = SessionView {
            conversation_key: "wa_15551234567".to_string(),
            user: User {
                user_id: None,
                phone: Some("15551234567".to_string()),
                name: None,
                username: None,
            },
            data: vec![("step".to_string(), "1".to_string())],
            history: Vec::new(),
        };
        let split = hook
            .on_output(&BotOutput::Text("split".to_string()), &session)
            .expect("no trap")
            .expect("answers");
        assert_eq!(
            split,
            [
                BotOutput::Text("split 1".to_string()),
                BotOutput::Text("split 2".to_string())
            ]
        );
        assert_eq!(
            hook.on_execution_finished(&split, &session)
                .expect("no trap"),
            Ok(())
        );
    }
}
