//! The admin HTTP API under `/admin/v1`: what platform admins and flow designers change
//! while the host runs.
//!
//! - [`plugins`]: install (checked), list, inspect, remove adapter components.
//! - [`endpoints`]: endpoint specs (create, read with secrets masked, merge-patch, delete),
//!   enable/disable, disconnect, `verify` against the Graph API, `wa.me` link and QR code.
//! - [`conversations`]: conversation list and transcripts, agent actions (take over, send,
//!   release, AI toggle), inject and notify.
//! - [`events`]: outbound event webhooks per endpoint, signed, retried with backoff.
//! - [`accounts`]: WhatsApp Business accounts (setup with a system-user token, webhook
//!   subscription, remove) and their templates (sync, create, delete).
//! - [`campaigns`]: campaigns (CSV or JSON upload, pause, resume, cancel, progress) and
//!   opt-outs of an endpoint.
//! - [`token_binding`] (re-exported from [`crate::endpoints`]): the one rule for where a
//!   Meta token may be sent: a new `graph_api_base` needs a literal token in the same
//!   request (every path asks it).
//! - [`webitel`]: the same account operations in the form Webitel users know,
//!   `GET /webhooks/{endpoint}?whatsapp=…`.
//! - [`error`]: the one error shape and the JSON extractor.
//!
//! Every route but `/admin/v1/openapi.json` needs `Authorization: Bearer <admin_token>`,
//! compared in constant time (hashes of both sides, so not even the length leaks); without
//! a configured token every request is 401. The OpenAPI document is generated from the
//! handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives: a route
//! that is not annotated is not mounted ([`utoipa_axum::routes!`] builds both).
//!
//! A change is validated and loaded completely first, then committed to the store, then
//! swapped into the running [`crate::endpoints::registry::Registry`]: nothing is half-applied,
//! and what a restart loads from the store is what was running.

pub mod accounts;
pub mod campaigns;
pub mod conversations;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod plugins;
pub mod webitel;

/// The token-binding rule lives with the endpoint lifecycle; admin paths ask it too.
pub use crate::endpoints::token_binding;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::serve::Shared;

use error::ApiError;

/// The API's path prefix.
pub const PREFIX: &str = "/admin/v1";

/// Largest request body: a plugin upload (JSON bodies are far smaller).
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Plugboard admin API",
        description = "Plugins, endpoints, conversations and agents of a running Plugboard host."
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody)),
    security(("admin_token" = [])),
    tags(
        (name = "plugins", description = "Adapter components"),
        (name = "endpoints", description = "WhatsApp endpoints"),
        (name = "conversations", description = "Conversations, agents, inject and notify"),
        (name = "webhooks", description = "Outbound event webhooks")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every route may give besides its own: 400 (a path or query it cannot
/// read), 401 (no or a wrong token), 503 (the store is unavailable or the host stops).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "The request cannot be read (path, query or body)"),
                    ("401", "No admin token, or a wrong one"),
                    ("503", "The store is unavailable, or the host is stopping"),
                ] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The API's routes and their OpenAPI document.
fn api() -> (Router<Arc<Shared>>, utoipa::openapi::OpenApi) {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(plugins::routes())
        .merge(accounts::routes())
        .merge(campaigns::routes())
        .merge(endpoints::routes())
        .merge(conversations::routes())
        .merge(events::routes());
    let (router, mut doc) = router.split_for_parts();
    // After the merge: the routes' operations exist only now.
    CommonErrors.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI document (also what `/admin/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// `/admin/v1/…`, to merge into the host's router.
pub fn router(shared: Arc<Shared>) -> Router {
    let (routes, doc) = api();
    let doc = Arc::new(doc);
    let protected = routes
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES));
    Router::new()
        .route(
            &format!("{PREFIX}/openapi.json"),
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::map_response(error::json_errors))
        .with_state(shared)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The bearer token check in front of every admin route.
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    match check_token(&shared, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Whether a request carries the admin token (also used by the Webitel-style form on the
/// webhook URL).
pub(crate) fn check_token(shared: &Shared, headers: &header::HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &shared.admin_token else {
        return Err(ApiError::unauthorized(
            "the admin API is off: set admin_token in the config (or PLUGBOARD_ADMIN_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <admin token>`",
        ));
    };
    let same: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
        .into();
    if !same {
        tracing::warn!("admin API: a request with a wrong token was refused");
        return Err(ApiError::unauthorized("wrong admin token"));
    }
    Ok(())
}

/// Runs a synchronous store read off the async threads.
pub(crate) async fn blocking<T, F>(shared: &Arc<Shared>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
{
    let store = shared.store.clone();
    Ok(tokio::task::spawn_blocking(move || f(store.as_ref())).await??)
}

/// 404 unless the endpoint exists in the store (served or not).
pub(crate) async fn known_endpoint(shared: &Arc<Shared>, id: &str) -> Result<(), ApiError> {
    let key = id.to_string();
    blocking(shared, move |store| store.endpoint_row(&key))
        .await?
        .map(drop)
        .ok_or_else(|| ApiError::not_found(format!("no endpoint `{id}`")))
}

/// Secrets are masked for display by the leaf [`crate::secretbox`].
pub use crate::secretbox::mask;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_under_the_prefix() {
        let doc = openapi();
        assert!(doc.paths.paths.len() >= 15, "{:?}", doc.paths.paths.keys());
        for path in doc.paths.paths.keys() {
            assert!(path.starts_with(PREFIX), "{path}");
        }
    }
}
