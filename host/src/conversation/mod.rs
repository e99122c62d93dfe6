//! The conversation runtime around the pure flow engine: sessions, ordering, expiry,
//! message delay, handover, inject and notify.
//!
//! Data flows like this for one inbound message ([`Conversations::handle`]):
//! session key → the conversation's lane (a per-key lock, so one conversation is handled
//! strictly in order while others run in parallel) → session record from the
//! [`SessionStore`] → handover mute check → input transformers → keyword handover / muted /
//! AI-off short cuts → expiry (`on_expire`) → [`crate::flow::step`] with its effects executed
//! (http calls fed back) → output transformers → paced delivery through [`Outbound`] →
//! handover events to the [`HandoverSink`] → record saved.
//!
//! - [`config`]: endpoint settings (session expiry, history, message delay, handover).
//! - [`clock`]: wall-clock milliseconds, injectable so paused tokio time drives expiry.
//! - [`store`]: the session record and the narrow store trait, with an in-memory store.
//! - [`handover`]: handover events and keyword matching.
//! - [`runtime`]: [`Conversations`], the public entry points.
//! - `lanes` (private): per-conversation locks and delivery pacing.
//! - [`http`] and [`webhook`]: reqwest implementations of [`HttpExecutor`] and
//!   [`HandoverSink`].
//!
//! The traits below are the runtime's only doors to the outside world; tests script them.

pub mod clock;
pub mod config;
pub mod handover;
pub mod http;
mod lanes;
pub mod runtime;
pub mod store;
pub mod webhook;

use std::future::Future;

pub use clock::{Clock, SystemClock, TokioClock};
pub use config::{ConversationConfig, HandoverConfig};
pub use handover::{HandoverEvent, HandoverKind};
pub use http::ReqwestHttp;
pub use runtime::{Conversations, SessionSnapshot, Skipped, StepReport};
pub use store::{HandoverStatus, MemorySessions, SessionRecord, SessionStore, StoreError};
pub use webhook::WebhookHandover;

use crate::flow::{HttpCall, HttpOutcome};
use crate::plugins::types::{BotOutput, User};
use crate::transform::TransformError;

/// One conversation: an endpoint and a channel user (the typed key lives in the leaf
/// [`crate::ids`]; building it from a channel user and masking it for logs are here).
pub use crate::ids::SessionKey;

impl SessionKey {
    /// The key of a channel user on an endpoint: BSUID first (usernames without a phone
    /// number exist), else the phone number.
    pub fn for_user(endpoint: &str, user: &User) -> Result<Self, ConversationError> {
        let id = user
            .user_id
            .as_deref()
            .or(user.phone.as_deref())
            .filter(|id| !id.is_empty())
            .ok_or(ConversationError::NoUser)?;
        Ok(SessionKey::new(endpoint, id))
    }
}

impl SessionKey {
    /// The key for logs: the user part masked when PII masking is on (`mask_pii`).
    pub fn masked(&self) -> String {
        format!("wa_{}", crate::pii::phone(&self.user))
    }
}

/// Why a conversation call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("the message names no user (neither a user id nor a phone number)")]
    NoUser,
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    /// A transformer hook failed under the `abort` policy (boxed: it carries the plugin
    /// error, and every `Result` of this module would otherwise be that large).
    #[error(transparent)]
    Transform(Box<TransformError>),
    #[error("conversation {0} is not handed over to a human")]
    NotHandedOver(String),
    #[error("delivery to {key} failed: {reason}")]
    Delivery { key: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<TransformError> for ConversationError {
    fn from(e: TransformError) -> Self {
        ConversationError::Transform(Box::new(e))
    }
}

/// Sends an output to the user of a conversation (the serving layer renders it through the
/// adapter and calls the channel; the chat CLI prints it).
pub trait Outbound: Send + Sync + 'static {
    fn deliver(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Executes a flow's http request. Must honour `call.timeout_ms` and never fail otherwise
/// than with [`HttpOutcome::Err`].
pub trait HttpExecutor: Send + Sync + 'static {
    fn call(&self, call: HttpCall) -> impl Future<Output = HttpOutcome> + Send;
}

/// Receives handover events (a webhook, a queue, a test recorder). Infallible by contract:
/// a sink logs its own failures; the conversation goes on either way.
pub trait HandoverSink: Send + Sync + 'static {
    fn post(&self, event: HandoverEvent) -> impl Future<Output = ()> + Send;
}

/// No sink configured: events are dropped.
impl<T: HandoverSink> HandoverSink for Option<T> {
    async fn post(&self, event: HandoverEvent) {
        if let Some(sink) = self {
            sink.post(event).await;
        }
    }
}

#[cfg(test)]
mod tests;
