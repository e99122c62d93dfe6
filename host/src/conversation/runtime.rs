//! [`Conversations`]: the entry points of the conversation runtime.
//!
//! Every entry point takes the conversation's lane (see `conversation::lanes`), loads the
//! record, does its work, and saves the record before returning, also on errors after the
//! load, so flow progress is never lost to a failed delivery or hook. What must stay true:
//! - one conversation's inputs are handled one at a time, in arrival order;
//! - while a handover is active or the AI is off, the flow never runs;
//! - outputs reach the user in the order the flow produced them, at least
//!   `message_delay` apart;
//! - at most [`MAX_HTTP_ROUNDS`] http calls per input, so a misbehaving flow or service
//!   cannot hold a conversation forever.
//!
//! Handover rules: a keyword or a flow `handover` node sends the configured confirmation
//! (for a node, only if the node sent no messages of its own, which then are the
//! confirmation); [`Conversations::take_over`] sends none, because the agent taking over
//! speaks next and a proactive bot message could fall outside the channel's reply window.
//! Keyword handover still works with the AI off: a user asking for a person gets one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::handover::{HandoverEvent, HandoverKind, keyword_in};
use super::lanes::{Lane, Lanes, deliver_paced};
use super::store::{HandoverStatus, MemorySessions, SessionRecord, SessionStore};
use super::{
    Clock, ConversationConfig, ConversationError, HandoverSink, HttpExecutor, Outbound, SessionKey,
};
use crate::flow::engine::{Position, Speaker, Turn};
use crate::flow::{Effect, Flow, FlowInput, MessageInput, SessionState, step};
use crate::plugins::types::{BotOutput, Business, InboundMessage, MessageContent, User};
use crate::plugins::{HistoryTurn, SessionView};
use crate::transform::{InputOutcome, TransformError, Transformers};

/// Http round trips one input may cause.
pub const MAX_HTTP_ROUNDS: usize = 10;

/// Why an input did not run the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skipped {
    /// An input transformer dropped it.
    Dropped { hook: String, reason: String },
    /// A human has the conversation (the input went to the handover sink).
    HandedOver,
    /// The AI is off for this conversation.
    AiOff,
}

/// What one input did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub key: SessionKey,
    /// Outputs handed to [`Outbound`], in order (typing indicators not included).
    pub delivered: Vec<BotOutput>,
    /// Flow run-time errors, http round limit, failed deliveries.
    pub errors: Vec<String>,
    pub skipped: Option<Skipped>,
    /// The session had expired: `on_expire` ran and the flow started afresh.
    pub expired: bool,
    pub handover_started: bool,
    /// A handover ended before this input (the mute ran out).
    pub handover_ended: bool,
}

impl StepReport {
    fn new(key: &SessionKey) -> Self {
        StepReport {
            key: key.clone(),
            delivered: Vec::new(),
            errors: Vec::new(),
            skipped: None,
            expired: false,
            handover_started: false,
            handover_ended: false,
        }
    }
}

/// A conversation as the admin side sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub key: SessionKey,
    pub state: SessionState,
    /// Active handover (muted until `until_ms`).
    pub handover: Option<HandoverStatus>,
    pub ai_enabled: bool,
    pub history: Vec<Turn>,
    pub last_input_ms: Option<u64>,
}

/// Outputs and events gathered while the flow runs for one input.
#[derive(Default)]
struct FlowRun {
    outputs: Vec<BotOutput>,
    handover: Option<Option<String>>,
    errors: Vec<String>,
}

/// The conversations of one endpoint.
pub struct Conversations<O: Outbound, H: HttpExecutor, S: HandoverSink> {
    config: ConversationConfig,
    flow: Arc<Flow>,
    transformers: Transformers,
    outbound: O,
    http: H,
    handover: S,
    clock: Arc<dyn Clock>,
    store: Arc<dyn SessionStore>,
    lanes: Lanes,
}

impl<O: Outbound, H: HttpExecutor, S: HandoverSink> Conversations<O, H, S> {
    /// Sessions kept in memory; see [`Conversations::with_store`].
    pub fn new(
        config: ConversationConfig,
        flow: Arc<Flow>,
        transformers: Transformers,
        outbound: O,
        http: H,
        handover: S,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Conversations {
            config,
            flow,
            transformers,
            outbound,
            http,
            handover,
            clock,
            store: Arc::new(MemorySessions::new()),
            lanes: Lanes::default(),
        }
    }

    /// Keeps sessions in `store` instead of memory.
    pub fn with_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = store;
        self
    }

    pub fn config(&self) -> &ConversationConfig {
        &self.config
    }

    pub fn outbound(&self) -> &O {
        &self.outbound
    }

    /// One inbound user message.
    pub async fn handle(
        &self,
        message: InboundMessage,
        business: Business,
    ) -> Result<StepReport, ConversationError> {
        let key = SessionKey::for_user(&self.config.endpoint, &message.user)?;
        let lane = self.lanes.get(&key, self.config.message_delay);
        let mut lane = lane.lock().await;
        let mut record = self.load(&key)?;
        let result = self
            .handle_locked(&key, &mut lane, &mut record, message, business)
            .await;
        self.store.put(&key, &record)?;
        result
    }

    async fn handle_locked(
        &self,
        key: &SessionKey,
        lane: &mut Lane,
        record: &mut SessionRecord,
        message: InboundMessage,
        business: Business,
    ) -> Result<StepReport, ConversationError> {
        let now = self.clock.now_ms();
        let mut report = StepReport::new(key);
        self.end_mute_if_over(key, record, now, &mut report).await;
        let expired = self.is_expired(record, now);
        record.last_input_ms = Some(now);
        record.last_inbound_id = Some(message.id.clone());
        if record.state.user.is_none() {
            record.state.user = Some(message.user.clone());
        }

        let outcome = self.transform_input(key, record, message).await?;
        for (k, v) in outcome.set_data {
            // Hooks hand data over as JSON text; keep non-JSON text as a string.
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            record.state.context.insert(k, value);
        }
        let Some(message) = outcome.message else {
            let dropped = outcome
                .dropped
                .unwrap_or_else(|| crate::transform::Dropped {
                    hook: String::new(),
                    reason: String::new(),
                });
            report.skipped = Some(Skipped::Dropped {
                hook: dropped.hook,
                reason: dropped.reason,
            });
            return Ok(report);
        };
        let text = content_text(&message.content);

        if record.handover.is_some() {
            remember(record, Speaker::User, text.clone(), now);
            let event = self.event(HandoverKind::Message, key, record, None, Some(text), now);
            self.handover.post(event).await;
            report.skipped = Some(Skipped::HandedOver);
            return Ok(report);
        }
        if let Some(keyword) = keyword_in(&text, &self.config.handover.keywords) {
            let reason = Some(format!("keyword: {keyword}"));
            remember(record, Speaker::User, text, now);
            self.start_handover(key, lane, record, reason, true, &mut report)
                .await;
            return Ok(report);
        }
        if !record.ai_enabled {
            remember(record, Speaker::User, text, now);
            report.skipped = Some(Skipped::AiOff);
            return Ok(report);
        }

        let typing_for = Some(message.id.clone());
        let mut run = FlowRun::default();
        if expired {
            self.expire(record, &mut run, now).await;
            report.expired = true;
        }
        let input = FlowInput::Message(Box::new(MessageInput {
            message,
            business: Some(business),
        }));
        self.drive(record, input, &mut run).await;
        self.finish(key, lane, record, run, typing_for.as_deref(), &mut report)
            .await?;
        Ok(report)
    }

    /// Text and/or data into the flow as if the user had sent it (no input transformer).
    pub async fn inject(
        &self,
        key: &SessionKey,
        text: Option<String>,
        data: Value,
    ) -> Result<StepReport, ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let mut lane = lane.lock().await;
        let mut record = self.load(key)?;
        let result = self
            .inject_locked(key, &mut lane, &mut record, text, data)
            .await;
        self.store.put(key, &record)?;
        result
    }

    async fn inject_locked(
        &self,
        key: &SessionKey,
        lane: &mut Lane,
        record: &mut SessionRecord,
        text: Option<String>,
        data: Value,
    ) -> Result<StepReport, ConversationError> {
        let now = self.clock.now_ms();
        let mut report = StepReport::new(key);
        self.end_mute_if_over(key, record, now, &mut report).await;
        if record.handover.is_some() {
            report.skipped = Some(Skipped::HandedOver);
            return Ok(report);
        }
        if !record.ai_enabled {
            report.skipped = Some(Skipped::AiOff);
            return Ok(report);
        }
        let expired = self.is_expired(record, now);
        record.last_input_ms = Some(now);
        let mut run = FlowRun::default();
        if expired {
            self.expire(record, &mut run, now).await;
            report.expired = true;
        }
        self.drive(record, FlowInput::Inject { text, data }, &mut run)
            .await;
        self.finish(key, lane, record, run, None, &mut report)
            .await?;
        Ok(report)
    }

    /// An output straight to the user, without the flow (message delay still applies).
    pub async fn notify(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> Result<(), ConversationError> {
        self.send_direct(key, output).await
    }

    /// A human agent's output to the user; recorded in the history.
    pub async fn agent_send(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> Result<(), ConversationError> {
        self.send_direct(key, output).await
    }

    async fn send_direct(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> Result<(), ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let mut lane = lane.lock().await;
        let mut record = self.load(key)?;
        let text = output_text(&output);
        let delivered = deliver_paced(
            &self.outbound,
            &mut lane,
            key,
            vec![output],
            self.config.message_delay,
            None,
        )
        .await;
        if delivered.is_ok() {
            remember(&mut record, Speaker::Bot, text, self.clock.now_ms());
            self.store.put(key, &record)?;
        }
        delivered
            .map(drop)
            .map_err(|(_, reason)| ConversationError::Delivery {
                key: key.to_string(),
                reason,
            })
    }

    /// Hands the conversation to a human from outside (no confirmation to the user).
    /// Already handed over: the mute is extended, no second `started` event.
    pub async fn take_over(
        &self,
        key: &SessionKey,
        reason: Option<String>,
    ) -> Result<(), ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let mut lane = lane.lock().await;
        let mut record = self.load(key)?;
        let mut report = StepReport::new(key);
        self.start_handover(key, &mut lane, &mut record, reason, false, &mut report)
            .await;
        self.store.put(key, &record)?;
        Ok(())
    }

    /// Ends a handover: the bot answers the next input again.
    pub async fn release(&self, key: &SessionKey) -> Result<(), ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let _lane = lane.lock().await;
        let mut record = self.load(key)?;
        if record.handover.is_none() {
            return Err(ConversationError::NotHandedOver(key.to_string()));
        }
        let now = self.clock.now_ms();
        self.end_handover(key, &mut record, "released", now).await;
        self.store.put(key, &record)?;
        Ok(())
    }

    /// Turns the flow on or off for one conversation (no handover involved).
    pub async fn set_ai(&self, key: &SessionKey, enabled: bool) -> Result<(), ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let _lane = lane.lock().await;
        let mut record = self.load(key)?;
        record.ai_enabled = enabled;
        self.store.put(key, &record)?;
        Ok(())
    }

    /// Records something the host learned about the conversation (a send that failed for
    /// good, say) under `context[name]`, without running the flow: the flow sees it on its
    /// next step as `{{name.…}}`. Also one line of history, so transcripts show it.
    pub async fn record_event(
        &self,
        key: &SessionKey,
        name: &str,
        data: Value,
        note: String,
    ) -> Result<(), ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let _lane = lane.lock().await;
        let mut record = self.load(key)?;
        record.state.context.insert(name.to_string(), data);
        remember(&mut record, Speaker::Bot, note, self.clock.now_ms());
        self.store.put(key, &record)?;
        Ok(())
    }

    /// Sets `context[name]` without running the flow or writing history (the campaign a
    /// user replies to, say); true when it changed.
    pub async fn set_context(
        &self,
        key: &SessionKey,
        name: &str,
        data: Value,
    ) -> Result<bool, ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let _lane = lane.lock().await;
        let mut record = self.load(key)?;
        if record.state.context.get(name) == Some(&data) {
            return Ok(false);
        }
        record.state.context.insert(name.to_string(), data);
        self.store.put(key, &record)?;
        Ok(true)
    }

    /// Ends the conversation's handover if its mute has run out (a timer calls this, so the
    /// `ended` event goes out on time rather than at the user's next message). Returns
    /// whether a handover ended.
    pub async fn expire_handover(&self, key: &SessionKey) -> Result<bool, ConversationError> {
        let lane = self.lanes.get(key, self.config.message_delay);
        let _lane = lane.lock().await;
        let mut record = self.load(key)?;
        let mut report = StepReport::new(key);
        let now = self.clock.now_ms();
        self.end_mute_if_over(key, &mut record, now, &mut report)
            .await;
        if report.handover_ended {
            self.store.put(key, &record)?;
        }
        Ok(report.handover_ended)
    }

    /// The stored state of a conversation (as of its last completed call).
    pub async fn session(&self, key: &SessionKey) -> Option<SessionSnapshot> {
        let record = match self.store.get(key) {
            Ok(record) => record?,
            Err(e) => {
                tracing::warn!(conversation = %key.masked(), "session store: {e}");
                return None;
            }
        };
        Some(SessionSnapshot {
            key: key.clone(),
            history: record.state.history.clone(),
            state: record.state,
            handover: record.handover,
            ai_enabled: record.ai_enabled,
            last_input_ms: record.last_input_ms,
        })
    }

    // ---------------------------------------------------------------- internals

    fn load(&self, key: &SessionKey) -> Result<SessionRecord, ConversationError> {
        Ok(self.store.get(key)?.unwrap_or_else(|| {
            let mut state = SessionState::new(&self.flow);
            state.history_limit = self.config.history_turns;
            SessionRecord::new(state)
        }))
    }

    fn is_expired(&self, record: &SessionRecord, now: u64) -> bool {
        let expiry = self.config.session_expiry;
        !expiry.is_zero()
            && record
                .last_input_ms
                .is_some_and(|last| u128::from(now.saturating_sub(last)) > expiry.as_millis())
    }

    /// Runs `on_expire` and leaves the flow at its start for the input that follows.
    async fn expire(&self, record: &mut SessionRecord, run: &mut FlowRun, now: u64) {
        tracing::debug!(now, "session expired");
        self.drive(record, FlowInput::Expired, run).await;
        record.state.position = Position::Idle;
    }

    async fn end_mute_if_over(
        &self,
        key: &SessionKey,
        record: &mut SessionRecord,
        now: u64,
        report: &mut StepReport,
    ) {
        if record.handover.as_ref().is_some_and(|h| now >= h.until_ms) {
            self.end_handover(key, record, "expired", now).await;
            report.handover_ended = true;
        }
    }

    /// Steps the flow with `input`, executing http effects and feeding their results back.
    async fn drive(&self, record: &mut SessionRecord, input: FlowInput, run: &mut FlowRun) {
        let mut input = input;
        let mut rounds = 0;
        loop {
            let now = self.clock.now_ms();
            let (state, effects) = step(&self.flow, &record.state, &input, now);
            record.state = state;
            let mut call = None;
            for effect in effects {
                match effect {
                    Effect::Send(output) => run.outputs.push(output),
                    Effect::Http(c) => call = Some(c),
                    Effect::Handover { reason } => run.handover = Some(reason),
                    Effect::End => {}
                    Effect::Error { reason } => {
                        tracing::warn!(flow = self.flow.name(), %reason, "flow error");
                        run.errors.push(reason);
                    }
                }
            }
            let Some(call) = call else { return };
            if rounds == MAX_HTTP_ROUNDS {
                let reason = format!("more than {MAX_HTTP_ROUNDS} http calls for one input");
                tracing::warn!(flow = self.flow.name(), "{reason}");
                run.errors.push(reason);
                // Waiting for a result that never comes would silence the bot for good.
                record.state.position = Position::Idle;
                return;
            }
            rounds += 1;
            let request_id = call.request_id.clone();
            let outcome = self.http.call(call).await;
            input = FlowInput::HttpResult {
                request_id,
                outcome,
            };
        }
    }

    /// Output transformers, delivery, then a handover the flow asked for.
    async fn finish(
        &self,
        key: &SessionKey,
        lane: &mut Lane,
        record: &mut SessionRecord,
        run: FlowRun,
        typing_for: Option<&str>,
        report: &mut StepReport,
    ) -> Result<(), ConversationError> {
        report.errors.extend(run.errors);
        let node_spoke = !run.outputs.is_empty();
        let outputs = self.transform_outputs(key, record, run.outputs).await?;
        self.deliver(key, lane, outputs, typing_for, report).await;
        if let Some(reason) = run.handover {
            self.start_handover(key, lane, record, reason, !node_spoke, report)
                .await;
        }
        Ok(())
    }

    async fn deliver(
        &self,
        key: &SessionKey,
        lane: &mut Lane,
        outputs: Vec<BotOutput>,
        typing_for: Option<&str>,
        report: &mut StepReport,
    ) {
        let delay = self.config.message_delay;
        let typing_for = typing_for.filter(|_| self.config.typing_indicator);
        match deliver_paced(&self.outbound, lane, key, outputs, delay, typing_for).await {
            Ok(delivered) => report.delivered.extend(delivered),
            Err((delivered, reason)) => {
                tracing::warn!(conversation = %key.masked(), %reason, "delivery failed");
                report.delivered.extend(delivered);
                report.errors.push(format!("delivery failed: {reason}"));
            }
        }
    }

    async fn start_handover(
        &self,
        key: &SessionKey,
        lane: &mut Lane,
        record: &mut SessionRecord,
        reason: Option<String>,
        confirm: bool,
        report: &mut StepReport,
    ) {
        let now = self.clock.now_ms();
        let mute_ms = u64::try_from(self.config.handover.mute_for.as_millis()).unwrap_or(u64::MAX);
        let until_ms = now.saturating_add(mute_ms);
        if let Some(active) = &mut record.handover {
            active.until_ms = until_ms;
            if reason.is_some() {
                active.reason = reason;
            }
            return;
        }
        if confirm && !self.config.handover.confirmation.is_empty() {
            let confirmation = BotOutput::Text(self.config.handover.confirmation.clone());
            remember(record, Speaker::Bot, output_text(&confirmation), now);
            self.deliver(key, lane, vec![confirmation], None, report)
                .await;
        }
        record.handover = Some(HandoverStatus {
            since_ms: now,
            until_ms,
            reason: reason.clone(),
        });
        report.handover_started = true;
        let event = self.event(HandoverKind::Started, key, record, reason, None, now);
        self.handover.post(event).await;
    }

    async fn end_handover(
        &self,
        key: &SessionKey,
        record: &mut SessionRecord,
        why: &str,
        now: u64,
    ) {
        record.handover = None;
        // A flow handover node leaves the engine waiting for a human; the bot resumes at
        // the start on the next input.
        if matches!(record.state.position, Position::Handover { .. }) {
            record.state.position = Position::Idle;
        }
        let event = self.event(
            HandoverKind::Ended,
            key,
            record,
            Some(why.into()),
            None,
            now,
        );
        self.handover.post(event).await;
    }

    fn event(
        &self,
        kind: HandoverKind,
        key: &SessionKey,
        record: &SessionRecord,
        reason: Option<String>,
        text: Option<String>,
        now: u64,
    ) -> HandoverEvent {
        HandoverEvent {
            kind,
            endpoint: key.endpoint.clone(),
            conversation: key.to_string(),
            user: key.user.clone(),
            reason,
            text,
            transcript: record.state.history.clone(),
            at_ms: now,
        }
    }

    /// What hooks see of the session.
    fn view(&self, key: &SessionKey, record: &SessionRecord) -> SessionView {
        let user = record.state.user.clone().unwrap_or(User {
            user_id: Some(key.user.clone()),
            phone: None,
            name: None,
            username: None,
        });
        SessionView {
            conversation_key: key.to_string(),
            user,
            data: record
                .state
                .context
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            history: record
                .state
                .history
                .iter()
                .map(|t| HistoryTurn {
                    speaker: match t.from {
                        Speaker::User => crate::plugins::Speaker::User,
                        Speaker::Bot => crate::plugins::Speaker::Bot,
                    },
                    text: t.text.clone(),
                })
                .collect(),
        }
    }

    async fn transform_input(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        message: InboundMessage,
    ) -> Result<InputOutcome, ConversationError> {
        if self.transformers.is_empty() {
            return Ok(InputOutcome {
                message: Some(message),
                dropped: None,
                set_data: Vec::new(),
            });
        }
        let view = self.view(key, record);
        let hooks = self.transformers.clone();
        // Hook calls are synchronous wasm (bounded by their deadline): off the async thread.
        blocking(move || hooks.apply_input(message, &view).map_err(Box::new)).await
    }

    async fn transform_outputs(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        outputs: Vec<BotOutput>,
    ) -> Result<Vec<BotOutput>, ConversationError> {
        if self.transformers.is_empty() || outputs.is_empty() {
            return Ok(outputs);
        }
        let view = self.view(key, record);
        let hooks = self.transformers.clone();
        blocking(move || hooks.apply_outputs(outputs, &view).map_err(Box::new)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Box<TransformError>> + Send + 'static,
) -> Result<T, ConversationError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConversationError::Internal(format!("transformer task: {e}")))?
        .map_err(ConversationError::Transform)
}

/// Appends a turn, keeping the session's history limit.
fn remember(record: &mut SessionRecord, from: Speaker, text: String, now: u64) {
    record.state.remember(from, text, now);
}

/// A message as one line of history (and the text keywords are looked for in).
fn content_text(content: &MessageContent) -> String {
    match content {
        MessageContent::Text(t) => t.clone(),
        MessageContent::Media(m) => m.caption.clone().unwrap_or_else(|| "[media]".into()),
        MessageContent::Choice(c) => c.title.clone(),
        MessageContent::Location(l) => format!("[location {},{}]", l.latitude, l.longitude),
        MessageContent::Reaction(r) => r.emoji.clone().unwrap_or_default(),
        MessageContent::FormReply(f) => f.body.clone().unwrap_or_else(|| "[form]".into()),
        MessageContent::Order(o) => o.text.clone().unwrap_or_else(|| "[order]".into()),
        MessageContent::Contacts(_) => "[contacts]".into(),
        _ => String::new(),
    }
}

/// An output as one line of history.
pub(crate) fn output_text(output: &BotOutput) -> String {
    match output {
        BotOutput::Text(t) => t.clone(),
        BotOutput::Choices(c) => c.text.clone(),
        BotOutput::List(l) => l.body.clone(),
        BotOutput::Card(c) => c.body.clone(),
        BotOutput::Media(m) => m.caption.clone().unwrap_or_else(|| "[media]".into()),
        BotOutput::LocationRequest(prompt) => prompt.clone(),
        _ => String::new(),
    }
}
