//! Endpoints: specs in the store, loaded endpoints in the registry.
//!
//! A request body is an [`EndpointSpec`] in JSON (the keys of a TOML `[[endpoints]]`
//! table). Create and update go through the same steps, and stop at the first that fails:
//! 1. read the JSON into a spec (400 `invalid_body` naming the field serde could not take);
//! 2. resolve and validate it as the config loader does (400 `invalid_field`, the message
//!    names the field), `handover.webhook_url` against the egress policy (400 for an
//!    internal address);
//! 3. load it: plugin, flow, hooks, signature key (422 `invalid_config`); files only from
//!    inside `flows_dir`/`plugins_dir` (outside: "… is outside flows_dir", whether or not
//!    the file exists), literal http-node URLs against the egress policy;
//! 4. commit the row; 5. swap the loaded endpoint into the registry.
//!
//! Steps 3 to 5 run under `Shared::admin_lock` (two changes never interleave) and in a
//! task of their own ([`detached`]), so a client that goes away cannot stop a change
//! between its commit and its swap.
//!
//! Responses show secrets masked ([`super::mask`]); a masked value sent back unchanged
//! (a client that read, edited and wrote the whole spec) keeps the stored secret, except
//! with a new `graph_api_base`: then the access token must be given as a literal value in
//! the same request ([`super::token_binding`]), or the change is refused (400, nothing
//! stored, nothing sent).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{EndpointConfig, EndpointSpec, SPEC_SECRETS, Secret};
use crate::serve::Shared;
use crate::serve::endpoint::Activity;
use crate::serve::registry::{self, spec_json};
use crate::store::admin::{EndpointState, StoredEndpoint, StoredPlugin};
use crate::whatsapp::GraphErrorKind;

use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use super::token_binding::{self, Token};
use super::{PREFIX, blocking, mask};

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(disconnect))
        .routes(routes!(verify))
        .routes(routes!(qr_code))
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    /// `active` or `disconnected` (credentials removed, not served).
    pub state: String,
    pub enabled: bool,
    /// The spec with secrets masked.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// What to paste into Meta's dashboard as the callback URL.
    pub callback_url: String,
    /// Masked; the flow designer set it.
    pub verify_token: String,
    /// The plugin serving it (`whatsapp`, an installed plugin, a path).
    pub plugin: Option<String>,
    pub last_handshake_ms: Option<u64>,
    pub last_webhook_ms: Option<u64>,
    pub health: Health,
    pub display_phone_number: Option<String>,
    /// `https://wa.me/<number>`, once the number is known (configured or verified).
    pub wa_me_link: Option<String>,
    /// Where the QR code of the `wa.me` link is served as SVG.
    pub qr_svg_url: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded`, `disabled` or `disconnected`.
    pub status: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
}

/// What `verify` found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub phone_number: Option<PhoneNumber>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PhoneNumber {
    pub id: String,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    pub code: String,
    pub message: String,
}

fn problem(code: &str, message: impl Into<String>) -> Problem {
    Problem {
        code: code.to_string(),
        message: message.into(),
    }
}

// ------------------------------------------------------------------------------ routes

#[utoipa::path(get, path = "/admin/v1/endpoints", tag = "endpoints",
    responses((status = 200, body = EndpointList), (status = 401, body = ErrorBody)))]
async fn list(State(shared): State<Arc<Shared>>) -> ApiResult<axum::Json<EndpointList>> {
    let rows = blocking(&shared, |store| store.endpoints()).await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for row in rows {
        endpoints.push(view(&shared, row).await?);
    }
    Ok(axum::Json(EndpointList { endpoints }))
}

#[utoipa::path(post, path = "/admin/v1/endpoints", tag = "endpoints", request_body = EndpointSpec,
    responses((status = 201, body = EndpointView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, axum::Json<EndpointView>)> {
    refuse_env_secrets(&body)?;
    let spec = absolute(&shared, read_spec(body)?);
    // A first binding: whatever token is given goes to this base.
    token_binding::check(
        TOKEN_FIELDS,
        None,
        &token_binding::effective_base(spec.graph_api_base.as_deref()),
        spec.access_token
            .as_deref()
            .map_or(Token::Absent, Token::Given),
    )
    .map_err(|e| ApiError::invalid_field(e.to_string()))?;
    let config = resolve(&shared, &spec)?;
    let view = detached(create_endpoint(shared, spec, config)).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

async fn create_endpoint(
    shared: Arc<Shared>,
    spec: EndpointSpec,
    config: EndpointConfig,
) -> ApiResult<EndpointView> {
    let _change = shared.admin_lock.lock().await;
    check_number_free(&shared, &config, None).await?;
    if blocking(&shared, {
        let id = spec.id.clone();
        move |store| store.endpoint_row(&id)
    })
    .await?
    .is_some()
    {
        return Err(ApiError::conflict(
            "exists",
            format!("endpoint `{}` exists; PATCH it instead", spec.id),
        ));
    }
    let endpoint = load(&shared, config, None).await?;
    let (json, _) = spec_json(&spec).map_err(ApiError::internal)?;
    if !shared.store.insert_endpoint(&spec.id, json).await? {
        return Err(ApiError::conflict(
            "exists",
            format!("endpoint `{}` exists", spec.id),
        ));
    }
    shared.endpoints.insert(endpoint);
    tracing::info!(endpoint = %spec.id, "endpoint created through the admin API");
    let row = stored(&shared, &spec.id).await?;
    view(&shared, row).await
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn show(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    let row = stored(&shared, &id).await?;
    Ok(axum::Json(view(&shared, row).await?))
}

#[utoipa::path(patch, path = "/admin/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = Object, description = "JSON merge patch of the spec: keys replace, `null` removes"),
    responses((status = 200, body = EndpointView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<axum::Json<EndpointView>> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "a merge patch is a JSON object",
        ));
    };
    detached(async move {
        let _change = shared.admin_lock.lock().await;
        apply(&shared, &id, patch, None).await
    })
    .await
    .map(axum::Json)
}

#[utoipa::path(delete, path = "/admin/v1/endpoints/{id}", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    detached(delete_endpoint(shared, id)).await
}

async fn delete_endpoint(shared: Arc<Shared>, id: String) -> ApiResult<StatusCode> {
    let _change = shared.admin_lock.lock().await;
    if !shared.store.delete_endpoint(&id).await? {
        return Err(not_found(&id));
    }
    shared.endpoints.remove(&id);
    // Its webhooks went with it.
    super::events::refresh(&shared, &id).await?;
    tracing::info!(endpoint = %id, "endpoint deleted through the admin API");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/enable", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody),
        (status = 409, description = "disconnected", body = ErrorBody)))]
async fn enable(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    set_enabled(&shared, &id, true).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/disable", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody),
        (status = 409, description = "disconnected", body = ErrorBody)))]
async fn disable(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    set_enabled(&shared, &id, false).await.map(axum::Json)
}

/// Removes the credentials (access token, app secret, verify token) and stops serving the
/// endpoint; its unsent replies become dead letters (the store does it with the change);
/// its conversations, transcripts and webhooks stay. A PATCH that gives valid credentials
/// again reconnects it.
#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/disconnect", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn disconnect(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<EndpointView>> {
    detached(disconnect_endpoint(shared, id))
        .await
        .map(axum::Json)
}

async fn disconnect_endpoint(shared: Arc<Shared>, id: String) -> ApiResult<EndpointView> {
    let _change = shared.admin_lock.lock().await;
    let row = stored(&shared, &id).await?;
    let mut spec = parse_stored(&row)?;
    spec.access_token = None;
    spec.app_secret = None;
    spec.verify_token = String::new();
    let (json, _) = spec_json(&spec).map_err(ApiError::internal)?;
    if !shared
        .store
        .update_endpoint(&id, json, EndpointState::Disconnected)
        .await?
    {
        return Err(not_found(&id));
    }
    shared.endpoints.remove(&id);
    tracing::info!(endpoint = %id, "endpoint disconnected; credentials removed");
    let row = stored(&shared, &id).await?;
    view(&shared, row).await
}

/// Checks the credentials against the Graph API: `GET /{phone_number_id}` with the access
/// token, and says what is wrong when it fails.
#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/verify", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = VerifyReport), (status = 404, body = ErrorBody)))]
async fn verify(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<VerifyReport>> {
    let row = stored(&shared, &id).await?;
    let spec = parse_stored(&row)?;
    let mut problems = Vec::new();
    if row.state == EndpointState::Disconnected {
        problems.push(problem(
            "disconnected",
            "the endpoint is disconnected: PATCH new credentials first",
        ));
        return Ok(axum::Json(VerifyReport {
            ok: false,
            phone_number: None,
            problems,
        }));
    }
    let config = spec
        .resolve(Path::new("/"), "spec")
        .map_err(ApiError::invalid_field)?;
    if config.insecure_skip_signature {
        problems.push(problem(
            "unsigned",
            "insecure_skip_signature is on: webhooks are not authenticated",
        ));
    }
    let Some(token) = config.access_token.clone() else {
        problems.push(problem(
            "no_access_token",
            "no access_token: the Graph API cannot be called and replies cannot be sent",
        ));
        return Ok(axum::Json(VerifyReport {
            ok: false,
            phone_number: None,
            problems,
        }));
    };
    let phone = match graph_phone_number(&shared, &config, &token).await {
        Ok(phone) => phone,
        Err(mut p) => {
            // Meta quotes a malformed token back in its error message.
            p.message = p.message.replace(token.expose(), &mask(token.expose()));
            problems.push(p);
            return Ok(axum::Json(VerifyReport {
                ok: false,
                phone_number: None,
                problems,
            }));
        }
    };
    let verified = serde_json::to_string(&phone).map_err(|e| ApiError::internal(e.to_string()))?;
    // Only onto the endpoint this verify read (not one deleted and created again since).
    shared
        .store
        .endpoint_verified(&id, row.created_ms, verified)
        .await?;
    Ok(axum::Json(VerifyReport {
        ok: problems.is_empty(),
        phone_number: Some(phone),
        problems,
    }))
}

/// The `wa.me` link of the endpoint's number as a QR code.
#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/qr.svg", tag = "endpoints",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, content_type = "image/svg+xml", body = String),
        (status = 404, body = ErrorBody)))]
async fn qr_code(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Response> {
    let row = stored(&shared, &id).await?;
    let spec = parse_stored(&row)?;
    let link = display_number(&spec, &row)
        .and_then(|n| wa_me_link(&n))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "endpoint `{id}` has no known number yet: set display_phone_number or run verify"
            ))
        })?;
    let code = qrcode::QrCode::new(link.as_bytes())
        .map_err(|e| ApiError::internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

// ------------------------------------------------------------------------------ helpers

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no endpoint `{id}`"))
}

async fn stored(shared: &Arc<Shared>, id: &str) -> ApiResult<StoredEndpoint> {
    let key = id.to_string();
    blocking(shared, move |store| store.endpoint_row(&key))
        .await?
        .ok_or_else(|| not_found(id))
}

fn read_spec(body: Value) -> ApiResult<EndpointSpec> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!(
                "not an endpoint spec: {}",
                crate::redact::redact_values(&e.to_string())
            ),
        )
    })
}

fn parse_stored(row: &StoredEndpoint) -> ApiResult<EndpointSpec> {
    serde_json::from_str(&row.spec).map_err(|e| {
        ApiError::internal(format!("stored endpoint `{}` cannot be read: {e}", row.id))
    })
}

fn resolve(shared: &Shared, spec: &EndpointSpec) -> ApiResult<EndpointConfig> {
    let config = spec
        .resolve(Path::new("/"), "spec")
        .map_err(ApiError::invalid_field)?;
    // Where the URL is known now, an internal destination is refused now (400); the
    // egress client refuses it again at connect time.
    config
        .check_egress(shared.bounds.egress.policy(), "spec")
        .map_err(ApiError::invalid_field)?;
    Ok(config)
}

async fn load(
    shared: &Arc<Shared>,
    config: EndpointConfig,
    candidate: Option<StoredPlugin>,
) -> ApiResult<crate::serve::endpoint::Endpoint> {
    registry::load(
        config,
        shared.store.clone(),
        shared.runtime.clone(),
        candidate,
        shared.bounds.clone(),
    )
    .await
    .map_err(|e| ApiError::unprocessable("invalid_config", e))
}

/// A spec's relative paths, as the host's working directory sees them, made absolute
/// (the store keeps the spec for later starts, maybe from elsewhere).
/// Relative paths in a spec from the API are relative to `flows_dir` (the flow) and
/// `plugins_dir` (components), the directories they are confined to.
fn absolute(shared: &Shared, spec: EndpointSpec) -> EndpointSpec {
    let roots = &shared.bounds.files;
    spec.absolute_in(&roots.flows_dir, &roots.plugins_dir)
}

/// Secrets come through the API as literals: an `env:NAME` reference would let an admin
/// read any of the host's environment variables (sent as a bearer token to a Graph API
/// base of their choosing). References belong in the config file.
fn refuse_env_secrets(body: &Value) -> ApiResult<()> {
    match body {
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, value)| refuse_env_secret(key, value)),
        _ => Ok(()),
    }
}

fn refuse_env_secret(key: &str, value: &Value) -> ApiResult<()> {
    let reference = value
        .as_str()
        .is_some_and(|v| v.starts_with(crate::config::ENV_PREFIX));
    if SPEC_SECRETS.contains(&key) && reference {
        return Err(ApiError::invalid_field(format!(
            "spec.{key}: `env:` references are read from the config file only; send the value"
        )));
    }
    Ok(())
}

/// Where the token and the base are in an endpoint spec, for [`token_binding::check`].
const TOKEN_FIELDS: token_binding::Fields<'static> = token_binding::Fields {
    token: "spec.access_token",
    base: "spec.graph_api_base",
};

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

/// Runs an admin change to completion even if the client goes away: its store write is
/// queued when called, so dropping the handler half way would leave the registry behind.
pub(crate) async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(change).await?
}

/// One number, one endpoint: webhooks are routed by endpoint, replies go out from its
/// number, and two endpoints on one number would answer each other's users.
async fn check_number_free(
    shared: &Arc<Shared>,
    config: &EndpointConfig,
    except: Option<&str>,
) -> ApiResult<()> {
    let rows = blocking(shared, |store| store.endpoints()).await?;
    for row in rows {
        if Some(row.id.as_str()) == except || row.id == config.id {
            continue;
        }
        if let Ok(spec) = serde_json::from_str::<EndpointSpec>(&row.spec)
            && spec.phone_number_id == config.phone_number_id
        {
            return Err(ApiError::conflict(
                "number_in_use",
                format!(
                    "phone_number_id {} is served by endpoint `{}`",
                    config.phone_number_id, row.id
                ),
            ));
        }
    }
    Ok(())
}

/// Merge-patches the stored spec, then validates, loads, commits and swaps it in. The
/// caller holds `shared.admin_lock`.
pub async fn apply(
    shared: &Arc<Shared>,
    id: &str,
    patch: Map<String, Value>,
    candidate: Option<StoredPlugin>,
) -> ApiResult<EndpointView> {
    let endpoint = prepare(shared, id, patch, candidate).await?;
    commit(shared, endpoint).await
}

/// A patched endpoint, loaded and checked, with the spec to store; nothing changed yet.
pub struct Prepared {
    spec: EndpointSpec,
    endpoint: crate::serve::endpoint::Endpoint,
}

impl Prepared {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// The first half of [`apply`]: read, patch, validate, load.
pub async fn prepare(
    shared: &Arc<Shared>,
    id: &str,
    patch: Map<String, Value>,
    candidate: Option<StoredPlugin>,
) -> ApiResult<Prepared> {
    let row = stored(shared, id).await?;
    let current: Value = serde_json::from_str(&row.spec)
        .map_err(|e| ApiError::internal(format!("stored endpoint `{id}` cannot be read: {e}")))?;
    let mut merged = current.clone();
    let token = patched_token(&current, &patch);
    for (key, value) in patch {
        if key == "id" && value.as_str() != Some(id) {
            return Err(ApiError::invalid_field(
                "spec.id cannot change; create a new endpoint instead",
            ));
        }
        // A secret sent back as it was read (masked, or the `env:` reference the config
        // file wrote) keeps the stored one.
        let old = current.get(&key).and_then(Value::as_str);
        let unchanged_secret = SPEC_SECRETS.contains(&key.as_str())
            && old.is_some_and(|old| {
                value.as_str() == Some(mask(old).as_str()) || value.as_str() == Some(old)
            });
        if unchanged_secret {
            continue;
        }
        refuse_env_secret(&key, &value)?;
        merge(&mut merged, key, value);
    }
    // The access token goes to the Graph API base: a new base needs a literal token given
    // with it, or anyone with the admin token could send the stored one to a host of theirs.
    let base = |spec: &Value| {
        token_binding::effective_base(spec.get("graph_api_base").and_then(Value::as_str))
    };
    token_binding::check(
        TOKEN_FIELDS,
        Some(&base(&current)),
        &base(&merged),
        token.as_ref().map_or(Token::Absent, |t| t.as_token()),
    )
    .map_err(|e| ApiError::invalid_field(e.to_string()))?;
    let spec = absolute(shared, read_spec(merged)?);
    let config = resolve(shared, &spec)?;
    check_number_free(shared, &config, Some(id)).await?;
    let endpoint = load(shared, config, candidate).await?;
    Ok(Prepared { spec, endpoint })
}

/// The second half of [`apply`]: commit the spec, then serve the loaded endpoint.
pub async fn commit(shared: &Arc<Shared>, prepared: Prepared) -> ApiResult<EndpointView> {
    let Prepared { spec, endpoint } = prepared;
    let (json, _) = spec_json(&spec).map_err(ApiError::internal)?;
    if !shared
        .store
        .update_endpoint(&spec.id, json, EndpointState::Active)
        .await?
    {
        return Err(not_found(&spec.id));
    }
    shared.endpoints.insert(endpoint);
    tracing::info!(endpoint = %spec.id, "endpoint changed through the admin API");
    let row = stored(shared, &spec.id).await?;
    view(shared, row).await
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

async fn set_enabled(shared: &Arc<Shared>, id: &str, enabled: bool) -> ApiResult<EndpointView> {
    let mut patch = Map::new();
    patch.insert("enabled".into(), Value::Bool(enabled));
    let (shared, id) = (shared.clone(), id.to_string());
    detached(async move {
        let _change = shared.admin_lock.lock().await;
        if stored(&shared, &id).await?.state == EndpointState::Disconnected {
            return Err(ApiError::conflict(
                "disconnected",
                format!("endpoint `{id}` is disconnected: PATCH its credentials to reconnect it"),
            ));
        }
        apply(&shared, &id, patch, None).await
    })
    .await
}

fn display_number(spec: &EndpointSpec, row: &StoredEndpoint) -> Option<String> {
    spec.display_phone_number.clone().or_else(|| {
        row.verified
            .as_deref()
            .and_then(|v| serde_json::from_str::<PhoneNumber>(v).ok())
            .and_then(|p| p.display_phone_number)
    })
}

/// `https://wa.me/<digits>` (wa.me wants the number without `+`, spaces or dashes).
pub fn wa_me_link(number: &str) -> Option<String> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 6).then(|| format!("https://wa.me/{digits}"))
}

/// The endpoint as the API shows it: masked spec, URLs, activity, health.
pub async fn view(shared: &Arc<Shared>, row: StoredEndpoint) -> ApiResult<EndpointView> {
    let spec = parse_stored(&row)?;
    let served = shared.endpoints.get(&row.id);
    let last_webhook_ms = match served
        .as_ref()
        .and_then(|e| Activity::get(&e.activity.last_webhook_ms))
    {
        Some(ms) => Some(ms),
        None => {
            // Nothing since this start: the inbox says (a scan, so the answer is kept).
            let id = row.id.clone();
            let found = blocking(shared, move |store| store.last_webhook_ms(&id)).await?;
            if let (Some(ms), Some(endpoint)) = (found, served.as_ref()) {
                Activity::set(&endpoint.activity.last_webhook_ms, ms);
            }
            found
        }
    };
    let number = display_number(&spec, &row);
    let wa_me = number.as_deref().and_then(wa_me_link);
    let base = shared.public_url.clone().unwrap_or_else(|| {
        shared
            .local_addr
            .get()
            .map_or_else(String::new, |addr| format!("http://{addr}"))
    });
    let enabled = spec.enabled.unwrap_or(true);
    let mut health = health(&row, &spec, served.as_deref(), enabled);
    if let Some(reason) = shared.endpoints.failure(&row.id) {
        health
            .problems
            .push(format!("not loaded at start: {reason}"));
    }
    Ok(EndpointView {
        callback_url: format!("{base}/webhooks/{}", row.id),
        verify_token: mask(&spec.verify_token),
        plugin: served.as_ref().map(|e| e.plugin_name.clone()),
        qr_svg_url: wa_me
            .as_ref()
            .map(|_| format!("{PREFIX}/endpoints/{}/qr.svg", row.id)),
        wa_me_link: wa_me,
        display_phone_number: number,
        spec: masked_spec(&spec),
        state: row.state.as_str().to_string(),
        enabled,
        last_handshake_ms: row.last_handshake_ms,
        last_webhook_ms,
        health,
        id: row.id,
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
    })
}

fn health(
    row: &StoredEndpoint,
    spec: &EndpointSpec,
    served: Option<&crate::serve::endpoint::Endpoint>,
    enabled: bool,
) -> Health {
    if row.state == EndpointState::Disconnected {
        return Health {
            status: "disconnected".into(),
            problems: vec!["credentials removed; not served".into()],
        };
    }
    let mut problems = Vec::new();
    if spec.access_token.is_none() {
        problems.push("no access_token: replies cannot be sent".to_string());
    }
    if spec.insecure_skip_signature == Some(true) {
        problems.push("insecure_skip_signature: webhooks are not authenticated".to_string());
    }
    if let Some(endpoint) = served {
        let failed = Activity::get(&endpoint.activity.last_auth_failure_ms);
        let sent = Activity::get(&endpoint.activity.last_send_ms);
        if failed.is_some_and(|f| sent.is_none_or(|s| f > s)) {
            problems.push(
                "the Graph API refused the access token at the last attempt (run verify)"
                    .to_string(),
            );
        }
    } else {
        problems.push("not loaded".to_string());
    }
    let status = if !enabled {
        "disabled"
    } else if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    Health {
        status: status.into(),
        problems,
    }
}

/// The spec as JSON with every secret masked.
fn masked_spec(spec: &EndpointSpec) -> Value {
    let mut value = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        for key in SPEC_SECRETS {
            if let Some(Value::String(secret)) = map.get_mut(key) {
                *secret = mask(secret);
            }
        }
    }
    value
}

/// `GET {graph}/{version}/{phone_number_id}`: the number's details, or what is wrong.
async fn graph_phone_number(
    shared: &Arc<Shared>,
    config: &EndpointConfig,
    token: &Secret,
) -> Result<PhoneNumber, Problem> {
    let url = format!(
        "{}/{}/{}?fields=display_phone_number,verified_name,quality_rating",
        config.graph_api_base, config.graph_api_version, config.phone_number_id
    );
    let response = shared
        .http
        .get(&url)
        .bearer_auth(token.expose())
        .timeout(shared.request_timeout)
        .send()
        .await
        .map_err(|e| {
            problem(
                "graph_unreachable",
                format!(
                    "the Graph API at {} did not answer: {}",
                    config.graph_api_base,
                    e.without_url()
                ),
            )
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        return Ok(PhoneNumber {
            id: text("id").unwrap_or_else(|| config.phone_number_id.clone()),
            display_phone_number: text("display_phone_number"),
            verified_name: text("verified_name"),
            quality_rating: text("quality_rating"),
        });
    }
    Err(graph_problem(status, &body, &config.phone_number_id))
}

/// Graph's error codes as advice ([`GraphErrorKind`]: 190 token, 10/200–299 permission,
/// 100 id).
fn graph_problem(status: StatusCode, body: &Value, phone_number_id: &str) -> Problem {
    let error = body.get("error");
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_i64);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("no error message");
    match code.map(|c| (c, GraphErrorKind::of(c))) {
        Some((_, GraphErrorKind::AccessTokenInvalid)) => problem(
            "access_token_invalid",
            format!("the access token is invalid or expired (Graph error 190: {message})"),
        ),
        Some((_, GraphErrorKind::PermissionMissing)) => problem(
            "permission_missing",
            format!(
                "the token lacks whatsapp_business_messaging/management permission for this number (Graph error {}: {message})",
                code.unwrap_or_default()
            ),
        ),
        Some((_, GraphErrorKind::InvalidParameter)) => problem(
            "phone_number_id_unknown",
            format!(
                "phone_number_id {phone_number_id} does not exist or this token cannot see it (Graph error 100: {message})"
            ),
        ),
        Some((other, GraphErrorKind::Other)) => problem(
            "graph_error",
            format!("the Graph API answered {status} with error {other}: {message}"),
        ),
        None => problem(
            "graph_error",
            format!("the Graph API answered {status} without an error body"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn wa_me_links() {
        assert_eq!(
            wa_me_link("+1 555-010-0123").as_deref(),
            Some("https://wa.me/15550100123")
        );
        assert_eq!(wa_me_link("n/a"), None);
    }

    #[test]
    fn graph_errors_are_explained() {
        let body = |code: i64| json!({"error": {"code": code, "message": "m"}});
        assert_eq!(
            graph_problem(StatusCode::UNAUTHORIZED, &body(190), "1").code,
            "access_token_invalid"
        );
        assert_eq!(
            graph_problem(StatusCode::FORBIDDEN, &body(200), "1").code,
            "permission_missing"
        );
        assert_eq!(
            graph_problem(StatusCode::BAD_REQUEST, &body(100), "1").code,
            "phone_number_id_unknown"
        );
        assert_eq!(
            graph_problem(StatusCode::BAD_GATEWAY, &Value::Null, "1").code,
            "graph_error"
        );
    }
}
