//! What one conversation step produces, held until the step commits.
//!
//! The conversation runtime saves its session record through a [`SessionStore`] and hands
//! outputs to an [`Outbound`]. Served, neither may touch the database or the network on its
//! own: the new record, the outbox rows and the timers of one step are committed in ONE
//! transaction by the conversation worker, so a crash keeps all of a step or none of it and
//! a redelivered event is never answered twice. So both are staged here, per conversation:
//! - [`StagedSessions`] reads through to the durable store and keeps `put`s in memory until
//!   the worker [`take`](StagedSessions::take)s them into the commit; a read that found no
//!   stored session marks the step as the conversation's start
//!   ([`take_fresh`](StagedSessions::take_fresh), for the `conversation_started` event);
//! - [`Collector`] keeps delivered outputs until the worker takes them as outbox rows.
//!
//! What must stay true: only the conversation's own worker runs steps for a key, so a
//! staged value is never seen by another step before it is committed or discarded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::conversation::{Outbound, SessionKey, SessionRecord, SessionStore, StoreError};
use crate::plugins::types::BotOutput;
use crate::store::Store;

/// Session records: durable reads, staged writes.
pub struct StagedSessions {
    store: Arc<dyn Store>,
    staged: Mutex<HashMap<SessionKey, SessionRecord>>,
    /// The stored record of each key whose job is running, read (async) before the job by
    /// [`StagedSessions::load`]: the runtime's synchronous `get` never touches the store.
    loaded: Mutex<HashMap<SessionKey, Option<String>>>,
    /// Keys a step found no stored session for: the step starts the conversation.
    fresh: Mutex<HashSet<SessionKey>>,
}

impl StagedSessions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StagedSessions {
            store,
            staged: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the step found no session for `key` (it started the conversation, also
    /// when it failed after that), and forgets it.
    pub fn take_fresh(&self, key: &SessionKey) -> bool {
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }

    /// Reads the stored record of `key` before a job runs its steps (the store's read is
    /// async; the runtime's `get` is not).
    pub async fn load(&self, key: &SessionKey) -> Result<(), StoreError> {
        let stored = self
            .store
            .session(&key.endpoint, &key.user)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), stored);
        Ok(())
    }

    /// Forgets what [`StagedSessions::load`] read, once the job is over.
    pub fn unload(&self, key: &SessionKey) {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The record a step left behind, if it saved one.
    pub fn take(&self, key: &SessionKey) -> Option<SessionRecord> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }
}

impl SessionStore for StagedSessions {
    fn get(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(record) = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(Some(record.clone()));
        }
        let stored = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        let Some(stored) = stored else {
            // Only the key's own worker runs steps, and it loads before each job.
            return Err(StoreError(format!(
                "session of {} read before it was loaded",
                key.masked()
            )));
        };
        let Some(json) = stored else {
            self.fresh
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
            return Ok(None);
        };
        match serde_json::from_str(&json) {
            Ok(record) => Ok(Some(record)),
            Err(e) => {
                // Retrying cannot fix a record that does not parse (a hand edit, an
                // incompatible upgrade) and would stall the conversation for good: the
                // conversation starts afresh instead, loudly.
                tracing::error!(conversation = %key.masked(), "stored session is unreadable, starting a new one: {e}");
                Ok(None)
            }
        }
    }

    fn put(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), record.clone());
        Ok(())
    }
}

/// Outputs delivered during a step, per conversation, in order.
#[derive(Clone, Default)]
pub struct Collector {
    outputs: Arc<Mutex<HashMap<SessionKey, Vec<BotOutput>>>>,
}

impl Collector {
    pub fn take(&self, key: &SessionKey) -> Vec<BotOutput> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .unwrap_or_default()
    }
}

impl Outbound for Collector {
    async fn deliver(&self, key: &SessionKey, output: BotOutput) -> Result<(), String> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .push(output);
        Ok(())
    }
}
