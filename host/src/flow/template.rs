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

/// What a template value may keep unencoded in a URL: RFC 3986's unreserved characters.
/// Everything else (`/`, `?`, `#`, `&`, `=`, `%`, spaces, …) is percent-encoded, so a
/// value stays inside the path segment or query value it was placed in.
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// [`render`] for a URL: each value is percent-encoded (see [`URL_VALUE`]); the literal
/// text is kept as written, so a URL without holes comes out unchanged. A value that is
/// `.` or `..` renders as nothing: URL parsers resolve such a segment (also encoded as
/// `%2E%2E`) and it would climb the path.
pub fn render_url(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    render(template, |path| {
        lookup(path).map(|v| {
            if v == "." || v == ".." {
                String::new()
            } else {
                percent_encoding::utf8_percent_encode(&v, URL_VALUE).to_string()
            }
        })
    })
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
    fn url_values_are_encoded_and_literal_urls_kept() {
        let look = |path: &str| match path {
            "context.id" => Some("7/../../admin?x=1#f".to_string()),
            "context.q" => Some("a b&c=d".to_string()),
            "context.up" => Some("..".to_string()),
            _ => None,
        };
        assert_eq!(
            render_url("https://h.test/api/{{context.id}}?q={{context.q}}", look),
            "https://h.test/api/7%2F..%2F..%2Fadmin%3Fx%3D1%23f?q=a%20b%26c%3Dd"
        );
        assert_eq!(
            render_url("https://h.test/a/{{context.up}}/b", look),
            "https://h.test/a//b"
        );
        let literal = "https://h.test/a/../b?x=1&y=%20";
        assert_eq!(render_url(literal, look), literal);
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
