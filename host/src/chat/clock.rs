//! The chat's time in unix milliseconds, behind a trait so tests control it.
//!
//! The conversation core reads no clock: its driver passes the time of each step. Here
//! that time comes from a [`Clock`]. [`TokioClock`] is a unix base plus tokio's monotonic
//! time elapsed since creation, so `tokio::time::pause`/`advance` move it together with
//! the pacing sleeps (the tests use it). [`SystemClock`] reads the system time directly.

/// Unix time in milliseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

use crate::clock::now_ms as unix_ms;

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        unix_ms()
    }
}

/// Unix time at creation plus tokio time elapsed since: follows paused and advanced time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the current system time.
    pub fn new() -> Self {
        TokioClock::starting_at(unix_ms())
    }

    /// Starts at a given unix time (tests use a fixed one).
    pub fn starting_at(base_ms: u64) -> Self {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}
