//! Choices (quick replies) and list outputs, with deterministic degradation.
//!
//! Choices become, in this order of preference:
//! 1. reply buttons: at most 3 choices, every title ≤ 20 chars, no descriptions (buttons
//!    cannot show them) and every id ≤ 256 chars;
//! 2. list messages: at most [`MAX_LIST_MESSAGES`] × 10 rows, every id ≤ 200 chars; one list
//!    of ≤ 10 rows, or several lists of 10 rows whose later bodies read `(2/3)`, `(3/3)`;
//! 3. a numbered text (`1. Title`) after the prompt, when there are more choices than that
//!    or an id is too long for a list row. The user then answers in free text.
//!
//! List outputs take steps 2 and 3 with their sections: rows fill messages in order, a
//! section split over two messages keeps its title in both, and a section without a title
//! in a message with several sections gets [`UNTITLED_SECTION`] (Meta requires titles then).
//!
//! Titles are cut to their limit (buttons 20, rows 24) and kept unique with ` (2)`-style
//! suffixes; ids are only trimmed of surrounding whitespace (Meta refuses it), never cut or
//! otherwise changed, because the flow matches replies on them. Duplicate ids (after
//! trimming), blank ids or titles and empty choice lists are [`AdapterError::Invalid`], as is
//! an empty prompt: the adapter does not invent one.

use serde_json::{Value, json};

use super::fit::{char_len, cut, non_blank, unique_titles};
use super::interactive::{Interactive, fit_body, footer, text_header};
use super::{Message, formatted, invalid, texts};
use crate::info::LIMITS;
use crate::types::{AdapterError, Choice, ChoicesOutput, ListOutput};

/// At most this many list messages for one output (30 rows); beyond it, numbered text.
pub(crate) const MAX_LIST_MESSAGES: usize = 3;
/// List button label when the output has none.
pub(crate) const DEFAULT_LIST_LABEL: &str = "Choose";
/// Title of an untitled section in a list message with several sections.
pub(crate) const UNTITLED_SECTION: &str = "—";

/// A checked choice: id trimmed and unique, title and description trimmed.
struct Row {
    id: String,
    title: String,
    description: Option<String>,
}

struct Section {
    title: Option<String>,
    rows: Vec<Row>,
}

fn checked_rows<'a>(
    choices: impl Iterator<Item = &'a Choice>,
    seen: &mut Vec<String>,
) -> Result<Vec<Row>, AdapterError> {
    let mut rows = Vec::new();
    for choice in choices {
        let id = non_blank(Some(&choice.id)).ok_or_else(|| invalid("a choice has an empty id"))?;
        if seen.iter().any(|s| s == id) {
            return Err(invalid(format!("duplicate choice id {id:?}")));
        }
        let title = non_blank(Some(&choice.title))
            .ok_or_else(|| invalid(format!("choice {id:?} has an empty title")))?;
        seen.push(id.to_string());
        rows.push(Row {
            id: id.to_string(),
            title: title.to_string(),
            description: non_blank(choice.description.as_deref()).map(str::to_string),
        });
    }
    Ok(rows)
}

fn list_label(label: Option<&str>) -> String {
    cut(
        non_blank(label).unwrap_or(DEFAULT_LIST_LABEL),
        LIMITS.max_button_title_length as usize,
    )
}

fn fits_lists(rows: usize, mut ids: impl Iterator<Item = usize>) -> bool {
    rows <= MAX_LIST_MESSAGES * LIMITS.max_list_rows as usize
        && ids.all(|len| len <= LIMITS.max_row_id_length as usize)
}

pub(crate) fn choices(c: &ChoicesOutput) -> Result<Vec<Message>, AdapterError> {
    if c.choices.is_empty() {
        return Err(invalid("choices output without choices"));
    }
    let rows = checked_rows(c.choices.iter(), &mut Vec::new())?;
    let prompt = formatted(&c.text);
    if prompt.is_empty() {
        return Err(invalid("choices output has an empty prompt"));
    }
    let as_buttons = rows.len() <= LIMITS.max_buttons as usize
        && rows.iter().all(|r| {
            char_len(&r.title) <= LIMITS.max_button_title_length as usize
                && char_len(&r.id) <= LIMITS.max_button_id_length as usize
                && r.description.is_none()
        });
    if as_buttons {
        return buttons(&prompt, &rows);
    }
    let sections = vec![Section { title: None, rows }];
    let ids = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| char_len(&r.id)));
    let count = sections.iter().map(|s| s.rows.len()).sum();
    if fits_lists(count, ids) {
        lists(
            &prompt,
            None,
            None,
            &list_label(c.button_label.as_deref()),
            &sections,
        )
    } else {
        Ok(numbered(&prompt, None, None, &sections))
    }
}

pub(crate) fn list(l: &ListOutput) -> Result<Vec<Message>, AdapterError> {
    let mut seen = Vec::new();
    let mut sections = Vec::new();
    for section in &l.sections {
        let rows = checked_rows(section.rows.iter(), &mut seen)?;
        if !rows.is_empty() {
            let title = non_blank(section.title.as_deref()).map(str::to_string);
            sections.push(Section { title, rows });
        }
    }
    if seen.is_empty() {
        return Err(invalid("list output without rows"));
    }
    let prompt = formatted(&l.body);
    if prompt.is_empty() {
        return Err(invalid("list output has an empty body"));
    }
    let ids = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| char_len(&r.id)));
    if fits_lists(seen.len(), ids) {
        let label = list_label(Some(&l.button_label));
        lists(
            &prompt,
            l.header.as_deref(),
            l.footer.as_deref(),
            &label,
            &sections,
        )
    } else {
        Ok(numbered(
            &prompt,
            l.header.as_deref(),
            l.footer.as_deref(),
            &sections,
        ))
    }
}

/// One interactive `button` message with up to 3 reply buttons.
fn buttons(prompt: &str, rows: &[Row]) -> Result<Vec<Message>, AdapterError> {
    let titles: Vec<&str> = rows.iter().map(|r| r.title.as_str()).collect();
    let titles = unique_titles(&titles, LIMITS.max_button_title_length as usize);
    let buttons: Vec<Value> = rows
        .iter()
        .zip(titles)
        .map(|(r, title)| json!({ "type": "reply", "reply": { "id": r.id, "title": title } }))
        .collect();
    let (mut messages, body) = fit_body(prompt, "choices output")?;
    messages.push(
        Interactive {
            kind: "button",
            header: None,
            body,
            footer: None,
            action: json!({ "buttons": buttons }),
        }
        .into_message(),
    );
    Ok(messages)
}

/// List messages of at most 10 rows each; the caller checked the row count and ids.
fn lists(
    prompt: &str,
    header: Option<&str>,
    footer_text: Option<&str>,
    label: &str,
    sections: &[Section],
) -> Result<Vec<Message>, AdapterError> {
    let titles: Vec<&str> = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.title.as_str()))
        .collect();
    let mut titles = unique_titles(&titles, LIMITS.max_row_title_length as usize).into_iter();

    // pages[k] = the sections of message k: (index into `sections`, rows as JSON).
    let per_page = LIMITS.max_list_rows as usize;
    let mut pages: Vec<Vec<(usize, Vec<Value>)>> = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        for row in &section.rows {
            let page_full = pages
                .last()
                .is_none_or(|p| p.iter().map(|(_, r)| r.len()).sum::<usize>() >= per_page);
            if page_full {
                pages.push(Vec::new());
            }
            let Some(page) = pages.last_mut() else {
                continue;
            };
            if page.last().is_none_or(|(i, _)| *i != index) {
                page.push((index, Vec::new()));
            }
            if let Some((_, rows)) = page.last_mut() {
                rows.push(row_json(row, titles.next().unwrap_or_default()));
            }
        }
    }

    let (mut messages, first_body) = fit_body(prompt, "list output")?;
    let count = pages.len();
    for (k, page) in pages.into_iter().enumerate() {
        let several = page.len() > 1;
        let sections_json: Vec<Value> = page
            .into_iter()
            .map(|(index, rows)| {
                let title = sections.get(index).and_then(|s| s.title.as_deref());
                let title = match (title, several) {
                    (Some(t), _) => Some(t),
                    (None, true) => Some(UNTITLED_SECTION),
                    (None, false) => None,
                };
                let mut section = json!({ "rows": rows });
                if let Some(t) = title {
                    section["title"] = json!(cut(t, LIMITS.max_row_title_length as usize));
                }
                section
            })
            .collect();
        let body = if k == 0 {
            first_body.clone()
        } else {
            format!("({}/{count})", k + 1)
        };
        messages.push(
            Interactive {
                kind: "list",
                header: text_header(header),
                body,
                footer: footer(footer_text),
                action: json!({ "button": label, "sections": sections_json }),
            }
            .into_message(),
        );
    }
    Ok(messages)
}

fn row_json(row: &Row, title: String) -> Value {
    let mut value = json!({ "id": row.id, "title": title });
    if let Some(d) = &row.description {
        value["description"] = json!(cut(d, LIMITS.max_row_description_length as usize));
    }
    value
}

/// The last resort: the prompt and every choice as a numbered line, as text message(s).
/// Titles and descriptions are complete here; section titles become bold lines.
fn numbered(
    prompt: &str,
    header: Option<&str>,
    footer_text: Option<&str>,
    sections: &[Section],
) -> Vec<Message> {
    let mut text = String::new();
    if let Some(h) = non_blank(header) {
        text.push_str(&format!("*{h}*\n\n"));
    }
    text.push_str(prompt);
    let mut n = 0usize;
    for section in sections {
        text.push_str("\n\n");
        if let Some(t) = &section.title {
            text.push_str(&format!("*{t}*\n"));
        }
        let lines: Vec<String> = section
            .rows
            .iter()
            .map(|r| {
                n += 1;
                match &r.description {
                    Some(d) => format!("{n}. {} — {d}", r.title),
                    None => format!("{n}. {}", r.title),
                }
            })
            .collect();
        text.push_str(&lines.join("\n"));
    }
    if let Some(f) = non_blank(footer_text) {
        text.push_str(&format!("\n\n{f}"));
    }
    texts(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(id: &str, title: &str) -> Choice {
        Choice {
            id: id.into(),
            title: title.into(),
            description: None,
        }
    }

    fn out(n: usize) -> ChoicesOutput {
        ChoicesOutput {
            text: "Pick".into(),
            choices: (1..=n)
                .map(|i| choice(&format!("c{i}"), &format!("Option {i}")))
                .collect(),
            button_label: None,
        }
    }

    fn interactive_type(m: &Message) -> Option<&str> {
        m.payload.get("type").and_then(Value::as_str)
    }

    #[test]
    fn degradation_steps_by_count() {
        let kinds = |n| {
            choices(&out(n))
                .unwrap_or_default()
                .iter()
                .map(|m| (m.kind, interactive_type(m).map(str::to_string)))
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(3), vec![("interactive", Some("button".to_string()))]);
        assert_eq!(kinds(4), vec![("interactive", Some("list".to_string()))]);
        assert_eq!(kinds(10).len(), 1);
        assert_eq!(kinds(11).len(), 2);
        assert_eq!(kinds(30).len(), 3);
        assert_eq!(kinds(31), vec![("text", None)]);
    }

    #[test]
    fn ids_are_trimmed_but_never_cut() {
        let mut c = out(2);
        c.choices[0].id = "  yes ".into();
        let m = choices(&c).unwrap_or_default();
        assert_eq!(m[0].payload["action"]["buttons"][0]["reply"]["id"], "yes");
        c.choices[1].id = "yes".into();
        assert!(matches!(choices(&c), Err(AdapterError::Invalid(_))));
    }

    #[test]
    fn a_description_moves_choices_to_a_list() {
        let mut c = out(2);
        c.choices[0].description = Some("more".into());
        let m = choices(&c).unwrap_or_default();
        assert_eq!(interactive_type(&m[0]), Some("list"));
        assert_eq!(
            m[0].payload["action"]["sections"][0]["rows"][0]["description"],
            "more"
        );
    }

    #[test]
    fn sections_split_across_pages_keep_titles() {
        let section = |t: Option<&str>, n: usize, p: &str| crate::types::ListSection {
            title: t.map(Into::into),
            rows: (0..n)
                .map(|i| choice(&format!("{p}{i}"), &format!("{p} {i}")))
                .collect(),
        };
        let l = ListOutput {
            header: None,
            body: "Menu".into(),
            footer: None,
            button_label: "".into(),
            sections: vec![section(Some("Starters"), 4, "s"), section(None, 8, "m")],
        };
        let m = list(&l).unwrap_or_default();
        assert_eq!(m.len(), 2);
        let s0 = &m[0].payload["action"]["sections"];
        assert_eq!(s0[0]["title"], "Starters");
        assert_eq!(s0[1]["title"], UNTITLED_SECTION);
        assert_eq!(s0[1]["rows"].as_array().map(Vec::len), Some(6));
        let s1 = &m[1].payload["action"]["sections"];
        assert!(s1[0].get("title").is_none());
        assert_eq!(m[1].payload["body"]["text"], "(2/2)");
        assert_eq!(m[0].payload["action"]["button"], DEFAULT_LIST_LABEL);
    }
}
