//! Campaigns: a template sent to many recipients, paced and limited, exactly once each.
//!
//! - **Upload** ([`super::upload`] reads it within bounds, [`parse_recipients`] checks
//!   it): CSV (a `to` column plus one column per value:
//!   `1`, `body.2`, `first_name`, `header`, `button.1`) or JSON
//!   (`[{"to": "…", "values": {…}}]`). Numbers are normalised to digits; a number given
//!   twice is sent once. Each recipient's values are built into the template send and
//!   checked against the stored template *before* the campaign is stored, so a bad row
//!   refuses the whole upload with its line number and nothing is sent.
//! - **Runner** ([`Runner::tick`]): every tick, each running campaign may claim as many
//!   recipients as its number's pace allows (`throughput_per_second` ×
//!   `campaign_share`%, a token bucket with one second of burst). Claiming is one store
//!   transaction ([`crate::store::business::BusinessStore::claim_recipients`]): opted-out
//!   users are skipped, the portfolio's messaging limit (unique users per moving 24 hours)
//!   stops the claim, and each claimed recipient gets its outbox row. The sender then paces
//!   the whole number again (campaign and conversations together) and retries as for any
//!   reply. A claimed recipient is never claimed again, so neither a retry nor a restart
//!   sends twice.
//! - A campaign stopped by the messaging limit waits (`waiting: messaging_limit`) and is
//!   tried again every minute; the moving window frees users as their 24 hours pass.
//!
//! The runner takes the time as an argument, so tests drive it with a controlled clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::EndpointConfig;
use crate::plugins::types::Business;
use crate::store::business::{Claim, Claimed, NewRecipient};
use crate::store::{OutboxRow, Store, StoreError};

use super::templates::{Catalogue, TemplateSpec};
use super::upload::Recipients;

/// Most recipients claimed by one store call.
const CLAIM_BATCH: usize = 1_000;
/// A campaign stopped by the messaging limit is tried again after this long.
const LIMITED_RETRY_MS: u64 = 60_000;

/// One recipient as uploaded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub to: String,
    /// Value by column; the keys of a CSV upload's rows are its header's, shared.
    #[serde(default)]
    pub values: BTreeMap<Arc<str>, String>,
}

/// What an upload holds, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub recipients: Vec<NewRecipient>,
    /// Numbers given more than once (sent once).
    pub duplicates: usize,
}

/// A number as digits only (`+1 (555) 010-0` → `15550100`), or why it is not one.
pub fn normalise_number(raw: &str) -> Result<String, String> {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '+'))
        .collect();
    if digits.len() < 6 || digits.len() > 15 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{raw}` is not a phone number in international format"
        ));
    }
    Ok(digits)
}

/// Builds every recipient's send from the template; the first bad row refuses the upload.
/// Rows are expanded one at a time (see [`super::upload`]).
pub fn parse_recipients(spec: &TemplateSpec, rows: Recipients) -> Result<Parsed, String> {
    if rows.is_empty() {
        return Err("the campaign has no recipients".into());
    }
    let mut seen = HashSet::new();
    let mut parsed = Parsed {
        recipients: Vec::with_capacity(rows.len()),
        duplicates: 0,
    };
    for (line, upload) in rows.into_rows() {
        let at = |e: String| format!("recipient {line}: {e}");
        let number = normalise_number(&upload.to).map_err(at)?;
        let output = spec.build(&upload.values).map_err(at)?;
        if !seen.insert(number.clone()) {
            parsed.duplicates += 1;
            continue;
        }
        let user = crate::plugins::types::User {
            user_id: None,
            phone: Some(number.clone()),
            name: None,
            username: None,
        };
        let output = crate::plugins::types::BotOutput::Template(output);
        parsed.recipients.push(NewRecipient {
            recipient: number,
            user_json: serde_json::to_string(&user).map_err(|e| e.to_string())?,
            output: serde_json::to_string(&output).map_err(|e| e.to_string())?,
        });
    }
    Ok(parsed)
}

/// Where a campaign's messages go out from, as the host knows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// JSON `Business`.
    pub business: String,
    /// Whose messaging limit the sends count against.
    pub portfolio: String,
    /// Unique users per 24 hours; `None`: unlimited.
    pub tier_limit: Option<u64>,
    /// Campaign messages per second.
    pub per_second: f64,
}

/// Where an endpoint's campaign messages go out from now: its business identity, the
/// portfolio whose messaging limit they count against and its share of the number's
/// throughput. `None` while it cannot send (disabled, or no access token).
pub fn lane(config: &EndpointConfig, business: &Business, catalogue: &Catalogue) -> Option<Lane> {
    if !config.enabled || config.access_token.is_none() {
        return None;
    }
    let business = serde_json::to_string(business).ok()?;
    // From memory: this runs for every live campaign on every tick.
    let (portfolio, tier) = catalogue.limit_of(config);
    Some(Lane {
        business,
        portfolio,
        tier_limit: tier_limit(tier.as_deref()),
        per_second: f64::from(config.throughput_per_second) * f64::from(config.campaign_share)
            / 100.0,
    })
}

/// Unique users per moving 24 hours for Meta's tier names (older names included).
pub fn tier_limit(tier: Option<&str>) -> Option<u64> {
    match tier.unwrap_or("TIER_250") {
        "TIER_50" => Some(50),
        "TIER_250" => Some(250),
        "TIER_1K" => Some(1_000),
        "TIER_2K" => Some(2_000),
        "TIER_10K" => Some(10_000),
        "TIER_100K" => Some(100_000),
        "TIER_UNLIMITED" | "UNLIMITED" => None,
        // An unknown name: the most careful tier.
        _ => Some(250),
    }
}

/// A token bucket: `per_second` tokens a second, at most one second's worth saved.
#[derive(Debug, Clone, PartialEq)]
struct Pacer {
    tokens: f64,
    last_ms: u64,
}

impl Pacer {
    fn new(now_ms: u64) -> Pacer {
        Pacer {
            tokens: 0.0,
            last_ms: now_ms,
        }
    }

    fn allowance(&mut self, now_ms: u64, per_second: f64) -> usize {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * per_second).min(per_second.max(1.0));
        self.tokens.floor() as usize
    }

    fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }
}

/// What one tick did, for the loop and the tests.
#[derive(Debug, Default)]
pub struct Tick {
    /// New outbox rows, for the sender.
    pub rows: Vec<OutboxRow>,
    /// Campaigns whose state or waiting reason changed.
    pub changed: usize,
}

/// Runs the campaigns: started when due, paced, limited, completed.
#[derive(Default)]
pub struct Runner {
    pacers: HashMap<i64, Pacer>,
    /// Campaign → not before this time (messaging limit reached).
    resume_at: HashMap<i64, u64>,
}

impl Runner {
    pub fn new() -> Runner {
        Runner::default()
    }

    /// One round at time `now_ms`. `lane` says where an endpoint's campaign goes out from
    /// (`None`: the endpoint is not served now, so its campaigns wait).
    pub async fn tick(
        &mut self,
        store: &dyn Store,
        now_ms: u64,
        lane: &(dyn Fn(&str) -> Option<Lane> + Sync),
    ) -> Result<Tick, StoreError> {
        let mut tick = Tick::default();
        let campaigns = store.live_campaigns()?;
        let live: HashSet<i64> = campaigns.iter().map(|c| c.id).collect();
        self.pacers.retain(|id, _| live.contains(id));
        self.resume_at.retain(|id, _| live.contains(id));
        for c in campaigns.iter().filter(|c| live.contains(&c.id)) {
            if c.state == "scheduled" {
                if c.start_ms > now_ms {
                    continue;
                }
                if !store
                    .set_campaign_state(c.id, &["scheduled"], "running", None)
                    .await?
                {
                    // Paused or cancelled since it was read.
                    continue;
                }
                tick.changed += 1;
            }
            let Some(lane) = lane(&c.endpoint) else {
                let waiting = Some("endpoint_unavailable".to_string());
                if c.waiting != waiting
                    && store
                        .set_campaign_state(c.id, &["running"], "running", waiting)
                        .await?
                {
                    tick.changed += 1;
                }
                continue;
            };
            if self.resume_at.get(&c.id).is_some_and(|t| *t > now_ms) {
                continue;
            }
            let pacer = self
                .pacers
                .entry(c.id)
                .or_insert_with(|| Pacer::new(now_ms));
            let allowed = pacer.allowance(now_ms, lane.per_second);
            if allowed == 0 {
                continue;
            }
            let claimed: Claimed = store
                .claim_recipients(Claim {
                    campaign: c.id,
                    endpoint: c.endpoint.clone(),
                    business: lane.business.clone(),
                    portfolio: lane.portfolio.clone(),
                    tier_limit: lane.tier_limit,
                    now_ms,
                    max: allowed.min(CLAIM_BATCH),
                })
                .await?;
            if claimed.stopped {
                continue;
            }
            pacer.spend(claimed.rows.len());
            let waiting = claimed.limited.then(|| "messaging_limit".to_string());
            if claimed.limited {
                self.resume_at.insert(c.id, now_ms + LIMITED_RETRY_MS);
            }
            let (state, waiting) = if claimed.remaining == 0 {
                ("completed", None)
            } else {
                ("running", waiting)
            };
            if (state == "completed" || waiting != c.waiting)
                && store
                    .set_campaign_state(c.id, &["running"], state, waiting)
                    .await?
            {
                tick.changed += 1;
            }
            tick.rows.extend(claimed.rows);
        }
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(
            normalise_number("+1 (555) 010-0123").unwrap(),
            "15550100123"
        );
        assert!(normalise_number("call me").is_err());
        assert!(normalise_number("12").is_err());
    }

    #[test]
    fn the_pacer_allows_its_rate_and_one_second_of_burst() {
        let mut p = Pacer::new(0);
        assert_eq!(p.allowance(0, 64.0), 0);
        assert_eq!(p.allowance(500, 64.0), 32);
        p.spend(32);
        assert_eq!(p.allowance(10_000, 64.0), 64, "burst capped at a second");
    }

    #[test]
    fn tiers_map_to_unique_users() {
        assert_eq!(tier_limit(Some("TIER_2K")), Some(2_000));
        assert_eq!(tier_limit(None), Some(250));
        assert_eq!(tier_limit(Some("TIER_UNLIMITED")), None);
    }
}

/// A whole campaign through the real store with a controlled clock: 10,000 recipients,
/// the number's campaign pace, a TIER_2K portfolio, opt-outs, and a restart half-way.
#[cfg(test)]
mod campaign_run {
    use std::collections::HashSet;

    use super::*;
    use crate::store::OutboxStore;
    use crate::store::business::{BusinessStore, NewCampaign, StoredTemplate};
    use crate::store::sqlite::SqliteStore;

    const START: u64 = 1_800_000_000_000;
    const DAY: u64 = 24 * 60 * 60 * 1000;
    const PER_SECOND: f64 = 64.0; // 80/s × 80 %

    fn spec() -> TemplateSpec {
        TemplateSpec::read(StoredTemplate {
            account: "waba".into(),
            name: "promo".into(),
            language: "en_US".into(),
            template_id: Some("1".into()),
            category: Some("MARKETING".into()),
            status: "APPROVED".into(),
            quality: None,
            components: r#"[{"type":"BODY","text":"Hi {{1}}, 10% off today"}]"#.into(),
            updated_ms: 0,
        })
    }

    fn lane(_: &str) -> Option<Lane> {
        Some(Lane {
            business: r#"{"phone_number_id":"100","display_number":null,"account_id":"waba"}"#
                .into(),
            portfolio: "portfolio-1".into(),
            tier_limit: tier_limit(Some("TIER_2K")),
            per_second: PER_SECOND,
        })
    }

    /// A fresh store (and its directory) holding one campaign of `n` recipients for shop,
    /// starting at [`START`].
    async fn store_with_campaign(name: &str, n: usize) -> (SqliteStore, i64, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "plugboard-campaign-{name}-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        let store = SqliteStore::open_in(&dir).expect("store");
        let rows: Vec<Upload> = (0..n)
            .map(|i| Upload {
                to: format!("+1555{i:07}"),
                values: [(Arc::from("1"), format!("User {i}"))].into(),
            })
            .collect();
        let parsed = parse_recipients(&spec(), Recipients::Json(rows)).expect("valid upload");
        let id = store
            .create_campaign(
                NewCampaign {
                    endpoint: "shop".into(),
                    name: "black friday".into(),
                    template: "promo".into(),
                    language: "en_US".into(),
                    start_ms: START,
                },
                parsed.recipients,
            )
            .await
            .expect("created");
        (store, id, dir)
    }

    /// An admin's pause that lands between the runner's read of the live campaigns and its
    /// writes: the runner's claim takes nothing and its state writes do not apply, so the
    /// campaign stays paused (not completed, not running) until it is resumed.
    #[tokio::test]
    async fn a_pause_during_a_tick_wins_over_the_runner() {
        let (store, id, dir) = store_with_campaign("pause", 100).await;
        let mut runner = Runner::new();
        // The first tick starts it (its pacer starts empty), the next claims a quarter
        // second's worth: 16 of the 100.
        let start = runner.tick(&store, START, &lane).await.expect("tick");
        assert!(start.rows.is_empty());
        let first = runner.tick(&store, START + 250, &lane).await.expect("tick");
        assert_eq!(first.rows.len(), 16);
        let sent = first.rows.len();
        // The runner has read the campaign as running; now the admin pauses it.
        let running = store.campaign(id).expect("read").expect("campaign");
        assert_eq!(running.state, "running");
        assert!(
            store
                .set_campaign_state(id, &["scheduled", "running"], "paused", None)
                .await
                .expect("pause")
        );
        // What the runner then does with its stale view.
        let claim = store
            .claim_recipients(Claim {
                campaign: id,
                endpoint: "shop".into(),
                business: "{}".into(),
                portfolio: "portfolio-1".into(),
                tier_limit: None,
                now_ms: START + 2_000,
                max: 100,
            })
            .await
            .expect("claim");
        assert!(claim.stopped && claim.rows.is_empty(), "{claim:?}");
        for (state, waiting) in [("completed", None), ("running", Some("messaging_limit"))] {
            let moved = store
                .set_campaign_state(id, &["running"], state, waiting.map(String::from))
                .await
                .expect("write");
            assert!(!moved, "the runner overwrote the pause with {state}");
        }
        let paused = store.campaign(id).expect("read").expect("campaign");
        assert_eq!(
            (paused.state.as_str(), paused.finished_ms),
            ("paused", None)
        );
        // Paused: later ticks leave it alone.
        let idle = runner
            .tick(&store, START + 60_000, &lane)
            .await
            .expect("tick");
        assert!(idle.rows.is_empty());
        // Resumed, it goes on with the recipients it has not sent yet, and completes.
        assert!(
            store
                .set_campaign_state(id, &["paused"], "scheduled", None)
                .await
                .expect("resume")
        );
        let mut claimed: HashSet<String> = first.rows.into_iter().map(|r| r.conversation).collect();
        let mut now = START + 120_000;
        while store.campaign(id).expect("read").expect("campaign").state != "completed" {
            assert!(
                now < START + 600_000,
                "the resumed campaign does not complete"
            );
            let tick = runner.tick(&store, now, &lane).await.expect("tick");
            for row in tick.rows {
                assert!(claimed.insert(row.conversation), "claimed twice");
            }
            now += 250;
        }
        assert_eq!(claimed.len(), 100, "{sent} before the pause");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn ten_thousand_recipients_paced_limited_and_sent_once() {
        let (store, id, dir) = store_with_campaign("ten-thousand", 10_000).await;
        for i in [5, 2_500, 9_999] {
            store
                .opt_out("shop", &format!("1555{i:07}"), "stop")
                .await
                .expect("opt-out");
        }

        // Before its start time nothing is claimed.
        let mut runner = Runner::new();
        let early = runner
            .tick(&store, START - 1_000, &lane)
            .await
            .expect("tick");
        assert!(early.rows.is_empty());

        let mut now = START;
        let mut claimed: Vec<(u64, String)> = Vec::new();
        let mut restarted = false;
        while now < START + 10 * DAY {
            let tick = runner.tick(&store, now, &lane).await.expect("tick");
            for row in tick.rows {
                claimed.push((now, row.conversation));
            }
            let state = store.campaign(id).expect("read").expect("campaign");
            if state.state == "completed" {
                break;
            }
            // A restart half-way: a new runner knows nothing but the store.
            if !restarted && claimed.len() >= 5_000 {
                runner = Runner::new();
                restarted = true;
            }
            // Waiting for the messaging limit: jump ahead a minute at a time.
            now += if state.waiting.as_deref() == Some("messaging_limit") {
                60_000
            } else {
                250
            };
        }
        assert!(restarted);
        let campaign = store.campaign(id).expect("read").expect("campaign");
        assert_eq!(campaign.state, "completed", "{campaign:?}");

        // Every recipient but the three who opted out, each exactly once.
        assert_eq!(claimed.len(), 9_997);
        let unique: HashSet<&String> = claimed.iter().map(|(_, r)| r).collect();
        assert_eq!(unique.len(), 9_997, "a recipient was claimed twice");
        assert!(!unique.contains(&"15550002500".to_string()));
        let progress = store.campaign_progress(id).expect("progress");
        assert_eq!(
            (progress.total, progress.opted_out, progress.sending),
            (10_000, 3, 9_997)
        );
        let outbox = store.pending_outbox(20_000).await.expect("outbox");
        assert_eq!(outbox.len(), 9_997);

        // The pace: never more than one second's burst ahead of 64 per second.
        let mut window_start = claimed[0].0;
        let mut in_window = 0usize;
        for (at, _) in &claimed {
            if *at >= window_start + 1_000 {
                window_start = *at;
                in_window = 0;
            }
            in_window += 1;
            assert!(
                in_window <= 2 * PER_SECOND as usize,
                "{in_window} in one second at {at}"
            );
        }
        // The limit: in any moving 24 hours, at most 2,000 unique users.
        for (i, (at, _)) in claimed.iter().enumerate() {
            let within = claimed[i..]
                .iter()
                .take_while(|(t, _)| *t < at + DAY)
                .count();
            assert!(within <= 2_000, "{within} users within 24 h from {at}");
        }
        // 9,997 users at 2,000 a day: the fifth day's window sends the last ones.
        let last = claimed.last().map(|(t, _)| *t).unwrap_or_default();
        assert!(
            last > START + 4 * DAY && last < START + 5 * DAY,
            "last at +{} ms",
            last - START
        );
        // The first 2,000 went out at the pace: about 31 s, not at once.
        let first_day = claimed[1_999].0 - START;
        assert!((29_000..=33_000).contains(&first_day), "{first_day} ms");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
