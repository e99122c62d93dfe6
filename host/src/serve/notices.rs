//! The events the pipeline announces to an endpoint's outbound webhooks, built where the
//! work they report is committed (see `store::admin`): the store queues them in the same
//! transaction. Each `data` names the conversation (the user's key) so a receiver can
//! line events up per user; the delivery loop wraps it with the event type, endpoint and
//! time.

use serde_json::{Value, json};

use crate::plugins::types::{BotOutput, InboundMessage};
use crate::store::OutboxRow;
use crate::store::admin::Notice;

fn notice(event: &str, data: Value) -> Notice {
    Notice {
        event: event.to_string(),
        data: data.to_string(),
    }
}

pub fn conversation_started(conversation: &str) -> Notice {
    notice(
        "conversation_started",
        json!({ "conversation": conversation }),
    )
}

pub fn message_received(conversation: &str, message: &InboundMessage) -> Notice {
    notice(
        "message_received",
        json!({
            "conversation": conversation,
            "message_id": message.id,
            "timestamp": message.timestamp,
            "content": message.content,
        }),
    )
}

/// `None` for read receipts and typing indicators: the user never sees them.
pub fn message_sent(
    row: &OutboxRow,
    output: Option<&BotOutput>,
    message_id: Option<&str>,
) -> Option<Notice> {
    if matches!(output, Some(BotOutput::MarkRead(_))) {
        return None;
    }
    Some(notice(
        "message_sent",
        json!({
            "conversation": row.conversation,
            "outbox_id": row.id,
            "message_id": message_id,
            "output": output,
        }),
    ))
}

pub fn message_failed(
    row: &OutboxRow,
    output: Option<&BotOutput>,
    reason: &str,
    detail: &str,
) -> Option<Notice> {
    if matches!(output, Some(BotOutput::MarkRead(_))) {
        return None;
    }
    Some(notice(
        "message_failed",
        json!({
            "conversation": row.conversation,
            "outbox_id": row.id,
            "reason": reason,
            "detail": detail,
            "output": output,
        }),
    ))
}

pub fn handover_started(conversation: &str, reason: Option<&str>, until_ms: u64) -> Notice {
    notice(
        "handover_started",
        json!({ "conversation": conversation, "reason": reason, "until_ms": until_ms }),
    )
}

pub fn handover_ended(conversation: &str, how: &str) -> Notice {
    notice(
        "handover_ended",
        json!({ "conversation": conversation, "how": how }),
    )
}
