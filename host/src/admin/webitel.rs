//! Account management in the form Webitel's bot API uses, on the endpoint's webhook URL:
//! `GET /webhooks/{endpoint}?whatsapp=setup|search|subscribe|unsubscribe|remove[&id=]`,
//! behind the admin token like the rest of the admin API.
//!
//! - `setup`: finds and stores the accounts the endpoint's access token (a system-user
//!   token) may manage, or only `id`; refreshes them when run again. The token goes to the
//!   endpoint's own `graph_api_base`, which only changes with a literal new token
//!   ([`super::token_binding`]); setup checks the pair once more like any account setup.
//! - `search`: the stored accounts (or the one with `id`) with their numbers.
//! - `subscribe` / `unsubscribe`: our app to an account's webhooks; `remove`: forgets it.
//!   Without `id` they act on the endpoint's own account (its `waba_id`, or the account
//!   of its number).
//!
//! Answers are the admin API's JSON (`{"accounts": […]}`, or its error shape), since the
//! same functions ([`super::accounts`]) do the work.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::serve::Shared;

use super::accounts;
use super::error::{ApiError, ApiResult};

/// Whether a webhook URL's query asks for this form rather than Meta's handshake.
pub fn is_management(query: &[(String, String)]) -> bool {
    query.iter().any(|(k, _)| k == "whatsapp")
}

/// Answers one `?whatsapp=…` request for endpoint `id`.
pub async fn answer(
    shared: &Arc<Shared>,
    id: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    match run(shared, id, query, headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(
    shared: &Arc<Shared>,
    id: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> ApiResult<Response> {
    // The token first: nothing about the endpoint is told to a caller without it.
    super::check_token(shared, headers)?;
    let value = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let op = value("whatsapp").unwrap_or_default();
    let account = value("id").filter(|v| !v.is_empty());
    let endpoint = shared
        .endpoints
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no endpoint `{id}` is served")))?;
    let own_account = || {
        account
            .clone()
            .or_else(|| shared.business.catalogue.account_of(&endpoint.config))
            .ok_or_else(|| {
                ApiError::invalid_field(format!(
                    "give &id=<account id>: endpoint `{id}` has no known account (run ?whatsapp=setup)"
                ))
            })
    };
    let accounts = match op.as_str() {
        "setup" => {
            let token = endpoint.config.access_token.as_ref().ok_or_else(|| {
                ApiError::conflict(
                    "no_access_token",
                    format!("endpoint `{id}` has no access_token to set up accounts with"),
                )
            })?;
            accounts::setup(
                shared,
                token.expose(),
                account.clone().map(|a| vec![a]),
                Some(endpoint.config.graph_api_base.clone()),
                Some(endpoint.config.graph_api_version.clone()),
            )
            .await?
        }
        "search" => accounts::list(shared)
            .await?
            .into_iter()
            .filter(|a| account.as_ref().is_none_or(|want| *want == a.id))
            .collect(),
        "subscribe" | "unsubscribe" => {
            let target = own_account()?;
            vec![accounts::set_subscription(shared, &target, op == "subscribe").await?]
        }
        "remove" => {
            let target = own_account()?;
            accounts::remove(shared, &target).await?;
            return Ok((StatusCode::OK, Json(json!({"removed": target}))).into_response());
        }
        other => {
            return Err(ApiError::invalid_field(format!(
                "whatsapp={other:?}: one of setup, search, subscribe, unsubscribe, remove"
            )));
        }
    };
    Ok((StatusCode::OK, Json(json!({ "accounts": accounts }))).into_response())
}
