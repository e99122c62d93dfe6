//! Meta's error codes the host acts on, and what they mean for it.
//!
//! Send outcomes are classified by the adapter (`classify`); these are the codes the host
//! itself must recognise afterwards: a closed window (send the window template instead), a
//! user who stopped marketing messages (an opt-out), throttling (pause the whole number).
//! Graph management calls (accounts, templates, the endpoint check) get advice from
//! [`GraphErrorKind`].

/// Meta's "re-engagement" error: the 24-hour customer-service window is closed.
pub const WINDOW_CLOSED_CODE: i64 = 131_047;

/// Meta's "this user stopped marketing messages".
pub const STOPPED_MARKETING_CODE: i64 = 131_050;

/// The opt-out reason recorded for [`STOPPED_MARKETING_CODE`].
pub const STOPPED_MARKETING_REASON: &str = "meta_131050";

/// Throttling codes that pause the whole number (throughput, WABA rate limit).
pub const NUMBER_THROTTLE_CODES: [i64; 2] = [130_429, 80_007];

/// Whether a retryable send error pauses every send of the number, not only this one.
pub fn pauses_number(code: i64) -> bool {
    NUMBER_THROTTLE_CODES.contains(&code)
}

/// What a Graph API error code says about the call, for advice to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphErrorKind {
    /// 190: the access token is invalid or expired.
    AccessTokenInvalid,
    /// 10 and 200–299: the token lacks a permission the call needs.
    PermissionMissing,
    /// 100: a parameter was refused (an unknown id, or one this token cannot see).
    InvalidParameter,
    /// Anything else.
    Other,
}

impl GraphErrorKind {
    /// The kind of a Graph error code.
    pub fn of(code: i64) -> Self {
        match code {
            190 => GraphErrorKind::AccessTokenInvalid,
            10 | 200..=299 => GraphErrorKind::PermissionMissing,
            100 => GraphErrorKind::InvalidParameter,
            _ => GraphErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_codes_and_throttling() {
        assert_eq!(GraphErrorKind::of(190), GraphErrorKind::AccessTokenInvalid);
        assert_eq!(GraphErrorKind::of(10), GraphErrorKind::PermissionMissing);
        assert_eq!(GraphErrorKind::of(200), GraphErrorKind::PermissionMissing);
        assert_eq!(GraphErrorKind::of(299), GraphErrorKind::PermissionMissing);
        assert_eq!(GraphErrorKind::of(100), GraphErrorKind::InvalidParameter);
        assert_eq!(GraphErrorKind::of(131_047), GraphErrorKind::Other);
        assert!(pauses_number(130_429));
        assert!(pauses_number(80_007));
        assert!(!pauses_number(WINDOW_CLOSED_CODE));
    }
}
