//! [`handle`]: one conversation step as a pure function of the stored record, the input
//! and the time.
//!
//! The caller loads the record (`None`: the conversation has no session yet), calls
//! [`handle`], and then does what the [`StepOutcome`] says: save the record, send the
//! outputs (each at least `gap_ms` after the conversation's previous output), announce the
//! notices. The step itself touches nothing outside: no store, no channel, no clock, no
//! sleeping. Its one effect is the flow's http executor (a flow's http node must be
//! called to go on), and hook plugins run on the blocking pool. So the same record, input
//! and time give the same outcome, and a step that is redone before its outcome was
//! committed produces nothing twice. What must stay true:
//! - while a handover is active or the AI is off, the flow never runs;
//! - outputs are listed in the order the flow produced them;
//! - at most [`MAX_HTTP_ROUNDS`] http calls per input, so a misbehaving flow or service
//!   cannot hold a conversation forever;
//! - a record is returned whenever the step changed it, also together with an error after
//!   the load (a failed hook), so flow progress is never lost.
//!
//! Handover rules: a keyword or a flow `handover` node sends the configured confirmation
//! (for a node, only if the node sent no messages of its own, which then are the
//! confirmation); [`StepInput::TakeOver`] sends none, because the agent taking over
//! speaks next and a proactive bot message could fall outside the channel's reply window.
//! Keyword handover still works with the AI off: a user asking for a person gets one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::handover::{HandoverEvent, HandoverKind, keyword_in};
use super::store::{HandoverStatus, SessionRecord};
use super::{ConversationConfig, ConversationError, HttpExecutor, SessionKey};
use crate::flow::engine::{Position, Speaker};
use crate::flow::{Effect, Flow, FlowInput, MessageInput, SessionState, step};
use crate::plugins::types::{BotOutput, Business, InboundMessage, MessageContent, User};
use crate::plugins::{HistoryTurn, SessionView};
use crate::transform::{InputOutcome, TransformError, Transformers};

/// Http round trips one input may cause.
pub const MAX_HTTP_ROUNDS: usize = 10;

/// What a step works with: the endpoint's settings, its flow and hooks, and the one
/// effect a step may have, the flow's http calls.
pub struct StepContext<'a, H: HttpExecutor> {
    pub config: &'a ConversationConfig,
    pub flow: &'a Flow,
    pub transformers: &'a Transformers,
    pub http: &'a H,
}

/// What happens to a conversation.
#[derive(Debug, Clone)]
pub enum StepInput {
    /// An inbound user message.
    Message {
        /// Boxed: the largest input by far, moved once per step.
        message: Box<InboundMessage>,
        business: Business,
    },
    /// Text and/or data into the flow as if the user had sent it (no input transformer).
    Inject { text: Option<String>, data: Value },
    /// An output straight to the user, without the flow.
    Notify(BotOutput),
    /// A human agent's output to the user; recorded in the history.
    AgentSend(BotOutput),
    /// Hands the conversation to a human from outside (no confirmation to the user).
    /// Already handed over: the mute is extended, no second `started` notice.
    TakeOver { reason: Option<String> },
    /// Ends a handover: the bot answers the next input again.
    Release,
    /// Turns the flow on or off for one conversation (no handover involved).
    SetAi(bool),
    /// Something the host learned about the conversation (a send that failed for good,
    /// say) under `context[name]`, without running the flow; also one line of history.
    RecordEvent {
        name: String,
        data: Value,
        note: String,
    },
    /// Sets `context[name]` without running the flow or writing history (the campaign a
    /// user replies to, say); saved only when it changed.
    SetContext { name: String, data: Value },
    /// Ends the handover if its mute has run out (a timer, so the `ended` notice goes out
    /// on time rather than at the user's next message); saved only when it ended.
    ExpireHandover,
}

/// Why an input did not run the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skipped {
    /// An input transformer dropped it.
    Dropped { hook: String, reason: String },
    /// A human has the conversation (the input went out as a handover notice).
    HandedOver,
    /// The AI is off for this conversation.
    AiOff,
}

/// What one input did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub key: SessionKey,
    /// Outputs for the user, in order (typing indicators not included). A driver that
    /// delivers them itself leaves here only those that went out.
    pub delivered: Vec<BotOutput>,
    /// Flow run-time errors, http round limit, failed deliveries.
    pub errors: Vec<String>,
    pub skipped: Option<Skipped>,
    /// The session had expired: `on_expire` ran and the flow started afresh.
    pub expired: bool,
    pub handover_started: bool,
    /// A handover ended before this input (the mute ran out) or by this input.
    pub handover_ended: bool,
}

impl StepReport {
    pub fn new(key: &SessionKey) -> Self {
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

/// One output and its pacing: not sooner than `gap_ms` after the conversation's previous
/// output (the endpoint's message delay; zero under `serve`, whose sender paces).
#[derive(Debug, Clone, PartialEq)]
pub struct Paced {
    pub output: BotOutput,
    pub gap_ms: u64,
}

/// What a step asks its caller to do.
#[derive(Debug)]
pub struct StepOutcome {
    /// The record to save; `None`: the stored one (or its absence) stays as it is.
    pub record: Option<SessionRecord>,
    /// No session was stored before and this step saves one: the conversation starts.
    pub started: bool,
    /// For the user, in order.
    pub outputs: Vec<Paced>,
    /// With the typing indicator on and flow outputs to send: the inbound message a
    /// typing indicator may be shown for while the outputs wait out their gaps.
    pub typing_for: Option<String>,
    /// Handover events, in the order they happened (`started` carries the transcript).
    pub notices: Vec<HandoverEvent>,
    pub report: StepReport,
    /// Why the step failed after the load; `record` still holds what it changed.
    pub error: Option<ConversationError>,
}

impl StepOutcome {
    fn new(key: &SessionKey) -> Self {
        StepOutcome {
            record: None,
            started: false,
            outputs: Vec::new(),
            typing_for: None,
            notices: Vec::new(),
            report: StepReport::new(key),
            error: None,
        }
    }

    /// The outputs without their pacing.
    pub fn bare_outputs(&self) -> Vec<BotOutput> {
        self.outputs.iter().map(|p| p.output.clone()).collect()
    }
}

/// Outputs and events gathered while the flow runs for one input.
#[derive(Default)]
struct FlowRun {
    outputs: Vec<BotOutput>,
    handover: Option<Option<String>>,
    errors: Vec<String>,
}

/// The record of a conversation that has none yet.
pub fn new_record(config: &ConversationConfig, flow: &Flow) -> SessionRecord {
    let mut state = SessionState::new(flow);
    state.history_limit = config.history_turns;
    SessionRecord::new(state)
}

/// One step of the conversation `key`: `stored` is its record as loaded (`None`: none
/// yet), `now_ms` the time the step runs at. See the module docs.
pub async fn handle<H: HttpExecutor>(
    ctx: &StepContext<'_, H>,
    key: &SessionKey,
    stored: Option<SessionRecord>,
    input: StepInput,
    now_ms: u64,
) -> StepOutcome {
    let fresh = stored.is_none();
    let mut record = stored.unwrap_or_else(|| new_record(ctx.config, ctx.flow));
    let mut step = Step {
        ctx,
        key,
        now: now_ms,
        out: StepOutcome::new(key),
    };
    let save = match step.run(&mut record, input).await {
        Ok(save) => save,
        Err(e) => {
            // Saved also on errors after the load, so flow progress is never lost; a
            // release of a conversation nobody has changed nothing.
            let save = !matches!(e, ConversationError::NotHandedOver(_));
            step.out.error = Some(e);
            save
        }
    };
    if save {
        step.out.record = Some(record);
        step.out.started = fresh;
    }
    step.out
}

/// One running step.
struct Step<'s, 'c, H: HttpExecutor> {
    ctx: &'s StepContext<'c, H>,
    key: &'s SessionKey,
    now: u64,
    out: StepOutcome,
}

impl<H: HttpExecutor> Step<'_, '_, H> {
    /// Does the input's work on `record`; true when the record is to be saved.
    async fn run(
        &mut self,
        record: &mut SessionRecord,
        input: StepInput,
    ) -> Result<bool, ConversationError> {
        match input {
            StepInput::Message { message, business } => {
                self.message(record, *message, business).await?
            }
            StepInput::Inject { text, data } => self.inject(record, text, data).await?,
            StepInput::Notify(output) | StepInput::AgentSend(output) => {
                remember(record, Speaker::Bot, output_text(&output), self.now);
                self.push(vec![output]);
            }
            StepInput::TakeOver { reason } => self.start_handover(record, reason, false),
            StepInput::Release => {
                if record.handover.is_none() {
                    return Err(ConversationError::NotHandedOver(self.key.to_string()));
                }
                self.end_handover(record, "released");
            }
            StepInput::SetAi(enabled) => record.ai_enabled = enabled,
            StepInput::RecordEvent { name, data, note } => {
                record.state.context.insert(name, data);
                remember(record, Speaker::Bot, note, self.now);
            }
            StepInput::SetContext { name, data } => {
                if record.state.context.get(&name) == Some(&data) {
                    return Ok(false);
                }
                record.state.context.insert(name, data);
            }
            StepInput::ExpireHandover => {
                self.end_mute_if_over(record);
                return Ok(self.out.report.handover_ended);
            }
        }
        Ok(true)
    }

    async fn message(
        &mut self,
        record: &mut SessionRecord,
        message: InboundMessage,
        business: Business,
    ) -> Result<(), ConversationError> {
        let now = self.now;
        self.end_mute_if_over(record);
        let expired = self.is_expired(record);
        record.last_input_ms = Some(now);
        record.last_inbound_id = Some(message.id.clone());
        if record.state.user.is_none() {
            record.state.user = Some(message.user.clone());
        }

        let outcome = self.transform_input(record, message).await?;
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
            self.out.report.skipped = Some(Skipped::Dropped {
                hook: dropped.hook,
                reason: dropped.reason,
            });
            return Ok(());
        };
        let text = content_text(&message.content);

        if record.handover.is_some() {
            remember(record, Speaker::User, text.clone(), now);
            self.notice(HandoverKind::Message, record, None, Some(text));
            self.out.report.skipped = Some(Skipped::HandedOver);
            return Ok(());
        }
        if let Some(keyword) = keyword_in(&text, &self.ctx.config.handover.keywords) {
            let reason = Some(format!("keyword: {keyword}"));
            remember(record, Speaker::User, text, now);
            self.start_handover(record, reason, true);
            return Ok(());
        }
        if !record.ai_enabled {
            remember(record, Speaker::User, text, now);
            self.out.report.skipped = Some(Skipped::AiOff);
            return Ok(());
        }

        let typing_for = message.id.clone();
        let mut run = FlowRun::default();
        if expired {
            self.expire(record, &mut run).await;
            self.out.report.expired = true;
        }
        let input = FlowInput::Message(Box::new(MessageInput {
            message,
            business: Some(business),
        }));
        self.drive(record, input, &mut run).await;
        if !run.outputs.is_empty() && self.ctx.config.typing_indicator {
            self.out.typing_for = Some(typing_for);
        }
        self.finish(record, run).await
    }

    async fn inject(
        &mut self,
        record: &mut SessionRecord,
        text: Option<String>,
        data: Value,
    ) -> Result<(), ConversationError> {
        self.end_mute_if_over(record);
        if record.handover.is_some() {
            self.out.report.skipped = Some(Skipped::HandedOver);
            return Ok(());
        }
        if !record.ai_enabled {
            self.out.report.skipped = Some(Skipped::AiOff);
            return Ok(());
        }
        let expired = self.is_expired(record);
        record.last_input_ms = Some(self.now);
        let mut run = FlowRun::default();
        if expired {
            self.expire(record, &mut run).await;
            self.out.report.expired = true;
        }
        self.drive(record, FlowInput::Inject { text, data }, &mut run)
            .await;
        self.finish(record, run).await
    }

    // ---------------------------------------------------------------- internals

    fn is_expired(&self, record: &SessionRecord) -> bool {
        let expiry = self.ctx.config.session_expiry;
        !expiry.is_zero()
            && record
                .last_input_ms
                .is_some_and(|last| u128::from(self.now.saturating_sub(last)) > expiry.as_millis())
    }

    /// Runs `on_expire` and leaves the flow at its start for the input that follows.
    async fn expire(&mut self, record: &mut SessionRecord, run: &mut FlowRun) {
        tracing::debug!(now = self.now, "session expired");
        self.drive(record, FlowInput::Expired, run).await;
        record.state.position = Position::Idle;
    }

    fn end_mute_if_over(&mut self, record: &mut SessionRecord) {
        if record
            .handover
            .as_ref()
            .is_some_and(|h| self.now >= h.until_ms)
        {
            self.end_handover(record, "expired");
        }
    }

    /// Steps the flow with `input`, executing http effects and feeding their results back.
    async fn drive(&self, record: &mut SessionRecord, input: FlowInput, run: &mut FlowRun) {
        let flow = self.ctx.flow;
        let mut input = input;
        let mut rounds = 0;
        loop {
            let (state, effects) = step(flow, &record.state, &input, self.now);
            record.state = state;
            let mut call = None;
            for effect in effects {
                match effect {
                    Effect::Send(output) => run.outputs.push(output),
                    Effect::Http(c) => call = Some(c),
                    Effect::Handover { reason } => run.handover = Some(reason),
                    Effect::End => {}
                    Effect::Error { reason } => {
                        tracing::warn!(flow = flow.name(), %reason, "flow error");
                        run.errors.push(reason);
                    }
                }
            }
            let Some(call) = call else { return };
            if rounds == MAX_HTTP_ROUNDS {
                let reason = format!("more than {MAX_HTTP_ROUNDS} http calls for one input");
                tracing::warn!(flow = flow.name(), "{reason}");
                run.errors.push(reason);
                // Waiting for a result that never comes would silence the bot for good.
                record.state.position = Position::Idle;
                return;
            }
            rounds += 1;
            let request_id = call.request_id.clone();
            let outcome = self.ctx.http.call(call).await;
            input = FlowInput::HttpResult {
                request_id,
                outcome,
            };
        }
    }

    /// Output transformers, the outputs, then a handover the flow asked for.
    async fn finish(
        &mut self,
        record: &mut SessionRecord,
        run: FlowRun,
    ) -> Result<(), ConversationError> {
        self.out.report.errors.extend(run.errors);
        let node_spoke = !run.outputs.is_empty();
        let outputs = self.transform_outputs(record, run.outputs).await?;
        self.push(outputs);
        if let Some(reason) = run.handover {
            self.start_handover(record, reason, !node_spoke);
        }
        Ok(())
    }

    fn push(&mut self, outputs: Vec<BotOutput>) {
        let gap_ms = u64::try_from(self.ctx.config.message_delay.as_millis()).unwrap_or(u64::MAX);
        for output in outputs {
            self.out.report.delivered.push(output.clone());
            self.out.outputs.push(Paced { output, gap_ms });
        }
    }

    fn start_handover(
        &mut self,
        record: &mut SessionRecord,
        reason: Option<String>,
        confirm: bool,
    ) {
        let now = self.now;
        let handover = &self.ctx.config.handover;
        let mute_ms = u64::try_from(handover.mute_for.as_millis()).unwrap_or(u64::MAX);
        let until_ms = now.saturating_add(mute_ms);
        if let Some(active) = &mut record.handover {
            active.until_ms = until_ms;
            if reason.is_some() {
                active.reason = reason;
            }
            return;
        }
        if confirm && !handover.confirmation.is_empty() {
            let confirmation = BotOutput::Text(handover.confirmation.clone());
            remember(record, Speaker::Bot, output_text(&confirmation), now);
            self.push(vec![confirmation]);
        }
        record.handover = Some(HandoverStatus {
            since_ms: now,
            until_ms,
            reason: reason.clone(),
        });
        self.out.report.handover_started = true;
        self.notice(HandoverKind::Started, record, reason, None);
    }

    fn end_handover(&mut self, record: &mut SessionRecord, why: &str) {
        record.handover = None;
        // A flow handover node leaves the engine waiting for a human; the bot resumes at
        // the start on the next input.
        if matches!(record.state.position, Position::Handover { .. }) {
            record.state.position = Position::Idle;
        }
        self.out.report.handover_ended = true;
        self.notice(HandoverKind::Ended, record, Some(why.into()), None);
    }

    fn notice(
        &mut self,
        kind: HandoverKind,
        record: &SessionRecord,
        reason: Option<String>,
        text: Option<String>,
    ) {
        let key = self.key;
        self.out.notices.push(HandoverEvent {
            kind,
            endpoint: key.endpoint.clone(),
            conversation: key.to_string(),
            user: key.user.clone(),
            reason,
            text,
            transcript: record.state.history.clone(),
            at_ms: self.now,
        });
    }

    /// What hooks see of the session.
    fn view(&self, record: &SessionRecord) -> SessionView {
        let key = self.key;
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
        record: &SessionRecord,
        message: InboundMessage,
    ) -> Result<InputOutcome, ConversationError> {
        if self.ctx.transformers.is_empty() {
            return Ok(InputOutcome {
                message: Some(message),
                dropped: None,
                set_data: Vec::new(),
            });
        }
        let view = self.view(record);
        let hooks = self.ctx.transformers.clone();
        // Hook calls are synchronous wasm (bounded by their deadline): off the async thread.
        blocking(move || hooks.apply_input(message, &view).map_err(Box::new)).await
    }

    async fn transform_outputs(
        &self,
        record: &SessionRecord,
        outputs: Vec<BotOutput>,
    ) -> Result<Vec<BotOutput>, ConversationError> {
        if self.ctx.transformers.is_empty() || outputs.is_empty() {
            return Ok(outputs);
        }
        let view = self.view(record);
        let hooks = self.ctx.transformers.clone();
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
pub fn output_text(output: &BotOutput) -> String {
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

/// An endpoint's conversation core: what every step of its conversations works with
/// (built once when the endpoint loads; steps borrow it).
pub struct Core<H: HttpExecutor> {
    pub config: ConversationConfig,
    pub flow: std::sync::Arc<Flow>,
    pub transformers: Transformers,
    pub http: H,
}

impl<H: HttpExecutor> Core<H> {
    pub fn context(&self) -> StepContext<'_, H> {
        StepContext {
            config: &self.config,
            flow: &self.flow,
            transformers: &self.transformers,
            http: &self.http,
        }
    }

    /// [`handle`] with this core's context.
    pub async fn handle(
        &self,
        key: &SessionKey,
        stored: Option<SessionRecord>,
        input: StepInput,
        now_ms: u64,
    ) -> StepOutcome {
        handle(&self.context(), key, stored, input, now_ms).await
    }
}
