//! Liveness of the long-running pipeline stages (demux, sender, timers, event delivery,
//! campaigns), for `/readyz`.
//!
//! [`Stages::watch`] wraps a stage's future: it is marked alive when wrapped and marked
//! stopped by a drop guard when the future ends, returns or panics (tokio drops a task's
//! future after a panic, so the guard runs either way). `/readyz` answers 503 naming every
//! stopped stage while the host is not shutting down: a host whose demux died must not
//! look ready while it acknowledges webhooks nobody will process.

use crate::lock::LockExt;
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The watched stages and whether each is still running.
#[derive(Default)]
pub struct Stages {
    stages: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
}

impl Stages {
    /// `stage` marked alive now and stopped when it ends, however it ends.
    pub fn watch<F>(&self, name: &'static str, stage: F) -> impl Future<Output = ()> + use<F>
    where
        F: Future<Output = ()>,
    {
        let alive = Arc::new(AtomicBool::new(true));
        self.stages.locked().push((name, alive.clone()));
        let guard = Stopped(alive);
        async move {
            let _guard = guard;
            stage.await;
        }
    }

    /// The stages that are no longer running, in the order they were watched.
    pub fn stopped(&self) -> Vec<&'static str> {
        self.stages
            .locked()
            .iter()
            .filter(|(_, alive)| !alive.load(Ordering::SeqCst))
            .map(|(name, _)| *name)
            .collect()
    }
}

/// Marks its stage stopped when dropped.
struct Stopped(Arc<AtomicBool>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stage_that_panics_or_returns_is_reported_stopped() {
        let stages = Stages::default();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(stages.watch("sender", async move {
            let _ = wait.await;
        }));
        let panicked = tokio::spawn(stages.watch("demux", async {
            panic!("a decode panicked the loop");
        }));
        assert!(panicked.await.is_err(), "the task panicked");
        assert_eq!(stages.stopped(), ["demux"]);
        let _ = release.send(());
        running.await.expect("no panic");
        assert_eq!(stages.stopped(), ["sender", "demux"]);
    }

    #[test]
    fn panic_messages_are_read() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "boom 1");
        let caught = std::panic::catch_unwind(|| panic!("plain")).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "plain");
    }
}
