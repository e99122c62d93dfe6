//! Per-conversation lanes for `plugboard chat`: the lock that serializes a conversation,
//! and paced delivery (the conversation core only says how far apart outputs must be;
//! here the chat sleeps for it).
//!
//! Every entry point of [`super::conversations::Conversations`] takes the conversation's
//! lane (a tokio mutex, FIFO fair, so queued inputs run in arrival order and none is
//! dropped) and holds it for the whole step, delivery included. Different conversations have different lanes and run in parallel.
//! The lane also remembers when the conversation last got an output, so the minimum gap
//! holds across calls. That instant is runtime-only (not in the stored record): pacing
//! after a restart does not matter.

use crate::lock::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::conversations::Outbound;
use crate::conversation::{Paced, SessionKey};
use crate::plugins::types::{BotOutput, MarkReadOutput};

/// Idle lanes are pruned once the map grows past this many.
const PRUNE_ABOVE: usize = 4_096;

/// The runtime-only state of one conversation.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub last_delivery: Option<Instant>,
}

pub(crate) type LaneLock = Arc<tokio::sync::Mutex<Lane>>;

#[derive(Default)]
pub(crate) struct Lanes {
    map: Mutex<HashMap<SessionKey, LaneLock>>,
}

impl Lanes {
    /// The lane of a conversation, created on first use. Never held across an await: the
    /// std mutex only guards the map.
    pub fn get(&self, key: &SessionKey, delay: Duration) -> LaneLock {
        let mut map = self.map.locked();
        if map.len() > PRUNE_ABOVE {
            // A lane nobody holds or waits for, whose gap has passed, carries nothing.
            let now = Instant::now();
            map.retain(|_, lane| {
                Arc::strong_count(lane) > 1
                    || lane
                        .try_lock()
                        .map_or(true, |l| l.last_delivery.is_some_and(|t| t + delay > now))
            });
        }
        map.entry(key.clone()).or_default().clone()
    }
}

/// Delivers `outputs` in order, each at least its `gap_ms` after the one before (also after
/// the lane's previous delivery). With `typing_for` set and a wait ahead, a read receipt with the typing
/// indicator for that inbound message goes out first, once. Stops at the first failed
/// delivery (later outputs would arrive out of context): `Err` carries what went out and
/// the reason.
pub(crate) async fn deliver_paced<O: Outbound>(
    outbound: &O,
    lane: &mut Lane,
    key: &SessionKey,
    outputs: Vec<Paced>,
    typing_for: Option<&str>,
) -> Result<Vec<BotOutput>, (Vec<BotOutput>, String)> {
    let mut delivered = Vec::with_capacity(outputs.len());
    let Some(first) = outputs.first() else {
        return Ok(delivered);
    };
    let due = |lane: &Lane, gap_ms: u64| {
        lane.last_delivery
            .map(|t| t + Duration::from_millis(gap_ms))
    };
    let first_gap = first.gap_ms;
    let will_wait = first_gap > 0
        && (outputs.len() > 1 || due(lane, first_gap).is_some_and(|d| d > Instant::now()));
    if let (true, Some(message_id)) = (will_wait, typing_for) {
        let typing = BotOutput::MarkRead(MarkReadOutput {
            message_id: message_id.to_string(),
            typing: true,
        });
        // A typing indicator that fails is cosmetic: log and go on with the real outputs.
        if let Err(reason) = outbound.deliver(key, typing).await {
            tracing::warn!(conversation = %key.masked(), %reason, "typing indicator not delivered");
        }
    }
    for Paced { output, gap_ms } in outputs {
        if gap_ms > 0
            && let Some(due) = due(lane, gap_ms)
        {
            tokio::time::sleep_until(due).await;
        }
        if let Err(reason) = outbound.deliver(key, output.clone()).await {
            return Err((delivered, reason));
        }
        lane.last_delivery = Some(Instant::now());
        delivered.push(output);
    }
    Ok(delivered)
}
