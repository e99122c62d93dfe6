//! The `plugboard` command line.
//!
//! `plugboard adapter decode FILE` reads a webhook body (raw bytes, `-` for stdin), runs it
//! through an adapter component (the bundled WhatsApp adapter unless `--plugin PATH`) and
//! prints one neutral event per line as JSON; skipped items go to stderr. A body the adapter
//! rejects exits 1 with the adapter's reason.
//!
//! `plugboard adapter render FILE` reads `{"context": RenderContext, "output": BotOutput}`
//! or `{"context": …, "outputs": [BotOutput, …]}` and prints one Graph API request spec per
//! line as JSON, its body parsed.
//!
//! `plugboard chat --flow FILE` chats with a flow as a WhatsApp user (see [`crate::chat`]):
//! typed lines become real webhook bodies, the replies are shown as the user would see them.
//! `--hooks PATH…` adds transformer hooks, `--delay-ms N` a message delay, `--plugin PATH` another
//! adapter. It reads stdin; [`run_with_input`] takes any reader instead.
//!
//! `plugboard secrets status|encrypt|rotate|decrypt` rewrites the secrets the store keeps
//! (keys from `PLUGBOARD_SECRET_KEY` / `PLUGBOARD_SECRET_KEY_NEW`, never the command line;
//! see [`serve::secrets`]).
//!
//! `plugboard plugin|endpoint|conversation|account|template|campaign …` manage a running host
//! through its admin API (see [`admin`], a pure HTTP client): install, list,
//! inspect and remove plugins; create, list, show, change (`set KEY=VALUE…`), enable,
//! disable, verify and delete endpoints; list conversations and show transcripts; set up,
//! list, show, subscribe, unsubscribe and remove WhatsApp Business accounts; sync, list,
//! create and delete their templates; create, list, show, pause, resume, cancel and watch
//! campaigns, list opt-outs and opt a user back in. `--url`, `--token`, `--config` and
//! `--json` apply to each.
//!
//! Exit codes: 0 success, 1 the input or the plugin failed, 2 usage errors (clap). The admin
//! commands have their own: 1 the host refused the request (4xx) or verification found
//! problems, 2 usage errors, 3 the host cannot be reached or answered 5xx, 4 unauthorized
//! ([`admin::EXIT_CODES`]).
//! [`run`] writes to the given streams so tests drive the CLI in-process.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod adapter;
pub mod admin;
pub mod serve;

pub use adapter::spec_json;
use admin::{
    AccountCommand, CampaignCommand, Connection, ConversationCommand, EndpointCommand,
    PluginCommand, TemplateCommand,
};

#[derive(Parser, Debug)]
#[command(
    name = "plugboard",
    version,
    about = "Run chatbot channel adapters as WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run webhook bodies and bot outputs through a channel adapter component.
    Adapter {
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Chat with a flow in the terminal as a WhatsApp user (scriptable through stdin).
    Chat {
        /// The flow file to run.
        #[arg(long, value_name = "FILE")]
        flow: PathBuf,
        /// Transformer hook components (.wasm), applied in the order given.
        #[arg(long, value_name = "PATH", num_args = 1..)]
        hooks: Vec<PathBuf>,
        /// When a hook fails: `continue` (log, go on untransformed) or `abort` (end the step
        /// with an error).
        #[arg(long, value_enum, default_value_t = HookPolicy::Continue)]
        hook_policy: HookPolicy,
        /// Minimum gap between consecutive replies, in milliseconds.
        #[arg(long, value_name = "N", default_value_t = 0)]
        delay_ms: u64,
        /// The user's profile name, as the flow sees it in `{{user.name}}`.
        #[arg(long, value_name = "NAME", default_value = "Alex")]
        name: String,
        /// IPs, CIDRs or host names the flow's http nodes may reach although internal
        /// (loopback, private ranges), as `[egress] allow` does for `serve`.
        #[arg(long, value_name = "ADDR", num_args = 1..)]
        egress_allow: Vec<String>,
        #[command(flatten)]
        plugin: PluginArg,
    },
    /// Serve Meta's webhooks: the endpoints of a TOML config file (`--config`, else
    /// `$PLUGBOARD_CONFIG`, else `./plugboard.toml`), or a demo endpoint running the example
    /// flow when there is none. With `PLUGBOARD_SECRET_KEY` set (32 bytes, base64 or hex),
    /// the tokens and secrets the store keeps are encrypted.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List dead letters, or put dead-lettered webhooks back in the queue (after a plugin
    /// upgrade, say). A running host picks them up within seconds; otherwise the next start.
    Replay {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The data directory, instead of the one in the config.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Replay this dead letter.
        #[arg(long, value_name = "ID", conflicts_with = "all")]
        id: Option<i64>,
        /// Replay every dead-lettered webhook.
        #[arg(long)]
        all: bool,
    },
    /// Encrypt, re-encrypt (rotate) or decrypt the secrets the store keeps, with keys from
    /// the environment (`PLUGBOARD_SECRET_KEY`, and `PLUGBOARD_SECRET_KEY_NEW` to rotate).
    /// Stop the host first: the command refuses while one serves from the data directory.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Install, list, inspect and remove the plugins of a running host (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Plugin {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Create, list, show, change, enable, disable, verify and delete a running host's
    /// endpoints (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Endpoint {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// List an endpoint's conversations and show their transcripts (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Conversation {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: ConversationCommand,
    },
    /// Set up, list, show, subscribe, unsubscribe and remove WhatsApp Business accounts
    /// (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Account {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Sync, list, create and delete a WhatsApp Business account's message templates
    /// (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Template {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Create, list, show, pause, resume, cancel and watch an endpoint's template campaigns;
    /// list its opt-outs and opt a user back in (admin API).
    #[command(after_help = admin::EXIT_CODES)]
    Campaign {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: CampaignCommand,
    },
}

/// The command-line form of [`crate::transform::FailurePolicy`].
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum HookPolicy {
    Continue,
    Abort,
}

impl From<HookPolicy> for crate::transform::FailurePolicy {
    fn from(policy: HookPolicy) -> Self {
        match policy {
            HookPolicy::Continue => crate::transform::FailurePolicy::Continue,
            HookPolicy::Abort => crate::transform::FailurePolicy::Abort,
        }
    }
}

#[derive(Subcommand, Debug)]
enum AdapterCommand {
    /// Decode a webhook body into neutral events, one JSON object per line.
    Decode {
        /// The raw webhook body; `-` reads stdin.
        file: PathBuf,
        #[command(flatten)]
        plugin: PluginArg,
    },
    /// Render neutral outputs into Graph API request specs, one JSON object per line.
    Render {
        /// JSON: {"context": …, "output": …} or {"context": …, "outputs": […]}; `-` reads stdin.
        file: PathBuf,
        #[command(flatten)]
        plugin: PluginArg,
    },
}

/// Where the store is and which environment variables hold the keys.
#[derive(clap::Args, Debug)]
struct SecretsArgs {
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory, instead of the one in the config.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The environment variable holding the key the secrets are encrypted with now.
    #[arg(long, value_name = "NAME", default_value = crate::secretbox::KEY_ENV)]
    key_env: String,
    /// The environment variable holding the new key (`rotate`).
    #[arg(long, value_name = "NAME", default_value = crate::secretbox::NEW_KEY_ENV)]
    new_key_env: String,
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Count the stored secrets (encrypted, in clear, env references); checks that the key
    /// opens every encrypted one.
    Status {
        #[command(flatten)]
        args: SecretsArgs,
    },
    /// Encrypt the secrets still in clear with the key in `PLUGBOARD_SECRET_KEY`.
    Encrypt {
        #[command(flatten)]
        args: SecretsArgs,
    },
    /// Re-encrypt every secret with the key in `PLUGBOARD_SECRET_KEY_NEW` (those encrypted
    /// now open with `PLUGBOARD_SECRET_KEY`), in one transaction.
    Rotate {
        #[command(flatten)]
        args: SecretsArgs,
    },
    /// Write every secret in clear again (they open with `PLUGBOARD_SECRET_KEY`).
    Decrypt {
        #[command(flatten)]
        args: SecretsArgs,
    },
}

#[derive(clap::Args, Debug)]
struct PluginArg {
    /// An adapter component (.wasm) to use instead of the bundled WhatsApp adapter.
    #[arg(long, value_name = "PATH")]
    plugin: Option<PathBuf>,
}

struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Runs the CLI with `args` (including the program name), writing to `out` and `err`;
/// `chat` reads stdin.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    run_with_input(args, &mut stdin.lock(), terminal, out, err)
}

/// Like [`run`], with `input` in place of stdin; `terminal` says whether it is a terminal
/// (`chat` then prompts and prefixes the bot's lines; `campaign watch` draws its progress
/// bar when stdout is one too, else prints lines on `out`).
pub fn run_with_input<I, T>(
    args: I,
    input: &mut dyn BufRead,
    terminal: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let code = if e.use_stderr() { 2 } else { 0 };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                err.write_all(text.as_bytes())
            } else {
                out.write_all(text.as_bytes())
            };
            return ExitCode::from(code);
        }
    };
    // A terminal session: stdin and stdout are both terminals (`campaign watch`'s bar).
    let session = terminal && std::io::stdout().is_terminal();
    let result = match cli.command {
        Command::Adapter {
            command: AdapterCommand::Decode { file, plugin },
        } => adapter::decode(&file, &plugin, out, err),
        Command::Adapter {
            command: AdapterCommand::Render { file, plugin },
        } => adapter::render(&file, &plugin, out),
        Command::Chat {
            flow,
            hooks,
            hook_policy,
            delay_ms,
            name,
            egress_allow,
            plugin,
        } => {
            let options = crate::chat::ChatOptions {
                egress_allow,
                flow,
                hooks,
                hook_policy: hook_policy.into(),
                delay_ms,
                plugin: plugin.plugin,
                parties: crate::chat::envelope::Parties {
                    user_name: name,
                    ..Default::default()
                },
            };
            crate::chat::run(&options, input, out, terminal).map_err(Failure)
        }
        Command::Serve { config } => serve::serve(config, out).map_err(Failure),
        Command::Replay {
            config,
            data_dir,
            id,
            all,
        } => serve::replay(config, data_dir, id, all, out).map_err(Failure),
        Command::Secrets { command } => {
            use serve::SecretsAction;
            let (action, args) = match command {
                SecretsCommand::Status { args } => (SecretsAction::Status, args),
                SecretsCommand::Encrypt { args } => (SecretsAction::Encrypt, args),
                SecretsCommand::Rotate { args } => (SecretsAction::Rotate, args),
                SecretsCommand::Decrypt { args } => (SecretsAction::Decrypt, args),
            };
            serve::secrets(
                action,
                args.config,
                args.data_dir,
                &args.key_env,
                &args.new_key_env,
                out,
            )
            .map_err(Failure)
        }
        // The admin commands have exit codes of their own.
        Command::Plugin {
            connection,
            command,
        } => {
            let group = admin::Group::Plugin(command);
            return admin::run(&connection, group, input, session, out, err);
        }
        Command::Endpoint {
            connection,
            command,
        } => {
            let group = admin::Group::Endpoint(command);
            return admin::run(&connection, group, input, session, out, err);
        }
        Command::Conversation {
            connection,
            command,
        } => {
            let group = admin::Group::Conversation(command);
            return admin::run(&connection, group, input, session, out, err);
        }
        Command::Account {
            connection,
            command,
        } => {
            let group = admin::Group::Account(command);
            return admin::run(&connection, group, input, session, out, err);
        }
        Command::Template {
            connection,
            command,
        } => {
            let group = admin::Group::Template(command);
            return admin::run(&connection, group, input, session, out, err);
        }
        Command::Campaign {
            connection,
            command,
        } => {
            let group = admin::Group::Campaign(command);
            return admin::run(&connection, group, input, session, out, err);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            let _ = writeln!(err, "error: {message}");
            ExitCode::from(1)
        }
    }
}

/// The `plugboard` binary: the process's arguments, logging set up, unlocked stdout and
/// stderr (`serve` logs from other threads while the command runs; a stderr lock held for
/// the whole run would block them forever).
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    init_tracing_for(&args);
    run(args, &mut std::io::stdout(), &mut std::io::stderr())
}

/// Installs the global log subscriber for a command line: `serve` sets up its own from
/// its config (level, JSON); every other command logs warnings to stderr. Called by the
/// binaries, not by [`run`], which tests drive in-process.
pub fn init_tracing_for(args: &[OsString]) {
    if args.get(1).is_none_or(|command| command != "serve") {
        init_tracing();
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) use crate::plugins::adapter_error;
