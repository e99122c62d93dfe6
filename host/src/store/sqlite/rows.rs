//! Row mapping and statement helpers shared by the table-group files of the SQLite store:
//! rusqlite errors with context, cached statements, integer conversions and the
//! `events`/`outbox` column lists with their row readers.

use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};

use crate::store::{
    DeadLetterSource, DeliveryState, EventKind, EventRow, NewEvent, OutboxRow, OutboxState,
    StoreError,
};

/// Adds context to rusqlite errors.
pub(super) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, rusqlite::Error> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError(format!("{what}: {e}")))
    }
}

/// `execute` through the statement cache: a statement is parsed once per connection.
pub(super) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// `query_row` through the statement cache.
pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// A pragma that may return a row (`wal_checkpoint` does); the row is not needed.
pub(super) fn exec_pragma(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

pub(super) use crate::clock::now_ms;

/// A u64 (time, count) as an SQLite integer; saturates instead of wrapping.
pub(super) fn db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn db_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An SQLite integer as a u64; negative values (never written by us) read as 0.
pub(super) fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn conversion_error(col: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, what.into())
}

/// A status's rank; the ranks follow [`OutboxState`]'s order.
pub(super) fn status_rank(status: DeliveryState) -> i64 {
    match status {
        DeliveryState::Sent => 1,
        DeliveryState::Delivered => 2,
        DeliveryState::Read | DeliveryState::Played => 3,
        DeliveryState::Failed => 4,
    }
}

pub(super) fn state_of_rank(rank: i64) -> OutboxState {
    match rank {
        ..=1 => OutboxState::Sent,
        2 => OutboxState::Delivered,
        3 => OutboxState::Read,
        _ => OutboxState::Failed,
    }
}

/// States a delivery status may move (a `Pending` row becomes `Sent` through
/// `outbox_part_sent`; a `Dead` row stays dead).
pub(super) fn takes_statuses(state: OutboxState) -> bool {
    matches!(
        state,
        OutboxState::Sent | OutboxState::Delivered | OutboxState::Read | OutboxState::Failed
    )
}

/// The columns [`event_row`] reads, as a macro so queries are `concat!`ed at compile time.
macro_rules! event_columns {
    () => {
        "id, endpoint, conversation, kind, body, created_ms"
    };
}
pub(super) use event_columns;

pub(super) fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    let kind: String = row.get(3)?;
    Ok(EventRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        conversation: row.get(2)?,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| conversion_error(3, format!("unknown event kind {kind:?}")))?,
        body: row.get(4)?,
        created_ms: from_db(row.get(5)?),
    })
}

/// The columns [`outbox_row`] reads.
macro_rules! outbox_columns {
    () => {
        "id, endpoint, conversation, recipient, business, output, free_form, state, attempts, \
         parts_sent, next_attempt_ms, last_error, created_ms"
    };
}
pub(super) use outbox_columns;

pub(super) fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let state: String = row.get(7)?;
    let attempts: i64 = row.get(8)?;
    let parts_sent: i64 = row.get(9)?;
    Ok(OutboxRow {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        conversation: row.get(2)?,
        recipient: row.get(3)?,
        business: row.get(4)?,
        output: row.get(5)?,
        free_form: row.get(6)?,
        state: OutboxState::parse(&state)
            .ok_or_else(|| conversion_error(7, format!("unknown outbox state {state:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        parts_sent: u32::try_from(parts_sent).unwrap_or(0),
        next_attempt_ms: from_db(row.get(10)?),
        last_error: row.get(11)?,
        created_ms: from_db(row.get(12)?),
        known_inbound_ms: None,
    })
}

/// Inserts an event unless its dedupe key is known; returns the new row.
pub(super) fn insert_event(
    tx: &Connection,
    endpoint: &str,
    event: &NewEvent,
    now: u64,
) -> Result<Option<EventRow>, StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (endpoint, dedupe_key, conversation, kind, body, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (endpoint, dedupe_key) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                endpoint,
                event.dedupe_key,
                event.conversation,
                event.kind.as_str(),
                event.body,
                db_int(now),
            ])
        })
        .ctx("inserting an event")?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(EventRow {
        id: tx.last_insert_rowid(),
        endpoint: endpoint.to_owned(),
        conversation: event.conversation.clone(),
        kind: event.kind,
        body: event.body.clone(),
        created_ms: now,
    }))
}

pub(super) fn insert_dead_letter(
    tx: &Connection,
    endpoint: &str,
    source: DeadLetterSource,
    source_id: i64,
    reason: &str,
    detail: &str,
    now: u64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO dead_letters (endpoint, source, source_id, reason, detail, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            endpoint,
            source.as_str(),
            source_id,
            reason,
            detail,
            db_int(now)
        ],
    )
    .ctx("inserting a dead letter")?;
    Ok(())
}

pub(super) fn set_outbox_state(
    tx: &Connection,
    outbox_id: i64,
    state: OutboxState,
    now: u64,
) -> Result<(), StoreError> {
    exec(
        tx,
        "UPDATE outbox SET state = ?2, updated_ms = ?3 WHERE id = ?1",
        params![outbox_id, state.as_str(), db_int(now)],
    )
    .ctx("updating an outbox state")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The Store implementation
// ---------------------------------------------------------------------------------------
