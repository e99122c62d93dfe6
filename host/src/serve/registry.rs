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

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::plugins::PluginRuntime;
use crate::store::Store;
use crate::store::admin::{EndpointState, Seeded};

use super::config::{EndpointConfig, EndpointSpec, ServeConfig};
use super::endpoint::Endpoint;

#[derive(Default)]
pub struct Registry {
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every served endpoint, by id.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        let mut all: Vec<_> = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        all
    }

    pub fn len(&self) -> usize {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves `endpoint` from now on, in place of any endpoint with its id; what the old
    /// one had seen (last webhook, auth failures) carries over.
    pub fn insert(&self, endpoint: Endpoint) -> Arc<Endpoint> {
        let endpoint = Arc::new(endpoint);
        let mut map = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = map.get(&endpoint.config.id) {
            endpoint.activity.carry_over(&old.activity);
        }
        map.insert(endpoint.config.id.clone(), endpoint.clone());
        endpoint
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }
}

/// The stored form of a spec and the hash that tells whether the TOML changed it.
pub fn spec_json(spec: &EndpointSpec) -> Result<(String, String), String> {
    let json = serde_json::to_string(spec).map_err(|e| format!("cannot encode a spec: {e}"))?;
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    Ok((json, hash))
}

/// Seeds the store from the config, then loads every active stored endpoint. A stored
/// endpoint that no longer loads (its flow file moved, say) fails the start with its id,
/// like a broken TOML endpoint would.
pub async fn seed(
    config: &ServeConfig,
    store: &Arc<dyn Store>,
    runtime: &Arc<PluginRuntime>,
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
        let config = spec
            .resolve(Path::new("/"), &format!("endpoints.{}", row.id))
            .map_err(anyhow::Error::msg)?;
        let endpoint = load(config, store.clone(), runtime.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        registry.insert(endpoint);
    }
    Ok(registry)
}

/// Loads a resolved endpoint (plugin, flow, hooks, signature key) off the async threads.
pub async fn load(
    config: EndpointConfig,
    store: Arc<dyn Store>,
    runtime: Arc<PluginRuntime>,
) -> Result<Endpoint, String> {
    tokio::task::spawn_blocking(move || Endpoint::load(&runtime, config, store))
        .await
        .map_err(|e| format!("endpoint loader: {e}"))?
}
