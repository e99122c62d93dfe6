//! The customer-service window: after a user's last message the business may send
//! free-form messages for 24 hours; after that only an approved template (Meta refuses
//! anything else with [`super::WINDOW_CLOSED_CODE`]).
//!
//! The same 24 hours is the moving period of the messaging limit (business-initiated
//! conversations per portfolio), which the store counts with [`WINDOW_MS`] too.

/// Meta's customer-service window (and the messaging limit's moving period).
pub const WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// How long after a campaign message a reply is taken as a reply to it (our rule for
/// campaign statistics, not Meta's).
pub const CAMPAIGN_REPLY_WINDOW_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// When the window opened by a user's message at `last_inbound_ms` closes.
pub fn window_closes_at(last_inbound_ms: u64) -> u64 {
    last_inbound_ms.saturating_add(WINDOW_MS)
}

/// Whether the window opened by the user's last message is still open at `now_ms`. No
/// message from the user means no window: only a template may start the conversation.
pub fn window_open(last_inbound_ms: Option<u64>, now_ms: u64) -> bool {
    last_inbound_ms.is_some_and(|last| now_ms < window_closes_at(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_24_hours_after_the_last_message() {
        assert_eq!(window_closes_at(1_000), 1_000 + 86_400_000);
        assert!(window_open(Some(1_000), 1_000));
        assert!(window_open(Some(1_000), 1_000 + 86_399_999));
        assert!(!window_open(Some(1_000), 1_000 + 86_400_000));
        assert!(!window_open(None, 1_000));
        assert_eq!(window_closes_at(u64::MAX), u64::MAX);
    }
}
