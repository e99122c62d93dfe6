//! Logging for `plugboard serve`: installs the tracing subscriber (text or JSON lines on
//! stderr, filtered by `RUST_LOG`).
//!
//! Masking personal data in log fields lives in the [`crate::pii`] leaf; it is re-exported
//! here for the stages that already name `logging::phone`.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

pub use crate::config::LogFormat;
pub use crate::pii::{Masked, PiiKind, mask_pii, phone, set_mask_pii, text};

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` picks
/// human-readable text or one JSON object per line. Safe to call more than once (tests, a
/// CLI that already installed one): later calls leave the first subscriber in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The error only says a global subscriber already exists, which is fine.
    let _ = subscriber(format, filter, std::io::stderr).try_init();
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture it).
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, filter: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let sub = subscriber(format, EnvFilter::new(filter), move || writer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(user = %Masked("15551234567", PiiKind::Phone), "hello");
            tracing::debug!("filtered out");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let out = capture(LogFormat::Json, "info");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["fields"]["message"], "hello");
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn text_format_and_filter() {
        let out = capture(LogFormat::Text, "info");
        assert!(out.contains("hello"), "{out}");
        assert!(!out.contains("filtered out"));
        let out = capture(LogFormat::Text, "warn");
        assert!(out.is_empty(), "{out}");
    }
}
