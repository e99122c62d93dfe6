//! Send-result classification (placeholder until the classifier lands).
use crate::types::{SendOutcome, SendResult};
pub fn classify(_o: &SendOutcome, _attempt: u32) -> SendResult {
    SendResult::Sent(None)
}
