//! [`ReqwestHttp`]: executes a flow's http node with reqwest.
//!
//! The call's method, url, headers and JSON body go out as given; the per-call timeout
//! bounds the whole exchange. Any answer is [`HttpOutcome::Ok`] (the engine decides what a
//! non-2xx status means), with the body parsed as JSON or `null`; no answer is
//! [`HttpOutcome::Err`]. Error texts leave the URL out: flow URLs may carry API keys.

use std::time::Duration;

use super::HttpExecutor;
use crate::flow::model::Method;
use crate::flow::{HttpCall, HttpOutcome};

/// Http calls over a shared reqwest client (connection pooling across conversations).
#[derive(Debug, Clone, Default)]
pub struct ReqwestHttp {
    client: reqwest::Client,
}

impl ReqwestHttp {
    pub fn new() -> Self {
        ReqwestHttp::default()
    }

    pub fn with_client(client: reqwest::Client) -> Self {
        ReqwestHttp { client }
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

fn describe(e: reqwest::Error, timeout_ms: u64) -> String {
    if e.is_timeout() {
        format!("timed out after {timeout_ms} ms")
    } else {
        e.without_url().to_string()
    }
}

impl HttpExecutor for ReqwestHttp {
    async fn call(&self, call: HttpCall) -> HttpOutcome {
        let mut request = self
            .client
            .request(method(call.method), &call.url)
            .timeout(Duration::from_millis(call.timeout_ms));
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return HttpOutcome::Err(describe(e, call.timeout_ms)),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => HttpOutcome::Ok {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            },
            Err(e) => HttpOutcome::Err(describe(e, call.timeout_ms)),
        }
    }
}
