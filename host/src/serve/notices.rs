//! The events the pipeline announces to an endpoint's outbound webhooks, built where the
//! work they report is committed (see `store::admin`): the store queues them in the same
//! transaction. Each `data` names the conversation (the user's key) so a receiver can
//! line events up per user; the delivery loop wraps it with the event type, endpoint and
//! time.
//!
//! [`Subscribed`] mirrors which events each endpoint's subscriptions want (loaded at start,
//! refreshed by the admin API when a subscription is added or removed), so a message on an
//! endpoint nobody listens to builds no notice and writes nothing extra.
//!
//! Handover notices come from the conversation core's handover events ([`handover`]):
//! `handover_started` carries the transcript (the session's history as kept). They are
//! written in the step's commit like every other notice, so a step that is redone does not
//! announce twice, and they are delivered signed and retried by the event webhook loop. An
//! endpoint's `handover.webhook_url` (the older, per-endpoint setting) is served by the same
//! path: [`ensure_handover_hook`] registers it once as an event webhook of the endpoint for
//! [`HANDOVER_HOOK_EVENTS`], with a generated signing key.

use crate::lock::RwLockExt;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use base64::Engine;
use rand::RngCore;
use serde_json::{Value, json};

use crate::conversation::{HandoverEvent, HandoverKind};
use crate::plugins::types::{BotOutput, InboundMessage};
use crate::store::admin::{Notice, Subscription};
use crate::store::{OutboxRow, StoreError};

/// Which events each endpoint's subscriptions want.
#[derive(Default)]
pub struct Subscribed(RwLock<HashMap<String, HashSet<String>>>);

impl Subscribed {
    pub fn wants(&self, endpoint: &str, event: &str) -> bool {
        self.0
            .read_locked()
            .get(endpoint)
            .is_some_and(|events| events.contains(event))
    }

    /// Whether any endpoint has a subscription (the delivery loop idles otherwise).
    pub fn any(&self) -> bool {
        !self.0.read_locked().is_empty()
    }

    /// Replaces what `endpoint` wants with its current subscriptions.
    pub fn set(&self, endpoint: &str, subscriptions: &[Subscription]) {
        let events: HashSet<String> = subscriptions
            .iter()
            .flat_map(|s| s.events.iter().cloned())
            .collect();
        let mut map = self.0.write_locked();
        if events.is_empty() {
            map.remove(endpoint);
        } else {
            map.insert(endpoint.to_string(), events);
        }
    }

    /// Reloads `endpoint`'s entry from the store.
    pub fn refresh(
        &self,
        store: &dyn crate::store::Store,
        endpoint: &str,
    ) -> Result<(), StoreError> {
        let subscriptions = store.subscriptions(endpoint)?;
        self.set(endpoint, &subscriptions);
        Ok(())
    }
}

fn notice(
    subscribed: &Subscribed,
    endpoint: &str,
    event: &str,
    data: impl FnOnce() -> Value,
) -> Option<Notice> {
    subscribed.wants(endpoint, event).then(|| Notice {
        event: event.to_string(),
        data: data().to_string(),
    })
}

pub fn conversation_started(s: &Subscribed, endpoint: &str, conversation: &str) -> Option<Notice> {
    notice(
        s,
        endpoint,
        "conversation_started",
        || json!({ "conversation": conversation }),
    )
}

pub fn message_received(
    s: &Subscribed,
    endpoint: &str,
    conversation: &str,
    message: &InboundMessage,
) -> Option<Notice> {
    notice(s, endpoint, "message_received", || {
        json!({
            "conversation": conversation,
            "message_id": message.id,
            "timestamp": message.timestamp,
            "content": message.content,
        })
    })
}

/// `None` for read receipts and typing indicators too: the user never sees them.
pub fn message_sent(
    s: &Subscribed,
    row: &OutboxRow,
    output: Option<&BotOutput>,
    message_id: Option<&str>,
) -> Option<Notice> {
    if matches!(output, Some(BotOutput::MarkRead(_))) {
        return None;
    }
    notice(s, &row.endpoint, "message_sent", || {
        json!({
            "conversation": row.conversation,
            "outbox_id": row.id,
            "message_id": message_id,
            "output": output,
        })
    })
}

pub fn message_failed(
    s: &Subscribed,
    row: &OutboxRow,
    output: Option<&BotOutput>,
    reason: &str,
    detail: &str,
) -> Option<Notice> {
    if matches!(output, Some(BotOutput::MarkRead(_))) {
        return None;
    }
    notice(s, &row.endpoint, "message_failed", || {
        json!({
            "conversation": row.conversation,
            "outbox_id": row.id,
            "reason": reason,
            "detail": detail,
            "output": output,
        })
    })
}

/// A handover event of the conversation core as a notice: `started` (with the reason, the
/// end of the mute and the transcript) and `ended` (`how`: `released` or `mute_ended`).
/// A user's message while handed over is no handover notice: it is `message_received`.
pub fn handover(
    s: &Subscribed,
    conversation: &str,
    event: &HandoverEvent,
    until_ms: u64,
) -> Option<Notice> {
    match event.kind {
        HandoverKind::Started => handover_started(
            s,
            &event.endpoint,
            conversation,
            event.reason.as_deref(),
            until_ms,
            event,
        ),
        HandoverKind::Ended => {
            let how = match event.reason.as_deref() {
                Some("expired") => "mute_ended",
                Some(other) => other,
                None => "released",
            };
            handover_ended(s, &event.endpoint, conversation, how)
        }
        HandoverKind::Message => None,
    }
}

fn handover_started(
    s: &Subscribed,
    endpoint: &str,
    conversation: &str,
    reason: Option<&str>,
    until_ms: u64,
    event: &HandoverEvent,
) -> Option<Notice> {
    notice(s, endpoint, "handover_started", || {
        json!({
            "conversation": conversation,
            "reason": reason,
            "until_ms": until_ms,
            "transcript": event.transcript,
        })
    })
}

/// The endpoint's monthly reply quota is used up (sent once per month).
pub fn quota_reached(s: &Subscribed, endpoint: &str, month: &str, monthly: u64) -> Option<Notice> {
    notice(
        s,
        endpoint,
        "quota_reached",
        || json!({ "month": month, "monthly": monthly }),
    )
}

pub fn handover_ended(
    s: &Subscribed,
    endpoint: &str,
    conversation: &str,
    how: &str,
) -> Option<Notice> {
    notice(
        s,
        endpoint,
        "handover_ended",
        || json!({ "conversation": conversation, "how": how }),
    )
}

/// What an endpoint's `handover.webhook_url` receives: the handover notices, and the
/// user's messages (which, while handed over, are for the agent).
pub const HANDOVER_HOOK_EVENTS: [&str; 3] =
    ["handover_started", "handover_ended", "message_received"];

/// How a generated signing key starts (the key is the base64 that follows).
pub const SECRET_PREFIX: &str = "whsec_";

/// A signing key for an event webhook: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{}{}",
        SECRET_PREFIX,
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Makes sure `url` (an endpoint's `handover.webhook_url`) is an event webhook of
/// `endpoint`: when no subscription has that URL yet, one is added for
/// [`HANDOVER_HOOK_EVENTS`] with a generated key, and [`Subscribed`] is refreshed. Idempotent;
/// the caller remembers which it has ensured, so the store is asked once per endpoint and
/// URL. The subscription stays listed (and deletable) in the admin API like any other.
pub async fn ensure_handover_hook(
    store: &std::sync::Arc<dyn crate::store::Store>,
    subscribed: &Subscribed,
    endpoint: &str,
    url: &str,
) -> Result<(), StoreError> {
    let existing = {
        let (store, endpoint) = (store.clone(), endpoint.to_string());
        tokio::task::spawn_blocking(move || store.subscriptions(&endpoint))
            .await
            .map_err(|e| StoreError(format!("subscriptions: {e}")))??
    };
    if existing.iter().any(|s| s.url == url) {
        return Ok(());
    }
    let events = HANDOVER_HOOK_EVENTS.iter().map(|e| e.to_string()).collect();
    store
        .add_subscription(endpoint, url.to_string(), new_secret(), events)
        .await?;
    let subscriptions = {
        let (store, endpoint) = (store.clone(), endpoint.to_string());
        tokio::task::spawn_blocking(move || store.subscriptions(&endpoint))
            .await
            .map_err(|e| StoreError(format!("subscriptions: {e}")))??
    };
    subscribed.set(endpoint, &subscriptions);
    tracing::info!(
        endpoint,
        "handover.webhook_url registered as an event webhook"
    );
    Ok(())
}
