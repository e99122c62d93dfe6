//! What is kept per conversation between inputs, and where.
//!
//! A [`SessionRecord`] is the flow's [`SessionState`] plus the runtime's own fields
//! (handover mute, AI toggle, last activity, last inbound message id). It is serde so a
//! durable store can keep it as JSON. [`SessionStore`] is deliberately narrow (get and put
//! by key): the runtime serializes access per conversation itself, so a store needs no
//! transactions. [`MemorySessions`] is the in-memory store; the SQLite one comes with the
//! serving issue.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::SessionKey;
use crate::flow::SessionState;

/// An active handover: the bot is muted until `until_ms` unless released earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverStatus {
    pub since_ms: u64,
    pub until_ms: u64,
    pub reason: Option<String>,
}

/// One conversation's stored state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The flow's state, including the history.
    pub state: SessionState,
    pub handover: Option<HandoverStatus>,
    /// `false`: the flow stays silent for this conversation (no handover).
    pub ai_enabled: bool,
    /// When the last input (message or inject) arrived; `None` before the first. Expiry is
    /// measured from here.
    pub last_input_ms: Option<u64>,
    /// The last inbound message id, for read receipts and the typing indicator.
    pub last_inbound_id: Option<String>,
}

impl SessionRecord {
    pub fn new(state: SessionState) -> Self {
        SessionRecord {
            state,
            handover: None,
            ai_enabled: true,
            last_input_ms: None,
            last_inbound_id: None,
        }
    }
}

/// A session store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where session records live. Calls for one key never overlap (the runtime holds the
/// conversation's lock around get … put).
pub trait SessionStore: Send + Sync + 'static {
    fn get(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError>;
    fn put(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError>;
}

/// Sessions in memory (lost on restart).
#[derive(Debug, Default)]
pub struct MemorySessions {
    records: Mutex<HashMap<SessionKey, SessionRecord>>,
}

impl MemorySessions {
    pub fn new() -> Self {
        MemorySessions::default()
    }

    pub fn len(&self) -> usize {
        self.records.lock().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessions {
    fn get(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let records = self
            .records
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        Ok(records.get(key).cloned())
    }

    fn put(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        let mut records = self
            .records
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))?;
        records.insert(key.clone(), record.clone());
        Ok(())
    }
}
