//! Token binding: a Meta token goes only to the Graph API base it was given with.
//!
//! The admin API shows tokens masked (`********` and the last 4 characters) and never
//! resolves an `env:` reference for a client. A request that changes where a token is sent
//! (`graph_api_base`) could otherwise send the *stored* token to a host of the caller's
//! choosing: a PATCH with a new base and the token masked as GET shows it, a re-setup of an
//! account under another base. So every admin path that stores or uses a token with a base
//! asks [`check`] first, before anything is stored or sent:
//! - `PATCH /endpoints/{id}` and `POST /endpoints` (`admin::endpoints`, through [`super::lifecycle`]): the stored base
//!   against the new one, and the token the request carries (or keeps);
//! - account setup, from `POST /accounts/setup` and the Webitel `?whatsapp=setup` form
//!   (`admin::accounts::setup`): every setup sends its token to its base and stores the
//!   pair, so it is always a new binding;
//! - the CLI (`endpoint set`, `account setup`) is a client of these routes: it sends what it
//!   is given and prints the refusal (exit 1); it never reads a token back to send it.
//!
//! The rule: when the base changes (or a binding is made for the first time), a token that
//! will be used there must be a literal value in the same request: a masked value, an `env:`
//! reference or an empty string does not count, and keeping the stored token is refused.
//! The refusal names the field; it never contains the token.

use crate::config::{DEFAULT_GRAPH_API_BASE, ENV_PREFIX};

/// How every token is masked in an answer (see `secretbox::mask`).
pub use crate::secretbox::MASK_PREFIX;

/// The token a request leaves in place once applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// None: nothing would be sent anywhere.
    Absent,
    /// The stored token stays (not given in the request, or given back as it was read).
    Kept,
    /// This value, as the request gave it.
    Given(&'a str),
}

/// A token as given: only a literal counts as a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Literal,
    /// `********…`, as the admin API shows a token.
    Masked,
    /// `env:NAME`: read from the host's environment, which an API client must not direct.
    Reference,
    Empty,
}

pub fn form(value: &str) -> Form {
    if value.trim().is_empty() {
        Form::Empty
    } else if value.starts_with(MASK_PREFIX) {
        Form::Masked
    } else if value.starts_with(ENV_PREFIX) {
        Form::Reference
    } else {
        Form::Literal
    }
}

/// The base a stored or requested `graph_api_base` means (the default when absent, no
/// trailing slash), as the config loader reads it.
pub fn effective_base(base: Option<&str>) -> String {
    base.unwrap_or(DEFAULT_GRAPH_API_BASE)
        .trim_end_matches('/')
        .to_string()
}

/// Why a request was refused; the message names the fields, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token_field}: {reason}")]
pub struct Refused {
    pub token_field: String,
    pub reason: String,
}

/// Where the fields are in the request, for the error message.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub token: &'a str,
    pub base: &'a str,
}

/// The one rule (see the module documentation). `stored_base`: where the stored token goes
/// today (`None`: no binding yet, as at a create or an account setup); `new_base`: where it
/// would go after the request.
pub fn check(
    fields: Fields<'_>,
    stored_base: Option<&str>,
    new_base: &str,
    token: Token<'_>,
) -> Result<(), Refused> {
    let moved = stored_base
        .is_none_or(|stored| effective_base(Some(stored)) != effective_base(Some(new_base)));
    if !moved {
        return Ok(());
    }
    let refuse = |reason: String| {
        Err(Refused {
            token_field: fields.token.to_string(),
            reason,
        })
    };
    let why = match token {
        Token::Absent => return Ok(()),
        Token::Given(value) => match form(value) {
            Form::Literal => return Ok(()),
            Form::Masked => "a masked value (as the API shows a token) is not a token",
            Form::Reference => "an `env:` reference is not accepted here",
            Form::Empty => "an empty value is not a token",
        },
        Token::Kept => "the stored token is not sent to a new Graph API base",
    };
    let base = fields.base;
    if stored_base.is_some() {
        refuse(format!(
            "{why}: changing {base} needs the access token itself (a literal new value) in the same request"
        ))
    } else {
        refuse(format!(
            "{why}: give the access token itself (a literal value) with {base}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: Fields<'static> = Fields {
        token: "spec.access_token",
        base: "spec.graph_api_base",
    };

    #[test]
    fn the_same_base_keeps_whatever_token() {
        for token in [Token::Kept, Token::Absent, Token::Given("********oken")] {
            assert_eq!(check(FIELDS, Some("http://a/"), "http://a", token), Ok(()));
        }
        // Absent and the default are the same base.
        assert_eq!(
            check(
                FIELDS,
                Some(&effective_base(None)),
                DEFAULT_GRAPH_API_BASE,
                Token::Kept
            ),
            Ok(())
        );
    }

    #[test]
    fn a_new_base_needs_a_literal_token() {
        let moved = |token| check(FIELDS, Some("http://a"), "http://b", token);
        assert_eq!(moved(Token::Given("EAAnew-token")), Ok(()));
        assert_eq!(moved(Token::Absent), Ok(()));
        for token in [
            Token::Kept,
            Token::Given("********oken"),
            Token::Given("********"),
            Token::Given("env:HOME"),
            Token::Given("  "),
        ] {
            let refused = moved(token).expect_err("refused");
            let text = refused.to_string();
            assert!(text.starts_with("spec.access_token: "), "{text}");
            assert!(text.contains("spec.graph_api_base"), "{text}");
        }
    }

    #[test]
    fn a_first_binding_needs_a_literal_token_wherever_it_goes() {
        assert_eq!(
            check(FIELDS, None, DEFAULT_GRAPH_API_BASE, Token::Given("EAAx")),
            Ok(())
        );
        assert!(check(FIELDS, None, "http://b", Token::Given("********abcd")).is_err());
        assert!(check(FIELDS, None, "http://b", Token::Given("env:X")).is_err());
    }

    #[test]
    fn forms() {
        assert_eq!(form("EAAtoken"), Form::Literal);
        assert_eq!(
            form(&crate::secretbox::mask("EAAGm0PX4ZCpsBAabcd1234")),
            Form::Masked
        );
        assert_eq!(form(&crate::secretbox::mask("short")), Form::Masked);
        assert_eq!(form("env:WA_TOKEN"), Form::Reference);
        assert_eq!(form(""), Form::Empty);
    }
}
