//! Timers: per-conversation deadlines (set in a step's commit) that the timer loop fires.

use super::StoreFuture;

/// A timer: at `due_ms` the host does `kind` for the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimer {
    pub kind: String,
    pub due_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerRow {
    pub id: i64,
    pub endpoint: String,
    pub conversation: String,
    pub kind: String,
    pub due_ms: u64,
}

/// Due timers and their removal once fired.
pub trait TimerStore: Send + Sync {
    /// Timers due at `now_ms`.
    fn due_timers(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<TimerRow>>;

    /// Removes a fired timer.
    fn timer_done(&self, id: i64) -> StoreFuture<'_, ()>;
}
