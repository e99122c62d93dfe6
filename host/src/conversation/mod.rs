//! The conversation core: one step of one conversation as a pure function, and the
//! types around it (session keys, records, settings, handover events).
//!
//! Data flows like this for one input ([`step::handle`]): the caller loads the
//! conversation's [`SessionRecord`] → handover mute check → input transformers → keyword
//! handover / muted / AI-off short cuts → expiry (`on_expire`) → [`crate::flow::step`] with
//! its http effects executed through the [`HttpExecutor`] (results fed back) → output
//! transformers → a [`StepOutcome`]: the record to save, the outputs with their pacing,
//! the handover notices and a report. The caller commits all of it (`serve`: one store
//! transaction; `plugboard chat`: memory, paced delivery to the terminal). The core keeps
//! no state, reads no clock and never sleeps: ordering (one step per conversation at a
//! time) and pacing are its callers' jobs.
//!
//! - [`config`]: endpoint settings (session expiry, history, message delay, handover).
//! - [`store`]: the session record.
//! - [`handover`]: handover events and keyword matching.
//! - [`step`]: [`handle`], its input, context and outcome.
//! - [`http`]: the reqwest implementation of [`HttpExecutor`].

pub mod config;
pub mod handover;
pub mod http;
pub mod step;
pub mod store;

use std::future::Future;

pub use config::{ConversationConfig, HandoverConfig};
pub use handover::{HandoverEvent, HandoverKind};
pub use http::ReqwestHttp;
pub use step::{
    Core, MAX_HTTP_ROUNDS, Paced, Skipped, StepContext, StepInput, StepOutcome, StepReport, handle,
    new_record, output_text,
};
pub use store::{HandoverStatus, SessionRecord, StoreError};

use crate::flow::{HttpCall, HttpOutcome};
use crate::plugins::types::User;
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
    /// A session store failed (a driver's own store; the core never loads or saves).
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

/// Executes a flow's http request. Must honour `call.timeout_ms` and never fail otherwise
/// than with [`HttpOutcome::Err`].
pub trait HttpExecutor: Send + Sync + 'static {
    fn call(&self, call: HttpCall) -> impl Future<Output = HttpOutcome> + Send;
}

#[cfg(test)]
mod tests;
