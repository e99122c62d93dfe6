//! Prometheus metrics of `plugboard serve`, in a registry owned by [`Metrics`] (not the
//! process-global one, so tests and several servers in one process do not share counters).
//!
//! Every stage holds an `Arc<Metrics>` and updates the public fields directly; the
//! `/metrics` route calls [`Metrics::render`] and answers with [`CONTENT_TYPE`]. All names
//! carry the `plugboard_` namespace, e.g. `plugboard_webhooks_total`.
//!
//! Label values are small closed sets chosen by the host (endpoint ids come from the config
//! file, never from a request), so cardinality stays bounded:
//! - `webhooks_total{endpoint,result}`: accepted, duplicate_handshake, bad_signature,
//!   missing_signature, too_large, unknown_endpoint, store_unavailable, handshake_ok,
//!   handshake_refused;
//! - `events_total{endpoint,kind}`: the store's event kinds (message, status, system, error,
//!   send_failed, account);
//! - `sends_total{endpoint,outcome}`: sent, retry, window_closed, template_fallback, dead,
//!   auth_failed, …;
//! - `queue_depth{queue}`: inbox, events, outbox, dead_letters;
//! - `plugin_call_seconds{plugin,call}`: decode, render, classify, on_input, …;
//! - `ack_seconds`: from request received to the webhook's answer;
//! - `conversations_active`: sessions with a live flow.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

const NAMESPACE: &str = "plugboard";

/// Plugin calls range from a few microseconds (a cached `classify`) to the call deadline.
const PLUGIN_CALL_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// An ack is one durable insert; Meta gives up after a few seconds.
const ACK_BUCKETS: [f64; 13] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The serving metrics and the registry that renders them.
pub struct Metrics {
    pub registry: Registry,
    pub webhooks_total: IntCounterVec,
    pub events_total: IntCounterVec,
    pub sends_total: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub plugin_call_seconds: HistogramVec,
    pub ack_seconds: Histogram,
    pub conversations_active: IntGauge,
    /// Recipients of each live campaign by state (queued, sending, sent, delivered, read,
    /// failed, opted_out).
    pub campaign_recipients: IntGaugeVec,
    /// Webhook items stored as unowned, by receiving endpoint and reason (a fixed set:
    /// `crate::serve::tenancy::Reason`), so the label set stays bounded.
    pub unowned_events_total: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Builds and registers every metric.
    ///
    /// # Panics
    /// Only if the constant metric definitions above are invalid (a bad name or a duplicate),
    /// which is a programming error that the unit tests catch; see [`Metrics::try_new`].
    pub fn new() -> Metrics {
        match Metrics::try_new() {
            Ok(metrics) => metrics,
            Err(e) => panic!("the built-in metric definitions are invalid: {e}"),
        }
    }

    /// [`Metrics::new`] without the panic.
    pub fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let webhooks_total = IntCounterVec::new(
            opts("webhooks_total", "Webhook requests by endpoint and result"),
            &["endpoint", "result"],
        )?;
        let events_total = IntCounterVec::new(
            opts("events_total", "Decoded events by endpoint and kind"),
            &["endpoint", "kind"],
        )?;
        let sends_total = IntCounterVec::new(
            opts(
                "sends_total",
                "Outbound send attempts by endpoint and outcome",
            ),
            &["endpoint", "outcome"],
        )?;
        let queue_depth = IntGaugeVec::new(
            opts("queue_depth", "Rows waiting in each durable queue"),
            &["queue"],
        )?;
        let plugin_call_seconds = HistogramVec::new(
            HistogramOpts::new("plugin_call_seconds", "Duration of plugin calls")
                .namespace(NAMESPACE)
                .buckets(PLUGIN_CALL_BUCKETS.to_vec()),
            &["plugin", "call"],
        )?;
        let ack_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ack_seconds",
                "Time from receiving a webhook to acknowledging it",
            )
            .namespace(NAMESPACE)
            .buckets(ACK_BUCKETS.to_vec()),
        )?;
        let conversations_active = IntGauge::with_opts(opts(
            "conversations_active",
            "Conversations with a live session",
        ))?;

        let campaign_recipients = IntGaugeVec::new(
            opts(
                "campaign_recipients",
                "Recipients of each campaign by delivery state",
            ),
            &["endpoint", "campaign", "state"],
        )?;
        let unowned_events_total = IntCounterVec::new(
            opts(
                "unowned_events_total",
                "Webhook items the receiving endpoint may not act for, by reason \
                 (unknown_number, untrusted_sender, foreign_account): stored, not answered",
            ),
            &["endpoint", "reason"],
        )?;
        registry.register(Box::new(campaign_recipients.clone()))?;
        registry.register(Box::new(unowned_events_total.clone()))?;
        registry.register(Box::new(webhooks_total.clone()))?;
        registry.register(Box::new(events_total.clone()))?;
        registry.register(Box::new(sends_total.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(plugin_call_seconds.clone()))?;
        registry.register(Box::new(ack_seconds.clone()))?;
        registry.register(Box::new(conversations_active.clone()))?;

        Ok(Metrics {
            registry,
            webhooks_total,
            events_total,
            sends_total,
            queue_depth,
            plugin_call_seconds,
            ack_seconds,
            conversations_active,
            campaign_recipients,
            unowned_events_total,
        })
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf) {
            // A scrape must not take the server down; what was encoded is still useful.
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        buf
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_valid() {
        assert!(Metrics::try_new().is_ok());
        // Two instances do not collide: each owns its registry.
        let _a = Metrics::new();
        let _b = Metrics::new();
    }

    #[test]
    fn render_contains_names_after_increments() {
        let m = Metrics::new();
        m.webhooks_total
            .with_label_values(&["demo", "accepted"])
            .inc();
        m.events_total
            .with_label_values(&["demo", "message"])
            .inc_by(2);
        m.sends_total.with_label_values(&["demo", "sent"]).inc();
        m.queue_depth.with_label_values(&["outbox"]).set(3);
        m.plugin_call_seconds
            .with_label_values(&["whatsapp", "decode"])
            .observe(0.000_2);
        m.ack_seconds.observe(0.004);
        m.conversations_active.set(5);

        let text = m.render();
        for needle in [
            r#"plugboard_webhooks_total{endpoint="demo",result="accepted"} 1"#,
            r#"plugboard_events_total{endpoint="demo",kind="message"} 2"#,
            r#"plugboard_sends_total{endpoint="demo",outcome="sent"} 1"#,
            r#"plugboard_queue_depth{queue="outbox"} 3"#,
            r#"plugboard_plugin_call_seconds_bucket{call="decode",plugin="whatsapp",le="0.00025"} 1"#,
            r#"plugboard_plugin_call_seconds_bucket{call="decode",plugin="whatsapp",le="0.00001"} 0"#,
            "plugboard_ack_seconds_count 1",
            "plugboard_conversations_active 5",
            "# TYPE plugboard_ack_seconds histogram",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn unused_vectors_render_nothing_but_do_not_fail() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains("plugboard_conversations_active 0"));
        assert!(!text.contains("plugboard_webhooks_total{"));
        assert!(CONTENT_TYPE.starts_with("text/plain"));
    }
}
