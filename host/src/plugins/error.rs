//! Plugin failures, each naming what went wrong and, once loaded, which plugin did it.

use std::fmt;

use super::types::AdapterError;

/// Why a plugin call ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The call ran past its deadline and was interrupted.
    DeadlineExceeded,
    /// The guest tried to grow its memory past the limit.
    MemoryLimit,
    /// Any other trap: a guest panic, an out-of-bounds access, `unreachable`, a refused
    /// wait.
    Trap,
    /// The call answered more items than the host takes from one call (see
    /// [`super::limits`]); the answer is dropped.
    OutputLimit,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::DeadlineExceeded => "deadline exceeded",
            FailureKind::MemoryLimit => "memory limit exceeded",
            FailureKind::Trap => "trapped",
            FailureKind::OutputLimit => "output limit exceeded",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a component this engine can compile.
    #[error("not a loadable WebAssembly component: {0}")]
    Invalid(String),
    /// A valid component that does not export a supported adapter interface.
    #[error("the component does not export {expected}; it exports: {found}")]
    WrongWorld { expected: String, found: String },
    /// The component imports something the host does not link (plugins get no network,
    /// files or environment).
    #[error("the component imports what the host does not provide to plugins: {0}")]
    Imports(String),
    /// The load-time smoke call (`info`) failed or answered nonsense.
    #[error("the component failed its load-time check: {0}")]
    Smoke(String),
    /// A call into a loaded plugin failed.
    #[error("plugin {plugin} {version}: {kind} in `{call}`: {detail}")]
    Call {
        plugin: String,
        version: String,
        call: &'static str,
        kind: FailureKind,
        detail: String,
    },
    /// A value could not be converted between the host's WIT version and the older one the
    /// plugin was built against (an argument using a newer addition). The plugin was not
    /// called, or its answer was dropped; the plugin itself is fine.
    #[error("plugin {plugin} {version} (WIT {wit_version}): `{call}`: {detail}")]
    Incompatible {
        plugin: String,
        version: String,
        wit_version: String,
        call: &'static str,
        detail: String,
    },
}

impl PluginError {
    /// The failure kind of a call error, `None` for load and conversion errors.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            PluginError::Call { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// An adapter's refusal (`decode`, `render`) as one line for a dead letter, a log or the
/// command line: its kind, then the adapter's message.
pub fn adapter_error(e: &AdapterError) -> String {
    match e {
        AdapterError::Malformed(m) => format!("malformed: {m}"),
        AdapterError::Unsupported(m) => format!("unsupported: {m}"),
        AdapterError::Invalid(m) => format!("invalid: {m}"),
    }
}
