//! An in-process stand-in for Meta's Graph API, for tests of `plugboard serve`.
//!
//! [`MockGraph::start`] serves every path on `127.0.0.1:0` from a tokio task and records
//! each request (method, path, headers, body, arrival time) in arrival order, together
//! with the reply it got. Replies are scripted: a FIFO of [`Reply`] values is consumed one
//! per send, and once it is empty the default reply answers (a 200 with a fresh
//! `wamid.mock<N>` unless [`MockGraph::set_default`] changed it). Mark-read bodies
//! (`"status":"read"`) always get `{"success":true}` and leave the script alone, so a
//! script lines up with the sends a test is about.
//!
//! A `GET` (the phone number lookup behind `verify`) answers the number's fields
//! ([`MOCK_DISPLAY_NUMBER`]) unless an error reply is scripted for it.
//!
//! Error replies use Graph's real error shape
//! (`{"error":{"message","type","code","error_data":{"details"},"fbtrace_id"}}`), which is
//! what the adapter's classifier reads (`adapter/src/classify.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What a `GET` of a phone number id answers (unless an error is scripted).
pub const MOCK_DISPLAY_NUMBER: &str = "+1 555-078-3881";
pub const MOCK_VERIFIED_NAME: &str = "Plugboard Test Shop";

/// How the mock answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with a fresh `wamid.mock<N>`.
    Ok,
    /// 200 with this message id (a test that posts a status for it must know it).
    OkWithId(String),
    /// A Graph error body with this HTTP status, error code and `error_data.details`.
    Error {
        status: u16,
        code: i64,
        details: String,
    },
    /// 429 with `Retry-After` and code 130429 (throughput).
    RateLimited { retry_after_secs: u64 },
    /// 500 with Graph's generic transient error (code 1).
    ServerError,
    /// Sleeps this long, then answers 504 (code 2, temporarily unavailable): meant to run
    /// past the client's timeout, and a failure for a client that waits that long anyway.
    Hang(Duration),
    /// Sleeps this long, then answers with the inner reply.
    Delayed(Duration, Box<Reply>),
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Arrival order, from 0.
    pub seq: usize,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub raw_body: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    pub at: Instant,
    /// The reply it was given (for a mark-read: `Ok`).
    pub reply: Reply,
    /// The HTTP status answered; `None` while the reply is still being delayed.
    pub status: Option<u16>,
    /// The `messages[0].id` answered, for a successful send.
    pub message_id: Option<String>,
}

impl Request {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Authorization`.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The body's `to`.
    pub fn to(&self) -> Option<&str> {
        self.body.get("to").and_then(Value::as_str)
    }

    /// The body's `type` (`text`, `interactive`, `template`, …).
    pub fn message_type(&self) -> Option<&str> {
        self.body.get("type").and_then(Value::as_str)
    }

    /// A mark-read (or typing indicator) body rather than a message.
    pub fn is_mark_read(&self) -> bool {
        self.body.get("status").and_then(Value::as_str) == Some("read")
    }

    /// What the user would read first: `text.body`, `interactive.body.text`, or the
    /// template's name as `template:<name>`.
    pub fn text(&self) -> Option<String> {
        let b = &self.body;
        b.pointer("/text/body")
            .or_else(|| b.pointer("/interactive/body/text"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                b.pointer("/template/name")
                    .and_then(Value::as_str)
                    .map(|n| format!("template:{n}"))
            })
    }

    /// Answered with a 2xx (the host was told the send succeeded).
    pub fn answered_ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "#{} +{:?} {} {} -> {:?} ({:?}) to={:?} text={:?}",
            self.seq,
            self.at.elapsed(),
            self.method,
            self.path,
            self.status,
            self.reply,
            self.to(),
            self.text()
        )
    }
}

/// Every request's summary, one a line (for panic messages).
pub fn describe(requests: &[Request]) -> String {
    if requests.is_empty() {
        return "  (no requests)".to_string();
    }
    requests
        .iter()
        .map(|r| format!("  {}", r.summary()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug)]
struct Shared {
    requests: Vec<Request>,
    script: VecDeque<Reply>,
    default: Reply,
    next_id: u64,
}

type Inner = Arc<Mutex<Shared>>;

fn lock(inner: &Inner) -> MutexGuard<'_, Shared> {
    // A test that panicked while holding the lock must not hide the state from others.
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running mock. Dropping it stops the server.
pub struct MockGraph {
    addr: SocketAddr,
    inner: Inner,
    task: tokio::task::JoinHandle<()>,
}

impl MockGraph {
    /// Binds `127.0.0.1:0` and serves from a task of the current runtime.
    pub async fn start() -> MockGraph {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock Graph API");
        let addr = listener.local_addr().expect("mock Graph API address");
        let inner: Inner = Arc::new(Mutex::new(Shared {
            requests: Vec::new(),
            script: VecDeque::new(),
            default: Reply::Ok,
            next_id: 1,
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockGraph { addr, inner, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (the endpoint's `graph_api_base`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply for the next send not yet answered by the script.
    pub fn push(&self, reply: Reply) {
        lock(&self.inner).script.push_back(reply);
    }

    /// Queues several replies in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.inner).script.extend(replies);
    }

    /// The reply once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        lock(&self.inner).default = reply;
    }

    /// Everything recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.inner).requests.clone()
    }

    /// The requests answered with a 2xx so far.
    pub fn ok_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::answered_ok)
            .collect()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout` listing what did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_until(timeout, &format!("{n} request(s)"), |r| r.len() >= n)
            .await
    }

    /// Waits until `done` holds for the recorded requests; panics after `timeout` with
    /// `what` and the requests.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if Instant::now() >= deadline {
                panic!(
                    "mock Graph API: waited {timeout:?} for {what}; {} arrived:\n{}",
                    requests.len(),
                    describe(&requests)
                );
            }
        }
    }
}

impl Drop for MockGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(inner): State<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mark_read = json.get("status").and_then(Value::as_str) == Some("read");
    let to = json
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (seq, reply) = {
        let mut shared = lock(&inner);
        let reply = if mark_read {
            Reply::Ok
        } else {
            let default = shared.default.clone();
            shared.script.pop_front().unwrap_or(default)
        };
        let seq = shared.requests.len();
        shared.requests.push(Request {
            seq,
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            raw_body: String::from_utf8_lossy(&body).into_owned(),
            body: json,
            at: Instant::now(),
            reply: reply.clone(),
            status: None,
            message_id: None,
        });
        (seq, reply)
    };

    // Unwrap delays first so the request is recorded (and visible to waiters) while the
    // answer is held back.
    let mut delay = Duration::ZERO;
    let mut last = reply;
    while let Reply::Delayed(d, next) = last {
        delay += d;
        last = *next;
    }
    if let Reply::Hang(d) = last {
        delay += d;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let mut shared = lock(&inner);
    let (status, message_id, response) = if mark_read {
        (200, None, json_response(200, json!({ "success": true })))
    } else if method == Method::GET && matches!(last, Reply::Ok) {
        // `GET /{version}/{phone-number-id}`: the number's fields (what `verify` reads).
        let id = uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let body = json!({
            "verified_name": MOCK_VERIFIED_NAME,
            "display_phone_number": MOCK_DISPLAY_NUMBER,
            "quality_rating": "GREEN",
            "id": id,
        });
        (200, None, json_response(200, body))
    } else {
        answer(&last, &to, &mut shared.next_id)
    };
    if let Some(request) = shared.requests.get_mut(seq) {
        request.status = Some(status);
        request.message_id = message_id;
    }
    response
}

/// The status, message id and response of a (non-delayed) reply.
fn answer(reply: &Reply, to: &str, next_id: &mut u64) -> (u16, Option<String>, Response) {
    let ok = |id: String| {
        let body = json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to }],
            "messages": [{ "id": id, "message_status": "accepted" }]
        });
        (200, Some(id), json_response(200, body))
    };
    match reply {
        Reply::Ok => {
            let id = format!("wamid.mock{next_id}");
            *next_id += 1;
            ok(id)
        }
        Reply::OkWithId(id) => ok(id.clone()),
        Reply::Error {
            status,
            code,
            details,
        } => (
            *status,
            None,
            json_response(*status, graph_error(*code, "Message failed", details)),
        ),
        Reply::RateLimited { retry_after_secs } => {
            let mut response = json_response(
                429,
                graph_error(
                    130429,
                    "(#130429) Rate limit hit",
                    "Cloud API message throughput has been reached.",
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            (429, None, response)
        }
        Reply::ServerError => (
            500,
            None,
            json_response(
                500,
                graph_error(1, "An unknown error has occurred.", "Please retry later."),
            ),
        ),
        Reply::Hang(_) => (
            504,
            None,
            json_response(
                504,
                graph_error(
                    2,
                    "(#2) Service temporarily unavailable",
                    "The mock held this request back on purpose.",
                ),
            ),
        ),
        // Unwrapped by the caller; kept total so a nested script still answers.
        Reply::Delayed(_, inner) => answer(inner, to, next_id),
    }
}

/// Graph's error body.
fn graph_error(code: i64, message: &str, details: &str) -> Value {
    json!({
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": details },
            "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUv"
        }
    })
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}
