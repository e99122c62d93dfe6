//! The endpoint lifecycle: create, change (JSON merge patch), enable/disable, disconnect
//! and delete an endpoint while the host runs. The admin API's handlers parse a request,
//! call one of these and turn the answer or the [`EndpointError`] into HTTP; nothing here
//! knows HTTP.
//!
//! Create and change go through the same steps and stop at the first that fails:
//! 1. read the JSON into a spec ([`EndpointError::InvalidBody`] naming the field serde
//!    could not take);
//! 2. resolve and validate it as the config loader does, `handover.webhook_url` against the
//!    egress policy, the token binding ([`EndpointError::Invalid`], the message names the
//!    field);
//! 3. load it: plugin, flow, hooks, signature key ([`EndpointError::Load`]), files only
//!    from inside `flows_dir`/`plugins_dir`, literal http-node URLs under the egress policy;
//! 4. commit the row; 5. swap the loaded endpoint into the [`Registry`].
//!
//! What must stay true: steps 3 to 5 run with the admin lock held (the [`Held`] guard every
//! changing function takes), so two changes never interleave, and the registry never
//! serves what the store would not give back after a restart. A masked secret sent back
//! unchanged keeps the stored one, except with a new `graph_api_base`: then the access
//! token must be a literal value in the same change ([`super::token_binding`]).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::endpoint::{Bounds, Endpoint};
use super::registry::{self, Registry, spec_json};
use super::token_binding::{self, Token};
use crate::config::{ENV_PREFIX, EndpointConfig, EndpointSpec, SPEC_SECRETS};
use crate::plugins::PluginRuntime;
use crate::store::admin::{EndpointState, StoredEndpoint, StoredPlugin};
use crate::store::{Store, StoreError};

/// Why a lifecycle step refused or failed. The message (`Display`) is written for the admin
/// reading it: it names the field or the id, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// No such endpoint in the store.
    #[error("no endpoint `{0}`")]
    NotFound(String),
    /// The change clashes with what exists: `exists`, `number_in_use`, `disconnected`.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The body is not an endpoint spec (serde's message, values redacted).
    #[error("{0}")]
    InvalidBody(String),
    /// A field is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The spec is valid but does not load (plugin, flow, hooks, signature key).
    #[error("{0}")]
    Load(String),
    /// No such installed plugin.
    #[error("no plugin `{0}`")]
    PluginNotFound(String),
    /// A plugin (a replacement, new limits) that an endpoint on it, or its own smoke call,
    /// does not run under; nothing was changed.
    #[error("{0}")]
    PluginRejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something on our side: a stored spec that cannot be read, a task that died.
    #[error("{0}")]
    Internal(String),
}

pub type EndpointResult<T> = Result<T, EndpointError>;

/// Proof that the caller holds the admin lock (`Shared::admin_lock`).
pub type Held<'a> = tokio::sync::MutexGuard<'a, ()>;

/// What the lifecycle works on: the store, the served endpoints, the plugin runtime that
/// loads them and what they may reach.
#[derive(Clone, Copy)]
pub struct Lifecycle<'a> {
    pub store: &'a Arc<dyn Store>,
    pub registry: &'a Registry,
    pub runtime: &'a Arc<PluginRuntime>,
    pub bounds: &'a Bounds,
}

/// Where the token and the base are in an endpoint spec, for [`token_binding::check`].
const TOKEN_FIELDS: token_binding::Fields<'static> = token_binding::Fields {
    token: "spec.access_token",
    base: "spec.graph_api_base",
};

impl Lifecycle<'_> {
    /// A new endpoint's spec from the API, read and validated (steps 1 and 2); nothing is
    /// loaded or stored yet.
    pub fn validate_new(&self, body: Value) -> EndpointResult<(EndpointSpec, EndpointConfig)> {
        refuse_env_secrets(&body)?;
        let spec = self.absolute(read_spec(body)?);
        // A first binding: whatever token is given goes to this base.
        token_binding::check(
            TOKEN_FIELDS,
            None,
            &token_binding::effective_base(spec.graph_api_base.as_deref()),
            spec.access_token
                .as_deref()
                .map_or(Token::Absent, Token::Given),
        )
        .map_err(|e| EndpointError::Invalid(e.to_string()))?;
        let config = self.resolve(&spec)?;
        Ok((spec, config))
    }

    /// Loads, commits and serves a validated new endpoint; its stored row.
    pub async fn create(
        &self,
        _held: &Held<'_>,
        spec: EndpointSpec,
        config: EndpointConfig,
    ) -> EndpointResult<StoredEndpoint> {
        self.check_number_free(&config, None).await?;
        if self.row(&spec.id).await?.is_some() {
            return Err(EndpointError::Conflict {
                code: "exists",
                message: format!("endpoint `{}` exists; PATCH it instead", spec.id),
            });
        }
        let endpoint = self.load(config, None).await?;
        let (json, _) = spec_json(&spec).map_err(EndpointError::Internal)?;
        if !self.store.insert_endpoint(&spec.id, json).await? {
            return Err(EndpointError::Conflict {
                code: "exists",
                message: format!("endpoint `{}` exists", spec.id),
            });
        }
        self.registry.insert(endpoint);
        tracing::info!(endpoint = %spec.id, "endpoint created through the admin API");
        self.stored(&spec.id).await
    }

    /// Merge-patches the stored spec, then validates, loads, commits and swaps it in.
    pub async fn update(
        &self,
        held: &Held<'_>,
        id: &str,
        patch: Map<String, Value>,
    ) -> EndpointResult<StoredEndpoint> {
        let prepared = self.prepare(held, id, patch, None).await?;
        self.commit(held, prepared).await
    }

    /// `enabled` set through [`Lifecycle::update`]; a disconnected endpoint is refused.
    pub async fn set_enabled(
        &self,
        held: &Held<'_>,
        id: &str,
        enabled: bool,
    ) -> EndpointResult<StoredEndpoint> {
        if self.stored(id).await?.state == EndpointState::Disconnected {
            return Err(EndpointError::Conflict {
                code: "disconnected",
                message: format!(
                    "endpoint `{id}` is disconnected: PATCH its credentials to reconnect it"
                ),
            });
        }
        let mut patch = Map::new();
        patch.insert("enabled".into(), Value::Bool(enabled));
        self.update(held, id, patch).await
    }

    /// Removes the row (its webhooks go with it) and stops serving the endpoint.
    pub async fn delete(&self, _held: &Held<'_>, id: &str) -> EndpointResult<()> {
        if !self.store.delete_endpoint(id).await? {
            return Err(EndpointError::NotFound(id.to_string()));
        }
        self.registry.remove(id);
        tracing::info!(endpoint = %id, "endpoint deleted through the admin API");
        Ok(())
    }

    /// Removes the credentials (access token, app secret, verify token) and stops serving
    /// the endpoint; the store dead-letters its unsent replies with the change.
    pub async fn disconnect(&self, _held: &Held<'_>, id: &str) -> EndpointResult<StoredEndpoint> {
        let row = self.stored(id).await?;
        let mut spec = parse_stored(&row)?;
        spec.access_token = None;
        spec.app_secret = None;
        spec.verify_token = String::new();
        let (json, _) = spec_json(&spec).map_err(EndpointError::Internal)?;
        if !self
            .store
            .update_endpoint(id, json, EndpointState::Disconnected)
            .await?
        {
            return Err(EndpointError::NotFound(id.to_string()));
        }
        self.registry.remove(id);
        tracing::info!(endpoint = %id, "endpoint disconnected; credentials removed");
        self.stored(id).await
    }

    /// The first half of [`Lifecycle::update`]: read, patch, validate, load; nothing is
    /// changed yet. `candidate` stands in for the installed plugin of its name (a plugin
    /// replacement checked against every endpoint on it before anything is stored).
    pub async fn prepare(
        &self,
        _held: &Held<'_>,
        id: &str,
        patch: Map<String, Value>,
        candidate: Option<StoredPlugin>,
    ) -> EndpointResult<Prepared> {
        let row = self.stored(id).await?;
        let current: Value = serde_json::from_str(&row.spec).map_err(|e| {
            EndpointError::Internal(format!("stored endpoint `{id}` cannot be read: {e}"))
        })?;
        let mut merged = current.clone();
        let token = patched_token(&current, &patch);
        for (key, value) in patch {
            if key == "id" && value.as_str() != Some(id) {
                return Err(EndpointError::Invalid(
                    "spec.id cannot change; create a new endpoint instead".into(),
                ));
            }
            // A secret sent back as it was read (masked, or the `env:` reference the
            // config file wrote) keeps the stored one.
            let old = current.get(&key).and_then(Value::as_str);
            let unchanged_secret = SPEC_SECRETS.contains(&key.as_str())
                && old.is_some_and(|old| {
                    // `admin::mask` moves to secretbox (helper A's part).
                    value.as_str() == Some(crate::secretbox::mask(old).as_str())
                        || value.as_str() == Some(old)
                });
            if unchanged_secret {
                continue;
            }
            refuse_env_secret(&key, &value)?;
            merge(&mut merged, key, value);
        }
        // The access token goes to the Graph API base: a new base needs a literal token
        // given with it, or anyone with the admin token could send the stored one to a host
        // of theirs.
        let base = |spec: &Value| {
            token_binding::effective_base(spec.get("graph_api_base").and_then(Value::as_str))
        };
        token_binding::check(
            TOKEN_FIELDS,
            Some(&base(&current)),
            &base(&merged),
            token.as_ref().map_or(Token::Absent, |t| t.as_token()),
        )
        .map_err(|e| EndpointError::Invalid(e.to_string()))?;
        let spec = self.absolute(read_spec(merged)?);
        let config = self.resolve(&spec)?;
        self.check_number_free(&config, Some(id)).await?;
        let endpoint = self.load(config, candidate).await?;
        Ok(Prepared { spec, endpoint })
    }

    /// The second half of [`Lifecycle::update`]: commit the spec, then serve the loaded
    /// endpoint; its stored row.
    pub async fn commit(
        &self,
        _held: &Held<'_>,
        prepared: Prepared,
    ) -> EndpointResult<StoredEndpoint> {
        let Prepared { spec, endpoint } = prepared;
        let (json, _) = spec_json(&spec).map_err(EndpointError::Internal)?;
        if !self
            .store
            .update_endpoint(&spec.id, json, EndpointState::Active)
            .await?
        {
            return Err(EndpointError::NotFound(spec.id));
        }
        self.registry.insert(endpoint);
        tracing::info!(endpoint = %spec.id, "endpoint changed through the admin API");
        self.stored(&spec.id).await
    }

    /// The stored row of `id`, or [`EndpointError::NotFound`].
    pub async fn stored(&self, id: &str) -> EndpointResult<StoredEndpoint> {
        self.row(id)
            .await?
            .ok_or_else(|| EndpointError::NotFound(id.to_string()))
    }

    async fn row(&self, id: &str) -> EndpointResult<Option<StoredEndpoint>> {
        let (store, key) = (self.store.clone(), id.to_string());
        tokio::task::spawn_blocking(move || store.endpoint_row(&key))
            .await
            .map_err(joined)?
            .map_err(EndpointError::from)
    }

    /// One number, one endpoint: webhooks are routed by endpoint, replies go out from its
    /// number, and two endpoints on one number would answer each other's users.
    async fn check_number_free(
        &self,
        config: &EndpointConfig,
        except: Option<&str>,
    ) -> EndpointResult<()> {
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.endpoints())
            .await
            .map_err(joined)??;
        for row in rows {
            if Some(row.id.as_str()) == except || row.id == config.id {
                continue;
            }
            if let Ok(spec) = serde_json::from_str::<EndpointSpec>(&row.spec)
                && spec.phone_number_id == config.phone_number_id
            {
                return Err(EndpointError::Conflict {
                    code: "number_in_use",
                    message: format!(
                        "phone_number_id {} is served by endpoint `{}`",
                        config.phone_number_id, row.id
                    ),
                });
            }
        }
        Ok(())
    }

    /// Resolved and validated as the config loader does; where a URL is known now, an
    /// internal destination is refused now (the egress client refuses it again at connect
    /// time).
    fn resolve(&self, spec: &EndpointSpec) -> EndpointResult<EndpointConfig> {
        let config = spec
            .resolve(Path::new("/"), "spec")
            .map_err(EndpointError::Invalid)?;
        config
            .check_egress(self.bounds.egress.policy(), "spec")
            .map_err(EndpointError::Invalid)?;
        Ok(config)
    }

    async fn load(
        &self,
        config: EndpointConfig,
        candidate: Option<StoredPlugin>,
    ) -> EndpointResult<Endpoint> {
        registry::load(
            config,
            self.store.clone(),
            self.runtime.clone(),
            candidate,
            self.bounds.clone(),
        )
        .await
        .map_err(EndpointError::Load)
    }

    /// A spec's relative paths made absolute (the store keeps the spec for later starts,
    /// maybe from elsewhere): relative to `flows_dir` (the flow) and `plugins_dir`
    /// (components), the directories they are confined to.
    fn absolute(&self, spec: EndpointSpec) -> EndpointSpec {
        let roots = &self.bounds.files;
        spec.absolute_in(&roots.flows_dir, &roots.plugins_dir)
    }
}

/// A patched endpoint, loaded and checked, with the spec to store; nothing changed yet.
pub struct Prepared {
    spec: EndpointSpec,
    endpoint: Endpoint,
}

impl Prepared {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// The stored spec of a row.
pub fn parse_stored(row: &StoredEndpoint) -> EndpointResult<EndpointSpec> {
    serde_json::from_str(&row.spec).map_err(|e| {
        EndpointError::Internal(format!("stored endpoint `{}` cannot be read: {e}", row.id))
    })
}

fn joined(e: tokio::task::JoinError) -> EndpointError {
    EndpointError::Internal(format!("a background task failed: {e}"))
}

fn read_spec(body: Value) -> EndpointResult<EndpointSpec> {
    serde_json::from_value(body).map_err(|e| {
        EndpointError::InvalidBody(format!(
            "not an endpoint spec: {}",
            crate::redact::redact_values(&e.to_string())
        ))
    })
}

/// Secrets come through the API as literals: an `env:NAME` reference would let an admin
/// read any of the host's environment variables (sent as a bearer token to a Graph API
/// base of their choosing). References belong in the config file.
fn refuse_env_secrets(body: &Value) -> EndpointResult<()> {
    match body {
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, value)| refuse_env_secret(key, value)),
        _ => Ok(()),
    }
}

fn refuse_env_secret(key: &str, value: &Value) -> EndpointResult<()> {
    let reference = value.as_str().is_some_and(|v| v.starts_with(ENV_PREFIX));
    if SPEC_SECRETS.contains(&key) && reference {
        return Err(EndpointError::Invalid(format!(
            "spec.{key}: `env:` references are read from the config file only; send the value"
        )));
    }
    Ok(())
}

/// The access token a merge patch leaves: given (as sent, even masked), kept, or removed.
enum PatchedToken {
    Given(String),
    Kept,
}

impl PatchedToken {
    fn as_token(&self) -> Token<'_> {
        match self {
            PatchedToken::Given(value) => Token::Given(value),
            PatchedToken::Kept => Token::Kept,
        }
    }
}

/// `None`: no token after the patch (never had one, or `null` removes it).
fn patched_token(current: &Value, patch: &Map<String, Value>) -> Option<PatchedToken> {
    match patch.get("access_token") {
        Some(Value::String(value)) => Some(PatchedToken::Given(value.clone())),
        // Not a string: the spec refuses it further on; nothing is stored.
        Some(_) => None,
        None => current.get("access_token").map(|_| PatchedToken::Kept),
    }
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, key: String, value: Value) {
    let Value::Object(map) = target else {
        return;
    };
    match value {
        Value::Null => {
            map.remove(&key);
        }
        Value::Object(patch) => {
            let entry = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            for (k, v) in patch {
                merge(entry, k, v);
            }
        }
        other => {
            map.insert(key, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch() {
        let mut doc = json!({"a": 1, "h": {"x": 1, "y": 2}, "t": "s"});
        for (k, v) in [
            ("a".to_string(), Value::Null),
            ("h".to_string(), json!({"x": null, "z": 3})),
            ("t".to_string(), json!("u")),
        ] {
            merge(&mut doc, k, v);
        }
        assert_eq!(doc, json!({"h": {"y": 2, "z": 3}, "t": "u"}));
    }
}
