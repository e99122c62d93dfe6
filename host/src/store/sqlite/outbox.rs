//! [`OutboxStore`] on SQLite: the `outbox`, `sent_messages` and `statuses` tables.

use rusqlite::{OptionalExtension, params};

use super::rows::*;
use super::{SqliteStore, admin};
use crate::store::admin::Notice;
use crate::store::{
    DeadLetterSource, DeadSend, DeliveryState, EventRow, OutboxRow, OutboxState, OutboxStore,
    StatusApplied, StoreError, StoreFuture,
};

impl OutboxStore for SqliteStore {
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
                DeadLetterSource::Outbox,
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
        status: DeliveryState,
        at_ms: u64,
        errors: serde_json::Value,
    ) -> StoreFuture<'_, StatusApplied> {
        let endpoint = endpoint.to_owned();
        let message_id = message_id.to_owned();
        let errors = errors.to_string();
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
            let (target, rank) = (status.state(), status_rank(status));
            // Keep the furthest status per message id, whether or not its row is known.
            let message_advanced = exec(
                tx,
                "INSERT INTO statuses (endpoint, message_id, status, rank, at_ms, errors)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (endpoint, message_id) DO UPDATE
                     SET status = excluded.status, rank = excluded.rank,
                         at_ms = excluded.at_ms, errors = excluded.errors
                     WHERE excluded.rank > statuses.rank",
                params![
                    endpoint,
                    message_id,
                    status.as_str(),
                    rank,
                    db_int(at_ms),
                    errors
                ],
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
}
