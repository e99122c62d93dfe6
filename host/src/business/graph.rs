//! The Graph API's management calls: what a system-user token reaches, an account's
//! numbers, its webhook subscription and its message templates.
//!
//! Every call goes to the account's own `graph_api_base` and version with the token as a
//! bearer header (never in a URL, so it cannot end up in a log line). Lists are paged with
//! Meta's `after` cursor against our own base URL: a `paging.next` URL from the response is
//! never followed, since it would carry the token wherever it points. Errors keep Meta's
//! code (190 expired token, 200/10 missing permission, 100 invalid parameter) and have the
//! token masked out of Meta's message.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::secretbox::mask;
use crate::whatsapp::GraphErrorKind;

/// Items asked for per page.
const PAGE_SIZE: usize = 100;
/// A list longer than this many pages is cut off (and said so) rather than followed
/// forever.
const MAX_PAGES: usize = 200;

/// Where and as whom to call.
#[derive(Clone)]
pub struct GraphClient<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub version: &'a str,
    pub token: &'a str,
    pub timeout: Duration,
}

/// A failed management call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with an error body.
    #[error("{message}")]
    Meta {
        status: u16,
        code: i64,
        /// Our advice code: `access_token_invalid`, `permission_missing`,
        /// `invalid_parameter`, `graph_error`.
        kind: &'static str,
        message: String,
    },
    /// No answer, or not one we can read.
    #[error("{0}")]
    Unreachable(String),
}

impl GraphError {
    pub fn kind(&self) -> &'static str {
        match self {
            GraphError::Meta { kind, .. } => kind,
            GraphError::Unreachable(_) => "graph_unreachable",
        }
    }
}

/// A number as `/{waba}/phone_numbers` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNumber {
    pub id: String,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub throughput_level: Option<String>,
    pub messaging_limit_tier: Option<String>,
}

/// An account as `/{waba}` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphAccount {
    pub id: String,
    pub name: Option<String>,
    pub portfolio: Option<String>,
}

/// A template as `/{waba}/message_templates` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphTemplate {
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    pub category: Option<String>,
    pub status: String,
    pub quality: Option<String>,
    pub components: Value,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl GraphClient<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.version, path)
    }

    /// One call; the JSON body on success.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, GraphError> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .query(query)
            .bearer_auth(self.token)
            .timeout(self.timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            GraphError::Unreachable(format!(
                "the Graph API at {} did not answer: {}",
                self.base,
                e.without_url()
            ))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            GraphError::Unreachable(format!(
                "reading the Graph API's answer: {}",
                e.without_url()
            ))
        })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(self.error(status, &value))
    }

    /// Meta's error as advice, with the token masked out of its message (Meta quotes a
    /// malformed token back).
    fn error(&self, status: StatusCode, body: &Value) -> GraphError {
        let error = body.get("error");
        let code = error
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no error message")
            .replace(self.token, &mask(self.token));
        let (kind, advice) = match GraphErrorKind::of(code) {
            GraphErrorKind::AccessTokenInvalid => (
                "access_token_invalid",
                "the access token is invalid or expired",
            ),
            GraphErrorKind::PermissionMissing => (
                "permission_missing",
                "the token lacks the whatsapp_business_management permission for this",
            ),
            GraphErrorKind::InvalidParameter => (
                "invalid_parameter",
                "the Graph API refused a parameter (an unknown id, or one this token cannot see)",
            ),
            GraphErrorKind::Other => ("graph_error", "the Graph API refused the call"),
        };
        GraphError::Meta {
            status: status.as_u16(),
            code,
            kind,
            message: format!("{advice} (Graph error {code}, HTTP {status}: {message})"),
        }
    }

    /// Every item of a paged list (`data` + `paging.cursors.after`).
    async fn list(&self, path: &str, fields: &str) -> Result<Vec<Value>, GraphError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("fields", fields.to_string()),
                ("limit", PAGE_SIZE.to_string()),
            ];
            if let Some(cursor) = &after {
                query.push(("after", cursor.clone()));
            }
            let page = self.call(Method::GET, path, &query, None).await?;
            let data = page.get("data").and_then(Value::as_array).ok_or_else(|| {
                GraphError::Unreachable(format!("the answer to {path} has no `data` list"))
            })?;
            items.extend(data.iter().cloned());
            let paging = page.get("paging");
            // Meta leaves `next` out on the last page (the cursors may still be there).
            let has_next = paging.and_then(|p| p.get("next")).is_some();
            after = paging
                .and_then(|p| p.get("cursors"))
                .and_then(|c| text(c, "after"))
                .filter(|_| has_next);
            if after.is_none() || data.is_empty() {
                return Ok(items);
            }
        }
        Err(GraphError::Unreachable(format!(
            "{path} has more than {MAX_PAGES} pages; stopped"
        )))
    }

    /// The WABAs the token may manage (`debug_token`'s granular scopes).
    pub async fn token_accounts(&self) -> Result<Vec<String>, GraphError> {
        let answer = self
            .call(
                Method::GET,
                "debug_token",
                &[("input_token", self.token.to_string())],
                None,
            )
            .await?;
        let data = answer.get("data").cloned().unwrap_or(Value::Null);
        if data.get("is_valid").and_then(Value::as_bool) == Some(false) {
            return Err(GraphError::Meta {
                status: 200,
                code: 190,
                kind: "access_token_invalid",
                message: "the access token is invalid or expired (debug_token: is_valid false)"
                    .into(),
            });
        }
        let mut ids = Vec::new();
        for scope in data
            .get("granular_scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if scope.get("scope").and_then(Value::as_str) != Some("whatsapp_business_management") {
                continue;
            }
            for id in scope
                .get("target_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let id = match id {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => continue,
                };
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    pub async fn account(&self, waba: &str) -> Result<GraphAccount, GraphError> {
        let v = self
            .call(
                Method::GET,
                waba,
                &[("fields", "id,name,owner_business_info".to_string())],
                None,
            )
            .await?;
        Ok(GraphAccount {
            id: text(&v, "id").unwrap_or_else(|| waba.to_string()),
            name: text(&v, "name"),
            portfolio: v.get("owner_business_info").and_then(|o| text(o, "id")),
        })
    }

    pub async fn numbers(&self, waba: &str) -> Result<Vec<GraphNumber>, GraphError> {
        let items = self
            .list(
                &format!("{waba}/phone_numbers"),
                "id,display_phone_number,verified_name,quality_rating,throughput,messaging_limit_tier",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|v| {
                Some(GraphNumber {
                    id: text(v, "id")?,
                    display_phone_number: text(v, "display_phone_number"),
                    verified_name: text(v, "verified_name"),
                    quality_rating: text(v, "quality_rating"),
                    throughput_level: v.get("throughput").and_then(|t| text(t, "level")),
                    messaging_limit_tier: text(v, "messaging_limit_tier"),
                })
            })
            .collect())
    }

    /// Whether any app is subscribed to the account's webhooks (ours is the token's app).
    pub async fn subscribed(&self, waba: &str) -> Result<bool, GraphError> {
        let v = self
            .call(Method::GET, &format!("{waba}/subscribed_apps"), &[], None)
            .await?;
        Ok(v.get("data")
            .and_then(Value::as_array)
            .is_some_and(|apps| !apps.is_empty()))
    }

    pub async fn subscribe(&self, waba: &str) -> Result<(), GraphError> {
        self.call(Method::POST, &format!("{waba}/subscribed_apps"), &[], None)
            .await
            .map(drop)
    }

    pub async fn unsubscribe(&self, waba: &str) -> Result<(), GraphError> {
        self.call(
            Method::DELETE,
            &format!("{waba}/subscribed_apps"),
            &[],
            None,
        )
        .await
        .map(drop)
    }

    pub async fn templates(&self, waba: &str) -> Result<Vec<GraphTemplate>, GraphError> {
        let items = self
            .list(
                &format!("{waba}/message_templates"),
                "id,name,language,category,status,quality_score,components",
            )
            .await?;
        Ok(items.iter().filter_map(template).collect())
    }

    /// Submits a template for review; Meta's answer (id, status, category).
    pub async fn create_template(
        &self,
        waba: &str,
        name: &str,
        language: &str,
        category: &str,
        components: &Value,
    ) -> Result<GraphTemplate, GraphError> {
        let body = json!({
            "name": name,
            "language": language,
            "category": category,
            "components": components,
        });
        let v = self
            .call(
                Method::POST,
                &format!("{waba}/message_templates"),
                &[],
                Some(body),
            )
            .await?;
        Ok(GraphTemplate {
            id: text(&v, "id"),
            name: name.to_string(),
            language: language.to_string(),
            category: text(&v, "category").or_else(|| Some(category.to_string())),
            status: text(&v, "status").unwrap_or_else(|| "PENDING".into()),
            quality: None,
            components: components.clone(),
        })
    }

    /// Deletes a template by name (every language), or one language by its id.
    pub async fn delete_template(
        &self,
        waba: &str,
        name: &str,
        template_id: Option<&str>,
    ) -> Result<(), GraphError> {
        let mut query = vec![("name", name.to_string())];
        if let Some(id) = template_id {
            query.push(("hsm_id", id.to_string()));
        }
        self.call(
            Method::DELETE,
            &format!("{waba}/message_templates"),
            &query,
            None,
        )
        .await
        .map(drop)
    }
}

fn template(v: &Value) -> Option<GraphTemplate> {
    Some(GraphTemplate {
        id: text(v, "id"),
        name: text(v, "name")?,
        language: text(v, "language")?,
        category: text(v, "category"),
        status: text(v, "status").unwrap_or_else(|| "UNKNOWN".into()),
        quality: v.get("quality_score").and_then(|q| text(q, "score")),
        components: v.get("components").cloned().unwrap_or(json!([])),
    })
}
