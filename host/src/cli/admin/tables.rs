//! How the admin CLI prints an answer: as is (pretty JSON) with `--json`, else as a table
//! or a `label: value` summary chosen by the [`View`] the command planned. Pure functions of
//! the answer's JSON; the WhatsApp Business groups' tables are in [`super::business`].

use std::io::Write;

use serde_json::Value;

use super::{AdminError, View, business};

/// How much of a message text a table shows.
const TEXT_EXCERPT: usize = 40;

pub(super) fn show(
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

pub(super) fn pretty(value: &Value) -> String {
    // A `Value` always serializes.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("{text}\n")
}

/// `endpoint verify` succeeds only when the host said `"ok": true`.
pub(super) fn verified(id: &str, answer: Option<&Value>) -> Result<(), AdminError> {
    let verify = answer.unwrap_or(&Value::Null);
    if verify.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let problems = items(verify, "problems").len();
    Err(AdminError::Failed(format!(
        "endpoint {id} failed verification ({problems} problem(s))"
    )))
}

pub(super) fn human(view: &View, answer: &Value) -> String {
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

pub(super) fn plugin_table(plugins: &[Value]) -> String {
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

pub(super) fn plugin_summary(plugin: &Value) -> Vec<String> {
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

pub(super) fn setting_line(setting: &Value) -> String {
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

pub(super) fn endpoint_table(endpoints: &[Value]) -> String {
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

pub(super) fn endpoint_summary(endpoint: &Value) -> Vec<String> {
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
pub(super) fn flatten(prefix: &str, value: &Value, lines: &mut Vec<String>) {
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

pub(super) fn verify_summary(verify: &Value) -> Vec<String> {
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
pub(super) fn problem_lines(problems: Option<&Value>) -> Vec<String> {
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
pub(super) fn problem(problem: &Value) -> String {
    match (problem.get("code"), problem.get("message")) {
        (Some(code), Some(message)) => format!("{}: {}", display(code), display(message)),
        _ => display(problem),
    }
}

pub(super) fn conversation_table(conversations: &[Value]) -> String {
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

pub(super) fn last_message(message: Option<&Value>) -> String {
    match message.filter(|m| !m.is_null()) {
        Some(m) => format!(
            "{} {}",
            arrow(m),
            truncate(&field(m, "/text"), TEXT_EXCERPT)
        ),
        None => "-".to_string(),
    }
}

pub(super) fn open_or_closed(open: Option<&Value>) -> String {
    match open.and_then(Value::as_bool) {
        Some(true) => "open".to_string(),
        Some(false) => "closed".to_string(),
        None => "-".to_string(),
    }
}

pub(super) fn transcript(conversation: &Value) -> Vec<String> {
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
pub(super) fn turn_line(turn: &Value) -> String {
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
pub(super) fn arrow(message: &Value) -> &'static str {
    match message.get("direction").and_then(Value::as_str) {
        Some("in") => "<",
        Some("out") => ">",
        _ => "?",
    }
}

// ---------------------------------------------------------------------------------------
// Formatting helpers.

/// `label: value` lines for each (label, JSON pointer).
pub(super) fn labelled(value: &Value, fields: &[(&str, &str)]) -> Vec<String> {
    fields
        .iter()
        .map(|(label, pointer)| format!("{label}: {}", field(value, pointer)))
        .collect()
}

/// The value at `pointer`, displayed; `-` when absent.
pub(super) fn field(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .map_or_else(|| "-".to_string(), display)
}

/// The value at `pointer`, else at `fallback`, displayed.
pub(super) fn field_or(value: &Value, pointer: &str, fallback: &str) -> String {
    match value.pointer(pointer).filter(|v| !v.is_null()) {
        Some(found) => display(found),
        None => field(value, fallback),
    }
}

/// Strings bare, arrays comma-separated, `-` for null and empty arrays, objects as JSON.
pub(super) fn display(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub(super) fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn truncate(text: &str, max: usize) -> String {
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
pub(super) fn when(ms: Option<&Value>) -> String {
    match ms.and_then(Value::as_u64) {
        Some(ms) => utc(ms),
        None => "-".to_string(),
    }
}

/// Civil UTC time from epoch milliseconds (H. Hinnant's days-from-civil, inverted).
pub(super) fn utc(ms: u64) -> String {
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
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
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

pub(super) fn table_line(cells: &[String], widths: &[usize]) -> String {
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
