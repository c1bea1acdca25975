//! HTML from customers' mail, made safe to show inside the agent desktop, and
//! its text rendering.
//!
//! [`sanitize_html`] is ammonia with a mail policy:
//! - no scripts, event handlers, frames, objects, embeds or forms (ammonia's
//!   allow-list has none of them; their content is dropped too, not shown);
//! - `<style>` blocks are dropped (a stylesheet would restyle the desktop
//!   around the mail); `style` attributes keep an allow-list of properties,
//!   never `url()`, `image-set()`, `expression()`, escapes or comments, and
//!   never `position` (a fixed overlay over the desktop is a phishing tool);
//! - links keep `http`, `https`, `mailto` and `tel` only, and get
//!   `rel="noopener noreferrer"` and `target="_blank"`;
//! - **remote images are not loaded**: an `http(s)` `img src` becomes
//!   `data-remote-src`, so the desktop can offer "load remote images" (a
//!   remote image tells the sender when and where the mail was read).
//!   `cid:` (inline parts of the same mail) and `data:image/*` (except SVG)
//!   are kept. Nothing else can point at a remote resource: relative URLs are
//!   denied and no other URL attribute survives.
//!
//! [`html_to_text`] renders **sanitised** HTML as text. It relies on the shape
//! of ammonia's output (html5ever's serializer: lower-case tags, attributes in
//! double quotes, only `&amp; &lt; &gt; &quot; &nbsp;` escapes, no comments,
//! scripts or styles), which keeps it a small state machine instead of a
//! second HTML parser.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use ammonia::{Builder, UrlRelative};

/// Set by the attribute filter on remote `img src` values, then renamed to
/// `data-remote-src` on the serialized output (ammonia cannot rename an
/// attribute). Safe to match textually: in html5ever's output a `"` inside an
/// attribute value is always `&quot;`, so ` src="mailroom-remote:` can only be
/// a real attribute or plain text (where rewriting it is harmless); and an
/// author's own `mailroom-remote:` URL never gets this far, as its scheme is
/// not allowed.
const REMOTE_MARKER: &str = "mailroom-remote:";

/// CSS properties kept in `style` attributes: layout and typography that mail
/// clients use, nothing that positions over the page or loads anything.
const STYLE_PROPERTIES: &[&str] = &[
    "background",
    "background-color",
    "border",
    "border-bottom",
    "border-bottom-color",
    "border-bottom-style",
    "border-bottom-width",
    "border-collapse",
    "border-color",
    "border-left",
    "border-left-color",
    "border-left-style",
    "border-left-width",
    "border-radius",
    "border-right",
    "border-right-color",
    "border-right-style",
    "border-right-width",
    "border-spacing",
    "border-style",
    "border-top",
    "border-top-color",
    "border-top-style",
    "border-top-width",
    "border-width",
    "clear",
    "color",
    "direction",
    "display",
    "float",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-variant",
    "font-weight",
    "height",
    "letter-spacing",
    "line-height",
    "list-style-type",
    "margin",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "margin-top",
    "max-height",
    "max-width",
    "min-height",
    "min-width",
    "opacity",
    "overflow",
    "padding",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "padding-top",
    "table-layout",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "vertical-align",
    "visibility",
    "white-space",
    "width",
    "word-break",
    "word-spacing",
    "word-wrap",
];

/// Fragments that make a CSS declaration able to load something or run
/// something (or hide such a thing behind an escape or a comment). A
/// declaration containing any of them is dropped before ammonia's own CSS
/// filter sees it.
const STYLE_DENY: &[&str] = &[
    "url(",
    "image",
    "expression",
    "javascript",
    "vbscript",
    "behavior",
    "binding",
    "@import",
    "\\",
    "/*",
    "*/",
    "src(",
    "element(",
    "cross-fade",
];

static SANITIZER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut b = Builder::default();
    b.add_tags(["font"])
        .add_clean_content_tags([
            "title", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript",
            "template", "svg", "math", "select", "textarea",
        ])
        .add_generic_attributes([
            "style", "dir", "align", "valign", "bgcolor", "width", "height",
        ])
        .add_tag_attributes("table", ["border", "cellpadding", "cellspacing"])
        .add_tag_attributes("td", ["nowrap"])
        .add_tag_attributes("th", ["nowrap"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes("img", ["border"])
        .add_tag_attributes("ol", ["type"])
        .add_tag_attributes("ul", ["type"])
        .url_schemes(["http", "https", "mailto", "tel", "cid", "data"].into())
        .url_relative(UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .strip_comments(true)
        .attribute_filter(filter_attribute);
    b
});

/// Sanitises one mail's HTML (see the module docs for the policy).
pub fn sanitize_html(html: &str) -> String {
    let out = SANITIZER.clean(html).to_string();
    // What was <head> (title, styles) leaves blank lines behind.
    out.trim()
        .replace(&format!(" src=\"{REMOTE_MARKER}"), " data-remote-src=\"")
}

fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    match (element, attribute) {
        ("img", "src") => image_source(value),
        (_, "href") => {
            let v = value.trim_start().to_ascii_lowercase();
            ["http:", "https:", "mailto:", "tel:"]
                .iter()
                .any(|s| v.starts_with(s))
                .then_some(Cow::Borrowed(value))
        }
        (_, "style") => style(value),
        // Nothing else may carry a URL: no other element loads a resource,
        // and `cite` URLs are of no use in a mail.
        (_, "src" | "cite" | "xlink:href" | "poster" | "background" | "action") => None,
        _ => Some(Cow::Borrowed(value)),
    }
}

fn image_source(value: &str) -> Option<Cow<'_, str>> {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("cid:") {
        Some(Cow::Borrowed(value))
    } else if let Some(rest) = lower.strip_prefix("data:image/") {
        // Raster formats only: an SVG is a document, better not rendered.
        ["png", "jpeg", "jpg", "gif", "webp", "bmp"]
            .iter()
            .any(|f| {
                rest.strip_prefix(f)
                    .is_some_and(|after| after.starts_with([';', ',']))
            })
            .then_some(Cow::Borrowed(value))
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        Some(Cow::Owned(format!("{REMOTE_MARKER}{v}")))
    } else {
        None
    }
}

fn style(value: &str) -> Option<Cow<'_, str>> {
    let kept: Vec<&str> = value
        .split(';')
        .filter(|decl| {
            let d = decl.to_ascii_lowercase();
            !d.trim().is_empty() && !STYLE_DENY.iter().any(|bad| d.contains(bad))
        })
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join(";")))
}

/// The `cid:` references of sanitised HTML, percent-decoded (RFC 2392 says
/// they are URL-encoded; most clients do not bother).
pub(super) fn cid_references(sanitized: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut rest = sanitized;
    while let Some(at) = rest.find("src=\"cid:") {
        rest = &rest[at + "src=\"cid:".len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        let raw = unescape(&rest[..end]);
        let decoded = percent_decode(&raw);
        out.insert(decoded.to_lowercase());
        out.insert(decoded);
        out.insert(raw.into_owned());
        rest = &rest[end..];
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits are at most 0xff: the cast cannot truncate.
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes text for an HTML text node.
pub(super) fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes text for a double-quoted attribute value.
pub(super) fn escape_attr(s: &str) -> String {
    escape_text(s).replace('"', "&quot;")
}

/// Undoes html5ever's escapes (and numeric references, for robustness).
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // Byte search: `;` is ASCII, so its index is a char boundary.
        let end = rest.bytes().take(12).position(|b| b == b';');
        let decoded = end.and_then(|end| {
            let name = &rest[1..end];
            let ch = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name
                    .strip_prefix('#')
                    .and_then(|n| match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// How an element shapes the text around it.
enum Block {
    /// A line break (`<br>`, `<div>`, `<tr>`…).
    Line,
    /// A blank line (`<p>`, headings, lists, tables, quotes).
    Paragraph,
    /// A list item: a new line with a bullet.
    Item,
    /// A table cell: a tab between cells.
    Cell,
}

fn block(tag: &str) -> Option<Block> {
    Some(match tag {
        "br" | "div" | "tr" | "dt" | "dd" | "hr" | "center" | "section" | "article" | "header"
        | "footer" | "nav" | "aside" | "figure" | "figcaption" | "details" | "summary"
        | "caption" | "address" | "hgroup" => Block::Line,
        "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "pre" | "table" | "ul"
        | "ol" | "dl" => Block::Paragraph,
        "li" => Block::Item,
        "td" | "th" => Block::Cell,
        _ => return None,
    })
}

/// Text rendering of **sanitised** HTML (the output of [`sanitize_html`]):
/// tags stripped, entities decoded, whitespace collapsed as a browser would
/// (except in `<pre>`), block elements on their own lines, list items
/// bulleted, table cells tab-separated, at most one blank line in a row.
pub fn html_to_text(sanitized: &str) -> String {
    let mut w = TextWriter::default();
    let mut pre_depth = 0usize;
    let mut rest = sanitized;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        w.text(&unescape(&rest[..lt]), pre_depth > 0);
        rest = rest.get(lt + 1..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        // The end of the tag, skipping '>' inside double-quoted values.
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                c == '>' && !in_quotes
            })
            .map_or(rest.len(), |(i, _)| i);
        let tag = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();

        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match (block(&name), closing) {
            (Some(Block::Line), _) if name == "br" => w.hard_break(),
            (Some(Block::Line), _) => w.newlines(1),
            (Some(Block::Paragraph), _) => w.newlines(2),
            (Some(Block::Item), false) => {
                w.newlines(1);
                w.word("-");
            }
            (Some(Block::Cell), false) => w.cell(),
            _ => {}
        }
        match (name.as_str(), closing) {
            ("pre", false) => pre_depth += 1,
            ("pre", true) => pre_depth = pre_depth.saturating_sub(1),
            ("tr", _) => w.row_has_cell = false,
            _ => {}
        }
    }
    w.finish()
}

/// Builds text out of words and breaks, collapsing whitespace lazily: a
/// space or newline is only written once something follows it.
#[derive(Default)]
struct TextWriter {
    out: String,
    pending_space: bool,
    pending_newlines: usize,
    row_has_cell: bool,
}

impl TextWriter {
    fn flush_pending(&mut self) {
        if self.pending_newlines > 0 {
            if !self.out.is_empty() {
                let have = self.out.len() - self.out.trim_end_matches('\n').len();
                for _ in have..self.pending_newlines.min(2) {
                    self.out.push('\n');
                }
            }
        } else if self.pending_space
            && !self.out.is_empty()
            && !self.out.ends_with(['\n', '\t', ' '])
        {
            self.out.push(' ');
        }
        self.pending_newlines = 0;
        self.pending_space = false;
    }

    fn word(&mut self, word: &str) {
        self.flush_pending();
        self.out.push_str(word);
        self.pending_space = true;
    }

    fn text(&mut self, text: &str, pre: bool) {
        if text.is_empty() {
            return;
        }
        if pre {
            self.flush_pending();
            self.out.push_str(&text.replace('\u{a0}', " "));
            return;
        }
        // A non-breaking space is kept as a space, but never collapsed away.
        let mut first = true;
        for word in text.split(|c: char| c.is_whitespace() && c != '\u{a0}') {
            if !first {
                self.pending_space = true;
            }
            first = false;
            if !word.is_empty() {
                self.flush_pending();
                self.out.push_str(&word.replace('\u{a0}', " "));
            }
        }
    }

    fn newlines(&mut self, n: usize) {
        self.pending_newlines = self.pending_newlines.max(n);
    }

    /// `<br>`: one more line break, even right after another one.
    fn hard_break(&mut self) {
        self.pending_newlines += 1;
    }

    fn cell(&mut self) {
        if self.row_has_cell && self.pending_newlines == 0 && !self.out.is_empty() {
            self.out.push('\t');
            self.pending_space = false;
        }
        self.row_has_cell = true;
    }

    fn finish(self) -> String {
        let mut text = String::with_capacity(self.out.len());
        let mut blank_run = 0;
        for line in self.out.lines() {
            let line = line.trim_end();
            blank_run = if line.is_empty() { blank_run + 1 } else { 0 };
            if blank_run <= 1 {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_and_javascript_links_are_gone() {
        let out = sanitize_html(
            r#"<p onclick="x()">Hi<script>alert(1)</script></p><a href="javascript:alert(1)">x</a><img src=x onerror="alert(1)">"#,
        );
        assert!(!out.contains("script"), "{out}");
        assert!(!out.contains("onclick"), "{out}");
        assert!(!out.contains("onerror"), "{out}");
        assert!(!out.contains("javascript"), "{out}");
    }

    #[test]
    fn links_open_in_a_new_tab_without_referrer() {
        let out = sanitize_html(r#"<a href="https://example.test/a?b=1&amp;c=2">go</a>"#);
        assert!(out.contains(r#"target="_blank""#), "{out}");
        assert!(out.contains(r#"rel="noopener noreferrer""#), "{out}");
        assert!(out.contains("https://example.test/a?b=1&amp;c=2"), "{out}");
    }

    #[test]
    fn remote_images_become_data_remote_src_and_cid_data_stay() {
        let out = sanitize_html(concat!(
            r#"<img src="https://tracker.example.test/p.gif" alt="t">"#,
            r#"<img src="cid:logo@x">"#,
            r#"<img src="data:image/png;base64,iVBORw0KGgo=">"#,
            r#"<img src="data:image/svg+xml;base64,PHN2Zz4=">"#,
            r#"<img src="//cdn.example.test/x.png">"#,
            r#"<img src="mailroom-remote:javascript:alert(1)">"#,
        ));
        assert!(
            out.contains(r#"data-remote-src="https://tracker.example.test/p.gif""#),
            "{out}"
        );
        assert!(!out.contains(r#" src="https"#), "{out}");
        assert!(out.contains(r#"src="cid:logo@x""#), "{out}");
        assert!(out.contains("data:image/png"), "{out}");
        assert!(!out.contains("svg"), "{out}");
        assert!(!out.contains("cdn.example.test"), "{out}");
        assert!(!out.contains("javascript"), "{out}");
    }

    #[test]
    fn styles_keep_layout_but_never_load_or_overlay() {
        let out = sanitize_html(concat!(
            r#"<div style="color: red; background: url(https://t.example.test/x); position: fixed; font-weight: bold">a</div>"#,
            r#"<div style="background-image: image-set('https://t.example.test/y' 1x)">b</div>"#,
            r#"<div style="width: ex\70 ression(alert(1))">c</div>"#,
            r#"<style>body { background: url(https://t.example.test/z) }</style>"#,
        ));
        assert!(out.contains("color:red"), "{out}");
        assert!(out.contains("font-weight:bold"), "{out}");
        assert!(!out.contains("t.example.test"), "{out}");
        assert!(!out.contains("position"), "{out}");
        assert!(!out.contains("ression"), "{out}");
        assert!(!out.contains("<style"), "{out}");
    }

    #[test]
    fn frames_objects_and_forms_are_removed() {
        let out = sanitize_html(concat!(
            r#"<iframe src="https://e.test/">inner</iframe>"#,
            r#"<object data="https://e.test/x.swf"></object><embed src="https://e.test/y">"#,
            r#"<form action="https://e.test/phish"><input name="pw"><button>Send</button></form>"#,
        ));
        for bad in [
            "iframe", "object", "embed", "form", "input", "e.test", "inner",
        ] {
            assert!(!out.contains(bad), "{bad} in {out}");
        }
    }

    #[test]
    fn text_rendering_breaks_blocks_and_decodes_entities() {
        let html = sanitize_html(concat!(
            "<h1>Title</h1><p>Hello&nbsp;<b>world</b> &amp; friends.</p>",
            "<div>one</div><div>two<br>three</div>",
            "<ul><li>a</li><li>b</li></ul>",
            "<table><tr><td>x</td><td>y</td></tr><tr><td>z</td></tr></table>",
            "<pre>  keep\n    this</pre><p>5 &lt; 6 &gt; 4 \"q\"</p>",
        ));
        assert_eq!(
            html_to_text(&html),
            "Title\n\nHello world & friends.\n\none\ntwo\nthree\n\n- a\n- b\n\nx\ty\nz\n\n  keep\n    this\n\n5 < 6 > 4 \"q\""
        );
    }

    #[test]
    fn cid_references_are_found_and_decoded() {
        let html = sanitize_html(r#"<img src="cid:part1.ABC%40example.test"><img src="cid:Logo">"#);
        let cids = cid_references(&html);
        assert!(cids.contains("part1.ABC@example.test"), "{cids:?}");
        assert!(cids.contains("logo"), "{cids:?}");
    }
}
