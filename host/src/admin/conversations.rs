//! Conversations as agents see them, and what agents and integrations do to them.
//!
//! Reads (list, transcript) come from the store's reader connections: the session record
//! (handover, AI toggle), the 24-hour window, the conversation's events and outbox rows
//! with their delivery states.
//!
//! Actions (take over, release, AI toggle, send as agent, inject, notify) are queued to
//! the conversation's worker like its messages are, so they are ordered with the user's
//! own messages and committed the same way (session, outbox rows, timers and event
//! notices in one transaction); the API answers once that commit is done. A free-form
//! send or notify outside the 24-hour customer service window is refused up front with
//! 409 `WA_WINDOW_CLOSED` (Meta would refuse it with 131047); a template is allowed.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::TemplateRef;
use crate::conversation::{SessionKey, SessionRecord};
use crate::plugins::types::{BotOutput, TemplateOutput, TemplateParameter, TemplateValue, User};
use crate::serve::Shared;
use crate::serve::workers::{AdminAction, AdminJob, Job};
use crate::store::admin::{ConversationRow, TranscriptItem};

use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use super::{blocking, known_endpoint};

use crate::whatsapp::{window_closes_at, window_open};

/// The error code peers use for a free-form send outside the window.
pub const WINDOW_CLOSED: &str = "WA_WINDOW_CLOSED";
const DEFAULT_LIST: usize = 50;
const MAX_LIST: usize = 1_000;
const TRANSCRIPT: usize = 200;
/// How long the API waits for an action's commit before answering 504 (it may still
/// apply: a store that keeps failing is retried until it works or the host stops).
const ACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub fn routes() -> OpenApiRouter<Arc<Shared>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(take_over))
        .routes(routes!(release))
        .routes(routes!(set_ai))
        .routes(routes!(send))
        .routes(routes!(inject))
        .routes(routes!(notify))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    /// The conversation key: the user's BSUID, else the phone number.
    pub user: String,
    pub last_message: Option<LastMessage>,
    pub window: WindowView,
    pub handover: HandoverView,
    pub ai_enabled: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastMessage {
    /// `in` (from the user) or `out` (to the user).
    pub direction: String,
    pub text: String,
    pub at_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    /// Free-form messages may be sent until `open_until_ms`.
    pub open: bool,
    pub open_until_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HandoverView {
    pub active: bool,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub transcript: Vec<TurnView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnView {
    pub direction: String,
    pub at_ms: u64,
    /// `message` / `send_failed` inbound; the output kind (`text`, `template`, …) outbound.
    pub kind: String,
    pub text: String,
    /// Outbound only: `pending`, `sent`, `delivered`, `read`, `failed` or `dead`.
    pub status: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// At most this many (default 50, at most 1000), most recent first.
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeOverBody {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AiBody {
    pub enabled: bool,
}

/// A message: `text` (markdown) or an approved `template`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    #[schema(min_length = 1)]
    pub text: Option<String>,
    pub template: Option<TemplateRef>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectBody {
    pub text: Option<String>,
    #[schema(value_type = Object)]
    pub data: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The outbox rows the action produced (their statuses show in the transcript).
    pub outbox_ids: Vec<i64>,
}

// ------------------------------------------------------------------------------ reads

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/conversations", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ListParams),
    responses((status = 200, body = ConversationList), (status = 404, body = ErrorBody)))]
async fn list(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<ConversationList>> {
    known_endpoint(&shared, &id).await?;
    let limit = params.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
    let rows = blocking(&shared, move |store| store.conversations(&id, limit)).await?;
    let now = crate::clock::now_ms();
    Ok(axum::Json(ConversationList {
        conversations: rows.into_iter().map(|row| view(row, now)).collect(),
    }))
}

#[utoipa::path(get, path = "/admin/v1/endpoints/{id}/conversations/{user}", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"),
        ("user" = String, Path, description = "The user's BSUID or phone number")),
    responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorBody)))]
async fn show(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
) -> ApiResult<axum::Json<ConversationDetail>> {
    known_endpoint(&shared, &id).await?;
    detail(&shared, &id, &user).await.map(axum::Json)
}

/// The conversation and its transcript (the caller checked the endpoint).
async fn detail(shared: &Arc<Shared>, id: &str, user: &str) -> ApiResult<ConversationDetail> {
    let (endpoint, conversation) = (id.to_string(), user.to_string());
    let (row, transcript) = blocking(shared, move |store| {
        let row = store.conversation(&endpoint, &conversation)?;
        let transcript = store.transcript(&endpoint, &conversation, TRANSCRIPT)?;
        Ok((row, transcript))
    })
    .await?;
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!("endpoint `{id}` has no conversation with {user}"))
    })?;
    Ok(ConversationDetail {
        conversation: view(row, crate::clock::now_ms()),
        transcript: transcript
            .iter()
            .filter(|item| !is_receipt(item))
            .map(turn)
            .collect(),
    })
}

fn view(row: ConversationRow, now: u64) -> ConversationView {
    let record: Option<SessionRecord> = row
        .session
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let open_until_ms = row.last_inbound_ms.map(window_closes_at);
    let handover = record.as_ref().and_then(|r| r.handover.as_ref());
    ConversationView {
        last_message: row.last_event.as_ref().map(|item| {
            let t = turn(item);
            LastMessage {
                direction: t.direction,
                text: t.text,
                at_ms: t.at_ms,
            }
        }),
        window: WindowView {
            open: open_until_ms.is_some_and(|until| until > now),
            open_until_ms,
        },
        handover: HandoverView {
            active: handover.is_some_and(|h| h.until_ms > now),
            since_ms: handover.map(|h| h.since_ms),
            until_ms: handover.map(|h| h.until_ms),
            reason: handover.and_then(|h| h.reason.clone()),
        },
        ai_enabled: record.as_ref().is_none_or(|r| r.ai_enabled),
        user: row.conversation,
    }
}

/// Read receipts and typing indicators are outbox rows but not messages.
fn is_receipt(item: &TranscriptItem) -> bool {
    matches!(item, TranscriptItem::Outbound { output, .. }
        if matches!(serde_json::from_str(output), Ok(BotOutput::MarkRead(_))))
}

fn turn(item: &TranscriptItem) -> TurnView {
    match item {
        TranscriptItem::Inbound { at_ms, kind, body } => {
            let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            TurnView {
                direction: "in".into(),
                at_ms: *at_ms,
                kind: kind.clone(),
                text: inbound_text(&value),
                status: None,
                error: (kind == "send_failed")
                    .then(|| {
                        value
                            .get("detail")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .flatten(),
            }
        }
        TranscriptItem::Outbound {
            at_ms,
            output,
            state,
            last_error,
            ..
        } => {
            let parsed: Option<BotOutput> = serde_json::from_str(output).ok();
            let kind = serde_json::from_str::<Value>(output)
                .ok()
                .and_then(|v| {
                    v.as_object()
                        .and_then(|o| o.keys().next().map(|k| snake(k)))
                })
                .unwrap_or_else(|| "output".into());
            TurnView {
                direction: "out".into(),
                at_ms: *at_ms,
                text: parsed.as_ref().map(outbound_text).unwrap_or_default(),
                kind,
                status: Some(state.as_str().to_string()),
                error: last_error.clone(),
            }
        }
    }
}

/// `MarkRead` → `mark_read`: the output kind as the rest of the API spells names.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn outbound_text(output: &BotOutput) -> String {
    match output {
        BotOutput::Template(t) => format!("[template {} ({})]", t.name, t.language),
        BotOutput::MarkRead(_) => "[read receipt]".into(),
        other => crate::conversation::output_text(other),
    }
}

/// The first text-like field of a stored neutral event (message text, caption, the
/// title of a choice), found wherever the event kind keeps it.
fn inbound_text(value: &Value) -> String {
    fn find(value: &Value, depth: usize) -> Option<String> {
        if depth > 6 {
            return None;
        }
        match value {
            Value::Object(map) => {
                for key in ["Text", "text", "body", "caption", "title", "emoji"] {
                    if let Some(Value::String(s)) = map.get(key) {
                        return Some(s.clone());
                    }
                }
                map.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "user" | "business" | "raw"))
                    .find_map(|(_, v)| find(v, depth + 1))
            }
            Value::Array(items) => items.iter().find_map(|v| find(v, depth + 1)),
            _ => None,
        }
    }
    // Stored events are serde's externally tagged form: `{"body": {"Message": {"content":
    // {"Text": "hi"}}}}`.
    let content = value.pointer("/body/Message/content").unwrap_or(value);
    find(content, 0).unwrap_or_default()
}

// ------------------------------------------------------------------------------ actions

/// Queues an action on the conversation's worker and waits for its commit.
async fn act(
    shared: &Arc<Shared>,
    id: &str,
    user: &str,
    action: AdminAction,
) -> ApiResult<Vec<i64>> {
    if shared.endpoints.get(id).is_none() {
        return Err(ApiError::conflict(
            "endpoint_not_served",
            format!("endpoint `{id}` is disconnected; reconnect it first"),
        ));
    }
    let recipient = user_of(user)?;
    let key = SessionKey::new(id, user);
    let (job, answer) = AdminJob::new(action, recipient);
    shared.workers.enqueue(shared, key, Job::Admin(job));
    match tokio::time::timeout(ACTION_WAIT, answer).await {
        Ok(Ok(Ok(ids))) => Ok(ids),
        Ok(Ok(Err(reason))) => Err(ApiError::conflict("not_applied", reason)),
        Ok(Err(_)) if shared.is_stopping() => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the host is stopping; nothing was changed",
        )),
        // The step panicked (a bug, logged); its commit did not happen.
        Ok(Err(_)) => Err(ApiError::internal(
            "the action failed (see the host's log); nothing was changed",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "pending",
            "the action is queued but not committed yet (the store is failing?); it may still apply",
        )),
    }
}

/// The user a conversation key names: digits are a phone number, anything else a BSUID.
fn user_of(user: &str) -> ApiResult<User> {
    if user.is_empty() || user.len() > 128 || user.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid_field(
            "user must be the user's BSUID or phone number (digits, no `+`)",
        ));
    }
    let phone = user.chars().all(|c| c.is_ascii_digit());
    Ok(User {
        user_id: (!phone).then(|| user.to_string()),
        phone: phone.then(|| user.to_string()),
        name: None,
        username: None,
    })
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/takeover", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    request_body(content = Option<TakeOverBody>, description = "Optional: the reason, for the handover event"),
    responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorBody)))]
async fn take_over(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<ConversationDetail>> {
    // The body is optional: no body, no reason.
    known_endpoint(&shared, &id).await?;
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<TakeOverBody>>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("not a take-over body: {e}"),
                )
            })?
            .and_then(|b| b.reason)
    };
    act(&shared, &id, &user, AdminAction::TakeOver { reason }).await?;
    detail(&shared, &id, &user).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/release", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn release(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
) -> ApiResult<axum::Json<ConversationDetail>> {
    known_endpoint(&shared, &id).await?;
    act(&shared, &id, &user, AdminAction::Release).await?;
    detail(&shared, &id, &user).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/ai", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    request_body = AiBody,
    responses((status = 200, body = ConversationDetail), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn set_ai(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
    ApiJson(body): ApiJson<AiBody>,
) -> ApiResult<axum::Json<ConversationDetail>> {
    known_endpoint(&shared, &id).await?;
    act(&shared, &id, &user, AdminAction::SetAi(body.enabled)).await?;
    detail(&shared, &id, &user).await.map(axum::Json)
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/send", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    request_body = MessageBody,
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "WA_WINDOW_CLOSED: outside the 24-hour window (send a template)", body = ErrorBody)))]
async fn send(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<(StatusCode, axum::Json<Queued>)> {
    queue_message(&shared, &id, &user, body, AdminAction::AgentSend).await
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/notify", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    request_body = MessageBody,
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn notify(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
    ApiJson(body): ApiJson<MessageBody>,
) -> ApiResult<(StatusCode, axum::Json<Queued>)> {
    queue_message(&shared, &id, &user, body, AdminAction::Notify).await
}

/// Send and notify: the message checked, the window checked, then queued.
async fn queue_message(
    shared: &Arc<Shared>,
    id: &str,
    user: &str,
    body: MessageBody,
    action: fn(BotOutput) -> AdminAction,
) -> ApiResult<(StatusCode, axum::Json<Queued>)> {
    known_endpoint(shared, id).await?;
    let output = match body.template.as_ref().filter(|t| !t.values.is_empty()) {
        Some(t) => template_by_values(shared, id, t)?,
        None => message(body)?,
    };
    check_template(shared, id, &output)?;
    check_window(shared, id, user, &output).await?;
    let outbox_ids = act(shared, id, user, action(output)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Queued { outbox_ids })))
}

#[utoipa::path(post, path = "/admin/v1/endpoints/{id}/conversations/{user}/inject", tag = "conversations",
    params(("id" = String, Path, description = "Endpoint id"), ("user" = String, Path, description = "User")),
    request_body = InjectBody,
    responses((status = 202, body = Queued), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn inject(
    State(shared): State<Arc<Shared>>,
    UrlPath((id, user)): UrlPath<(String, String)>,
    ApiJson(body): ApiJson<InjectBody>,
) -> ApiResult<(StatusCode, axum::Json<Queued>)> {
    known_endpoint(&shared, &id).await?;
    if body.text.is_none() && body.data.is_none() {
        return Err(ApiError::invalid_field("give `text`, `data` or both"));
    }
    let data = body.data.unwrap_or(Value::Null);
    if !(data.is_null() || data.is_object()) {
        return Err(ApiError::invalid_field("data must be a JSON object"));
    }
    let action = AdminAction::Inject {
        text: body.text,
        data,
    };
    let outbox_ids = act(&shared, &id, &user, action).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Queued { outbox_ids })))
}

/// A template send from values by placeholder, built from the synced template.
fn template_by_values(shared: &Arc<Shared>, id: &str, t: &TemplateRef) -> ApiResult<BotOutput> {
    let endpoint = shared.endpoints.get(id).ok_or_else(|| {
        ApiError::conflict("endpoint_unavailable", format!("`{id}` is not served"))
    })?;
    let found = shared
        .business
        .catalogue
        .find(&endpoint.config, &t.name, &t.language)
        .map_err(|e| ApiError::unprocessable("template_invalid", e))?;
    let crate::business::templates::Check::Valid(spec) = found else {
        return Err(ApiError::unprocessable(
            "template_invalid",
            "template.values needs the endpoint's account set up with its templates synced",
        ));
    };
    spec.build(&t.values)
        .map(BotOutput::Template)
        .map_err(|e| ApiError::unprocessable("template_invalid", e))
}

/// A template send must fit the stored template (once the endpoint's account is known):
/// 422 `template_invalid` before anything is queued.
fn check_template(shared: &Arc<Shared>, id: &str, output: &BotOutput) -> ApiResult<()> {
    let (BotOutput::Template(t), Some(endpoint)) = (output, shared.endpoints.get(id)) else {
        return Ok(());
    };
    shared
        .business
        .catalogue
        .check(&endpoint.config, t)
        .map_err(|e| ApiError::unprocessable("template_invalid", e))
}

fn message(body: MessageBody) -> ApiResult<BotOutput> {
    match (body.text, body.template) {
        (Some(text), None) if !text.trim().is_empty() => Ok(BotOutput::Text(text)),
        (Some(_), None) => Err(ApiError::invalid_field("text must not be empty")),
        (None, Some(t)) => {
            if t.name.trim().is_empty() || t.language.trim().is_empty() {
                return Err(ApiError::invalid_field(
                    "template.name and template.language must not be empty",
                ));
            }
            Ok(BotOutput::Template(TemplateOutput {
                name: t.name,
                language: t.language,
                header: Vec::new(),
                body: t
                    .body_params
                    .into_iter()
                    .map(|p| TemplateParameter {
                        name: None,
                        value: TemplateValue::Text(p),
                    })
                    .collect(),
                buttons: Vec::new(),
            }))
        }
        _ => Err(ApiError::invalid_field(
            "give exactly one of `text` or `template`",
        )),
    }
}

/// Free-form output needs the user's last message within 24 hours.
async fn check_window(
    shared: &Arc<Shared>,
    id: &str,
    user: &str,
    output: &BotOutput,
) -> ApiResult<()> {
    if !crate::serve::workers::is_free_form(output) {
        return Ok(());
    }
    let last = shared.store.last_inbound(id, user).await?;
    let now = crate::clock::now_ms();
    match last {
        _ if window_open(last, now) => Ok(()),
        Some(ms) => Err(ApiError::conflict(
            WINDOW_CLOSED,
            format!(
                "the 24-hour window closed at {} ms (the user's last message + 24 h); send a template instead",
                window_closes_at(ms)
            ),
        )),
        None => Err(ApiError::conflict(
            WINDOW_CLOSED,
            "the user has not written to this number: only a template can start the conversation",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_keys() {
        let phone = user_of("15551234567").unwrap();
        assert_eq!(phone.phone.as_deref(), Some("15551234567"));
        assert_eq!(phone.user_id, None);
        let bsuid = user_of("US.13491208655302741918").unwrap();
        assert_eq!(bsuid.user_id.as_deref(), Some("US.13491208655302741918"));
        assert!(user_of("").is_err());
        assert!(user_of("a b").is_err());
    }

    #[test]
    fn transcript_texts() {
        let event =
            serde_json::json!({"body": {"Message": {"id": "w", "content": {"Text": "hi"}}}});
        assert_eq!(inbound_text(&event), "hi");
        let choice = serde_json::json!({"body": {"Message": {"content": {"Choice": {"id": "hours", "title": "Opening hours"}}}}});
        assert_eq!(inbound_text(&choice), "Opening hours");
        assert_eq!(snake("MarkRead"), "mark_read");
        assert_eq!(snake("Text"), "text");
    }

    #[test]
    fn one_of_text_or_template() {
        assert!(
            message(MessageBody {
                text: None,
                template: None
            })
            .is_err()
        );
        assert!(matches!(
            message(MessageBody {
                text: Some("hi".into()),
                template: None
            }),
            Ok(BotOutput::Text(_))
        ));
    }
}
