//! Error text without the values it quotes: serde (TOML and JSON) error messages name the
//! offending value, which may be a secret from a config file, a flow file's content or an
//! admin request's body. Callers pass every such message through [`redact_values`] before
//! it reaches a log, an API answer or a CLI message. A leaf: it imports nothing of the crate.

use std::sync::LazyLock;

/// serde's `invalid type: integer `123`` and `invalid value: string "x"`, value included.
static QUOTED_VALUE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(r#"(invalid (?:type|value): [a-z ]+?) (?:`[^`]*`|"(?:[^"\\]|\\.)*")"#).ok()
});

/// serde writes `invalid type: integer `123`, expected a string` and
/// `invalid value: string "x", expected …`; keep the kind, drop the value.
pub fn redact_values(message: &str) -> String {
    match QUOTED_VALUE.as_ref() {
        Some(re) => re.replace_all(message, "$1").into_owned(),
        // Cannot happen (a constant pattern); say nothing rather than risk a value.
        None => "invalid value".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_dropped_and_the_kind_kept() {
        assert_eq!(
            redact_values(r#"invalid value: string "s3cr\"et", expected x"#),
            "invalid value: string, expected x"
        );
        assert_eq!(
            redact_values("invalid type: floating point `1.5`, expected u64"),
            "invalid type: floating point, expected u64"
        );
        assert_eq!(redact_values("missing field `id`"), "missing field `id`");
    }
}
