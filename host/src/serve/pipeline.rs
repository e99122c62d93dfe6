//! From the durable inbox to events on their way: demux, dispatch, statuses and timers.
//!
//! - **Demux** ([`demux_loop`]): inbox rows arrive from the edge over a channel (and from a
//!   periodic scan, which also picks up rows put back by `plugboard replay`). A batch is
//!   decoded through the endpoint's adapter off the async threads, then recorded in one
//!   store call: events under their UNIQUE dedupe keys (a redelivered webhook adds nothing),
//!   the inbox rows done, or dead letters for bodies the adapter refused, trapped on, ran
//!   out of time on or answered too much for. A panic while decoding one row is contained
//!   to that row (a dead letter): the loop goes on, and a restart does not meet it again.
//! - **Routing**: each decoded item is recorded for the endpoint the isolation rule
//!   ([`super::tenancy`]) names: the receiving one, another endpoint of the same app, or
//!   nobody (`unowned`: stored, counted by reason, never answered or applied).
//! - **Dispatch** ([`dispatch`]): each newly recorded event goes where it belongs: messages
//!   and `send_failed` notes to their conversation's worker (in order, see
//!   [`super::workers`]); statuses to [`apply_statuses`]; system notices, channel errors and
//!   account changes (template and number updates) are logged and marked done.
//! - **Statuses** are applied monotonically to the outbox by the store. A `failed` status
//!   with Meta's 131047 (the 24-hour window closed) is reconciled like a synchronous one:
//!   the configured template goes out instead, or the row becomes a dead letter.
//! - **Timers** ([`timer_loop`]) fire due rows (a handover's mute running out) through the
//!   conversation's worker; **prune** drops done events after the retention period.
//!
//! Every store failure here is retried: nothing acknowledged is dropped, and anything not
//! finished before a crash is still pending in the store when the host comes back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::conversation::SessionKey;
use crate::plugins::types::{DeliveryStatus, Event, EventBody};
use crate::store::{
    DeliveryState, DemuxOutcome, Demuxed, EventKind, EventRow, InboxRow, NewEvent, OutboxState,
};

use super::Shared;
use super::store_retry::until_stored;
use super::tenancy::{Item, Route, Router};
use super::workers::Job;
use crate::clock::now_ms;
use crate::endpoints::endpoint::Endpoint;

/// Inbox rows decoded and recorded per store call.
const DEMUX_BATCH: usize = 256;
/// How often the inbox is scanned for rows nobody sent over the channel (replays, rows
/// whose notification was lost).
const INBOX_SCAN: Duration = Duration::from_secs(2);
/// A row younger than this is assumed to be on its way through the channel.
const SCAN_MIN_AGE_MS: u64 = 2_000;
/// Batches up to this many rows are decoded in place (`block_in_place`), bigger ones on the
/// blocking pool.
const INLINE_DECODE: usize = 4;

/// Kept for code not yet moved to the rules' module.
pub use crate::whatsapp::WINDOW_CLOSED_CODE;

/// Decodes inbox rows and records their events until shutdown.
pub async fn demux_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<InboxRow>) {
    let mut scan = tokio::time::interval(INBOX_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = shared.stop_signal();
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            row = rx.recv() => match row {
                Some(row) => batch.push(row),
                None => return,
            },
            _ = scan.tick() => {
                match shared.store.pending_inbox(0, DEMUX_BATCH).await {
                    Ok(rows) => {
                        let cutoff = now_ms().saturating_sub(SCAN_MIN_AGE_MS);
                        batch.extend(rows.into_iter().filter(|r| r.received_ms <= cutoff));
                    }
                    Err(e) => tracing::warn!("inbox scan: {e}"),
                }
            }
            _ = stopping.changed() => {}
        }
        while batch.len() < DEMUX_BATCH {
            match rx.try_recv() {
                Ok(row) => batch.push(row),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            demux_batch(&shared, batch).await;
        }
        if shared.is_stopping() {
            // Rows still in the channel are durable in the inbox: the next start picks
            // them up.
            return;
        }
    }
}

/// Decodes and records one batch, then dispatches the new events.
pub async fn demux_batch(shared: &Arc<Shared>, rows: Vec<InboxRow>) {
    // A few rows decode in tens of microseconds: in place (this worker's queue handed to
    // another thread for the while, once per batch: see `plugins::offthread`) is cheaper
    // than a round trip through the blocking pool. Bigger batches go to the blocking pool
    // so this loop's thread keeps going.
    let decoded = if rows.len() <= INLINE_DECODE {
        Ok(crate::plugins::offthread::off_async(|| {
            rows.into_iter()
                .map(|row| decode_row_contained(shared, row))
                .collect::<Vec<_>>()
        }))
    } else {
        let decoder = shared.clone();
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|row| decode_row_contained(&decoder, row))
                .collect::<Vec<_>>()
        })
        .await
    };
    let batch = match decoded {
        Ok(batch) => batch,
        Err(e) => {
            // The rows stay pending; the scan retries them.
            tracing::error!("demux task failed: {e}");
            return;
        }
    };
    let Some(recorded) = until_stored(&shared.cancel, "record demuxed events", || {
        shared.store.record_demux(batch.clone())
    })
    .await
    else {
        return;
    };
    for rows in recorded {
        dispatch(shared, rows).await;
    }
}

/// [`decode_row`] with a panic contained to its row: the row becomes a dead letter (so it
/// is not decoded into the same panic again after a restart) and the batch goes on.
fn decode_row_contained(shared: &Shared, row: InboxRow) -> Demuxed {
    let (inbox_id, endpoint) = (row.id, row.endpoint.clone());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_row(shared, row))) {
        Ok(demuxed) => demuxed,
        Err(panic) => {
            let detail = format!(
                "decoding panicked: {}",
                super::stages::panic_message(panic.as_ref())
            );
            tracing::error!(endpoint = %endpoint, inbox = inbox_id, %detail, "webhook kept as a dead letter");
            shared
                .metrics
                .events_total
                .with_label_values(&[endpoint.as_str(), "dead_letter"])
                .inc();
            Demuxed {
                inbox_id,
                endpoint,
                outcome: DemuxOutcome::Dead {
                    reason: "plugin_failed".into(),
                    detail,
                },
            }
        }
    }
}

/// One inbox row through its endpoint's adapter.
fn decode_row(shared: &Shared, row: InboxRow) -> Demuxed {
    let outcome = match shared.endpoints.get(&row.endpoint) {
        None => DemuxOutcome::Dead {
            reason: "unknown_endpoint".into(),
            detail: format!("no endpoint `{}` is configured", row.endpoint),
        },
        Some(endpoint) => decode_body(shared, &endpoint, &row.body),
    };
    if let DemuxOutcome::Dead { reason, detail } = &outcome {
        tracing::warn!(endpoint = %row.endpoint, inbox = row.id, %reason, %detail, "webhook kept as a dead letter");
        shared
            .metrics
            .events_total
            .with_label_values(&[row.endpoint.as_str(), "dead_letter"])
            .inc();
    }
    Demuxed {
        inbox_id: row.id,
        endpoint: row.endpoint,
        outcome,
    }
}

fn decode_body(shared: &Shared, endpoint: &Endpoint, body: &[u8]) -> DemuxOutcome {
    let started = std::time::Instant::now();
    let decoded = endpoint.adapter.decode(body);
    shared.observe_plugin(endpoint, "decode", started);
    let decoded = match decoded {
        Err(e) => {
            return DemuxOutcome::Dead {
                reason: "plugin_failed".into(),
                detail: e.to_string(),
            };
        }
        Ok(Err(e)) => {
            return DemuxOutcome::Dead {
                reason: "malformed".into(),
                detail: crate::plugins::adapter_error(&e),
            };
        }
        Ok(Ok(decoded)) => decoded,
    };
    for skipped in &decoded.skipped {
        tracing::info!(endpoint = %endpoint.config.id, path = %skipped.path, reason = %skipped.reason, "webhook item skipped by the adapter");
    }
    let mut events = Vec::with_capacity(decoded.events.len());
    let mut router = Router::new(endpoint, &shared.endpoints, &shared.business.catalogue);
    for event in decoded.events {
        // The isolation rule (see `tenancy`): whose event this is, or unowned and why.
        let item = match &event.body {
            EventBody::Template(_) | EventBody::Number(_) => {
                Item::Account(event.business.account_id.as_deref())
            }
            _ => Item::Number(event.business.phone_number_id.as_str()),
        };
        let route = router.route(item);
        let (kind, conversation) = match (&route, &event.body) {
            (Route::Unowned(reason), _) => {
                let reason = reason.as_str();
                match item {
                    Item::Number(number) => {
                        tracing::warn!(endpoint = %endpoint.config.id, phone_number_id = %number, %reason, "webhook item this endpoint may not act for: stored as unowned, not answered");
                    }
                    Item::Account(account) => {
                        tracing::warn!(endpoint = %endpoint.config.id, account = account.unwrap_or_default(), %reason, "account item this endpoint may not act for: stored as unowned, not applied");
                    }
                }
                shared
                    .metrics
                    .unowned_events_total
                    .with_label_values(&[endpoint.config.id.as_str(), reason])
                    .inc();
                (EventKind::Unowned, String::new())
            }
            (_, EventBody::Message(m)) => (EventKind::Message, user_key(endpoint, &m.user)),
            (_, EventBody::Status(_)) => (EventKind::Status, String::new()),
            (_, EventBody::System(s)) => (EventKind::System, user_key(endpoint, &s.user)),
            (_, EventBody::Error(_)) => (EventKind::Error, String::new()),
            // Account-level (WIT 0.1.1; no number, routed on the account): applied to the
            // stored accounts by dispatch.
            (_, EventBody::Template(_) | EventBody::Number(_)) => {
                (EventKind::Account, String::new())
            }
        };
        let body = match serde_json::to_string(&event) {
            Ok(body) => body,
            Err(e) => {
                return DemuxOutcome::Dead {
                    reason: "malformed".into(),
                    detail: format!("an event cannot be stored: {e}"),
                };
            }
        };
        events.push(NewEvent {
            endpoint: match route {
                Route::Other(id) => Some(id),
                Route::Here | Route::Unowned(_) => None,
            },
            dedupe_key: event.dedupe_key,
            conversation,
            kind,
            body,
        });
    }
    DemuxOutcome::Events(events)
}

fn user_key(endpoint: &Endpoint, user: &crate::plugins::types::User) -> String {
    SessionKey::for_user(&endpoint.config.id, user)
        .map(|k| k.user)
        .unwrap_or_default()
}

/// Sends newly recorded events on their way.
pub async fn dispatch(shared: &Arc<Shared>, rows: Vec<EventRow>) {
    let mut statuses = Vec::new();
    let mut accounts = Vec::new();
    let mut done = Vec::new();
    for row in rows {
        shared
            .metrics
            .events_total
            .with_label_values(&[row.endpoint.as_str(), row.kind.as_str()])
            .inc();
        match row.kind {
            EventKind::Message | EventKind::SendFailed if !row.conversation.is_empty() => {
                let key = SessionKey::new(row.endpoint.clone(), row.conversation.clone());
                // Back-pressure: a full worker backlog holds the demux here.
                let place = shared.workers.admit().await;
                shared
                    .workers
                    .enqueue_admitted(shared, key, Job::Event(row), place);
            }
            EventKind::Status => statuses.push(row),
            EventKind::Account => accounts.push(row),
            _ => {
                tracing::info!(endpoint = %row.endpoint, kind = row.kind.as_str(), event = row.id, "event recorded");
                done.push(row.id);
            }
        }
    }
    if !statuses.is_empty() {
        let shared = shared.clone();
        shared
            .clone()
            .track(async move { apply_statuses(&shared, statuses).await });
    }
    if !accounts.is_empty() {
        crate::business::apply_account_events(shared.store.as_ref(), &shared.business, &accounts)
            .await;
        done.extend(accounts.iter().map(|r| r.id));
    }
    if !done.is_empty() {
        mark_done(shared, done).await;
    }
}

async fn mark_done(shared: &Shared, ids: Vec<i64>) {
    until_stored(&shared.cancel, "mark events done", || {
        shared.store.events_done(ids.clone())
    })
    .await;
}

/// Applies delivery statuses to the outbox, reconciling window-closed failures.
///
/// A `failed` status with 131047 is reconciled once its outbox row is known and failed.
/// It can arrive before the send's response is stored (the row is still pending, or has no
/// message id yet): then its event stays pending and is looked at again every second for
/// [`WINDOW_RECHECK`] tries (also after a restart, since the event is still pending).
pub async fn apply_statuses(shared: &Arc<Shared>, rows: Vec<EventRow>) {
    let mut later = rows;
    let mut stopping = shared.stop_signal();
    for attempt in 0..=WINDOW_RECHECK {
        if attempt > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopping.changed() => return,
            }
        }
        let mut still = Vec::new();
        let mut done = Vec::new();
        for row in later {
            match apply_status_row(shared, &row).await {
                Some(true) => done.push(row.id),
                Some(false) => still.push(row),
                None => return,
            }
        }
        mark_done(shared, done).await;
        later = still;
        if later.is_empty() || shared.is_stopping() {
            return;
        }
    }
    if !later.is_empty() {
        tracing::warn!(
            statuses = later.len(),
            "window-closed statuses for messages whose send is still unknown; left pending"
        );
    }
}

/// Tries to reconcile a window-closed status this long (in one-second steps).
const WINDOW_RECHECK: u32 = 30;

/// One status: applied, and reconciled when it is a window-closed failure. `Some(true)`:
/// finished; `Some(false)`: look again later; `None`: stopping.
async fn apply_status_row(shared: &Arc<Shared>, row: &EventRow) -> Option<bool> {
    let status = match serde_json::from_str::<Event>(&row.body).map(|e| e.body) {
        Ok(EventBody::Status(status)) => status,
        _ => {
            tracing::warn!(event = row.id, "a stored status event cannot be read");
            return Some(true);
        }
    };
    let name = match status.status {
        DeliveryStatus::Sent => DeliveryState::Sent,
        DeliveryStatus::Delivered => DeliveryState::Delivered,
        DeliveryStatus::Read => DeliveryState::Read,
        DeliveryStatus::Played => DeliveryState::Played,
        DeliveryStatus::Failed => DeliveryState::Failed,
    };
    let errors = serde_json::to_value(&status.errors).unwrap_or_else(|_| serde_json::json!([]));
    let applied = until_stored(&shared.cancel, "apply a status", || {
        shared.store.apply_status(
            &row.endpoint,
            &status.message_id,
            name,
            status.timestamp.saturating_mul(1000),
            errors.clone(),
        )
    })
    .await?;
    tracing::debug!(endpoint = %row.endpoint, status = name.as_str(), advanced = applied.advanced, "status");
    // 131050 usually comes here, as a failed status: the user stopped marketing messages.
    if status.status == DeliveryStatus::Failed
        && status
            .errors
            .iter()
            .any(|e| e.code == crate::whatsapp::STOPPED_MARKETING_CODE)
        && let Some(user) = status
            .recipient
            .user_id
            .as_ref()
            .or(status.recipient.phone.as_ref())
        && let Err(e) = shared
            .store
            .opt_out(
                &row.endpoint,
                user,
                crate::whatsapp::STOPPED_MARKETING_REASON,
            )
            .await
    {
        // Looked at again with the status (it stays pending until applied).
        tracing::warn!("cannot record an opt-out: {e}");
        return Some(false);
    }
    let window_closed = status.status == DeliveryStatus::Failed
        && status.errors.iter().any(|e| e.code == WINDOW_CLOSED_CODE);
    let Some(endpoint) = shared
        .endpoints
        .get(&row.endpoint)
        .filter(|_| window_closed)
    else {
        return Some(true);
    };
    match (applied.outbox_id, applied.state) {
        (Some(outbox_id), Some(OutboxState::Failed)) => {
            let detail = status
                .errors
                .first()
                .map(super::sender::describe_error)
                .unwrap_or_default();
            Some(super::sender::window_closed_later(shared, &endpoint, outbox_id, detail).await)
        }
        // Already reconciled (a redelivered status), or a row that ended otherwise.
        (Some(_), Some(OutboxState::Dead | OutboxState::Read | OutboxState::Delivered)) => {
            Some(true)
        }
        // The send's response is not stored yet: look again.
        _ => Some(false),
    }
}

/// Fires due timers through their conversations' workers.
pub async fn timer_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = shared.stop_signal();
    let mut retention_tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = retention_tick.tick() => prune(&shared).await,
            _ = stopping.changed() => return,
        }
        match shared.store.due_timers(now_ms(), 256).await {
            Ok(timers) => {
                for timer in timers {
                    if shared.workers.has_timer(timer.id) {
                        continue;
                    }
                    let key = SessionKey::new(timer.endpoint.clone(), timer.conversation.clone());
                    shared.workers.enqueue(&shared, key, Job::Timer(timer));
                }
            }
            Err(e) => tracing::warn!("timers: {e}"),
        }
        if let Ok(depths) = shared.store.depths().await {
            super::set_depths(&shared.metrics, &depths);
        }
    }
}

async fn prune(shared: &Shared) {
    let keep_ms = u64::from(shared.retention_days) * 24 * 3600 * 1000;
    match shared.store.prune(now_ms().saturating_sub(keep_ms)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "pruned done events and inbox rows past retention"),
        Err(e) => tracing::warn!("prune: {e}"),
    }
}
