//! [`MaintenanceStore`] on SQLite: dead letters and replay, queue depths, retention
//! across every table, and the writer ping.

use rusqlite::params;

use super::rows::*;
use super::{SqliteStore, business};
use crate::store::{DeadLetter, DeadLetterSource, MaintenanceStore, QueueDepths, StoreFuture};

impl MaintenanceStore for SqliteStore {
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
                        source: {
                            let source: String = row.get(2)?;
                            DeadLetterSource::parse(&source).ok_or_else(|| {
                                conversion_error(
                                    2,
                                    format!("unknown dead letter source {source:?}"),
                                )
                            })?
                        },
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
