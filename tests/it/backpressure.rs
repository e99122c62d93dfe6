//! Back-pressure at the edge: a full inbox queue is answered 503 with `Retry-After`, before
//! anything is stored, and every webhook that got its 200 is still handled.

use std::time::{Duration, Instant};

use plugboard_tests::webhook;

use crate::serve::{PNID, SECRET, WAIT, client, start_host, webhook_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_queue_answers_503_with_retry_after_and_loses_nothing() {
    // A queue of one: the first webhook holds the only place while its row is committed,
    // so concurrent ones find it full.
    let (server, _mock, dir) = start_host("enabled = false\n\n[store]\ninbox_queue = 1").await;
    let url = webhook_url(&server, "shop");
    let http = client();
    let ts = webhook::now_ts();
    let posts = (0..64).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        let body = webhook::text_message(PNID, "16315550100", &format!("wamid.bp.{i}"), "hi", ts);
        tokio::spawn(async move { webhook::post(&http, &url, &body, SECRET).await })
    });
    let (mut accepted, mut refused) = (0_u64, 0_u64);
    for post in posts.collect::<Vec<_>>() {
        let response = post.await.expect("post task");
        match response.status().as_u16() {
            200 => accepted += 1,
            503 => {
                refused += 1;
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                assert_eq!(retry_after.as_deref(), Some("2"), "503 without Retry-After");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0,
        "no webhook met a full queue ({accepted} accepted)"
    );
    assert!(accepted > 0, "every webhook was refused");

    // Nothing refused was stored, everything accepted is recorded: one message event per
    // 200 (the endpoint is disabled, so each ends as a handled event, never a reply).
    let store = server.store();
    let deadline = Instant::now() + WAIT;
    loop {
        let depths = store.depths().await.expect("depths");
        let events = store
            .transcript("shop", "16315550100", 1_000)
            .map(|rows| rows.len() as u64);
        if depths.inbox == 0 && depths.events == 0 && events.as_ref().is_ok_and(|n| *n == accepted)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted {accepted}, refused {refused}; depths {depths:?}, events {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await.expect("graceful shutdown");
    let _ = std::fs::remove_dir_all(dir);
}
