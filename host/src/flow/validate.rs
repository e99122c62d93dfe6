//! Load-time validation of flow files.
//!
//! [`check`] runs, in order: JSON parsing, the JSON Schema (`flows/schema/flow.v1.json`),
//! node types, serde parsing of each node, then the semantic checks the schema cannot
//! express: targets that name no node, nodes unreachable from `start`/`on_expire`, outputs
//! beyond the channel's declared [`ChannelLimits`], unknown template variables, bad
//! regexes. It collects every [`Problem`] instead of stopping at the first; each names the
//! file, the node (when there is one) and the reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::model::{Condition, FlowHeader, Node, SCHEMA_VERSION};
use super::{Flow, SCHEMA_V1, template};
use crate::plugins::types::{BotOutput, CardButton, ChannelLimits, Choice};

/// The node `type`s this version knows.
pub const NODE_TYPES: [&str; 8] = [
    "say", "ask", "branch", "set", "goto", "http", "handover", "end",
];

/// Exact variable paths a template may use besides `context.<key>`.
pub const VARIABLES: [&str; 12] = [
    "user.name",
    "user.id",
    "user.phone",
    "user.username",
    "input.text",
    "input.type",
    "input.choice_id",
    "whatsapp.business",
    "whatsapp.account",
    "whatsapp.number",
    "history",
    "flow.name",
];

/// One thing wrong with a flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// The node at fault, when the problem belongs to one.
    pub node: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "{}: node `{node}`: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// Whether a template variable path is one the engine knows.
pub fn known_variable(path: &str) -> bool {
    VARIABLES.contains(&path)
        || path
            .strip_prefix("context.")
            .is_some_and(|key| !key.is_empty() && key.split('.').all(|s| !s.is_empty()))
}

struct Report<'a> {
    file: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, node: Option<&str>, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            node: node.map(str::to_string),
            reason: reason.into(),
        });
    }
}

fn schema() -> &'static Result<jsonschema::Validator, String> {
    static SCHEMA: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let value: Value = serde_json::from_str(SCHEMA_V1)
            .map_err(|e| format!("the embedded flow schema is not JSON: {e}"))?;
        jsonschema::validator_for(&value)
            .map_err(|e| format!("the embedded flow schema does not compile: {e}"))
    })
}

/// The node id a JSON pointer such as `/nodes/greet/next` points into.
fn node_of_pointer(pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix("/nodes/")?;
    let segment = rest.split('/').next()?;
    Some(segment.replace("~1", "/").replace("~0", "~"))
}

/// Parses and validates a flow; every problem found, or the flow.
pub fn check(file: &str, text: &str, limits: &ChannelLimits) -> Result<Flow, Vec<Problem>> {
    let mut report = Report {
        file,
        problems: Vec::new(),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            report.add(None, format!("not JSON: {e}"));
            return Err(report.problems);
        }
    };
    let empty = Map::new();
    let raw_nodes = value
        .get("nodes")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    // Node types first: an unknown type is one clear message, not a cascade of schema errors.
    let mut bad_nodes = BTreeSet::new();
    for (id, raw) in raw_nodes {
        match raw.get("type").and_then(Value::as_str) {
            Some(t) if NODE_TYPES.contains(&t) => {}
            Some(t) => {
                report.add(
                    Some(id),
                    format!("unknown node type `{t}` (known: {})", NODE_TYPES.join(", ")),
                );
                bad_nodes.insert(id.clone());
            }
            None => {
                report.add(Some(id), "node has no `type`");
                bad_nodes.insert(id.clone());
            }
        }
    }

    // The JSON Schema.
    let mut schema_failed = false;
    match schema() {
        Ok(validator) => {
            for error in validator.iter_errors(&value) {
                let pointer = error.instance_path().as_str().to_string();
                let node = node_of_pointer(&pointer);
                if node.as_ref().is_some_and(|n| bad_nodes.contains(n)) {
                    continue;
                }
                schema_failed = true;
                let at = if pointer.is_empty() { "/" } else { &pointer };
                // Masked: the schema error's own text quotes the offending value, which
                // is file content (a non-flow file named as a flow must not be echoed).
                report.add(node.as_deref(), format!("{} (at {at})", error.masked()));
            }
        }
        Err(reason) => report.add(None, reason.clone()),
    }

    // Serde: the header, then each node on its own so that one bad node names itself.
    let header = match serde_json::from_value::<FlowHeader>(strip_nodes(&value)) {
        Ok(h) => Some(h),
        Err(e) => {
            if !schema_failed {
                report.add(
                    None,
                    format!(
                        "bad flow header: {}",
                        crate::redact::redact_values(&e.to_string())
                    ),
                );
            }
            None
        }
    };
    if let Some(h) = &header
        && h.schema_version != SCHEMA_VERSION
        && !schema_failed
    {
        report.add(
            None,
            format!(
                "schema_version {} is not supported (this host reads {SCHEMA_VERSION})",
                h.schema_version
            ),
        );
    }
    let mut nodes = BTreeMap::new();
    for (id, raw) in raw_nodes {
        if bad_nodes.contains(id) {
            continue;
        }
        match serde_json::from_value::<Node>(raw.clone()) {
            Ok(node) => {
                nodes.insert(id.clone(), node);
            }
            Err(e) => {
                if !report.problems.iter().any(|p| p.node.as_ref() == Some(id)) {
                    report.add(
                        Some(id),
                        format!(
                            "cannot read the node: {}",
                            crate::redact::redact_values(&e.to_string())
                        ),
                    );
                }
                bad_nodes.insert(id.clone());
            }
        }
    }

    // Targets and reachability, on the raw nodes so that one bad node does not make its
    // successors look unreachable.
    let start = value.get("start").and_then(Value::as_str);
    let on_expire = value.get("on_expire").and_then(Value::as_str);
    for (field, id) in [("start", start), ("on_expire", on_expire)] {
        if let Some(id) = id
            && !raw_nodes.contains_key(id)
        {
            report.add(None, format!("`{field}` names no node: `{id}`"));
        }
    }
    let mut edges: BTreeMap<&str, Vec<(&'static str, &str)>> = BTreeMap::new();
    for (id, raw) in raw_nodes {
        let targets = raw_targets(raw);
        for (field, target) in &targets {
            if !raw_nodes.contains_key(*target) {
                report.add(
                    Some(id),
                    format!("unknown target node `{target}` (in `{field}`)"),
                );
            }
        }
        edges.insert(id, targets);
    }
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = [start, on_expire].into_iter().flatten().collect();
    while let Some(id) = queue.pop_front() {
        if !raw_nodes.contains_key(id) || !seen.insert(id) {
            continue;
        }
        for (_, t) in edges.get(id).map(Vec::as_slice).unwrap_or_default() {
            queue.push_back(t);
        }
    }
    if start.is_some() {
        for id in raw_nodes.keys() {
            if !seen.contains(id.as_str()) {
                report.add(
                    Some(id),
                    "unreachable node: no path leads here from `start` or `on_expire`",
                );
            }
        }
    }

    // Per-node semantics: limits, templates, regexes.
    let mut regexes = HashMap::new();
    for (id, node) in &nodes {
        for (i, output) in node.messages().iter().enumerate() {
            for reason in over_limits(output, limits) {
                report.add(Some(id), format!("messages[{i}]: {reason}"));
            }
            if let Ok(v) = serde_json::to_value(output) {
                check_templates(&mut report, id, &format!("messages[{i}]"), &v);
            }
        }
        match node {
            Node::Set { value, .. } => check_templates(&mut report, id, "value", value),
            Node::Http(h) => {
                check_templates(&mut report, id, "url", &Value::String(h.url.clone()));
                for (name, v) in &h.headers {
                    check_templates(
                        &mut report,
                        id,
                        &format!("headers.{name}"),
                        &Value::String(v.clone()),
                    );
                }
                if let Some(body) = &h.body {
                    check_templates(&mut report, id, "body", body);
                }
            }
            Node::Branch { cases, .. } => {
                for (i, case) in cases.iter().enumerate() {
                    if let Condition::Regex(pattern) = &case.when {
                        match Regex::new(pattern) {
                            Ok(re) => {
                                regexes.insert(pattern.clone(), re);
                            }
                            Err(e) => report
                                .add(Some(id), format!("cases[{i}]: bad regex `{pattern}`: {e}")),
                        }
                    }
                    if let Condition::Context(c) = &case.when
                        && c.equals.is_some()
                        && c.exists.is_some()
                    {
                        report.add(
                            Some(id),
                            format!("cases[{i}]: a context condition takes `equals` or `exists`, not both"),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    match header {
        Some(header) if report.problems.is_empty() => Ok(Flow {
            file: file.to_string(),
            header,
            nodes,
            regexes,
        }),
        _ => Err(report.problems),
    }
}

fn strip_nodes(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "nodes" | "$schema" | "description"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The targets of a node as written, whatever its type.
fn raw_targets(raw: &Value) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    for field in ["next", "target", "default", "on_error"] {
        if let Some(t) = raw.get(field).and_then(Value::as_str) {
            out.push((field, t));
        }
    }
    if let Some(cases) = raw.get("cases").and_then(Value::as_array) {
        for case in cases {
            if let Some(t) = case.get("next").and_then(Value::as_str) {
                out.push(("cases[].next", t));
            }
        }
    }
    out
}

fn check_templates(report: &mut Report<'_>, node: &str, field: &str, value: &Value) {
    let mut strings = Vec::new();
    template::strings(value, &mut strings);
    for s in strings {
        if template::has_unclosed(&s) {
            report.add(Some(node), format!("{field}: unclosed `{{{{` in {s:?}"));
        }
        for var in template::variables(&s) {
            if !known_variable(var) {
                report.add(
                    Some(node),
                    format!(
                        "{field}: unknown variable `{{{{{var}}}}}` (known: {}, context.<key>)",
                        VARIABLES.join(", ")
                    ),
                );
            }
        }
    }
}

fn len(s: &str) -> usize {
    s.chars().count()
}

fn too_long(what: &str, s: &str, max: u32) -> Option<String> {
    (len(s) > max as usize).then(|| {
        format!(
            "{what} {s:?} is {} characters; the channel allows {max}",
            len(s)
        )
    })
}

fn choice_limits(
    out: &mut Vec<String>,
    c: &Choice,
    title_max: u32,
    id_max: u32,
    limits: &ChannelLimits,
) {
    let what = format!("choice `{}`", c.id);
    out.extend(too_long(&format!("{what} title"), &c.title, title_max));
    out.extend(too_long(&format!("{what} id"), &c.id, id_max));
    if let Some(d) = &c.description {
        out.extend(too_long(
            &format!("{what} description"),
            d,
            limits.max_row_description_length,
        ));
    }
}

/// Reasons an output breaks the channel's declared limits.
pub fn over_limits(output: &BotOutput, limits: &ChannelLimits) -> Vec<String> {
    let mut out = Vec::new();
    match output {
        BotOutput::Text(t) => out.extend(too_long("text", t, limits.max_text_length)),
        BotOutput::Media(m) => {
            if let Some(c) = &m.caption {
                out.extend(too_long("caption", c, limits.max_caption_length));
            }
        }
        BotOutput::Choices(c) => {
            out.extend(too_long("prompt", &c.text, limits.max_body_length));
            let n = c.choices.len();
            let as_buttons = n <= limits.max_buttons as usize;
            if !as_buttons && c.button_label.is_none() {
                out.push(format!(
                    "{n} choices, but the channel shows at most {} buttons (set `button_label` to send up to {} as a list)",
                    limits.max_buttons, limits.max_list_rows
                ));
            } else if n > limits.max_list_rows as usize {
                out.push(format!(
                    "{n} choices, but the channel lists at most {}",
                    limits.max_list_rows
                ));
            }
            if let Some(label) = &c.button_label {
                out.extend(too_long(
                    "button_label",
                    label,
                    limits.max_button_title_length,
                ));
            }
            let (title_max, id_max) = if as_buttons {
                (limits.max_button_title_length, limits.max_button_id_length)
            } else {
                (limits.max_row_title_length, limits.max_row_id_length)
            };
            for choice in &c.choices {
                choice_limits(&mut out, choice, title_max, id_max, limits);
            }
        }
        BotOutput::List(l) => {
            out.extend(too_long("body", &l.body, limits.max_body_length));
            out.extend(too_long(
                "button_label",
                &l.button_label,
                limits.max_button_title_length,
            ));
            if let Some(h) = &l.header {
                out.extend(too_long("header", h, limits.max_header_length));
            }
            if let Some(f) = &l.footer {
                out.extend(too_long("footer", f, limits.max_footer_length));
            }
            if l.sections.len() > limits.max_list_sections as usize {
                out.push(format!(
                    "{} sections; the channel allows {}",
                    l.sections.len(),
                    limits.max_list_sections
                ));
            }
            let rows: usize = l.sections.iter().map(|s| s.rows.len()).sum();
            if rows > limits.max_list_rows as usize {
                out.push(format!(
                    "{rows} list rows; the channel allows {}",
                    limits.max_list_rows
                ));
            }
            for row in l.sections.iter().flat_map(|s| &s.rows) {
                choice_limits(
                    &mut out,
                    row,
                    limits.max_row_title_length,
                    limits.max_row_id_length,
                    limits,
                );
            }
        }
        BotOutput::Card(c) => {
            out.extend(too_long("body", &c.body, limits.max_body_length));
            if let Some(t) = &c.title {
                out.extend(too_long("title", t, limits.max_header_length));
            }
            if let Some(f) = &c.footer {
                out.extend(too_long("footer", f, limits.max_footer_length));
            }
            if c.buttons.len() > limits.max_buttons as usize {
                out.push(format!(
                    "{} card buttons; the channel allows {}",
                    c.buttons.len(),
                    limits.max_buttons
                ));
            }
            for b in &c.buttons {
                match b {
                    CardButton::Reply(choice) => choice_limits(
                        &mut out,
                        choice,
                        limits.max_button_title_length,
                        limits.max_button_id_length,
                        limits,
                    ),
                    CardButton::Url((title, _)) => out.extend(too_long(
                        "button title",
                        title,
                        limits.max_button_title_length,
                    )),
                }
            }
        }
        _ => {}
    }
    out
}
