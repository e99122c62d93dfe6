//! `plugboard chat --flow FILE`: a terminal conversation with a flow, as a WhatsApp user.
//!
//! Each typed line (or `/button ID`, `/list ID`, `/location LAT LON`, `/image CAPTION`)
//! becomes a real Meta webhook body ([`envelope`]), is decoded by the compiled adapter
//! component, and goes through the conversation core (hooks, engine, handover; driven by
//! [`conversations`] with its lanes and paced delivery) exactly as a served endpoint's step
//! runs it. Each output the chat delivers is rendered by the adapter into a Graph API
//! request and shown as the user would see it ([`view`]): buttons as `[ Yes ]  [ No ]`,
//! lists as a menu, with the ids `/button` and `/list` take.
//! On a terminal it prompts `you> ` and prefixes bot lines with `bot> `; otherwise it reads
//! lines and prints the replies only, so a script can drive it. [`run`] takes any reader and
//! writer, so tests drive it in-process.

pub mod clock;
pub mod conversations;
pub mod envelope;
mod lanes;
pub mod sessions;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::conversation::{
    ConversationConfig, HandoverEvent, HandoverKind, ReqwestHttp, SessionKey, Skipped, StepReport,
};
use crate::flow::Flow;
use crate::plugins::types::{BotOutput, Business, EventBody, InboundMessage, RenderContext, User};
use crate::plugins::{AdapterPlugin, HookPlugin, PluginLimits, PluginRuntime};
use crate::transform::{FailurePolicy, Transformers};
use clock::SystemClock;
use conversations::{Conversations, HandoverSink, Outbound};
use envelope::{Envelope, Line, Offered, Parties};

/// What `plugboard chat` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// The flow file.
    pub flow: PathBuf,
    /// Transformer hook components, in order.
    pub hooks: Vec<PathBuf>,
    /// What happens when a hook fails: go on untransformed, or end the step with an error.
    pub hook_policy: FailurePolicy,
    /// Minimum gap between consecutive replies, in milliseconds.
    pub delay_ms: u64,
    /// An adapter component instead of the bundled WhatsApp adapter.
    pub plugin: Option<PathBuf>,
    /// Who the user is (phone, profile name) and which business number they write to.
    pub parties: Parties,
    /// `[egress] allow` for the flow's http nodes (a service on localhost while designing).
    pub egress_allow: Vec<String>,
}

/// What the printing loop prints: lines from deliveries and handover events.
enum Print {
    /// Chat lines from the bot.
    Bot(Vec<String>),
    /// A status line (typing indicator): dim on a terminal, skipped in scripts.
    Status(String),
    /// A note from the host (handover, errors): always shown.
    Note(String),
}

/// Renders each delivered output through the adapter and sends its lines to the printer.
struct ChatOutbound {
    adapter: Arc<AdapterPlugin>,
    context: RenderContext,
    offered: Arc<Mutex<Vec<Offered>>>,
    tx: mpsc::UnboundedSender<Print>,
}

impl Outbound for ChatOutbound {
    async fn deliver(&self, _key: &SessionKey, output: BotOutput) -> Result<(), String> {
        let specs = self
            .adapter
            .render(&output, &self.context)
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "the {} adapter refused the output: {e:?}",
                    self.adapter.name()
                )
            })?;
        for spec in specs {
            let body: serde_json::Value = serde_json::from_str(&spec.body)
                .map_err(|e| format!("the adapter rendered a body that is not JSON: {e}"))?;
            let shown = view::show(&body);
            if let Some(offered) = shown.offered {
                *self.offered.lock().unwrap_or_else(|p| p.into_inner()) = offered;
            }
            if shown.lines.is_empty() {
                continue;
            }
            let print = if shown.status {
                Print::Status(shown.lines.join(" "))
            } else {
                Print::Bot(shown.lines)
            };
            // The printer outlives every step; a closed channel means the chat is over.
            let _ = self.tx.send(print);
        }
        Ok(())
    }
}

/// Shows handover events as notes.
struct ChatHandover {
    tx: mpsc::UnboundedSender<Print>,
}

impl HandoverSink for ChatHandover {
    async fn post(&self, event: HandoverEvent) {
        let _ = self.tx.send(Print::Note(handover_note(&event)));
    }
}

fn handover_note(event: &HandoverEvent) -> String {
    let detail = |value: &Option<String>| {
        value
            .as_deref()
            .map(|v| format!(": {v}"))
            .unwrap_or_default()
    };
    match event.kind {
        HandoverKind::Started => format!("[handover started{}]", detail(&event.reason)),
        HandoverKind::Message => format!("[forwarded to the agent{}]", detail(&event.text)),
        HandoverKind::Ended => format!("[handover ended{}]", detail(&event.reason)),
    }
}

/// Where the chat writes and how.
struct Printer<'a> {
    out: &'a mut dyn Write,
    terminal: bool,
}

impl Printer<'_> {
    fn print(&mut self, print: Print) -> std::io::Result<()> {
        match print {
            Print::Bot(lines) => {
                for line in lines {
                    if self.terminal {
                        writeln!(self.out, "bot> {line}")?;
                    } else {
                        writeln!(self.out, "{line}")?;
                    }
                }
            }
            Print::Status(line) => {
                if self.terminal {
                    writeln!(self.out, "\x1b[2mbot> {line}\x1b[0m")?;
                }
            }
            Print::Note(line) => writeln!(self.out, "{line}")?,
        }
        self.out.flush()
    }

    fn prompt(&mut self) -> std::io::Result<()> {
        if self.terminal {
            write!(self.out, "you> ")?;
            self.out.flush()?;
        }
        Ok(())
    }
}

/// Loads the adapter, the hooks and the flow, then chats: reads lines from `input` until
/// `/quit` or end of input, writes the conversation to `out`. `terminal` turns on the
/// prompt and the `bot> ` prefix. A broken flow or plugin is an `Err` with the reason.
pub fn run(
    options: &ChatOptions,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    terminal: bool,
) -> Result<(), String> {
    let runtime = Arc::new(
        PluginRuntime::new().map_err(|e| format!("cannot start the plugin runtime: {e:#}"))?,
    );
    let adapter = Arc::new(load_adapter(&runtime, options.plugin.as_ref())?);
    let flow = Flow::load(&options.flow, &adapter.info().limits).map_err(|e| e.to_string())?;
    let mut hooks = Vec::new();
    for path in &options.hooks {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read hook {}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("hook")
            .to_string();
        let hook = HookPlugin::load(&runtime, &name, &bytes, PluginLimits::hook_default())
            .map_err(|e| format!("cannot load hook {}: {e}", path.display()))?;
        hooks.push(Arc::new(hook));
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tokio.block_on(chat(
        options,
        adapter,
        flow,
        Transformers::new(hooks, options.hook_policy),
        input,
        Printer { out, terminal },
    ))
}

fn load_adapter(
    runtime: &Arc<PluginRuntime>,
    plugin: Option<&PathBuf>,
) -> Result<AdapterPlugin, String> {
    let (bytes, origin) = match plugin {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| format!("cannot read plugin {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            crate::plugins::BUNDLED_WHATSAPP.to_vec(),
            "the bundled WhatsApp adapter".to_string(),
        ),
    };
    AdapterPlugin::load(runtime, &bytes, PluginLimits::default())
        .map_err(|e| format!("cannot load {origin}: {e}"))
}

async fn chat(
    options: &ChatOptions,
    adapter: Arc<AdapterPlugin>,
    flow: Flow,
    transformers: Transformers,
    input: &mut dyn BufRead,
    mut printer: Printer<'_>,
) -> Result<(), String> {
    let parties = &options.parties;
    let egress = crate::egress::EgressPolicy::new(&options.egress_allow)?;
    let context = RenderContext {
        business: Business {
            phone_number_id: parties.phone_number_id.clone(),
            display_number: Some(parties.display_number.clone()),
            account_id: Some(parties.account_id.clone()),
        },
        recipient: User {
            user_id: None,
            phone: Some(parties.user_phone.clone()),
            name: Some(parties.user_name.clone()),
            username: None,
        },
        reply_to: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let offered = Arc::new(Mutex::new(Vec::new()));
    let outbound = ChatOutbound {
        adapter: adapter.clone(),
        context,
        offered: offered.clone(),
        tx: tx.clone(),
    };
    let config = ConversationConfig {
        endpoint: "chat".to_string(),
        message_delay: Duration::from_millis(options.delay_ms),
        // A typing indicator while a delay runs (shown dim on a terminal).
        typing_indicator: options.delay_ms > 0,
        ..ConversationConfig::default()
    };
    let conversations = Conversations::new(
        config,
        Arc::new(flow),
        transformers,
        outbound,
        ReqwestHttp::with_egress(crate::egress::Egress::new(egress)),
        ChatHandover { tx },
        Arc::new(SystemClock),
    );
    let envelope = Envelope::new(parties.clone());
    let io = |e: std::io::Error| format!("cannot write the chat: {e}");

    if printer.terminal {
        writeln!(
            printer.out,
            "chatting with flow `{}` as {} (+{}); /help for commands, /quit to end",
            options.flow.display(),
            parties.user_name,
            parties.user_phone
        )
        .map_err(io)?;
    }
    let mut seq = 0u64;
    let mut line = String::new();
    loop {
        printer.prompt().map_err(io)?;
        line.clear();
        if input
            .read_line(&mut line)
            .map_err(|e| format!("cannot read input: {e}"))?
            == 0
        {
            break;
        }
        let user_input = match envelope::parse_line(&line) {
            Line::Quit => break,
            Line::Empty => continue,
            Line::Help(complaint) => {
                if !complaint.is_empty() {
                    writeln!(printer.out, "{complaint}").map_err(io)?;
                }
                writeln!(printer.out, "{}", envelope::HELP).map_err(io)?;
                continue;
            }
            Line::Send(user_input) => user_input,
        };
        seq += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let offered_now = offered.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let body = envelope.build(&user_input, &offered_now, seq, now);
        let (message, business) = match decode(&adapter, &body) {
            Ok(decoded) => decoded,
            Err(reason) => {
                writeln!(printer.out, "! {reason}").map_err(io)?;
                continue;
            }
        };
        let step = conversations.handle(message, business);
        tokio::pin!(step);
        let result = loop {
            tokio::select! {
                biased;
                Some(print) = rx.recv() => printer.print(print).map_err(io)?,
                result = &mut step => break result,
            }
        };
        while let Ok(print) = rx.try_recv() {
            printer.print(print).map_err(io)?;
        }
        match result {
            Ok(report) => {
                for note in report_notes(&report) {
                    printer.print(Print::Note(note)).map_err(io)?;
                }
            }
            Err(e) => writeln!(printer.out, "! {e}").map_err(io)?,
        }
    }
    Ok(())
}

/// What a step report adds to the conversation: run-time errors and skipped inputs
/// (a handed-over input is already shown by the handover sink).
fn report_notes(report: &StepReport) -> Vec<String> {
    let mut notes: Vec<String> = report.errors.iter().map(|e| format!("! {e}")).collect();
    match &report.skipped {
        Some(Skipped::Dropped { hook, reason }) => {
            notes.push(format!("[input dropped by hook {hook}: {reason}]"))
        }
        Some(Skipped::AiOff) => notes.push("[the bot is off for this conversation]".to_string()),
        Some(Skipped::HandedOver) | None => {}
    }
    notes
}

/// Runs an envelope through the adapter: the one message it carries and its business.
fn decode(adapter: &AdapterPlugin, body: &[u8]) -> Result<(InboundMessage, Business), String> {
    let decoded = adapter
        .decode(body)
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "the {} adapter rejected the envelope: {e:?}",
                adapter.name()
            )
        })?;
    for event in decoded.events {
        if let EventBody::Message(message) = event.body {
            return Ok((message, event.business));
        }
    }
    Err(format!(
        "the {} adapter decoded no message from the envelope (skipped: {:?})",
        adapter.name(),
        decoded.skipped
    ))
}
