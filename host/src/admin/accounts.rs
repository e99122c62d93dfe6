//! WhatsApp Business accounts and their templates, through the admin API.
//!
//! `setup` takes a system-user token, asks the Graph API which accounts (WABAs) it may
//! manage (or takes the ids given), reads each account and its numbers (display number,
//! verified name, quality rating, throughput level, messaging-limit tier) and its
//! subscription, and stores them with the token; running it again refreshes them. The
//! token is kept as a secret and shown masked. The token must be a literal value (not a
//! mask, not an `env:` reference: [`super::token_binding`]), since setup sends it to the
//! base it is given with and stores that pair. `subscribe` / `unsubscribe` call
//! `/{waba}/subscribed_apps`; `remove` forgets the account here (Meta is not told).
//!
//! Templates are synced from `/{waba}/message_templates` (every page), created (Meta
//! reviews them: they start `PENDING`) and deleted; after each change the in-memory
//! catalogue that checks template sends is rebuilt.
//!
//! These functions also serve the Webitel-style form (`GET /webhooks/{endpoint}?whatsapp=…`,
//! see `crate::serve::edge`). A refusal from Meta is 422 with our code for it
//! (`access_token_invalid` for 190, `permission_missing` for 10/200, `invalid_parameter`
//! for 100, `graph_error`); no answer is 502 `graph_unreachable`.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::business::graph::{GraphClient, GraphError, GraphTemplate};
use crate::clock::now_ms;
use crate::config::DEFAULT_GRAPH_API_VERSION;
use crate::serve::Shared;
use crate::store::business::{StoredAccount, StoredNumber, StoredTemplate};

use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use super::{blocking, mask, token_binding};

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(setup_route))
        .routes(routes!(list_route))
        .routes(routes!(show, remove_route))
        .routes(routes!(subscribe_route))
        .routes(routes!(unsubscribe_route))
        .routes(routes!(sync_route))
        .routes(routes!(templates_route, create_template))
        .routes(routes!(delete_template))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    /// A system-user token with `whatsapp_business_management` (secret: stored, shown
    /// masked).
    #[schema(min_length = 1, pattern = "\\S")]
    pub access_token: String,
    /// Only these accounts; default: every account the token may manage.
    #[serde(default)]
    pub account_ids: Option<Vec<String>>,
    #[serde(default)]
    pub graph_api_base: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^v[0-9]+\\.[0-9]+$")]
    pub graph_api_version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    /// The `phone_number_id`.
    pub id: String,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub throughput_level: Option<String>,
    pub messaging_limit_tier: Option<String>,
    /// The endpoint serving this number, if one does.
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: Option<String>,
    pub portfolio: Option<String>,
    /// Whether our app gets this account's webhooks (`null`: not known).
    pub subscribed: Option<bool>,
    /// The system-user token, masked.
    pub token: String,
    pub graph_api_base: String,
    pub numbers: Vec<NumberView>,
    pub templates: usize,
    pub refreshed_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    pub id: Option<String>,
    pub category: Option<String>,
    pub status: String,
    pub quality: Option<String>,
    #[schema(value_type = Object)]
    pub components: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplateBody {
    #[schema(pattern = "^[a-z0-9_]{1,512}$")]
    pub name: String,
    #[schema(min_length = 1)]
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    #[schema(pattern = "^(MARKETING|UTILITY|AUTHENTICATION)$")]
    pub category: String,
    /// Meta's components (HEADER, BODY, FOOTER, BUTTONS).
    #[schema(value_type = Vec<Object>)]
    pub components: Value,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LanguageParam {
    /// One language only (default: every language of the name).
    pub language: Option<String>,
}

/// A Graph failure as an API error.
pub(crate) fn graph_error(e: GraphError) -> ApiError {
    match e {
        GraphError::Meta { kind, message, .. } => ApiError::unprocessable(kind, message),
        GraphError::Unreachable(message) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "graph_unreachable", message)
        }
    }
}

fn client<'a>(shared: &'a Shared, account: &'a StoredAccount) -> GraphClient<'a> {
    GraphClient {
        http: &shared.http,
        base: &account.graph_api_base,
        version: &account.graph_api_version,
        token: &account.token,
        timeout: shared.request_timeout,
    }
}

fn template_view(t: &StoredTemplate) -> TemplateView {
    TemplateView {
        name: t.name.clone(),
        language: t.language.clone(),
        id: t.template_id.clone(),
        category: t.category.clone(),
        status: t.status.clone(),
        quality: t.quality.clone(),
        components: serde_json::from_str(&t.components).unwrap_or(Value::Null),
    }
}

fn stored_template(account: &str, t: GraphTemplate) -> StoredTemplate {
    StoredTemplate {
        account: account.to_string(),
        name: t.name,
        language: t.language,
        template_id: t.id,
        category: t.category,
        status: t.status,
        quality: t.quality,
        components: t.components.to_string(),
        updated_ms: now_ms(),
    }
}

/// Every stored account as shown.
pub(crate) async fn list(shared: &Arc<Shared>) -> ApiResult<Vec<AccountView>> {
    let (accounts, numbers, templates) = blocking(shared, |store| {
        Ok((store.accounts()?, store.numbers()?, store.templates(None)?))
    })
    .await?;
    let owners: Vec<(String, String)> = shared
        .endpoints
        .all()
        .iter()
        .map(|e| (e.config.phone_number_id.clone(), e.config.id.clone()))
        .collect();
    Ok(accounts
        .into_iter()
        .map(|a| view(a, &numbers, &templates, &owners))
        .collect())
}

fn view(
    a: StoredAccount,
    numbers: &[StoredNumber],
    templates: &[StoredTemplate],
    owners: &[(String, String)],
) -> AccountView {
    AccountView {
        numbers: numbers
            .iter()
            .filter(|n| n.account == a.id)
            .map(|n| NumberView {
                id: n.id.clone(),
                display_phone_number: n.display_phone_number.clone(),
                verified_name: n.verified_name.clone(),
                quality_rating: n.quality_rating.clone(),
                throughput_level: n.throughput_level.clone(),
                messaging_limit_tier: n.messaging_limit_tier.clone(),
                endpoint: owners
                    .iter()
                    .find(|(number, _)| *number == n.id)
                    .map(|(_, e)| e.clone()),
            })
            .collect(),
        templates: templates.iter().filter(|t| t.account == a.id).count(),
        token: mask(&a.token),
        id: a.id,
        name: a.name,
        portfolio: a.portfolio,
        subscribed: a.subscribed,
        graph_api_base: a.graph_api_base,
        refreshed_ms: a.refreshed_ms,
    }
}

/// One stored account, or 404.
pub(crate) async fn account(shared: &Arc<Shared>, id: &str) -> ApiResult<StoredAccount> {
    let key = id.to_string();
    blocking(shared, move |store| store.accounts())
        .await?
        .into_iter()
        .find(|a| a.id == key)
        .ok_or_else(|| ApiError::not_found(format!("no account `{id}` (run setup first)")))
}

async fn one_view(shared: &Arc<Shared>, id: &str) -> ApiResult<AccountView> {
    list(shared)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no account `{id}`")))
}

fn reload(shared: &Shared) -> ApiResult<()> {
    shared.business.reload(shared.store.as_ref())?;
    Ok(())
}

/// Finds, reads and stores the accounts a token reaches.
pub(crate) async fn setup(
    shared: &Arc<Shared>,
    token: &str,
    only: Option<Vec<String>>,
    base: Option<String>,
    version: Option<String>,
) -> ApiResult<Vec<AccountView>> {
    if token.trim().is_empty() {
        return Err(ApiError::invalid_field("access_token must not be empty"));
    }
    let base = token_binding::effective_base(base.as_deref());
    // Every setup sends its token to its base and stores the pair (over an account stored
    // with another base and token, too): a new binding, so only a literal token will do.
    token_binding::check(
        token_binding::Fields {
            token: "access_token",
            base: "graph_api_base",
        },
        None,
        &base,
        token_binding::Token::Given(token),
    )
    .map_err(|e| ApiError::invalid_field(e.to_string()))?;
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(ApiError::invalid_field(
            "graph_api_base must be an http(s) URL",
        ));
    }
    let version = version.unwrap_or_else(|| DEFAULT_GRAPH_API_VERSION.to_string());
    let well_formed = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        });
    if !well_formed {
        return Err(ApiError::invalid_field(
            "graph_api_version must look like v23.0",
        ));
    }
    let graph = GraphClient {
        http: &shared.http,
        base: &base,
        version: &version,
        token,
        timeout: shared.request_timeout,
    };
    let ids = match only {
        Some(ids) if !ids.is_empty() => ids,
        _ => graph.token_accounts().await.map_err(graph_error)?,
    };
    if ids.is_empty() {
        return Err(ApiError::unprocessable(
            "no_accounts",
            "the token may manage no WhatsApp Business Account (give the system user the account as an asset, with whatsapp_business_management)",
        ));
    }
    let _guard = shared.admin_lock.lock().await;
    for id in &ids {
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid_field(format!(
                "`{id}` is not an account id"
            )));
        }
        let account = graph.account(id).await.map_err(graph_error)?;
        let numbers = graph.numbers(id).await.map_err(graph_error)?;
        let subscribed = graph.subscribed(id).await.ok();
        let now = now_ms();
        shared
            .store
            .save_account(
                StoredAccount {
                    id: account.id.clone(),
                    name: account.name,
                    portfolio: account.portfolio,
                    graph_api_base: base.clone(),
                    graph_api_version: version.clone(),
                    token: token.to_string(),
                    subscribed,
                    refreshed_ms: now,
                    created_ms: now,
                },
                numbers
                    .into_iter()
                    .map(|n| StoredNumber {
                        id: n.id,
                        account: account.id.clone(),
                        display_phone_number: n.display_phone_number,
                        verified_name: n.verified_name,
                        quality_rating: n.quality_rating,
                        throughput_level: n.throughput_level,
                        messaging_limit_tier: n.messaging_limit_tier,
                        updated_ms: now,
                    })
                    .collect(),
            )
            .await?;
    }
    reload(shared)?;
    let all = list(shared).await?;
    Ok(all.into_iter().filter(|a| ids.contains(&a.id)).collect())
}

/// Subscribes or unsubscribes our app to an account's webhooks.
pub(crate) async fn set_subscription(
    shared: &Arc<Shared>,
    id: &str,
    on: bool,
) -> ApiResult<AccountView> {
    let account = account(shared, id).await?;
    let graph = client(shared, &account);
    if on {
        graph.subscribe(id).await
    } else {
        graph.unsubscribe(id).await
    }
    .map_err(graph_error)?;
    shared.store.set_subscribed(id, on).await?;
    one_view(shared, id).await
}

/// Forgets an account, its numbers and templates.
pub(crate) async fn remove(shared: &Arc<Shared>, id: &str) -> ApiResult<()> {
    let _guard = shared.admin_lock.lock().await;
    if !shared.store.delete_account(id).await? {
        return Err(ApiError::not_found(format!("no account `{id}`")));
    }
    reload(shared)
}

#[utoipa::path(post, path = "/admin/v1/accounts/setup", tag = "accounts",
    request_body = SetupBody,
    responses((status = 200, body = AccountList), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
async fn setup_route(
    State(shared): State<Arc<Shared>>,
    ApiJson(body): ApiJson<SetupBody>,
) -> ApiResult<axum::Json<AccountList>> {
    let accounts = setup(
        &shared,
        &body.access_token,
        body.account_ids,
        body.graph_api_base,
        body.graph_api_version,
    )
    .await?;
    Ok(axum::Json(AccountList { accounts }))
}

#[utoipa::path(get, path = "/admin/v1/accounts", tag = "accounts",
    responses((status = 200, body = AccountList)))]
async fn list_route(State(shared): State<Arc<Shared>>) -> ApiResult<axum::Json<AccountList>> {
    Ok(axum::Json(AccountList {
        accounts: list(&shared).await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody)))]
async fn show(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<AccountView>> {
    one_view(&shared, &id).await.map(axum::Json)
}

#[utoipa::path(delete, path = "/admin/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)))]
async fn remove_route(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StatusCode> {
    remove(&shared, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/subscribe", tag = "accounts",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn subscribe_route(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<AccountView>> {
    set_subscription(&shared, &id, true).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/unsubscribe", tag = "accounts",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn unsubscribe_route(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<AccountView>> {
    set_subscription(&shared, &id, false).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/templates/sync", tag = "templates",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 200, body = TemplateList), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn sync_route(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<TemplateList>> {
    let account = account(&shared, &id).await?;
    let fetched = client(&shared, &account)
        .templates(&id)
        .await
        .map_err(graph_error)?;
    let stored: Vec<StoredTemplate> = fetched
        .into_iter()
        .map(|t| stored_template(&id, t))
        .collect();
    shared.store.replace_templates(&id, stored.clone()).await?;
    reload(&shared)?;
    Ok(axum::Json(TemplateList {
        templates: stored.iter().map(template_view).collect(),
    }))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}/templates", tag = "templates",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    responses((status = 200, body = TemplateList), (status = 404, body = ErrorBody)))]
async fn templates_route(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<TemplateList>> {
    account(&shared, &id).await?;
    let key = id.clone();
    let templates = blocking(&shared, move |store| store.templates(Some(&key))).await?;
    Ok(axum::Json(TemplateList {
        templates: templates.iter().map(template_view).collect(),
    }))
}

#[utoipa::path(post, path = "/admin/v1/accounts/{id}/templates", tag = "templates",
    params(("id" = String, Path, description = "WhatsApp Business Account id")),
    request_body = NewTemplateBody,
    responses((status = 201, body = TemplateView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn create_template(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<NewTemplateBody>,
) -> ApiResult<(StatusCode, axum::Json<TemplateView>)> {
    let valid_name = !body.name.is_empty()
        && body.name.len() <= 512
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(ApiError::invalid_field(
            "name: lower-case letters, digits and underscores only (Meta's rule)",
        ));
    }
    if !matches!(
        body.category.as_str(),
        "MARKETING" | "UTILITY" | "AUTHENTICATION"
    ) {
        return Err(ApiError::invalid_field(
            "category must be MARKETING, UTILITY or AUTHENTICATION",
        ));
    }
    if body.language.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "language must not be empty (e.g. en_US)",
        ));
    }
    if !body.components.is_array() {
        return Err(ApiError::invalid_field("components must be an array"));
    }
    let account = account(&shared, &id).await?;
    let created = client(&shared, &account)
        .create_template(
            &id,
            &body.name,
            &body.language,
            &body.category,
            &body.components,
        )
        .await
        .map_err(graph_error)?;
    let stored = stored_template(&id, created);
    shared.store.save_template(stored.clone()).await?;
    reload(&shared)?;
    Ok((StatusCode::CREATED, axum::Json(template_view(&stored))))
}

#[utoipa::path(delete, path = "/admin/v1/accounts/{id}/templates/{name}", tag = "templates",
    params(("id" = String, Path, description = "WhatsApp Business Account id"),
        ("name" = String, Path, description = "Template name"), LanguageParam),
    responses((status = 204, description = "Deleted at Meta and here"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
async fn delete_template(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, name)): UrlPath<(String, String)>,
    Query(params): Query<LanguageParam>,
) -> ApiResult<StatusCode> {
    let account = account(&shared, &id).await?;
    let key = id.clone();
    let stored = blocking(&shared, move |store| store.templates(Some(&key))).await?;
    let matching: Vec<&StoredTemplate> = stored
        .iter()
        .filter(|t| t.name == name)
        .filter(|t| params.language.as_ref().is_none_or(|l| *l == t.language))
        .collect();
    if matching.is_empty() {
        return Err(ApiError::not_found(format!("no template `{name}` here")));
    }
    // One language is deleted by its id; a whole name in one call.
    let hsm_id = match &params.language {
        Some(_) => matching.first().and_then(|t| t.template_id.clone()),
        None => None,
    };
    client(&shared, &account)
        .delete_template(&id, &name, hsm_id.as_deref())
        .await
        .map_err(graph_error)?;
    shared
        .store
        .delete_templates(&id, &name, params.language.clone())
        .await?;
    reload(&shared)?;
    Ok(StatusCode::NO_CONTENT)
}
