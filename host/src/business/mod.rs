//! WhatsApp Business: accounts and their numbers, message templates, outbound campaigns,
//! opt-outs and the monthly reply quota.
//!
//! - [`graph`]: the Graph API's management calls (accounts a token reaches, numbers,
//!   webhook subscriptions, templates), paged, with Meta's error codes kept.
//! - [`templates`]: the in-memory template catalogue and the rules a template send meets
//!   before it goes out (flows, agents and campaigns alike; the sender checks once more).
//! - [`upload`]: a campaign's recipient upload (CSV or JSON) read within size, column and
//!   row limits, off the async threads.
//! - [`campaigns`]: recipient uploads and the runner that claims recipients at the
//!   number's pace within the portfolio's messaging limit.
//! - [`BusinessState`]: what the serving host keeps in memory for these (the catalogue,
//!   which endpoints have campaigns, reply counts per month), rebuilt from the store.
//!
//! The admin API (its `accounts` and `campaigns` handlers) and the Webitel-style
//! `GET /webhooks/{endpoint}?whatsapp=…` form call into here; the store keeps it all
//! (`crate::store::business`).

pub mod campaigns;
pub mod graph;
pub mod templates;
pub mod upload;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use crate::store::{Store, StoreError};

use templates::Catalogue;

/// What the serving host keeps in memory about accounts, templates and campaigns.
#[derive(Default)]
pub struct BusinessState {
    pub catalogue: Catalogue,
    /// Endpoints that have (or had) a campaign: only their inbound messages are looked up
    /// for a campaign context, so other endpoints pay nothing.
    campaign_endpoints: RwLock<HashSet<String>>,
    /// Endpoint → (month, bot replies counted), read from the store on first use.
    replies: Mutex<HashMap<String, (String, u64)>>,
}

impl BusinessState {
    /// Reads the catalogue and the campaign endpoints from the store.
    pub fn load(store: &dyn Store) -> Result<BusinessState, StoreError> {
        let state = BusinessState::default();
        state.reload(store)?;
        let endpoints: HashSet<String> = store
            .campaigns(None)?
            .into_iter()
            .map(|c| c.endpoint)
            .collect();
        *state
            .campaign_endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner()) = endpoints;
        Ok(state)
    }

    /// Rebuilds the template catalogue (after a setup, sync, create, delete or webhook).
    pub fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        self.catalogue
            .load(store.accounts()?, store.numbers()?, store.templates(None)?);
        Ok(())
    }

    pub fn note_campaign(&self, endpoint: &str) {
        self.campaign_endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.to_string());
    }

    pub fn has_campaigns(&self, endpoint: &str) -> bool {
        self.campaign_endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(endpoint)
    }

    /// Replies counted for `endpoint` this month (from the store the first time).
    pub fn replies(
        &self,
        store: &dyn Store,
        endpoint: &str,
        month: &str,
    ) -> Result<u64, StoreError> {
        if let Some((m, n)) = self
            .replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint)
            && m == month
        {
            return Ok(*n);
        }
        let n = store.replies_in_month(endpoint, month)?;
        self.replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.to_string(), (month.to_string(), n));
        Ok(n)
    }

    /// Adds committed replies to the in-memory count.
    pub fn add_replies(&self, endpoint: &str, month: &str, n: u64) {
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        let entry = replies
            .entry(endpoint.to_string())
            .or_insert_with(|| (month.to_string(), 0));
        if entry.0 != month {
            *entry = (month.to_string(), 0);
        }
        entry.1 += n;
    }
}

/// Applies account-level webhook items (template status, quality and category changes;
/// a number's quality or messaging-limit change) to the stored accounts, then rebuilds
/// the catalogue. An item for an account the host does not know is only logged.
pub async fn apply_account_events(
    store: &dyn Store,
    business: &BusinessState,
    rows: &[crate::store::EventRow],
) {
    use crate::plugins::types::{Event, EventBody, TemplateChange as Wire};
    use crate::store::business::TemplateChange;

    let mut changed = false;
    for row in rows {
        let Ok(event) = serde_json::from_str::<Event>(&row.body) else {
            tracing::warn!(event = row.id, "an account event cannot be read");
            continue;
        };
        let account = event.business.account_id.clone().unwrap_or_default();
        let result = match &event.body {
            EventBody::Template(t) => {
                let change = match &t.change {
                    Wire::Status(s) => TemplateChange::Status(s.status.clone()),
                    Wire::Quality(q) => TemplateChange::Quality(q.current.clone()),
                    Wire::Category(c) => TemplateChange::Category(c.current.clone()),
                };
                tracing::info!(%account, template = %t.name, language = %t.language, ?change, "template changed at Meta");
                store
                    .update_template(&account, &t.template_id, &t.name, &t.language, change)
                    .await
            }
            EventBody::Number(n) => {
                let digits: String = n
                    .display_number
                    .as_deref()
                    .unwrap_or_default()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                let quality = match n.event.as_str() {
                    "FLAGGED" => Some("RED".to_string()),
                    "UNFLAGGED" => Some("GREEN".to_string()),
                    _ => None,
                };
                tracing::info!(%account, event = %n.event, limit = ?n.messaging_limit, "number changed at Meta");
                store
                    .update_number(&account, &digits, n.messaging_limit.clone(), quality)
                    .await
            }
            _ => Ok(false),
        };
        match result {
            Ok(true) => changed = true,
            Ok(false) => {
                tracing::info!(event = row.id, %account, "account event for nothing stored here (set up and sync the account)");
            }
            Err(e) => tracing::warn!(event = row.id, "cannot apply an account event: {e}"),
        }
    }
    if changed && let Err(e) = business.reload(store) {
        tracing::warn!("cannot reload the template catalogue: {e}");
    }
}
