//! Where `plugboard chat` keeps its sessions: in memory, behind a narrow get/put trait.
//!
//! [`SessionStore`] is deliberately narrow (get and put by key): the chat's lanes
//! serialize access per conversation, so a store needs no transactions. [`MemorySessions`]
//! is the in-memory store (lost when the chat ends). `serve` does not use this: it loads
//! records from its durable store and commits them with the rest of a step.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::conversation::{SessionKey, SessionRecord, StoreError};

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
