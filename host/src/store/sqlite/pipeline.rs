//! The pipeline's tables (inbox, events, sessions, outbox, statuses, timers, dead
//! letters): the [`Store`] methods of [`SqliteStore`].

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::{SqliteStore, admin, business};
use crate::store::admin::Notice;
use crate::store::{
    DeadLetter, DeadSend, DemuxOutcome, Demuxed, EventRow, InboxRow, NewEvent, OutboxRow,
    OutboxState, QueueDepths, StatusApplied, StepCommit, Store, StoreError, StoreFuture, TimerRow,
};

impl Store for SqliteStore {
    fn append_inbox(
        &self,
        endpoint: &str,
        body: Vec<u8>,
        received_ms: u64,
    ) -> StoreFuture<'_, i64> {
        let endpoint = endpoint.to_owned();
        self.submit_durable(move |tx| {
            tx.prepare_cached("INSERT INTO inbox (endpoint, received_ms, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut stmt| stmt.insert(params![endpoint, db_int(received_ms), body]))
                .ctx("appending to the inbox")
        })
    }

    fn pending_inbox(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<InboxRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, received_ms, body FROM inbox
                     WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2",
                )
                .ctx("reading the inbox")?;
            let rows = stmt
                .query_map(params![after_id, db_limit(limit)], |row| {
                    Ok(InboxRow {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        received_ms: from_db(row.get(2)?),
                        body: row.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading the inbox")?;
            Ok(rows)
        })
    }

    fn record_demux(&self, batch: Vec<Demuxed>) -> StoreFuture<'_, Vec<Vec<EventRow>>> {
        self.submit(move |tx| {
            let now = now_ms();
            let mut recorded = Vec::with_capacity(batch.len());
            for item in &batch {
                match &item.outcome {
                    DemuxOutcome::Events(events) => {
                        let mut new = Vec::new();
                        for event in events {
                            let endpoint = event.endpoint.as_deref().unwrap_or(&item.endpoint);
                            new.extend(insert_event(tx, endpoint, event, now)?);
                        }
                        exec(
                            tx,
                            "UPDATE inbox SET state = 'done', done_ms = ?2 WHERE id = ?1",
                            params![item.inbox_id, db_int(now)],
                        )
                        .ctx("marking an inbox row done")?;
                        recorded.push(new);
                    }
                    DemuxOutcome::Dead { reason, detail } => {
                        // Only a row still pending: the same row decoded twice (the
                        // channel and the periodic scan) must not leave two dead letters.
                        let changed = exec(
                            tx,
                            "UPDATE inbox SET state = 'dead', done_ms = ?2
                                 WHERE id = ?1 AND state = 'pending'",
                            params![item.inbox_id, db_int(now)],
                        )
                        .ctx("marking an inbox row dead")?;
                        if changed == 0 {
                            recorded.push(Vec::new());
                            continue;
                        }
                        insert_dead_letter(
                            tx,
                            &item.endpoint,
                            "inbox",
                            item.inbox_id,
                            reason,
                            detail,
                            now,
                        )?;
                        recorded.push(Vec::new());
                    }
                }
            }
            Ok(recorded)
        })
    }

    fn pending_events(&self, after_id: i64, limit: usize) -> StoreFuture<'_, Vec<EventRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE state = 'pending' AND id > ?1 ORDER BY id LIMIT ?2"
                ))
                .ctx("reading events")?;
            let rows = stmt
                .query_map(params![after_id, db_limit(limit)], event_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading events")?;
            Ok(rows)
        })
    }

    fn insert_events(
        &self,
        endpoint: &str,
        events: Vec<NewEvent>,
    ) -> StoreFuture<'_, Vec<EventRow>> {
        let endpoint = endpoint.to_owned();
        self.submit(move |tx| {
            let now = now_ms();
            let mut new = Vec::new();
            for event in &events {
                new.extend(insert_event(tx, &endpoint, event, now)?);
            }
            Ok(new)
        })
    }

    fn events_done(&self, ids: Vec<i64>) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            let now = db_int(now_ms());
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE events SET state = 'done', done_ms = ?2
                     WHERE id = ?1 AND state <> 'done'",
                )
                .ctx("marking events done")?;
            for &id in &ids {
                stmt.execute(params![id, now])
                    .ctx("marking an event done")?;
            }
            Ok(())
        })
    }

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

    fn session(&self, endpoint: &str, conversation: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
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

    fn last_inbound(&self, endpoint: &str, conversation: &str) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
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

    fn pending_outbox(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?1"
                ))
                .ctx("reading the outbox")?;
            let rows = stmt
                .query_map([db_limit(limit)], outbox_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading the outbox")?;
            Ok(rows)
        })
    }

    fn outbox_part_sent(
        &self,
        outbox_id: i64,
        message_id: Option<String>,
        last: bool,
        notice: Option<Notice>,
    ) -> StoreFuture<'_, OutboxState> {
        self.submit(move |tx| {
            let now = now_ms();
            // Counting the part also reads the row (the update leaves both columns as
            // they were); no row, no update.
            let (endpoint, state): (String, String) = query_one(tx,
                    "UPDATE outbox SET parts_sent = parts_sent + 1, updated_ms = ?2 WHERE id = ?1
                     RETURNING endpoint, state",
                    params![outbox_id, db_int(now)],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .ctx("counting a sent part")?
                .ok_or_else(|| StoreError(format!("outbox row {outbox_id} not found")))?;
            let state = OutboxState::parse(&state)
                .ok_or_else(|| StoreError(format!("unknown outbox state {state:?}")))?;
            if let Some(message_id) = &message_id {
                exec(tx,
                    "INSERT INTO sent_messages (endpoint, message_id, outbox_id)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (endpoint, message_id) DO UPDATE SET outbox_id = excluded.outbox_id",
                    params![endpoint, message_id, outbox_id],
                )
                .ctx("recording a sent message id")?;
            }
            if !last || state == OutboxState::Dead {
                return Ok(state);
            }
            // Statuses that beat this response to the store were kept by message id.
            let furthest: Option<i64> = query_one(tx,
                    "SELECT MAX(s.rank) FROM sent_messages m
                     JOIN statuses s ON s.endpoint = m.endpoint AND s.message_id = m.message_id
                     WHERE m.outbox_id = ?1",
                    [outbox_id],
                    |row| row.get(0),
                )
                .ctx("reading earlier statuses")?;
            let new = state
                .max(OutboxState::Sent)
                .max(furthest.map_or(OutboxState::Sent, state_of_rank));
            if new != state {
                set_outbox_state(tx, outbox_id, new, now)?;
            }
            if let Some(notice) = &notice {
                admin::emit(tx, &endpoint, notice)?;
            }
            Ok(new)
        })
    }

    fn outbox_retry(
        &self,
        outbox_id: i64,
        next_attempt_ms: u64,
        error: String,
    ) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(
                tx,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,
                     last_error = ?3, updated_ms = ?4
                 WHERE id = ?1",
                params![outbox_id, db_int(next_attempt_ms), error, db_int(now_ms())],
            )
            .ctx("recording a failed attempt")?;
            Ok(())
        })
    }

    fn outbox_replace(
        &self,
        outbox_id: i64,
        output: String,
        free_form: bool,
    ) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(
                tx,
                "UPDATE outbox SET output = ?2, free_form = ?3, parts_sent = 0,
                     next_attempt_ms = 0, updated_ms = ?4
                 WHERE id = ?1",
                params![outbox_id, output, free_form, db_int(now_ms())],
            )
            .ctx("replacing an outbox output")?;
            Ok(())
        })
    }

    fn outbox_dead(&self, dead: DeadSend) -> StoreFuture<'_, Option<EventRow>> {
        self.submit(move |tx| {
            let now = now_ms();
            let endpoint: String = query_one(
                tx,
                "UPDATE outbox SET state = 'dead', last_error = ?2, updated_ms = ?3 WHERE id = ?1
                 RETURNING endpoint",
                params![dead.outbox_id, dead.detail, db_int(now)],
                |row| row.get(0),
            )
            .optional()
            .ctx("marking an outbox row dead")?
            .ok_or_else(|| StoreError(format!("outbox row {} not found", dead.outbox_id)))?;
            insert_dead_letter(
                tx,
                &endpoint,
                "outbox",
                dead.outbox_id,
                &dead.reason,
                &dead.detail,
                now,
            )?;
            if let Some(notice) = &dead.notice {
                admin::emit(tx, &endpoint, notice)?;
            }
            match &dead.event {
                Some(event) => insert_event(tx, &endpoint, event, now),
                None => Ok(None),
            }
        })
    }

    fn apply_status(
        &self,
        endpoint: &str,
        message_id: &str,
        status: &str,
        at_ms: u64,
        errors: String,
    ) -> StoreFuture<'_, StatusApplied> {
        let endpoint = endpoint.to_owned();
        let message_id = message_id.to_owned();
        let status = status.to_owned();
        self.submit(move |tx| {
            // The message id's row and that row's state, in one lookup.
            let found: Option<(i64, Option<String>)> = query_one(
                tx,
                "SELECT m.outbox_id, o.state FROM sent_messages m
                 LEFT JOIN outbox o ON o.id = m.outbox_id
                 WHERE m.endpoint = ?1 AND m.message_id = ?2",
                params![endpoint, message_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .ctx("looking up a message id")?;
            let outbox_id = found.as_ref().map(|(id, _)| *id);
            let current = found
                .and_then(|(_, state)| state)
                .map(|s| {
                    OutboxState::parse(&s)
                        .ok_or_else(|| StoreError(format!("unknown outbox state {s:?}")))
                })
                .transpose()?;
            // A status this store does not rank (a future Meta addition) changes nothing.
            let Some((target, rank)) = status_rank(&status) else {
                tracing::debug!(status, "ignoring an unknown delivery status");
                return Ok(StatusApplied {
                    outbox_id,
                    state: current,
                    advanced: false,
                });
            };
            // Keep the furthest status per message id, whether or not its row is known.
            let message_advanced = exec(
                tx,
                "INSERT INTO statuses (endpoint, message_id, status, rank, at_ms, errors)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (endpoint, message_id) DO UPDATE
                     SET status = excluded.status, rank = excluded.rank,
                         at_ms = excluded.at_ms, errors = excluded.errors
                     WHERE excluded.rank > statuses.rank",
                params![endpoint, message_id, status, rank, db_int(at_ms), errors],
            )
            .ctx("recording a status")?
                > 0;
            match (outbox_id, current) {
                (Some(id), Some(state)) if takes_statuses(state) => {
                    if target > state {
                        set_outbox_state(tx, id, target, now_ms())?;
                        Ok(StatusApplied {
                            outbox_id,
                            state: Some(target),
                            advanced: true,
                        })
                    } else {
                        Ok(StatusApplied {
                            outbox_id,
                            state: Some(state),
                            advanced: false,
                        })
                    }
                }
                // No row yet, or one still pending (its later parts are not out) or dead:
                // the status is kept for `outbox_part_sent` to reconcile.
                _ => Ok(StatusApplied {
                    outbox_id,
                    state: current,
                    advanced: message_advanced,
                }),
            }
        })
    }

    fn outbox_row(&self, outbox_id: i64) -> StoreFuture<'_, Option<OutboxRow>> {
        self.submit(move |tx| {
            query_one(
                tx,
                concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE id = ?1"),
                [outbox_id],
                outbox_row,
            )
            .optional()
            .ctx("reading an outbox row")
        })
    }

    fn due_timers(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<TimerRow>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, conversation, kind, due_ms FROM timers
                     WHERE due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
                )
                .ctx("reading timers")?;
            let rows = stmt
                .query_map(params![db_int(now_ms), db_limit(limit)], |row| {
                    Ok(TimerRow {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        conversation: row.get(2)?,
                        kind: row.get(3)?,
                        due_ms: from_db(row.get(4)?),
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading timers")?;
            Ok(rows)
        })
    }

    fn timer_done(&self, id: i64) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            exec(tx, "DELETE FROM timers WHERE id = ?1", [id]).ctx("removing a timer")?;
            Ok(())
        })
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        self.submit(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, endpoint, source, source_id, reason, detail, created_ms,
                         replayed_ms
                     FROM dead_letters ORDER BY id DESC LIMIT ?1",
                )
                .ctx("reading dead letters")?;
            let rows = stmt
                .query_map([db_limit(limit)], |row| {
                    Ok(DeadLetter {
                        id: row.get(0)?,
                        endpoint: row.get(1)?,
                        source: row.get(2)?,
                        source_id: row.get(3)?,
                        reason: row.get(4)?,
                        detail: row.get(5)?,
                        created_ms: from_db(row.get(6)?),
                        replayed_ms: row.get::<_, Option<i64>>(7)?.map(from_db),
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .ctx("reading dead letters")?;
            Ok(rows)
        })
    }

    fn replay_inbox(&self, dead_letter_id: Option<i64>, now_ms: u64) -> StoreFuture<'_, u64> {
        self.submit(move |tx| {
            let targets: Vec<(i64, i64)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id, source_id FROM dead_letters
                         WHERE source = 'inbox' AND replayed_ms IS NULL
                           AND (?1 IS NULL OR id = ?1)
                         ORDER BY id",
                    )
                    .ctx("reading dead letters")?;
                stmt.query_map([dead_letter_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .ctx("reading dead letters")?
            };
            let mut replayed = 0;
            for (letter, inbox_id) in targets {
                exec(
                    tx,
                    "UPDATE inbox SET state = 'pending', done_ms = NULL WHERE id = ?1",
                    [inbox_id],
                )
                .ctx("putting an inbox row back")?;
                exec(
                    tx,
                    "UPDATE dead_letters SET replayed_ms = ?2 WHERE id = ?1",
                    params![letter, db_int(now_ms)],
                )
                .ctx("marking a dead letter replayed")?;
                replayed += 1;
            }
            Ok(replayed)
        })
    }

    fn depths(&self) -> StoreFuture<'_, QueueDepths> {
        self.submit(|tx| {
            query_one(
                tx,
                "SELECT (SELECT COUNT(*) FROM inbox WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM events WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM dead_letters WHERE replayed_ms IS NULL)",
                [],
                |row| {
                    Ok(QueueDepths {
                        inbox: from_db(row.get(0)?),
                        events: from_db(row.get(1)?),
                        outbox: from_db(row.get(2)?),
                        dead_letters: from_db(row.get(3)?),
                    })
                },
            )
            .ctx("counting rows")
        })
    }

    fn prune(&self, before_ms: u64) -> StoreFuture<'_, u64> {
        self.submit(move |tx| {
            let before = db_int(before_ms);
            business::keep_campaign_states(tx, before)?;
            // Finished outbox rows go too (dead ones stay with their dead letters), with
            // their message ids and those ids' statuses; then statuses whose message never
            // got a row. The outbox predicate is the same in each statement and nothing
            // else writes in between: they all see the same rows.
            let statements = [
                "DELETE FROM events WHERE state = 'done' AND created_ms < ?1",
                "DELETE FROM inbox WHERE state = 'done' AND received_ms < ?1",
                "DELETE FROM statuses WHERE (endpoint, message_id) IN (
                     SELECT m.endpoint, m.message_id FROM sent_messages m
                     JOIN outbox o ON o.id = m.outbox_id
                     WHERE o.state IN ('sent', 'delivered', 'read', 'failed')
                       AND o.updated_ms < ?1)",
                "DELETE FROM sent_messages WHERE outbox_id IN (
                     SELECT id FROM outbox
                     WHERE state IN ('sent', 'delivered', 'read', 'failed') AND updated_ms < ?1)",
                "DELETE FROM outbox
                 WHERE state IN ('sent', 'delivered', 'read', 'failed') AND updated_ms < ?1",
                "DELETE FROM statuses WHERE at_ms < ?1 AND NOT EXISTS (
                     SELECT 1 FROM sent_messages m
                     WHERE m.endpoint = statuses.endpoint AND m.message_id = statuses.message_id)",
                // Finished event webhook deliveries (their payloads hold message content);
                // orphans of a deleted subscription whatever their state.
                "DELETE FROM hook_deliveries WHERE (state <> 'pending' AND done_ms < ?1)
                     OR (created_ms < ?1 AND subscription NOT IN (SELECT id FROM hook_subscriptions))",
            ];
            let mut deleted = 0u64;
            for sql in statements {
                let n = exec(tx, sql, [before]).ctx("pruning")?;
                deleted = deleted.saturating_add(u64::try_from(n).unwrap_or(0));
            }
            Ok(deleted)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.submit(|_| Ok(()))
    }
}
