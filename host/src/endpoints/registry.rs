//! The endpoints a running host serves, changeable while it runs.
//!
//! Every part of the pipeline looks an endpoint up here by id for each piece of work
//! ([`Registry::get`] clones an `Arc`), so an endpoint the admin API created, changed or
//! removed takes effect at the next webhook, step or send, without a restart. Work already
//! holding the old `Arc` finishes with it. What must stay true: an endpoint is loaded and
//! checked completely (plugin, flow, hooks, signature key) *before* it is swapped in, and
//! its row has committed before that, so the registry never holds what the store would
//! not give back after a restart.
//!
//! [`seed`] runs at start: the TOML's endpoints seed the store (see
//! [`crate::store::admin::Seeded`]), then every active stored endpoint is loaded.

use crate::lock::RwLockExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::plugins::PluginRuntime;
use crate::store::Store;
use crate::store::admin::{EndpointState, Seeded, StoredPlugin};

use super::endpoint::{Bounds, Endpoint};
use crate::config::{EndpointConfig, EndpointSpec, ServeConfig};

#[derive(Default)]
pub struct Registry {
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    /// Stored endpoints that did not load at start, and why (shown by the admin API).
    failed: RwLock<HashMap<String, String>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.read_locked().get(id).cloned()
    }

    /// Every served endpoint, by id.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        let mut all: Vec<_> = self.endpoints.read_locked().values().cloned().collect();
        all.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        all
    }

    pub fn len(&self) -> usize {
        self.endpoints.read_locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves `endpoint` from now on, in place of any endpoint with its id; what the old
    /// one had seen (last webhook, auth failures) carries over.
    pub fn insert(&self, endpoint: Endpoint) -> Arc<Endpoint> {
        let endpoint = Arc::new(endpoint);
        let mut map = self.endpoints.write_locked();
        if let Some(old) = map.get(&endpoint.config.id) {
            endpoint.activity.carry_over(&old.activity);
        }
        map.insert(endpoint.config.id.clone(), endpoint.clone());
        drop(map);
        self.set_failed(&endpoint.config.id, None);
        endpoint
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.set_failed(id, None);
        self.endpoints.write_locked().remove(id)
    }

    /// Why a stored endpoint is not served, when it failed to load.
    pub fn failure(&self, id: &str) -> Option<String> {
        self.failed.read_locked().get(id).cloned()
    }

    fn set_failed(&self, id: &str, reason: Option<String>) {
        let mut failed = self.failed.write_locked();
        match reason {
            Some(reason) => failed.insert(id.to_string(), reason),
            None => failed.remove(id),
        };
    }
}

/// The stored form of a spec and the hash that tells whether the TOML changed it.
pub fn spec_json(spec: &EndpointSpec) -> Result<(String, String), String> {
    let json = serde_json::to_string(spec).map_err(|e| format!("cannot encode a spec: {e}"))?;
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    Ok((json, hash))
}

/// Seeds the store from the config, then loads every active stored endpoint. An endpoint
/// of the config file that does not load fails the start (a broken config is reported at
/// once, as before there was a store); one created through the admin API that no longer
/// loads (its flow file moved, say) is logged, shown by the admin API, and not served, so
/// one broken endpoint does not take the others down.
pub async fn seed(
    config: &ServeConfig,
    store: &Arc<dyn Store>,
    runtime: &Arc<PluginRuntime>,
    bounds: &Bounds,
) -> anyhow::Result<Registry> {
    for spec in &config.endpoint_specs {
        let (json, hash) = spec_json(spec).map_err(anyhow::Error::msg)?;
        let seeded = store.seed_endpoint(&spec.id, json, hash).await?;
        if seeded == Seeded::Updated {
            tracing::info!(endpoint = %spec.id, "the config file changed this endpoint; the stored one follows it");
        }
    }
    let registry = Registry::default();
    let rows = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.endpoints()).await??
    };
    for row in rows {
        if row.state == EndpointState::Disconnected {
            continue;
        }
        let spec: EndpointSpec = serde_json::from_str(&row.spec)
            .map_err(|e| anyhow::anyhow!("stored endpoint `{}` cannot be read: {e}", row.id))?;
        let loaded = match spec.resolve(Path::new("/"), &format!("endpoints.{}", row.id)) {
            Ok(config) => load(config, store.clone(), runtime.clone(), None, bounds.clone()).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(endpoint) => {
                registry.insert(endpoint);
            }
            Err(e) if config.endpoint_specs.iter().any(|s| s.id == row.id) => {
                anyhow::bail!(e)
            }
            Err(e) => {
                tracing::error!(endpoint = %row.id, "stored endpoint not served: {e}");
                registry.set_failed(&row.id, Some(e));
            }
        }
    }
    Ok(registry)
}

/// Loads a resolved endpoint (plugin, flow, hooks, signature key) off the async threads;
/// `candidate` stands in for the installed plugin of its name (see
/// [`Endpoint::load_with`]).
pub async fn load(
    config: EndpointConfig,
    store: Arc<dyn Store>,
    runtime: Arc<PluginRuntime>,
    candidate: Option<StoredPlugin>,
    bounds: Bounds,
) -> Result<Endpoint, String> {
    tokio::task::spawn_blocking(move || {
        Endpoint::load_with(&runtime, config, store, candidate.as_ref(), &bounds)
    })
    .await
    .map_err(|e| format!("endpoint loader: {e}"))?
}
