//! Classifying what the host saw when it sent a rendered request.
//!
//! A 2xx answer is `sent`, with the `wamid` from `messages[0].id` when there is one (a
//! mark-read answers `{"success":true}`). An error answer is read from Graph's
//! `{"error":{"message","type","code","error_subcode","error_data":{"details"},"fbtrace_id"}}`
//! (`title` or `error_user_title` as the title, `href` when present) and classified on its
//! `code` first, then on the HTTP status:
//!
//! | code / status | result |
//! |---|---|
//! | 130429 throughput, 131056 pair rate, 80007 WABA rate, 4 app rate, HTTP 429 | retry, after `retry-after` or 4^attempt s (1 s, 4 s, 16 s, …, at most 15 min) |
//! | 131016 service unavailable, 131057 maintenance, 2 temporary, 5xx, timeout, network | retry, after `retry-after` or none (the host's schedule decides) |
//! | 131047 re-engagement | window closed |
//! | 190 token expired, 0 auth, HTTP 401 | auth failed |
//! | 131026 undeliverable, 131030 not in the allowed list | undeliverable |
//! | anything else | permanent |
//!
//! The 4^attempt curve is Meta's pair-rate guidance (field notes, fact 12), which Botpress
//! also applies to the other throttling codes. A `retry-after` header in seconds always
//! wins. A body that is not a Graph error (plain text, HTML from a proxy) keeps the HTTP
//! status as its code and up to 500 chars of the body as its message. Transport failures
//! have no channel code: a timeout reports code [`TIMEOUT_CODE`], a network failure
//! [`NETWORK_CODE`], both negative so they never collide with Meta's codes.

use serde_json::Value;

use crate::types::{ChannelError, HttpResponse, RetryAdvice, SendOutcome, SendResult};

/// `code` of the error reported for a timeout (no Meta code exists for it).
pub const TIMEOUT_CODE: i64 = -1;
/// `code` of the error reported for a network failure.
pub const NETWORK_CODE: i64 = -2;

/// Longest wait recommended on the throttling curve.
const MAX_BACKOFF_MS: u64 = 15 * 60 * 1000;
/// How much of a non-Graph error body is kept as the message.
const MAX_BODY_CHARS: usize = 500;

pub fn classify(outcome: &SendOutcome, attempt: u32) -> SendResult {
    match outcome {
        SendOutcome::Timeout => SendResult::Retry(RetryAdvice {
            after_ms: None,
            error: transport_error(TIMEOUT_CODE, "timeout", None),
        }),
        SendOutcome::Network(reason) => SendResult::Retry(RetryAdvice {
            after_ms: None,
            error: transport_error(NETWORK_CODE, "network error", Some(reason)),
        }),
        SendOutcome::Response(response) => classify_response(response, attempt),
    }
}

fn transport_error(code: i64, title: &str, message: Option<&str>) -> ChannelError {
    ChannelError {
        code,
        title: Some(title.to_string()),
        message: message.map(|m| cut(m, MAX_BODY_CHARS)),
        details: None,
        href: None,
    }
}

fn classify_response(response: &HttpResponse, attempt: u32) -> SendResult {
    let json: Option<Value> = serde_json::from_str(&response.body).ok();
    if (200..300).contains(&response.status) {
        let id = json
            .as_ref()
            .and_then(|v| v.get("messages"))
            .and_then(|m| m.get(0))
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return SendResult::Sent(id);
    }

    let graph_error = json
        .as_ref()
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object());
    let (error, has_code) = match graph_error {
        Some(e) => read_graph_error(e, response.status),
        None => (body_error(response), false),
    };
    let retry_after = retry_after_ms(&response.headers);
    let throttled = |error: ChannelError| {
        SendResult::Retry(RetryAdvice {
            after_ms: retry_after.or(Some(backoff_ms(attempt))),
            error,
        })
    };
    let transient = |error: ChannelError| {
        SendResult::Retry(RetryAdvice {
            after_ms: retry_after,
            error,
        })
    };

    if has_code {
        match error.code {
            130429 | 131056 | 80007 | 4 => return throttled(error),
            131016 | 131057 | 2 => return transient(error),
            131047 => return SendResult::WindowClosed(error),
            190 | 0 => return SendResult::AuthFailed(error),
            131026 | 131030 => return SendResult::Undeliverable(error),
            _ => {}
        }
    }
    match response.status {
        401 => SendResult::AuthFailed(error),
        429 => throttled(error),
        500..=599 => transient(error),
        _ => SendResult::Permanent(error),
    }
}

/// The channel error from a Graph `error` object, and whether it carried a code (without
/// one, the HTTP status stands in).
fn read_graph_error(e: &Value, status: u16) -> (ChannelError, bool) {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let code = e.get("code").and_then(|c| {
        c.as_i64()
            .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let error = ChannelError {
        code: code.unwrap_or(i64::from(status)),
        title: text(e.get("title")).or_else(|| text(e.get("error_user_title"))),
        message: text(e.get("message")).or_else(|| text(e.get("error_user_msg"))),
        details: text(e.get("error_data").and_then(|d| d.get("details"))),
        href: text(e.get("href")),
    };
    (error, code.is_some())
}

/// A non-Graph error body: the HTTP status as code, the body (cut) as message.
fn body_error(response: &HttpResponse) -> ChannelError {
    let body = response.body.trim();
    ChannelError {
        code: i64::from(response.status),
        title: None,
        message: (!body.is_empty()).then(|| cut(body, MAX_BODY_CHARS)),
        details: None,
        href: None,
    }
}

/// `retry-after` in seconds, as milliseconds. (The HTTP-date form needs a clock: ignored.)
fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds.saturating_mul(1000))
}

/// 4^attempt seconds, capped at 15 minutes.
fn backoff_ms(attempt: u32) -> u64 {
    4u64.checked_pow(attempt).map_or(MAX_BACKOFF_MS, |s| {
        s.saturating_mul(1000).min(MAX_BACKOFF_MS)
    })
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or("")),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> SendOutcome {
        SendOutcome::Response(HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        })
    }

    fn after(result: &SendResult) -> Option<u64> {
        match result {
            SendResult::Retry(advice) => advice.after_ms,
            _ => None,
        }
    }

    #[test]
    fn backoff_curve() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(1), 4_000);
        assert_eq!(backoff_ms(4), 256_000);
        assert_eq!(backoff_ms(5), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn string_codes_and_missing_fields_are_read() {
        let r = classify(&response(400, r#"{"error":{"code":"131047"}}"#), 0);
        assert!(matches!(
            r,
            SendResult::WindowClosed(ChannelError { code: 131047, .. })
        ));
        let r = classify(&response(400, r#"{"error":{}}"#), 0);
        assert!(matches!(
            r,
            SendResult::Permanent(ChannelError { code: 400, .. })
        ));
        let r = classify(&response(401, r#"{"error":"nope"}"#), 0);
        assert!(matches!(
            r,
            SendResult::AuthFailed(ChannelError { code: 401, .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        for body in [
            "",
            "null",
            "[]",
            "{",
            "\u{0}",
            "{\"messages\":[{\"id\":5}]}",
        ] {
            for status in [0, 100, 200, 302, 400, 401, 429, 500, 599, 600, u16::MAX] {
                let _ = classify(&response(status, body), u32::MAX);
            }
        }
        let long = "é".repeat(2000);
        match classify(&response(400, &long), 0) {
            SendResult::Permanent(e) => assert_eq!(e.message.map(|m| m.chars().count()), Some(501)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retry_after_wins_over_the_curve() {
        let outcome = SendOutcome::Response(HttpResponse {
            status: 400,
            headers: vec![("Retry-After".into(), " 30 ".into())],
            body: r#"{"error":{"code":131056}}"#.into(),
        });
        assert_eq!(after(&classify(&outcome, 3)), Some(30_000));
        assert_eq!(after(&classify(&response(503, "busy"), 3)), None);
    }
}
