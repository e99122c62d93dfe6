//! A loaded channel adapter: checked at load, called under limits, instances reused.
//!
//! Load: [`instance::prepare`] (compile, check the `plugboard:channel/adapter@0.1.x` export
//! and the imports, pre-instantiate) → smoke call `info` on a first instance, which becomes
//! the first warm one. Calls go through the shared [`InstancePool`]; the adapter is
//! stateless by contract, so reusing instances changes no result.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::PluginError;
use super::bindings::v0_1::ChannelAdapter;
use super::engine::{PluginLimits, PluginRuntime};
use super::instance::{self, InstancePool};
use super::types::{
    AdapterError, BotOutput, ChannelInfo, Decoded, HandshakeReply, RenderContext, RequestSpec,
    SendOutcome, SendResult,
};

pub use super::instance::RECYCLE_ABOVE_BYTES;

pub struct AdapterPlugin {
    info: ChannelInfo,
    /// The WIT package version the component was built against, e.g. `0.1.0`.
    wit_version: String,
    /// sha256 of the component bytes, hex.
    hash: String,
    pool: InstancePool<ChannelAdapter>,
}

impl AdapterPlugin {
    /// Loads and checks an adapter component.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let prepared = instance::prepare::<ChannelAdapter>(runtime, bytes)?;

        // Smoke call on a first instance, which then becomes the first warm one: a component
        // that cannot describe itself is refused.
        let smoke_error = |store: &wasmtime::Store<_>, e| {
            PluginError::Smoke(
                instance::failure("<loading>", "", &limits, "info", store, e).to_string(),
            )
        };
        let mut warm =
            match instance::first_instance::<ChannelAdapter>(runtime, &prepared.pre, &limits) {
                Ok(warm) => warm,
                Err((store, e)) => return Err(smoke_error(&store, e)),
            };
        let info = match warm
            .bindings
            .plugboard_channel_adapter()
            .call_info(&mut warm.store)
        {
            Ok(info) => info,
            Err(e) => return Err(smoke_error(&warm.store, e)),
        };
        if info.name.trim().is_empty() || info.version.trim().is_empty() {
            return Err(PluginError::Smoke(
                "`info` returned an empty name or version".to_string(),
            ));
        }
        let pool = InstancePool::new(
            runtime.clone(),
            limits,
            prepared.pre,
            info.name.clone(),
            info.version.clone(),
            Some(warm),
        );
        Ok(AdapterPlugin {
            info,
            wit_version: prepared.wit_version,
            hash: hex::encode(Sha256::digest(bytes)),
            pool,
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
        self.pool.limits()
    }

    pub fn handshake(
        &self,
        query: &[(String, String)],
        settings: &[(String, String)],
    ) -> Result<HandshakeReply, PluginError> {
        self.pool.call("handshake", |a, s| {
            a.plugboard_channel_adapter()
                .call_handshake(s, query, settings)
        })
    }

    pub fn decode(&self, body: &[u8]) -> Result<Result<Decoded, AdapterError>, PluginError> {
        self.pool.call("decode", |a, s| {
            a.plugboard_channel_adapter().call_decode(s, body)
        })
    }

    pub fn render(
        &self,
        output: &BotOutput,
        context: &RenderContext,
    ) -> Result<Result<Vec<RequestSpec>, AdapterError>, PluginError> {
        self.pool.call("render", |a, s| {
            a.plugboard_channel_adapter()
                .call_render(s, output, context)
        })
    }

    pub fn classify(&self, outcome: &SendOutcome, attempt: u32) -> Result<SendResult, PluginError> {
        self.pool.call("classify", |a, s| {
            a.plugboard_channel_adapter()
                .call_classify(s, outcome, attempt)
        })
    }
}
