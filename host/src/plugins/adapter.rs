//! A loaded channel adapter: checked at load, called under limits, instances reused.
//!
//! Load: [`instance::compile`] (compile, find the `plugboard:channel/adapter@0.1.x` export
//! and its version) → [`instance::prepare`] with the bindings of that version (check the
//! imports, pre-instantiate) → smoke call `info` on a first instance, which becomes the
//! first warm one. Calls go through the shared [`InstancePool`]; the adapter is stateless by
//! contract, so reusing instances changes no result.
//!
//! Versions: a 0.1.1 component (the bundled adapter) is called with the host's values as
//! they are. A 0.1.0 component is called through the 0.1.0 bindings: arguments convert down
//! and results up ([`convert`]), so callers see the latest types either way. An argument
//! without a 0.1.0 form is [`PluginError::Incompatible`], and the component is not called.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::PluginError;
use super::bindings::{latest, v0_1_0};
use super::convert::convert;
use super::engine::{HostState, PluginLimits, PluginRuntime};
use super::instance::{self, InstancePool, Prepared, WorldBindings};
use super::limits;
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
    pool: Pool,
}

/// The instances of an adapter, by the WIT version its bindings speak.
enum Pool {
    /// The latest version: no conversion.
    Latest(InstancePool<latest::ChannelAdapter>),
    /// `plugboard:channel@0.1.0`: values convert through [`convert`].
    V0_1_0(InstancePool<v0_1_0::ChannelAdapter>),
}

impl AdapterPlugin {
    /// Loads and checks an adapter component.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let compiled = instance::compile::<latest::ChannelAdapter>(runtime, bytes)?;
        let wit_version = compiled.wit_version.clone();
        // Exactly 0.1.0 takes the legacy bindings; every other 0.1.x tries the latest ones,
        // whose type check refuses a component that does not match them.
        let (info, pool) = if compiled.exports::<v0_1_0::ChannelAdapter>() {
            let prepared = instance::prepare::<v0_1_0::ChannelAdapter>(runtime, compiled)?;
            let (info, pool) = start(runtime, prepared, limits, |a, s| {
                let info = a.plugboard_channel_adapter().call_info(s)?;
                // ChannelInfo is the same record in every 0.1.x version.
                convert(&info).map_err(wasmtime::Error::msg)
            })?;
            (info, Pool::V0_1_0(pool))
        } else {
            let prepared = instance::prepare::<latest::ChannelAdapter>(runtime, compiled)?;
            let (info, pool) = start(runtime, prepared, limits, |a, s| {
                a.plugboard_channel_adapter().call_info(s)
            })?;
            (info, Pool::Latest(pool))
        };
        Ok(AdapterPlugin {
            info,
            wit_version,
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
        match &self.pool {
            Pool::Latest(pool) => pool.limits(),
            Pool::V0_1_0(pool) => pool.limits(),
        }
    }

    pub fn handshake(
        &self,
        query: &[(String, String)],
        settings: &[(String, String)],
    ) -> Result<HandshakeReply, PluginError> {
        match &self.pool {
            Pool::Latest(pool) => pool.call("handshake", |a, s| {
                a.plugboard_channel_adapter()
                    .call_handshake(s, query, settings)
            }),
            Pool::V0_1_0(pool) => {
                let reply = pool.call("handshake", |a, s| {
                    a.plugboard_channel_adapter()
                        .call_handshake(s, query, settings)
                })?;
                self.up("handshake", &reply)
            }
        }
    }

    /// At most [`limits::MAX_EVENTS_PER_DECODE`] events, else a failure.
    pub fn decode(&self, body: &[u8]) -> Result<Result<Decoded, AdapterError>, PluginError> {
        let decoded = self.decode_unchecked(body)?;
        if let Ok(decoded) = &decoded {
            self.cap(
                "decode",
                "events",
                decoded.events.len(),
                limits::MAX_EVENTS_PER_DECODE,
            )?;
        }
        Ok(decoded)
    }

    fn decode_unchecked(&self, body: &[u8]) -> Result<Result<Decoded, AdapterError>, PluginError> {
        match &self.pool {
            Pool::Latest(pool) => pool.call("decode", |a, s| {
                a.plugboard_channel_adapter().call_decode(s, body)
            }),
            Pool::V0_1_0(pool) => {
                let decoded = pool.call("decode", |a, s| {
                    a.plugboard_channel_adapter().call_decode(s, body)
                })?;
                self.up("decode", &decoded)
            }
        }
    }

    /// At most [`limits::MAX_SPECS_PER_RENDER`] request specs, else a failure.
    pub fn render(
        &self,
        output: &BotOutput,
        context: &RenderContext,
    ) -> Result<Result<Vec<RequestSpec>, AdapterError>, PluginError> {
        let specs = self.render_unchecked(output, context)?;
        if let Ok(specs) = &specs {
            self.cap(
                "render",
                "request specs",
                specs.len(),
                limits::MAX_SPECS_PER_RENDER,
            )?;
        }
        Ok(specs)
    }

    fn cap(
        &self,
        call: &'static str,
        what: &str,
        count: usize,
        cap: usize,
    ) -> Result<(), PluginError> {
        limits::check(&self.info.name, &self.info.version, call, what, count, cap)
    }

    fn render_unchecked(
        &self,
        output: &BotOutput,
        context: &RenderContext,
    ) -> Result<Result<Vec<RequestSpec>, AdapterError>, PluginError> {
        match &self.pool {
            Pool::Latest(pool) => pool.call("render", |a, s| {
                a.plugboard_channel_adapter()
                    .call_render(s, output, context)
            }),
            Pool::V0_1_0(pool) => {
                let output: v0_1_0::types::BotOutput = self.down("render", output)?;
                let context: v0_1_0::types::RenderContext = self.down("render", context)?;
                let specs = pool.call("render", |a, s| {
                    a.plugboard_channel_adapter()
                        .call_render(s, &output, &context)
                })?;
                self.up("render", &specs)
            }
        }
    }

    pub fn classify(&self, outcome: &SendOutcome, attempt: u32) -> Result<SendResult, PluginError> {
        match &self.pool {
            Pool::Latest(pool) => pool.call("classify", |a, s| {
                a.plugboard_channel_adapter()
                    .call_classify(s, outcome, attempt)
            }),
            Pool::V0_1_0(pool) => {
                let outcome: v0_1_0::types::SendOutcome = self.down("classify", outcome)?;
                let result = pool.call("classify", |a, s| {
                    a.plugboard_channel_adapter()
                        .call_classify(s, &outcome, attempt)
                })?;
                self.up("classify", &result)
            }
        }
    }

    /// An argument in the plugin's (older) types.
    fn down<T: Serialize, U: DeserializeOwned>(
        &self,
        call: &'static str,
        value: &T,
    ) -> Result<U, PluginError> {
        convert(value).map_err(|detail| self.incompatible(call, "an argument", detail))
    }

    /// A result in the host's (latest) types.
    fn up<T: Serialize, U: DeserializeOwned>(
        &self,
        call: &'static str,
        value: &T,
    ) -> Result<U, PluginError> {
        convert(value).map_err(|detail| self.incompatible(call, "the result", detail))
    }

    fn incompatible(&self, call: &'static str, what: &str, detail: String) -> PluginError {
        PluginError::Incompatible {
            plugin: self.info.name.clone(),
            version: self.info.version.clone(),
            wit_version: self.wit_version.clone(),
            call,
            detail: format!("{what} has no form in the other version: {detail}"),
        }
    }
}

/// Smoke-calls `info` on a first instance, which then becomes the first warm one of the
/// pool: a component that cannot describe itself is refused.
fn start<B: WorldBindings + Send + Sync>(
    runtime: &Arc<PluginRuntime>,
    prepared: Prepared<B>,
    limits: PluginLimits,
    call_info: impl FnOnce(&B, &mut wasmtime::Store<HostState>) -> wasmtime::Result<ChannelInfo> + Send,
) -> Result<(ChannelInfo, InstancePool<B>), PluginError> {
    let smoke_error = |store: &wasmtime::Store<_>, e| {
        PluginError::Smoke(
            instance::failure("<loading>", "", &limits, "info", store, e).to_string(),
        )
    };
    let mut warm = match instance::first_instance::<B>(runtime, &prepared.pre, &limits) {
        Ok(warm) => warm,
        Err((store, e)) => return Err(smoke_error(&store, e)),
    };
    let info = match super::offthread::off_async(|| call_info(&warm.bindings, &mut warm.store)) {
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
    Ok((info, pool))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::BUNDLED_WHATSAPP;
    use crate::plugins::test_guests::MISBEHAVING;
    use crate::plugins::types::{
        Business, EventBody, HandshakeReply, RenderContext, SendOutcome, TemplateChange, User,
    };

    fn runtime() -> Arc<PluginRuntime> {
        Arc::new(PluginRuntime::new().expect("runtime"))
    }

    #[test]
    fn the_bundled_adapter_speaks_0_1_1_and_decodes_account_events() {
        let plugin = AdapterPlugin::load(&runtime(), BUNDLED_WHATSAPP, PluginLimits::default())
            .expect("the bundled adapter loads");
        assert_eq!(plugin.wit_version(), "0.1.1");
        assert!(matches!(plugin.pool, Pool::Latest(_)), "no conversion");
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398",
            "time":1717171717,"changes":[{"field":"message_template_status_update","value":{
            "event":"APPROVED","message_template_id":1689556908129832,
            "message_template_name":"order_confirmation","message_template_language":"en_US",
            "reason":"NONE"}}]}]}"#;
        let decoded = plugin.decode(body).expect("no trap").expect("a webhook");
        assert_eq!(decoded.events.len(), 1, "{decoded:?}");
        let event = &decoded.events[0];
        assert_eq!(event.conversation_key, "");
        match &event.body {
            EventBody::Template(t) => {
                assert_eq!(t.template_id, "1689556908129832");
                assert!(matches!(&t.change, TemplateChange::Status(s) if s.status == "APPROVED"));
            }
            other => panic!("not a template event: {other:?}"),
        }
    }

    #[test]
    fn a_0_1_0_adapter_still_loads_and_answers_through_the_conversion() {
        let bytes = std::fs::read(MISBEHAVING).expect("read the 0.1.0 test guest");
        let plugin = AdapterPlugin::load(&runtime(), &bytes, PluginLimits::default())
            .expect("a 0.1.0 adapter loads");
        assert_eq!(plugin.wit_version(), "0.1.0");
        assert!(matches!(plugin.pool, Pool::V0_1_0(_)));
        assert_eq!(plugin.name(), "misbehaving");
        assert_eq!(plugin.info().limits.max_text_length, 1);

        let decoded = plugin.decode(b"{}").expect("no trap").expect("decodes");
        assert!(decoded.events.is_empty() && decoded.skipped.is_empty());

        let context = RenderContext {
            business: Business {
                phone_number_id: "106540352242922".to_string(),
                display_number: None,
                account_id: None,
            },
            recipient: User {
                user_id: None,
                phone: Some("15551234567".to_string()),
                name: None,
                username: None,
            },
            reply_to: None,
        };
        let rendered = plugin
            .render(&BotOutput::Text("hello".to_string()), &context)
            .expect("no trap");
        assert!(
            matches!(&rendered, Err(AdapterError::Unsupported(reason)) if reason.contains("renders nothing")),
            "{rendered:?}"
        );
        assert_eq!(
            plugin.classify(&SendOutcome::Timeout, 0).expect("no trap"),
            SendResult::Sent(None)
        );
        assert_eq!(
            plugin.handshake(&[], &[]).expect("no trap"),
            HandshakeReply::NotHandshake
        );
    }
}
