//! Splitting long text into messages that fit WhatsApp's 4096-character text limit.
//!
//! Lengths are counted in `char`s (Unicode scalar values), which is how Meta counts them
//! closely enough for every script we tested; cuts always land on char boundaries. A part
//! ends at the last paragraph break (`\n\n`) that keeps it at least half full, else at the
//! last line break that does, else at the last whitespace, else the over-long word is cut
//! hard at the limit. Whitespace at a cut is dropped and empty parts are never produced.

/// Splits `text` into trimmed, non-empty parts of at most `limit` chars each.
pub(crate) fn split_text(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // Byte offset just past the first `limit + 1` chars: a break at the char right after
        // the limit still leaves a head of exactly `limit` chars.
        let Some((window_end, _)) = rest.char_indices().nth(limit) else {
            parts.push(rest.to_string());
            break;
        };
        let window = rest.get(..window_end).unwrap_or(rest);
        let (head, tail) = match break_at(window, limit) {
            Some(at) => (rest.get(..at).unwrap_or(""), rest.get(at..).unwrap_or("")),
            None => (window, rest.get(window_end..).unwrap_or("")),
        };
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_string());
        }
        rest = tail.trim_start();
    }
    parts
}

/// The byte offset to cut `window` at (the start of the break), or `None` for a hard cut.
fn break_at(window: &str, limit: usize) -> Option<usize> {
    // A paragraph or line break only counts when the head keeps at least half the limit;
    // otherwise a stray early break would produce a near-empty message.
    let half_full = |at: &usize| {
        window
            .get(..*at)
            .is_some_and(|h| h.chars().count() >= limit / 2)
    };
    window
        .rfind("\n\n")
        .filter(half_full)
        .or_else(|| window.rfind('\n').filter(half_full))
        .or_else(|| window.rfind(char::is_whitespace).filter(|at| *at > 0))
}

#[cfg(test)]
mod tests {
    use super::split_text;

    fn lens(parts: &[String]) -> Vec<usize> {
        parts.iter().map(|p| p.chars().count()).collect()
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("  hello world \n", 11), vec!["hello world"]);
        assert_eq!(split_text("exactly10!", 10), vec!["exactly10!"]);
    }

    #[test]
    fn empty_and_blank_give_no_parts() {
        assert!(split_text("", 10).is_empty());
        assert!(split_text(" \n\n \t", 10).is_empty());
    }

    #[test]
    fn prefers_paragraph_then_line_then_space() {
        let text = "aaaa bbbb\ncc dd\n\neeee ffff";
        // Window of 17 chars holds the paragraph break at 15.
        assert_eq!(split_text(text, 17), vec!["aaaa bbbb\ncc dd", "eeee ffff"]);
        // Window of 12 chars: no paragraph break, the line break at 9 is over half.
        assert_eq!(
            split_text(text, 12),
            vec!["aaaa bbbb", "cc dd", "eeee ffff"]
        );
        // Window of 7: only a space.
        assert_eq!(
            split_text("aaaa bbbb cccc", 7),
            vec!["aaaa", "bbbb", "cccc"]
        );
    }

    #[test]
    fn early_paragraph_break_is_not_preferred() {
        // The paragraph break leaves a 1-char head: cut at the last space instead.
        let parts = split_text("a\n\nbbb ccc ddd eee", 12);
        assert_eq!(parts, vec!["a\n\nbbb ccc", "ddd eee"]);
    }

    #[test]
    fn break_right_after_the_limit_is_used() {
        assert_eq!(split_text("abcde fgh", 5), vec!["abcde", "fgh"]);
    }

    #[test]
    fn long_word_is_cut_hard() {
        assert_eq!(
            split_text("abcdefghij kl", 4),
            vec!["abcd", "efgh", "ij", "kl"]
        );
    }

    #[test]
    fn multibyte_chars_count_as_one_and_cut_on_boundaries() {
        let text = "é".repeat(9) + " " + &"日本".repeat(3);
        let parts = split_text(&text, 5);
        assert_eq!(parts, vec!["ééééé", "éééé", "日本日本日", "本"]);
        let emoji = "😀".repeat(7);
        assert_eq!(lens(&split_text(&emoji, 3)), vec![3, 3, 1]);
    }

    #[test]
    fn parts_never_exceed_the_limit_and_keep_all_words() {
        let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(20);
        let text = [para.as_str(); 5].join("\n\n");
        let parts = split_text(&text, 300);
        assert!(lens(&parts).iter().all(|&n| n > 0 && n <= 300));
        let words: Vec<&str> = text.split_whitespace().collect();
        let rejoined: Vec<String> = parts
            .iter()
            .flat_map(|p| p.split_whitespace().map(str::to_string))
            .collect();
        assert_eq!(words, rejoined);
    }

    proptest::proptest! {
        #[test]
        fn split_invariants(text in "[a-zé日 \n]{0,200}", limit in 1usize..40) {
            let parts = split_text(&text, limit);
            for p in &parts {
                proptest::prop_assert!(!p.trim().is_empty());
                proptest::prop_assert!(p.chars().count() <= limit);
            }
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            proptest::prop_assert_eq!(squash(&text), squash(&parts.concat()));
        }
    }
}
