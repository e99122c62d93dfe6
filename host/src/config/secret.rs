//! Secret settings (tokens, the app secret, the admin token) as the config holds them.
//!
//! A value is read once, when the config is resolved: a literal, or `env:NAME` read from the
//! environment then ([`ENV_PREFIX`]). From there on it is a [`Secret`], which prints as
//! `[redacted]` so a config can be logged whole; errors name the field and the variable,
//! never the value.

use std::fmt;

use super::ENV_PREFIX;

/// A secret setting (token, app secret). `Debug` and `Display` print `[redacted]`;
/// [`Secret::expose`] is the only way to the value. Deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for passing into a plugin or computing a MAC. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A literal secret, or `env:NAME` read from the environment now. Errors name the field and
/// the variable, never a value.
pub(super) fn resolve_secret(value: String, field: &str) -> Result<Secret, String> {
    let Some(name) = value.strip_prefix(ENV_PREFIX) else {
        return Ok(Secret(value));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "{field} is \"{ENV_PREFIX}\" without a variable name"
        ));
    }
    match std::env::var(name) {
        Ok(v) => Ok(Secret(v)),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "{field} reads environment variable {name}, which is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{field} reads environment variable {name}, which is not valid UTF-8"
        )),
    }
}
