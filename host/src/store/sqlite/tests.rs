//! Tests of the SQLite store: the writer's batching and durability rules, and every table
//! group's behaviour through the [`Store`] interface.

use super::rows::*;
use super::writer::wants_full;
use super::*;
use crate::store::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plugboard-store-{name}-{}-{}-{}",
            std::process::id(),
            now_ms(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(name: &str) -> (TempDir, SqliteStore) {
    let dir = TempDir::new(name);
    let store = SqliteStore::open_in(&dir.0.join("nested")).unwrap();
    (dir, store)
}

fn event(key: &str, conversation: &str) -> NewEvent {
    NewEvent {
        endpoint: None,
        dedupe_key: key.into(),
        conversation: conversation.into(),
        kind: EventKind::Message,
        body: format!("{{\"key\":\"{key}\"}}"),
    }
}

fn new_outbox(output: &str, not_before_ms: u64) -> NewOutbox {
    NewOutbox {
        recipient: "{\"id\":\"u1\"}".into(),
        business: "{\"id\":\"b1\"}".into(),
        output: output.into(),
        free_form: true,
        not_before_ms,
    }
}

/// One pending outbox row for conversation `u1` of endpoint `ep`.
async fn one_outbox(store: &SqliteStore) -> i64 {
    let ids = store
        .commit_step(StepCommit {
            endpoint: "ep".into(),
            conversation: "u1".into(),
            outbox: vec![new_outbox("{\"text\":\"hi\"}", 0)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    ids[0]
}

#[tokio::test]
async fn append_and_pending_inbox() {
    let (_dir, store) = open("inbox");
    let a = store.append_inbox("ep", b"one".to_vec(), 10).await.unwrap();
    let b = store.append_inbox("ep", b"two".to_vec(), 20).await.unwrap();
    assert!(b > a);
    let rows = store.pending_inbox(0, 10).await.unwrap();
    assert_eq!(
        rows,
        vec![
            InboxRow {
                id: a,
                endpoint: "ep".into(),
                received_ms: 10,
                body: b"one".to_vec()
            },
            InboxRow {
                id: b,
                endpoint: "ep".into(),
                received_ms: 20,
                body: b"two".to_vec()
            },
        ]
    );
    assert_eq!(store.pending_inbox(a, 10).await.unwrap().len(), 1);
    assert_eq!(store.pending_inbox(0, 1).await.unwrap().len(), 1);
    assert_eq!(store.depths().await.unwrap().inbox, 2);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn demux_dedupes_across_batches() {
    let (_dir, store) = open("dedupe");
    let a = store.append_inbox("ep", b"a".to_vec(), 1).await.unwrap();
    let b = store.append_inbox("ep", b"b".to_vec(), 2).await.unwrap();
    let first = store
        .record_demux(vec![Demuxed {
            inbox_id: a,
            endpoint: "ep".into(),
            outcome: DemuxOutcome::Events(vec![event("m1", "u1"), event("m2", "u1")]),
        }])
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].len(), 2);
    assert_eq!(first[0][0].kind, EventKind::Message);
    assert_eq!(first[0][0].conversation, "u1");
    // Meta redelivers m1 in another body: only m3 is new.
    let second = store
        .record_demux(vec![Demuxed {
            inbox_id: b,
            endpoint: "ep".into(),
            outcome: DemuxOutcome::Events(vec![event("m1", "u1"), event("m3", "u2")]),
        }])
        .await
        .unwrap();
    assert_eq!(second[0].len(), 1);
    assert_eq!(second[0][0].body, "{\"key\":\"m3\"}");
    // The same key on another endpoint is another event.
    let other = store
        .insert_events("other", vec![event("m1", "u1")])
        .await
        .unwrap();
    assert_eq!(other.len(), 1);

    assert!(store.pending_inbox(0, 10).await.unwrap().is_empty());
    let pending = store.pending_events(0, 10).await.unwrap();
    assert_eq!(pending.len(), 4);
    assert_eq!(pending[0], first[0][0]);
    store
        .events_done(vec![pending[0].id, pending[1].id])
        .await
        .unwrap();
    let depths = store.depths().await.unwrap();
    assert_eq!(depths.events, 2);
    assert_eq!(depths.inbox, 0);
}

#[tokio::test]
async fn dead_demux_then_replay() {
    let (_dir, store) = open("replay");
    let a = store.append_inbox("ep", b"junk".to_vec(), 1).await.unwrap();
    let b = store
        .append_inbox("ep", b"junk2".to_vec(), 2)
        .await
        .unwrap();
    let out = store
        .record_demux(vec![
            Demuxed {
                inbox_id: a,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Dead {
                    reason: "decode".into(),
                    detail: "bad json".into(),
                },
            },
            Demuxed {
                inbox_id: b,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Dead {
                    reason: "decode".into(),
                    detail: "bad json 2".into(),
                },
            },
        ])
        .await
        .unwrap();
    assert_eq!(out, vec![Vec::new(), Vec::new()]);
    assert!(store.pending_inbox(0, 10).await.unwrap().is_empty());
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    // Newest first.
    assert_eq!(letters[0].source_id, b);
    assert_eq!(letters[1].source, "inbox");
    assert_eq!(letters[1].reason, "decode");
    assert_eq!(letters[1].detail, "bad json");
    assert_eq!(letters[1].replayed_ms, None);
    assert_eq!(store.depths().await.unwrap().dead_letters, 2);

    assert_eq!(
        store.replay_inbox(Some(letters[1].id), 99).await.unwrap(),
        1
    );
    // Replaying twice does nothing.
    assert_eq!(
        store.replay_inbox(Some(letters[1].id), 99).await.unwrap(),
        0
    );
    let pending = store.pending_inbox(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, a);
    assert_eq!(pending[0].body, b"junk");
    assert_eq!(store.replay_inbox(None, 100).await.unwrap(), 1);
    assert_eq!(store.pending_inbox(0, 10).await.unwrap().len(), 2);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters[0].replayed_ms, Some(100));
    assert_eq!(letters[1].replayed_ms, Some(99));
    assert_eq!(store.depths().await.unwrap().dead_letters, 0);
}

#[tokio::test]
async fn commit_step_writes_everything() {
    let (_dir, store) = open("step");
    let events = store
        .insert_events("ep", vec![event("m1", "u1")])
        .await
        .unwrap();
    let ids = store
        .commit_step(StepCommit {
            endpoint: "ep".into(),
            conversation: "u1".into(),
            session: Some("{\"v\":1}".into()),
            outbox: vec![new_outbox("{\"n\":1}", 0), new_outbox("{\"n\":2}", 500)],
            inbound_ms: Some(1_000),
            timers: vec![
                NewTimer {
                    kind: "expire".into(),
                    due_ms: 5_000,
                },
                NewTimer {
                    kind: "nudge".into(),
                    due_ms: 3_000,
                },
            ],
            cancel_timers: vec![],
            event_done: Some(events[0].id),
            notices: Vec::new(),
            quota: None,
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > ids[0]);
    assert_eq!(
        store.session("ep", "u1").await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(store.session("ep", "u2").await.unwrap(), None);
    assert_eq!(store.last_inbound("ep", "u1").await.unwrap(), Some(1_000));
    assert!(store.pending_events(0, 10).await.unwrap().is_empty());

    let outbox = store.pending_outbox(10).await.unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[0].id, ids[0]);
    assert_eq!(outbox[0].output, "{\"n\":1}");
    assert_eq!(outbox[0].state, OutboxState::Pending);
    assert_eq!(outbox[0].conversation, "u1");
    assert!(outbox[0].free_form);
    assert_eq!(outbox[1].next_attempt_ms, 500);
    assert_eq!(
        store.outbox_row(ids[1]).await.unwrap(),
        Some(outbox[1].clone())
    );
    assert_eq!(store.outbox_row(9_999).await.unwrap(), None);

    let due = store.due_timers(10_000, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
        ["nudge", "expire"]
    );
    let old_expire = due[1].id;

    // An older message arriving late leaves the window; `None` session keeps the
    // record; timers are replaced and cancelled.
    store
        .commit_step(StepCommit {
            endpoint: "ep".into(),
            conversation: "u1".into(),
            inbound_ms: Some(400),
            timers: vec![NewTimer {
                kind: "expire".into(),
                due_ms: 8_000,
            }],
            cancel_timers: vec!["nudge".into()],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(store.last_inbound("ep", "u1").await.unwrap(), Some(1_000));
    assert_eq!(
        store.session("ep", "u1").await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert!(store.due_timers(7_999, 10).await.unwrap().is_empty());
    let due = store.due_timers(8_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].kind.as_str(), due[0].due_ms), ("expire", 8_000));
    // The replaced timer has a new id: the old one firing late cannot remove it.
    assert_ne!(due[0].id, old_expire);
    store.timer_done(old_expire).await.unwrap();
    assert_eq!(store.due_timers(8_000, 10).await.unwrap().len(), 1);
    store.timer_done(due[0].id).await.unwrap();
    assert!(store.due_timers(u64::MAX, 10).await.unwrap().is_empty());

    // A newer message moves the window forward.
    store
        .commit_step(StepCommit {
            endpoint: "ep".into(),
            conversation: "u1".into(),
            inbound_ms: Some(2_000),
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(store.last_inbound("ep", "u1").await.unwrap(), Some(2_000));
    assert_eq!(store.last_inbound("ep", "nobody").await.unwrap(), None);
}

#[tokio::test]
async fn status_before_send_response() {
    let (_dir, store) = open("early-status");
    let id = one_outbox(&store).await;
    // The status webhook beats the send's own response.
    let applied = store
        .apply_status(
            "ep",
            "wamid.X",
            DeliveryState::Delivered,
            10,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(
        applied,
        StatusApplied {
            outbox_id: None,
            state: None,
            advanced: true
        }
    );
    let state = store
        .outbox_part_sent(id, Some("wamid.X".into()), true, None)
        .await
        .unwrap();
    assert_eq!(state, OutboxState::Delivered);
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Delivered);
    assert_eq!(row.parts_sent, 1);
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn multi_part_rows_and_pending_rows() {
    let (_dir, store) = open("parts");
    let id = one_outbox(&store).await;
    let state = store
        .outbox_part_sent(id, Some("wamid.A".into()), false, None)
        .await
        .unwrap();
    assert_eq!(state, OutboxState::Pending);
    // A status for the first part does not move a row whose next part is not out.
    let applied = store
        .apply_status(
            "ep",
            "wamid.A",
            DeliveryState::Read,
            10,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(applied.outbox_id, Some(id));
    assert_eq!(applied.state, Some(OutboxState::Pending));
    assert_eq!(
        store.outbox_row(id).await.unwrap().unwrap().state,
        OutboxState::Pending
    );
    // The last part: the row takes the furthest status of its parts.
    let state = store
        .outbox_part_sent(id, Some("wamid.B".into()), true, None)
        .await
        .unwrap();
    assert_eq!(state, OutboxState::Read);
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!((row.state, row.parts_sent), (OutboxState::Read, 2));
    // No message id (a read receipt): plain Sent.
    let other = one_outbox(&store).await;
    assert_eq!(
        store
            .outbox_part_sent(other, None, true, None)
            .await
            .unwrap(),
        OutboxState::Sent
    );
    assert!(
        store
            .outbox_part_sent(9_999, None, true, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn statuses_out_of_order() {
    let (_dir, store) = open("order");
    let id = one_outbox(&store).await;
    let state = store
        .outbox_part_sent(id, Some("wamid.Y".into()), true, None)
        .await
        .unwrap();
    assert_eq!(state, OutboxState::Sent);
    let sent = store
        .apply_status(
            "ep",
            "wamid.Y",
            DeliveryState::Sent,
            1,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(
        sent,
        StatusApplied {
            outbox_id: Some(id),
            state: Some(OutboxState::Sent),
            advanced: false
        }
    );
    let read = store
        .apply_status(
            "ep",
            "wamid.Y",
            DeliveryState::Played,
            3,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(
        read,
        StatusApplied {
            outbox_id: Some(id),
            state: Some(OutboxState::Read),
            advanced: true
        }
    );
    let late = store
        .apply_status(
            "ep",
            "wamid.Y",
            DeliveryState::Delivered,
            2,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(late.state, Some(OutboxState::Read));
    assert!(!late.advanced);
    let failed = store
        .apply_status(
            "ep",
            "wamid.Y",
            DeliveryState::Failed,
            4,
            serde_json::json!([{"code": 131047}]),
        )
        .await
        .unwrap();
    assert_eq!(failed.state, Some(OutboxState::Failed));
    assert!(failed.advanced);
    // Another endpoint's message id is another message.
    let elsewhere = store
        .apply_status(
            "ep2",
            "wamid.Y",
            DeliveryState::Read,
            5,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(elsewhere.outbox_id, None);
}

#[tokio::test]
async fn retry_replace_dead() {
    let (_dir, store) = open("retry");
    let id = one_outbox(&store).await;
    store
        .outbox_part_sent(id, Some("wamid.1".into()), false, None)
        .await
        .unwrap();
    store
        .outbox_retry(id, 5_000, "503 from graph".into())
        .await
        .unwrap();
    store
        .outbox_retry(id, 9_000, "timeout".into())
        .await
        .unwrap();
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(row.next_attempt_ms, 9_000);
    assert_eq!(row.last_error.as_deref(), Some("timeout"));
    assert_eq!(row.parts_sent, 1);
    assert_eq!(row.state, OutboxState::Pending);

    store
        .outbox_replace(id, "{\"template\":\"hello\"}".into(), false)
        .await
        .unwrap();
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!(row.output, "{\"template\":\"hello\"}");
    assert!(!row.free_form);
    assert_eq!(
        (row.parts_sent, row.next_attempt_ms, row.attempts),
        (0, 0, 2)
    );

    let dead = DeadSend {
        outbox_id: id,
        reason: "retries_exhausted".into(),
        detail: "gave up after 2".into(),
        event: Some(NewEvent {
            endpoint: None,
            dedupe_key: format!("send-failed:{id}"),
            conversation: "u1".into(),
            kind: EventKind::SendFailed,
            body: "{}".into(),
        }),
        notice: None,
    };
    let event = store.outbox_dead(dead.clone()).await.unwrap().unwrap();
    assert_eq!(event.kind, EventKind::SendFailed);
    assert_eq!(event.endpoint, "ep");
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Dead);
    assert!(store.pending_outbox(10).await.unwrap().is_empty());
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].source.as_str(), letters[0].source_id),
        ("outbox", id)
    );
    assert_eq!(letters[0].reason, "retries_exhausted");
    // The same event again is a duplicate; an outbox dead letter is not replayable
    // as inbox.
    assert_eq!(store.outbox_dead(dead).await.unwrap(), None);
    assert_eq!(store.replay_inbox(None, 1).await.unwrap(), 0);
    // A status never revives a dead row.
    let applied = store
        .apply_status(
            "ep",
            "wamid.1",
            DeliveryState::Read,
            1,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(applied.state, Some(OutboxState::Dead));
    assert_eq!(store.pending_events(0, 10).await.unwrap(), vec![event]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_under_concurrency() {
    let dir = TempDir::new("group");
    let store = Arc::new(
        SqliteStore::open(SqliteOptions {
            path: dir.0.join("plugboard.db"),
            batch_max: 64,
            ..SqliteOptions::default()
        })
        .unwrap(),
    );
    let tasks: Vec<_> = (0..500u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_inbox("ep", i.to_le_bytes().to_vec(), i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    assert_eq!(store.depths().await.unwrap().inbox, 500);
    assert_eq!(store.pending_inbox(0, 1_000).await.unwrap().len(), 500);
}

#[tokio::test]
async fn reopen_sees_the_data() {
    let dir = TempDir::new("reopen");
    let options = SqliteOptions {
        path: dir.0.join("plugboard.db"),
        synchronous: Synchronous::Normal,
        ..SqliteOptions::default()
    };
    let (inbox, outbox) = {
        let store = SqliteStore::open(options.clone()).unwrap();
        let inbox = store.append_inbox("ep", b"x".to_vec(), 1).await.unwrap();
        let outbox = one_outbox(&store).await;
        store
            .commit_step(StepCommit {
                endpoint: "ep".into(),
                conversation: "u1".into(),
                session: Some("{\"s\":1}".into()),
                ..StepCommit::default()
            })
            .await
            .unwrap();
        (inbox, outbox)
    };
    // Migrations run again on an up-to-date file: a no-op.
    let store = SqliteStore::open(options).unwrap();
    assert_eq!(store.pending_inbox(0, 10).await.unwrap()[0].id, inbox);
    assert_eq!(store.pending_outbox(10).await.unwrap()[0].id, outbox);
    assert_eq!(
        store.session("ep", "u1").await.unwrap().as_deref(),
        Some("{\"s\":1}")
    );
    // New ids continue after the old ones.
    assert!(store.append_inbox("ep", b"y".to_vec(), 2).await.unwrap() > inbox);
}

/// Holds the writer until the returned sender is dropped or sent to, so the jobs
/// submitted meanwhile are drained as one batch: the holding job is already running
/// (its own batch drained) when this returns.
fn hold_writer(store: &SqliteStore) -> (mpsc::Sender<()>, StoreFuture<'_, ()>) {
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let hold = store.submit(move |_| {
        let _ = started_tx.send(());
        let _ = released.recv();
        Ok(())
    });
    started.recv().unwrap();
    (release, hold)
}

/// A job inserting an inbox row with `body` that then fails when `fail`; `runs` counts
/// how many times it ran.
fn counted_insert<'a>(
    store: &'a SqliteStore,
    body: &'static str,
    fail: bool,
    runs: &Arc<AtomicUsize>,
) -> StoreFuture<'a, i64> {
    let runs = Arc::clone(runs);
    store.submit(move |tx| {
        runs.fetch_add(1, Ordering::SeqCst);
        tx.execute(
            "INSERT INTO inbox (endpoint, received_ms, body) VALUES ('ep', 1, ?1)",
            [body.as_bytes()],
        )
        .ctx("test insert")?;
        if fail {
            return Err(StoreError("boom".into()));
        }
        Ok(tx.last_insert_rowid())
    })
}

async fn inbox_bodies(store: &SqliteStore) -> Vec<Vec<u8>> {
    store
        .pending_inbox(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.body)
        .collect()
}

#[tokio::test]
async fn failing_job_keeps_the_rest_of_its_batch() {
    let (dir, store) = open("savepoint");
    let (release, hold) = hold_writer(&store);
    let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
    let good1 = counted_insert(&store, "good1", false, &runs[0]);
    let bad = counted_insert(&store, "bad", true, &runs[1]);
    let broken_sql = store.submit(|tx| {
        tx.execute("INSERT INTO nowhere VALUES (1)", [])
            .ctx("test insert")
    });
    let good2 = counted_insert(&store, "good2", false, &runs[2]);
    // Proves the group commit: inside the batch both good rows are there, yet another
    // connection sees nothing committed.
    let path = dir.0.join("nested").join("plugboard.db");
    let probe = store.submit(move |tx| {
        let count = |conn: &Connection| {
            conn.query_row("SELECT COUNT(*) FROM inbox", [], |row| row.get::<_, i64>(0))
                .ctx("test count")
        };
        let other = Connection::open(&path).ctx("test open")?;
        Ok((count(tx)?, count(&other)?))
    });
    release.send(()).unwrap();
    hold.await.unwrap();
    assert!(good1.await.is_ok());
    assert_eq!(bad.await.unwrap_err().0, "boom");
    assert!(broken_sql.await.unwrap_err().0.contains("nowhere"));
    assert!(good2.await.is_ok());
    assert_eq!(probe.await.unwrap(), (2, 0));
    // The fast attempt stopped at `bad` and was rolled back; the careful re-run ran
    // every job once more, each in its own savepoint.
    let runs = runs.map(|r| r.load(Ordering::SeqCst));
    assert_eq!(runs, [2, 2, 1]);
    // Rolled back, then re-run: one row each, ids as if run once.
    assert_eq!(
        inbox_bodies(&store).await,
        [b"good1".to_vec(), b"good2".to_vec()]
    );
}

#[tokio::test]
async fn a_batch_without_failures_runs_each_job_once() {
    let (_dir, store) = open("fast-path");
    let (release, hold) = hold_writer(&store);
    let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
    let jobs: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .zip(&runs)
        .map(|(body, runs)| counted_insert(&store, body, false, runs))
        .collect();
    release.send(()).unwrap();
    hold.await.unwrap();
    let mut ids = Vec::new();
    for job in jobs {
        ids.push(job.await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(runs.map(|r| r.load(Ordering::SeqCst)), [1, 1, 1]);
    assert_eq!(
        inbox_bodies(&store).await,
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

#[tokio::test]
async fn panicking_job_is_contained() {
    let (_dir, store) = open("panic");
    let panicked = store.submit::<(), _>(|_| panic!("job panic (expected by the test)"));
    let after = store.append_inbox("ep", b"x".to_vec(), 1);
    assert!(panicked.await.is_err());
    assert!(after.await.is_ok());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn panicking_job_in_a_batch_runs_once_and_fails_alone() {
    let (_dir, store) = open("panic-batch");
    let (release, hold) = hold_writer(&store);
    let runs = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
    let before = counted_insert(&store, "before", false, &runs[0]);
    let panics = Arc::clone(&runs[1]);
    let panicked = store.submit::<(), _>(move |tx| {
        panics.fetch_add(1, Ordering::SeqCst);
        tx.execute(
            "INSERT INTO inbox (endpoint, received_ms, body) VALUES ('ep', 1, x'00')",
            [],
        )
        .ctx("test insert")?;
        panic!("job panic (expected by the test)")
    });
    let after = counted_insert(&store, "after", false, &runs[2]);
    release.send(()).unwrap();
    hold.await.unwrap();
    assert!(before.await.is_ok());
    assert_eq!(panicked.await.unwrap_err().0, "store job panicked");
    assert!(after.await.is_ok());
    // The panicking job is not run again by the careful re-run.
    assert_eq!(runs.map(|r| r.load(Ordering::SeqCst)), [2, 1, 1]);
    assert_eq!(
        inbox_bodies(&store).await,
        [b"before".to_vec(), b"after".to_vec()]
    );
}

#[tokio::test]
async fn deleting_a_seeded_endpoint_leaves_a_tombstone_and_closes_its_outbox() {
    use crate::store::admin::{AdminStore, EndpointState, Seeded};
    let (_dir, store) = open("tombstone");
    let seeded = store.seed_endpoint("ep", "{}".into(), "h1".into()).await;
    assert_eq!(seeded.unwrap(), Seeded::Inserted);
    let id = one_outbox(&store).await;
    store
        .commit_step(StepCommit {
            endpoint: "ep".into(),
            conversation: "u1".into(),
            session: Some("{}".into()),
            inbound_ms: Some(1),
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert!(store.delete_endpoint("ep").await.unwrap());
    // Its unsent reply is a dead letter, its sessions and windows are gone.
    let row = store.outbox_row(id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Dead);
    let letters = store.dead_letters(10).await.unwrap();
    assert!(
        letters
            .iter()
            .any(|d| d.reason == "endpoint_deleted" && d.source_id == id),
        "{letters:?}"
    );
    assert_eq!(store.session("ep", "u1").await.unwrap(), None);
    assert_eq!(store.last_inbound("ep", "u1").await.unwrap(), None);
    assert!(store.endpoint_row("ep").unwrap().is_none());
    assert!(store.endpoints().unwrap().is_empty());
    // The unchanged config keeps it deleted; a second delete finds nothing.
    let seeded = store.seed_endpoint("ep", "{}".into(), "h1".into()).await;
    assert_eq!(seeded.unwrap(), Seeded::Kept);
    assert!(store.endpoint_row("ep").unwrap().is_none());
    assert!(!store.delete_endpoint("ep").await.unwrap());
    // Its id can be created again, once.
    assert!(
        store
            .insert_endpoint("ep", "{\"v\":2}".into())
            .await
            .unwrap()
    );
    let row = store.endpoint_row("ep").unwrap().unwrap();
    assert_eq!(
        (row.state, row.spec.as_str()),
        (EndpointState::Active, "{\"v\":2}")
    );
    assert!(!store.insert_endpoint("ep", "{}".into()).await.unwrap());
    // A changed config brings a deleted endpoint back as the file has it.
    assert!(store.delete_endpoint("ep").await.unwrap());
    let seeded = store
        .seed_endpoint("ep", "{\"v\":3}".into(), "h2".into())
        .await;
    assert_eq!(seeded.unwrap(), Seeded::Updated);
    assert_eq!(store.endpoint_row("ep").unwrap().unwrap().spec, "{\"v\":3}");
}

#[tokio::test]
async fn prune_removes_old_finished_rows() {
    let (_dir, store) = open("prune");
    let old = store
        .append_inbox("ep", b"old".to_vec(), 100)
        .await
        .unwrap();
    let new = store
        .append_inbox("ep", b"new".to_vec(), now_ms())
        .await
        .unwrap();
    let events = store
        .record_demux(vec![
            Demuxed {
                inbox_id: old,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Events(vec![event("m1", "u1")]),
            },
            Demuxed {
                inbox_id: new,
                endpoint: "ep".into(),
                outcome: DemuxOutcome::Dead {
                    reason: "decode".into(),
                    detail: String::new(),
                },
            },
        ])
        .await
        .unwrap();
    let id = one_outbox(&store).await;
    store
        .outbox_part_sent(id, Some("wamid.P".into()), true, None)
        .await
        .unwrap();
    store
        .apply_status(
            "ep",
            "wamid.P",
            DeliveryState::Read,
            1,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    // Nothing is done yet but the inbox row: events are still pending.
    assert_eq!(store.prune(200).await.unwrap(), 1);
    store.events_done(vec![events[0][0].id]).await.unwrap();
    let pending = one_outbox(&store).await;
    // Everything done before the future goes; pending and dead rows stay.
    let deleted = store.prune(u64::MAX).await.unwrap();
    assert_eq!(deleted, 4); // event, outbox row, its message id, its status
    assert_eq!(store.outbox_row(id).await.unwrap(), None);
    assert!(store.outbox_row(pending).await.unwrap().is_some());
    assert_eq!(store.replay_inbox(None, 1).await.unwrap(), 1);
    // The message id is forgotten: a late status finds no row.
    let late = store
        .apply_status(
            "ep",
            "wamid.P",
            DeliveryState::Read,
            2,
            serde_json::Value::Null,
        )
        .await
        .unwrap();
    assert_eq!(late.outbox_id, None);
    // Ids are never reused after a prune.
    assert!(store.append_inbox("ep", b"z".to_vec(), 1).await.unwrap() > new);
}

/// CPU time (ns) the writer thread has used so far, from `/proc` (Linux only).
fn writer_cpu_ns() -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "plugboard-store" {
            let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Micro-benchmark: `cargo test -p plugboard --release --lib store::sqlite::tests::bench_append_inbox -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
async fn bench_append_inbox() {
    const TASKS: u64 = 32;
    const PER_TASK: u64 = 625;
    let dir = TempDir::new("bench");
    let store = Arc::new(
        SqliteStore::open(SqliteOptions {
            path: dir.0.join("plugboard.db"),
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        })
        .unwrap(),
    );
    store.ping().await.unwrap();
    let cpu_before = writer_cpu_ns();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let body =
                        format!("{{\"task\":{t},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200));
                    store
                        .append_inbox("ep", body.into_bytes(), i)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let wall = started.elapsed();
    let jobs = TASKS * PER_TASK;
    let cpu = writer_cpu_ns().zip(cpu_before).map(|(a, b)| a - b);
    println!(
        "append_inbox x{jobs} from {TASKS} tasks: wall {:.1} ms ({:.2} µs/job), writer CPU {}",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / jobs as f64,
        cpu.map_or("n/a".to_string(), |ns| format!(
            "{:.1} ms ({:.2} µs/job)",
            ns as f64 / 1e6,
            ns as f64 / 1e3 / jobs as f64
        )),
    );
    assert_eq!(store.depths().await.unwrap().inbox, jobs);
}

#[test]
fn empty_path_is_refused() {
    assert!(SqliteStore::open(SqliteOptions::default()).is_err());
}

#[tokio::test]
async fn store_is_object_safe_and_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SqliteStore>();
    let dir = TempDir::new("dyn");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&dir.0).unwrap());
    assert_eq!(store.session("ep", "u").await.unwrap(), None);
    assert!(dir.0.join("plugboard.db").exists());
}

/// The `synchronous` setting a job of this durability commits under.
async fn synchronous_seen(store: &SqliteStore, durability: Durability) -> i64 {
    store
        .submit_job(durability, |tx| {
            query_one(tx, "PRAGMA synchronous", [], |row| row.get(0)).ctx("pragma")
        })
        .await
        .unwrap()
}

/// Admin changes are fsync'd (`synchronous=FULL`, 2) before their answer even when the
/// store is configured `normal`; pipeline and webhook writes then stay `NORMAL` (1).
#[tokio::test]
async fn admin_writes_commit_with_full_sync_whatever_the_setting() {
    use crate::store::admin::AdminStore;
    let dir = TempDir::new("admin-durable");
    let store = SqliteStore::open(SqliteOptions {
        path: dir.0.join("plugboard.db"),
        synchronous: Synchronous::Normal,
        ..SqliteOptions::default()
    })
    .unwrap();
    assert_eq!(synchronous_seen(&store, Durability::Admin).await, 2);
    assert_eq!(synchronous_seen(&store, Durability::Edge).await, 1);
    assert_eq!(synchronous_seen(&store, Durability::Batched).await, 1);
    // The admin methods take that path: each commit counted as a FULL one.
    let before = store.full_commits();
    assert!(store.insert_endpoint("ep", "{}".into()).await.unwrap());
    assert_eq!(store.full_commits(), before + 1);
    store.append_inbox("ep", b"{}".to_vec(), 1).await.unwrap();
    assert_eq!(
        store.full_commits(),
        before + 1,
        "a webhook write under `normal`"
    );
    // Under `full` the webhook's write is FULL too, the pipeline's not.
    drop(store);
    let store = SqliteStore::open(SqliteOptions::new(dir.0.join("plugboard.db"))).unwrap();
    assert_eq!(synchronous_seen(&store, Durability::Admin).await, 2);
    assert_eq!(synchronous_seen(&store, Durability::Edge).await, 2);
    assert_eq!(synchronous_seen(&store, Durability::Batched).await, 1);
    assert!(wants_full(
        Synchronous::Normal,
        [Durability::Batched, Durability::Admin].into_iter()
    ));
}

/// With a key, the secret columns hold sealed values only; the store reads them back
/// in clear, refuses to open without the key, and a reseal rotates them.
#[tokio::test]
async fn secret_columns_are_sealed_with_a_key_and_rotated() {
    use crate::secretbox::{Keyring, SecretKey};
    use crate::store::admin::AdminStore;
    use crate::store::business::{BusinessStore, StoredAccount};
    let dir = TempDir::new("sealed");
    let path = dir.0.join("plugboard.db");
    let old = SecretKey::from_bytes([1; 32]);
    let new = SecretKey::from_bytes([2; 32]);
    let options = |keys: Keyring| SqliteOptions {
        path: path.clone(),
        keys,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(options(Keyring::new(Some(old.clone())))).unwrap();
    let spec = r#"{"id":"ep","flow":"/f.json","phone_number_id":"1","verify_token":"vt-secret","access_token":"tok-secret","app_secret":"env:APP_SECRET"}"#;
    assert!(store.insert_endpoint("ep", spec.into()).await.unwrap());
    store
        .add_subscription(
            "ep",
            "https://h.test/".into(),
            "hook-secret-0123456789".into(),
            vec![],
        )
        .await
        .unwrap();
    store
        .save_account(
            StoredAccount {
                id: "1001".into(),
                name: Some("n".into()),
                portfolio: None,
                graph_api_base: "https://g.test".into(),
                graph_api_version: "v23.0".into(),
                token: "system-secret".into(),
                subscribed: None,
                refreshed_ms: 1,
                created_ms: 1,
            },
            vec![],
        )
        .await
        .unwrap();
    // Clear through the store.
    let row = store.endpoint_row("ep").unwrap().unwrap();
    let read: serde_json::Value = serde_json::from_str(&row.spec).unwrap();
    assert_eq!(read["access_token"], "tok-secret");
    assert_eq!(read["verify_token"], "vt-secret");
    assert_eq!(read["app_secret"], "env:APP_SECRET");
    assert_eq!(
        store.subscriptions("ep").unwrap()[0].secret,
        "hook-secret-0123456789"
    );
    assert_eq!(store.accounts().unwrap()[0].token, "system-secret");
    let due = store.due_deliveries(u64::MAX, 0, 10).await.unwrap();
    assert!(due.is_empty());
    // Sealed in the columns.
    let raw = |sql: &str| -> String {
        store
            .read(|conn| query_one(conn, sql, [], |r| r.get(0)).ctx("raw"))
            .unwrap()
    };
    let raw_spec = raw("SELECT spec FROM endpoints");
    assert!(!raw_spec.contains("tok-secret") && !raw_spec.contains("vt-secret"));
    assert!(
        raw_spec.contains("env:APP_SECRET"),
        "references stay references"
    );
    assert!(raw("SELECT secret FROM hook_subscriptions").starts_with("enc:v1:"));
    assert!(raw("SELECT token FROM wa_accounts").starts_with("enc:v1:"));
    assert_eq!(store.secrets_report().sealed, 0, "counted at open");
    drop(store);

    // No key, a wrong key: refused at open, with the reason.
    let e = SqliteStore::open(options(Keyring::default()))
        .err()
        .unwrap();
    assert!(
        e.0.contains("PLUGBOARD_SECRET_KEY") && e.0.contains(old.id()),
        "{e}"
    );
    let e = SqliteStore::open(options(Keyring::new(Some(new.clone()))))
        .err()
        .unwrap();
    assert!(e.0.contains(old.id()), "{e}");

    // Rotate: everything re-sealed with the new key in one go.
    let store = SqliteStore::open(options(
        Keyring::new(Some(new.clone())).also_opening(Some(old)),
    ))
    .unwrap();
    assert_eq!(store.secrets_report().sealed, 4);
    assert_eq!(store.secrets_report().references, 1);
    let report = store.reseal_secrets().await.unwrap();
    assert_eq!((report.rewritten, report.sealed, report.clear), (4, 4, 0));
    drop(store);
    let store = SqliteStore::open(options(Keyring::new(Some(new.clone())))).unwrap();
    assert_eq!(store.accounts().unwrap()[0].token, "system-secret");
    // Back to clear.
    drop(store);
    let store = SqliteStore::open(options(Keyring::new(None).also_opening(Some(new)))).unwrap();
    let report = store.reseal_secrets().await.unwrap();
    assert_eq!((report.sealed, report.clear), (0, 4));
    drop(store);
    let store = SqliteStore::open(options(Keyring::default())).unwrap();
    assert_eq!(
        store.subscriptions("ep").unwrap()[0].secret,
        "hook-secret-0123456789"
    );
}
