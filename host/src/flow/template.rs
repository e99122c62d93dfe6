//! `{{ path }}` substitution in flow strings.
//!
//! Deliberately tiny: a template is literal text with `{{ dotted.path }}` holes, no filters,
//! no logic. [`render`] asks a lookup function for each path and writes nothing for a missing
//! value; an unclosed `{{` is kept as literal text. [`variables`] lists the paths a template
//! uses so that [`super::validate`] can refuse unknown ones at load. Neither ever panics.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    /// A `{{ path }}` hole, trimmed.
    Var(&'a str),
    /// A `{{` without a closing `}}`: rendered literally, refused by validation.
    Unclosed(&'a str),
}

/// Splits a template into literal text and variables.
pub fn parse(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Literal(&rest[..open]));
        }
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                pieces.push(Piece::Var(after[..close].trim()));
                rest = &after[close + 2..];
            }
            None => {
                pieces.push(Piece::Unclosed(&rest[open..]));
                rest = "";
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    pieces
}

/// The variable paths a template uses, in order.
pub fn variables(template: &str) -> impl Iterator<Item = &str> {
    parse(template).into_iter().filter_map(|p| match p {
        Piece::Var(v) => Some(v),
        _ => None,
    })
}

/// Whether the template has an unclosed `{{`.
pub fn has_unclosed(template: &str) -> bool {
    parse(template)
        .iter()
        .any(|p| matches!(p, Piece::Unclosed(_)))
}

/// Renders a template; `lookup` returns `None` for a missing value (rendered as "").
pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    if !template.contains("{{") {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len());
    for piece in parse(template) {
        match piece {
            Piece::Literal(s) | Piece::Unclosed(s) => out.push_str(s),
            Piece::Var(path) => {
                if let Some(v) = lookup(path) {
                    out.push_str(&v)
                }
            }
        }
    }
    out
}

/// Renders every string inside a JSON value (keys are left alone).
pub fn render_value(
    value: &serde_json::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(render(s, lookup)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| render_value(v, lookup)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every string inside a JSON value, for load-time checks.
pub fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(path: &str) -> Option<String> {
        (path == "user.name").then(|| "Kerry".to_string())
    }

    #[test]
    fn substitutes_and_blanks_missing_values() {
        assert_eq!(render("Hi {{ user.name }}!", look), "Hi Kerry!");
        assert_eq!(render("Hi {{user.name}}{{context.x}}.", look), "Hi Kerry.");
        assert_eq!(render("no holes", look), "no holes");
    }

    #[test]
    fn unclosed_and_odd_braces_never_panic() {
        assert_eq!(render("a {{ user.name", look), "a {{ user.name");
        assert!(has_unclosed("a {{ user.name"));
        assert_eq!(render("{{}}}}{{", look), "}}{{");
        assert_eq!(render("é{{user.name}}ü", look), "éKerryü");
        assert_eq!(
            variables("{{a.b}} and {{ c }}").collect::<Vec<_>>(),
            ["a.b", "c"]
        );
    }
}
