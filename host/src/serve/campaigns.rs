//! The campaign stage: every tick, the business module's [`Runner`] claims the recipients
//! due at each endpoint's pace (within the portfolio's messaging limit) and their outbox
//! rows go to the sender; now and then campaign progress is copied into the metrics.
//!
//! This stage holds the handles (store, endpoints, business state, sender, metrics); the
//! rules (pacing, limits, once per recipient) are `crate::business::campaigns`, called with
//! narrow arguments.

use std::sync::Arc;
use std::time::Duration;

use crate::business::campaigns::{Lane, Runner};
use crate::clock::now_ms;

use super::Shared;

/// How often the campaign runner looks at its campaigns.
const CAMPAIGN_TICK: Duration = Duration::from_millis(250);
/// How often campaign progress is copied into the metrics.
const METRICS_EVERY: u32 = 20;

/// Where an endpoint's campaign messages go out from now; `None` while it is not served.
fn lane(shared: &Shared, endpoint: &str) -> Option<Lane> {
    let endpoint = shared.endpoints.get(endpoint)?;
    crate::business::campaigns::lane(
        &endpoint.config,
        &endpoint.business,
        &shared.business.catalogue,
    )
}

/// Runs the campaigns until shutdown.
pub async fn campaign_loop(shared: Arc<Shared>) {
    let mut runner = Runner::new();
    let mut tick = tokio::time::interval(CAMPAIGN_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = shared.stop_signal();
    let mut rounds = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopping.changed() => {}
        }
        if shared.is_stopping() {
            return;
        }
        let lanes = |id: &str| lane(&shared, id);
        match runner.tick(shared.store.as_ref(), now_ms(), &lanes).await {
            Ok(done) => {
                if !done.rows.is_empty() {
                    shared.sender.enqueue(done.rows);
                }
            }
            Err(e) => tracing::warn!("campaign runner (retrying): {e}"),
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(METRICS_EVERY) {
            campaign_metrics(&shared);
        }
    }
}

fn campaign_metrics(shared: &Shared) {
    let Ok(campaigns) = shared.store.campaigns(None) else {
        return;
    };
    for c in campaigns.iter().filter(|c| {
        c.finished_ms
            .is_none_or(|f| now_ms().saturating_sub(f) < 10 * 60 * 1000)
    }) {
        let Ok(p) = shared.store.campaign_progress(c.id) else {
            continue;
        };
        let id = c.id.to_string();
        for (state, n) in [
            ("queued", p.queued),
            ("sending", p.sending),
            ("sent", p.sent),
            ("delivered", p.delivered),
            ("read", p.read),
            ("failed", p.failed),
            ("opted_out", p.opted_out),
        ] {
            shared
                .metrics
                .campaign_recipients
                .with_label_values(&[c.endpoint.as_str(), id.as_str(), state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
