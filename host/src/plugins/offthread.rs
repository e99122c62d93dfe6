//! Where a plugin call may run: never on a thread that is driving async tasks.
//!
//! A plugin call is synchronous CPU work bounded by its deadline, and wasmtime-wasi's
//! synchronous bindings run some host functions (stream writes such as a guest's panic
//! message on stderr, stream drops) through `Handle::block_on` when a tokio runtime is
//! current. On an async worker thread that panics ("Cannot start a runtime from within a
//! runtime"), and any call there stalls every task queued behind it. So every call goes
//! through [`off_async`], chosen once per call from where it is:
//!
//! - no runtime is current (a plain thread, a `spawn_blocking` thread of a multi-thread
//!   runtime, a nested call): run it right here, for free;
//! - a multi-thread runtime is current: [`tokio::task::block_in_place`], which hands this
//!   worker's queue to another thread first (a no-op on a blocking-pool thread or inside an
//!   outer `block_in_place`, so a batch wrapped once pays once);
//! - a current-thread runtime is current (tests, the one-shot CLI commands): a scoped std
//!   thread, joined before returning. Slower, but correct: `block_in_place` would panic.
//!
//! What must stay true: callers never need to know which thread they are on, so no call
//! site can forget it; a panic inside `f` reaches the caller unchanged (callers that must
//! survive one use `catch_unwind`, as the demux does per inbox row).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f` where blocking is allowed (see the module documentation) and returns its value.
pub fn off_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let Ok(handle) = Handle::try_current() else {
        return f();
    };
    match handle.runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // Current-thread (and any future flavor): a thread of our own is always safe.
        _ => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What wasmtime-wasi does for a blocking host function in sync mode.
    fn like_in_tokio() -> u32 {
        match Handle::try_current() {
            Ok(handle) => handle.block_on(async { 7 }),
            Err(_) => 7,
        }
    }

    #[test]
    fn runs_directly_without_a_runtime() {
        assert_eq!(off_async(like_in_tokio), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_gets_a_thread_of_its_own() {
        assert_eq!(off_async(like_in_tokio), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_thread_worker_blocks_in_place_also_nested() {
        assert_eq!(off_async(|| off_async(like_in_tokio)), 7);
        let on_blocking_pool = tokio::task::spawn_blocking(|| off_async(like_in_tokio))
            .await
            .expect("no panic");
        assert_eq!(on_blocking_pool, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| off_async(|| panic!("boom")));
        assert!(caught.is_err());
        // The worker is still usable afterwards.
        assert_eq!(off_async(like_in_tokio), 7);
    }
}
