//! Outbound event webhooks: an endpoint's events POSTed to the URLs that subscribed.
//!
//! Events are `conversation_started`, `message_received`, `message_sent`,
//! `message_failed`, `handover_started` and `handover_ended`
//! ([`crate::store::admin::HOOK_EVENTS`]). The pipeline writes them with the work they
//! report (see `store::admin`; handover notices come from the conversation step and are
//! in its commit, `handover_started` with the transcript); [`delivery_loop`] takes due
//! deliveries from the store and POSTs each as JSON:
//! `{"id", "type", "endpoint", "created_ms", "data"}`. An endpoint's
//! `handover.webhook_url` is one more subscription (see `serve::notices`).
//!
//! Signed the Standard Webhooks way, so receivers can use its libraries or a few lines of
//! code: headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`. The key is
//! the subscription's secret: generated as `whsec_<base64 of 32 random bytes>` (the key is
//! the decoded bytes), or the UTF-8 bytes of a secret given at creation.
//!
//! URLs are under the egress policy ([`crate::egress`]): an internal address is refused
//! at creation (400) and again at delivery (a refused URL gives up at once), no redirect
//! is followed.
//!
//! A 2xx ends a delivery; anything else (status, timeout, refused connection) is retried
//! on `[event_webhooks.retry]` (with jitter; a `Retry-After` is honoured up to its cap),
//! then the delivery is marked dead. Delivery is at-least-once: a receiver dedupes by
//! `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::now_ms;
use crate::serve::Shared;
use crate::store::admin::{Attempt, Delivery, HOOK_EVENTS, Subscription};

use super::endpoints::detached;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use super::{blocking, known_endpoint, mask};

/// Deliveries read per store query.
const BATCH: usize = 256;
/// How often the store is asked for due deliveries.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 32;
pub use crate::serve::notices::SECRET_PREFIX;

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// An http(s) URL.
    #[schema(pattern = "^https?://.+")]
    pub url: String,
    /// The events to send; all of them when absent.
    #[schema(min_items = 1)]
    pub events: Option<Vec<String>>,
    /// The signing key; generated (`whsec_…`) when absent. At least 16 characters.
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    /// In full only in the answer to its creation; masked afterwards.
    pub secret: String,
    pub created_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

fn view(sub: Subscription, reveal: bool) -> WebhookView {
    WebhookView {
        id: sub.id,
        url: sub.url,
        events: sub.events,
        secret: if reveal {
            sub.secret
        } else {
            mask(&sub.secret)
        },
        created_ms: sub.created_ms,
    }
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/webhooks", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookList), (status = 404, body = ErrorBody)))]
async fn list(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<WebhookList>> {
    known_endpoint(&shared, &id).await?;
    let subs = blocking(&shared, move |store| store.subscriptions(&id)).await?;
    Ok(axum::Json(WebhookList {
        webhooks: subs.into_iter().map(|s| view(s, false)).collect(),
    }))
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/webhooks", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    request_body = NewWebhook,
    responses((status = 201, body = WebhookView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn create(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, axum::Json<WebhookView>)> {
    known_endpoint(&shared, &id).await?;
    match shared.bounds.egress.policy().check_url(&body.url) {
        Ok(_) => {}
        Err(crate::egress::EgressError::Refused(why)) => {
            return Err(ApiError::invalid_field(format!(
                "url refused by the egress policy: {why} (add it to [egress] allow to permit it)"
            )));
        }
        Err(_) => {
            return Err(ApiError::invalid_field(format!(
                "url must be an http(s) URL, got {:?}",
                body.url
            )));
        }
    }
    let events = match body.events {
        None => HOOK_EVENTS.iter().map(|e| e.to_string()).collect(),
        Some(events) if events.is_empty() => {
            return Err(ApiError::invalid_field(
                "events must name at least one event",
            ));
        }
        Some(events) => {
            if let Some(bad) = events.iter().find(|e| !HOOK_EVENTS.contains(&e.as_str())) {
                return Err(ApiError::invalid_field(format!(
                    "events: unknown event {bad:?}; known: {}",
                    HOOK_EVENTS.join(", ")
                )));
            }
            events
        }
    };
    let secret = match body.secret {
        Some(secret) if secret.chars().count() < 16 => {
            return Err(ApiError::invalid_field(
                "secret must be at least 16 characters",
            ));
        }
        Some(secret) => secret,
        None => crate::serve::notices::new_secret(),
    };
    let url = body.url;
    let sub = detached(async move {
        // Under the lock: the endpoint cannot be deleted between the check and the insert,
        // and the pipeline's view is refreshed in the order the changes were made.
        let _change = shared.admin_lock.lock().await;
        known_endpoint(&shared, &id).await?;
        let sub = shared
            .store
            .add_subscription(&id, url, secret, events)
            .await?;
        refresh(&shared, &id).await?;
        tracing::info!(endpoint = %id, webhook = sub.id, "event webhook added");
        Ok(sub)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view(sub, true))))
}

#[utoipa::path(delete, path = "/admin/v1/endpoints/{id}/webhooks/{hook}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"),
        ("hook" = i64, Path, description = "Webhook id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, hook)): UrlPath<(String, i64)>,
) -> ApiResult<StatusCode> {
    detached(async move {
        let _change = shared.admin_lock.lock().await;
        if !shared.store.delete_subscription(&id, hook).await? {
            return Err(ApiError::not_found(format!(
                "endpoint `{id}` has no webhook {hook}"
            )));
        }
        refresh(&shared, &id).await?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// The pipeline's view of who wants which event, after a change.
pub(crate) async fn refresh(shared: &Arc<Shared>, endpoint: &str) -> ApiResult<()> {
    let (sh, endpoint) = (shared.clone(), endpoint.to_string());
    blocking(shared, move |store| sh.subscribed.refresh(store, &endpoint)).await
}

/// The HMAC key of a secret (see the module docs).
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| BASE64.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&signing_key(secret)) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Delivers due event webhooks until shutdown, [`IN_FLIGHT`] at a time. Sweeps the due
/// rows in id order without pausing while full batches come back (a backlog drains at the
/// receivers' pace, not the poll's), then sleeps [`POLL`]. Attempts are recorded in one
/// store write per round. Idle (no store reads) while no endpoint has a subscription.
/// Deliveries in flight at shutdown are not waited for: they stay pending and go out after
/// the next start (receivers dedupe by `webhook-id`).
pub async fn delivery_loop(shared: Arc<Shared>) {
    let mut stopping = shared.stop_signal();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Attempt)>();
    // Rows taken and not yet recorded: still `pending` in the store, so a sweep must skip
    // them.
    let mut taken = std::collections::HashSet::new();
    // Attempts not recorded yet (the store failed): tried again each round; their rows
    // stay taken meanwhile, so they are not sent again every round.
    let mut unrecorded = Vec::new();
    let mut after_id = 0;
    while !shared.is_stopping() {
        record_attempts(&shared, &mut done_rx, &mut taken, &mut unrecorded).await;
        let due = if shared.subscribed.any() {
            shared.store.due_deliveries(now_ms(), after_id, BATCH).await
        } else {
            Ok(Vec::new())
        };
        let full = match due {
            Ok(due) => {
                let full = due.len() == BATCH;
                for delivery in due {
                    after_id = after_id.max(delivery.id);
                    if !taken.insert(delivery.id) {
                        continue;
                    }
                    let permit = tokio::select! {
                        permit = permits.clone().acquire_owned() => permit,
                        _ = stopping.changed() => break,
                    };
                    let Ok(permit) = permit else { break };
                    let (shared, done) = (shared.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let id = delivery.id;
                        let attempt = deliver(&shared, delivery).await;
                        drop(permit);
                        let _ = done.send((id, attempt));
                    });
                }
                full
            }
            Err(e) => {
                tracing::warn!("event webhooks: cannot read due deliveries: {e}");
                false
            }
        };
        if full {
            continue;
        }
        // The sweep is done: the next starts from the oldest due row again.
        after_id = 0;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
    record_attempts(&shared, &mut done_rx, &mut taken, &mut unrecorded).await;
}

/// Writes the attempts finished so far, and frees their rows for later sweeps.
async fn record_attempts(
    shared: &Arc<Shared>,
    done: &mut tokio::sync::mpsc::UnboundedReceiver<(i64, Attempt)>,
    taken: &mut std::collections::HashSet<i64>,
    unrecorded: &mut Vec<(i64, Attempt)>,
) {
    while let Ok(attempt) = done.try_recv() {
        unrecorded.push(attempt);
    }
    if unrecorded.is_empty() {
        return;
    }
    let attempts = std::mem::take(unrecorded);
    let ids: Vec<i64> = attempts.iter().map(|(id, _)| *id).collect();
    match shared.store.deliveries_attempted(attempts.clone()).await {
        Ok(()) => {
            for id in ids {
                taken.remove(&id);
            }
        }
        Err(e) => {
            tracing::warn!("cannot record event webhook attempts; trying again: {e}");
            *unrecorded = attempts;
        }
    }
}

/// One POST; what happened, for the store.
async fn deliver(shared: &Arc<Shared>, delivery: Delivery) -> Attempt {
    let message_id = format!("msg_{}", delivery.id);
    let body = serde_json::json!({
        "id": message_id,
        "type": delivery.event,
        "endpoint": delivery.endpoint,
        "created_ms": delivery.created_ms,
        "data": serde_json::from_str::<Value>(&delivery.data).unwrap_or(Value::Null),
    })
    .to_string();
    let timestamp = now_ms() / 1000;
    let signature = sign(&delivery.secret, &message_id, timestamp, body.as_bytes());
    let settings = &shared.event_webhooks;
    // Through the egress policy: checked again here (the allow list may have changed
    // since the subscription was made) and at connect time, no redirects.
    let request = match shared
        .bounds
        .egress
        .request(reqwest::Method::POST, &delivery.url)
    {
        Ok(request) => request,
        Err(e) => {
            let attempt = delivery.attempts.saturating_add(1);
            tracing::warn!(endpoint = %delivery.endpoint, delivery = delivery.id, attempt, error = %e, "event webhook not delivered");
            return Attempt::GaveUp {
                error: e.to_string(),
            };
        }
    };
    let sent = request
        .header("content-type", "application/json")
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .timeout(Duration::from_millis(settings.request_timeout_ms))
        .body(body)
        .send()
        .await;
    let (error, advised_ms) = match sent {
        Ok(response) if response.status().is_success() => return Attempt::Delivered,
        Ok(response) => {
            let advised = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| secs.saturating_mul(1000));
            (
                format!("the receiver answered {}", response.status()),
                advised,
            )
        }
        Err(e) => (
            format!("cannot reach the receiver: {}", crate::egress::describe(&e)),
            None,
        ),
    };
    let attempt = delivery.attempts.saturating_add(1);
    let next = settings.retry.delay(attempt, advised_ms, &mut rand::rng());
    tracing::warn!(endpoint = %delivery.endpoint, delivery = delivery.id, event = %delivery.event, attempt, %error, "event webhook not delivered");
    match next {
        Some(wait) => Attempt::Retry {
            next_attempt_ms: now_ms().saturating_add(wait),
            error,
        },
        None => Attempt::GaveUp { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature() {
        // The Standard Webhooks reference vector.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn plain_secrets_are_their_bytes() {
        assert_eq!(signing_key("0123456789abcdef"), b"0123456789abcdef");
    }
}
