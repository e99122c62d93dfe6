//! Endpoints: thin HTTP handlers over [`crate::endpoints::lifecycle`], plus the views.
//!
//! A request body is an [`EndpointSpec`] in JSON (the keys of a TOML `[[endpoints]]`
//! table). The lifecycle validates, loads, commits and swaps; its [`EndpointError`]s
//! become answers here: 400 `invalid_body` (not a spec: the field serde could not take),
//! 400 `invalid_field` (the message names the field; an internal `handover.webhook_url`
//! too), 422 `invalid_config` (plugin, flow, hooks or signature key do not load; files
//! outside `flows_dir`/`plugins_dir` are "… outside flows_dir", whether or not they
//! exist), 404 `not_found`, 409 `exists`/`number_in_use`/`disconnected`, 503 for the store.
//!
//! Each change runs under `Shared::admin_lock` (two changes never interleave) and in a
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
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{EndpointConfig, EndpointSpec, SPEC_SECRETS, Secret};
use crate::endpoints::endpoint::Activity;
use crate::endpoints::lifecycle::{EndpointError, Lifecycle};
use crate::serve::Shared;
use crate::store::admin::{EndpointState, StoredEndpoint};
use crate::whatsapp::GraphErrorKind;

use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
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
    let (spec, config) = lifecycle(&shared).validate_new(body)?;
    let view = detached(async move {
        let held = shared.admin_lock.lock().await;
        let row = lifecycle(&shared).create(&held, spec, config).await?;
        view(&shared, row).await
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
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
        let held = shared.admin_lock.lock().await;
        let row = lifecycle(&shared).update(&held, &id, patch).await?;
        view(&shared, row).await
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
    detached(async move {
        let held = shared.admin_lock.lock().await;
        lifecycle(&shared).delete(&held, &id).await?;
        // Its webhooks went with it.
        super::events::refresh(&shared, &id).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
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
    detached(async move {
        let held = shared.admin_lock.lock().await;
        let row = lifecycle(&shared).disconnect(&held, &id).await?;
        view(&shared, row).await
    })
    .await
    .map(axum::Json)
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

/// The lifecycle's handles, from what the admin routes share.
pub(crate) fn lifecycle(shared: &Shared) -> Lifecycle<'_> {
    Lifecycle {
        store: &shared.store,
        registry: &shared.endpoints,
        runtime: &shared.runtime,
        bounds: &shared.bounds,
    }
}

/// The lifecycle's refusals as the answers the API has always given.
impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> ApiError {
        match e {
            EndpointError::NotFound(_) => ApiError::not_found(e.to_string()),
            EndpointError::Conflict { code, message } => ApiError::conflict(code, message),
            EndpointError::InvalidBody(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
            }
            EndpointError::Invalid(message) => ApiError::invalid_field(message),
            EndpointError::Load(message) => ApiError::unprocessable("invalid_config", message),
            EndpointError::PluginNotFound(_) => ApiError::not_found(e.to_string()),
            EndpointError::PluginRejected(message) => {
                ApiError::unprocessable("plugin_rejected", message)
            }
            EndpointError::Store(e) => ApiError::from(e),
            EndpointError::Internal(message) => ApiError::internal(message),
        }
    }
}

async fn stored(shared: &Shared, id: &str) -> ApiResult<StoredEndpoint> {
    Ok(lifecycle(shared).stored(id).await?)
}

fn parse_stored(row: &StoredEndpoint) -> ApiResult<EndpointSpec> {
    Ok(crate::endpoints::lifecycle::parse_stored(row)?)
}

/// Runs an admin change to completion even if the client goes away: its store write is
/// queued when called, so dropping the handler half way would leave the registry behind.
pub(crate) async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(change).await?
}

async fn set_enabled(shared: &Arc<Shared>, id: &str, enabled: bool) -> ApiResult<EndpointView> {
    let (shared, id) = (shared.clone(), id.to_string());
    detached(async move {
        let held = shared.admin_lock.lock().await;
        let row = lifecycle(&shared).set_enabled(&held, &id, enabled).await?;
        view(&shared, row).await
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
    served: Option<&crate::endpoints::endpoint::Endpoint>,
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
