//! [`WebhookHandover`]: posts handover events as JSON to the endpoint's handover webhook.
//!
//! Failures (no answer, non-2xx) are logged with tracing and otherwise ignored: the
//! conversation must not stall on an agent desk being down. Logs name the event and the
//! conversation but never the URL (webhook URLs often embed a token) or the transcript.
//! Posts go through the egress policy ([`crate::egress`]): an internal address is refused
//! unless `[egress] allow`s it, and redirects are not followed.

use std::time::Duration;

use super::{HandoverConfig, HandoverEvent, HandoverSink};
use crate::egress::Egress;

/// Deadline for one webhook post unless configured otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WebhookHandover {
    egress: Egress,
    url: String,
    timeout: Duration,
}

impl WebhookHandover {
    /// Posts under the default egress policy (no internal address reachable).
    pub fn new(url: impl Into<String>) -> Self {
        WebhookHandover::with_egress(url, Egress::default())
    }

    pub fn with_egress(url: impl Into<String>, egress: Egress) -> Self {
        WebhookHandover {
            egress,
            url: url.into(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configured webhook, if any (`Option<WebhookHandover>` is itself a sink).
    pub fn from_config(config: &HandoverConfig) -> Option<Self> {
        WebhookHandover::from_config_with(config, &Egress::default())
    }

    /// [`WebhookHandover::from_config`] under `egress`.
    pub fn from_config_with(config: &HandoverConfig, egress: &Egress) -> Option<Self> {
        config
            .webhook_url
            .as_deref()
            .map(|url| WebhookHandover::with_egress(url, egress.clone()))
    }
}

impl HandoverSink for WebhookHandover {
    async fn post(&self, event: HandoverEvent) {
        // Refused by the egress policy or not answered: both are "not reached".
        let sent = match self.egress.request(reqwest::Method::POST, &self.url) {
            Ok(request) => request
                .timeout(self.timeout)
                .json(&event)
                .send()
                .await
                .map_err(|e| crate::egress::describe(&e)),
            Err(refused) => Err(refused.to_string()),
        };
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                kind = ?event.kind,
                conversation = %crate::pii::phone(&event.conversation),
                status = response.status().as_u16(),
                "handover webhook refused the event"
            ),
            Err(e) => tracing::warn!(
                kind = ?event.kind,
                conversation = %crate::pii::phone(&event.conversation),
                error = %e,
                "handover webhook not reached"
            ),
        }
    }
}
