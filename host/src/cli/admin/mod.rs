//! The admin CLI: `plugboard plugin|endpoint|conversation|account|template|campaign …`, a
//! pure HTTP client of a running host's admin API (`/admin/v1`). It owns the command-line
//! shapes of those groups, finding the host and its token, turning arguments into requests
//! (`endpoint set KEY=VALUE…` into a JSON merge patch, a campaign's recipients file into a
//! CSV upload or a JSON body) and printing the answers; the host does everything else. The
//! WhatsApp Business groups (accounts, templates, campaigns) are in [`business`].
//! Requests and finding the host are in [`client`], printing answers in [`tables`].
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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

mod business;
mod client;
mod tables;

pub use business::{AccountCommand, CampaignCommand, SecretArg, TemplateCommand};
use client::{Target, env, send};
use tables::show;

/// The exit codes, as every admin command's `--help` shows them.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 the host refused the request (4xx: the \
API's error code and message on stderr) or verification found problems; 2 usage errors; 3 the \
host cannot be reached or answered 5xx; 4 unauthorized (401, or no token).";

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
}
