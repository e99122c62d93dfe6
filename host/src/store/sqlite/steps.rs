//! [`StepStore`] on SQLite: a step's one transaction over `sessions`, `outbox`, `windows`,
//! `timers`, `events`, event-webhook deliveries and the quota; the session and window
//! reads go to a reader connection.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::{SqliteStore, admin, business};
use crate::store::{StepCommit, StepStore, StoreFuture};

impl StepStore for SqliteStore {
    fn commit_step(&self, step: StepCommit) -> StoreFuture<'_, Vec<i64>> {
        self.submit(move |tx| {
            let now = db_int(now_ms());
            let StepCommit {
                endpoint,
                conversation,
                session,
                outbox,
                inbound_ms,
                timers,
                cancel_timers,
                event_done,
                notices,
                quota,
            } = &step;
            if let Some(record) = session {
                exec(
                    tx,
                    "INSERT INTO sessions (endpoint, conversation, record, updated_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (endpoint, conversation)
                     DO UPDATE SET record = excluded.record, updated_ms = excluded.updated_ms",
                    params![endpoint, conversation, record, now],
                )
                .ctx("saving the session")?;
            }
            let mut ids = Vec::with_capacity(outbox.len());
            for out in outbox {
                let id = tx
                    .prepare_cached(
                        "INSERT INTO outbox (endpoint, conversation, recipient, business, output,
                             free_form, next_attempt_ms, source_event, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                    )
                    .and_then(|mut stmt| {
                        stmt.insert(params![
                            endpoint,
                            conversation,
                            out.recipient,
                            out.business,
                            out.output,
                            out.free_form,
                            db_int(out.not_before_ms),
                            event_done,
                            now,
                        ])
                    })
                    .ctx("inserting an outbox row")?;
                ids.push(id);
            }
            if let Some(inbound) = inbound_ms {
                // A late, older message must not move the window back.
                exec(
                    tx,
                    "INSERT INTO windows (endpoint, conversation, last_inbound_ms)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (endpoint, conversation) DO UPDATE
                     SET last_inbound_ms = MAX(last_inbound_ms, excluded.last_inbound_ms)",
                    params![endpoint, conversation, db_int(*inbound)],
                )
                .ctx("updating the window")?;
            }
            // Cancel first so a kind both cancelled and set ends up set.
            for kind in cancel_timers.iter().chain(timers.iter().map(|t| &t.kind)) {
                exec(
                    tx,
                    "DELETE FROM timers WHERE endpoint = ?1 AND conversation = ?2 AND kind = ?3",
                    params![endpoint, conversation, kind],
                )
                .ctx("cancelling a timer")?;
            }
            // A replaced timer gets a new id (delete + insert, AUTOINCREMENT), so a
            // `timer_done` for the old one that fired meanwhile cannot remove it.
            for timer in timers {
                exec(
                    tx,
                    "INSERT INTO timers (endpoint, conversation, kind, due_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![endpoint, conversation, timer.kind, db_int(timer.due_ms)],
                )
                .ctx("setting a timer")?;
            }
            if let Some(id) = event_done {
                exec(
                    tx,
                    "UPDATE events SET state = 'done', done_ms = ?2
                     WHERE id = ?1 AND state <> 'done'",
                    params![id, now],
                )
                .ctx("marking the event done")?;
            }
            for notice in notices {
                admin::emit(tx, endpoint, notice)?;
            }
            if let Some(q) = quota {
                business::count_replies(tx, endpoint, &q.month, q.replies, q.told.as_deref())?;
            }
            Ok(ids)
        })
    }

    fn session(&self, endpoint: &str, conversation: &str) -> StoreFuture<'_, Option<String>> {
        let (endpoint, conversation) = (endpoint.to_owned(), conversation.to_owned());
        self.read_async(move |conn| {
            conn.prepare_cached(
                "SELECT record FROM sessions WHERE endpoint = ?1 AND conversation = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![endpoint, conversation], |row| row.get(0))
                    .optional()
            })
            .ctx("reading a session")
        })
    }

    fn last_inbound(&self, endpoint: &str, conversation: &str) -> StoreFuture<'_, Option<u64>> {
        let (endpoint, conversation) = (endpoint.to_owned(), conversation.to_owned());
        self.read_async(move |conn| {
            conn.prepare_cached(
                "SELECT last_inbound_ms FROM windows WHERE endpoint = ?1 AND conversation = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![endpoint, conversation], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map(|ms| ms.map(from_db))
            .ctx("reading a window")
        })
    }
}
