//! The events the pipeline announces to an endpoint's outbound webhooks, built where the
//! work they report is committed (see `store::admin`): the store queues them in the same
//! transaction. Each `data` names the conversation (the user's key) so a receiver can
//! line events up per user; the delivery loop wraps it with the event type, endpoint and
//! time.
//!
//! [`Subscribed`] mirrors which events each endpoint's subscriptions want (loaded at start,
//! refreshed by the admin API when a subscription is added or removed), so a message on an
//! endpoint nobody listens to builds no notice and writes nothing extra.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use serde_json::{Value, json};

use crate::plugins::types::{BotOutput, InboundMessage};
use crate::store::admin::{Notice, Subscription};
use crate::store::{OutboxRow, StoreError};

/// Which events each endpoint's subscriptions want.
#[derive(Default)]
pub struct Subscribed(RwLock<HashMap<String, HashSet<String>>>);

impl Subscribed {
    pub fn wants(&self, endpoint: &str, event: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .is_some_and(|events| events.contains(event))
    }

    /// Whether any endpoint has a subscription (the delivery loop idles otherwise).
    pub fn any(&self) -> bool {
        !self.0.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Replaces what `endpoint` wants with its current subscriptions.
    pub fn set(&self, endpoint: &str, subscriptions: &[Subscription]) {
        let events: HashSet<String> = subscriptions
            .iter()
            .flat_map(|s| s.events.iter().cloned())
            .collect();
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
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

pub fn handover_started(
    s: &Subscribed,
    endpoint: &str,
    conversation: &str,
    reason: Option<&str>,
    until_ms: u64,
) -> Option<Notice> {
    notice(
        s,
        endpoint,
        "handover_started",
        || json!({ "conversation": conversation, "reason": reason, "until_ms": until_ms }),
    )
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
