//! Example transformer hook: masks payment card numbers and phone numbers in text input
//! before the flow (and its history, logs and transcripts) ever sees them.
//!
//! - A card number is 13–19 digits, optionally grouped by spaces or dashes, that passes the
//!   Luhn check: every digit but the last four becomes `•`, the grouping stays
//!   (`4111 1111 1111 1111` → `•••• •••• •••• 1111`).
//! - A phone number is 8–15 digits after a `+`, or 10–15 digits without one, optionally
//!   grouped by spaces, dashes, dots or parentheses: every digit but the last two becomes `•`
//!   (`+49 170 1234567` → `+•• ••• •••••67`).
//!
//! Shorter numbers (order numbers, dates, times, amounts) are left alone. When something was
//! masked the hook sets the session data `pii_masked` to `true`. Outputs pass through.
//! The hook never panics: every input is text it scans, nothing more.

#![allow(clippy::crate_in_macro_def)]

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plugboard:channel/transformer-hook@0.1.0",
    additional_derives: [PartialEq],
});

use exports::plugboard::channel::transformer::{InputAction, InputResult};
use plugboard::channel::types::{EditedContent, InboundMessage, MessageContent};

/// The mask character.
pub const MASK: char = '•';

/// What [`mask_text`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Masked {
    pub cards: usize,
    pub phones: usize,
}

impl Masked {
    pub fn any(&self) -> bool {
        self.cards + self.phones > 0
    }
}

/// Characters that may separate digit groups of a number.
const SEPARATORS: &[char] = &[' ', '-', '.', '(', ')'];

/// Masks card and phone numbers in `text`.
pub fn mask_text(text: &str) -> (String, Masked) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut masked = Masked::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_word = i > 0 && chars[i - 1].is_alphanumeric();
        let next_is_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        let starts =
            !after_word && (c.is_ascii_digit() || ((c == '+' || c == '(') && next_is_digit));
        if !starts {
            out.push(c);
            i += 1;
            continue;
        }
        let end = run_end(&chars, i);
        let run = &chars[i..end];
        // A number glued to letters ("A1234567890B") is an identifier, not a number.
        let glued = chars.get(end).is_some_and(|n| n.is_alphanumeric());
        match (!glued).then(|| classify(run)).flatten() {
            Some(Kind::Card) => {
                masked.cards += 1;
                out.extend(mask_digits(run, 4));
            }
            Some(Kind::Phone) => {
                masked.phones += 1;
                out.extend(mask_digits(run, 2));
            }
            None => out.extend(run),
        }
        i = end;
    }
    (out, masked)
}

/// End (exclusive) of the number run starting at `start`: digits joined by at most two
/// separator characters at a time, ending on a digit.
fn run_end(chars: &[char], start: usize) -> usize {
    let mut k = start;
    if matches!(chars.get(k), Some('+') | Some('(')) {
        k += 1;
    }
    let mut end = k;
    while k < chars.len() {
        if chars[k].is_ascii_digit() {
            k += 1;
            end = k;
            continue;
        }
        let mut s = k;
        while s < chars.len() && s - k < 2 && SEPARATORS.contains(&chars[s]) {
            s += 1;
        }
        if s > k && chars.get(s).is_some_and(|d| d.is_ascii_digit()) {
            k = s;
        } else {
            break;
        }
    }
    end
}

enum Kind {
    Card,
    Phone,
}

fn classify(run: &[char]) -> Option<Kind> {
    let digits: Vec<u32> = run.iter().filter_map(|c| c.to_digit(10)).collect();
    let plus = run.first() == Some(&'+');
    let card_separators = run
        .iter()
        .all(|c| c.is_ascii_digit() || *c == ' ' || *c == '-');
    if !plus && card_separators && (13..=19).contains(&digits.len()) && luhn(&digits) {
        return Some(Kind::Card);
    }
    let phone_len = if plus { 8..=15 } else { 10..=15 };
    phone_len.contains(&digits.len()).then_some(Kind::Phone)
}

/// The Luhn checksum of a card number.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The run with every digit but the last `keep` replaced by [`MASK`].
fn mask_digits(run: &[char], keep: usize) -> impl Iterator<Item = char> + '_ {
    let total = run.iter().filter(|c| c.is_ascii_digit()).count();
    let mut seen = 0;
    run.iter().map(move |&c| {
        if c.is_ascii_digit() {
            seen += 1;
            if seen + keep <= total { MASK } else { c }
        } else {
            c
        }
    })
}

/// `on-input`: the message with card and phone numbers masked in its text (a plain text or
/// an edit to text), and `pii_masked` set in the session; any other message is kept.
pub fn mask_input(message: InboundMessage) -> InputResult {
    let mut message = message;
    let text = match &mut message.content {
        MessageContent::Text(text) => Some(text),
        MessageContent::Edit(edit) => match &mut edit.content {
            EditedContent::Text(text) => Some(text),
            _ => None,
        },
        _ => None,
    };
    let Some(text) = text else {
        return keep();
    };
    let (masked_text, masked) = mask_text(text);
    if !masked.any() {
        return keep();
    }
    *text = masked_text;
    InputResult {
        action: InputAction::Rewrite(message),
        set_data: vec![("pii_masked".to_string(), "true".to_string())],
    }
}

fn keep() -> InputResult {
    InputResult {
        action: InputAction::Keep,
        set_data: Vec::new(),
    }
}

/// The component's export glue (only in the wasm build: the export names do not link
/// natively).
#[cfg(target_arch = "wasm32")]
mod component {
    use super::exports::plugboard::channel::transformer::{Guest, InputResult, SessionView};
    use super::plugboard::channel::types::{BotOutput, InboundMessage};

    struct MaskPii;

    impl Guest for MaskPii {
        fn on_input(message: InboundMessage, _session: SessionView) -> Result<InputResult, String> {
            Ok(super::mask_input(message))
        }

        fn on_output(output: BotOutput, _session: SessionView) -> Result<Vec<BotOutput>, String> {
            Ok(vec![output])
        }

        fn on_execution_finished(
            _outputs: Vec<BotOutput>,
            _session: SessionView,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    super::export!(MaskPii with_types_in super);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        mask_text(text).0
    }

    #[test]
    fn masks_cards_grouped_or_not() {
        assert_eq!(masked("4111 1111 1111 1111"), "•••• •••• •••• 1111");
        assert_eq!(masked("4111-1111-1111-1111"), "••••-••••-••••-1111");
        assert_eq!(masked("card 4111111111111111."), "card ••••••••••••1111.");
        assert_eq!(masked("amex 378282246310005"), "amex •••••••••••0005");
    }

    #[test]
    fn masks_phones() {
        assert_eq!(masked("+49 170 1234567"), "+•• ••• •••••67");
        assert_eq!(masked("call (555) 123-4567"), "call (•••) •••-••67");
        assert_eq!(masked("+1.555.123.4567"), "+•.•••.•••.••67");
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in [
            "order 12345 on 2024-11-22 at 10:30",
            "4111 1111 1111 1112 fails Luhn and has 16 digits",
            "A1234567890B",
            "price 1.234,56 EUR",
            "",
            "+",
            "(",
            "•••",
            "9999999999999999999999999999",
        ] {
            assert_eq!(masked(text), text, "{text}");
        }
    }

    #[test]
    fn rewrites_text_and_edits_only() {
        let message = |content| InboundMessage {
            id: "m".to_string(),
            timestamp: 0,
            user: plugboard::channel::types::User {
                user_id: None,
                phone: None,
                name: None,
                username: None,
            },
            context: None,
            referral: None,
            content,
        };
        let result = mask_input(message(MessageContent::Text(
            "4111111111111111".to_string(),
        )));
        assert_eq!(
            result.action,
            InputAction::Rewrite(message(MessageContent::Text(
                "••••••••••••1111".to_string()
            )))
        );
        let revoke = message(MessageContent::Revoke("4111111111111111".to_string()));
        assert_eq!(mask_input(revoke).action, InputAction::Keep);
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in [
            "+(",
            "1-",
            "1--2",
            "١٢٣٤٥٦٧٨٩٠١٢",
            "🙂4111 1111 1111 1111🙂",
            "((((1",
        ] {
            let _ = mask_text(text);
        }
    }
}
