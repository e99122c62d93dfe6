//! Transformer hooks of one endpoint, chained in their configured order.
//!
//! - Input: every hook's `on-input` in order; a rewrite is what the next hook sees, session
//!   data a hook sets is visible to the hooks after it, and a drop ends the chain.
//! - Outputs: each output through every hook's `on-output` in order (a hook may drop, keep,
//!   rewrite or split it; the next hook sees each piece), then every hook's
//!   `on-execution-finished` with the final list.
//!
//! The pieces one output becomes across the chain are capped at
//! [`MAX_OUTPUTS_PER_HOOK_CALL`] (each call is capped by the plugin runtime; a chain of
//! splitting hooks would otherwise multiply); going over is a failure of the hook that did.
//!
//! A hook failure (trap, missed deadline, memory limit, or the hook's own `err`) follows the
//! endpoint's [`FailurePolicy`]: `continue` logs it and goes on with the value as it was
//! before that hook; `abort` returns a [`TransformError`] naming the hook, which the caller
//! turns into an error event.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::plugins::limits::MAX_OUTPUTS_PER_HOOK_CALL;
use crate::plugins::types::{BotOutput, InboundMessage};
use crate::plugins::{FailureKind, HookPlugin, InputAction, PluginError, SessionView};

/// What an endpoint does when one of its hooks fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Log the failure and go on with the untransformed value (the default).
    #[default]
    Continue,
    /// End the step with an error.
    Abort,
}

/// Why a hook failed.
#[derive(Debug)]
pub enum HookFailure {
    /// The call itself failed: trap, deadline or memory limit (boxed: keeps
    /// `Result<_, TransformError>` small).
    Plugin(Box<PluginError>),
    /// The hook answered `err` with this reason.
    Refused(String),
}

/// A hook failure under the `abort` policy.
#[derive(Debug)]
pub struct TransformError {
    /// The hook's configured name.
    pub hook: String,
    /// `on-input`, `on-output` or `on-execution-finished`.
    pub call: &'static str,
    pub failure: HookFailure,
}

impl TransformError {
    /// The failure kind when the call failed, `None` when the hook refused.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match &self.failure {
            HookFailure::Plugin(e) => e.failure_kind(),
            HookFailure::Refused(_) => None,
        }
    }
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            HookFailure::Plugin(e) => {
                write!(
                    f,
                    "transformer hook `{}` failed in `{}`: {e}",
                    self.hook, self.call
                )
            }
            HookFailure::Refused(reason) => write!(
                f,
                "transformer hook `{}` refused in `{}`: {reason}",
                self.hook, self.call
            ),
        }
    }
}

impl std::error::Error for TransformError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            HookFailure::Plugin(e) => Some(e.as_ref()),
            HookFailure::Refused(_) => None,
        }
    }
}

/// Which hook dropped an input, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub hook: String,
    pub reason: String,
}

/// The input after every hook.
#[derive(Debug, Clone, PartialEq)]
pub struct InputOutcome {
    /// The input the flow sees, `None` when a hook dropped it.
    pub message: Option<InboundMessage>,
    /// Set when a hook dropped the input.
    pub dropped: Option<Dropped>,
    /// Session data the hooks set, key → JSON text, in the order set (a later value for the
    /// same key replaces the earlier one). Applied even when the input was dropped.
    pub set_data: Vec<(String, String)>,
}

/// The transformer hooks of one endpoint and its failure policy.
#[derive(Clone, Default)]
pub struct Transformers {
    pub hooks: Vec<Arc<HookPlugin>>,
    pub policy: FailurePolicy,
}

impl Transformers {
    pub fn new(hooks: Vec<Arc<HookPlugin>>, policy: FailurePolicy) -> Self {
        Transformers { hooks, policy }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Runs an inbound message through every hook's `on-input`, in order.
    pub fn apply_input(
        &self,
        message: InboundMessage,
        session: &SessionView,
    ) -> Result<InputOutcome, TransformError> {
        let mut outcome = InputOutcome {
            message: Some(message),
            dropped: None,
            set_data: Vec::new(),
        };
        if self.hooks.is_empty() {
            return Ok(outcome);
        }
        let mut view = session.clone();
        for hook in &self.hooks {
            let Some(message) = &outcome.message else {
                break;
            };
            let failure = match hook.on_input(message, &view) {
                Ok(Ok(result)) => {
                    for (key, value) in result.set_data {
                        set_entry(&mut view.data, key.clone(), value.clone());
                        set_entry(&mut outcome.set_data, key, value);
                    }
                    match result.action {
                        InputAction::Keep => {}
                        InputAction::Rewrite(rewritten) => outcome.message = Some(rewritten),
                        InputAction::Drop(reason) => {
                            tracing::debug!(hook = hook.name(), %reason, "hook dropped the input");
                            outcome.message = None;
                            outcome.dropped = Some(Dropped {
                                hook: hook.name().to_string(),
                                reason,
                            });
                        }
                    }
                    continue;
                }
                Ok(Err(reason)) => HookFailure::Refused(reason),
                Err(e) => HookFailure::Plugin(Box::new(e)),
            };
            self.fail(hook, "on-input", failure)?;
        }
        Ok(outcome)
    }

    /// Runs the outputs of one step through every hook's `on-output` (each output through
    /// the hooks in order), then every hook's `on-execution-finished` with the final list.
    pub fn apply_outputs(
        &self,
        outputs: Vec<BotOutput>,
        session: &SessionView,
    ) -> Result<Vec<BotOutput>, TransformError> {
        if self.hooks.is_empty() {
            return Ok(outputs);
        }
        let mut finished = Vec::with_capacity(outputs.len());
        for output in outputs {
            let mut pieces = vec![output];
            for hook in &self.hooks {
                let mut next = Vec::with_capacity(pieces.len());
                for piece in pieces {
                    let failure = match hook.on_output(&piece, session) {
                        Ok(Ok(replacement)) => {
                            next.extend(replacement);
                            continue;
                        }
                        Ok(Err(reason)) => HookFailure::Refused(reason),
                        Err(e) => HookFailure::Plugin(Box::new(e)),
                    };
                    self.fail(hook, "on-output", failure)?;
                    next.push(piece);
                }
                // Each call is capped, but a chain of splitting hooks would multiply: the
                // pieces of one output are capped too, as a failure of the hook that went
                // over; under `continue` the first pieces up to the cap go on.
                if next.len() > MAX_OUTPUTS_PER_HOOK_CALL {
                    let error = crate::plugins::limits::check(
                        hook.name(),
                        hook.version(),
                        "on-output",
                        "outputs for one output across the chain",
                        next.len(),
                        MAX_OUTPUTS_PER_HOOK_CALL,
                    );
                    if let Err(e) = error {
                        self.fail(hook, "on-output", HookFailure::Plugin(Box::new(e)))?;
                    }
                    next.truncate(MAX_OUTPUTS_PER_HOOK_CALL);
                }
                pieces = next;
            }
            finished.extend(pieces);
        }
        for hook in &self.hooks {
            let failure = match hook.on_execution_finished(&finished, session) {
                Ok(Ok(())) => continue,
                Ok(Err(reason)) => HookFailure::Refused(reason),
                Err(e) => HookFailure::Plugin(Box::new(e)),
            };
            self.fail(hook, "on-execution-finished", failure)?;
        }
        Ok(finished)
    }

    /// Applies the failure policy: `Ok` (logged) under `continue`, the error under `abort`.
    fn fail(
        &self,
        hook: &HookPlugin,
        call: &'static str,
        failure: HookFailure,
    ) -> Result<(), TransformError> {
        let error = TransformError {
            hook: hook.name().to_string(),
            call,
            failure,
        };
        match self.policy {
            FailurePolicy::Continue => {
                tracing::warn!(
                    hook = hook.name(),
                    call,
                    "{error}; continuing untransformed"
                );
                Ok(())
            }
            FailurePolicy::Abort => Err(error),
        }
    }
}

fn set_entry(entries: &mut Vec<(String, String)>, key: String, value: String) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((key, value)),
    }
}
