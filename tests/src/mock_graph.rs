//! An in-process stand-in for Meta's Graph API, for tests of `plugboard serve` and of the
//! host's WhatsApp Business management calls.
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
//! ## Management calls
//!
//! The mock also models what the host's `business/graph.rs` manages: accounts (WABAs)
//! added with [`MockGraph::add_account`], what `debug_token` reports for a token
//! ([`MockGraph::grant`]), and each account's numbers, webhook subscription and message
//! templates ([`MockGraph::account_state`] shows them after the calls). The routes, all
//! under `/{version}/`:
//!
//! - `GET debug_token?input_token=T`: the ids granted to `T` under both WhatsApp scopes.
//!   An unknown token is `is_valid: false` with no scopes (still a 200, as Meta answers).
//! - `GET {waba}` for a known account id: `id`, `name` and `owner_business_info` (when it
//!   has a portfolio). Any other id is the phone number lookup above.
//! - `GET {waba}/phone_numbers` and `GET {waba}/message_templates`: lists paged with
//!   `limit` and `after`, at most [`MockGraph::set_page_size`] items a page (2 unless
//!   changed, so a host's paging is always exercised). Cursors are opaque; `paging.next`
//!   (an absolute URL carrying the token as `access_token`, as Meta's does) is there only
//!   when a further page exists.
//! - `GET`, `POST`, `DELETE {waba}/subscribed_apps`: read, set, clear the subscription.
//! - `POST {waba}/message_templates` (`name`, `language`, `category`, `components`) adds a
//!   `PENDING` template; `DELETE {waba}/message_templates?name=N[&hsm_id=ID]` removes every
//!   language of `N` (or the one with that id).
//!
//! `fields` is honoured: only the named fields (and `id`) are answered. An unknown account
//! on the last three, a duplicate template, a missing parameter or an unknown template
//! answer a 400 with code 100. Tokens are not checked (only `debug_token` reads one): a
//! test scripts Meta's errors with [`MockGraph::fail_next`] (see [`Reply::token_expired`],
//! [`Reply::permission_denied`], [`Reply::invalid_parameter`]). Management requests never
//! consume the FIFO script, which stays the sends' and the phone number lookup's.
//!
//! [`MockGraph::fail_recipient`] makes every send to one recipient fail (Meta's 131050 for
//! a user who stopped marketing messages: [`Reply::marketing_opted_out`]), whatever the
//! script says.
//!
//! Error replies use Graph's real error shape
//! (`{"error":{"message","type","code","error_data":{"details"},"fbtrace_id"}}`), which is
//! what the adapter's classifier reads (`adapter/src/classify.rs`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// What a `GET` of a phone number id answers (unless an error is scripted).
pub const MOCK_DISPLAY_NUMBER: &str = "+1 555-078-3881";
pub const MOCK_VERIFIED_NAME: &str = "Plugboard Test Shop";
/// The app `debug_token` and `subscribed_apps` name.
pub const MOCK_APP_ID: &str = "mock-app";
pub const MOCK_APP_NAME: &str = "Plugboard";
/// The two scopes `debug_token` reports for a granted token.
pub const SCOPE_MANAGEMENT: &str = "whatsapp_business_management";
pub const SCOPE_MESSAGING: &str = "whatsapp_business_messaging";
/// Items per page of a management list until [`MockGraph::set_page_size`] changes it.
pub const DEFAULT_PAGE_SIZE: usize = 2;

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
    /// Like [`Reply::Error`], with Graph's top-level `message` too (the management errors:
    /// the host quotes Meta's message, where a send's classifier reads the code).
    ErrorWithMessage {
        status: u16,
        code: i64,
        message: String,
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

impl Reply {
    /// Meta's expired token: HTTP 401, code 190 (`OAuthException`).
    pub fn token_expired() -> Reply {
        Reply::ErrorWithMessage {
            status: 401,
            code: 190,
            message: "Error validating access token: Session has expired".into(),
            details: "Error validating access token: Session has expired".into(),
        }
    }

    /// Meta's missing permission: HTTP 403, code 200.
    pub fn permission_denied() -> Reply {
        Reply::ErrorWithMessage {
            status: 403,
            code: 200,
            message: "(#200) Permissions error".into(),
            details: "Permissions error: the token lacks whatsapp_business_management".into(),
        }
    }

    /// Meta's refused parameter: HTTP 400, code 100, with these details.
    pub fn invalid_parameter(details: &str) -> Reply {
        Reply::ErrorWithMessage {
            status: 400,
            code: 100,
            message: "(#100) Invalid parameter".into(),
            details: details.into(),
        }
    }

    /// A send to a user who stopped marketing messages: HTTP 400, code 131050.
    pub fn marketing_opted_out() -> Reply {
        Reply::ErrorWithMessage {
            status: 400,
            code: 131050,
            message: "(#131050) Unable to deliver the message. This recipient has chosen to \
                      stop receiving marketing messages on WhatsApp from your business."
                .into(),
            details: "The user has stopped marketing messages from this business.".into(),
        }
    }
}

/// A WhatsApp Business Account (WABA) of the management model.
#[derive(Debug, Clone, PartialEq)]
pub struct MockAccount {
    pub id: String,
    pub name: String,
    /// The business portfolio that owns it (`owner_business_info.id`); left out when `None`.
    pub portfolio: Option<String>,
    /// In list order (`phone_numbers`).
    pub numbers: Vec<MockNumber>,
    /// In list order (`message_templates`); a created template goes last.
    pub templates: Vec<MockTemplate>,
    /// Whether an app is subscribed to its webhooks (`subscribed_apps`).
    pub subscribed: bool,
}

impl MockAccount {
    /// An account without a portfolio, numbers or templates, not subscribed.
    pub fn new(id: &str, name: &str) -> MockAccount {
        MockAccount {
            id: id.into(),
            name: name.into(),
            portfolio: None,
            numbers: Vec::new(),
            templates: Vec::new(),
            subscribed: false,
        }
    }

    /// Owned by this portfolio.
    pub fn with_portfolio(mut self, portfolio: &str) -> MockAccount {
        self.portfolio = Some(portfolio.into());
        self
    }

    /// These numbers added.
    pub fn with_numbers(mut self, numbers: impl IntoIterator<Item = MockNumber>) -> MockAccount {
        self.numbers.extend(numbers);
        self
    }

    /// These templates added.
    pub fn with_templates(
        mut self,
        templates: impl IntoIterator<Item = MockTemplate>,
    ) -> MockAccount {
        self.templates.extend(templates);
        self
    }

    /// Already subscribed to webhooks.
    pub fn with_subscription(mut self) -> MockAccount {
        self.subscribed = true;
        self
    }

    /// The template with this name and language.
    pub fn template(&self, name: &str, language: &str) -> Option<&MockTemplate> {
        self.templates
            .iter()
            .find(|t| t.name == name && t.language == language)
    }
}

/// A phone number of a [`MockAccount`] (`/{waba}/phone_numbers`).
#[derive(Debug, Clone, PartialEq)]
pub struct MockNumber {
    pub id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    pub quality_rating: String,
    /// `throughput.level`.
    pub throughput_level: String,
    pub messaging_limit_tier: String,
}

impl MockNumber {
    /// A `GREEN`, `STANDARD` throughput, `TIER_1K` number named [`MOCK_VERIFIED_NAME`].
    pub fn new(id: &str, display_phone_number: &str) -> MockNumber {
        MockNumber {
            id: id.into(),
            display_phone_number: display_phone_number.into(),
            verified_name: MOCK_VERIFIED_NAME.into(),
            quality_rating: "GREEN".into(),
            throughput_level: "STANDARD".into(),
            messaging_limit_tier: "TIER_1K".into(),
        }
    }
}

/// A message template of a [`MockAccount`] (`/{waba}/message_templates`).
#[derive(Debug, Clone, PartialEq)]
pub struct MockTemplate {
    pub id: String,
    pub name: String,
    pub language: String,
    /// `MARKETING`, `UTILITY`, `AUTHENTICATION`.
    pub category: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, …
    pub status: String,
    /// `quality_score.score` (`GREEN`, …); left out when `None`.
    pub quality: Option<String>,
    /// Meta's `components` array, as given.
    pub components: Value,
}

impl MockTemplate {
    /// A template with one `BODY` component and no quality score.
    pub fn new(id: &str, name: &str, language: &str, category: &str, status: &str) -> Self {
        MockTemplate {
            id: id.into(),
            name: name.into(),
            language: language.into(),
            category: category.into(),
            status: status.into(),
            quality: None,
            components: json!([{ "type": "BODY", "text": "Hello {{1}}" }]),
        }
    }

    /// An `APPROVED` `UTILITY` template with a `GREEN` quality score.
    pub fn approved(id: &str, name: &str, language: &str) -> MockTemplate {
        MockTemplate {
            quality: Some("GREEN".into()),
            ..MockTemplate::new(id, name, language, "UTILITY", "APPROVED")
        }
    }
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

    /// The first value of a query parameter (decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(self.query.as_deref())
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
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
    management: Management,
}

/// The management model, and the scripted failures that bypass the FIFO.
#[derive(Debug)]
struct Management {
    /// `http://127.0.0.1:<port>`, for `paging.next`.
    base_url: String,
    accounts: Vec<MockAccount>,
    /// Token → the account ids `debug_token` reports.
    grants: HashMap<String, Vec<String>>,
    page_size: usize,
    /// `fail_next` in the order given: a request takes the first whose pattern its path
    /// contains (so each pattern is a FIFO of its own).
    fail_next: Vec<(String, Reply)>,
    /// Recipient → the reply to every send to it.
    fail_recipient: HashMap<String, Reply>,
    next_template_id: u64,
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
            management: Management {
                base_url: format!("http://{addr}"),
                accounts: Vec::new(),
                grants: HashMap::new(),
                page_size: DEFAULT_PAGE_SIZE,
                fail_next: Vec::new(),
                fail_recipient: HashMap::new(),
                next_template_id: 1_000_000_000_000_001,
            },
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

    /// Adds an account to the management model (replacing one with the same id).
    pub fn add_account(&self, account: MockAccount) {
        let accounts = &mut lock(&self.inner).management.accounts;
        match accounts.iter_mut().find(|a| a.id == account.id) {
            Some(existing) => *existing = account,
            None => accounts.push(account),
        }
    }

    /// What `debug_token` reports for `token`: valid, with both WhatsApp scopes on these
    /// account ids (replacing an earlier grant; the ids need not be known accounts).
    pub fn grant(&self, token: &str, account_ids: &[&str]) {
        let ids = account_ids.iter().map(|id| id.to_string()).collect();
        lock(&self.inner)
            .management
            .grants
            .insert(token.to_string(), ids);
    }

    /// Items per page of a management list (at most; a request's `limit` may ask fewer).
    /// [`DEFAULT_PAGE_SIZE`] until changed; 0 counts as 1.
    pub fn set_page_size(&self, n: usize) {
        lock(&self.inner).management.page_size = n.max(1);
    }

    /// The next request whose path contains `path_contains` gets `reply` instead of what it
    /// would have got; consumed once, before the FIFO script (which it leaves alone) and
    /// before the management model (which it leaves unchanged). Several for one pattern
    /// answer in order; mark-reads are never failed. A success reply (`Ok`, or `Delayed`
    /// around one) answers what the path normally answers, so it only delays a call.
    pub fn fail_next(&self, path_contains: &str, reply: Reply) {
        lock(&self.inner)
            .management
            .fail_next
            .push((path_contains.to_string(), reply));
    }

    /// Every send (`POST …/messages`, not a mark-read) whose body's `to` is `to` gets
    /// `reply` from now on, without consuming the FIFO script (a [`MockGraph::fail_next`]
    /// matching the send comes first). Replaces an earlier reply for `to`.
    pub fn fail_recipient(&self, to: &str, reply: Reply) {
        lock(&self.inner)
            .management
            .fail_recipient
            .insert(to.to_string(), reply);
    }

    /// The account as the calls so far left it (subscription, templates).
    pub fn account_state(&self, id: &str) -> Option<MockAccount> {
        lock(&self.inner).management.account(id).cloned()
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
    let send = !mark_read && method == Method::POST && uri.path().ends_with("/messages");
    let (seq, reply, route) = {
        let mut shared = lock(&inner);
        let route = Route::of(&method, uri.path(), &shared.management);
        let reply = if mark_read {
            Reply::Ok
        } else if let Some(reply) = shared.management.take_failure(uri.path()) {
            reply
        } else if route.is_some() {
            Reply::Ok
        } else if let Some(reply) = send
            .then(|| shared.management.fail_recipient.get(&to).cloned())
            .flatten()
        {
            reply
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
            body: json.clone(),
            at: Instant::now(),
            reply: reply.clone(),
            status: None,
            message_id: None,
        });
        (seq, reply, route)
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
    // A management error the model answered, recorded as the request's reply.
    let mut refused = None;
    let (status, message_id, response) = if mark_read {
        (200, None, json_response(200, json!({ "success": true })))
    } else if let (Some(route), Reply::Ok | Reply::OkWithId(_)) = (&route, &last) {
        let call = Call {
            method: &method,
            path: uri.path(),
            query: query_pairs(uri.query()),
            body: &json,
            bearer: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim),
        };
        match shared.management.answer(route, &call) {
            Ok(body) => (200, None, json_response(200, body)),
            Err(reply) => {
                let answered = answer(&reply, &to, &mut shared.next_id);
                refused = Some(reply);
                answered
            }
        }
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
        if let Some(reply) = refused {
            request.reply = reply;
        }
    }
    response
}

/// A management path (see the module docs).
#[derive(Debug, Clone, PartialEq)]
enum Route {
    /// `/{v}/debug_token`
    DebugToken,
    /// `GET /{v}/{waba}` of a known account.
    Account(String),
    /// `/{v}/{waba}/phone_numbers`
    Numbers(String),
    /// `/{v}/{waba}/subscribed_apps`
    Subscription(String),
    /// `/{v}/{waba}/message_templates`
    Templates(String),
}

impl Route {
    fn of(method: &Method, path: &str, management: &Management) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            [_, "debug_token"] => Some(Route::DebugToken),
            [_, id] if *method == Method::GET && management.account(id).is_some() => {
                Some(Route::Account(id.to_string()))
            }
            [_, waba, "phone_numbers"] => Some(Route::Numbers(waba.to_string())),
            [_, waba, "subscribed_apps"] => Some(Route::Subscription(waba.to_string())),
            [_, waba, "message_templates"] => Some(Route::Templates(waba.to_string())),
            _ => None,
        }
    }

    /// The object the path names (for Meta's "unsupported request" message).
    fn object(&self) -> &str {
        match self {
            Route::DebugToken => "debug_token",
            Route::Account(id)
            | Route::Numbers(id)
            | Route::Subscription(id)
            | Route::Templates(id) => id,
        }
    }
}

/// One management request, as the model reads it.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    query: Vec<(String, String)>,
    body: &'a Value,
    /// The bearer token, if any.
    bearer: Option<&'a str>,
}

impl Call<'_> {
    /// The first value of a query parameter.
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Management {
    fn account(&self, id: &str) -> Option<&MockAccount> {
        self.accounts.iter().find(|a| a.id == id)
    }

    fn known(&self, method: &Method, id: &str) -> Result<&MockAccount, Reply> {
        self.account(id).ok_or_else(|| unsupported(method, id))
    }

    fn known_mut(&mut self, method: &Method, id: &str) -> Result<&mut MockAccount, Reply> {
        self.accounts
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or_else(|| unsupported(method, id))
    }

    /// The first `fail_next` reply whose pattern `path` contains, removed.
    fn take_failure(&mut self, path: &str) -> Option<Reply> {
        let at = self
            .fail_next
            .iter()
            .position(|(pattern, _)| path.contains(pattern.as_str()))?;
        Some(self.fail_next.remove(at).1)
    }

    /// A management route's 200 body, or the error it gets.
    fn answer(&mut self, route: &Route, call: &Call<'_>) -> Result<Value, Reply> {
        let method = call.method;
        match route {
            Route::DebugToken if *method == Method::GET => self.debug_token(call),
            Route::Account(id) if *method == Method::GET => {
                let account = self.known(method, id)?;
                Ok(select(account_json(account), call.param("fields")))
            }
            Route::Numbers(waba) if *method == Method::GET => {
                let items = self.known(method, waba)?.numbers.iter().map(number_json);
                self.page(items.collect(), call)
            }
            Route::Subscription(waba) => {
                let account = self.known_mut(method, waba)?;
                match *method {
                    Method::GET => {
                        let apps: Vec<Value> = account
                            .subscribed
                            .then(|| {
                                json!({
                                    "whatsapp_business_api_data": {
                                        "id": MOCK_APP_ID,
                                        "name": MOCK_APP_NAME,
                                    }
                                })
                            })
                            .into_iter()
                            .collect();
                        Ok(json!({ "data": apps }))
                    }
                    Method::POST => {
                        account.subscribed = true;
                        Ok(json!({ "success": true }))
                    }
                    Method::DELETE => {
                        account.subscribed = false;
                        Ok(json!({ "success": true }))
                    }
                    _ => Err(unsupported(method, waba)),
                }
            }
            Route::Templates(waba) => match *method {
                Method::GET => {
                    let items = self
                        .known(method, waba)?
                        .templates
                        .iter()
                        .map(template_json);
                    self.page(items.collect(), call)
                }
                Method::POST => self.create_template(waba, call),
                Method::DELETE => self.delete_template(waba, call),
                _ => Err(unsupported(method, waba)),
            },
            _ => Err(unsupported(method, route.object())),
        }
    }

    fn debug_token(&self, call: &Call<'_>) -> Result<Value, Reply> {
        let token = call
            .param("input_token")
            .ok_or_else(|| missing("input_token"))?;
        Ok(match self.grants.get(token) {
            Some(ids) => json!({
                "data": {
                    "app_id": MOCK_APP_ID,
                    "type": "SYSTEM_USER",
                    "application": MOCK_APP_NAME,
                    "is_valid": true,
                    "scopes": [SCOPE_MANAGEMENT, SCOPE_MESSAGING],
                    "granular_scopes": [
                        { "scope": SCOPE_MANAGEMENT, "target_ids": ids },
                        { "scope": SCOPE_MESSAGING, "target_ids": ids },
                    ],
                }
            }),
            None => json!({
                "data": {
                    "app_id": MOCK_APP_ID,
                    "is_valid": false,
                    "scopes": [],
                    "granular_scopes": [],
                    "error": {
                        "code": 190,
                        "message": "Invalid OAuth access token - Cannot parse access token",
                    },
                }
            }),
        })
    }

    /// One page of `items` for the request's `limit` and `after`.
    fn page(&self, items: Vec<Value>, call: &Call<'_>) -> Result<Value, Reply> {
        let limit = match call.param("limit") {
            None => self.page_size,
            Some(limit) => limit.parse::<usize>().map_err(|_| {
                Reply::invalid_parameter(&format!("limit must be a number, not {limit:?}"))
            })?,
        };
        let size = limit.min(self.page_size).max(1);
        let start = match call.param("after") {
            None => 0,
            Some(after) => decode_cursor(after)
                .ok_or_else(|| Reply::invalid_parameter(&format!("Invalid cursor {after:?}")))?
                .saturating_add(1),
        };
        let total = items.len();
        let fields = call.param("fields");
        let data: Vec<Value> = items
            .into_iter()
            .skip(start)
            .take(size)
            .map(|item| select(item, fields))
            .collect();
        if data.is_empty() {
            return Ok(json!({ "data": [] }));
        }
        let last = start + data.len() - 1;
        let mut paging = Map::new();
        paging.insert(
            "cursors".into(),
            json!({ "before": cursor(start), "after": cursor(last) }),
        );
        if last + 1 < total {
            paging.insert("next".into(), Value::String(self.next_url(call, last)));
        }
        Ok(json!({ "data": data, "paging": paging }))
    }

    /// The next page's absolute URL, as Meta writes it (with the token in it).
    fn next_url(&self, call: &Call<'_>, last: usize) -> String {
        let after = cursor(last);
        let Ok(mut url) = reqwest::Url::parse(&format!("{}{}", self.base_url, call.path)) else {
            return format!("{}{}?after={after}", self.base_url, call.path);
        };
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(token) = call.bearer {
                pairs.append_pair("access_token", token);
            }
            for (name, value) in &call.query {
                if name != "after" && name != "access_token" {
                    pairs.append_pair(name, value);
                }
            }
            pairs.append_pair("after", &after);
        }
        url.to_string()
    }

    fn create_template(&mut self, waba: &str, call: &Call<'_>) -> Result<Value, Reply> {
        self.known(call.method, waba)?;
        let field = |name: &str| {
            call.body
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| missing(name))
        };
        let name = field("name")?;
        let language = field("language")?;
        let category = field("category")?;
        let components = match call.body.get("components") {
            Some(components @ Value::Array(_)) => components.clone(),
            _ => return Err(missing("components")),
        };
        if self
            .known(call.method, waba)?
            .template(&name, &language)
            .is_some()
        {
            return Err(Reply::invalid_parameter(&format!(
                "Template name already exists: {name} already has {language} content"
            )));
        }
        let id = self.fresh_template_id();
        self.known_mut(call.method, waba)?
            .templates
            .push(MockTemplate {
                id: id.clone(),
                name,
                language,
                category: category.clone(),
                status: "PENDING".into(),
                quality: None,
                components,
            });
        Ok(json!({ "id": id, "status": "PENDING", "category": category }))
    }

    fn delete_template(&mut self, waba: &str, call: &Call<'_>) -> Result<Value, Reply> {
        let account = self.known_mut(call.method, waba)?;
        let name = call.param("name").ok_or_else(|| missing("name"))?;
        let hsm_id = call.param("hsm_id");
        let before = account.templates.len();
        account
            .templates
            .retain(|t| !(t.name == name && hsm_id.is_none_or(|id| t.id == id)));
        if account.templates.len() == before {
            let which = hsm_id.map_or(String::new(), |id| format!(" with id {id}"));
            return Err(Reply::invalid_parameter(&format!(
                "Message template not found: {name}{which}"
            )));
        }
        Ok(json!({ "success": true }))
    }

    /// A template id no account uses yet.
    fn fresh_template_id(&mut self) -> String {
        loop {
            let id = self.next_template_id.to_string();
            self.next_template_id += 1;
            let used = self
                .accounts
                .iter()
                .any(|a| a.templates.iter().any(|t| t.id == id));
            if !used {
                return id;
            }
        }
    }
}

/// Meta's answer for an unknown object (or a method it does not take): 400, code 100.
fn unsupported(method: &Method, id: &str) -> Reply {
    let message = format!(
        "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due \
         to missing permissions, or does not support this operation. Please read the Graph \
         API documentation at https://developers.facebook.com/docs/graph-api",
        method.as_str().to_ascii_lowercase()
    );
    Reply::ErrorWithMessage {
        status: 400,
        code: 100,
        details: message.clone(),
        message,
    }
}

/// A required parameter left out: 400, code 100.
fn missing(name: &str) -> Reply {
    let message = format!("(#100) The parameter {name} is required");
    Reply::ErrorWithMessage {
        status: 400,
        code: 100,
        details: message.clone(),
        message,
    }
}

fn account_json(account: &MockAccount) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(account.id));
    v.insert("name".into(), json!(account.name));
    if let Some(portfolio) = &account.portfolio {
        v.insert(
            "owner_business_info".into(),
            json!({ "id": portfolio, "name": format!("Portfolio {portfolio}") }),
        );
    }
    Value::Object(v)
}

fn number_json(number: &MockNumber) -> Value {
    json!({
        "id": number.id,
        "display_phone_number": number.display_phone_number,
        "verified_name": number.verified_name,
        "quality_rating": number.quality_rating,
        "throughput": { "level": number.throughput_level },
        "messaging_limit_tier": number.messaging_limit_tier,
    })
}

fn template_json(template: &MockTemplate) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(template.id));
    v.insert("name".into(), json!(template.name));
    v.insert("language".into(), json!(template.language));
    v.insert("category".into(), json!(template.category));
    v.insert("status".into(), json!(template.status));
    if let Some(score) = &template.quality {
        v.insert("quality_score".into(), json!({ "score": score }));
    }
    v.insert("components".into(), template.components.clone());
    Value::Object(v)
}

/// `item` with only the `fields` asked for (and `id`); all of it without `fields`.
fn select(item: Value, fields: Option<&str>) -> Value {
    let (Some(fields), Value::Object(map)) = (fields, &item) else {
        return item;
    };
    let wanted = field_names(fields);
    Value::Object(
        map.iter()
            .filter(|(name, _)| *name == "id" || wanted.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

/// The top-level names of a `fields` list (`a,b{c,d}` → `a`, `b`).
fn field_names(fields: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in fields.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                names.push(fields.get(start..at).unwrap_or(""));
                start = at + 1;
            }
            _ => {}
        }
    }
    names.push(fields.get(start..).unwrap_or(""));
    names
        .into_iter()
        .map(|f| f.split('{').next().unwrap_or(f).trim())
        .filter(|f| !f.is_empty())
        .collect()
}

/// An opaque paging cursor for the item at `index`.
fn cursor(index: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("mock-cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("mock-cursor:")?.parse().ok()
}

/// A query string's pairs, decoded.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Vec::new();
    };
    match reqwest::Url::parse(&format!("http://mock/?{query}")) {
        Ok(url) => url
            .query_pairs()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
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
        Reply::ErrorWithMessage {
            status,
            code,
            message,
            details,
        } => (
            *status,
            None,
            json_response(*status, graph_error(*code, message, details)),
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

#[cfg(test)]
mod tests {
    use super::*;

    const WABA: &str = "100200300";

    /// One call to the mock, with a bearer token: the status and the JSON body.
    async fn call(
        mock: &MockGraph,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path_and_query}", mock.base_url()))
            .bearer_auth("tok");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the mock answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON answer");
        (status, body)
    }

    async fn get(mock: &MockGraph, path_and_query: &str) -> (u16, Value) {
        call(mock, reqwest::Method::GET, path_and_query, None).await
    }

    async fn send(mock: &MockGraph, to: &str) -> (u16, Value) {
        let body = json!({
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": { "body": "hi" },
        });
        call(
            mock,
            reqwest::Method::POST,
            "/v21.0/555/messages",
            Some(body),
        )
        .await
    }

    fn error_code(body: &Value) -> Option<i64> {
        body.pointer("/error/code").and_then(Value::as_i64)
    }

    fn ids(body: &Value) -> Vec<String> {
        body["data"]
            .as_array()
            .expect("a data list")
            .iter()
            .map(|item| item["id"].as_str().expect("an id").to_string())
            .collect()
    }

    fn account() -> MockAccount {
        MockAccount::new(WABA, "Test WABA")
            .with_portfolio("portfolio-1")
            .with_numbers([
                MockNumber::new("n1", "+1 555-000-0001"),
                MockNumber::new("n2", "+1 555-000-0002"),
                MockNumber::new("n3", "+1 555-000-0003"),
            ])
            .with_templates([
                MockTemplate::approved("t1", "welcome", "en_US"),
                MockTemplate::approved("t2", "welcome", "es"),
                MockTemplate::new("t3", "promo", "en_US", "MARKETING", "REJECTED"),
            ])
    }

    const NUMBER_FIELDS: &str =
        "id,display_phone_number,verified_name,quality_rating,throughput,messaging_limit_tier";

    #[tokio::test]
    async fn numbers_are_paged_with_opaque_cursors() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        let path = format!("/v21.0/{WABA}/phone_numbers?fields={NUMBER_FIELDS}&limit=100");

        let (status, first) = get(&mock, &path).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(ids(&first), ["n1", "n2"]);
        assert_eq!(
            first["data"][0],
            json!({
                "id": "n1",
                "display_phone_number": "+1 555-000-0001",
                "verified_name": MOCK_VERIFIED_NAME,
                "quality_rating": "GREEN",
                "throughput": { "level": "STANDARD" },
                "messaging_limit_tier": "TIER_1K",
            })
        );
        let after = first["paging"]["cursors"]["after"]
            .as_str()
            .expect("an after cursor");
        assert!(first["paging"]["cursors"]["before"].is_string());
        assert!(
            after.parse::<usize>().is_err(),
            "opaque, not an index: {after}"
        );
        let next = first["paging"]["next"].as_str().expect("a next page");
        let next = reqwest::Url::parse(next).expect("an absolute URL");
        let pairs: HashMap<String, String> = next.query_pairs().into_owned().collect();
        assert_eq!(next.path(), format!("/v21.0/{WABA}/phone_numbers"));
        assert_eq!(pairs.get("after").map(String::as_str), Some(after));
        assert_eq!(pairs.get("access_token").map(String::as_str), Some("tok"));

        let (status, second) = get(&mock, &format!("{path}&after={after}")).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(ids(&second), ["n3"]);
        assert!(second["paging"]["cursors"]["after"].is_string());
        assert!(second["paging"].get("next").is_none(), "{second}");

        // Past the end: an empty page without paging.
        let last = second["paging"]["cursors"]["after"].as_str().unwrap_or("");
        let (_, past) = get(&mock, &format!("{path}&after={last}")).await;
        assert_eq!(past, json!({ "data": [] }));

        // A smaller limit wins over the page size; `fields` is honoured.
        let (_, one) = get(
            &mock,
            &format!("/v21.0/{WABA}/phone_numbers?fields=display_phone_number&limit=1"),
        )
        .await;
        assert_eq!(
            one["data"],
            json!([{ "id": "n1", "display_phone_number": "+1 555-000-0001" }])
        );

        // A bigger page size: one page, no `next`.
        mock.set_page_size(10);
        let (_, all) = get(&mock, &path).await;
        assert_eq!(ids(&all), ["n1", "n2", "n3"]);
        assert!(all["paging"].get("next").is_none());

        let (status, bad) = get(&mock, &format!("{path}&after=garbage")).await;
        assert_eq!((status, error_code(&bad)), (400, Some(100)));
    }

    #[tokio::test]
    async fn debug_token_reports_the_grant() {
        let mock = MockGraph::start().await;
        mock.grant("tok", &[WABA, "999"]);

        let (status, body) = get(&mock, "/v21.0/debug_token?input_token=tok").await;
        assert_eq!(status, 200);
        let data = &body["data"];
        assert_eq!(data["app_id"], MOCK_APP_ID);
        assert_eq!(data["type"], "SYSTEM_USER");
        assert_eq!(data["is_valid"], true);
        assert_eq!(data["scopes"], json!([SCOPE_MANAGEMENT, SCOPE_MESSAGING]));
        assert_eq!(
            data["granular_scopes"],
            json!([
                { "scope": SCOPE_MANAGEMENT, "target_ids": [WABA, "999"] },
                { "scope": SCOPE_MESSAGING, "target_ids": [WABA, "999"] },
            ])
        );

        let (status, body) = get(&mock, "/v21.0/debug_token?input_token=other").await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["is_valid"], false);
        assert_eq!(body["data"]["scopes"], json!([]));
        assert_eq!(body["data"]["granular_scopes"], json!([]));

        let (status, body) = get(&mock, "/v21.0/debug_token").await;
        assert_eq!((status, error_code(&body)), (400, Some(100)));
    }

    #[tokio::test]
    async fn account_fields_and_the_phone_lookup_fallthrough() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        mock.add_account(MockAccount::new("200", "No portfolio"));

        let (status, body) = get(
            &mock,
            &format!("/v21.0/{WABA}?fields=id,name,owner_business_info"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], WABA);
        assert_eq!(body["name"], "Test WABA");
        assert_eq!(body["owner_business_info"]["id"], "portfolio-1");
        assert!(body["owner_business_info"]["name"].is_string());

        let (_, body) = get(&mock, "/v21.0/200?fields=id,name,owner_business_info").await;
        assert_eq!(body, json!({ "id": "200", "name": "No portfolio" }));

        // Not an account: the phone number lookup, as before.
        let (status, body) = get(&mock, "/v21.0/555").await;
        assert_eq!(status, 200);
        assert_eq!(body["display_phone_number"], MOCK_DISPLAY_NUMBER);
        assert_eq!(body["id"], "555");

        // An unknown account on a management edge.
        for path in ["phone_numbers", "subscribed_apps", "message_templates"] {
            let (status, body) = get(&mock, &format!("/v21.0/404/{path}")).await;
            assert_eq!((status, error_code(&body)), (400, Some(100)), "{path}");
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.starts_with("Unsupported get request. Object with ID '404'"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn subscribe_and_unsubscribe() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        let path = format!("/v21.0/{WABA}/subscribed_apps");

        assert_eq!(get(&mock, &path).await, (200, json!({ "data": [] })));
        let ok = (200, json!({ "success": true }));
        assert_eq!(call(&mock, reqwest::Method::POST, &path, None).await, ok);
        assert_eq!(mock.account_state(WABA).map(|a| a.subscribed), Some(true));
        let (_, body) = get(&mock, &path).await;
        assert_eq!(
            body["data"],
            json!([{ "whatsapp_business_api_data": { "id": MOCK_APP_ID, "name": MOCK_APP_NAME } }])
        );
        assert_eq!(call(&mock, reqwest::Method::DELETE, &path, None).await, ok);
        assert_eq!(mock.account_state(WABA).map(|a| a.subscribed), Some(false));
        assert_eq!(get(&mock, &path).await, (200, json!({ "data": [] })));
        assert!(mock.account_state("404").is_none());
    }

    #[tokio::test]
    async fn templates_create_list_duplicate_delete() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        let path = format!("/v21.0/{WABA}/message_templates");
        let fields = "id,name,language,category,status,quality_score,components";
        let list = format!("{path}?fields={fields}&limit=100");

        let (_, first) = get(&mock, &list).await;
        assert_eq!(ids(&first), ["t1", "t2"]);
        assert_eq!(
            first["data"][0]["quality_score"],
            json!({ "score": "GREEN" })
        );
        assert_eq!(first["data"][0]["status"], "APPROVED");
        let after = first["paging"]["cursors"]["after"].as_str().unwrap_or("");
        let (_, second) = get(&mock, &format!("{list}&after={after}")).await;
        assert_eq!(ids(&second), ["t3"]);
        assert!(second["data"][0].get("quality_score").is_none());
        assert!(second["paging"].get("next").is_none());

        let components = json!([{ "type": "BODY", "text": "Order {{1}} shipped" }]);
        let create = json!({
            "name": "shipped",
            "language": "en_US",
            "category": "UTILITY",
            "components": components,
        });
        let (status, created) =
            call(&mock, reqwest::Method::POST, &path, Some(create.clone())).await;
        assert_eq!(status, 200, "{created}");
        let id = created["id"].as_str().expect("an id").to_string();
        assert_eq!(created["status"], "PENDING");
        assert_eq!(created["category"], "UTILITY");
        let state = mock.account_state(WABA).expect("the account");
        let template = state.template("shipped", "en_US").expect("created");
        assert_eq!(template.id, id);
        assert_eq!(template.status, "PENDING");
        assert_eq!(template.components, components);

        let (status, duplicate) = call(&mock, reqwest::Method::POST, &path, Some(create)).await;
        assert_eq!((status, error_code(&duplicate)), (400, Some(100)));
        let details = duplicate["error"]["error_data"]["details"]
            .as_str()
            .unwrap_or("");
        assert!(
            details.contains("Template name already exists"),
            "{details}"
        );

        let incomplete = json!({ "name": "x", "language": "en_US", "components": [] });
        let (status, body) = call(&mock, reqwest::Method::POST, &path, Some(incomplete)).await;
        assert_eq!((status, error_code(&body)), (400, Some(100)));

        // One language by id, then every language by name.
        let ok = (200, json!({ "success": true }));
        assert_eq!(
            call(
                &mock,
                reqwest::Method::DELETE,
                &format!("{path}?name=welcome&hsm_id=t2"),
                None
            )
            .await,
            ok
        );
        let names = |a: MockAccount| a.templates.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            mock.account_state(WABA).map(names),
            Some(vec!["t1".to_string(), "t3".into(), id.clone()])
        );
        mock.add_account(account());
        assert_eq!(
            call(
                &mock,
                reqwest::Method::DELETE,
                &format!("{path}?name=welcome"),
                None
            )
            .await,
            ok
        );
        assert_eq!(
            mock.account_state(WABA).map(names),
            Some(vec!["t3".to_string()])
        );
        let (status, body) = call(
            &mock,
            reqwest::Method::DELETE,
            &format!("{path}?name=welcome"),
            None,
        )
        .await;
        assert_eq!((status, error_code(&body)), (400, Some(100)));
        let (status, body) = call(&mock, reqwest::Method::DELETE, &path, None).await;
        assert_eq!((status, error_code(&body)), (400, Some(100)));
    }

    #[tokio::test]
    async fn fail_next_answers_each_error_once() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        let path = format!("/v21.0/{WABA}/phone_numbers");
        let cases = [
            (Reply::token_expired(), 401, 190, "Session has expired"),
            (Reply::permission_denied(), 403, 200, "Permissions error"),
            (
                Reply::invalid_parameter("bad"),
                400,
                100,
                "Invalid parameter",
            ),
        ];
        for (reply, status, code, message) in cases {
            mock.fail_next("phone_numbers", reply.clone());
            let (got, body) = get(&mock, &path).await;
            assert_eq!((got, error_code(&body)), (status, Some(code)), "{body}");
            assert_eq!(body["error"]["type"], "OAuthException");
            let text = body["error"]["message"].as_str().unwrap_or("");
            assert!(text.contains(message), "{text}");
            // Consumed: the next call is answered normally.
            let (got, body) = get(&mock, &path).await;
            assert_eq!(got, 200, "{body}");
            let requests = mock.requests();
            assert_eq!(requests[requests.len() - 2].reply, reply);
        }

        // Queued per pattern, in order; another path is not affected.
        mock.fail_next("subscribed_apps", Reply::token_expired());
        mock.fail_next("subscribed_apps", Reply::permission_denied());
        let subscribe = format!("/v21.0/{WABA}/subscribed_apps");
        assert_eq!(get(&mock, &path).await.0, 200);
        let (status, _) = call(&mock, reqwest::Method::POST, &subscribe, None).await;
        assert_eq!(status, 401);
        assert_eq!(get(&mock, &subscribe).await.0, 403);
        assert_eq!(get(&mock, &subscribe).await.0, 200);
        // A failed call leaves the model alone.
        assert_eq!(mock.account_state(WABA).map(|a| a.subscribed), Some(false));
    }

    #[tokio::test]
    async fn fail_recipient_fails_every_send_to_it() {
        let mock = MockGraph::start().await;
        mock.fail_recipient("15550001111", Reply::marketing_opted_out());
        mock.push(Reply::OkWithId("wamid.scripted".into()));

        for _ in 0..2 {
            let (status, body) = send(&mock, "15550001111").await;
            assert_eq!((status, error_code(&body)), (400, Some(131050)), "{body}");
        }
        // The script was left for the next other send.
        let (status, body) = send(&mock, "15550002222").await;
        assert_eq!(status, 200);
        assert_eq!(body["messages"][0]["id"], "wamid.scripted");
        let (status, body) = send(&mock, "15550002222").await;
        assert_eq!(status, 200);
        assert_eq!(body["messages"][0]["id"], "wamid.mock1");
        let requests = mock.requests();
        assert_eq!(requests[0].reply, Reply::marketing_opted_out());
        assert_eq!(requests[0].to(), Some("15550001111"));
    }

    #[tokio::test]
    async fn management_calls_leave_the_script_alone() {
        let mock = MockGraph::start().await;
        mock.add_account(account());
        mock.grant("tok", &[WABA]);
        mock.push(Reply::Error {
            status: 401,
            code: 190,
            details: "scripted".into(),
        });
        mock.push(Reply::OkWithId("wamid.second".into()));

        let templates = format!("/v21.0/{WABA}/message_templates");
        assert_eq!(
            get(&mock, "/v21.0/debug_token?input_token=tok").await.0,
            200
        );
        assert_eq!(
            get(&mock, &format!("/v21.0/{WABA}?fields=id,name")).await.0,
            200
        );
        assert_eq!(
            get(&mock, &format!("/v21.0/{WABA}/phone_numbers")).await.0,
            200
        );
        assert_eq!(get(&mock, &templates).await.0, 200);
        let subscribe = format!("/v21.0/{WABA}/subscribed_apps");
        assert_eq!(
            call(&mock, reqwest::Method::POST, &subscribe, None).await.0,
            200
        );
        assert_eq!(get(&mock, "/v21.0/404/phone_numbers").await.0, 400);

        // The verify GET still takes the first scripted reply, the send the second.
        let (status, body) = get(&mock, "/v21.0/555").await;
        assert_eq!((status, error_code(&body)), (401, Some(190)));
        let (status, body) = send(&mock, "15550002222").await;
        assert_eq!(status, 200);
        assert_eq!(body["messages"][0]["id"], "wamid.second");

        // Every request was recorded, the query too.
        let requests = mock.requests();
        assert_eq!(requests.len(), 8, "{}", describe(&requests));
        assert_eq!(
            requests[0].query_param("input_token").as_deref(),
            Some("tok")
        );
        assert_eq!(requests[0].authorization(), Some("Bearer tok"));
        assert_eq!(requests[5].status, Some(400));
    }
}
