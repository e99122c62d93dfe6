//! Caps on how much one plugin call may answer, so a plugin cannot turn one webhook into a
//! flood of stored events, one output into a flood of Graph API requests, or one hook call
//! into a flood of messages.
//!
//! Checked where the answer enters the host ([`super::AdapterPlugin`] `decode` and
//! `render`, [`super::HookPlugin`] `on-output`), before anything is stored or sent. An
//! answer over its cap is a plugin failure ([`FailureKind::OutputLimit`]) naming the call,
//! the count and the cap: a decode becomes a dead letter, a render is retried and then
//! dead-lettered, a hook failure follows the endpoint's failure policy. The caps are far
//! above anything a real webhook or message needs (Meta batches at most 1,000 changes per
//! webhook; the bundled adapter renders one request per output part).

use super::{FailureKind, PluginError};

/// Events one `decode` may return.
pub const MAX_EVENTS_PER_DECODE: usize = 1_000;
/// Request specs one `render` may return.
pub const MAX_SPECS_PER_RENDER: usize = 64;
/// Outputs one hook `on-output` call may return (a split).
pub const MAX_OUTPUTS_PER_HOOK_CALL: usize = 64;

/// `Err` when `count` is over `cap`: a failure of `plugin`'s `call`.
pub(crate) fn check(
    plugin: &str,
    version: &str,
    call: &'static str,
    what: &str,
    count: usize,
    cap: usize,
) -> Result<(), PluginError> {
    if count <= cap {
        return Ok(());
    }
    let detail = format!("answered {count} {what}, more than the {cap} the host takes");
    tracing::warn!(plugin, version, call, %detail, "plugin answer refused");
    Err(PluginError::Call {
        plugin: plugin.to_string(),
        version: version.to_string(),
        call,
        kind: FailureKind::OutputLimit,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_is_fine_above_it_is_a_named_failure() {
        assert!(check("p", "1", "decode", "events", 1_000, MAX_EVENTS_PER_DECODE).is_ok());
        let error = check("p", "1", "decode", "events", 1_001, MAX_EVENTS_PER_DECODE)
            .expect_err("over the cap");
        assert_eq!(error.failure_kind(), Some(FailureKind::OutputLimit));
        assert_eq!(
            error.to_string(),
            "plugin p 1: output limit exceeded in `decode`: answered 1001 events, more than \
             the 1000 the host takes"
        );
    }
}
