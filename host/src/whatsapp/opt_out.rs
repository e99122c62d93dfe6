//! Opt-out keywords: a user who writes one of them stops (or restarts) business-initiated
//! messages to them; campaigns skip opted-out users.

/// Texts that opt a user out of business-initiated messages (compared trimmed and
/// case-insensitively), and the ones that opt them back in.
pub const OPT_OUT_KEYWORDS: [&str; 3] = ["STOP", "UNSUBSCRIBE", "STOP ALL"];
pub const OPT_IN_KEYWORDS: [&str; 2] = ["START", "SUBSCRIBE"];

/// The opt-out reason recorded when the user wrote an opt-out keyword.
pub const KEYWORD_OPT_OUT_REASON: &str = "stop";

/// Whether a message text is an opt-out (`Some(true)`), an opt-in (`Some(false)`) or
/// neither.
pub fn opt_keyword(text: &str) -> Option<bool> {
    let text = text.trim();
    if OPT_OUT_KEYWORDS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(text))
    {
        Some(true)
    } else if OPT_IN_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(opt_keyword(" stop "), Some(true));
        assert_eq!(opt_keyword("Start"), Some(false));
        assert_eq!(opt_keyword("stop the order"), None);
    }
}
