//! The one retry loop for store calls the pipeline must not give up on.
//!
//! The demux's record, marking events done and applying a status are all "acknowledged
//! work": dropping them would lose a message Meta was told we have. So a failing store
//! call is logged, waited on and called again, for as long as the host runs; when shutdown
//! starts the caller gets `None` and leaves the work pending in the store, where the next
//! start finds it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::StoreError;

/// Wait before calling a failed store call again.
pub const STORE_RETRY: Duration = Duration::from_millis(500);

/// Calls `call` until it succeeds (`Some`) or shutdown starts (`None`).
pub async fn until_stored<T, F, Fut>(stop: &CancellationToken, what: &str, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) => {
                tracing::error!("cannot {what} (retrying): {e}");
                tokio::select! {
                    _ = tokio::time::sleep(STORE_RETRY) => {}
                    _ = stop.cancelled() => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_it_succeeds() {
        let stop = CancellationToken::new();
        let mut calls = 0;
        let got = until_stored(&stop, "test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(StoreError("busy".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_shutdown_starts() {
        let stop = CancellationToken::new();
        stop.cancel();
        let got: Option<()> =
            until_stored(&stop, "test", || async { Err(StoreError("down".into())) }).await;
        assert_eq!(got, None);
    }
}
