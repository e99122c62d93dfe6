//! [`InboxStore`] on SQLite: the `inbox` table, and the demux's commit (events, the inbox
//! row done or dead with its dead letter).

use rusqlite::params;

use super::SqliteStore;
use super::rows::*;
use crate::store::{
    DeadLetterSource, DemuxOutcome, Demuxed, EventRow, InboxRow, InboxStore, StoreFuture,
};

impl InboxStore for SqliteStore {
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
                            DeadLetterSource::Inbox,
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
}
