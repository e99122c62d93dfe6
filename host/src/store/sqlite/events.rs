//! [`EventStore`] on SQLite: the `events` table.

use rusqlite::params;

use super::SqliteStore;
use super::rows::*;
use crate::store::{EventRow, EventStore, NewEvent, StoreFuture};

impl EventStore for SqliteStore {
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
}
