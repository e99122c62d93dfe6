//! Campaigns and opt-outs of an endpoint, through the admin API.
//!
//! A campaign is created from a JSON body or a CSV upload (`Content-Type: text/csv`, the
//! campaign's fields in the query). The template must be in the endpoint's account
//! (synced), approved, and every recipient's values must fill it exactly: a bad row
//! refuses the upload (400 naming the recipient) and nothing is stored or sent. The
//! campaign then starts at `start_at` (RFC 3339; default now) and the runner
//! (`crate::business::campaigns`) sends it. Progress counts come from the recipients and
//! the delivery statuses of their messages.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::business::campaigns::{Upload, parse_recipients};
use crate::business::templates::Check;
use crate::business::upload::{self, MAX_RECIPIENTS, Recipients, UploadError};
use crate::clock::now_ms;
use crate::serve::Shared;
use crate::store::business::{CampaignProgress, CampaignRow, NewCampaign, OptOut};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::{blocking, known_endpoint};

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(opt_outs))
        .routes(routes!(opt_in))
}

/// The campaign's fields (the JSON body's, or the query's for a CSV upload).
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CampaignFields {
    pub name: String,
    /// The template's name.
    pub template: String,
    /// The template's language, e.g. `en_US`.
    pub language: String,
    /// RFC 3339 (`2026-12-24T09:00:00Z`); default: now.
    #[serde(default)]
    pub start_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignBody {
    pub name: String,
    pub template: String,
    pub language: String,
    #[serde(default)]
    pub start_at: Option<String>,
    /// `{"to": "+15550100", "values": {"1": "Ada", "header": "https://…", "button.0": "…"}}`
    #[schema(value_type = Vec<Object>)]
    #[serde(deserialize_with = "upload::capped_recipients")]
    pub recipients: Vec<Upload>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub total: u64,
    pub queued: u64,
    pub sending: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    pub opted_out: u64,
}

impl From<CampaignProgress> for ProgressView {
    fn from(p: CampaignProgress) -> ProgressView {
        ProgressView {
            total: p.total,
            queued: p.queued,
            sending: p.sending,
            sent: p.sent,
            delivered: p.delivered,
            read: p.read,
            failed: p.failed,
            opted_out: p.opted_out,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub endpoint: String,
    pub name: String,
    pub template: String,
    pub language: String,
    pub start_ms: u64,
    /// scheduled, running, paused, completed or cancelled.
    pub state: String,
    /// Why a running campaign sends nothing now: `messaging_limit`, `endpoint_unavailable`.
    pub waiting: Option<String>,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub progress: ProgressView,
    /// At creation only: numbers given more than once (sent once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub campaigns: Vec<CampaignView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutView {
    pub user: String,
    /// `stop` (the user wrote STOP) or `meta_131050` (Meta: stopped marketing messages).
    pub reason: String,
    pub at_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutList {
    pub opt_outs: Vec<OptOutView>,
}

fn view(row: CampaignRow, progress: CampaignProgress) -> CampaignView {
    CampaignView {
        id: row.id,
        endpoint: row.endpoint,
        name: row.name,
        template: row.template,
        language: row.language,
        start_ms: row.start_ms,
        state: row.state,
        waiting: row.waiting,
        created_ms: row.created_ms,
        finished_ms: row.finished_ms,
        progress: progress.into(),
        duplicates: None,
    }
}

async fn campaign(shared: &Arc<Shared>, endpoint: &str, id: i64) -> ApiResult<CampaignView> {
    let (row, progress) = blocking(shared, move |store| {
        let row = store.campaign(id)?;
        let progress = store.campaign_progress(id)?;
        Ok((row, progress))
    })
    .await?;
    match row {
        Some(row) if row.endpoint == endpoint => Ok(view(row, progress)),
        _ => Err(ApiError::not_found(format!(
            "no campaign {id} on endpoint `{endpoint}`"
        ))),
    }
}

/// An upload over a limit is 413, an unreadable one 400.
fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
        UploadError::Invalid(m) => ApiError::invalid_field(m),
    }
}

fn start_ms(start_at: Option<&str>) -> ApiResult<u64> {
    let Some(text) = start_at else {
        return Ok(now_ms());
    };
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        ApiError::invalid_field(format!(
            "start_at: {e} (RFC 3339, e.g. 2026-12-24T09:00:00Z)"
        ))
    })?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0))
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/campaigns", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body(content = CampaignBody, description = "JSON; or `text/csv` with a `to` column and one column per value, the campaign's fields in the query (name, template, language, start_at)"),
    responses((status = 201, body = CampaignView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    query: Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<CampaignView>)> {
    known_endpoint(&shared, &id).await?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    // The size before anything is parsed; the parse itself off the async threads, the
    // row count checked while reading (see `crate::business::upload`).
    upload::check_size(body.len()).map_err(upload_error)?;
    let (fields, rows) = if csv {
        let q = &query.0;
        let field = |k: &str| {
            q.get(k).cloned().ok_or_else(|| {
                ApiError::invalid_field(format!("a CSV upload needs `{k}` in the query"))
            })
        };
        let fields = CampaignFields {
            name: field("name")?,
            template: field("template")?,
            language: field("language")?,
            start_at: q.get("start_at").cloned(),
        };
        let rows = tokio::task::spawn_blocking(move || upload::read_csv(&body, MAX_RECIPIENTS))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(upload_error)?;
        (fields, Recipients::Csv(rows))
    } else {
        let parsed: CampaignBody = tokio::task::spawn_blocking(move || {
            serde_json::from_slice(&body).map_err(|e| upload::json_error(&e))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            UploadError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", m),
            e => upload_error(e),
        })?;
        (
            CampaignFields {
                name: parsed.name,
                template: parsed.template,
                language: parsed.language,
                start_at: parsed.start_at,
            },
            Recipients::Json(parsed.recipients),
        )
    };
    if fields.name.trim().is_empty() {
        return Err(ApiError::invalid_field("name must not be empty"));
    }
    let start = start_ms(fields.start_at.as_deref())?;
    let endpoint = shared.endpoints.get(&id).ok_or_else(|| {
        ApiError::conflict(
            "endpoint_unavailable",
            format!("endpoint `{id}` is not served now"),
        )
    })?;
    let spec = match shared
        .business
        .catalogue
        .find(&endpoint.config, &fields.template, &fields.language)
        .map_err(|e| ApiError::unprocessable("template_unknown", e))?
    {
        Check::Valid(spec) => spec,
        Check::Unchecked => {
            return Err(ApiError::unprocessable(
                "template_unknown",
                format!(
                    "endpoint `{id}` has no WhatsApp Business Account set up: run account setup and sync its templates first"
                ),
            ));
        }
    };
    let parsed = tokio::task::spawn_blocking(move || parse_recipients(&spec, rows))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_recipient", e))?;
    let duplicates = parsed.duplicates;
    let campaign_id = shared
        .store
        .create_campaign(
            NewCampaign {
                endpoint: id.clone(),
                name: fields.name,
                template: fields.template,
                language: fields.language,
                start_ms: start,
            },
            parsed.recipients,
        )
        .await?;
    shared.business.note_campaign(&id);
    let mut view = campaign(&shared, &id, campaign_id).await?;
    view.duplicates = Some(duplicates);
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/campaigns", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = CampaignList), (status = 404, body = ErrorBody)))]
async fn list(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<CampaignList>> {
    known_endpoint(&shared, &id).await?;
    let campaigns = blocking(&shared, move |store| {
        let mut out = Vec::new();
        for row in store.campaigns(Some(&id))? {
            let progress = store.campaign_progress(row.id)?;
            out.push(view(row, progress));
        }
        Ok(out)
    })
    .await?;
    Ok(axum::Json(CampaignList { campaigns }))
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/campaigns/{campaign}", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id"), ("campaign" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)))]
async fn show(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, campaign_id)): UrlPath<(String, i64)>,
) -> ApiResult<axum::Json<CampaignView>> {
    campaign(&shared, &id, campaign_id).await.map(axum::Json)
}

/// Moves the campaign from one of `from` to `to` in one store step (the runner may be
/// changing it at the same time), else 409 with the state it is in.
async fn change(
    shared: &Arc<Shared>,
    id: &str,
    campaign_id: i64,
    from: &'static [&'static str],
    to: &str,
) -> ApiResult<axum::Json<CampaignView>> {
    // The endpoint's own campaign, or 404.
    campaign(shared, id, campaign_id).await?;
    let moved = shared
        .store
        .set_campaign_state(campaign_id, from, to, None)
        .await?;
    let now = campaign(shared, id, campaign_id).await?;
    if !moved {
        return Err(ApiError::conflict(
            "campaign_state",
            format!(
                "campaign {campaign_id} is {}; cannot make it {to}",
                now.state
            ),
        ));
    }
    Ok(axum::Json(now))
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/campaigns/{campaign}/pause", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id"), ("campaign" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn pause(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, campaign_id)): UrlPath<(String, i64)>,
) -> ApiResult<axum::Json<CampaignView>> {
    change(
        &shared,
        &id,
        campaign_id,
        &["scheduled", "running"],
        "paused",
    )
    .await
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/campaigns/{campaign}/resume", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id"), ("campaign" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, campaign_id)): UrlPath<(String, i64)>,
) -> ApiResult<axum::Json<CampaignView>> {
    // Back to scheduled: the runner starts it when its start time has come.
    change(&shared, &id, campaign_id, &["paused"], "scheduled").await
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/campaigns/{campaign}/cancel", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id"), ("campaign" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, campaign_id)): UrlPath<(String, i64)>,
) -> ApiResult<axum::Json<CampaignView>> {
    // Messages already claimed stay in the outbox and go out; the rest never do.
    change(
        &shared,
        &id,
        campaign_id,
        &["scheduled", "running", "paused"],
        "cancelled",
    )
    .await
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/opt-outs", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = OptOutList), (status = 404, body = ErrorBody)))]
async fn opt_outs(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<OptOutList>> {
    known_endpoint(&shared, &id).await?;
    let rows: Vec<OptOut> = blocking(&shared, move |store| store.opt_outs(&id)).await?;
    Ok(axum::Json(OptOutList {
        opt_outs: rows
            .into_iter()
            .map(|o| OptOutView {
                user: o.user,
                reason: o.reason,
                at_ms: o.at_ms,
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/admin/v1/endpoints/{id}/opt-outs/{user}", tag = "campaigns",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "The user's number")),
    responses((status = 204, description = "Opted back in"), (status = 404, body = ErrorBody)))]
async fn opt_in(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
) -> ApiResult<StatusCode> {
    known_endpoint(&shared, &id).await?;
    if shared.store.opt_in(&id, &user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("`{user}` has not opted out")))
    }
}
