//! Per-conversation workers: one conversation's events strictly in order, different
//! conversations in parallel, every step committed in one transaction.
//!
//! [`Workers::enqueue`] appends a job to its conversation's queue and starts a worker task
//! when none runs; the worker drains the queue and ends when it is empty (the queue entry
//! exists exactly while a worker runs, both changed under one lock, so no job is ever left
//! without a worker). A step ([`run_message`]) runs the conversation runtime with the
//! staging store and collector, then commits the session record, the outbox rows (read
//! receipt and typing indicator first, per endpoint setting), the 24-hour window and the
//! handover timer with the event marked done, in one transaction, and only then hands the
//! rows to the sender. A step that cannot commit is discarded and runs again: the flow is
//! pure and its outputs only leave through the committed outbox, so no reply is lost or
//! doubled (a flow's http calls and handover webhook posts do run again). On shutdown a
//! worker finishes its step and
//! leaves the rest pending in the store for the next start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::conversation::{ConversationError, SessionKey, SessionRecord};
use crate::plugins::types::{BotOutput, Event, EventBody, InboundMessage, MarkReadOutput, User};
use crate::store::{
    EventKind, EventRow, NewOutbox, NewTimer, OutboxRow, OutboxState, StepCommit, TimerRow,
};

use super::endpoint::Endpoint;
use super::{Shared, notices, now_ms};

/// The timer that ends a handover when its mute runs out.
pub const HANDOVER_END: &str = "handover_end";

/// The longest wait between retries of a step whose store calls fail.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Work for one conversation.
#[derive(Debug, Clone)]
pub enum Job {
    Event(EventRow),
    Timer(TimerRow),
    /// An admin API action (agent, inject, notify): in line with the conversation's
    /// events, answered once its step has committed.
    Admin(AdminJob),
}

/// What an admin or agent does to a conversation.
#[derive(Debug, Clone)]
pub enum AdminAction {
    TakeOver {
        reason: Option<String>,
    },
    Release,
    SetAi(bool),
    /// A human agent's message (recorded in the history).
    AgentSend(BotOutput),
    /// Straight to the user, without the flow.
    Notify(BotOutput),
    /// Text and/or data into the flow as if the user had sent it.
    Inject {
        text: Option<String>,
        data: serde_json::Value,
    },
}

/// The answer to an admin action: the committed outbox row ids, or why it was not done.
pub type AdminAnswer = Result<Vec<i64>, String>;

/// An admin action and where its answer goes (once: a retried step answers at the end).
#[derive(Debug, Clone)]
pub struct AdminJob {
    pub action: AdminAction,
    /// The user when the conversation has no session yet (a first notify).
    pub recipient: User,
    reply: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<AdminAnswer>>>>,
}

impl AdminJob {
    pub fn new(
        action: AdminAction,
        recipient: User,
    ) -> (
        AdminJob,
        tokio::sync::oneshot::Receiver<Result<Vec<i64>, String>>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = AdminJob {
            action,
            recipient,
            reply: Arc::new(std::sync::Mutex::new(Some(tx))),
        };
        (job, rx)
    }

    fn answer(&self, result: AdminAnswer) {
        if let Some(tx) = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(result);
        }
    }
}

/// A step failed in a way worth retrying (the store); the event stays pending.
struct Retry(String);

#[derive(Default)]
pub struct Workers {
    queues: std::sync::Mutex<HashMap<SessionKey, VecDeque<Job>>>,
    /// Timers queued or running, so the timer tick does not queue one twice.
    timers: std::sync::Mutex<HashSet<i64>>,
    active: AtomicUsize,
    idle: Notify,
}

impl Workers {
    pub fn enqueue(&self, shared: &Arc<Shared>, key: SessionKey, job: Job) {
        if let Job::Timer(timer) = &job {
            self.timers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(timer.id);
        }
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get_mut(&key) {
            queue.push_back(job);
            return;
        }
        queues.insert(key.clone(), VecDeque::from([job]));
        let active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .metrics
            .conversations_active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        shared.pipeline.spawn(run(shared.clone(), key));
    }

    pub fn has_timer(&self, id: i64) -> bool {
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// Conversations with a running worker.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until no worker runs (after shutdown was signalled, none starts again).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn next(&self, key: &SessionKey, stopping: bool) -> Option<Job> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let job = match queues.get_mut(key) {
            Some(queue) if !stopping => queue.pop_front(),
            _ => None,
        };
        if job.is_none() {
            queues.remove(key);
        }
        job
    }

    fn finished(&self, shared: &Shared) {
        let left = self.active.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        shared
            .metrics
            .conversations_active
            .set(i64::try_from(left).unwrap_or(i64::MAX));
        if left == 0 {
            self.idle.notify_waiters();
        }
    }
}

async fn run(shared: Arc<Shared>, key: SessionKey) {
    while let Some(job) = shared.workers.next(&key, shared.is_stopping()) {
        let mut wait = Duration::from_millis(200);
        loop {
            // Its own task, so a panic in a step (a bug) is contained: the job is logged
            // and left pending in the store, and this conversation's worker goes on.
            let step = {
                let (shared, key, job) = (shared.clone(), key.clone(), job.clone());
                tokio::spawn(async move { run_job(&shared, &key, &job).await })
            };
            let result = step.await.unwrap_or_else(|e| {
                tracing::error!(conversation = %key.masked(), endpoint = %key.endpoint, "step panicked; the event stays pending until the next start: {e}");
                Ok(())
            });
            match result {
                Ok(()) => break,
                Err(Retry(reason)) => {
                    tracing::warn!(conversation = %key.masked(), endpoint = %key.endpoint, %reason, "step not committed; retrying");
                    let mut stopping = shared.stop_signal();
                    if shared.is_stopping() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping.changed() => break,
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
        if let Job::Timer(timer) = &job {
            shared
                .workers
                .timers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&timer.id);
        }
    }
    shared.workers.finished(&shared);
}

async fn run_job(shared: &Arc<Shared>, key: &SessionKey, job: &Job) -> Result<(), Retry> {
    let Some(endpoint) = shared.endpoints.get(&key.endpoint) else {
        // The endpoint left the configuration: keep the event, log it, move on.
        tracing::warn!(endpoint = %key.endpoint, "event for an endpoint that is not configured");
        match job {
            Job::Event(row) => {
                commit(shared, done_only(key, row.id)).await?;
            }
            Job::Timer(timer) => {
                shared
                    .store
                    .timer_done(timer.id)
                    .await
                    .map_err(|e| Retry(e.to_string()))?;
            }
            Job::Admin(job) => job.answer(Err("the endpoint is not served".into())),
        }
        return Ok(());
    };
    // A flag left by a read outside a message step (an admin action's look at the
    // session, a timer) must not make this step look like a conversation's start.
    endpoint.sessions.take_fresh(key);
    // The stored session is read here, async, for the runtime's synchronous reads.
    endpoint
        .sessions
        .load(key)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    let outcome = match job {
        Job::Event(row) => match row.kind {
            EventKind::SendFailed => run_send_failed(shared, &endpoint, key, row).await,
            _ => {
                let message =
                    serde_json::from_str::<Event>(&row.body)
                        .ok()
                        .and_then(|e| match e.body {
                            EventBody::Message(m) => Some((m, e.business)),
                            _ => None,
                        });
                match message {
                    Some((message, business)) => {
                        run_message(shared, &endpoint, key, row.id, message, business).await
                    }
                    None => {
                        tracing::warn!(event = row.id, "a stored message event cannot be read");
                        commit(shared, done_only(key, row.id)).await.map(drop)
                    }
                }
            }
        },
        Job::Timer(timer) => run_timer(shared, &endpoint, key, timer).await,
        Job::Admin(job) => run_admin(shared, &endpoint, key, job).await,
    };
    endpoint.sessions.unload(key);
    outcome
}

fn done_only(key: &SessionKey, event: i64) -> StepCommit {
    StepCommit {
        endpoint: key.endpoint.clone(),
        conversation: key.user.clone(),
        event_done: Some(event),
        ..StepCommit::default()
    }
}

/// One inbound message: runtime step, then one commit, then the sender.
async fn run_message(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    event_id: i64,
    message: InboundMessage,
    business: crate::plugins::types::Business,
) -> Result<(), Retry> {
    // The window opens at the user's message as Meta stamped it (capped at now: a clock
    // ahead of ours must not stretch the window).
    let now = now_ms();
    let inbound_ms = message.timestamp.saturating_mul(1000).min(now);
    let mut step = done_only(key, event_id);
    step.inbound_ms = Some(inbound_ms);
    let subs = &shared.subscribed;
    let (ep, user) = (key.endpoint.as_str(), key.user.as_str());
    // Received also by a disabled endpoint: it stores what it does not answer.
    step.notices
        .extend(notices::message_received(subs, ep, user, &message));
    if !endpoint.config.enabled {
        // Disabled: acknowledged and stored, never answered.
        return commit(shared, step).await.map(drop);
    }
    // STOP / START: the user's choice about business-initiated messages, kept before the
    // flow runs (which may still answer it). Idempotent, so a retried step is harmless.
    if let crate::plugins::types::MessageContent::Text(text) = &message.content
        && let Some(out) = crate::business::opt_keyword(text)
    {
        let changed = if out {
            shared.store.opt_out(ep, user, "stop").await
        } else {
            shared.store.opt_in(ep, user).await
        };
        changed.map_err(|e| Retry(format!("opt-out: {e}")))?;
    }
    // A reply to a campaign message enters the flow with the campaign as `{{campaign.…}}`.
    if shared.business.has_campaigns(ep) {
        let since = now.saturating_sub(crate::business::CAMPAIGN_REPLY_WINDOW_MS);
        let contact = shared
            .store
            .campaign_contact(ep, user, since)
            .map_err(|e| Retry(format!("campaign context: {e}")))?;
        if let Some(contact) = contact {
            endpoint
                .conversations
                .set_context(key, "campaign", json!(contact))
                .await
                .map_err(|e| Retry(e.to_string()))?;
        }
    }
    let recipient = json_or_retry(&message.user)?;
    let business_json = json_or_retry(&business)?;
    let message_id = message.id.clone();
    let result = endpoint.conversations.handle(message, business).await;
    let outputs = endpoint.collector.take(key);
    let session = endpoint.sessions.take(key);
    let started = endpoint.sessions.take_fresh(key);
    match &result {
        Err(ConversationError::Store(e)) => {
            return Err(Retry(format!("session store: {e}")));
        }
        Err(e) => {
            tracing::warn!(endpoint = %key.endpoint, conversation = %key.masked(), "step failed: {e}");
        }
        Ok(report) => {
            for error in &report.errors {
                tracing::warn!(endpoint = %key.endpoint, conversation = %key.masked(), %error, "flow error");
            }
            if report.expired {
                step.notices
                    .extend(notices::conversation_started(subs, ep, user));
            }
            if report.handover_ended {
                step.notices
                    .extend(notices::handover_ended(subs, ep, user, "mute_ended"));
            }
            if report.handover_started {
                let handover = session.as_ref().and_then(|s| s.handover.as_ref());
                step.notices.extend(notices::handover_started(
                    subs,
                    ep,
                    user,
                    handover.and_then(|h| h.reason.as_deref()),
                    handover.map_or(0, |h| h.until_ms),
                ));
            }
        }
    }
    // A new session, also when the step failed after creating it (it is committed).
    if started && session.is_some() {
        step.notices
            .extend(notices::conversation_started(subs, ep, user));
    }
    let (outputs, counted) = apply_quota(shared, endpoint, key, &mut step, outputs, now)?;
    let mut rows = Vec::with_capacity(outputs.len() + 1);
    // Meta's typing indicator rides on the read receipt, so it marks the message read too.
    let typing = endpoint.config.typing_indicator && !outputs.is_empty();
    if endpoint.config.mark_read || typing {
        rows.push(BotOutput::MarkRead(MarkReadOutput { message_id, typing }));
    }
    rows.extend(outputs);
    for output in rows {
        step.outbox.push(NewOutbox {
            free_form: is_free_form(&output),
            output: json_or_retry(&output)?,
            recipient: recipient.clone(),
            business: business_json.clone(),
            not_before_ms: 0,
        });
    }
    set_session(&mut step, session)?;
    commit(shared, step).await?;
    if let Some((month, n)) = counted {
        shared.business.add_replies(ep, &month, n);
    }
    Ok(())
}

/// Replies a committed step adds to the month's count: (month, replies).
type Counted = Option<(String, u64)>;

/// The endpoint's monthly reply quota: under it, the step's replies are counted (in the
/// step's commit); once it is used up, the bot's replies are dropped and the user gets the
/// quota message, once a month. The owner hears of it by the `quota_reached` event.
fn apply_quota(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    step: &mut StepCommit,
    outputs: Vec<BotOutput>,
    now: u64,
) -> Result<(Vec<BotOutput>, Counted), Retry> {
    let Some(quota) = &endpoint.config.reply_quota else {
        return Ok((outputs, None));
    };
    let replies = outputs
        .iter()
        .filter(|o| !matches!(o, BotOutput::MarkRead(_)))
        .count() as u64;
    if replies == 0 {
        return Ok((outputs, None));
    }
    let (ep, user) = (key.endpoint.as_str(), key.user.as_str());
    let month = crate::business::month_of(now);
    let store = shared.store.as_ref();
    let used = shared
        .business
        .replies(store, ep, &month)
        .map_err(|e| Retry(format!("reply quota: {e}")))?;
    if used < quota.monthly {
        if used + replies >= quota.monthly {
            step.notices.extend(notices::quota_reached(
                &shared.subscribed,
                ep,
                &month,
                quota.monthly,
            ));
        }
        step.quota = Some(crate::store::QuotaTally {
            month: month.clone(),
            replies,
            told: None,
        });
        return Ok((outputs, Some((month, replies))));
    }
    let told = store
        .quota_told(ep, &month, user)
        .map_err(|e| Retry(format!("reply quota: {e}")))?;
    tracing::info!(endpoint = %ep, conversation = %key.masked(), told, "monthly reply quota used up: replies dropped");
    if told {
        return Ok((Vec::new(), None));
    }
    step.quota = Some(crate::store::QuotaTally {
        month,
        replies: 0,
        told: Some(user.to_string()),
    });
    Ok((vec![BotOutput::Text(quota.message.clone())], None))
}

/// Puts the staged record and its handover timer into the commit.
fn set_session(step: &mut StepCommit, session: Option<SessionRecord>) -> Result<(), Retry> {
    let Some(record) = session else {
        return Ok(());
    };
    match &record.handover {
        Some(handover) => step.timers.push(NewTimer {
            kind: HANDOVER_END.into(),
            due_ms: handover.until_ms,
        }),
        None => step.cancel_timers.push(HANDOVER_END.into()),
    }
    step.session = Some(json_or_retry(&record)?);
    Ok(())
}

/// The host gave up on an output: the conversation learns it (`{{send_failed.reason}}`).
async fn run_send_failed(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    row: &EventRow,
) -> Result<(), Retry> {
    let data: serde_json::Value =
        serde_json::from_str(&row.body).unwrap_or_else(|_| json!({ "raw": row.body }));
    let reason = data
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or("unknown")
        .to_string();
    let result = endpoint
        .conversations
        .record_event(
            key,
            "send_failed",
            data,
            format!("[message not delivered: {reason}]"),
        )
        .await;
    let session = endpoint.sessions.take(key);
    if let Err(e) = result {
        return Err(Retry(e.to_string()));
    }
    let mut step = done_only(key, row.id);
    set_session(&mut step, session)?;
    commit(shared, step).await.map(drop)
}

async fn run_timer(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    timer: &TimerRow,
) -> Result<(), Retry> {
    if timer.kind == HANDOVER_END {
        let ended = endpoint
            .conversations
            .expire_handover(key)
            .await
            .map_err(|e| Retry(e.to_string()))?;
        let session = endpoint.sessions.take(key);
        if ended {
            let mut step = StepCommit {
                endpoint: key.endpoint.clone(),
                conversation: key.user.clone(),
                notices: notices::handover_ended(
                    &shared.subscribed,
                    &key.endpoint,
                    &key.user,
                    "mute_ended",
                )
                .into_iter()
                .collect(),
                ..StepCommit::default()
            };
            set_session(&mut step, session)?;
            commit(shared, step).await?;
        }
    } else {
        tracing::warn!(kind = %timer.kind, "unknown timer kind; dropped");
    }
    shared
        .store
        .timer_done(timer.id)
        .await
        .map_err(|e| Retry(e.to_string()))
}

/// An admin action: the runtime call, then one commit (session, outbox rows, handover
/// timer, notices), then the answer. A store failure retries like any step; any other
/// failure is the answer.
async fn run_admin(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    job: &AdminJob,
) -> Result<(), Retry> {
    let conversations = &endpoint.conversations;
    let mut step = StepCommit {
        endpoint: key.endpoint.clone(),
        conversation: key.user.clone(),
        ..StepCommit::default()
    };
    let before = conversations.session(key).await;
    let result = match &job.action {
        AdminAction::TakeOver { reason } => {
            conversations.take_over(key, reason.clone()).await.map(drop)
        }
        AdminAction::Release => conversations.release(key).await,
        AdminAction::SetAi(enabled) => conversations.set_ai(key, *enabled).await,
        AdminAction::AgentSend(output) => conversations.agent_send(key, output.clone()).await,
        AdminAction::Notify(output) => conversations.notify(key, output.clone()).await,
        AdminAction::Inject { text, data } => conversations
            .inject(key, text.clone(), data.clone())
            .await
            .map(drop),
    };
    let outputs = endpoint.collector.take(key);
    let mut session = endpoint.sessions.take(key);
    if let Err(e) = result {
        if let ConversationError::Store(e) = &e {
            return Err(Retry(format!("session store: {e}")));
        }
        job.answer(Err(e.to_string()));
        return Ok(());
    }
    if let Some(record) = &mut session
        && record.state.user.is_none()
    {
        // A conversation an admin starts (a first notify) needs its user for replies.
        record.state.user = Some(job.recipient.clone());
    }
    let was_handed_over = before.as_ref().is_some_and(|s| s.handover.is_some());
    let (subs, ep, user) = (&shared.subscribed, key.endpoint.as_str(), key.user.as_str());
    if before.is_none() && session.is_some() {
        // An agent or integration wrote first (a template notify, an inject).
        step.notices
            .extend(notices::conversation_started(subs, ep, user));
    }
    match (
        &job.action,
        session.as_ref().and_then(|s| s.handover.as_ref()),
    ) {
        (AdminAction::TakeOver { reason }, Some(handover)) if !was_handed_over => {
            step.notices.extend(notices::handover_started(
                subs,
                ep,
                user,
                reason.as_deref(),
                handover.until_ms,
            ));
        }
        (AdminAction::Release, None) if was_handed_over => {
            step.notices
                .extend(notices::handover_ended(subs, ep, user, "released"));
        }
        _ => {}
    }
    let recipient = session
        .as_ref()
        .and_then(|s| s.state.user.clone())
        .unwrap_or_else(|| job.recipient.clone());
    let recipient = json_or_retry(&recipient)?;
    let business = json_or_retry(&endpoint.business)?;
    for output in outputs {
        step.outbox.push(NewOutbox {
            free_form: is_free_form(&output),
            output: json_or_retry(&output)?,
            recipient: recipient.clone(),
            business: business.clone(),
            not_before_ms: 0,
        });
    }
    set_session(&mut step, session)?;
    let ids = commit(shared, step).await?;
    job.answer(Ok(ids));
    Ok(())
}

/// Commits a step and hands its outbox rows to the sender.
async fn commit(shared: &Arc<Shared>, step: StepCommit) -> Result<Vec<i64>, Retry> {
    let outbox = step.outbox.clone();
    let (endpoint, conversation) = (step.endpoint.clone(), step.conversation.clone());
    let ids = shared
        .store
        .commit_step(step)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    if !ids.is_empty() {
        let created_ms = now_ms();
        let rows = ids
            .iter()
            .zip(outbox)
            .map(|(id, row)| OutboxRow {
                id: *id,
                endpoint: endpoint.clone(),
                conversation: conversation.clone(),
                recipient: row.recipient,
                business: row.business,
                output: row.output,
                free_form: row.free_form,
                state: OutboxState::Pending,
                attempts: 0,
                parts_sent: 0,
                next_attempt_ms: row.not_before_ms,
                last_error: None,
                created_ms,
            })
            .collect();
        shared.sender.enqueue(rows);
    }
    Ok(ids)
}

/// Free-form messages need an open 24-hour window; templates and read receipts do not.
pub fn is_free_form(output: &BotOutput) -> bool {
    !matches!(output, BotOutput::Template(_) | BotOutput::MarkRead(_))
}

fn json_or_retry<T: serde::Serialize>(value: &T) -> Result<String, Retry> {
    serde_json::to_string(value).map_err(|e| Retry(format!("cannot serialize: {e}")))
}
