//! The admin CLI: `plugboard plugin|endpoint|conversation|account|template|campaign …`, a
//! pure HTTP client of a running host's admin API (`/admin/v1`). It owns the command-line
//! shapes of those groups, finding the host and its token, turning arguments into requests
//! (`endpoint set KEY=VALUE…` into a JSON merge patch, a campaign's recipients file into a
//! CSV upload or a JSON body) and printing the answers; the host does everything else. The
//! WhatsApp Business groups (accounts, templates, campaigns) are in [`business`].
//!
//! Data flows one way: arguments (and a file or stdin) → a [`Call`] (method, path, query,
//! body) and a [`View`] (how to print the answer) → a [`Target`] (base URL and token: the
//! flags, else `$PLUGBOARD_ADMIN_URL` / `$PLUGBOARD_ADMIN_TOKEN`, else the host's config file)
//! → one reqwest request on a small current-thread runtime → the JSON answer, printed as is
//! with `--json` or as a table or summary → an exit code. `campaign watch` repeats its
//! request on one runtime until the campaign is over. The token only ever goes into the
//! `Authorization` header (marked sensitive); it is never printed, and neither is the Meta
//! token `account setup` sends.
//!
//! Exit codes: 0 success; 1 the host refused the request (4xx; `error: <code>: <message>` from
//! the API's error JSON on stderr), or `endpoint verify` found problems; 2 usage errors (clap,
//! a malformed `KEY=VALUE`, an unreadable file or config); 3 the host cannot be reached, or
//! answered 5xx or something that is not JSON; 4 unauthorized (401, or no token to send).

use std::fmt;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};

use crate::config::ServeConfig;

mod business;

pub use business::{AccountCommand, CampaignCommand, SecretArg, TemplateCommand};

/// The exit codes, as every admin command's `--help` shows them.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 the host refused the request (4xx: the \
API's error code and message on stderr) or verification found problems; 2 usage errors; 3 the \
host cannot be reached or answered 5xx; 4 unauthorized (401, or no token).";

/// Where the admin API is when neither the flags, the environment nor a config say.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The API's path prefix, below the base URL.
const API_PREFIX: [&str; 2] = ["admin", "v1"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Generous: installing a plugin compiles it on the host.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a non-JSON error body is shown.
const BODY_EXCERPT: usize = 200;
/// How much of a message text a table shows.
const TEXT_EXCERPT: usize = 40;

/// How to reach the host, and how to print; accepted before or after the subcommand.
#[derive(Args, Clone)]
pub struct Connection {
    /// The host's base URL [default: $PLUGBOARD_ADMIN_URL, else http://{listen} from the
    /// config, else http://127.0.0.1:8080].
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// The admin token [default: $PLUGBOARD_ADMIN_TOKEN, else the config's `admin_token`].
    /// Prefer the variable: arguments are visible to other local users.
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    /// The host's config file, for the URL and token defaults [default: $PLUGBOARD_CONFIG,
    /// else ./plugboard.toml if present].
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print the API's JSON answer as is (pretty) instead of a table or summary.
    #[arg(long, global = true)]
    json: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("config", &self.config)
            .field("json", &self.json)
            .finish()
    }
}

/// `plugboard plugin …`
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Install an adapter component (.wasm) on the host.
    #[command(after_help = EXIT_CODES)]
    Install {
        /// The component file; `-` reads stdin.
        file: PathBuf,
        /// The name to install it under [default: the host's choice, from the plugin].
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// The plugin's memory limit, in MiB.
        #[arg(long, value_name = "M")]
        max_memory_mb: Option<u64>,
        /// The deadline of one call into the plugin, in milliseconds.
        #[arg(long, value_name = "T")]
        call_timeout_ms: Option<u64>,
        /// Replace an installed plugin of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// List the installed plugins, the built-in ones included.
    #[command(after_help = EXIT_CODES)]
    List,
    /// Show one plugin: version, contract version, limits, settings, the endpoints using it.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The plugin's name.
        name: String,
    },
    /// Remove a plugin (refused while an endpoint uses it, and for built-in plugins).
    #[command(after_help = EXIT_CODES)]
    Remove {
        /// The plugin's name.
        name: String,
    },
}

/// `plugboard endpoint …`
#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Create an endpoint from a JSON spec (the keys of a TOML `[[endpoints]]` table).
    #[command(after_help = EXIT_CODES)]
    Create {
        /// The spec file; `-` reads stdin.
        #[arg(long, value_name = "SPEC.json")]
        file: PathBuf,
    },
    /// List the endpoints with their state and health.
    #[command(after_help = EXIT_CODES)]
    List,
    /// Show one endpoint: state, health, callback URL, its spec (secrets masked).
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The endpoint's id.
        id: String,
    },
    /// Change an endpoint's settings (a JSON merge patch of its spec).
    ///
    /// Each KEY=VALUE becomes one entry of the patch. VALUE is taken as JSON when it parses
    /// (60, true, null to remove the setting, {"a":1}, ["x"], "quoted"), else as a string;
    /// dotted keys nest: handover.mute_for_secs=60.
    #[command(after_help = EXIT_CODES)]
    Set {
        /// The endpoint's id.
        id: String,
        /// The settings to change, e.g. message_delay_ms=250 handover.mute_for_secs=60.
        #[arg(value_name = "KEY=VALUE", required = true, num_args = 1..)]
        settings: Vec<String>,
    },
    /// Enable an endpoint: it takes webhooks and answers again.
    #[command(after_help = EXIT_CODES)]
    Enable {
        /// The endpoint's id.
        id: String,
    },
    /// Disable an endpoint: it stops answering until enabled.
    #[command(after_help = EXIT_CODES)]
    Disable {
        /// The endpoint's id.
        id: String,
    },
    /// Check an endpoint's credentials against the Graph API; exits 1 when there are problems.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The endpoint's id.
        id: String,
    },
    /// Delete an endpoint.
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// The endpoint's id.
        id: String,
    },
}

/// `plugboard conversation …`
#[derive(Subcommand, Debug)]
pub enum ConversationCommand {
    /// List an endpoint's conversations, most recent first.
    #[command(after_help = EXIT_CODES)]
    List {
        /// The endpoint's id.
        endpoint: String,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show one conversation and its transcript.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The endpoint's id.
        endpoint: String,
        /// The user's WhatsApp id (the number, digits only), as `conversation list` shows it.
        user: String,
    },
}

/// One admin command line, as dispatched from [`crate::cli`].
pub enum Group {
    Plugin(PluginCommand),
    Endpoint(EndpointCommand),
    Conversation(ConversationCommand),
    Account(AccountCommand),
    Template(TemplateCommand),
    Campaign(CampaignCommand),
}

/// Runs one admin command against the host: the answer on `out`, `error: …` on `err`.
/// `input` stands in for stdin (`-` as a file); `terminal` says whether the session is a
/// terminal's (`campaign watch` then draws its progress bar on stdout instead of printing
/// lines on `out`).
pub fn run(
    connection: &Connection,
    group: Group,
    input: &mut dyn BufRead,
    terminal: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    match execute(connection, group, input, terminal, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn execute(
    connection: &Connection,
    group: Group,
    input: &mut dyn BufRead,
    terminal: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (call, view) = match group {
        Group::Plugin(command) => plan_plugin(command, input)?,
        Group::Endpoint(command) => plan_endpoint(command, input)?,
        Group::Conversation(command) => plan_conversation(command),
        Group::Account(command) => business::plan_account(command, env(business::META_TOKEN_ENV))?,
        Group::Template(command) => business::plan_template(command, input)?,
        // Not one request: polls until the campaign is over.
        Group::Campaign(CampaignCommand::Watch {
            endpoint,
            id,
            every_ms,
        }) => {
            let every = Duration::from_millis(every_ms);
            return business::watch(connection, &endpoint, id, every, terminal, out);
        }
        Group::Campaign(command) => business::plan_campaign(command)?,
    };
    let target = Target::resolve(connection)?;
    let answer = send(&target, call)?;
    show(&view, answer.as_ref(), connection.json, out)
}

/// Why a command failed; each kind has its exit code.
#[derive(Debug)]
enum AdminError {
    /// A 4xx other than 401: the API's error code and message.
    Refused {
        code: String,
        message: String,
    },
    /// Verification problems, or the answer could not be written.
    Failed(String),
    Usage(String),
    /// Not reached, timed out, 5xx, or not JSON.
    Unreachable(String),
    Unauthorized(String),
}

impl AdminError {
    fn exit_code(&self) -> u8 {
        match self {
            AdminError::Refused { .. } | AdminError::Failed(_) => 1,
            AdminError::Usage(_) => 2,
            AdminError::Unreachable(_) => 3,
            AdminError::Unauthorized(_) => 4,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Refused { code, message } => write!(f, "{code}: {message}"),
            AdminError::Failed(m)
            | AdminError::Usage(m)
            | AdminError::Unreachable(m)
            | AdminError::Unauthorized(m) => f.write_str(m),
        }
    }
}

fn usage(message: impl Into<String>) -> AdminError {
    AdminError::Usage(message.into())
}

// ---------------------------------------------------------------------------------------
// Planning: arguments → request and view.

/// One request to the admin API; `path` is below `/admin/v1`, one segment per element
/// (each percent-encoded on its own).
struct Call {
    method: Method,
    path: Vec<String>,
    query: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    Empty,
    Json(Value),
    Wasm(Vec<u8>),
    Csv(Vec<u8>),
}

impl Call {
    fn new(method: Method, path: &[&str]) -> Call {
        Call {
            method,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: Body::Empty,
        }
    }

    fn get(path: &[&str]) -> Call {
        Call::new(Method::GET, path)
    }

    fn post(path: &[&str]) -> Call {
        Call::new(Method::POST, path)
    }

    fn with_body(mut self, body: Body) -> Call {
        self.body = body;
        self
    }

    fn with_query(mut self, key: &'static str, value: Option<String>) -> Call {
        self.query.extend(value.map(|v| (key, v)));
        self
    }
}

/// How an answer is shown without `--json`.
enum View {
    Plugin,
    Plugins,
    Endpoint,
    Endpoints,
    Verify(String),
    Conversations,
    Transcript,
    Accounts,
    Account,
    Templates,
    Template,
    Campaigns,
    Campaign,
    OptOuts,
    /// A 204: this sentence.
    Done(String),
}

fn plan_plugin(
    command: PluginCommand,
    input: &mut dyn BufRead,
) -> Result<(Call, View), AdminError> {
    Ok(match command {
        PluginCommand::Install {
            file,
            name,
            max_memory_mb,
            call_timeout_ms,
            replace,
        } => {
            let call = Call::post(&["plugins"])
                .with_body(Body::Wasm(read_file(&file, input)?))
                .with_query("name", name)
                .with_query("max_memory_mb", max_memory_mb.map(|m| m.to_string()))
                .with_query("call_timeout_ms", call_timeout_ms.map(|t| t.to_string()))
                .with_query("replace", replace.then(|| "true".to_string()));
            (call, View::Plugin)
        }
        PluginCommand::List => (Call::get(&["plugins"]), View::Plugins),
        PluginCommand::Inspect { name } => (Call::get(&["plugins", &name]), View::Plugin),
        PluginCommand::Remove { name } => (
            Call::new(Method::DELETE, &["plugins", &name]),
            View::Done(format!("removed plugin {name}")),
        ),
    })
}

fn plan_endpoint(
    command: EndpointCommand,
    input: &mut dyn BufRead,
) -> Result<(Call, View), AdminError> {
    Ok(match command {
        EndpointCommand::Create { file } => {
            let spec = read_json(&file, input)?;
            let call = Call::post(&["endpoints"]).with_body(Body::Json(spec));
            (call, View::Endpoint)
        }
        EndpointCommand::List => (Call::get(&["endpoints"]), View::Endpoints),
        EndpointCommand::Show { id } => (Call::get(&["endpoints", &id]), View::Endpoint),
        EndpointCommand::Set { id, settings } => {
            let patch = merge_patch(&settings)?;
            let call = Call::new(Method::PATCH, &["endpoints", &id]).with_body(Body::Json(patch));
            (call, View::Endpoint)
        }
        EndpointCommand::Enable { id } => {
            (Call::post(&["endpoints", &id, "enable"]), View::Endpoint)
        }
        EndpointCommand::Disable { id } => {
            (Call::post(&["endpoints", &id, "disable"]), View::Endpoint)
        }
        EndpointCommand::Verify { id } => {
            let call = Call::post(&["endpoints", &id, "verify"]);
            (call, View::Verify(id))
        }
        EndpointCommand::Delete { id } => (
            Call::new(Method::DELETE, &["endpoints", &id]),
            View::Done(format!("deleted endpoint {id}")),
        ),
    })
}

fn plan_conversation(command: ConversationCommand) -> (Call, View) {
    match command {
        ConversationCommand::List { endpoint, limit } => {
            let call = Call::get(&["endpoints", &endpoint, "conversations"])
                .with_query("limit", limit.map(|n| n.to_string()));
            (call, View::Conversations)
        }
        ConversationCommand::Show { endpoint, user } => (
            Call::get(&["endpoints", &endpoint, "conversations", &user]),
            View::Transcript,
        ),
    }
}

/// The bytes of `file`, or of `input` for `-`.
fn read_file(file: &Path, input: &mut dyn BufRead) -> Result<Vec<u8>, AdminError> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        return Ok(bytes);
    }
    std::fs::read(file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))
}

fn read_json(file: &Path, input: &mut dyn BufRead) -> Result<Value, AdminError> {
    let bytes = read_file(file, input)?;
    let name = match file == Path::new("-") {
        true => "stdin".to_string(),
        false => file.display().to_string(),
    };
    serde_json::from_slice(&bytes).map_err(|e| usage(format!("{name}: not JSON: {e}")))
}

/// `KEY=VALUE…` as a JSON merge patch: values parsed as JSON when they parse, else strings;
/// dotted keys nest. Secret keys are always strings (`null` removes): a numeric token must
/// not become a number, which the host would refuse.
fn merge_patch(settings: &[String]) -> Result<Value, AdminError> {
    let mut patch = Map::new();
    for setting in settings {
        let (key, raw) = setting
            .split_once('=')
            .ok_or_else(|| usage(format!("`{setting}`: expected KEY=VALUE")))?;
        let path: Vec<&str> = key.split('.').collect();
        if path.iter().any(|part| part.trim().is_empty()) {
            return Err(usage(format!("`{setting}`: empty key")));
        }
        let secret = crate::config::SPEC_SECRETS.contains(&key);
        let value = match serde_json::from_str(raw) {
            Ok(value @ (Value::Null | Value::String(_))) => value,
            Ok(value) if !secret => value,
            _ => Value::String(raw.to_string()),
        };
        insert(&mut patch, &path, value).map_err(|m| usage(format!("`{setting}`: {m}")))?;
    }
    Ok(Value::Object(patch))
}

/// Puts `value` at `path` in `map`, creating the objects on the way.
fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".to_string());
    };
    let mut here = map;
    for part in parents {
        let slot = here
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        here = slot
            .as_object_mut()
            .ok_or_else(|| format!("`{part}` is already set to a value that is not an object"))?;
    }
    if here.contains_key(*last) {
        return Err(format!("`{last}` is set twice"));
    }
    here.insert(last.to_string(), value);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The host: where it is, and one request to it.

/// The admin API's base URL and the bearer token.
struct Target {
    base: Url,
    token: String,
}

impl Target {
    /// The flags, else the environment, else the config (loaded only when needed).
    fn resolve(connection: &Connection) -> Result<Target, AdminError> {
        let url = connection
            .url
            .clone()
            .or_else(|| env("PLUGBOARD_ADMIN_URL"));
        let token = connection
            .token
            .clone()
            .or_else(|| env("PLUGBOARD_ADMIN_TOKEN"));
        let config = match url.is_none() || token.is_none() {
            true => load_config(connection.config.as_deref())?,
            false => None,
        };
        let url = url
            .or_else(|| config.as_ref().map(|c| listen_url(c.listen)))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let token = token
            .or_else(|| {
                let secret = config.as_ref()?.admin_token.as_ref()?;
                Some(secret.expose().to_string())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AdminError::Unauthorized(
                    "no admin token: pass --token, set PLUGBOARD_ADMIN_TOKEN, or set \
                     admin_token in the host's config"
                        .to_string(),
                )
            })?;
        Ok(Target {
            base: parse_base(&url)?,
            token,
        })
    }

    /// The full URL of `call`.
    fn url(&self, call: &Call) -> Result<Url, AdminError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| usage(format!("--url {}: not a base URL", self.base)))?
            .pop_if_empty()
            .extend(API_PREFIX)
            .extend(&call.path);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        Ok(url)
    }
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `--config FILE`, else `$PLUGBOARD_CONFIG`, else `./plugboard.toml` if present, else none.
fn load_config(explicit: Option<&Path>) -> Result<Option<ServeConfig>, AdminError> {
    let path = explicit
        .map(Path::to_path_buf)
        .or_else(|| env("PLUGBOARD_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("plugboard.toml");
            local.is_file().then_some(local)
        });
    match path {
        Some(path) => ServeConfig::load(&path)
            .map(Some)
            .map_err(|e| usage(e.to_string())),
        None => Ok(None),
    }
}

/// Where a host listening on `listen` is reached from here: an unspecified address
/// (`0.0.0.0`, `[::]`) through the loopback.
fn listen_url(mut listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        match listen {
            SocketAddr::V4(_) => listen.set_ip(Ipv4Addr::LOCALHOST.into()),
            SocketAddr::V6(_) => listen.set_ip(Ipv6Addr::LOCALHOST.into()),
        }
    }
    format!("http://{listen}")
}

fn parse_base(url: &str) -> Result<Url, AdminError> {
    let parsed = Url::parse(url).map_err(|e| usage(format!("--url {url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(usage(format!("--url {url}: not an http(s) URL")));
    }
    Ok(parsed)
}

/// Sends `call` on a current-thread runtime of its own; the answer's JSON (`None` for an
/// empty body, like a 204).
fn send(target: &Target, call: Call) -> Result<Option<Value>, AdminError> {
    Session::new()?.send(target, call)
}

/// A current-thread runtime and an HTTP client, for one command's requests.
struct Session {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Session {
    fn new() -> Result<Session, AdminError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AdminError::Failed(format!("cannot start the async runtime: {e}")))?;
        let client = runtime.block_on(async {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
        });
        let client =
            client.map_err(|e| AdminError::Failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Session { runtime, client })
    }

    /// The answer's JSON (`None` for an empty body, like a 204).
    fn send(&self, target: &Target, call: Call) -> Result<Option<Value>, AdminError> {
        self.runtime.block_on(request(&self.client, target, call))
    }
}

async fn request(
    client: &reqwest::Client,
    target: &Target,
    call: Call,
) -> Result<Option<Value>, AdminError> {
    // `bearer_auth` marks the header sensitive; reqwest's errors carry the URL, not headers.
    let builder = client
        .request(call.method.clone(), target.url(&call)?)
        .bearer_auth(&target.token);
    let builder = match call.body {
        Body::Empty => builder,
        Body::Json(value) => builder.json(&value),
        Body::Wasm(bytes) => builder
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes),
        Body::Csv(bytes) => builder
            .header(reqwest::header::CONTENT_TYPE, "text/csv")
            .body(bytes),
    };
    let response = builder.send().await.map_err(unreachable)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unreachable)?;
    match status.is_success() {
        true => success(status, &bytes),
        false => Err(api_error(status, &bytes)),
    }
}

/// A transport failure, with its causes (`Connection refused`, a timeout).
fn unreachable(e: reqwest::Error) -> AdminError {
    let mut message = format!("cannot reach the host: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    AdminError::Unreachable(message)
}

fn success(status: StatusCode, body: &[u8]) -> Result<Option<Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        AdminError::Unreachable(format!(
            "the host answered {status} with a body that is not JSON: {e}"
        ))
    })
}

/// A non-2xx answer: the API's `{"error": {"code", "message"}}`, else the status and a
/// piece of the body.
fn api_error(status: StatusCode, body: &[u8]) -> AdminError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    let code = field("code").map_or_else(|| status.as_u16().to_string(), str::to_string);
    let message = field("message").map_or_else(|| body_excerpt(status, body), str::to_string);
    match status {
        StatusCode::UNAUTHORIZED => AdminError::Unauthorized(format!("{code}: {message}")),
        s if s.is_client_error() => AdminError::Refused { code, message },
        _ => AdminError::Unreachable(format!("{code}: {message}")),
    }
}

fn body_excerpt(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.is_empty() {
        true => status.canonical_reason().unwrap_or("no reason").to_string(),
        false => truncate(text, BODY_EXCERPT),
    }
}

// ---------------------------------------------------------------------------------------
// Printing.

fn show(
    view: &View,
    answer: Option<&Value>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let text = match (json, answer) {
        (true, Some(value)) => pretty(value),
        (true, None) => String::new(),
        (false, answer) => human(view, answer.unwrap_or(&Value::Null)),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| AdminError::Failed(format!("cannot write: {e}")))?;
    match view {
        View::Verify(id) => verified(id, answer),
        _ => Ok(()),
    }
}

fn pretty(value: &Value) -> String {
    // A `Value` always serializes.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("{text}\n")
}

/// `endpoint verify` succeeds only when the host said `"ok": true`.
fn verified(id: &str, answer: Option<&Value>) -> Result<(), AdminError> {
    let verify = answer.unwrap_or(&Value::Null);
    if verify.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let problems = items(verify, "problems").len();
    Err(AdminError::Failed(format!(
        "endpoint {id} failed verification ({problems} problem(s))"
    )))
}

fn human(view: &View, answer: &Value) -> String {
    let lines = match view {
        View::Plugin => plugin_summary(answer),
        View::Plugins => vec![plugin_table(items(answer, "plugins"))],
        View::Endpoint => endpoint_summary(answer),
        View::Endpoints => vec![endpoint_table(items(answer, "endpoints"))],
        View::Verify(_) => verify_summary(answer),
        View::Conversations => vec![conversation_table(items(answer, "conversations"))],
        View::Transcript => transcript(answer),
        View::Accounts => business::account_tables(items(answer, "accounts")),
        View::Account => business::account_summary(answer),
        View::Templates => vec![business::template_table(items(answer, "templates"))],
        View::Template => business::template_summary(answer),
        View::Campaigns => vec![business::campaign_table(items(answer, "campaigns"))],
        View::Campaign => business::campaign_summary(answer),
        View::OptOuts => vec![business::opt_out_table(items(answer, "opt_outs"))],
        View::Done(sentence) => vec![sentence.clone()],
    };
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn plugin_table(plugins: &[Value]) -> String {
    let rows = plugins
        .iter()
        .map(|p| {
            [
                "/name",
                "/version",
                "/wit_version",
                "/builtin",
                "/size_bytes",
                "/used_by",
            ]
            .iter()
            .map(|pointer| field(p, pointer))
            .collect()
        })
        .collect();
    table(
        &["NAME", "VERSION", "WIT", "BUILTIN", "SIZE", "USED BY"],
        rows,
    )
}

fn plugin_summary(plugin: &Value) -> Vec<String> {
    let mut lines = labelled(
        plugin,
        &[
            ("name", "/name"),
            ("version", "/version"),
            ("wit version", "/wit_version"),
            ("sha256", "/sha256"),
            ("builtin", "/builtin"),
            ("size bytes", "/size_bytes"),
            ("max memory mb", "/limits/max_memory_mb"),
            ("call timeout ms", "/limits/call_timeout_ms"),
            ("used by", "/used_by"),
        ],
    );
    lines.push(format!("installed: {}", when(plugin.get("installed_ms"))));
    lines.push("settings:".to_string());
    lines.extend(items(plugin, "settings").iter().map(setting_line));
    lines
}

fn setting_line(setting: &Value) -> String {
    let flag = |key: &str, word: &'static str| {
        (setting.get(key).and_then(Value::as_bool) == Some(true)).then_some(word)
    };
    let flags: Vec<&str> = [flag("secret", "secret"), flag("required", "required")]
        .into_iter()
        .flatten()
        .collect();
    let flags = match flags.is_empty() {
        true => String::new(),
        false => format!(" ({})", flags.join(", ")),
    };
    format!(
        "  {}{flags}: {}",
        field(setting, "/name"),
        field(setting, "/description")
    )
}

fn endpoint_table(endpoints: &[Value]) -> String {
    let rows = endpoints
        .iter()
        .map(|e| {
            vec![
                field(e, "/id"),
                field(e, "/state"),
                field(e, "/health/status"),
                field_or(e, "/plugin", "/spec/plugin"),
                field(e, "/display_phone_number"),
                field(e, "/callback_url"),
            ]
        })
        .collect();
    table(
        &["ID", "STATE", "HEALTH", "PLUGIN", "PHONE", "CALLBACK URL"],
        rows,
    )
}

fn endpoint_summary(endpoint: &Value) -> Vec<String> {
    let mut lines = labelled(
        endpoint,
        &[
            ("id", "/id"),
            ("state", "/state"),
            ("enabled", "/enabled"),
            ("health", "/health/status"),
            ("plugin", "/plugin"),
            ("callback url", "/callback_url"),
            ("verify token", "/verify_token"),
            ("phone number", "/display_phone_number"),
            ("wa.me link", "/wa_me_link"),
        ],
    );
    lines.extend(problem_lines(endpoint.pointer("/health/problems")));
    lines.push(format!(
        "last handshake: {}",
        when(endpoint.get("last_handshake_ms"))
    ));
    lines.push(format!(
        "last webhook: {}",
        when(endpoint.get("last_webhook_ms"))
    ));
    lines.push("spec:".to_string());
    if let Some(spec) = endpoint.get("spec") {
        flatten("", spec, &mut lines);
    }
    lines
}

/// `  key.sub = value` lines for every leaf of `value`, in key order.
fn flatten(prefix: &str, value: &Value, lines: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let key = match prefix.is_empty() {
                    true => key.clone(),
                    false => format!("{prefix}.{key}"),
                };
                flatten(&key, inner, lines);
            }
        }
        leaf => lines.push(format!("  {prefix} = {}", display(leaf))),
    }
}

fn verify_summary(verify: &Value) -> Vec<String> {
    let ok = verify.get("ok").and_then(Value::as_bool) == Some(true);
    let mut lines = vec![format!("ok: {ok}")];
    if let Some(phone) = verify.get("phone_number").filter(|p| !p.is_null()) {
        lines.extend(labelled(
            phone,
            &[
                ("phone number id", "/id"),
                ("phone number", "/display_phone_number"),
                ("verified name", "/verified_name"),
                ("quality rating", "/quality_rating"),
            ],
        ));
    }
    lines.extend(problem_lines(verify.get("problems")));
    lines
}

/// `problems:` and one `  - …` line each; nothing when there are none.
fn problem_lines(problems: Option<&Value>) -> Vec<String> {
    let problems = problems
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if problems.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["problems:".to_string()];
    lines.extend(problems.iter().map(|p| format!("  - {}", problem(p))));
    lines
}

/// `code: message` for a `{"code", "message"}` problem, else the value as it is.
fn problem(problem: &Value) -> String {
    match (problem.get("code"), problem.get("message")) {
        (Some(code), Some(message)) => format!("{}: {}", display(code), display(message)),
        _ => display(problem),
    }
}

fn conversation_table(conversations: &[Value]) -> String {
    let rows = conversations
        .iter()
        .map(|c| {
            vec![
                field(c, "/user"),
                last_message(c.get("last_message")),
                when(c.pointer("/last_message/at_ms")),
                open_or_closed(c.pointer("/window/open")),
                field(c, "/handover/active"),
                field(c, "/ai_enabled"),
            ]
        })
        .collect();
    table(
        &["USER", "LAST MESSAGE", "AT", "WINDOW", "HANDOVER", "AI"],
        rows,
    )
}

fn last_message(message: Option<&Value>) -> String {
    match message.filter(|m| !m.is_null()) {
        Some(m) => format!(
            "{} {}",
            arrow(m),
            truncate(&field(m, "/text"), TEXT_EXCERPT)
        ),
        None => "-".to_string(),
    }
}

fn open_or_closed(open: Option<&Value>) -> String {
    match open.and_then(Value::as_bool) {
        Some(true) => "open".to_string(),
        Some(false) => "closed".to_string(),
        None => "-".to_string(),
    }
}

fn transcript(conversation: &Value) -> Vec<String> {
    let mut lines = labelled(
        conversation,
        &[
            ("user", "/user"),
            ("window open", "/window/open"),
            ("handover", "/handover/active"),
            ("handover reason", "/handover/reason"),
            ("ai enabled", "/ai_enabled"),
        ],
    );
    lines.push(format!(
        "window open until: {}",
        when(conversation.pointer("/window/open_until_ms"))
    ));
    lines.push("transcript:".to_string());
    lines.extend(items(conversation, "transcript").iter().map(turn_line));
    lines
}

/// `  <time> > text [status] (error)` for one turn; `[kind]` when it has no text.
fn turn_line(turn: &Value) -> String {
    let text = match turn.get("text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => format!("[{}]", field(turn, "/kind")),
    };
    let mut line = format!("  {} {} {text}", when(turn.get("at_ms")), arrow(turn));
    if let Some(status) = turn.get("status").and_then(Value::as_str) {
        line.push_str(&format!(" [{status}]"));
    }
    if let Some(error) = turn.get("error").filter(|e| !e.is_null()) {
        line.push_str(&format!(" ({})", display(error)));
    }
    line
}

/// `<` for what the user sent, `>` for what went out.
fn arrow(message: &Value) -> &'static str {
    match message.get("direction").and_then(Value::as_str) {
        Some("in") => "<",
        Some("out") => ">",
        _ => "?",
    }
}

// ---------------------------------------------------------------------------------------
// Formatting helpers.

/// `label: value` lines for each (label, JSON pointer).
fn labelled(value: &Value, fields: &[(&str, &str)]) -> Vec<String> {
    fields
        .iter()
        .map(|(label, pointer)| format!("{label}: {}", field(value, pointer)))
        .collect()
}

/// The value at `pointer`, displayed; `-` when absent.
fn field(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .map_or_else(|| "-".to_string(), display)
}

/// The value at `pointer`, else at `fallback`, displayed.
fn field_or(value: &Value, pointer: &str, fallback: &str) -> String {
    match value.pointer(pointer).filter(|v| !v.is_null()) {
        Some(found) => display(found),
        None => field(value, fallback),
    }
}

/// Strings bare, arrays comma-separated, `-` for null and empty arrays, objects as JSON.
fn display(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn truncate(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    match first_line.chars().count() > max || first_line.len() < text.len() {
        true => format!(
            "{}…",
            first_line.chars().take(max).collect::<String>().trim_end()
        ),
        false => first_line.to_string(),
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SSZ`; `-` when absent.
fn when(ms: Option<&Value>) -> String {
    match ms.and_then(Value::as_u64) {
        Some(ms) => utc(ms),
        None => "-".to_string(),
    }
}

/// Civil UTC time from epoch milliseconds (H. Hinnant's days-from-civil, inverted).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Left-aligned columns, two spaces apart; `(none)` under the header when there are no rows.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut lines = vec![table_line(&header, &widths)];
    lines.extend(rows.iter().map(|row| table_line(row, &widths)));
    if rows.is_empty() {
        lines.push("(none)".to_string());
    }
    lines.join("\n")
}

fn table_line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{cell:<width$}"))
        .collect();
    padded.join("  ").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_become_a_nested_merge_patch() {
        let patch = merge_patch(&strings(&[
            "message_delay_ms=250",
            "mark_read=true",
            "graph_api_base=http://x",
            "window_template=null",
            "handover.mute_for_secs=60",
            "handover.keywords=[\"agent\",\"human\"]",
            "verify_token=\"123\"",
            "access_token=918273645546",
        ]))
        .unwrap();
        assert_eq!(
            patch,
            json!({
                "message_delay_ms": 250,
                "mark_read": true,
                "graph_api_base": "http://x",
                "window_template": null,
                "handover": {"mute_for_secs": 60, "keywords": ["agent", "human"]},
                "verify_token": "123",
                "access_token": "918273645546",
            })
        );
    }

    #[test]
    fn malformed_settings_are_usage_errors() {
        for bad in [
            &["novalue"][..],
            &["=1"],
            &["a..b=1"],
            &["a=1", "a.b=2"],
            &["a=1", "a=2"],
        ] {
            let e = merge_patch(&strings(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_api_error_decides_the_exit_code() {
        let body = br#"{"error":{"code":"not_found","message":"no endpoint nope"}}"#;
        let e = api_error(StatusCode::NOT_FOUND, body);
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (1, "not_found: no endpoint nope".into())
        );
        assert_eq!(api_error(StatusCode::UNAUTHORIZED, b"").exit_code(), 4);
        assert_eq!(api_error(StatusCode::BAD_GATEWAY, body).exit_code(), 3);
        assert_eq!(
            api_error(StatusCode::CONFLICT, b"busy").to_string(),
            "409: busy"
        );
    }

    #[test]
    fn urls_are_built_below_the_prefix_with_encoded_segments() {
        let target = Target {
            base: parse_base("http://h:1/base/").unwrap(),
            token: "t".into(),
        };
        let call = Call::get(&["endpoints", "a b/c", "conversations"])
            .with_query("limit", Some("5".into()));
        assert_eq!(
            target.url(&call).unwrap().as_str(),
            "http://h:1/base/admin/v1/endpoints/a%20b%2Fc/conversations?limit=5"
        );
        assert_eq!(parse_base("ftp://h").unwrap_err().exit_code(), 2);
        assert_eq!(
            listen_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(listen_url("[::]:9".parse().unwrap()), "http://[::1]:9");
    }

    #[test]
    fn times_and_tables_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56Z");
        let text = table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(text, "A    BB\nxyz  1");
        assert_eq!(table(&["A"], vec![]), "A\n(none)");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ab\ncd", 10), "ab…");
    }
}
