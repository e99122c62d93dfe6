//! Fitting short fields (titles, labels, headers, descriptions) into Meta's length limits.
//!
//! A field over its limit is cut at a char boundary and ends in `…`, so the cut stays
//! visible. Titles that must be unique (reply buttons, list rows) stay unique after cutting:
//! a title that collides with an earlier one gets a ` (2)`, ` (3)`, … suffix, cutting more
//! of the title to make room. Ids are never passed through here: replies match on them.

use std::collections::BTreeSet;

const ELLIPSIS: char = '…';

pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// `s` trimmed, cut to at most `max` chars; a cut text ends in `…`.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    if char_len(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.truncate(out.trim_end().len());
    out.push(ELLIPSIS);
    out
}

/// The trimmed text, or `None` when it is missing or blank.
pub(crate) fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Every title cut to `max` chars, then made unique in order: the first of equal titles
/// keeps its text, later ones get the smallest ` (k)` suffix (k ≥ 2) that is still free,
/// checked against the titles before and after it.
pub(crate) fn unique_titles(titles: &[&str], max: usize) -> Vec<String> {
    let mut out: Vec<String> = titles.iter().map(|t| cut(t, max)).collect();
    let mut taken = BTreeSet::new();
    for i in 0..out.len() {
        let current = out.get(i).cloned().unwrap_or_default();
        if taken.insert(current) {
            continue;
        }
        let original = titles.get(i).copied().unwrap_or("");
        let later: BTreeSet<&String> = out.iter().skip(i + 1).collect();
        // n + 1 distinct suffixes for at most n - 1 other titles: one of them is free.
        let candidate = (2..=titles.len() + 1)
            .map(|k| with_suffix(original, max, &format!(" ({k})")))
            .find(|c| !taken.contains(c) && !later.contains(c))
            .unwrap_or_default();
        taken.insert(candidate.clone());
        if let Some(slot) = out.get_mut(i) {
            *slot = candidate;
        }
    }
    out
}

/// `title` cut so that `title + suffix` fits `max` chars.
fn with_suffix(title: &str, max: usize, suffix: &str) -> String {
    let room = max.saturating_sub(char_len(suffix));
    let mut out = cut(title, room);
    out.push_str(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_marks_cuts() {
        assert_eq!(cut("  Yes  ", 20), "Yes");
        assert_eq!(cut("exactly twenty chars", 20), "exactly twenty chars");
        assert_eq!(cut("twenty-one characters", 20), "twenty-one characte…");
        // Trailing space before the ellipsis is dropped.
        assert_eq!(cut("abcd efgh", 6), "abcd…");
    }

    #[test]
    fn cut_counts_chars_not_bytes() {
        assert_eq!(cut("ééééé", 5), "ééééé");
        assert_eq!(cut("éééééé", 5), "éééé…");
        assert_eq!(cut("👍👍👍👍", 3), "👍👍…");
        assert_eq!(char_len(&cut(&"日".repeat(100), 24)), 24);
    }

    #[test]
    fn unique_titles_leaves_distinct_titles_alone() {
        assert_eq!(unique_titles(&["Yes", "No"], 20), vec!["Yes", "No"]);
    }

    #[test]
    fn cut_titles_that_collide_get_suffixes() {
        let titles = [
            "Delivery option number one",
            "Delivery option number two",
            "Delivery option number three",
        ];
        let out = unique_titles(&titles, 20);
        assert_eq!(
            out,
            vec![
                "Delivery option num…",
                "Delivery option… (2)",
                "Delivery option… (3)"
            ]
        );
        assert!(out.iter().all(|t| char_len(t) <= 20));
    }

    #[test]
    fn suffix_never_collides_with_a_later_title() {
        let out = unique_titles(&["A", "A", "A (2)"], 20);
        assert_eq!(out, vec!["A", "A (3)", "A (2)"]);
        let out = unique_titles(&["A", "A", "A", "A (2)", "A (3)"], 20);
        let distinct: BTreeSet<&String> = out.iter().collect();
        assert_eq!(distinct.len(), out.len());
    }

    #[test]
    fn multibyte_titles_near_the_limit() {
        let a = "ü".repeat(30);
        let b = "ü".repeat(31);
        let out = unique_titles(&[a.as_str(), b.as_str()], 24);
        assert_eq!(out[0], "ü".repeat(23) + "…");
        assert_eq!(out[1], "ü".repeat(19) + "… (2)");
        assert!(out.iter().all(|t| char_len(t) == 24));
    }

    proptest::proptest! {
        #[test]
        fn unique_titles_invariants(titles in proptest::collection::vec("[ab ü]{1,30}", 1..12), max in 8usize..30) {
            let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
            let out = unique_titles(&refs, max);
            proptest::prop_assert_eq!(out.len(), titles.len());
            proptest::prop_assert!(out.iter().all(|t| char_len(t) <= max));
            let distinct: BTreeSet<&String> = out.iter().collect();
            proptest::prop_assert_eq!(distinct.len(), out.len());
        }
    }
}
