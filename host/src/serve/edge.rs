//! The HTTP edge: Meta's webhooks in, health and metrics out.
//!
//! `POST /webhooks/{endpoint}`: the body (at most the endpoint's `max_body_bytes`, 413
//! above) is signature-checked over the raw bytes in constant time before anything else
//! (401 without a signature, 403 with a wrong one; nothing is stored either way), then
//! appended to the durable inbox; only when that commit is durable does Meta get its 200.
//! A store that cannot write answers 503, so Meta retries; so does a full inbox queue
//! (the demux [`super::INBOX_QUEUE`] rows behind), with `Retry-After`, before anything is
//! stored. The body is not parsed here:
//! a signed body the adapter cannot read is still acknowledged (Meta would retry it for
//! seven days) and ends as a dead letter that can be replayed. An unknown endpoint is 404.
//!
//! `GET /webhooks/{endpoint}`: Meta's subscription handshake, answered by the adapter from
//! the query and the endpoint's settings (200 with the challenge, 403 on a wrong token).
//! With `?whatsapp=…` it is the Webitel-style account management form instead
//! ([`crate::admin::webitel`]), behind the admin token.
//!
//! Under the router, [`super::http`] times heads, idle connections and bodies (a body
//! that does not arrive within `[http] body_timeout_ms` is answered 408) and caps the
//! connections served at once.
//!
//! `/healthz` (the process is up), `/readyz` (the store answers, the plugins are loaded and
//! every pipeline loop is running; `stopped_stages` names any that ended), `/metrics`
//! (Prometheus text).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::plugins::types::HandshakeReply;
use crate::store::InboxRow;

use super::Shared;
use super::signature::{self, SignatureError};
use crate::clock::now_ms;
use crate::endpoints::endpoint::Activity;

/// Seconds Meta is asked to wait when the inbox queue is full (`Retry-After`).
const INBOX_FULL_RETRY_AFTER: &str = "2";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/webhooks/{endpoint}", get(handshake).post(receive))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Each webhook body is read up to its own endpoint's `max_body_bytes` (below), after
        // the endpoint is known: an unknown endpoint reads nothing.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

fn count(shared: &Shared, endpoint: &str, result: &str) {
    shared
        .metrics
        .webhooks_total
        .with_label_values(&[endpoint, result])
        .inc();
}

async fn handshake(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if crate::admin::webitel::is_management(&query) {
        return crate::admin::webitel::answer(&shared, &id, &query, &headers).await;
    }
    let Some(endpoint) = shared.endpoints.get(&id) else {
        count(&shared, "unknown", "unknown_endpoint");
        return (StatusCode::NOT_FOUND, "unknown endpoint\n").into_response();
    };
    let started = Instant::now();
    let reply = endpoint
        .adapter
        .handshake(&query, &endpoint.handshake_settings);
    shared.observe_plugin(&endpoint, "handshake", started);
    match reply {
        Ok(HandshakeReply::Accept(body)) => {
            count(&shared, &id, "handshake_ok");
            tracing::info!(endpoint = %id, "webhook subscription verified");
            if let Err(e) = shared.store.endpoint_handshake(&id, now_ms()).await {
                tracing::warn!(endpoint = %id, "cannot record the handshake: {e}");
            }
            (StatusCode::OK, body).into_response()
        }
        Ok(HandshakeReply::Reject(reason)) => {
            count(&shared, &id, "handshake_refused");
            tracing::warn!(endpoint = %id, %reason, "webhook handshake refused");
            (StatusCode::FORBIDDEN, "forbidden\n").into_response()
        }
        Ok(HandshakeReply::NotHandshake) => {
            count(&shared, &id, "handshake_refused");
            (StatusCode::BAD_REQUEST, "not a subscription request\n").into_response()
        }
        Err(e) => {
            count(&shared, &id, "plugin_failed");
            tracing::error!(endpoint = %id, "handshake: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "handshake failed\n").into_response()
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(endpoint) = shared.endpoints.get(&id) else {
        count(&shared, "unknown", "unknown_endpoint");
        return (StatusCode::NOT_FOUND, "unknown endpoint\n").into_response();
    };
    // As axum's own body limit does: read up to the limit, then refuse.
    let body = match Limited::new(body, endpoint.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.downcast_ref::<LengthLimitError>().is_some();
            count(
                &shared,
                &id,
                if too_large { "too_large" } else { "bad_body" },
            );
            return if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response()
            } else {
                (StatusCode::BAD_REQUEST, "cannot read the body\n").into_response()
            };
        }
    };
    if let Some(scheme) = &endpoint.signature {
        let header_value = headers
            .get(scheme.header.as_str())
            .and_then(|v| v.to_str().ok());
        if let Err(e) = signature::verify(
            header_value,
            &scheme.prefix,
            scheme.secret.expose().as_bytes(),
            &body,
        ) {
            let (status, result) = match e {
                SignatureError::Missing => (StatusCode::UNAUTHORIZED, "missing_signature"),
                _ => (StatusCode::FORBIDDEN, "bad_signature"),
            };
            count(&shared, &id, result);
            tracing::warn!(endpoint = %id, %result, "webhook refused");
            return (status, "signature check failed\n").into_response();
        }
    }
    // Back-pressure: a place in the demux's queue first. Without one nothing is stored and
    // Meta is told to come back (it retries 503s), rather than the backlog growing.
    let place = match shared.inbox.try_reserve() {
        Ok(place) => Some(place),
        // The demux has ended (shutdown, or a stopped stage `/readyz` reports): the row is
        // still stored, durable and pending, for the next start or the scan.
        Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => None,
        Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
            count(&shared, &id, "inbox_full");
            tracing::warn!(endpoint = %id, "inbox queue full: answering 503 with Retry-After");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, INBOX_FULL_RETRY_AFTER)],
                "inbox full, retry later\n",
            )
                .into_response();
        }
    };
    let received_ms = now_ms();
    let body = body.to_vec();
    match shared
        .store
        .append_inbox(&id, body.clone(), received_ms)
        .await
    {
        Ok(inbox_id) => {
            Activity::set(&endpoint.activity.last_webhook_ms, received_ms);
            if let Some(place) = place {
                place.send(InboxRow {
                    id: inbox_id,
                    endpoint: id.clone(),
                    received_ms,
                    body,
                });
            }
            count(&shared, &id, "accepted");
            shared
                .metrics
                .ack_seconds
                .observe(started.elapsed().as_secs_f64());
            (StatusCode::OK, "EVENT_RECEIVED").into_response()
        }
        Err(e) => {
            count(&shared, &id, "store_unavailable");
            tracing::error!(endpoint = %id, "cannot store a webhook: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "store unavailable\n",
            )
                .into_response()
        }
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.ping().await;
    let plugins: Vec<_> = shared
        .endpoints
        .all()
        .iter()
        .map(|e| {
            serde_json::json!({
                "endpoint": e.config.id,
                "plugin": e.adapter.name(),
                "version": e.adapter.version(),
            })
        })
        .collect();
    // A loop that ended while the host is not stopping (a panic, a bug): webhooks would be
    // acknowledged and never processed, so the host is not ready.
    let stopped = shared.stages.stopped();
    let ready = store.is_ok() && !shared.is_stopping() && stopped.is_empty();
    let body = serde_json::json!({
        "ready": ready,
        "store": store.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "stopping": shared.is_stopping(),
        "stopped_stages": stopped,
        "plugins": plugins,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    if let Ok(depths) = shared.store.depths().await {
        super::set_depths(&shared.metrics, &depths);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}
