//! The conversation engine: flow files, their validation and the pure flow engine.
//!
//! - [`model`]: the flow file format (`schema_version` 1), as serde types; its JSON Schema
//!   is checked in as `flows/schema/flow.v1.json` and embedded here.
//! - [`validate`]: load-time checks (schema, node types, targets, reachability, channel
//!   limits, template variables); every problem names the file, the node and the reason.
//! - [`template`]: `{{ path }}` substitution.
//! - [`engine`]: [`step`], a pure function from (flow, session state, input, now) to
//!   (new state, effects). No I/O and no clock: the host sends, calls and waits.

pub mod engine;
pub mod model;
pub mod template;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use regex::Regex;

pub use engine::{Effect, FlowInput, HttpCall, HttpOutcome, MessageInput, SessionState, step};
pub use model::{FlowHeader, Node};
pub use validate::Problem;

use crate::plugins::types::ChannelLimits;

/// The JSON Schema every flow file is checked against, `flows/schema/flow.v1.json`.
pub const SCHEMA_V1: &str = include_str!("../../../flows/schema/flow.v1.json");

/// A loaded, validated flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The file it came from (as given to [`Flow::load`]), for messages.
    pub file: String,
    pub header: FlowHeader,
    pub nodes: BTreeMap<String, Node>,
    /// Branch regexes, compiled once at load, by pattern.
    regexes: HashMap<String, Regex>,
}

impl Flow {
    /// Reads, parses and validates a flow file against a channel's limits. Reports every
    /// problem found, not just the first.
    pub fn load(path: impl AsRef<Path>, limits: &ChannelLimits) -> Result<Flow, FlowError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FlowError::Io {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Flow::from_json(&file, &text, limits)
    }

    /// Like [`Flow::load`], from text; `file` names the source in messages.
    pub fn from_json(file: &str, text: &str, limits: &ChannelLimits) -> Result<Flow, FlowError> {
        validate::check(file, text, limits).map_err(|problems| FlowError::Invalid {
            file: file.to_string(),
            problems,
        })
    }

    pub fn name(&self) -> &str {
        &self.header.name
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// Turns of history a session keeps for this flow.
    pub fn history_turns(&self) -> usize {
        self.header
            .history_turns
            .unwrap_or(model::DEFAULT_HISTORY_TURNS)
    }

    pub(crate) fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.get(pattern)
    }
}

/// Why a flow was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// The file could not be read.
    Io { file: String, reason: String },
    /// The file was read but breaks the format or the channel's limits.
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl FlowError {
    /// The problems found (empty for an I/O error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            FlowError::Io { .. } => &[],
            FlowError::Invalid { problems, .. } => problems,
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Io { file, reason } => write!(f, "{file}: cannot read the flow: {reason}"),
            FlowError::Invalid { file, problems } => {
                write!(f, "{file}: flow refused, {} problem(s):", problems.len())?;
                for p in problems {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FlowError {}

#[cfg(test)]
pub(crate) mod tests;
