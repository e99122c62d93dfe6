//! Wall-clock time: unix milliseconds from the system clock.
//!
//! A leaf: it imports nothing of the crate, so every module (store, business, serve,
//! admin) reads time the same way. The conversation core reads no clock (its callers pass
//! the time); `plugboard chat`'s `Clock` trait (`chat/clock.rs`), which its tests control,
//! reads this one through its system clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch; 0 if the system clock is before it, and
/// saturating rather than wrapping far in the future.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        // 2020-01-01T00:00:00Z
        assert!(super::now_ms() > 1_577_836_800_000);
    }
}
