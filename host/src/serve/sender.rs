//! The outbound sender: outbox rows to Graph API requests, in order, within Meta's limits.
//!
//! One task ([`sender_loop`]) owns the schedule; sends run as tasks that report back.
//! Per conversation: rows go out strictly in outbox order, one at a time, each after the
//! channel acknowledged the previous one (Meta gives no ordering guarantee otherwise), and
//! at least `message_delay_ms` apart (a plain read receipt does not start the gap; a typing
//! indicator does, so it shows for the delay). Per endpoint number: a throughput limit
//! (`throughput_per_second`, Meta's default 80/s) and, per recipient, the pair rate limit
//! (`pair_burst` per `pair_interval_ms`). Both are governor rate limiters; a row that would
//! exceed one waits, it is never dropped.
//!
//! A send ([`send_row`]): 24-hour window pre-flight for free-form rows → adapter `render` →
//! every request spec checked against the Graph routes adapters may use
//! ([`super::graph_paths`]; a refused one makes the row a dead letter, nothing is sent) →
//! each request spec not yet accepted (a retry resumes after the parts already sent) → HTTP
//! with the endpoint's bearer token, added here and never seen by the plugin → adapter
//! `classify` → recorded in the store. Retries follow the configured schedule (data, with
//! jitter; the channel's Retry-After or 4^n advice is clamped and wins when longer);
//! 130429 and 80007 pause the whole number. Window closed (before sending, or 131047 from
//! Meta) uses the endpoint's `window_template` or ends as a dead letter; any other final
//! failure is a dead letter plus a `send_failed` event for the conversation. A send that
//! panics is a failed attempt like any other, so it ends as a dead letter too.
//!
//! Delivery to Meta is at-least-once: a crash between Meta's answer and the store's commit
//! sends that one request again after the restart (Meta has no idempotency key).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::conversation::SessionKey;
use crate::plugins::types::{
    BotOutput, Business, ChannelError, HttpMethod, HttpResponse, RenderContext, SendOutcome,
    SendResult, TemplateOutput, TemplateParameter, TemplateValue, User,
};
use crate::store::{DeadSend, EventKind, NewEvent, NewOutbox, OutboxRow, OutboxState, StepCommit};

use super::{Shared, notices};
use crate::clock::now_ms;
use crate::endpoints::endpoint::{Activity, Endpoint};

/// Kept for code not yet moved to the rules' module.
pub use crate::whatsapp::WINDOW_MS;
use crate::whatsapp::{STOPPED_MARKETING_CODE, STOPPED_MARKETING_REASON, window_open};
/// Wait before retrying when the store could not record an outcome.
const STORE_RETRY_MS: u64 = 1_000;

/// Rows the sender holds in memory (queued, waiting for a retry or in flight) above which
/// a worker waits before stepping a user's message ([`SenderHandle::wait_for_room`]).
/// When Graph is slower than the steps (or down), the backlog then waits durably in the
/// store and the bounded queues before it, and the edge's 503 tells Meta to come back,
/// instead of rows piling up in memory.
pub const SENDER_BACKLOG: usize = 4_096;

/// Hands outbox rows to the sender.
#[derive(Clone)]
pub struct SenderHandle {
    tx: mpsc::UnboundedSender<Msg>,
    backlog: Arc<Backlog>,
}

/// The count of rows in the schedule, and a wake-up when it drops.
#[derive(Default)]
struct Backlog {
    rows: AtomicUsize,
    room: Notify,
}

impl Backlog {
    fn add(&self, n: usize) {
        self.rows.fetch_add(n, Ordering::SeqCst);
    }

    fn remove(&self, n: usize) {
        let before = self
            .rows
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                Some(r.saturating_sub(n))
            })
            .unwrap_or(0);
        if before.saturating_sub(n) < SENDER_BACKLOG {
            self.room.notify_waiters();
        }
    }
}

impl SenderHandle {
    pub fn new() -> (SenderHandle, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        (SenderHandle { tx, backlog }, rx)
    }

    /// Rows just committed, in outbox order.
    pub fn enqueue(&self, rows: Vec<OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        self.backlog.add(rows.len());
        // The loop only ends at shutdown; rows not taken then are pending in the store.
        let _ = self.tx.send(Msg::Enqueue(rows));
    }

    /// Waits while the schedule holds [`SENDER_BACKLOG`] rows or more, or until `stop`.
    pub async fn wait_for_room(&self, stop: &CancellationToken) {
        loop {
            let room = self.backlog.room.notified();
            if self.backlog.rows.load(Ordering::SeqCst) < SENDER_BACKLOG {
                return;
            }
            tokio::select! {
                _ = room => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

pub enum Msg {
    Enqueue(Vec<OutboxRow>),
    Done { key: SessionKey, done: Done },
}

/// How a send ended, for the schedule.
pub enum Done {
    /// Every part accepted.
    Sent,
    /// Try again at `at_ms`, resuming after `parts_sent` parts.
    Retry {
        at_ms: u64,
        parts_sent: u32,
        attempts: u32,
        /// Pause the whole number until then (130429, 80007).
        pause_number: bool,
    },
    /// The output was replaced (window-closed template fallback): send it next.
    Replaced { output: String },
    /// Given up: dead letter recorded.
    Dead,
    /// The store could not record the outcome: the row is tried again at `at_ms`.
    Later { at_ms: u64 },
}

/// An outbox row with its output parsed once.
#[derive(Clone)]
struct Queued {
    row: OutboxRow,
    output: Result<BotOutput, String>,
}

impl Queued {
    fn new(row: OutboxRow) -> Queued {
        let output = serde_json::from_str(&row.output).map_err(|e| e.to_string());
        Queued { row, output }
    }

    /// A read receipt without typing indicator: no pacing, no pair limit.
    fn plain_receipt(&self) -> bool {
        matches!(&self.output, Ok(BotOutput::MarkRead(m)) if !m.typing)
    }

    fn receipt(&self) -> bool {
        matches!(&self.output, Ok(BotOutput::MarkRead(_)))
    }
}

#[derive(Default)]
struct Conv {
    rows: VecDeque<Queued>,
    in_flight: bool,
    /// In the ready queue or the delayed heap.
    scheduled: bool,
}

/// An endpoint's limiters.
struct Limits {
    number: DefaultDirectRateLimiter,
    pairs: DefaultKeyedRateLimiter<String>,
    paused_until_ms: u64,
    /// The endpoint settings these limiters were built from: an endpoint changed through
    /// the admin API gets new ones (the number's pause is kept).
    settings: (u32, u32, u64),
}

impl Limits {
    fn settings(endpoint: &Endpoint) -> (u32, u32, u64) {
        let c = &endpoint.config;
        (c.throughput_per_second, c.pair_burst, c.pair_interval_ms)
    }

    fn new(endpoint: &Endpoint) -> Limits {
        let per_second =
            NonZeroU32::new(endpoint.config.throughput_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(endpoint.config.pair_burst).unwrap_or(NonZeroU32::MIN);
        let interval = Duration::from_millis(endpoint.config.pair_interval_ms.max(1));
        let pair_quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Limits {
            number: RateLimiter::direct(Quota::per_second(per_second)),
            pairs: RateLimiter::keyed(pair_quota),
            paused_until_ms: 0,
            settings: Limits::settings(endpoint),
        }
    }
}

struct Schedule {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    backlog: Arc<Backlog>,
    convs: HashMap<SessionKey, Conv>,
    ready: VecDeque<SessionKey>,
    delayed: BinaryHeap<Reverse<(u64, SessionKey)>>,
    limits: HashMap<String, Limits>,
    permits: Arc<Semaphore>,
    in_flight: usize,
    /// When each conversation last got a paced message. Kept after its queue empties: the
    /// message delay holds across steps (a quick second question gets its answer no sooner
    /// than the delay after the first answer).
    last_sent: HashMap<SessionKey, u64>,
}

/// Runs the schedule until shutdown, then waits for sends in flight.
pub async fn sender_loop(
    shared: Arc<Shared>,
    handle: SenderHandle,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    resumed: Vec<OutboxRow>,
) {
    let mut schedule = Schedule {
        permits: Arc::new(Semaphore::new(shared.sender_workers.max(1))),
        shared: shared.clone(),
        tx: handle.tx.clone(),
        backlog: handle.backlog.clone(),
        convs: HashMap::new(),
        ready: VecDeque::new(),
        delayed: BinaryHeap::new(),
        limits: HashMap::new(),
        in_flight: 0,
        last_sent: HashMap::new(),
    };
    drop(handle);
    schedule.backlog.add(resumed.len());
    schedule.add(resumed);
    let mut stopping = shared.stop_signal();
    let mut prune_pairs = tokio::time::interval(Duration::from_secs(60));
    loop {
        if !shared.is_stopping() {
            schedule.start_ready();
        } else if schedule.in_flight == 0 {
            return;
        }
        let next_due = schedule.delayed.peek().map(|Reverse((due, _))| *due);
        let sleep = next_due.map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Enqueue(rows)) => schedule.add(rows),
                Some(Msg::Done { key, done }) => schedule.done(key, done),
                None => return,
            },
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {
                schedule.promote_due();
            }
            _ = prune_pairs.tick() => {
                let longest = shared
                    .endpoints
                    .all()
                    .iter()
                    .map(|e| e.config.message_delay_ms)
                    .max()
                    .unwrap_or(0);
                let cutoff = now_ms().saturating_sub(longest);
                schedule.last_sent.retain(|_, at| *at > cutoff);
                for limits in schedule.limits.values() {
                    limits.pairs.retain_recent();
                }
            }
            _ = stopping.changed() => {}
        }
    }
}

impl Schedule {
    fn add(&mut self, rows: Vec<OutboxRow>) {
        for row in rows {
            let key = SessionKey::new(row.endpoint.clone(), row.conversation.clone());
            let conv = self.convs.entry(key.clone()).or_default();
            conv.rows.push_back(Queued::new(row));
            if !conv.in_flight && !conv.scheduled {
                conv.scheduled = true;
                self.ready.push_back(key);
            }
        }
    }

    fn promote_due(&mut self) {
        let now = now_ms();
        while let Some(Reverse((due, _))) = self.delayed.peek() {
            if *due > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.delayed.pop() {
                self.ready.push_back(key);
            }
        }
    }

    fn start_ready(&mut self) {
        self.promote_due();
        while let Some(key) = self.ready.pop_front() {
            if !self.try_start(&key) {
                // No send slot: wait for a send to finish.
                self.ready.push_front(key);
                return;
            }
        }
    }

    /// Starts the conversation's next row, or files it for later. `false` = no send slot.
    fn try_start(&mut self, key: &SessionKey) -> bool {
        let Some(conv) = self.convs.get_mut(key) else {
            return true;
        };
        conv.scheduled = false;
        let Some(front) = conv.rows.front() else {
            self.convs.remove(key);
            return true;
        };
        if conv.in_flight {
            return true;
        }
        let now = now_ms();
        let endpoint = self.shared.endpoints.get(&key.endpoint);
        let delay_ms = endpoint.as_ref().map_or(0, |e| e.config.message_delay_ms);
        if let Some(endpoint) = &endpoint {
            let fresh = self
                .limits
                .get(&key.endpoint)
                .is_some_and(|l| l.settings == Limits::settings(endpoint));
            if !fresh {
                let mut limits = Limits::new(endpoint);
                if let Some(old) = self.limits.get(&key.endpoint) {
                    limits.paused_until_ms = old.paused_until_ms;
                }
                self.limits.insert(key.endpoint.clone(), limits);
            }
        }
        let mut due = front.row.next_attempt_ms;
        if !front.plain_receipt()
            && let Some(last) = self.last_sent.get(key).copied()
        {
            due = due.max(last.saturating_add(delay_ms));
        }
        if let Some(limits) = self.limits.get(&key.endpoint) {
            due = due.max(limits.paused_until_ms);
        }
        if due > now {
            conv.scheduled = true;
            self.delayed.push(Reverse((due, key.clone())));
            return true;
        }
        if let Some(limits) = self.limits.get(&key.endpoint) {
            // The limiter's own clock: a new `DefaultClock` calibrates itself (costly).
            let clock = limits.number.clock();
            // The number first: a refusal there must not spend the recipient's scarce pair
            // slot (1 per 6 s), while a pair refusal only costs a plentiful number slot.
            let wait = limits
                .number
                .check()
                .err()
                .map(|n| n.wait_time_from(clock.now()))
                .or_else(|| {
                    if front.receipt() {
                        return None;
                    }
                    limits
                        .pairs
                        .check_key(&recipient_key(&front.row))
                        .err()
                        .map(|n| n.wait_time_from(clock.now()))
                });
            if let Some(wait) = wait {
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                conv.scheduled = true;
                self.delayed
                    .push(Reverse((now.saturating_add(wait_ms), key.clone())));
                return true;
            }
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            conv.scheduled = true;
            return false;
        };
        conv.in_flight = true;
        self.in_flight += 1;
        let queued = front.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let done = match endpoint {
                Some(endpoint) => {
                    // A panic (in render, classify, the send or a bug of ours) is caught
                    // here and still reports back: the conversation must not stay "in flight"
                    // forever, nor shutdown wait for it. A panic counts as a failed attempt,
                    // so a row that panics every time ends as a dead letter when the retry
                    // schedule runs out instead of being tried forever.
                    let row = queued.row.clone();
                    let send = AssertUnwindSafe(send_row(&shared, &endpoint, &queued));
                    match send.catch_unwind().await {
                        Ok(done) => done,
                        Err(panic) => {
                            let detail = format!(
                                "the send panicked: {}",
                                super::stages::panic_message(panic.as_ref())
                            );
                            tracing::error!(conversation = %key.masked(), outbox = row.id, "{detail}");
                            retry(&shared, &row, row.parts_sent, None, detail, false).await
                        }
                    }
                }
                None => {
                    // Deleted or disconnected: the store closed its pending rows (dead
                    // letters); a row of an endpoint that failed to load stays pending
                    // there for the next start. Either way it leaves this schedule.
                    tracing::warn!(endpoint = %key.endpoint, outbox = queued.row.id, "outbox row for an endpoint that is not served; dropped from the schedule");
                    Done::Dead
                }
            };
            drop(permit);
            let _ = tx.send(Msg::Done { key, done });
        });
        true
    }

    fn done(&mut self, key: SessionKey, done: Done) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(conv) = self.convs.get_mut(&key) else {
            return;
        };
        conv.in_flight = false;
        let now = now_ms();
        match done {
            Done::Sent => {
                if let Some(sent) = conv.rows.pop_front() {
                    self.backlog.remove(1);
                    if !sent.plain_receipt() {
                        self.last_sent.insert(key.clone(), now);
                    }
                }
            }
            Done::Dead => {
                if conv.rows.pop_front().is_some() {
                    self.backlog.remove(1);
                }
            }
            Done::Retry {
                at_ms,
                parts_sent,
                attempts,
                pause_number,
            } => {
                if let Some(front) = conv.rows.front_mut() {
                    front.row.next_attempt_ms = at_ms;
                    front.row.parts_sent = parts_sent;
                    front.row.attempts = attempts;
                }
                if pause_number && let Some(limits) = self.limits.get_mut(&key.endpoint) {
                    limits.paused_until_ms = limits.paused_until_ms.max(at_ms);
                }
            }
            Done::Replaced { output } => {
                if let Some(front) = conv.rows.front_mut() {
                    front.row.output = output;
                    front.row.free_form = false;
                    front.row.parts_sent = 0;
                    front.row.next_attempt_ms = 0;
                    *front = Queued::new(front.row.clone());
                }
            }
            Done::Later { at_ms } => {
                if let Some(front) = conv.rows.front_mut() {
                    front.row.next_attempt_ms = at_ms;
                }
            }
        }
        if conv.rows.is_empty() {
            self.convs.remove(&key);
        } else if !conv.scheduled {
            conv.scheduled = true;
            self.ready.push_back(key);
        }
    }
}

/// The pair rate limit is per business number and user; the row's conversation is the user.
fn recipient_key(row: &OutboxRow) -> String {
    row.conversation.clone()
}

/// One row: window pre-flight, render, send each remaining part, classify, record.
async fn send_row(shared: &Arc<Shared>, endpoint: &Endpoint, queued: &Queued) -> Done {
    let row = &queued.row;
    let output = match &queued.output {
        Ok(output) => output,
        Err(e) => return dead(shared, row, "render_failed", format!("stored output: {e}")).await,
    };
    if row.free_form && window_closed(shared, row).await {
        return window_closed_now(shared, endpoint, row, "the 24-hour window is closed".into())
            .await;
    }
    // A template must be one the account has, approved, with exactly its parameters:
    // refused here rather than by Meta (132000/132001) after a round trip.
    if let BotOutput::Template(t) = output
        && let Err(e) = shared.business.catalogue.check(&endpoint.config, t)
    {
        return dead(shared, row, "template_invalid", e).await;
    }
    let context = match render_context(row) {
        Ok(context) => context,
        Err(e) => return dead(shared, row, "render_failed", e).await,
    };
    let Some(token) = endpoint.config.access_token.as_ref() else {
        return dead(
            shared,
            row,
            "auth_failed",
            format!("endpoint `{}` has no access_token", endpoint.config.id),
        )
        .await;
    };
    let started = std::time::Instant::now();
    let rendered = endpoint.adapter.render(output, &context);
    shared.observe_plugin(endpoint, "render", started);
    let specs = match rendered {
        Ok(Ok(specs)) => specs,
        Ok(Err(e)) => {
            return dead(
                shared,
                row,
                "render_failed",
                crate::plugins::adapter_error(&e),
            )
            .await;
        }
        Err(e) => {
            // A plugin failure may be fixed by an upgrade: retried on the schedule.
            return retry(shared, row, row.parts_sent, None, e.to_string(), false).await;
        }
    };
    // Every part is checked before the first goes out: a refused path sends nothing.
    let mut specs = specs;
    for spec in &mut specs {
        match super::graph_paths::check(spec.method, &spec.path, &endpoint.config.phone_number_id) {
            Ok(path) => spec.path = path,
            Err(reason) => return dead(shared, row, "graph_path_refused", reason).await,
        }
    }
    let total = specs.len();
    let skip = usize::try_from(row.parts_sent).unwrap_or(usize::MAX);
    for (index, spec) in specs.into_iter().enumerate().skip(skip) {
        let outcome = post(shared, endpoint, token.expose(), spec).await;
        let started = std::time::Instant::now();
        let classified = endpoint.adapter.classify(&outcome, row.attempts);
        shared.observe_plugin(endpoint, "classify", started);
        let part = u32::try_from(index).unwrap_or(u32::MAX);
        let result = match classified {
            Ok(result) => result,
            Err(e) => return retry(shared, row, part, None, e.to_string(), false).await,
        };
        match result {
            SendResult::Sent(message_id) => {
                Activity::set(&endpoint.activity.last_send_ms, now_ms());
                let last = index + 1 == total;
                let notice = last
                    .then(|| {
                        notices::message_sent(
                            &shared.subscribed,
                            row,
                            Some(output),
                            message_id.as_deref(),
                        )
                    })
                    .flatten();
                if let Err(e) = shared
                    .store
                    .outbox_part_sent(row.id, message_id, last, notice)
                    .await
                {
                    // Meta has it; the store does not know. Retried from this part, so
                    // this one part may go out twice.
                    tracing::error!(outbox = row.id, "cannot record a sent message: {e}");
                    return Done::Later {
                        at_ms: now_ms().saturating_add(STORE_RETRY_MS),
                    };
                }
            }
            SendResult::Retry(advice) => {
                let pause = crate::whatsapp::pauses_number(advice.error.code);
                return retry(
                    shared,
                    row,
                    part,
                    advice.after_ms,
                    endpoint.redact(&describe_error(&advice.error)),
                    pause,
                )
                .await;
            }
            SendResult::WindowClosed(e) => {
                return window_closed_now(
                    shared,
                    endpoint,
                    row,
                    endpoint.redact(&describe_error(&e)),
                )
                .await;
            }
            SendResult::AuthFailed(e) => {
                // The admin API's health shows it until a send succeeds again.
                Activity::set(&endpoint.activity.last_auth_failure_ms, now_ms());
                tracing::error!(endpoint = %endpoint.config.id, "the Graph API refused the access token: {}", endpoint.redact(&describe_error(&e)));
                return dead(
                    shared,
                    row,
                    "auth_failed",
                    endpoint.redact(&describe_error(&e)),
                )
                .await;
            }
            SendResult::Undeliverable(e) => {
                note_opt_out(shared, row, e.code).await;
                return dead(
                    shared,
                    row,
                    "undeliverable",
                    endpoint.redact(&describe_error(&e)),
                )
                .await;
            }
            SendResult::Permanent(e) => {
                note_opt_out(shared, row, e.code).await;
                return dead(
                    shared,
                    row,
                    "permanent",
                    endpoint.redact(&describe_error(&e)),
                )
                .await;
            }
        }
    }
    count(shared, &row.endpoint, "sent");
    Done::Sent
}

/// A send Meta refused with 131050: the user opted out of marketing messages, and no
/// campaign sends to them again.
async fn note_opt_out(shared: &Shared, row: &OutboxRow, code: i64) {
    if code != STOPPED_MARKETING_CODE || row.conversation.is_empty() {
        return;
    }
    if let Err(e) = shared
        .store
        .opt_out(&row.endpoint, &row.conversation, STOPPED_MARKETING_REASON)
        .await
    {
        tracing::warn!(outbox = row.id, "cannot record an opt-out: {e}");
    }
}

fn render_context(row: &OutboxRow) -> Result<RenderContext, String> {
    let recipient: User =
        serde_json::from_str(&row.recipient).map_err(|e| format!("stored recipient: {e}"))?;
    let business: Business =
        serde_json::from_str(&row.business).map_err(|e| format!("stored business: {e}"))?;
    Ok(RenderContext {
        business,
        recipient,
        reply_to: None,
    })
}

/// Is the conversation's customer-service window closed? An unreadable window counts as
/// open: Meta then answers 131047 itself, which is reconciled the same way.
async fn window_closed(shared: &Shared, row: &OutboxRow) -> bool {
    if row
        .known_inbound_ms
        .is_some_and(|last| window_open(Some(last), now_ms()))
    {
        return false;
    }
    match shared
        .store
        .last_inbound(&row.endpoint, &row.conversation)
        .await
    {
        Ok(last) => !window_open(last, now_ms()),
        Err(e) => {
            tracing::warn!("window check: {e}");
            false
        }
    }
}

/// One HTTP request to the Graph API; every failure becomes a [`SendOutcome`].
async fn post(
    shared: &Shared,
    endpoint: &Endpoint,
    token: &str,
    spec: crate::plugins::types::RequestSpec,
) -> SendOutcome {
    let url = format!(
        "{}/{}/{}",
        endpoint.config.graph_api_base.trim_end_matches('/'),
        endpoint.config.graph_api_version,
        // Checked by `graph_paths::check`: a plain relative path of an allowed route.
        spec.path
    );
    let method = match spec.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let response = shared
        .http
        .request(method, &url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(spec.body)
        .timeout(shared.request_timeout)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return SendOutcome::Timeout,
        // reqwest's message names the URL (no secret in it) and the cause.
        Err(e) => return SendOutcome::Network(e.without_url().to_string()),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    match response.text().await {
        Ok(body) => SendOutcome::Response(HttpResponse {
            status,
            headers,
            body,
        }),
        Err(e) if e.is_timeout() => SendOutcome::Timeout,
        Err(e) => SendOutcome::Network(e.without_url().to_string()),
    }
}

/// A failed attempt: next try from the schedule, or a dead letter when it is exhausted.
async fn retry(
    shared: &Arc<Shared>,
    row: &OutboxRow,
    parts_sent: u32,
    advised_ms: Option<u64>,
    error: String,
    pause_number: bool,
) -> Done {
    let attempts = row.attempts.saturating_add(1);
    let delay = shared.retry.delay(attempts, advised_ms, &mut rand::rng());
    let Some(delay) = delay else {
        let detail = format!("{attempts} attempts; last: {error}");
        return dead(shared, row, "retries_exhausted", detail).await;
    };
    count(shared, &row.endpoint, "retry");
    let at_ms = now_ms().saturating_add(delay);
    tracing::info!(outbox = row.id, attempt = attempts, delay_ms = delay, %error, "send will be retried");
    if let Err(e) = shared.store.outbox_retry(row.id, at_ms, error).await {
        tracing::warn!(outbox = row.id, "cannot record the retry: {e}");
    }
    Done::Retry {
        at_ms,
        parts_sent,
        attempts,
        pause_number,
    }
}

/// The window is closed for a row that has not gone out: the template, or a dead letter.
async fn window_closed_now(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    row: &OutboxRow,
    detail: String,
) -> Done {
    count(shared, &row.endpoint, "window_closed");
    match (row.free_form, window_template(endpoint)) {
        (true, Some(template)) => {
            let output = match serde_json::to_string(&template) {
                Ok(output) => output,
                Err(e) => return dead(shared, row, "window_closed", e.to_string()).await,
            };
            if let Err(e) = shared
                .store
                .outbox_replace(row.id, output.clone(), false)
                .await
            {
                tracing::warn!(outbox = row.id, "cannot record the template fallback: {e}");
                return Done::Later {
                    at_ms: now_ms().saturating_add(STORE_RETRY_MS),
                };
            }
            count(shared, &row.endpoint, "template_fallback");
            Done::Replaced { output }
        }
        _ => dead(shared, row, "window_closed", detail).await,
    }
}

/// A row that went out and later failed with 131047 (a status webhook): the template goes
/// out as a new row, or the row becomes a dead letter with a `send_failed` event. Either
/// way the row ends `Dead`, which makes a redelivered status a no-op. Returns `false` when
/// the store failed (the status is looked at again).
pub async fn window_closed_later(
    shared: &Arc<Shared>,
    endpoint: &Endpoint,
    outbox_id: i64,
    detail: String,
) -> bool {
    let row = match shared.store.outbox_row(outbox_id).await {
        Ok(Some(row)) if row.state != OutboxState::Dead => row,
        Ok(_) => return true,
        Err(e) => {
            tracing::warn!(outbox = outbox_id, "window reconciliation: {e}");
            return false;
        }
    };
    count(shared, &endpoint.config.id, "window_closed");
    let template = window_template(endpoint).filter(|_| row.free_form);
    let Some(template) = template else {
        return !matches!(
            dead(shared, &row, "window_closed", detail).await,
            Done::Later { .. }
        );
    };
    let Ok(output) = serde_json::to_string(&template) else {
        return true;
    };
    let step = StepCommit {
        endpoint: row.endpoint.clone(),
        conversation: row.conversation.clone(),
        outbox: vec![NewOutbox {
            recipient: row.recipient.clone(),
            business: row.business.clone(),
            output: output.clone(),
            free_form: false,
            not_before_ms: 0,
        }],
        ..StepCommit::default()
    };
    let ids = match shared.store.commit_step(step).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(
                outbox = outbox_id,
                "cannot queue the template fallback: {e}"
            );
            return false;
        }
    };
    count(shared, &row.endpoint, "template_fallback");
    shared.sender.enqueue(
        ids.into_iter()
            .map(|id| OutboxRow {
                id,
                output: output.clone(),
                free_form: false,
                state: OutboxState::Pending,
                attempts: 0,
                parts_sent: 0,
                next_attempt_ms: 0,
                last_error: None,
                created_ms: now_ms(),
                known_inbound_ms: None,
                ..row.clone()
            })
            .collect(),
    );
    // The free-form message itself was not delivered: kept as a dead letter that says what
    // replaced it (no `send_failed`: the conversation goes on through the template).
    let replaced = DeadSend {
        outbox_id,
        reason: "window_closed".into(),
        detail: format!("{detail}; replaced by the window template"),
        event: None,
        notice: None,
    };
    if let Err(e) = shared.store.outbox_dead(replaced).await {
        // The template is queued; a redelivered status could queue it again.
        tracing::warn!(outbox = outbox_id, "cannot close the replaced row: {e}");
    }
    true
}

fn window_template(endpoint: &Endpoint) -> Option<BotOutput> {
    let template = endpoint.config.window_template.as_ref()?;
    Some(BotOutput::Template(TemplateOutput {
        name: template.name.clone(),
        language: template.language.clone(),
        header: Vec::new(),
        body: template
            .body_params
            .iter()
            .map(|p| TemplateParameter {
                name: None,
                value: TemplateValue::Text(p.clone()),
            })
            .collect(),
        buttons: Vec::new(),
    }))
}

/// Gives up on a row: dead letter, and a `send_failed` event for its conversation (not for
/// read receipts, which the user never sees).
async fn dead(shared: &Arc<Shared>, row: &OutboxRow, reason: &str, detail: String) -> Done {
    count(shared, &row.endpoint, "dead");
    tracing::warn!(endpoint = %row.endpoint, outbox = row.id, %reason, %detail, "send given up; kept as a dead letter");
    let queued = Queued::new(row.clone());
    let receipt = queued.receipt();
    let notice = notices::message_failed(
        &shared.subscribed,
        row,
        queued.output.as_ref().ok(),
        reason,
        &detail,
    );
    let event = (!receipt && !row.conversation.is_empty()).then(|| NewEvent {
        endpoint: None,
        dedupe_key: format!("send-failed:{}", row.id),
        conversation: row.conversation.clone(),
        kind: EventKind::SendFailed,
        body: json!({
            "outbox_id": row.id,
            "reason": reason,
            "detail": detail,
        })
        .to_string(),
    });
    let dead = DeadSend {
        outbox_id: row.id,
        reason: reason.to_string(),
        detail,
        event,
        notice,
    };
    match shared.store.outbox_dead(dead).await {
        Ok(event) => {
            if let Some(event) = event {
                // Straight to the conversation's worker (not through `dispatch`, which
                // can lead back here through status reconciliation).
                let key = SessionKey::new(event.endpoint.clone(), event.conversation.clone());
                shared
                    .workers
                    .enqueue(shared, key, super::workers::Job::Event(event));
            }
            Done::Dead
        }
        Err(e) => {
            tracing::error!(outbox = row.id, "cannot record a dead letter: {e}");
            Done::Later {
                at_ms: now_ms().saturating_add(STORE_RETRY_MS),
            }
        }
    }
}

/// A channel error for logs and dead letters: code and details, never a title-based guess.
pub fn describe_error(e: &ChannelError) -> String {
    let mut text = format!("code {}", e.code);
    for part in [&e.title, &e.message, &e.details].into_iter().flatten() {
        text.push_str(": ");
        text.push_str(part);
    }
    text
}

fn count(shared: &Shared, endpoint: &str, outcome: &str) {
    shared
        .metrics
        .sends_total
        .with_label_values(&[endpoint, outcome])
        .inc();
}
