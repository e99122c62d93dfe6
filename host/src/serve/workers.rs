//! Per-conversation workers: one conversation's events strictly in order, different
//! conversations in parallel, every step committed in one transaction.
//!
//! [`Workers::enqueue`] appends a job to its conversation's queue and starts a worker task
//! when none runs; the worker drains the queue and ends when it is empty (the queue entry
//! exists exactly while a worker runs, both changed under one lock, so no job is ever left
//! without a worker). A step ([`run_message`]) loads the conversation's session record,
//! calls the pure conversation core ([`crate::conversation::handle`]) and commits what it
//! returns: the session record, the outbox rows (read receipt and typing indicator first,
//! per endpoint setting), the 24-hour window, the handover timer and the event notices
//! (handover ones included) with the event marked done, in one transaction, and only then
//! hands the rows to the sender. A step that cannot commit is discarded and runs again:
//! the core is pure and its outputs and notices only leave through the commit, so no reply
//! or notice is lost or doubled (a flow's http calls do run again). On shutdown a worker
//! finishes its step and leaves the rest pending in the store for the next start.

use crate::lock::LockExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::conversation::{
    HandoverEvent, HandoverKind, SessionKey, SessionRecord, StepInput, StepOutcome,
};
use crate::plugins::types::{BotOutput, Event, EventBody, InboundMessage, MarkReadOutput, User};
use crate::store::admin::Notice;
use crate::store::{
    EventKind, EventRow, NewOutbox, NewTimer, OutboxRow, OutboxState, StepCommit, TimerRow,
};

use super::{Shared, notices};
use crate::clock::now_ms;
use crate::endpoints::endpoint::Endpoint;

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
        if let Some(tx) = self.reply.locked().take() {
            let _ = tx.send(result);
        }
    }
}

/// A step failed in a way worth retrying (the store); the event stays pending.
struct Retry(String);

/// Events admitted to the workers and not yet stepped. The demux waits for room before it
/// hands over more ([`Workers::admit`]), so a backlog waits durably in the store (and
/// then in the bounded inbox queue, whose overflow the edge answers 503) instead of in
/// memory.
pub const WORKER_BACKLOG: usize = 2_048;

/// A queued job and, for an event the demux handed over, its place in the backlog.
type Queued = (Job, Option<OwnedSemaphorePermit>);

pub struct Workers {
    queues: std::sync::Mutex<HashMap<SessionKey, VecDeque<Queued>>>,
    backlog: Arc<Semaphore>,
    /// Timers queued or running, so the timer tick does not queue one twice.
    timers: std::sync::Mutex<HashSet<i64>>,
    active: AtomicUsize,
    idle: Notify,
    /// (endpoint, url) of the `handover.webhook_url`s registered as event webhooks.
    handover_hooks: std::sync::Mutex<HashSet<(String, String)>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            queues: Default::default(),
            backlog: Arc::new(Semaphore::new(WORKER_BACKLOG)),
            timers: Default::default(),
            active: Default::default(),
            idle: Default::default(),
            handover_hooks: Default::default(),
        }
    }
}

impl Workers {
    /// Waits for room in the backlog; the place is given back when the job is done.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.backlog.clone().acquire_owned().await.ok()
    }

    pub fn enqueue(&self, shared: &Arc<Shared>, key: SessionKey, job: Job) {
        self.enqueue_admitted(shared, key, job, None);
    }

    /// [`enqueue`](Self::enqueue) for a job holding a place in the backlog.
    pub fn enqueue_admitted(
        &self,
        shared: &Arc<Shared>,
        key: SessionKey,
        job: Job,
        place: Option<OwnedSemaphorePermit>,
    ) {
        let job = (job, place);
        if let (Job::Timer(timer), _) = &job {
            self.timers.locked().insert(timer.id);
        }
        let mut queues = self.queues.locked();
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
        shared
            .tasks
            .spawn_on(run(shared.clone(), key), &shared.pipeline);
    }

    pub fn has_timer(&self, id: i64) -> bool {
        self.timers.locked().contains(&id)
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

    fn next(&self, key: &SessionKey, stopping: bool) -> Option<Queued> {
        let mut queues = self.queues.locked();
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
    while let Some((job, _place)) = shared.workers.next(&key, shared.is_stopping()) {
        let mut wait = Duration::from_millis(200);
        loop {
            // A panic in a step (a bug) is contained here, without a task of its own: the
            // job is logged and left pending in the store, and this conversation's worker
            // goes on. (Nothing of the step is shared with the worker but `job`, read-only.)
            let step = AssertUnwindSafe(run_job(&shared, &key, &job)).catch_unwind();
            let result = step.await.unwrap_or_else(|panic| {
                let e = super::stages::panic_message(panic.as_ref());
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
            shared.workers.timers.locked().remove(&timer.id);
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
    ensure_handover_hook(shared, &endpoint).await?;
    match job {
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
    }
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
    // Back-pressure from the sender: a user's message waits here (its event pending) while
    // the sender holds its limit of rows. Only inbound messages wait: an agent's send or a
    // timer must not hang on a Graph outage.
    shared.sender.wait_for_room(&shared.cancel).await;
    // STOP / START: the user's choice about business-initiated messages, kept before the
    // flow runs (which may still answer it). Idempotent, so a retried step is harmless.
    if let crate::plugins::types::MessageContent::Text(text) = &message.content
        && let Some(out) = crate::whatsapp::opt_keyword(text)
    {
        let changed = if out {
            shared
                .store
                .opt_out(ep, user, crate::whatsapp::KEYWORD_OPT_OUT_REASON)
                .await
        } else {
            shared.store.opt_in(ep, user).await
        };
        changed.map_err(|e| Retry(format!("opt-out: {e}")))?;
    }
    // The campaign this message may answer (set into the context by the step below).
    let campaign = if shared.business.has_campaigns(ep) {
        let since = now.saturating_sub(crate::whatsapp::CAMPAIGN_REPLY_WINDOW_MS);
        shared
            .store
            .campaign_contact(ep, user, since)
            .map_err(|e| Retry(format!("campaign context: {e}")))?
    } else {
        None
    };
    let recipient = json_or_retry(&message.user)?;
    let business_json = json_or_retry(&business)?;
    let message_id = message.id.clone();
    let core = &endpoint.conversations;
    let mut stored = load(shared, key).await?;
    let (mut started, mut context_set) = (false, false);
    // A reply to a campaign message enters the flow with the campaign as `{{campaign.…}}`.
    if let Some(contact) = campaign {
        let input = StepInput::SetContext {
            name: "campaign".into(),
            data: json!(contact),
        };
        let set = core.handle(key, stored.clone(), input, now).await;
        if let Some(record) = set.record {
            (started, context_set) = (set.started, true);
            stored = Some(record);
        }
    }
    let input = StepInput::Message {
        message: Box::new(message),
        business,
    };
    let outcome = core.handle(key, stored.clone(), input, now).await;
    let started = started || outcome.started;
    if let Some(e) = &outcome.error {
        tracing::warn!(endpoint = %key.endpoint, conversation = %key.masked(), "step failed: {e}");
    }
    let report = &outcome.report;
    for error in &report.errors {
        tracing::warn!(endpoint = %key.endpoint, conversation = %key.masked(), %error, "flow error");
    }
    if report.expired {
        step.notices
            .extend(notices::conversation_started(subs, ep, user));
    }
    step.notices.extend(handover_notices(shared, key, &outcome));
    // A new session, also when the step failed after creating it (it is committed).
    if started {
        step.notices
            .extend(notices::conversation_started(subs, ep, user));
    }
    let outputs = outcome.bare_outputs();
    // The record to commit: the step's, else the one the campaign context changed.
    let session = outcome.record.or(stored.filter(|_| context_set));
    let (outputs, counted) = apply_quota(shared, endpoint, key, &mut step, outputs, now)?;
    let mut rows = Vec::with_capacity(outputs.len() + 1);
    // Meta's typing indicator rides on the read receipt, so it marks the message read too.
    let typing = endpoint.config.typing_indicator && !outputs.is_empty();
    if endpoint.config.mark_read || typing {
        rows.push(BotOutput::MarkRead(MarkReadOutput { message_id, typing }));
    }
    rows.extend(outputs);
    // Due at once: the sender paces (`message_delay_ms`, the pair limit), also across
    // steps; the core's own gaps are zero under serve (see `conversation_config`).
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
    let month = crate::whatsapp::month_of(now);
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
    let input = StepInput::RecordEvent {
        name: "send_failed".into(),
        data,
        note: format!("[message not delivered: {reason}]"),
    };
    let stored = load(shared, key).await?;
    let outcome = endpoint
        .conversations
        .handle(key, stored, input, now_ms())
        .await;
    if let Some(e) = outcome.error {
        return Err(Retry(e.to_string()));
    }
    let mut step = done_only(key, row.id);
    set_session(&mut step, outcome.record)?;
    commit(shared, step).await.map(drop)
}

async fn run_timer(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    timer: &TimerRow,
) -> Result<(), Retry> {
    if timer.kind == HANDOVER_END {
        let stored = load(shared, key).await?;
        let outcome = endpoint
            .conversations
            .handle(key, stored, StepInput::ExpireHandover, now_ms())
            .await;
        if let Some(e) = &outcome.error {
            return Err(Retry(e.to_string()));
        }
        if outcome.record.is_some() {
            let mut step = StepCommit {
                endpoint: key.endpoint.clone(),
                conversation: key.user.clone(),
                notices: handover_notices(shared, key, &outcome),
                ..StepCommit::default()
            };
            set_session(&mut step, outcome.record)?;
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

/// An admin action: the step, then one commit (session, outbox rows, handover
/// timer, notices), then the answer. A store failure retries like any step; any other
/// failure is the answer.
async fn run_admin(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    key: &SessionKey,
    job: &AdminJob,
) -> Result<(), Retry> {
    let mut step = StepCommit {
        endpoint: key.endpoint.clone(),
        conversation: key.user.clone(),
        ..StepCommit::default()
    };
    let input = match &job.action {
        AdminAction::TakeOver { reason } => StepInput::TakeOver {
            reason: reason.clone(),
        },
        AdminAction::Release => StepInput::Release,
        AdminAction::SetAi(enabled) => StepInput::SetAi(*enabled),
        AdminAction::AgentSend(output) => StepInput::AgentSend(output.clone()),
        AdminAction::Notify(output) => StepInput::Notify(output.clone()),
        AdminAction::Inject { text, data } => StepInput::Inject {
            text: text.clone(),
            data: data.clone(),
        },
    };
    let stored = load(shared, key).await?;
    let mut outcome = endpoint
        .conversations
        .handle(key, stored, input, now_ms())
        .await;
    if let Some(e) = outcome.error.take() {
        job.answer(Err(e.to_string()));
        return Ok(());
    }
    let outputs = outcome.bare_outputs();
    let (subs, ep, user) = (&shared.subscribed, key.endpoint.as_str(), key.user.as_str());
    if outcome.started {
        // An agent or integration wrote first (a template notify, an inject).
        step.notices
            .extend(notices::conversation_started(subs, ep, user));
    }
    step.notices.extend(handover_notices(shared, key, &outcome));
    let mut session = outcome.record;
    if let Some(record) = &mut session
        && record.state.user.is_none()
    {
        // A conversation an admin starts (a first notify) needs its user for replies.
        record.state.user = Some(job.recipient.clone());
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

/// Registers the endpoint's `handover.webhook_url` as an event webhook before its first
/// step (once per endpoint and URL), so the step's handover notices are delivered to it
/// like to any subscription: durable, signed, retried.
async fn ensure_handover_hook(shared: &Arc<Shared>, endpoint: &Endpoint) -> Result<(), Retry> {
    let Some(url) = &endpoint.config.handover.webhook_url else {
        return Ok(());
    };
    let id = (endpoint.config.id.clone(), url.clone());
    let hooks = &shared.workers.handover_hooks;
    if hooks.locked().contains(&id) {
        return Ok(());
    }
    notices::ensure_handover_hook(&shared.store, &shared.subscribed, &id.0, url)
        .await
        .map_err(|e| Retry(format!("handover webhook: {e}")))?;
    hooks.locked().insert(id);
    Ok(())
}

/// The conversation's stored session record. The store's read is blocking: it runs on
/// the blocking pool, not on this async thread.
async fn load(shared: &Arc<Shared>, key: &SessionKey) -> Result<Option<SessionRecord>, Retry> {
    let store = shared.store.clone();
    let (ep, user) = (key.endpoint.clone(), key.user.clone());
    let json = store
        .session(&ep, &user)
        .await
        .map_err(|e| Retry(format!("session store: {e}")))?;
    let Some(json) = json else { return Ok(None) };
    match serde_json::from_str(&json) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            // Retrying cannot fix a record that does not parse (a hand edit, an
            // incompatible upgrade) and would stall the conversation for good: the
            // conversation starts afresh instead, loudly.
            tracing::error!(conversation = %key.masked(), "stored session is unreadable, starting a new one: {e}");
            Ok(None)
        }
    }
}

/// The step's handover events as event-webhook notices (see [`notices::handover`]); an
/// endpoint's `handover.webhook_url` is one of its subscriptions ([`ensure_handover_hook`]).
fn handover_notices(shared: &Shared, key: &SessionKey, outcome: &StepOutcome) -> Vec<Notice> {
    let until_ms = outcome
        .record
        .as_ref()
        .and_then(|r| r.handover.as_ref())
        .map_or(0, |h| h.until_ms);
    outcome
        .notices
        .iter()
        .filter_map(|event: &HandoverEvent| {
            let until = if event.kind == HandoverKind::Started {
                until_ms
            } else {
                0
            };
            notices::handover(&shared.subscribed, &key.user, event, until)
        })
        .collect()
}

/// Commits a step and hands its outbox rows to the sender.
async fn commit(shared: &Arc<Shared>, step: StepCommit) -> Result<Vec<i64>, Retry> {
    let outbox = step.outbox.clone();
    let (endpoint, conversation) = (step.endpoint.clone(), step.conversation.clone());
    let known_inbound_ms = step.inbound_ms;
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
                known_inbound_ms,
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
