//! [`WebhookHandover`]: posts handover events as JSON to the endpoint's handover webhook.
//!
//! Failures (no answer, non-2xx) are logged with tracing and otherwise ignored: the
//! conversation must not stall on an agent desk being down. Logs name the event and the
//! conversation but never the URL (webhook URLs often embed a token) or the transcript.

use std::time::Duration;

use super::{HandoverConfig, HandoverEvent, HandoverSink};

/// Deadline for one webhook post unless configured otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WebhookHandover {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl WebhookHandover {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookHandover {
            client: reqwest::Client::new(),
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
        config.webhook_url.as_deref().map(WebhookHandover::new)
    }
}

impl HandoverSink for WebhookHandover {
    async fn post(&self, event: HandoverEvent) {
        let sent = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(&event)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                kind = ?event.kind,
                conversation = %crate::serve::logging::phone(&event.conversation),
                status = response.status().as_u16(),
                "handover webhook refused the event"
            ),
            Err(e) => tracing::warn!(
                kind = ?event.kind,
                conversation = %crate::serve::logging::phone(&event.conversation),
                error = %e.without_url(),
                "handover webhook not reached"
            ),
        }
    }
}
