//! Markdown (CommonMark + strikethrough) to WhatsApp formatting, with HTML stripped.
//!
//! WhatsApp knows `*bold*`, `_italic_`, `~strike~`, `` `code` `` and ```` ```mono``` ````,
//! plus `- `/`1. ` lists and `> ` quotes as plain lines. Headings become bold lines, links
//! `text (url)` (just the URL when the text is the URL), images their alt text and URL.
//! Nested emphasis of one kind is flattened (WhatsApp cannot nest a marker inside itself).
//! Inline HTML tags are dropped (`<br>` becomes a line break), HTML blocks are reduced to
//! their text with entities decoded. Soft line breaks stay line breaks: chat text is
//! written line by line. Blocks are separated by one blank line.

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

/// Converts bot markdown to WhatsApp text, trimmed.
pub(crate) fn to_whatsapp(markdown: &str) -> String {
    let mut w = Writer::default();
    for event in Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH) {
        w.event(event);
    }
    w.out.trim().to_string()
}

#[derive(Default)]
struct Writer {
    out: String,
    /// Line breaks owed before the next content (1: new line, 2: blank line).
    pending: usize,
    quote_depth: usize,
    at_line_start: bool,
    /// One entry per open list: the next number of an ordered list.
    lists: Vec<Option<u64>>,
    bold: usize,
    italic: usize,
    strike: usize,
    /// Open links and images: destination and where their text starts in `out`.
    links: Vec<(String, usize, LinkType)>,
    /// Text of the open code block or HTML block.
    code: Option<String>,
    html: Option<String>,
}

impl Writer {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                if let Some(code) = self.code.as_mut() {
                    code.push_str(&text);
                } else {
                    self.write(&text);
                }
            }
            Event::Code(code) => {
                self.write("`");
                self.write(&code);
                self.write("`");
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                if let Some(block) = self.html.as_mut() {
                    block.push_str(&html);
                } else if is_line_break_tag(&html) {
                    self.write("\n");
                }
                // Any other inline tag (or comment) is dropped.
            }
            Event::SoftBreak | Event::HardBreak => self.write("\n"),
            Event::Rule => {
                self.need(2);
                self.write("———");
                self.need(2);
            }
            Event::TaskListMarker(done) => self.write(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(name) => self.write(&format!("[{name}]")),
            Event::InlineMath(math) | Event::DisplayMath(math) => self.write(&math),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.block(),
            Tag::Heading { .. } => {
                self.block();
                self.toggle_bold(true);
            }
            Tag::BlockQuote(_) => {
                self.block();
                self.quote_depth += 1;
            }
            Tag::CodeBlock(_) => {
                self.block();
                self.code = Some(String::new());
            }
            Tag::HtmlBlock => {
                self.block();
                self.html = Some(String::new());
            }
            Tag::List(first) => {
                if self.lists.is_empty() {
                    self.block();
                } else {
                    self.need(1);
                }
                self.lists.push(first);
            }
            Tag::Item => {
                self.need(1);
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n = n.saturating_add(1);
                        m
                    }
                    _ => "- ".to_string(),
                };
                self.write(&format!("{}{marker}", "  ".repeat(depth)));
            }
            Tag::Emphasis => self.toggle(Marker::Italic, true),
            Tag::Strong => self.toggle_bold(true),
            Tag::Strikethrough => self.toggle(Marker::Strike, true),
            Tag::Link {
                link_type,
                dest_url,
                ..
            }
            | Tag::Image {
                link_type,
                dest_url,
                ..
            } => {
                self.flush();
                self.line_prefix();
                self.links
                    .push((dest_url.to_string(), self.out.len(), link_type));
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.need(if self.lists.is_empty() { 2 } else { 1 }),
            TagEnd::Heading(_) => {
                self.toggle_bold(false);
                self.need(2);
            }
            TagEnd::BlockQuote(_) => {
                self.quote_depth = self.quote_depth.saturating_sub(1);
                self.need(2);
            }
            TagEnd::CodeBlock => {
                let code = self.code.take().unwrap_or_default();
                let code = code.trim_end_matches('\n');
                if !code.trim().is_empty() {
                    self.write(&format!("```{code}```"));
                }
                self.need(2);
            }
            TagEnd::HtmlBlock => {
                let html = self.html.take().unwrap_or_default();
                self.write(&strip_html(&html));
                self.need(2);
            }
            TagEnd::List(_) => {
                self.lists.pop();
                self.need(if self.lists.is_empty() { 2 } else { 1 });
            }
            TagEnd::Item => self.need(1),
            TagEnd::Emphasis => self.toggle(Marker::Italic, false),
            TagEnd::Strong => self.toggle_bold(false),
            TagEnd::Strikethrough => self.toggle(Marker::Strike, false),
            TagEnd::Link | TagEnd::Image => self.end_link(),
            _ => {}
        }
    }

    /// Closes a link or image: `text (url)`, or the URL alone when the text is the URL
    /// (autolinks, `[https://x](https://x)`) or empty.
    fn end_link(&mut self) {
        let Some((dest, start, link_type)) = self.links.pop() else {
            return;
        };
        let text = self.out.get(start..).unwrap_or("").trim().to_string();
        let bare = dest.strip_prefix("mailto:").unwrap_or(&dest);
        if dest.is_empty() || text == dest || text == bare {
            return;
        }
        if matches!(link_type, LinkType::Autolink | LinkType::Email) {
            return;
        }
        if text.is_empty() {
            self.write(bare);
        } else {
            self.write(&format!(" ({bare})"));
        }
    }

    fn toggle_bold(&mut self, open: bool) {
        self.toggle(Marker::Bold, open);
    }

    /// Writes a marker only on the outermost open/close, so nesting stays valid.
    fn toggle(&mut self, marker: Marker, open: bool) {
        let (depth, text) = match marker {
            Marker::Bold => (&mut self.bold, "*"),
            Marker::Italic => (&mut self.italic, "_"),
            Marker::Strike => (&mut self.strike, "~"),
        };
        let write = if open {
            *depth += 1;
            *depth == 1
        } else {
            *depth = depth.saturating_sub(1);
            *depth == 0
        };
        if write {
            self.write(text);
        }
    }

    /// Starts a block: a blank line before it, or a plain line break inside a list item.
    fn block(&mut self) {
        if self.lists.is_empty() {
            self.need(2);
        } else if !self.out.ends_with(' ') {
            // A loose list's paragraph right after the item marker stays on the marker line.
            self.need(1);
        }
    }

    fn need(&mut self, breaks: usize) {
        self.pending = self.pending.max(breaks);
    }

    /// Emits the line breaks owed, unless nothing has been written yet.
    fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        if !self.out.is_empty() {
            let trailing = self.out.chars().rev().take_while(|c| *c == '\n').count();
            for _ in trailing..self.pending {
                self.out.push('\n');
            }
            self.at_line_start = true;
        }
        self.pending = 0;
    }

    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.flush();
        for ch in text.chars() {
            if ch != '\n' {
                self.line_prefix();
            }
            self.out.push(ch);
            if ch == '\n' {
                self.at_line_start = true;
            }
        }
    }

    /// Writes the `> ` quote markers owed at the start of a line.
    fn line_prefix(&mut self) {
        if self.out.is_empty() {
            self.at_line_start = true;
        }
        if self.at_line_start {
            for _ in 0..self.quote_depth {
                self.out.push_str("> ");
            }
            self.at_line_start = false;
        }
    }
}

#[derive(Clone, Copy)]
enum Marker {
    Bold,
    Italic,
    Strike,
}

/// The lower-case name of an HTML tag (`<br/>` → `br`, `</p>` → `p`), if `tag` is one.
fn tag_name(tag: &str) -> Option<String> {
    let inner = tag.trim().strip_prefix('<')?.trim_start_matches('/');
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn is_line_break_tag(tag: &str) -> bool {
    tag_name(tag).as_deref() == Some("br")
}

/// Tags whose start or end is a line break in the text.
const BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "div",
    "dl",
    "dt",
    "dd",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// The text of an HTML fragment: tags and comments removed, `script`/`style` content
/// dropped, `<br>` and block tags turned into line breaks, entities decoded, runs of blank
/// lines collapsed and lines right-trimmed.
pub(crate) fn strip_html(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(rest.get(..open).unwrap_or(""));
        let after = rest.get(open..).unwrap_or("");
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment
                .find("-->")
                .and_then(|end| comment.get(end + 3..))
                .unwrap_or("");
            continue;
        }
        let looks_like_tag = after
            .chars()
            .nth(1)
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        let Some(close) = after.find('>').filter(|_| looks_like_tag) else {
            // A lone `<` (as in `a < b`) is text.
            text.push('<');
            rest = after.get(1..).unwrap_or("");
            continue;
        };
        let tag = after.get(..=close).unwrap_or("");
        rest = after.get(close + 1..).unwrap_or("");
        let Some(name) = tag_name(tag) else { continue };
        let closing = tag.starts_with("</");
        if !closing && (name == "script" || name == "style") {
            let end = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&end) {
                Some(at) => {
                    let tail = rest.get(at..).unwrap_or("");
                    tail.find('>')
                        .and_then(|gt| tail.get(gt + 1..))
                        .unwrap_or("")
                }
                None => "",
            };
            continue;
        }
        if name == "br" || BLOCK_TAGS.contains(&name.as_str()) {
            text.push('\n');
        }
    }
    text.push_str(rest);
    let decoded = html_escape::decode_html_entities(&text);
    let mut out = String::new();
    let mut blank_run = 0;
    for line in decoded.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{strip_html, to_whatsapp};

    #[test]
    fn emphasis_and_code() {
        assert_eq!(to_whatsapp("**bold** and __bold__"), "*bold* and *bold*");
        assert_eq!(to_whatsapp("*em* and _em_"), "_em_ and _em_");
        assert_eq!(to_whatsapp("~~gone~~ `x = 1`"), "~gone~ `x = 1`");
        assert_eq!(to_whatsapp("***both***"), "_*both*_");
    }

    #[test]
    fn nested_bold_is_flattened() {
        assert_eq!(to_whatsapp("# Title with **bold**"), "*Title with bold*");
        assert_eq!(to_whatsapp("**a __b__ c**"), "*a b c*");
    }

    #[test]
    fn blocks_are_separated_by_one_blank_line() {
        let md = "# Heading\n\nFirst line\nsecond line\n\n\n\nLast paragraph.";
        assert_eq!(
            to_whatsapp(md),
            "*Heading*\n\nFirst line\nsecond line\n\nLast paragraph."
        );
    }

    #[test]
    fn lists_keep_their_markers() {
        assert_eq!(
            to_whatsapp("Intro:\n\n* one\n* two\n\nAfter"),
            "Intro:\n\n- one\n- two\n\nAfter"
        );
        assert_eq!(to_whatsapp("3. c\n4. d"), "3. c\n4. d");
        assert_eq!(to_whatsapp("- a\n  - b\n- c"), "- a\n  - b\n- c");
        // Loose list: the paragraph stays on the marker line.
        assert_eq!(to_whatsapp("- a\n\n- b"), "- a\n- b");
    }

    #[test]
    fn quotes_prefix_every_line() {
        assert_eq!(to_whatsapp("> one\n> two\n\nout"), "> one\n> two\n\nout");
    }

    #[test]
    fn fenced_code_is_monospace() {
        assert_eq!(
            to_whatsapp("```rust\nlet x = **1**;\n```"),
            "```let x = **1**;```"
        );
        assert_eq!(to_whatsapp("```\n```"), "");
    }

    #[test]
    fn links_and_images() {
        assert_eq!(
            to_whatsapp("[Docs](https://example.com/docs)"),
            "Docs (https://example.com/docs)"
        );
        assert_eq!(to_whatsapp("[https://a.io](https://a.io)"), "https://a.io");
        assert_eq!(to_whatsapp("<https://a.io>"), "https://a.io");
        assert_eq!(
            to_whatsapp("see ![a cat](https://a.io/c.png)"),
            "see a cat (https://a.io/c.png)"
        );
        assert_eq!(to_whatsapp("[](https://a.io)"), "https://a.io");
        assert_eq!(to_whatsapp("[mail me](mailto:x@y.z)"), "mail me (x@y.z)");
    }

    #[test]
    fn inline_html_is_stripped() {
        assert_eq!(
            to_whatsapp("a <b>bold</b> word<br>next"),
            "a bold word\nnext"
        );
        assert_eq!(to_whatsapp("Fish &amp; chips &lt;3"), "Fish & chips <3");
        assert_eq!(to_whatsapp("x <!-- hidden --> y"), "x  y");
    }

    #[test]
    fn html_blocks_become_text() {
        let md = "<div><p>Hello &amp; <b>welcome</b></p><p>Line<br/>two</p></div>\n\nafter";
        assert_eq!(to_whatsapp(md), "Hello & welcome\n\nLine\ntwo\n\nafter");
    }

    #[test]
    fn strip_html_edge_cases() {
        assert_eq!(strip_html("a < b and c > d"), "a < b and c > d");
        assert_eq!(strip_html("<script>alert(1)</script>ok"), "ok");
        assert_eq!(strip_html("<STYLE>p{}</STYLE>ok"), "ok");
        assert_eq!(strip_html("unterminated <b"), "unterminated <b");
        assert_eq!(strip_html("<!-- never closed"), "");
        assert_eq!(strip_html("caf&eacute; &#x1F600;"), "café 😀");
    }

    #[test]
    fn multibyte_text_is_untouched() {
        assert_eq!(
            to_whatsapp("**日本語** _ünïcödé_ 😀"),
            "*日本語* _ünïcödé_ 😀"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(md in "[-*_~`#>\\[\\]()<>/!&;a-z0-9 \n]{0,120}") {
            let _ = to_whatsapp(&md);
            let _ = strip_html(&md);
        }
    }
}
