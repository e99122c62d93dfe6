//! [`Conversations`]: the conversation core driven the way `plugboard chat` needs it, with
//! its own ordering, pacing, sessions and side effects.
//!
//! Every entry point takes the conversation's lane (see [`super::lanes`]), loads the
//! record from the [`SessionStore`], runs one pure step ([`crate::conversation::handle`]),
//! delivers the step's outputs through the [`Outbound`] (sleeping out their gaps, a typing
//! indicator first when a batch waits), hands the step's handover events to the
//! [`HandoverSink`] and saves the record, all before the lane is released. What must stay
//! true:
//! - one conversation's inputs are handled one at a time, in arrival order; different
//!   conversations run in parallel;
//! - outputs reach the user in the order the flow produced them, at least
//!   `message_delay` apart, also across calls;
//! - the record is saved also when a hook failed after the load, so flow progress is never
//!   lost; a direct send (notify, agent) that could not be delivered is not recorded.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clock::Clock;
use super::lanes::{Lanes, deliver_paced};
use super::sessions::{MemorySessions, SessionStore};
use crate::conversation::{
    ConversationConfig, ConversationError, HandoverEvent, HandoverKind, HandoverStatus,
    HttpExecutor, SessionKey, StepContext, StepInput, StepReport, handle,
};
use crate::flow::engine::Turn;
use crate::flow::{Flow, SessionState};
use crate::plugins::types::{BotOutput, Business, InboundMessage};
use crate::transform::Transformers;

/// Sends an output to the user of a conversation (the chat renders it through the
/// adapter and prints it).
pub trait Outbound: Send + Sync + 'static {
    fn deliver(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Receives handover events (the chat shows them as notes; tests record them).
/// Infallible by contract: a sink deals with its own failures.
pub trait HandoverSink: Send + Sync + 'static {
    fn post(&self, event: HandoverEvent) -> impl Future<Output = ()> + Send;
}

/// A conversation as a caller sees it.
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

/// The conversations of one chat (or one test).
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
        self.step(
            &key,
            StepInput::Message {
                message: Box::new(message),
                business,
            },
        )
        .await
        .map(|(report, _)| report)
    }

    /// Text and/or data into the flow as if the user had sent it (no input transformer).
    pub async fn inject(
        &self,
        key: &SessionKey,
        text: Option<String>,
        data: Value,
    ) -> Result<StepReport, ConversationError> {
        self.step(key, StepInput::Inject { text, data })
            .await
            .map(|(report, _)| report)
    }

    /// An output straight to the user, without the flow (message delay still applies).
    pub async fn notify(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> Result<(), ConversationError> {
        self.step(key, StepInput::Notify(output)).await.map(drop)
    }

    /// A human agent's output to the user; recorded in the history.
    pub async fn agent_send(
        &self,
        key: &SessionKey,
        output: BotOutput,
    ) -> Result<(), ConversationError> {
        self.step(key, StepInput::AgentSend(output)).await.map(drop)
    }

    /// Hands the conversation to a human from outside (no confirmation to the user).
    pub async fn take_over(
        &self,
        key: &SessionKey,
        reason: Option<String>,
    ) -> Result<(), ConversationError> {
        self.step(key, StepInput::TakeOver { reason })
            .await
            .map(drop)
    }

    /// Ends a handover: the bot answers the next input again.
    pub async fn release(&self, key: &SessionKey) -> Result<(), ConversationError> {
        self.step(key, StepInput::Release).await.map(drop)
    }

    /// Turns the flow on or off for one conversation (no handover involved).
    pub async fn set_ai(&self, key: &SessionKey, enabled: bool) -> Result<(), ConversationError> {
        self.step(key, StepInput::SetAi(enabled)).await.map(drop)
    }

    /// `context[name]` and a line of history, without running the flow.
    pub async fn record_event(
        &self,
        key: &SessionKey,
        name: &str,
        data: Value,
        note: String,
    ) -> Result<(), ConversationError> {
        let input = StepInput::RecordEvent {
            name: name.to_string(),
            data,
            note,
        };
        self.step(key, input).await.map(drop)
    }

    /// Sets `context[name]` without running the flow; true when it changed.
    pub async fn set_context(
        &self,
        key: &SessionKey,
        name: &str,
        data: Value,
    ) -> Result<bool, ConversationError> {
        let input = StepInput::SetContext {
            name: name.to_string(),
            data,
        };
        self.step(key, input).await.map(|(_, saved)| saved)
    }

    /// Ends the conversation's handover if its mute has run out; whether one ended.
    pub async fn expire_handover(&self, key: &SessionKey) -> Result<bool, ConversationError> {
        self.step(key, StepInput::ExpireHandover)
            .await
            .map(|(report, _)| report.handover_ended)
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

    /// One step under the conversation's lane: load, step, deliver, announce, save.
    /// Returns the report and whether a record was saved.
    async fn step(
        &self,
        key: &SessionKey,
        input: StepInput,
    ) -> Result<(StepReport, bool), ConversationError> {
        let direct = matches!(input, StepInput::Notify(_) | StepInput::AgentSend(_));
        let lane = self.lanes.get(key, self.config.message_delay);
        let mut lane = lane.lock().await;
        let stored = self.store.get(key)?;
        let ctx = StepContext {
            config: &self.config,
            flow: &self.flow,
            transformers: &self.transformers,
            http: &self.http,
        };
        let mut outcome = handle(&ctx, key, stored, input, self.clock.now_ms()).await;
        // A handover that ended did so before this step's outputs; the others after.
        let (ended, later): (Vec<_>, Vec<_>) = std::mem::take(&mut outcome.notices)
            .into_iter()
            .partition(|e| e.kind == HandoverKind::Ended);
        for event in ended {
            self.handover.post(event).await;
        }
        let outputs = std::mem::take(&mut outcome.outputs);
        let typing_for = outcome.typing_for.as_deref();
        let mut report = outcome.report;
        match deliver_paced(&self.outbound, &mut lane, key, outputs, typing_for).await {
            Ok(delivered) => report.delivered = delivered,
            Err((_, reason)) if direct => {
                return Err(ConversationError::Delivery {
                    key: key.to_string(),
                    reason,
                });
            }
            Err((delivered, reason)) => {
                tracing::warn!(conversation = %key.masked(), %reason, "delivery failed");
                report.delivered = delivered;
                report.errors.push(format!("delivery failed: {reason}"));
            }
        }
        for event in later {
            self.handover.post(event).await;
        }
        let saved = outcome.record.is_some();
        if let Some(record) = &outcome.record {
            self.store.put(key, record)?;
        }
        match outcome.error {
            Some(e) => Err(e),
            None => Ok((report, saved)),
        }
    }
}
