//! Which Graph API requests an adapter may ask the host to make with the endpoint's token.
//!
//! A request spec from `render` names a method and a path relative to
//! `{graph_api_base}/{graph_api_version}/`. The host sends it with the endpoint's bearer
//! token and hands the response back to the plugin (`classify`), so a path is a capability:
//! it is checked here, before anything is sent, against an allow-list of routes:
//!
//! - `POST {phone_number_id}/messages`: a message from the endpoint's own number;
//! - `POST {phone_number_id}/media`: a media upload to the endpoint's own number.
//!
//! The WIT contract (0.1.x) has no field for an adapter to declare more routes, so the list
//! is the host's ([`ROUTES`]); approving another route for every adapter is a change here.
//! The path must be plain: segments of ASCII letters, digits, `_`, `-` and `.`, none empty,
//! none `.` or `..`; no scheme or host, no query (`?`), fragment (`#`) or escape (`%`), and
//! the phone number id must be the endpoint's own. A refused spec is a dead letter with the
//! reason; no request is sent for any part of that output.

use crate::plugins::types::HttpMethod;

/// One segment of an allowed route.
#[derive(Debug, Clone, Copy)]
enum Segment {
    /// The endpoint's own `phone_number_id`.
    OwnNumber,
    /// This exact text.
    Literal(&'static str),
}

/// The routes an adapter may ask for, by method.
const ROUTES: &[(HttpMethod, &[Segment])] = &[
    (
        HttpMethod::Post,
        &[Segment::OwnNumber, Segment::Literal("messages")],
    ),
    (
        HttpMethod::Post,
        &[Segment::OwnNumber, Segment::Literal("media")],
    ),
];

/// How much of a refused path a refusal quotes.
const QUOTE_CHARS: usize = 120;

/// The path to append to the versioned base when `method path` is an allowed route for an
/// endpoint whose number is `phone_number_id`, else why not.
pub fn check(method: HttpMethod, path: &str, phone_number_id: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "Graph request {} `{}` refused: {why}",
            method_name(method),
            quote(path)
        ))
    };
    if path.contains("://") || path.starts_with("//") {
        return refuse("an absolute URL; paths are relative to the Graph API base");
    }
    // One leading slash is tolerated, as before: `/123/messages` is `123/messages`.
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.is_empty() {
        return refuse("an empty path");
    }
    if let Some(c) = relative.chars().find(|c| !plain_char(*c) && *c != '/') {
        let why = match c {
            '?' => "a query string is not allowed".to_string(),
            '#' => "a fragment is not allowed".to_string(),
            '%' => "percent-escapes are not allowed".to_string(),
            c => format!("the character {c:?} is not allowed"),
        };
        return refuse(&why);
    }
    let segments: Vec<&str> = relative.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return refuse("an empty path segment");
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return refuse("`.` and `..` segments are not allowed");
    }
    let mut other_number = false;
    for (route_method, route) in ROUTES {
        if route.len() != segments.len() {
            continue;
        }
        let (mut shape, mut own) = (true, true);
        for (segment, given) in route.iter().zip(&segments) {
            match segment {
                Segment::OwnNumber => own &= *given == phone_number_id,
                Segment::Literal(text) => shape &= given == text,
            }
        }
        if shape && *route_method == method {
            if own {
                return Ok(relative.to_string());
            }
            other_number = true;
        }
    }
    if other_number {
        return refuse("not the endpoint's own phone number id");
    }
    refuse("not a route adapters may use (POST {phone_number_id}/messages or /media)")
}

fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
    }
}

/// The path as quoted in a refusal: cut, control characters escaped.
fn quote(path: &str) -> String {
    let mut quoted: String = path
        .chars()
        .take(QUOTE_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if path.chars().count() > QUOTE_CHARS {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "106540352242922";

    fn refused(method: HttpMethod, path: &str) -> String {
        match check(method, path, OWN) {
            Ok(p) => panic!("{path:?} allowed as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn own_messages_and_media_are_allowed() {
        for (path, expected) in [
            ("106540352242922/messages", "106540352242922/messages"),
            ("/106540352242922/messages", "106540352242922/messages"),
            ("106540352242922/media", "106540352242922/media"),
        ] {
            assert_eq!(check(HttpMethod::Post, path, OWN).as_deref(), Ok(expected));
        }
    }

    #[test]
    fn escapes_and_other_targets_are_refused_with_the_reason() {
        for (path, why) in [
            ("../../other/messages", "`.` and `..`"),
            ("106540352242922/../999/messages", "`.` and `..`"),
            ("./106540352242922/messages", "`.` and `..`"),
            (
                "106540352242922/messages?fields=access_token",
                "query string",
            ),
            ("106540352242922/messages#x", "fragment"),
            ("106540352242922%2F..%2F999/messages", "percent-escapes"),
            (
                "https://evil.example/106540352242922/messages",
                "absolute URL",
            ),
            ("//evil.example/messages", "absolute URL"),
            ("106540352242922//messages", "empty path segment"),
            ("106540352242922/messages/", "empty path segment"),
            ("", "empty path"),
            ("/", "empty path"),
            ("999999/messages", "own phone number id"),
            ("106540352242922/subscribed_apps", "not a route"),
            ("me/accounts", "not a route"),
            ("106540352242922\\..\\x/messages", "character"),
            ("106540352242922/mess ages", "character"),
        ] {
            let error = refused(HttpMethod::Post, path);
            assert!(error.contains(why), "{path:?}: {error}");
        }
    }

    #[test]
    fn the_method_is_part_of_the_route() {
        for method in [
            HttpMethod::Get,
            HttpMethod::Put,
            HttpMethod::Patch,
            HttpMethod::Delete,
        ] {
            let error = refused(method, "106540352242922/messages");
            assert!(error.contains("not a route"), "{error}");
        }
    }

    #[test]
    fn a_refusal_quotes_a_bounded_escaped_path() {
        let long = format!("{}\n/messages", "a".repeat(500));
        let error = refused(HttpMethod::Post, &long);
        assert!(!error.contains('\n'), "{error}");
        assert!(error.len() < 300, "{error}");
    }
}
