//! Plugins: adapter components installed into the store, plus the bundled one.
//!
//! An install is the raw `.wasm` body. It is loaded exactly as an endpoint would load it
//! (one engine, the same checks): it must export a supported `plugboard:channel/adapter`
//! version, import nothing the host does not link (no `wasi:http`, no sockets), and answer
//! the `info` smoke call within its limits. Anything else is 422 `plugin_rejected` with the
//! loader's reason, and nothing is stored. Memory and time limits are per plugin (query
//! parameters at install) and apply to every call of every endpoint using it.
//!
//! The bundled WhatsApp adapter is listed as `builtin` and can be neither replaced nor
//! removed; install its bytes under another name to pin a copy.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::BUNDLED_PLUGIN;
use crate::plugins::types::ChannelInfo;
use crate::plugins::{AdapterPlugin, BUNDLED_WHATSAPP, PluginLimits};
use crate::serve::Shared;
use crate::store::admin::StoredPlugin;

use super::error::{ApiError, ApiJson, ApiResult, ErrorBody, bytes_rejection};
use super::{blocking, endpoints};

/// Bounds of the per-plugin limits an admin may set.
const MEMORY_MB: std::ops::RangeInclusive<u64> = 1..=1024;
const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1..=30_000;

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list, install))
        .routes(routes!(inspect, set_limits, remove))
}

/// New limits for an installed plugin; absent keys keep theirs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    pub max_memory_mb: Option<u64>,
    pub call_timeout_ms: Option<u64>,
}

/// The limits an installed plugin runs under.
pub fn limits_of(plugin: &StoredPlugin) -> PluginLimits {
    PluginLimits::installed(plugin.max_memory_bytes, plugin.call_timeout_ms)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstallParams {
    /// Install under this name instead of the one the plugin declares.
    pub name: Option<String>,
    /// Largest linear memory of one instance, in MiB (default 64).
    pub max_memory_mb: Option<u64>,
    /// Wall-clock budget of one call, in milliseconds (default 500).
    pub call_timeout_ms: Option<u64>,
    /// Replace an installed plugin of that name (endpoints using it reload).
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub sha256: String,
    pub builtin: bool,
    pub size_bytes: usize,
    pub limits: LimitsView,
    /// The settings the plugin declares (which are secret, which required).
    pub settings: Vec<SettingView>,
    /// Endpoints served by it.
    pub used_by: Vec<String>,
    pub installed_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub max_memory_mb: u64,
    pub call_timeout_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingView {
    pub name: String,
    pub label: String,
    pub required: bool,
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
}

/// What the bundled adapter says of itself (loaded once, on first use).
static BUNDLED_INFO: OnceLock<Result<(ChannelInfo, String, String), String>> = OnceLock::new();

async fn bundled(shared: &Arc<Shared>) -> ApiResult<PluginView> {
    let runtime = shared.runtime.clone();
    let info = tokio::task::spawn_blocking(move || {
        BUNDLED_INFO
            .get_or_init(|| {
                AdapterPlugin::load(&runtime, BUNDLED_WHATSAPP, PluginLimits::default())
                    .map(|p| {
                        (
                            p.info().clone(),
                            p.wit_version().to_string(),
                            p.hash().to_string(),
                        )
                    })
                    .map_err(|e| e.to_string())
            })
            .clone()
    })
    .await?
    .map_err(ApiError::internal)?;
    let (info, wit_version, sha256) = info;
    let defaults = PluginLimits::default();
    Ok(PluginView {
        name: BUNDLED_PLUGIN.to_string(),
        version: info.version.clone(),
        wit_version,
        sha256,
        builtin: true,
        size_bytes: BUNDLED_WHATSAPP.len(),
        limits: limits_view(&defaults),
        settings: settings(&info),
        used_by: used_by(shared, BUNDLED_PLUGIN).await?,
        installed_ms: None,
    })
}

fn limits_view(limits: &PluginLimits) -> LimitsView {
    LimitsView {
        max_memory_mb: u64::try_from(limits.max_memory_bytes >> 20).unwrap_or(u64::MAX),
        call_timeout_ms: u64::try_from(limits.call_deadline.as_millis()).unwrap_or(u64::MAX),
    }
}

fn settings(info: &ChannelInfo) -> Vec<SettingView> {
    info.settings
        .iter()
        .map(|s| SettingView {
            name: s.name.clone(),
            label: s.label.clone(),
            required: s.required,
            secret: s.secret,
            description: s.description.clone(),
        })
        .collect()
}

/// The endpoints (stored, any state) whose spec names this plugin.
async fn used_by(shared: &Arc<Shared>, name: &str) -> ApiResult<Vec<String>> {
    Ok(endpoints::lifecycle(shared).used_by(name).await?)
}

async fn stored_view(shared: &Arc<Shared>, plugin: StoredPlugin) -> ApiResult<PluginView> {
    let info: Option<ChannelInfo> = serde_json::from_str(&plugin.info).ok();
    Ok(PluginView {
        used_by: used_by(shared, &plugin.name).await?,
        limits: limits_view(&limits_of(&plugin)),
        settings: info.as_ref().map(settings).unwrap_or_default(),
        name: plugin.name,
        version: plugin.version,
        wit_version: plugin.wit_version,
        sha256: plugin.sha256,
        builtin: false,
        size_bytes: plugin.wasm.len(),
        installed_ms: Some(plugin.installed_ms),
    })
}

#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins",
    responses((status = 200, body = PluginList), (status = 401, body = ErrorBody)))]
async fn list(State(shared): State<Arc<Shared>>) -> ApiResult<axum::Json<PluginList>> {
    let mut plugins = vec![bundled(&shared).await?];
    for plugin in blocking(&shared, |store| store.plugins()).await? {
        plugins.push(stored_view(&shared, plugin).await?);
    }
    Ok(axum::Json(PluginList { plugins }))
}

#[utoipa::path(get, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
async fn inspect(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<axum::Json<PluginView>> {
    if name == BUNDLED_PLUGIN {
        return Ok(axum::Json(bundled(&shared).await?));
    }
    let key = name.clone();
    let plugin = blocking(&shared, move |store| store.plugin(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plugin `{name}`")))?;
    Ok(axum::Json(stored_view(&shared, plugin).await?))
}

#[utoipa::path(post, path = "/admin/v1/plugins", tag = "plugins", params(InstallParams),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses((status = 201, body = PluginView), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn install(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<InstallParams>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<PluginView>)> {
    let body = body.map_err(bytes_rejection)?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be the plugin's .wasm bytes",
        ));
    }
    let limits = requested_limits(&params)?;
    let runtime = shared.runtime.clone();
    let bytes = body.to_vec();
    let checked = {
        let limits = limits.clone();
        tokio::task::spawn_blocking(move || {
            AdapterPlugin::load(&runtime, &bytes, limits).map(|plugin| (plugin, bytes))
        })
        .await?
    };
    let (plugin, wasm) = checked.map_err(|e| {
        ApiError::unprocessable(
            "plugin_rejected",
            format!("the component cannot serve as an adapter: {e}"),
        )
    })?;
    let name = params
        .name
        .clone()
        .unwrap_or_else(|| plugin.name().to_string());
    if !valid_name(&name) {
        return Err(ApiError::invalid_field(format!(
            "name {name:?} must be 1 to 64 characters of a-z, 0-9, '_' or '-'"
        )));
    }
    if name == BUNDLED_PLUGIN {
        return Err(ApiError::conflict(
            "builtin",
            format!("`{BUNDLED_PLUGIN}` is the bundled adapter; install under another ?name="),
        ));
    }
    let info =
        serde_json::to_string(plugin.info()).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut stored = StoredPlugin {
        name: name.clone(),
        version: plugin.version().to_string(),
        wit_version: plugin.wit_version().to_string(),
        sha256: plugin.hash().to_string(),
        wasm,
        info,
        max_memory_bytes: 0,
        call_timeout_ms: 0,
        installed_ms: crate::clock::now_ms(),
    };
    set_stored_limits(&mut stored, &limits);
    let replace = params.replace;
    let stored = endpoints::detached({
        let shared = shared.clone();
        async move {
            let held = shared.admin_lock.lock().await;
            let lifecycle = endpoints::lifecycle(&shared);
            Ok(lifecycle.install_plugin(&held, stored, replace).await?)
        }
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(stored_view(&shared, stored).await?),
    ))
}

fn requested_limits(params: &InstallParams) -> ApiResult<PluginLimits> {
    limits_with(
        PluginLimits::default(),
        params.max_memory_mb,
        params.call_timeout_ms,
    )
}

/// `limits` with the given values, each checked against its bounds.
fn limits_with(
    mut limits: PluginLimits,
    max_memory_mb: Option<u64>,
    call_timeout_ms: Option<u64>,
) -> ApiResult<PluginLimits> {
    if let Some(mb) = max_memory_mb {
        if !MEMORY_MB.contains(&mb) {
            return Err(ApiError::invalid_field(format!(
                "max_memory_mb must be within {MEMORY_MB:?}, got {mb}"
            )));
        }
        limits.max_memory_bytes = usize::try_from(mb << 20).unwrap_or(usize::MAX);
    }
    if let Some(ms) = call_timeout_ms {
        if !TIMEOUT_MS.contains(&ms) {
            return Err(ApiError::invalid_field(format!(
                "call_timeout_ms must be within {TIMEOUT_MS:?}, got {ms}"
            )));
        }
        limits.call_deadline = Duration::from_millis(ms);
    }
    Ok(limits)
}

fn valid_name(name: &str) -> bool {
    crate::config::valid_id(name)
}

fn set_stored_limits(plugin: &mut StoredPlugin, limits: &PluginLimits) {
    plugin.max_memory_bytes = u64::try_from(limits.max_memory_bytes).unwrap_or(u64::MAX);
    plugin.call_timeout_ms = u64::try_from(limits.call_deadline.as_millis()).unwrap_or(u64::MAX);
}

/// Changes an installed plugin's limits; the endpoints using it reload with them.
#[utoipa::path(patch, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    request_body = LimitsPatch,
    responses((status = 200, body = PluginView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_limits(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    ApiJson(patch): ApiJson<LimitsPatch>,
) -> ApiResult<axum::Json<PluginView>> {
    if name == BUNDLED_PLUGIN {
        return Err(ApiError::conflict(
            "builtin",
            "the bundled adapter runs with the default limits; install a copy under another name to limit it",
        ));
    }
    let plugin = endpoints::detached(change_limits(shared.clone(), name, patch)).await?;
    Ok(axum::Json(stored_view(&shared, plugin).await?))
}

async fn change_limits(
    shared: Arc<Shared>,
    name: String,
    patch: LimitsPatch,
) -> ApiResult<StoredPlugin> {
    let held = shared.admin_lock.lock().await;
    let key = name.clone();
    let mut plugin = blocking(&shared, move |store| store.plugin(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plugin `{name}`")))?;
    let limits = limits_with(
        limits_of(&plugin),
        patch.max_memory_mb,
        patch.call_timeout_ms,
    )?;
    set_stored_limits(&mut plugin, &limits);
    let lifecycle = endpoints::lifecycle(&shared);
    Ok(lifecycle
        .change_plugin_limits(&held, plugin, limits)
        .await?)
}

#[utoipa::path(delete, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<StatusCode> {
    if name == BUNDLED_PLUGIN {
        return Err(ApiError::conflict(
            "builtin",
            "the bundled adapter cannot be removed",
        ));
    }
    endpoints::detached(remove_plugin(shared, name)).await
}

async fn remove_plugin(shared: Arc<Shared>, name: String) -> ApiResult<StatusCode> {
    let held = shared.admin_lock.lock().await;
    endpoints::lifecycle(&shared)
        .remove_plugin(&held, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
