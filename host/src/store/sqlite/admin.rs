//! [`AdminStore`] on SQLite: endpoint specs, plugins, event webhooks, conversation views.
//!
//! Writes go through the writer thread like every other write, as admin changes (fsync'd
//! before the answer) except the handshake and delivery bookkeeping; the list and
//! transcript reads use the reader connections. The secrets of endpoint specs and event
//! webhooks are sealed on write and opened on read ([`super::seal`]). [`emit`] is the one place notices become delivery
//! rows: it runs inside whatever transaction produced the event.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{Ctx, db_int, db_limit, exec, from_db, now_ms, query_one};
use super::seal::{Columns, HOOK_SECRET};
use crate::store::admin::{
    AdminStore, Attempt, ConversationRow, Delivery, EndpointState, Notice, Seeded, StoredEndpoint,
    StoredPlugin, Subscription, TranscriptItem,
};
use crate::store::{OutboxState, StoreError, StoreFuture};

/// Fans one notice out to the endpoint's subscriptions that want it, in the caller's
/// transaction. A no-op (one indexed lookup) when nobody subscribed.
pub(super) fn emit(tx: &Connection, endpoint: &str, notice: &Notice) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO hook_deliveries (subscription, event, payload, created_ms)
         SELECT s.id, ?2, ?3, ?4 FROM hook_subscriptions s
         WHERE s.endpoint = ?1 AND EXISTS (SELECT 1 FROM json_each(s.events) WHERE value = ?2)",
        params![endpoint, notice.event, notice.data, db_int(now_ms())],
    )
    .ctx("queueing an event webhook")?;
    Ok(())
}

/// An endpoint stops being served (deleted or disconnected): its unsent replies become
/// dead letters (they must not go out later, maybe from another number under the same
/// id) and its timers go. With `forget`, its sessions and windows go too.
fn retire(tx: &Connection, endpoint: &str, reason: &str, forget: bool) -> Result<(), StoreError> {
    let now = db_int(now_ms());
    exec(
        tx,
        "INSERT INTO dead_letters (endpoint, source, source_id, reason, detail, created_ms)
         SELECT endpoint, 'outbox', id, ?2, 'the endpoint stopped being served before this was sent', ?3
         FROM outbox WHERE endpoint = ?1 AND state = 'pending'",
        params![endpoint, reason, now],
    )
    .ctx("dead-lettering an endpoint's outbox")?;
    exec(
        tx,
        "UPDATE outbox SET state = 'dead', last_error = ?2, updated_ms = ?3
         WHERE endpoint = ?1 AND state = 'pending'",
        params![endpoint, reason, now],
    )
    .ctx("closing an endpoint's outbox")?;
    exec(tx, "DELETE FROM timers WHERE endpoint = ?1", [endpoint])
        .ctx("deleting an endpoint's timers")?;
    if forget {
        exec(tx, "DELETE FROM sessions WHERE endpoint = ?1", [endpoint])
            .ctx("deleting an endpoint's sessions")?;
        exec(tx, "DELETE FROM windows WHERE endpoint = ?1", [endpoint])
            .ctx("deleting an endpoint's windows")?;
    }
    Ok(())
}

macro_rules! endpoint_columns {
    () => {
        "id, spec, state, last_handshake_ms, verified, created_ms, updated_ms"
    };
}

fn endpoint_row(row: &Row<'_>) -> rusqlite::Result<StoredEndpoint> {
    let state: String = row.get(2)?;
    Ok(StoredEndpoint {
        id: row.get(0)?,
        spec: row.get(1)?,
        state: EndpointState::parse(&state).unwrap_or(EndpointState::Active),
        last_handshake_ms: row.get::<_, Option<i64>>(3)?.map(from_db),
        verified: row.get(4)?,
        created_ms: from_db(row.get(5)?),
        updated_ms: from_db(row.get(6)?),
    })
}

macro_rules! plugin_columns {
    () => {
        "name, version, wit_version, sha256, wasm, info, max_memory_bytes, call_timeout_ms, \
         installed_ms"
    };
}

fn plugin_row(row: &Row<'_>) -> rusqlite::Result<StoredPlugin> {
    Ok(StoredPlugin {
        name: row.get(0)?,
        version: row.get(1)?,
        wit_version: row.get(2)?,
        sha256: row.get(3)?,
        wasm: row.get(4)?,
        info: row.get(5)?,
        max_memory_bytes: from_db(row.get(6)?),
        call_timeout_ms: from_db(row.get(7)?),
        installed_ms: from_db(row.get(8)?),
    })
}

fn subscription_row(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    let events: String = row.get(4)?;
    Ok(Subscription {
        id: row.get(0)?,
        endpoint: row.get(1)?,
        url: row.get(2)?,
        secret: row.get(3)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        created_ms: from_db(row.get(5)?),
    })
}

/// The conversation's most recent event or outbox row.
fn last_item(
    conn: &Connection,
    endpoint: &str,
    conversation: &str,
) -> Result<Option<TranscriptItem>, StoreError> {
    Ok(transcript_rows(conn, endpoint, conversation, 1)?.pop())
}

/// The last `limit` items of a conversation, oldest first: the newest events and outbox
/// rows merged by time.
fn transcript_rows(
    conn: &Connection,
    endpoint: &str,
    conversation: &str,
    limit: usize,
) -> Result<Vec<TranscriptItem>, StoreError> {
    let mut items: Vec<TranscriptItem> = conn
        .prepare_cached(
            "SELECT created_ms, kind, body FROM events
             WHERE endpoint = ?1 AND conversation = ?2 AND kind IN ('message', 'send_failed')
             ORDER BY id DESC LIMIT ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![endpoint, conversation, db_limit(limit)], |row| {
                Ok(TranscriptItem::Inbound {
                    at_ms: from_db(row.get(0)?),
                    kind: row.get(1)?,
                    body: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .ctx("reading a conversation's events")?;
    let outbound = conn
        .prepare_cached(
            "SELECT created_ms, id, output, state, last_error FROM outbox
             WHERE endpoint = ?1 AND conversation = ?2
             ORDER BY id DESC LIMIT ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![endpoint, conversation, db_limit(limit)], |row| {
                let state: String = row.get(3)?;
                Ok(TranscriptItem::Outbound {
                    at_ms: from_db(row.get(0)?),
                    id: row.get(1)?,
                    output: row.get(2)?,
                    state: OutboxState::parse(&state).unwrap_or(OutboxState::Pending),
                    last_error: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .ctx("reading a conversation's outbox")?;
    // Both were read newest first; oldest first each, then merged by time. The sort is
    // stable: rows of one millisecond keep their id order, and an inbound message stays
    // ahead of the replies it caused.
    items.reverse();
    items.extend(outbound.into_iter().rev());
    items.sort_by_key(TranscriptItem::at_ms);
    let skip = items.len().saturating_sub(limit);
    Ok(items.split_off(skip))
}

fn conversation_row(
    conn: &Connection,
    endpoint: &str,
    conversation: String,
    last_inbound_ms: Option<u64>,
) -> Result<ConversationRow, StoreError> {
    let session = conn
        .prepare_cached("SELECT record FROM sessions WHERE endpoint = ?1 AND conversation = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![endpoint, conversation], |row| row.get(0))
                .optional()
        })
        .ctx("reading a session")?;
    let last_event = last_item(conn, endpoint, &conversation)?;
    Ok(ConversationRow {
        conversation,
        last_inbound_ms,
        session,
        last_event,
    })
}

impl SqliteStore {
    /// The row with its spec's secrets opened.
    fn open_endpoint(&self, mut row: StoredEndpoint) -> Result<StoredEndpoint, StoreError> {
        row.spec = Columns(&self.keys).open_spec(&row.spec)?;
        Ok(row)
    }
}

impl AdminStore for SqliteStore {
    fn seed_endpoint(&self, id: &str, spec: String, seed_hash: String) -> StoreFuture<'_, Seeded> {
        let id = id.to_string();
        let keys = self.keys.clone();
        self.submit_admin(move |tx| {
            let spec = Columns(&keys).seal_spec(&spec)?;
            let now = db_int(now_ms());
            let current: Option<Option<String>> = query_one(
                tx,
                "SELECT seed_hash FROM endpoints WHERE id = ?1",
                [&id],
                |row| row.get(0),
            )
            .optional()
            .ctx("reading an endpoint")?;
            match current {
                None => {
                    exec(
                        tx,
                        "INSERT INTO endpoints (id, spec, seed_hash, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![id, spec, seed_hash, now],
                    )
                    .ctx("seeding an endpoint")?;
                    Ok(Seeded::Inserted)
                }
                Some(Some(hash)) if hash == seed_hash => Ok(Seeded::Kept),
                Some(_) => {
                    exec(
                        tx,
                        "UPDATE endpoints SET spec = ?2, seed_hash = ?3, state = 'active',
                             updated_ms = ?4 WHERE id = ?1",
                        params![id, spec, seed_hash, now],
                    )
                    .ctx("re-seeding an endpoint")?;
                    Ok(Seeded::Updated)
                }
            }
        })
    }

    fn insert_endpoint(&self, id: &str, spec: String) -> StoreFuture<'_, bool> {
        let id = id.to_string();
        let keys = self.keys.clone();
        self.submit_admin(move |tx| {
            let spec = Columns(&keys).seal_spec(&spec)?;
            let now = db_int(now_ms());
            let n = exec(
                tx,
                "INSERT INTO endpoints (id, spec, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, state = 'active',
                     last_handshake_ms = NULL, verified = NULL, created_ms = excluded.created_ms,
                     updated_ms = excluded.updated_ms
                 WHERE endpoints.state = 'deleted'",
                params![id, spec, now],
            )
            .ctx("inserting an endpoint")?;
            Ok(n == 1)
        })
    }

    fn update_endpoint(
        &self,
        id: &str,
        spec: String,
        state: EndpointState,
    ) -> StoreFuture<'_, bool> {
        let id = id.to_string();
        let keys = self.keys.clone();
        self.submit_admin(move |tx| {
            let spec = Columns(&keys).seal_spec(&spec)?;
            let n = exec(
                tx,
                "UPDATE endpoints SET spec = ?2, state = ?3, updated_ms = ?4
                 WHERE id = ?1 AND state <> 'deleted'",
                params![id, spec, state.as_str(), db_int(now_ms())],
            )
            .ctx("updating an endpoint")?;
            if n == 1 && state == EndpointState::Disconnected {
                retire(tx, &id, "endpoint_disconnected", false)?;
            }
            Ok(n == 1)
        })
    }

    fn delete_endpoint(&self, id: &str) -> StoreFuture<'_, bool> {
        let id = id.to_string();
        self.submit_admin(move |tx| {
            exec(
                tx,
                "DELETE FROM hook_deliveries WHERE state = 'pending' AND subscription IN
                     (SELECT id FROM hook_subscriptions WHERE endpoint = ?1)",
                [&id],
            )
            .ctx("deleting an endpoint's deliveries")?;
            exec(
                tx,
                "DELETE FROM hook_subscriptions WHERE endpoint = ?1",
                [&id],
            )
            .ctx("deleting an endpoint's webhooks")?;
            // The config file's endpoints stay as tombstones (see `EndpointState::Deleted`).
            let tombstoned = exec(
                tx,
                "UPDATE endpoints SET state = 'deleted', updated_ms = ?2
                 WHERE id = ?1 AND state <> 'deleted' AND seed_hash IS NOT NULL",
                params![id, db_int(now_ms())],
            )
            .ctx("deleting an endpoint")?;
            let deleted = exec(
                tx,
                "DELETE FROM endpoints WHERE id = ?1 AND seed_hash IS NULL",
                [&id],
            )
            .ctx("deleting an endpoint")?;
            if tombstoned + deleted == 1 {
                retire(tx, &id, "endpoint_deleted", true)?;
            }
            Ok(tombstoned + deleted == 1)
        })
    }

    fn endpoint_handshake(&self, id: &str, at_ms: u64) -> StoreFuture<'_, ()> {
        let id = id.to_string();
        self.submit(move |tx| {
            exec(
                tx,
                "UPDATE endpoints SET last_handshake_ms = ?2 WHERE id = ?1",
                params![id, db_int(at_ms)],
            )
            .ctx("recording a handshake")?;
            Ok(())
        })
    }

    fn endpoint_verified(
        &self,
        id: &str,
        created_ms: u64,
        verified: String,
    ) -> StoreFuture<'_, ()> {
        let id = id.to_string();
        self.submit_admin(move |tx| {
            exec(
                tx,
                "UPDATE endpoints SET verified = ?2
                 WHERE id = ?1 AND created_ms = ?3 AND state <> 'deleted'",
                params![id, verified, db_int(created_ms)],
            )
            .ctx("recording a verification")?;
            Ok(())
        })
    }

    fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        let rows: Vec<StoredEndpoint> = self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM endpoints WHERE state <> 'deleted' ORDER BY id"
            ))
            .and_then(|mut stmt| stmt.query_map([], endpoint_row)?.collect())
            .ctx("listing endpoints")
        })?;
        rows.into_iter()
            .map(|row| self.open_endpoint(row))
            .collect()
    }

    fn endpoint_row(&self, id: &str) -> Result<Option<StoredEndpoint>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                endpoint_columns!(),
                " FROM endpoints WHERE id = ?1 AND state <> 'deleted'"
            ))
            .and_then(|mut stmt| stmt.query_row([id], endpoint_row).optional())
            .ctx("reading an endpoint")
        })?;
        row.map(|row| self.open_endpoint(row)).transpose()
    }

    fn last_webhook_ms(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT MAX(received_ms) FROM inbox WHERE endpoint = ?1")
                .and_then(|mut stmt| stmt.query_row([id], |row| row.get::<_, Option<i64>>(0)))
                .map(|ms| ms.map(from_db))
                .ctx("reading the last webhook")
        })
    }

    fn install_plugin(&self, plugin: StoredPlugin, replace: bool) -> StoreFuture<'_, bool> {
        self.submit_admin(move |tx| {
            let exists: bool = query_one(
                tx,
                "SELECT EXISTS (SELECT 1 FROM plugins WHERE name = ?1)",
                [&plugin.name],
                |row| row.get(0),
            )
            .ctx("reading a plugin")?;
            if exists && !replace {
                return Ok(false);
            }
            exec(
                tx,
                "INSERT INTO plugins (name, version, wit_version, sha256, wasm, info,
                     max_memory_bytes, call_timeout_ms, installed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                     wit_version = excluded.wit_version, sha256 = excluded.sha256,
                     wasm = excluded.wasm, info = excluded.info,
                     max_memory_bytes = excluded.max_memory_bytes,
                     call_timeout_ms = excluded.call_timeout_ms,
                     installed_ms = excluded.installed_ms",
                params![
                    plugin.name,
                    plugin.version,
                    plugin.wit_version,
                    plugin.sha256,
                    plugin.wasm,
                    plugin.info,
                    db_int(plugin.max_memory_bytes),
                    db_int(plugin.call_timeout_ms),
                    db_int(plugin.installed_ms),
                ],
            )
            .ctx("installing a plugin")?;
            Ok(true)
        })
    }

    fn remove_plugin(&self, name: &str) -> StoreFuture<'_, bool> {
        let name = name.to_string();
        self.submit_admin(move |tx| {
            let n = exec(tx, "DELETE FROM plugins WHERE name = ?1", [&name])
                .ctx("removing a plugin")?;
            Ok(n == 1)
        })
    }

    fn plugins(&self) -> Result<Vec<StoredPlugin>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                plugin_columns!(),
                " FROM plugins ORDER BY name"
            ))
            .and_then(|mut stmt| stmt.query_map([], plugin_row)?.collect())
            .ctx("listing plugins")
        })
    }

    fn plugin(&self, name: &str) -> Result<Option<StoredPlugin>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                plugin_columns!(),
                " FROM plugins WHERE name = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([name], plugin_row).optional())
            .ctx("reading a plugin")
        })
    }

    fn add_subscription(
        &self,
        endpoint: &str,
        url: String,
        secret: String,
        events: Vec<String>,
    ) -> StoreFuture<'_, Subscription> {
        let endpoint = endpoint.to_string();
        let keys = self.keys.clone();
        self.submit_admin(move |tx| {
            let now = now_ms();
            let events_json = serde_json::to_string(&events)
                .map_err(|e| StoreError(format!("encoding events: {e}")))?;
            let sealed = Columns(&keys).seal(HOOK_SECRET, &secret)?;
            let id = tx
                .prepare_cached(
                    "INSERT INTO hook_subscriptions (endpoint, url, secret, events, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut stmt| {
                    stmt.insert(params![endpoint, url, sealed, events_json, db_int(now)])
                })
                .ctx("adding a webhook")?;
            Ok(Subscription {
                id,
                endpoint: endpoint.clone(),
                url: url.clone(),
                secret: secret.clone(),
                events: events.clone(),
                created_ms: now,
            })
        })
    }

    fn delete_subscription(&self, endpoint: &str, id: i64) -> StoreFuture<'_, bool> {
        let endpoint = endpoint.to_string();
        self.submit_admin(move |tx| {
            exec(
                tx,
                "DELETE FROM hook_deliveries WHERE subscription = ?1 AND state = 'pending'",
                [id],
            )
            .ctx("deleting a webhook's deliveries")?;
            let n = exec(
                tx,
                "DELETE FROM hook_subscriptions WHERE id = ?1 AND endpoint = ?2",
                params![id, endpoint],
            )
            .ctx("deleting a webhook")?;
            Ok(n == 1)
        })
    }

    fn subscriptions(&self, endpoint: &str) -> Result<Vec<Subscription>, StoreError> {
        let rows: Vec<Subscription> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, endpoint, url, secret, events, created_ms FROM hook_subscriptions
                 WHERE endpoint = ?1 ORDER BY id",
            )
            .and_then(|mut stmt| stmt.query_map([endpoint], subscription_row)?.collect())
            .ctx("listing webhooks")
        })?;
        let columns = Columns(&self.keys);
        rows.into_iter()
            .map(|mut row| {
                row.secret = columns.open(HOOK_SECRET, &row.secret)?;
                Ok(row)
            })
            .collect()
    }

    fn due_deliveries(
        &self,
        now_ms: u64,
        after_id: i64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Delivery>> {
        let keys = self.keys.clone();
        self.submit(move |tx| {
            let due: Vec<Delivery> = tx
                .prepare_cached(
                    "SELECT d.id, s.endpoint, s.url, s.secret, d.event, d.payload, d.attempts,
                        d.created_ms
                 FROM hook_deliveries d JOIN hook_subscriptions s ON s.id = d.subscription
                 WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1 AND d.id > ?3
                 ORDER BY d.id LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![db_int(now_ms), db_limit(limit), after_id], |row| {
                        Ok(Delivery {
                            id: row.get(0)?,
                            endpoint: row.get(1)?,
                            url: row.get(2)?,
                            secret: row.get(3)?,
                            event: row.get(4)?,
                            data: row.get(5)?,
                            attempts: u32::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                            created_ms: from_db(row.get(7)?),
                        })
                    })?
                    .collect()
                })
                .ctx("reading due webhook deliveries")?;
            let columns = Columns(&keys);
            due.into_iter()
                .map(|mut d| {
                    d.secret = columns.open(HOOK_SECRET, &d.secret)?;
                    Ok(d)
                })
                .collect()
        })
    }

    fn deliveries_attempted(&self, attempts: Vec<(i64, Attempt)>) -> StoreFuture<'_, ()> {
        self.submit(move |tx| {
            let now = db_int(now_ms());
            for (id, attempt) in &attempts {
                match attempt {
                    Attempt::Delivered => exec(
                        tx,
                        "UPDATE hook_deliveries SET state = 'delivered', attempts = attempts + 1,
                             done_ms = ?2, last_error = NULL WHERE id = ?1",
                        params![id, now],
                    ),
                    Attempt::Retry {
                        next_attempt_ms,
                        error,
                    } => exec(
                        tx,
                        "UPDATE hook_deliveries SET attempts = attempts + 1, next_attempt_ms = ?2,
                             last_error = ?3 WHERE id = ?1",
                        params![id, db_int(*next_attempt_ms), error],
                    ),
                    Attempt::GaveUp { error } => exec(
                        tx,
                        "UPDATE hook_deliveries SET state = 'dead', attempts = attempts + 1,
                             done_ms = ?2, last_error = ?3 WHERE id = ?1",
                        params![id, now, error],
                    ),
                }
                .ctx("recording a webhook delivery")?;
            }
            Ok(())
        })
    }

    fn conversations(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        self.read(|conn| {
            // Every conversation with a session or a window (agents may notify users who
            // never wrote: they have a session but no window).
            let keys: Vec<(String, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT conversation, MAX(last_inbound_ms) AS last, MAX(updated) AS updated
                     FROM (SELECT conversation, last_inbound_ms, last_inbound_ms AS updated
                               FROM windows WHERE endpoint = ?1
                           UNION ALL
                           SELECT conversation, NULL, updated_ms FROM sessions
                               WHERE endpoint = ?1)
                     GROUP BY conversation ORDER BY updated DESC LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![endpoint, db_limit(limit)], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect()
                })
                .ctx("listing conversations")?;
            keys.into_iter()
                .map(|(conversation, last)| {
                    conversation_row(conn, endpoint, conversation, last.map(from_db))
                })
                .collect()
        })
    }

    fn conversation(
        &self,
        endpoint: &str,
        conversation: &str,
    ) -> Result<Option<ConversationRow>, StoreError> {
        self.read(|conn| {
            let last: Option<Option<i64>> = conn
                .prepare_cached(
                    "SELECT (SELECT last_inbound_ms FROM windows
                                WHERE endpoint = ?1 AND conversation = ?2)
                     WHERE EXISTS (SELECT 1 FROM windows WHERE endpoint = ?1 AND conversation = ?2)
                        OR EXISTS (SELECT 1 FROM sessions WHERE endpoint = ?1 AND conversation = ?2)
                        OR EXISTS (SELECT 1 FROM outbox WHERE endpoint = ?1 AND conversation = ?2)",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![endpoint, conversation], |row| row.get(0))
                        .optional()
                })
                .ctx("reading a conversation")?;
            match last {
                None => Ok(None),
                Some(last) => {
                    conversation_row(conn, endpoint, conversation.to_string(), last.map(from_db))
                        .map(Some)
                }
            }
        })
    }

    fn transcript(
        &self,
        endpoint: &str,
        conversation: &str,
        limit: usize,
    ) -> Result<Vec<TranscriptItem>, StoreError> {
        self.read(|conn| transcript_rows(conn, endpoint, conversation, limit))
    }
}
