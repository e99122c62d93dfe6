//! Personal data in log lines: phone numbers and message texts masked.
//!
//! Phone numbers and message texts pass through [`phone`] and [`text`] before they reach a
//! log line: `tracing::info!(user = %pii::phone(&wa_id), body = %pii::text(&t))`.
//! Whether they are masked is one process-wide switch ([`set_mask_pii`], from the config's
//! `mask_pii`, on by default): logs are shipped to places with wider access than the store,
//! and a user's number and words are theirs.
//!
//! A leaf: it imports nothing of the crate, so the conversation core, the store and the
//! stages mask the same way without reaching up into `serve`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// On until the config says otherwise: a log line written before the config is read must
/// not leak either.
static MASK_PII: AtomicBool = AtomicBool::new(true);

/// Turns masking of [`phone`] and [`text`] values on or off for the whole process.
pub fn set_mask_pii(on: bool) {
    MASK_PII.store(on, Ordering::Relaxed);
}

/// Whether [`phone`] and [`text`] values are currently masked.
pub fn mask_pii() -> bool {
    MASK_PII.load(Ordering::Relaxed)
}

/// What kind of personal data a [`Masked`] value holds, which decides how it is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiKind {
    /// A phone number or WhatsApp id: all but the last 4 characters become `*`.
    Phone,
    /// Free text from or to a user: only its length in characters is shown.
    Text,
}

/// A value that prints masked while [`mask_pii`] is on and as is otherwise. Build it with
/// [`phone`] or [`text`]; `Debug` prints the same as `Display`, so `?value` is safe too.
#[derive(Clone, Copy)]
pub struct Masked<'a>(pub &'a str, pub PiiKind);

/// A phone number for a log line: `*******4567` when masking.
pub fn phone(s: &str) -> Masked<'_> {
    Masked(s, PiiKind::Phone)
}

/// A message text for a log line: `[42 chars]` when masking.
pub fn text(s: &str) -> Masked<'_> {
    Masked(s, PiiKind::Text)
}

impl Masked<'_> {
    /// Writes the value masked or not, independent of the global switch.
    fn write(&self, f: &mut fmt::Formatter<'_>, mask: bool) -> fmt::Result {
        let Masked(value, kind) = *self;
        if !mask {
            return f.write_str(value);
        }
        match kind {
            PiiKind::Phone => {
                let count = value.chars().count();
                // A value of 4 characters or fewer would be shown whole: hide all of it.
                let keep = if count > 4 { 4 } else { 0 };
                for _ in 0..count - keep {
                    f.write_str("*")?;
                }
                let tail: String = value.chars().skip(count - keep).collect();
                f.write_str(&tail)
            }
            PiiKind::Text => write!(f, "[{} chars]", value.chars().count()),
        }
    }
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, mask_pii())
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, mask_pii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders with an explicit switch, so tests do not race on the global one.
    fn render(m: Masked<'_>, mask: bool) -> String {
        struct With<'a>(Masked<'a>, bool);
        impl fmt::Display for With<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, self.1)
            }
        }
        With(m, mask).to_string()
    }

    #[test]
    fn phone_keeps_last_four_digits() {
        assert_eq!(render(phone("15551234567"), true), "*******4567");
        assert_eq!(render(phone("+15551234567"), true), "********4567");
        assert_eq!(render(phone("1234"), true), "****");
        assert_eq!(render(phone(""), true), "");
        assert_eq!(render(phone("15551234567"), false), "15551234567");
    }

    #[test]
    fn text_shows_only_its_length() {
        let t = "I need help with my order number 12345678";
        assert_eq!(
            render(text(t), true),
            format!("[{} chars]", t.chars().count())
        );
        assert_eq!(render(text("héllo"), true), "[5 chars]");
        assert_eq!(render(text(t), false), t);
    }

    #[test]
    fn global_switch_drives_display_and_debug() {
        // The only test that touches the global switch; it restores the default.
        set_mask_pii(true);
        assert!(mask_pii());
        assert_eq!(phone("15551234567").to_string(), "*******4567");
        assert_eq!(format!("{:?}", text("hello")), "[5 chars]");
        set_mask_pii(false);
        assert_eq!(phone("15551234567").to_string(), "15551234567");
        assert_eq!(format!("{:?}", text("hello")), "hello");
        set_mask_pii(true);
    }
}
