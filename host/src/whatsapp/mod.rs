//! Meta's WhatsApp Business rules, in one place: the facts the host must obey whatever
//! stage it is in.
//!
//! - [`window`]: the 24-hour customer-service window (free-form messages only inside it)
//!   and how long a reply counts as a reply to a campaign message.
//! - [`codes`]: Meta's error codes the host acts on (window closed, marketing stopped,
//!   number throttled) and the advice for Graph management errors (token, permission, id).
//! - [`opt_out`]: the keywords by which a user opts out of and back into business-initiated
//!   messages.
//! - [`quota`]: the calendar month a reply counts against in the monthly quota.
//!
//! A leaf: it imports nothing of the crate and does no I/O. The sender, the pipeline, the
//! workers, the store, the business module and the admin API read these rules from here,
//! so a rule Meta changes is changed once.

pub mod codes;
pub mod opt_out;
pub mod quota;
pub mod window;

pub use codes::{
    GraphErrorKind, NUMBER_THROTTLE_CODES, STOPPED_MARKETING_CODE, STOPPED_MARKETING_REASON,
    WINDOW_CLOSED_CODE, pauses_number,
};
pub use opt_out::{KEYWORD_OPT_OUT_REASON, OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, opt_keyword};
pub use quota::month_of;
pub use window::{CAMPAIGN_REPLY_WINDOW_MS, WINDOW_MS, window_closes_at, window_open};
