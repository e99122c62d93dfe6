//! `plugboard account|template|campaign …`: the WhatsApp Business groups of the admin CLI,
//! clients of `crate::admin::accounts` and `crate::admin::campaigns`.
//!
//! `account setup` sends the Meta system-user token (`--access-token`, else
//! `$PLUGBOARD_META_TOKEN`) in the request body only; the answer shows it masked. `campaign
//! create --recipients FILE` uploads a `.csv` as is (`text/csv`, the campaign's fields in the
//! query) or reads a `.json` recipients array and sends it in the JSON body; the host checks
//! every recipient against the template. `campaign watch` polls one campaign and draws an
//! `indicatif` bar on stdout when the session is a terminal (elsewhere it prints a line
//! whenever the progress changes, so logs stay readable; with `--json`, one JSON line per
//! poll) until the campaign is completed with nothing left to send, or cancelled.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::client::{Session, Target};
use super::tables::{display, field, items, labelled, table, when};
use super::{AdminError, Body, Call, Connection, EXIT_CODES, View, read_json, usage};

/// The environment variable `account setup` reads the Meta token from.
pub const META_TOKEN_ENV: &str = "PLUGBOARD_META_TOKEN";
/// The shortest pause between two polls of `campaign watch`.
const MIN_EVERY_MS: u64 = 10;

/// A secret given on the command line: shown as `[redacted]` in debug output.
#[derive(Clone)]
pub struct SecretArg(String);

impl From<String> for SecretArg {
    fn from(secret: String) -> SecretArg {
        SecretArg(secret)
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `plugboard account …`
#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Find, read and store the WhatsApp Business accounts a system-user token may manage
    /// (their numbers, subscription); run again to refresh them.
    #[command(after_help = EXIT_CODES)]
    Setup {
        /// The system-user token, with whatsapp_business_management [default:
        /// $PLUGBOARD_META_TOKEN]. Prefer the variable: arguments are visible to other local
        /// users. Never printed; the host shows it masked.
        #[arg(long, value_name = "TOKEN")]
        access_token: Option<SecretArg>,
        /// Only this account (repeat for more) [default: every account the token may manage].
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
        /// The Graph API's base URL [default: the host's, https://graph.facebook.com].
        #[arg(long, value_name = "URL")]
        graph_api_base: Option<String>,
        /// The Graph API version, e.g. v23.0 [default: the host's].
        #[arg(long, value_name = "V")]
        graph_api_version: Option<String>,
    },
    /// List the accounts, then their numbers (with the endpoint serving each).
    #[command(after_help = EXIT_CODES)]
    List,
    /// Show one account: name, portfolio, subscription, masked token, numbers.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The WhatsApp Business Account id.
        id: String,
    },
    /// Subscribe the app to the account's webhooks.
    #[command(after_help = EXIT_CODES)]
    Subscribe {
        /// The WhatsApp Business Account id.
        id: String,
    },
    /// Unsubscribe the app from the account's webhooks.
    #[command(after_help = EXIT_CODES)]
    Unsubscribe {
        /// The WhatsApp Business Account id.
        id: String,
    },
    /// Forget an account here, with its numbers and templates (Meta is not told).
    #[command(after_help = EXIT_CODES)]
    Remove {
        /// The WhatsApp Business Account id.
        id: String,
    },
}

/// `plugboard template …`
#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Fetch the account's message templates from Meta; they replace the stored ones.
    #[command(after_help = EXIT_CODES)]
    Sync {
        /// The WhatsApp Business Account id.
        account: String,
    },
    /// List the account's stored templates.
    #[command(after_help = EXIT_CODES)]
    List {
        /// The WhatsApp Business Account id.
        account: String,
    },
    /// Submit a template to Meta for review (it starts PENDING).
    #[command(after_help = EXIT_CODES)]
    Create {
        /// The WhatsApp Business Account id.
        account: String,
        /// The template's name: lower-case letters, digits and underscores.
        #[arg(long, value_name = "N")]
        name: String,
        /// The template's language, e.g. en_US.
        #[arg(long, value_name = "L")]
        language: String,
        /// The template's category.
        #[arg(long, value_name = "C", ignore_case = true,
            value_parser = ["MARKETING", "UTILITY", "AUTHENTICATION"])]
        category: String,
        /// A JSON file holding Meta's components array (HEADER, BODY, FOOTER, BUTTONS); `-`
        /// reads stdin.
        #[arg(long, value_name = "FILE.json")]
        components: PathBuf,
    },
    /// Delete a template at Meta and here: every language of the name, or one.
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// The WhatsApp Business Account id.
        account: String,
        /// The template's name.
        name: String,
        /// Only this language [default: every language of the name].
        #[arg(long, value_name = "L")]
        language: Option<String>,
    },
}

/// `plugboard campaign …`
#[derive(Subcommand, Debug)]
pub enum CampaignCommand {
    /// Create a campaign: one template to many recipients, every one checked first.
    ///
    /// FILE ending in .csv is uploaded as it is: a header row with a `to` column and one
    /// column per value (1, body.2, first_name, header, button.1). FILE ending in .json holds
    /// the recipients array: [{"to": "+15550100", "values": {"1": "Ada"}}, …].
    #[command(after_help = EXIT_CODES)]
    Create {
        /// The endpoint's id (its number sends the campaign).
        endpoint: String,
        /// The campaign's name.
        #[arg(long, value_name = "N")]
        name: String,
        /// The template's name (synced and approved in the endpoint's account).
        #[arg(long, value_name = "T")]
        template: String,
        /// The template's language, e.g. en_US.
        #[arg(long, value_name = "L")]
        language: String,
        /// When to start, RFC 3339 (2026-12-24T09:00:00Z) [default: now].
        #[arg(long, value_name = "RFC3339")]
        start_at: Option<String>,
        /// The recipients: a .csv or a .json file.
        #[arg(long, value_name = "FILE")]
        recipients: PathBuf,
    },
    /// List an endpoint's campaigns with their state and progress.
    #[command(after_help = EXIT_CODES)]
    List {
        /// The endpoint's id.
        endpoint: String,
    },
    /// Show one campaign: state, why it waits, progress.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The endpoint's id.
        endpoint: String,
        /// The campaign's id.
        id: i64,
    },
    /// Pause a scheduled or running campaign.
    #[command(after_help = EXIT_CODES)]
    Pause {
        /// The endpoint's id.
        endpoint: String,
        /// The campaign's id.
        id: i64,
    },
    /// Resume a paused campaign (it starts again when its start time has come).
    #[command(after_help = EXIT_CODES)]
    Resume {
        /// The endpoint's id.
        endpoint: String,
        /// The campaign's id.
        id: i64,
    },
    /// Cancel a campaign: messages already handed to the sender still go out, no others.
    #[command(after_help = EXIT_CODES)]
    Cancel {
        /// The endpoint's id.
        endpoint: String,
        /// The campaign's id.
        id: i64,
    },
    /// Follow a campaign with a progress bar until it is completed or cancelled.
    ///
    /// The bar counts sent, delivered, read, failed and opted-out recipients of the total,
    /// and says why the campaign waits (messaging_limit, endpoint_unavailable). It is drawn
    /// only on a terminal; otherwise a line is printed whenever the progress changes. With
    /// --json, one JSON line (the campaign) per poll.
    #[command(after_help = EXIT_CODES)]
    Watch {
        /// The endpoint's id.
        endpoint: String,
        /// The campaign's id.
        id: i64,
        /// How often to ask, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000,
            value_parser = clap::value_parser!(u64).range(MIN_EVERY_MS..))]
        every_ms: u64,
    },
    /// List the endpoint's opted-out users (STOP, or Meta's 131050).
    #[command(after_help = EXIT_CODES)]
    OptOuts {
        /// The endpoint's id.
        endpoint: String,
    },
    /// Forget a user's opt-out: campaigns reach them again (do this only when they asked).
    #[command(after_help = EXIT_CODES)]
    OptIn {
        /// The endpoint's id.
        endpoint: String,
        /// The user's number, as `campaign opt-outs` lists it.
        user: String,
    },
}

// ---------------------------------------------------------------------------------------
// Planning.

/// `env_token` is `$PLUGBOARD_META_TOKEN`, used when `--access-token` is absent.
pub(super) fn plan_account(
    command: AccountCommand,
    env_token: Option<String>,
) -> Result<(Call, View), AdminError> {
    Ok(match command {
        AccountCommand::Setup {
            access_token,
            accounts,
            graph_api_base,
            graph_api_version,
        } => {
            let token = access_token
                .map(|t| t.0)
                .or(env_token)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    usage(format!(
                        "no Meta access token: pass --access-token or set {META_TOKEN_ENV}"
                    ))
                })?;
            let mut body = Map::new();
            body.insert("access_token".into(), Value::String(token));
            if !accounts.is_empty() {
                body.insert("account_ids".into(), json!(accounts));
            }
            if let Some(base) = graph_api_base {
                body.insert("graph_api_base".into(), Value::String(base));
            }
            if let Some(version) = graph_api_version {
                body.insert("graph_api_version".into(), Value::String(version));
            }
            let call =
                Call::post(&["accounts", "setup"]).with_body(Body::Json(Value::Object(body)));
            (call, View::Accounts)
        }
        AccountCommand::List => (Call::get(&["accounts"]), View::Accounts),
        AccountCommand::Show { id } => (Call::get(&["accounts", &id]), View::Account),
        AccountCommand::Subscribe { id } => {
            (Call::post(&["accounts", &id, "subscribe"]), View::Account)
        }
        AccountCommand::Unsubscribe { id } => {
            (Call::post(&["accounts", &id, "unsubscribe"]), View::Account)
        }
        AccountCommand::Remove { id } => (
            Call::new(Method::DELETE, &["accounts", &id]),
            View::Done(format!("removed account {id}")),
        ),
    })
}

pub(super) fn plan_template(
    command: TemplateCommand,
    input: &mut dyn BufRead,
) -> Result<(Call, View), AdminError> {
    Ok(match command {
        TemplateCommand::Sync { account } => (
            Call::post(&["accounts", &account, "templates", "sync"]),
            View::Templates,
        ),
        TemplateCommand::List { account } => (
            Call::get(&["accounts", &account, "templates"]),
            View::Templates,
        ),
        TemplateCommand::Create {
            account,
            name,
            language,
            category,
            components,
        } => {
            let parts = read_json(&components, input)?;
            if !parts.is_array() {
                return Err(usage(format!(
                    "{}: expected Meta's components array ([{{\"type\": \"BODY\", …}}])",
                    components.display()
                )));
            }
            let body = json!({
                "name": name,
                "language": language,
                "category": category.to_ascii_uppercase(),
                "components": parts,
            });
            let call = Call::post(&["accounts", &account, "templates"]).with_body(Body::Json(body));
            (call, View::Template)
        }
        TemplateCommand::Delete {
            account,
            name,
            language,
        } => {
            let done = match &language {
                Some(language) => format!("deleted template {name} ({language})"),
                None => format!("deleted template {name}"),
            };
            let call = Call::new(Method::DELETE, &["accounts", &account, "templates", &name])
                .with_query("language", language);
            (call, View::Done(done))
        }
    })
}

/// Every campaign command but `watch`, which is not one request.
pub(super) fn plan_campaign(command: CampaignCommand) -> Result<(Call, View), AdminError> {
    let one = |endpoint: &str, id: i64, action: Option<&str>| {
        let id = id.to_string();
        let mut path = vec!["endpoints", endpoint, "campaigns", &id];
        path.extend(action);
        match action {
            Some(_) => Call::post(&path),
            None => Call::get(&path),
        }
    };
    Ok(match command {
        CampaignCommand::Create {
            endpoint,
            name,
            template,
            language,
            start_at,
            recipients,
        } => {
            let fields = Fields {
                name,
                template,
                language,
                start_at,
            };
            let call = create_call(&endpoint, fields, read_recipients(&recipients)?);
            (call, View::Campaign)
        }
        CampaignCommand::List { endpoint } => (
            Call::get(&["endpoints", &endpoint, "campaigns"]),
            View::Campaigns,
        ),
        CampaignCommand::Show { endpoint, id } => (one(&endpoint, id, None), View::Campaign),
        CampaignCommand::Pause { endpoint, id } => {
            (one(&endpoint, id, Some("pause")), View::Campaign)
        }
        CampaignCommand::Resume { endpoint, id } => {
            (one(&endpoint, id, Some("resume")), View::Campaign)
        }
        CampaignCommand::Cancel { endpoint, id } => {
            (one(&endpoint, id, Some("cancel")), View::Campaign)
        }
        CampaignCommand::OptOuts { endpoint } => (
            Call::get(&["endpoints", &endpoint, "opt-outs"]),
            View::OptOuts,
        ),
        CampaignCommand::OptIn { endpoint, user } => (
            Call::new(Method::DELETE, &["endpoints", &endpoint, "opt-outs", &user]),
            View::Done(format!("{user} opted back in")),
        ),
        CampaignCommand::Watch { endpoint, id, .. } => (one(&endpoint, id, None), View::Campaign),
    })
}

/// A campaign's fields besides its recipients.
struct Fields {
    name: String,
    template: String,
    language: String,
    start_at: Option<String>,
}

/// One recipient of a `.json` recipients file, as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipient {
    to: String,
    #[serde(default)]
    values: BTreeMap<String, String>,
}

/// A recipients file, read.
#[derive(Debug, PartialEq)]
enum Recipients {
    /// A `.csv` file's bytes, uploaded as they are.
    Csv(Vec<u8>),
    /// A `.json` file's array.
    Json(Vec<Recipient>),
}

/// Reads `--recipients FILE` by its extension: `.csv` as bytes, `.json` as the array.
fn read_recipients(file: &Path) -> Result<Recipients, AdminError> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let kind = match extension.as_deref() {
        Some(kind @ ("csv" | "json")) => kind,
        _ => {
            return Err(usage(format!(
                "--recipients {}: expected a .csv or a .json file",
                file.display()
            )));
        }
    };
    let bytes =
        std::fs::read(file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    match kind {
        "csv" => Ok(Recipients::Csv(bytes)),
        _ => serde_json::from_slice(&bytes)
            .map(Recipients::Json)
            .map_err(|e| {
                usage(format!(
                    "{}: not a recipients array ([{{\"to\": \"+15550100\", \"values\": {{\"1\": \"Ada\"}}}}, …]): {e}",
                    file.display()
                ))
            }),
    }
}

/// `POST /endpoints/{endpoint}/campaigns`: a CSV upload with the fields in the query, or a
/// JSON body holding the fields and the recipients.
fn create_call(endpoint: &str, fields: Fields, recipients: Recipients) -> Call {
    let call = Call::post(&["endpoints", endpoint, "campaigns"]);
    match recipients {
        Recipients::Csv(bytes) => call
            .with_body(Body::Csv(bytes))
            .with_query("name", Some(fields.name))
            .with_query("template", Some(fields.template))
            .with_query("language", Some(fields.language))
            .with_query("start_at", fields.start_at),
        Recipients::Json(recipients) => {
            let mut body = json!({
                "name": fields.name,
                "template": fields.template,
                "language": fields.language,
                "recipients": recipients,
            });
            if let (Some(start_at), Some(map)) = (fields.start_at, body.as_object_mut()) {
                map.insert("start_at".into(), Value::String(start_at));
            }
            call.with_body(Body::Json(body))
        }
    }
}

// ---------------------------------------------------------------------------------------
// `campaign watch`.

/// Polls the campaign every `every` until it is over: JSON lines on `out` with `--json`, else
/// a bar on stdout when `terminal`, else lines on `out`.
pub(super) fn watch(
    connection: &Connection,
    endpoint: &str,
    id: i64,
    every: Duration,
    terminal: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let target = Target::resolve(connection)?;
    let session = Session::new()?;
    let id_text = id.to_string();
    let mut fetch = || -> Result<Value, AdminError> {
        let call = Call::get(&["endpoints", endpoint, "campaigns", &id_text]);
        // An empty answer would never say the campaign is over: stop instead of polling on.
        session
            .send(&target, call)?
            .ok_or_else(|| AdminError::Unreachable("the host answered without the campaign".into()))
    };
    let mut display = Watcher::pick(connection.json, terminal);
    follow(
        &mut fetch,
        &mut || std::thread::sleep(every),
        &mut display,
        out,
    )
}

/// The polling loop: fetch, show, stop when over, else pause and again.
fn follow(
    fetch: &mut dyn FnMut() -> Result<Value, AdminError>,
    pause: &mut dyn FnMut(),
    display: &mut Watcher,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    loop {
        let campaign = fetch()?;
        display
            .show(&campaign, out)
            .map_err(|e| AdminError::Failed(format!("cannot write: {e}")))?;
        if over(&campaign) {
            display.finish();
            return Ok(());
        }
        pause();
    }
}

/// How a watched campaign is shown.
enum Watcher {
    /// One JSON line per poll.
    Json,
    /// `<state> <done>/<total> · <message>` whenever it changes.
    Lines { last: Option<String> },
    /// A progress bar: state, bar, done/total, message.
    Bar(ProgressBar),
}

impl Watcher {
    /// JSON with `--json`; else a bar on stdout in a terminal session (unless indicatif
    /// hides it there, say for `TERM=dumb`); else lines.
    fn pick(json: bool, terminal: bool) -> Watcher {
        if json {
            return Watcher::Json;
        }
        if terminal {
            let bar = progress_bar(ProgressDrawTarget::stdout());
            if !bar.is_hidden() {
                return Watcher::Bar(bar);
            }
        }
        Watcher::Lines { last: None }
    }

    fn show(&mut self, campaign: &Value, out: &mut dyn Write) -> std::io::Result<()> {
        let counts = Counts::of(campaign);
        let state = field(campaign, "/state");
        let message = progress_message(campaign);
        match self {
            Watcher::Json => {
                // A `Value` always serializes.
                let line = serde_json::to_string(campaign).unwrap_or_default();
                writeln!(out, "{line}")?;
                out.flush()
            }
            Watcher::Lines { last } => {
                let line = format!("{state} {}/{} · {message}", counts.done(), counts.total);
                if last.as_ref() == Some(&line) {
                    return Ok(());
                }
                writeln!(out, "{line}")?;
                *last = Some(line);
                out.flush()
            }
            Watcher::Bar(bar) => {
                bar.set_prefix(state);
                bar.set_message(message);
                bar.update(|s| {
                    s.set_len(counts.total);
                    s.set_pos(counts.done());
                });
                // Polls are seconds apart: draw each one, whatever the rate limit says.
                bar.force_draw();
                Ok(())
            }
        }
    }

    /// Leaves the bar's last state on the screen.
    fn finish(&self) {
        if let Watcher::Bar(bar) = self {
            bar.finish();
        }
    }
}

fn progress_bar(target: ProgressDrawTarget) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(0), target).with_style(style)
}

/// A campaign's progress counts (absent ones are 0).
#[derive(Debug, Default, PartialEq)]
struct Counts {
    total: u64,
    queued: u64,
    sending: u64,
    sent: u64,
    delivered: u64,
    read: u64,
    failed: u64,
    opted_out: u64,
}

impl Counts {
    fn of(campaign: &Value) -> Counts {
        let count = |key: &str| {
            campaign
                .pointer(&format!("/progress/{key}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Counts {
            total: count("total"),
            queued: count("queued"),
            sending: count("sending"),
            sent: count("sent"),
            delivered: count("delivered"),
            read: count("read"),
            failed: count("failed"),
            opted_out: count("opted_out"),
        }
    }

    /// The recipients done with: handed to Meta or never to be sent.
    fn done(&self) -> u64 {
        self.sent + self.delivered + self.read + self.failed + self.opted_out
    }
}

/// `sent N · delivered N · read N · failed N · opted out N`, and `· waiting: <reason>` when
/// the campaign waits.
fn progress_message(campaign: &Value) -> String {
    let c = Counts::of(campaign);
    let mut message = format!(
        "sent {} · delivered {} · read {} · failed {} · opted out {}",
        c.sent, c.delivered, c.read, c.failed, c.opted_out
    );
    if let Some(reason) = campaign.get("waiting").and_then(Value::as_str) {
        message.push_str(&format!(" · waiting: {reason}"));
    }
    message
}

/// Cancelled, or completed with nothing still queued or being sent.
fn over(campaign: &Value) -> bool {
    let counts = Counts::of(campaign);
    match campaign.get("state").and_then(Value::as_str) {
        Some("cancelled") => true,
        Some("completed") => counts.queued == 0 && counts.sending == 0,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Printing.

/// The accounts table; then, when there are accounts, their numbers.
pub(super) fn account_tables(accounts: &[Value]) -> Vec<String> {
    let rows = accounts
        .iter()
        .map(|a| {
            vec![
                field(a, "/id"),
                field(a, "/name"),
                field(a, "/subscribed"),
                items(a, "numbers").len().to_string(),
                field(a, "/templates"),
            ]
        })
        .collect();
    let mut lines = vec![table(
        &["ACCOUNT", "NAME", "SUBSCRIBED", "NUMBERS", "TEMPLATES"],
        rows,
    )];
    if !accounts.is_empty() {
        lines.push(String::new());
        lines.push(number_table(accounts));
    }
    lines
}

/// One row per number of `accounts`.
fn number_table(accounts: &[Value]) -> String {
    let rows = accounts
        .iter()
        .flat_map(|a| {
            let account = field(a, "/id");
            items(a, "numbers").iter().map(move |n| {
                vec![
                    account.clone(),
                    field(n, "/id"),
                    field(n, "/display_phone_number"),
                    field(n, "/verified_name"),
                    field(n, "/quality_rating"),
                    field(n, "/throughput_level"),
                    field(n, "/messaging_limit_tier"),
                    field(n, "/endpoint"),
                ]
            })
        })
        .collect();
    table(
        &[
            "ACCOUNT",
            "NUMBER ID",
            "PHONE",
            "VERIFIED NAME",
            "QUALITY",
            "THROUGHPUT",
            "TIER",
            "ENDPOINT",
        ],
        rows,
    )
}

pub(super) fn account_summary(account: &Value) -> Vec<String> {
    let mut lines = labelled(
        account,
        &[
            ("id", "/id"),
            ("name", "/name"),
            ("portfolio", "/portfolio"),
            ("subscribed", "/subscribed"),
            ("token", "/token"),
            ("graph api base", "/graph_api_base"),
            ("templates", "/templates"),
        ],
    );
    lines.push(format!("refreshed: {}", when(account.get("refreshed_ms"))));
    lines.push("numbers:".to_string());
    let numbers = number_table(std::slice::from_ref(account));
    lines.extend(numbers.lines().map(|line| format!("  {line}")));
    lines
}

pub(super) fn template_table(templates: &[Value]) -> String {
    let rows = templates
        .iter()
        .map(|t| {
            [
                "/name",
                "/language",
                "/category",
                "/status",
                "/quality",
                "/id",
            ]
            .iter()
            .map(|pointer| field(t, pointer))
            .collect()
        })
        .collect();
    table(
        &["NAME", "LANGUAGE", "CATEGORY", "STATUS", "QUALITY", "ID"],
        rows,
    )
}

pub(super) fn template_summary(template: &Value) -> Vec<String> {
    let mut lines = labelled(
        template,
        &[
            ("name", "/name"),
            ("language", "/language"),
            ("id", "/id"),
            ("category", "/category"),
            ("status", "/status"),
            ("quality", "/quality"),
        ],
    );
    lines.push("components:".to_string());
    // A `Value` always serializes.
    lines.extend(
        items(template, "components")
            .iter()
            .map(|c| format!("  {}", serde_json::to_string(c).unwrap_or_default())),
    );
    lines
}

pub(super) fn campaign_table(campaigns: &[Value]) -> String {
    let rows = campaigns
        .iter()
        .map(|c| {
            let counts = Counts::of(c);
            vec![
                field(c, "/id"),
                field(c, "/name"),
                field(c, "/template"),
                field(c, "/language"),
                field(c, "/state"),
                when(c.get("start_ms")),
                counts.total.to_string(),
                counts.sent.to_string(),
                counts.delivered.to_string(),
                counts.read.to_string(),
                counts.failed.to_string(),
                counts.opted_out.to_string(),
                field(c, "/waiting"),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TEMPLATE",
            "LANGUAGE",
            "STATE",
            "START",
            "TOTAL",
            "SENT",
            "DELIVERED",
            "READ",
            "FAILED",
            "OPTED OUT",
            "WAITING",
        ],
        rows,
    )
}

pub(super) fn campaign_summary(campaign: &Value) -> Vec<String> {
    let mut lines = labelled(
        campaign,
        &[
            ("id", "/id"),
            ("endpoint", "/endpoint"),
            ("name", "/name"),
            ("template", "/template"),
            ("language", "/language"),
            ("state", "/state"),
            ("waiting", "/waiting"),
        ],
    );
    lines.push(format!("start: {}", when(campaign.get("start_ms"))));
    lines.push(format!("created: {}", when(campaign.get("created_ms"))));
    lines.push(format!("finished: {}", when(campaign.get("finished_ms"))));
    let c = Counts::of(campaign);
    for (label, count) in [
        ("total", c.total),
        ("queued", c.queued),
        ("sending", c.sending),
        ("sent", c.sent),
        ("delivered", c.delivered),
        ("read", c.read),
        ("failed", c.failed),
        ("opted out", c.opted_out),
    ] {
        lines.push(format!("{label}: {count}"));
    }
    // Only in a creation's answer.
    if let Some(duplicates) = campaign.get("duplicates").filter(|d| !d.is_null()) {
        lines.push(format!("duplicates: {}", display(duplicates)));
    }
    lines
}

pub(super) fn opt_out_table(opt_outs: &[Value]) -> String {
    let rows = opt_outs
        .iter()
        .map(|o| vec![field(o, "/user"), field(o, "/reason"), when(o.get("at_ms"))])
        .collect();
    table(&["USER", "REASON", "AT"], rows)
}

#[cfg(test)]
mod tests {
    use super::super::client::parse_base;
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh file `name` holding `contents` in a directory of this test run.
    fn temp_file(name: &str, contents: &str) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plugboard-admin-cli-business-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, contents).unwrap();
        file
    }

    fn target() -> Target {
        Target {
            base: parse_base("http://h:1").unwrap(),
            token: "t".into(),
        }
    }

    fn create(recipients: PathBuf, start_at: Option<&str>) -> CampaignCommand {
        CampaignCommand::Create {
            endpoint: "shop".into(),
            name: "Spring sale #1".into(),
            template: "spring_sale".into(),
            language: "en_US".into(),
            start_at: start_at.map(String::from),
            recipients,
        }
    }

    #[test]
    fn a_csv_is_uploaded_with_the_fields_in_the_query() {
        let csv = "to,1\n+15550100,Ada\n";
        let file = temp_file("list.CSV", csv);
        let (call, _) = plan_campaign(create(file, Some("2026-12-24T09:00:00+01:00"))).unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(
            target().url(&call).unwrap().as_str(),
            "http://h:1/admin/v1/endpoints/shop/campaigns?name=Spring+sale+%231\
             &template=spring_sale&language=en_US&start_at=2026-12-24T09%3A00%3A00%2B01%3A00"
        );
        assert!(matches!(&call.body, Body::Csv(bytes) if bytes == csv.as_bytes()));
        // No start time: no `start_at` in the query.
        let (call, _) = plan_campaign(create(temp_file("l.csv", csv), None)).unwrap();
        let url = target().url(&call).unwrap();
        assert_eq!(
            url.query(),
            Some("name=Spring+sale+%231&template=spring_sale&language=en_US")
        );
    }

    #[test]
    fn a_json_recipients_file_becomes_the_body() {
        let file = temp_file(
            "list.json",
            r#"[{"to": "+15550100", "values": {"1": "Ada", "header": "https://x/y.png"}},
                {"to": "15550101"}]"#,
        );
        assert_eq!(
            read_recipients(&file).unwrap(),
            Recipients::Json(vec![
                Recipient {
                    to: "+15550100".into(),
                    values: [("1", "Ada"), ("header", "https://x/y.png")]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                },
                Recipient {
                    to: "15550101".into(),
                    values: BTreeMap::new(),
                },
            ])
        );
        let (call, _) = plan_campaign(create(file, Some("2026-12-24T09:00:00Z"))).unwrap();
        assert!(call.query.is_empty());
        let Body::Json(body) = &call.body else {
            panic!("not a JSON body")
        };
        assert_eq!(
            body,
            &json!({
                "name": "Spring sale #1",
                "template": "spring_sale",
                "language": "en_US",
                "start_at": "2026-12-24T09:00:00Z",
                "recipients": [
                    {"to": "+15550100", "values": {"1": "Ada", "header": "https://x/y.png"}},
                    {"to": "15550101", "values": {}},
                ],
            })
        );
    }

    #[test]
    fn bad_recipients_files_are_usage_errors() {
        for (name, contents) in [
            ("a.json", r#"{"to": "+15550100"}"#),
            ("b.json", r#"[{"to": "+15550100", "value": {}}]"#),
            ("c.json", r#"[{"to": "+15550100", "values": {"1": 42}}]"#),
            ("d.json", r#"[{"values": {}}]"#),
            ("e.json", "to,1\n"),
            ("f.txt", "to,1\n"),
            ("noextension", "to,1\n"),
        ] {
            let e = read_recipients(&temp_file(name, contents)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{name}: {e}");
        }
        let missing = std::env::temp_dir().join("plugboard-no-such-dir/none.csv");
        assert_eq!(read_recipients(&missing).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn setup_takes_the_token_from_the_flag_else_the_environment() {
        let setup = |token: Option<&str>, accounts: &[&str]| AccountCommand::Setup {
            access_token: token.map(|t| SecretArg(t.to_string())),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            graph_api_base: None,
            graph_api_version: Some("v23.0".into()),
        };
        let body = |call: Call| match call.body {
            Body::Json(body) => body,
            _ => panic!("not a JSON body"),
        };
        let (call, _) =
            plan_account(setup(Some("EAAflag"), &["1", "2"]), Some("EAAenv".into())).unwrap();
        assert_eq!(call.path, ["accounts", "setup"]);
        assert_eq!(
            body(call),
            json!({"access_token": "EAAflag", "account_ids": ["1", "2"], "graph_api_version": "v23.0"})
        );
        let (call, _) = plan_account(setup(None, &[]), Some("EAAenv".into())).unwrap();
        assert_eq!(
            body(call),
            json!({"access_token": "EAAenv", "graph_api_version": "v23.0"})
        );
        let Err(e) = plan_account(setup(None, &[]), None) else {
            panic!("planned without a token")
        };
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(META_TOKEN_ENV), "{e}");
        // The token never shows in debug output.
        let debug = format!("{:?}", setup(Some("EAAsecret"), &[]));
        assert!(!debug.contains("EAAsecret"), "{debug}");
    }

    fn campaign(state: &str, progress: Value, waiting: Option<&str>) -> Value {
        json!({"id": 7, "state": state, "waiting": waiting, "progress": progress})
    }

    #[test]
    fn watching_stops_when_nothing_is_left_to_send() {
        let answers = vec![
            campaign("scheduled", json!({"total": 4, "queued": 4}), None),
            campaign(
                "running",
                json!({"total": 4, "queued": 2, "sent": 1, "failed": 1}),
                Some("messaging_limit"),
            ),
            // Completed (all claimed), one still on its way to Meta.
            campaign(
                "completed",
                json!({"total": 4, "sending": 1, "sent": 1, "delivered": 1, "opted_out": 1}),
                None,
            ),
            campaign(
                "completed",
                json!({"total": 4, "read": 2, "failed": 1, "opted_out": 1}),
                None,
            ),
            campaign("never", json!({}), None),
        ];
        let run = |watcher: &mut Watcher| {
            let mut answers = answers.clone().into_iter();
            let mut pauses = 0;
            let mut out = Vec::new();
            follow(
                &mut || Ok(answers.next().unwrap_or(Value::Null)),
                &mut || pauses += 1,
                watcher,
                &mut out,
            )
            .unwrap();
            (pauses, String::from_utf8(out).unwrap())
        };
        let (pauses, out) = run(&mut Watcher::Json);
        assert_eq!(pauses, 3);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, answers[..4]);
        // Not a terminal: a line whenever something changes.
        let (_, out) = run(&mut Watcher::Lines { last: None });
        assert_eq!(
            out,
            "scheduled 0/4 · sent 0 · delivered 0 · read 0 · failed 0 · opted out 0\n\
             running 2/4 · sent 1 · delivered 0 · read 0 · failed 1 · opted out 0 · waiting: messaging_limit\n\
             completed 3/4 · sent 1 · delivered 1 · read 0 · failed 0 · opted out 1\n\
             completed 4/4 · sent 0 · delivered 0 · read 2 · failed 1 · opted out 1\n"
        );
        // A bar writes nothing to `out`, and ends on the last poll.
        let bar = progress_bar(ProgressDrawTarget::hidden());
        let mut watcher = Watcher::Bar(bar.clone());
        assert_eq!(run(&mut watcher), (3, String::new()));
        assert_eq!((bar.position(), bar.length()), (4, Some(4)));
        assert!(bar.message().starts_with("sent 0 · delivered 0 · read 2"));
        assert_eq!(bar.prefix(), "completed");
        assert!(bar.is_finished());
        assert!(matches!(Watcher::pick(true, true), Watcher::Json));
        assert!(matches!(
            Watcher::pick(false, false),
            Watcher::Lines { last: None }
        ));
        assert!(over(&campaign("cancelled", json!({"sending": 3}), None)));
        assert!(!over(&campaign("paused", json!({}), None)));
    }

    #[test]
    fn a_failed_poll_ends_the_watch_with_its_exit_code() {
        let mut out = Vec::new();
        let e = follow(
            &mut || Err(AdminError::Unreachable("gone".into())),
            &mut || {},
            &mut Watcher::Json,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn accounts_print_as_two_tables() {
        let account = json!({
            "id": "1029", "name": "Shop", "subscribed": true, "templates": 3,
            "token": "********abcd", "refreshed_ms": 0,
            "numbers": [{
                "id": "1065", "display_phone_number": "+1 555-0100", "verified_name": "Shop",
                "quality_rating": "GREEN", "throughput_level": "STANDARD",
                "messaging_limit_tier": "TIER_1K", "endpoint": "shop",
            }],
        });
        assert_eq!(
            account_tables(std::slice::from_ref(&account)).join("\n"),
            "ACCOUNT  NAME  SUBSCRIBED  NUMBERS  TEMPLATES\n\
             1029     Shop  true        1        3\n\
             \n\
             ACCOUNT  NUMBER ID  PHONE        VERIFIED NAME  QUALITY  THROUGHPUT  TIER     ENDPOINT\n\
             1029     1065       +1 555-0100  Shop           GREEN    STANDARD    TIER_1K  shop"
        );
        assert_eq!(
            account_tables(&[]),
            ["ACCOUNT  NAME  SUBSCRIBED  NUMBERS  TEMPLATES\n(none)"]
        );
        let summary = account_summary(&account);
        assert!(
            summary.contains(&"token: ********abcd".to_string()),
            "{summary:?}"
        );
        assert!(
            summary.iter().any(|l| l.starts_with("  1029     1065")),
            "{summary:?}"
        );
    }

    #[test]
    fn a_created_campaign_shows_its_duplicates() {
        let created = json!({
            "id": 3, "state": "scheduled", "start_ms": 0, "duplicates": 2,
            "progress": {"total": 10, "queued": 10},
        });
        let lines = campaign_summary(&created);
        for expected in ["id: 3", "state: scheduled", "total: 10", "duplicates: 2"] {
            assert!(lines.contains(&expected.to_string()), "{lines:?}");
        }
        let shown = campaign_summary(&json!({"id": 3, "duplicates": null}));
        assert!(
            !shown.iter().any(|l| l.starts_with("duplicates")),
            "{shown:?}"
        );
    }
}
