//! Webhook decoding (placeholder until the decoder lands).
use crate::types::{AdapterError, Decoded};
pub fn decode(_body: &[u8]) -> Result<Decoded, AdapterError> {
    Err(AdapterError::Malformed("not implemented".into()))
}
