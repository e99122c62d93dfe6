//! Typed ids: the keys the stages pass to each other, so an endpoint id cannot be handed
//! where a conversation key is expected.
//!
//! A leaf: it imports nothing of the crate. What needs other modules stays with them:
//! building a key from a channel user and the masked form for logs are in
//! [`crate::conversation`] (inherent methods on [`SessionKey`]).
//!
//! [`EndpointId`] is for new code; existing code still passes endpoint ids as `&str`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One conversation: an endpoint and a channel user. Shown as `wa_<user>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionKey {
    pub endpoint: String,
    /// The user's business-scoped id (BSUID) when the channel sends one, else the phone.
    pub user: String,
}

/// The name [`SessionKey`] goes by in the layout: the typed key of a conversation.
pub type ConversationKey = SessionKey;

impl SessionKey {
    pub fn new(endpoint: impl Into<String>, user: impl Into<String>) -> Self {
        SessionKey {
            endpoint: endpoint.into(),
            user: user.into(),
        }
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wa_{}", self.user)
    }
}

/// An endpoint's id (`[a-z0-9_-]{1,64}`, checked where endpoints are configured): the
/// webhook URL is `/webhooks/{id}`. Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointId(String);

impl EndpointId {
    pub fn new(id: impl Into<String>) -> Self {
        EndpointId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EndpointId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for EndpointId {
    fn from(id: String) -> Self {
        EndpointId(id)
    }
}

impl From<&str> for EndpointId {
    fn from(id: &str) -> Self {
        EndpointId(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_print_and_serialise_plainly() {
        let key = SessionKey::new("shop", "15551234567");
        assert_eq!(key.to_string(), "wa_15551234567");
        let id = EndpointId::from("shop");
        assert_eq!(id.to_string(), "shop");
        assert_eq!(id.as_ref(), "shop");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"shop\"");
        let back: EndpointId = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(back, id);
    }
}
