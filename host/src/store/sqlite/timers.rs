//! [`TimerStore`] on SQLite: the `timers` table (set by [`super::steps`]).

use rusqlite::params;

use super::SqliteStore;
use super::rows::*;
use crate::store::{StoreFuture, TimerRow, TimerStore};

impl TimerStore for SqliteStore {
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
}
