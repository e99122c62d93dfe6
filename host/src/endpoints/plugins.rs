//! Installed plugins and the endpoints that run on them: install (or replace), change the
//! limits of, and remove an installed adapter component while the host runs.
//!
//! What must stay true: a replacement or new limits are checked against every served
//! endpoint on the plugin ([`Lifecycle::prepare`] with the candidate standing in) before
//! anything is stored; then the plugin row commits; then those endpoints are swapped in
//! ([`Lifecycle::commit`]). A plugin still named by an endpoint is not removed. Every
//! function takes the admin lock's guard ([`Held`]), like the endpoint lifecycle.

use serde_json::Map;

use super::lifecycle::{EndpointError, EndpointResult, Held, Lifecycle, Prepared};
use crate::config::{BUNDLED_PLUGIN, EndpointSpec};
use crate::plugins::{AdapterPlugin, PluginLimits};
use crate::store::admin::StoredPlugin;

impl Lifecycle<'_> {
    /// The ids of the stored endpoints (served or not) that run on plugin `name`.
    pub async fn used_by(&self, name: &str) -> EndpointResult<Vec<String>> {
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.endpoints())
            .await
            .map_err(|e| EndpointError::Internal(format!("a background task failed: {e}")))??;
        Ok(rows
            .into_iter()
            .filter(|row| {
                serde_json::from_str::<EndpointSpec>(&row.spec)
                    .is_ok_and(|spec| spec.plugin.as_deref().unwrap_or(BUNDLED_PLUGIN) == name)
            })
            .map(|row| row.id)
            .collect())
    }

    /// Stores a checked plugin (after checking a replacement against its endpoints) and
    /// reloads those endpoints.
    pub async fn install_plugin(
        &self,
        held: &Held<'_>,
        stored: StoredPlugin,
        replace: bool,
    ) -> EndpointResult<StoredPlugin> {
        let name = stored.name.clone();
        // A replacement must serve every endpoint on the old one before anything is stored.
        let reloaded = if replace {
            self.prepare_users(held, &stored).await?
        } else {
            Vec::new()
        };
        if !self.store.install_plugin(stored.clone(), replace).await? {
            return Err(EndpointError::Conflict {
                code: "exists",
                message: format!("plugin `{name}` is installed; add ?replace=true to replace it"),
            });
        }
        tracing::info!(plugin = %name, version = %stored.version, sha256 = %stored.sha256, "plugin installed");
        self.serve_users(held, reloaded).await?;
        Ok(stored)
    }

    /// Stores `plugin` with its new `limits` (already set on it); the endpoints using it
    /// reload with them. With none, the component must at least answer its smoke call
    /// under them.
    pub async fn change_plugin_limits(
        &self,
        held: &Held<'_>,
        plugin: StoredPlugin,
        limits: PluginLimits,
    ) -> EndpointResult<StoredPlugin> {
        let reloaded = self.prepare_users(held, &plugin).await?;
        if reloaded.is_empty() {
            let (runtime, wasm) = (self.runtime.clone(), plugin.wasm.clone());
            tokio::task::spawn_blocking(move || AdapterPlugin::load(&runtime, &wasm, limits))
                .await
                .map_err(|e| EndpointError::Internal(format!("a background task failed: {e}")))?
                .map_err(|e| {
                    EndpointError::PluginRejected(format!(
                        "the plugin does not run under these limits: {e}"
                    ))
                })?;
        }
        self.store.install_plugin(plugin.clone(), true).await?;
        tracing::info!(plugin = %plugin.name, "plugin limits changed");
        self.serve_users(held, reloaded).await?;
        Ok(plugin)
    }

    /// Removes an installed plugin no endpoint names.
    pub async fn remove_plugin(&self, _held: &Held<'_>, name: &str) -> EndpointResult<()> {
        let users = self.used_by(name).await?;
        if !users.is_empty() {
            return Err(EndpointError::Conflict {
                code: "plugin_in_use",
                message: format!(
                    "plugin `{name}` serves endpoints {}; move or delete them first",
                    users.join(", ")
                ),
            });
        }
        if !self.store.remove_plugin(name).await? {
            return Err(EndpointError::PluginNotFound(name.to_string()));
        }
        tracing::info!(plugin = %name, "plugin removed");
        Ok(())
    }

    /// Every served endpoint on `candidate`'s name, loaded with `candidate` (a no-op
    /// patch): refused naming the first that does not load, and then nothing is stored.
    async fn prepare_users(
        &self,
        held: &Held<'_>,
        candidate: &StoredPlugin,
    ) -> EndpointResult<Vec<Prepared>> {
        let mut prepared = Vec::new();
        for id in self.used_by(&candidate.name).await? {
            if self.registry.get(&id).is_none() {
                continue;
            }
            let endpoint = self
                .prepare(held, &id, Map::new(), Some(candidate.clone()))
                .await
                .map_err(|e| {
                    EndpointError::PluginRejected(format!(
                        "endpoint `{id}` would not load on it, so nothing was changed: {e}"
                    ))
                })?;
            prepared.push(endpoint);
        }
        Ok(prepared)
    }

    /// Serves the endpoints [`Lifecycle::prepare_users`] loaded (the plugin row has
    /// committed).
    async fn serve_users(&self, held: &Held<'_>, prepared: Vec<Prepared>) -> EndpointResult<()> {
        for endpoint in prepared {
            let id = endpoint.id().to_string();
            self.commit(held, endpoint).await?;
            tracing::info!(endpoint = %id, "endpoint reloaded on the changed plugin");
        }
        Ok(())
    }
}
