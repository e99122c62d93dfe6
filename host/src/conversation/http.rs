//! [`ReqwestHttp`]: executes a flow's http node through the egress policy.
//!
//! The call's method, url, headers and JSON body go out as given, through
//! [`crate::egress::Egress`]: an internal address (unless `[egress] allow`s it) is refused
//! before any connection, redirects are not followed, and the response body is read up
//! to [`crate::egress::DEFAULT_BODY_CAP`]. The per-call timeout bounds the whole exchange.
//! Any answer is [`HttpOutcome::Ok`] (the engine decides what a non-2xx status means), with
//! the body parsed as JSON or `null`; no answer, a refusal or an oversized body is
//! [`HttpOutcome::Err`] (the node's error path). Error texts leave the URL out: flow URLs
//! may carry API keys.

use std::time::Duration;

use super::HttpExecutor;
use crate::egress::{self, Egress};
use crate::flow::model::Method;
use crate::flow::{HttpCall, HttpOutcome};

/// Http calls over a shared egress client (connection pooling across conversations).
#[derive(Debug, Clone, Default)]
pub struct ReqwestHttp {
    egress: Egress,
}

impl ReqwestHttp {
    /// Calls under the default policy: no internal address is reachable.
    pub fn new() -> Self {
        ReqwestHttp::default()
    }

    pub fn with_egress(egress: Egress) -> Self {
        ReqwestHttp { egress }
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn describe(e: &reqwest::Error, timeout_ms: u64) -> String {
    if e.is_timeout() {
        format!("timed out after {timeout_ms} ms")
    } else {
        egress::describe(e)
    }
}

impl HttpExecutor for ReqwestHttp {
    async fn call(&self, call: HttpCall) -> HttpOutcome {
        let mut request = match self.egress.request(method(call.method), &call.url) {
            Ok(request) => request.timeout(Duration::from_millis(call.timeout_ms)),
            Err(e) => return HttpOutcome::Err(e.to_string()),
        };
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return HttpOutcome::Err(describe(&e, call.timeout_ms)),
        };
        let status = response.status().as_u16();
        match egress::read_capped(response, egress::DEFAULT_BODY_CAP).await {
            Ok(bytes) => HttpOutcome::Ok {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            },
            // The request's timeout covers the body too.
            Err(egress::EgressError::Timeout) => {
                HttpOutcome::Err(format!("timed out after {} ms", call.timeout_ms))
            }
            Err(egress::EgressError::Http(detail)) => {
                HttpOutcome::Err(format!("reading the response: {detail}"))
            }
            Err(e) => HttpOutcome::Err(e.to_string()),
        }
    }
}
