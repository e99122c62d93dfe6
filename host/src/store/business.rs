//! What the store keeps about WhatsApp Business accounts and outbound campaigns: accounts
//! (WABAs) and their numbers and templates, campaigns and their recipients, opt-outs, the
//! messaging-limit ledger and the monthly reply quota.
//!
//! Data flows like this:
//! - `account setup` saves what the Graph API reports ([`BusinessStore::save_account`]);
//!   template syncs replace an account's templates, template webhooks update one row;
//! - a campaign is written whole at creation (one row per recipient, with the exact
//!   template output it gets); the campaign runner then *claims* recipients
//!   ([`BusinessStore::claim_recipients`]): in one transaction a claimed recipient gets its
//!   outbox row and the `sending` state, and the ledger notes the business-initiated send.
//!   A recipient is claimed at most once, so a retry or a restart can never send it twice;
//!   the outbox then owns delivery (and its at-least-once rule towards Meta);
//! - progress is read from the recipients joined to their outbox rows (the delivery
//!   statuses Meta reports land there); pruning copies an outbox row's final state into
//!   its recipient before the row goes.

use std::fmt;

use serde::Serialize;

use super::{OutboxRow, StoreError, StoreFuture};

/// A WhatsApp Business Account (`Debug` by hand: the token is a secret).
#[derive(Clone, PartialEq)]
pub struct StoredAccount {
    pub id: String,
    pub name: Option<String>,
    /// The business portfolio that owns the account (messaging limits are per portfolio).
    pub portfolio: Option<String>,
    pub graph_api_base: String,
    pub graph_api_version: String,
    /// The system-user token the account was set up with.
    pub token: String,
    /// Whether our app is subscribed to the account's webhooks (`None`: not known).
    pub subscribed: Option<bool>,
    pub refreshed_ms: u64,
    pub created_ms: u64,
}

impl fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("portfolio", &self.portfolio)
            .field("graph_api_base", &self.graph_api_base)
            .field("token", &"<redacted>")
            .field("subscribed", &self.subscribed)
            .finish_non_exhaustive()
    }
}

/// A phone number of an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredNumber {
    /// The `phone_number_id`.
    pub id: String,
    pub account: String,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    /// GREEN, YELLOW, RED or UNKNOWN.
    pub quality_rating: Option<String>,
    /// STANDARD, HIGH or NOT_APPLICABLE.
    pub throughput_level: Option<String>,
    /// TIER_250, TIER_2K, TIER_10K, TIER_100K, TIER_UNLIMITED (older names: TIER_50,
    /// TIER_1K).
    pub messaging_limit_tier: Option<String>,
    pub updated_ms: u64,
}

/// A message template of an account, in one language.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTemplate {
    pub account: String,
    pub name: String,
    pub language: String,
    pub template_id: Option<String>,
    pub category: Option<String>,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...
    pub status: String,
    pub quality: Option<String>,
    /// JSON array of Meta's components.
    pub components: String,
    pub updated_ms: u64,
}

/// What a template webhook changed.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateChange {
    Status(String),
    Quality(String),
    Category(String),
}

/// A campaign to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    pub endpoint: String,
    pub name: String,
    pub template: String,
    pub language: String,
    pub start_ms: u64,
}

/// One recipient of a new campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecipient {
    /// The conversation key (the user's number).
    pub recipient: String,
    /// JSON `User`.
    pub user_json: String,
    /// JSON `BotOutput` (the template with this recipient's values).
    pub output: String,
}

/// Campaign states, as stored.
pub const CAMPAIGN_STATES: [&str; 5] = ["scheduled", "running", "paused", "completed", "cancelled"];

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRow {
    pub id: i64,
    pub endpoint: String,
    pub name: String,
    pub template: String,
    pub language: String,
    pub start_ms: u64,
    /// One of [`CAMPAIGN_STATES`].
    pub state: String,
    /// Why a running campaign sends nothing now (`messaging_limit`, `endpoint_unavailable`).
    pub waiting: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
}

/// Where a campaign's recipients are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CampaignProgress {
    pub total: u64,
    /// Not claimed yet.
    pub queued: u64,
    /// In the outbox, not accepted by Meta yet.
    pub sending: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    /// Refused by Meta or given up on.
    pub failed: u64,
    /// Never sent: opted out before their turn.
    pub opted_out: u64,
}

/// A claim of recipients for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub campaign: i64,
    pub endpoint: String,
    /// JSON `Business` the messages go out from.
    pub business: String,
    /// The portfolio whose messaging limit the sends count against.
    pub portfolio: String,
    /// Unique users per moving 24 hours; `None`: unlimited.
    pub tier_limit: Option<u64>,
    pub now_ms: u64,
    /// At most this many recipients.
    pub max: usize,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claimed {
    /// The outbox rows inserted, for the sender.
    pub rows: Vec<OutboxRow>,
    /// Recipients skipped because they opted out.
    pub opted_out: u64,
    /// Recipients still queued after this claim.
    pub remaining: u64,
    /// The claim stopped at the messaging limit.
    pub limited: bool,
    /// The campaign was not running (paused or cancelled since the runner looked): nothing
    /// was claimed and `remaining` is not known.
    pub stopped: bool,
}

/// An opt-out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptOut {
    pub user: String,
    /// `stop` (the user wrote a stop keyword) or `meta_131050`.
    pub reason: String,
    pub at_ms: u64,
}

/// The campaign a user last got a message of, for the context of their reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignContact {
    pub campaign: i64,
    pub name: String,
    pub template: String,
    pub sent_ms: u64,
}

/// The store's accounts, templates, campaigns, opt-outs and quota.
pub trait BusinessStore: Send + Sync + 'static {
    /// Inserts or refreshes an account (keeping what is not reported, such as
    /// `subscribed` when `None`) and replaces its numbers.
    fn save_account(
        &self,
        account: StoredAccount,
        numbers: Vec<StoredNumber>,
    ) -> StoreFuture<'_, ()>;
    /// Records whether our app is subscribed; false when the account is unknown.
    fn set_subscribed(&self, id: &str, subscribed: bool) -> StoreFuture<'_, bool>;
    /// Removes an account with its numbers and templates; false when unknown.
    fn delete_account(&self, id: &str) -> StoreFuture<'_, bool>;
    fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError>;
    /// Every stored number, by id.
    fn numbers(&self) -> Result<Vec<StoredNumber>, StoreError>;
    /// Applies a number webhook (`phone_number_quality_update`) to the account's number
    /// with this display number (compared as digits); false when none matched.
    fn update_number(
        &self,
        account: &str,
        display_digits: &str,
        messaging_limit_tier: Option<String>,
        quality_rating: Option<String>,
    ) -> StoreFuture<'_, bool>;

    /// Replaces all of an account's templates (a full sync).
    fn replace_templates(
        &self,
        account: &str,
        templates: Vec<StoredTemplate>,
    ) -> StoreFuture<'_, ()>;
    /// Inserts or replaces one template.
    fn save_template(&self, template: StoredTemplate) -> StoreFuture<'_, ()>;
    /// Deletes an account's templates of this name (one language, or all); how many went.
    fn delete_templates(
        &self,
        account: &str,
        name: &str,
        language: Option<String>,
    ) -> StoreFuture<'_, u64>;
    /// Applies a template webhook to the row with this template id (or name and language);
    /// false when no row matched.
    fn update_template(
        &self,
        account: &str,
        template_id: &str,
        name: &str,
        language: &str,
        change: TemplateChange,
    ) -> StoreFuture<'_, bool>;
    /// Templates of one account, or of all.
    fn templates(&self, account: Option<&str>) -> Result<Vec<StoredTemplate>, StoreError>;

    /// Creates a campaign with its recipients (scheduled); its id.
    fn create_campaign(
        &self,
        campaign: NewCampaign,
        recipients: Vec<NewRecipient>,
    ) -> StoreFuture<'_, i64>;
    /// Campaigns of one endpoint (or all), newest first.
    fn campaigns(&self, endpoint: Option<&str>) -> Result<Vec<CampaignRow>, StoreError>;
    fn campaign(&self, id: i64) -> Result<Option<CampaignRow>, StoreError>;
    /// Scheduled and running campaigns (what the runner looks at every tick).
    fn live_campaigns(&self) -> Result<Vec<CampaignRow>, StoreError>;
    fn campaign_progress(&self, id: i64) -> Result<CampaignProgress, StoreError>;
    /// Moves a campaign from one of the states `from` to `state` (with a waiting reason),
    /// atomically: false when it is in none of them (unknown, or changed since the caller
    /// looked: an admin's pause is never overwritten by the runner, nor the runner's
    /// completion by a late pause).
    fn set_campaign_state(
        &self,
        id: i64,
        from: &'static [&'static str],
        state: &str,
        waiting: Option<String>,
    ) -> StoreFuture<'_, bool>;
    /// Claims up to `max` queued recipients in upload order: opted-out ones are skipped,
    /// the others get their outbox row, until the messaging limit is reached.
    fn claim_recipients(&self, claim: Claim) -> StoreFuture<'_, Claimed>;
    /// The campaign whose message this user got last since `since_ms`.
    fn campaign_contact(
        &self,
        endpoint: &str,
        user: &str,
        since_ms: u64,
    ) -> Result<Option<CampaignContact>, StoreError>;

    /// Records an opt-out; true when it is new.
    fn opt_out(&self, endpoint: &str, user: &str, reason: &str) -> StoreFuture<'_, bool>;
    /// Removes an opt-out; true when there was one.
    fn opt_in(&self, endpoint: &str, user: &str) -> StoreFuture<'_, bool>;
    fn opt_outs(&self, endpoint: &str) -> Result<Vec<OptOut>, StoreError>;

    /// Bot replies counted for an endpoint in a month (`YYYY-MM`).
    fn replies_in_month(&self, endpoint: &str, month: &str) -> Result<u64, StoreError>;
    /// Whether this user was already told the quota is used up this month.
    fn quota_told(&self, endpoint: &str, month: &str, user: &str) -> Result<bool, StoreError>;
}
