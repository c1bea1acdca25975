//! Raw RFC 5322 bytes → [`ParsedMail`]: pure, no I/O, and total — every
//! input gives a `ParsedMail` or a [`ParseError`], never a panic (invariant 8:
//! a bad mail is quarantined, it never takes its mailbox down).
//!
//! MIME, charsets (with encoding_rs for the multi-byte ones) and RFC 2047 /
//! RFC 2231 decoding are mail-parser's; this module decides what ingest keeps:
//!
//! - **text**: every text/plain body part in order (format=flowed unwrapped,
//!   [`flowed`]); when the mail has only HTML, a text rendering of the
//!   sanitised HTML ([`html::html_to_text`]).
//! - **html**: the HTML body parts, sanitised ([`html::sanitize_html`]):
//!   no scripts, handlers, frames, forms or remote loads; `cid:` kept.
//! - **attachments**: every part that is not a body, named, typed and marked
//!   `inline` when the HTML references its Content-ID.
//! - **auto_reply** and **bounce** ([`bounce`]), and the **content hash**
//!   (its exact construction is documented on `content_hash` below).
//!
//! Every string leaves here as UTF-8 with NUL bytes removed: Postgres `text`
//! refuses NUL, and mail-parser's output is UTF-8 but may carry NUL from a
//! body or an encoded word.
//!
//! # Decisions
//!
//! - **A mail without any header** (bytes that do not start with a header
//!   block) is still a mail when it looks like text: its bytes become the
//!   text body, From/Date/Subject are absent, and its content hash is taken
//!   over the whole input. Bytes that are mostly control characters (more
//!   than 1 in 10 of the first 8 KiB) are [`ParseError::NotAMail`]: an agent
//!   cannot work them, so they go to quarantine, raw, where nothing is lost.
//! - **Missing Message-ID, From or Date** are `None`; the mail still parses.
//! - **Bounces** are reported only when the DSN says at least one recipient
//!   `failed` (or says nothing about actions): a "delayed" warning must not
//!   mark an outgoing message failed. Such reports still count as
//!   auto-replies through their headers.

mod bounce;
mod flowed;
mod html;

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use mail_parser::{Addr, Header, HeaderName, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use super::{Bounce, Mailbox, ParsedAttachment, ParsedMail};

pub use html::{html_to_text, sanitize_html};

/// Why a mail could not become a [`ParsedMail`]. Each of these sends the mail,
/// raw, to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the mail is empty (no bytes, or only whitespace)")]
    Empty,
    #[error("the mail is {size} bytes; the MIME parser addresses at most {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error(
        "no header could be read and the content is not text \
         ({control_bytes} control bytes in the first {sampled}): not a mail"
    )]
    NotAMail {
        control_bytes: usize,
        sampled: usize,
    },
    /// mail-parser promises never to panic; if it does anyway, the panic is
    /// caught here so that the mailbox carries on. A bug to report upstream.
    #[error("the MIME parser failed on this mail ({0}); please report it")]
    ParserPanicked(String),
}

/// mail-parser keeps offsets as `u32`.
const MAX_PARSABLE: usize = u32::MAX as usize;

/// Parses one raw mail (the bytes of `BODY[]`).
pub fn parse(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    if raw.len() > MAX_PARSABLE {
        return Err(ParseError::TooLarge {
            size: raw.len(),
            max: MAX_PARSABLE,
        });
    }
    // Belt and braces for invariant 8: a panic in a dependency must not kill
    // the mailbox actor. The fuzz target asserts this arm is never taken.
    match std::panic::catch_unwind(|| parse_unguarded(raw)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            Err(ParseError::ParserPanicked(clean(&msg)))
        }
    }
}

fn parse_unguarded(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    match MessageParser::default().parse(raw) {
        // mail-parser skips lines it cannot read as headers, and reads any
        // line with a colon as one. Without a single real header field name
        // the input is not a header block: it takes the headerless path, so
        // that its lines are kept (or binary is refused).
        Some(msg) if msg.headers().iter().any(|h| is_field_name(h.name.as_str())) => {
            Ok(from_message(raw, &msg))
        }
        _ => headerless(raw),
    }
}

fn from_message(raw: &[u8], msg: &Message<'_>) -> ParsedMail {
    let root = msg.root_part();
    let from = msg.from().and_then(first_mailbox);

    let mut html_src = String::new();
    let mut has_html = false;
    for part in msg.html_bodies() {
        match &part.body {
            PartType::Html(h) => {
                has_html = true;
                html_src.push_str(h);
            }
            PartType::Text(t) => {
                html_src.push_str("<div>");
                html_src.push_str(&html::escape_text(&body_text(part, t)).replace('\n', "<br>"));
                html_src.push_str("</div>");
            }
            // An image shown between body parts (Apple Mail): keep its place.
            PartType::InlineBinary(_) | PartType::Binary(_) => {
                if let Some(cid) = part.content_id().map(clean).filter(|c| !c.is_empty()) {
                    html_src.push_str("<img src=\"cid:");
                    html_src.push_str(&html::escape_attr(&cid));
                    html_src.push_str("\">");
                }
            }
            PartType::Message(_) | PartType::Multipart(_) => {}
        }
    }
    let html = has_html
        .then(|| html::sanitize_html(&html_src))
        .filter(|h| !h.trim().is_empty());

    // mail-parser lists an HTML part among the text bodies when the mail (or
    // an alternative) has no text/plain: its rendering comes from the HTML
    // sanitised above rather than sanitising it a second time.
    let mut text = String::new();
    let mut html_as_text = Vec::new();
    for part in msg.text_bodies() {
        let chunk = match &part.body {
            PartType::Text(t) => body_text(part, t),
            PartType::Html(h) => {
                html_as_text.push(h);
                continue;
            }
            _ => continue,
        };
        if !text.is_empty() && !chunk.is_empty() {
            text.push('\n');
        }
        text.push_str(chunk.trim_end());
    }
    if text.trim().is_empty() {
        text = match &html {
            Some(h) => html::html_to_text(h),
            None => html_as_text
                .iter()
                .map(|h| html::html_to_text(&html::sanitize_html(h)))
                .collect::<Vec<_>>()
                .join("\n"),
        };
    } else {
        // Text and HTML-only sections mixed (rare): render those on their own.
        for h in html_as_text {
            text.push('\n');
            text.push_str(&html::html_to_text(&html::sanitize_html(h)));
        }
    }

    if !root.is_multipart()
        && let Some(stray) = stray_header_lines(raw, root)
    {
        text = if text.is_empty() {
            stray
        } else {
            format!("{stray}\n{text}")
        };
    }

    let cids = html
        .as_deref()
        .map(html::cid_references)
        .unwrap_or_default();
    let attachments = msg
        .attachments()
        .enumerate()
        .filter_map(|(i, part)| attachment(i + 1, part, &cids))
        .collect();

    ParsedMail {
        message_id: msg.message_id().map(clean).filter(|s| !s.is_empty()),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        reply_to: msg.reply_to().map(mailboxes).unwrap_or_default(),
        to: msg.all_to().flat_map(mailboxes).collect(),
        cc: msg.all_cc().flat_map(mailboxes).collect(),
        subject: msg.subject().map(one_line).unwrap_or_default(),
        date: msg.date().and_then(to_utc),
        text: clean(&text),
        html,
        attachments,
        auto_reply: is_auto_reply(raw, root.headers()),
        bounce: bounce::detect(msg, from.as_ref()),
        content_hash: content_hash(raw, root.headers(), root.raw_body_offset() as usize),
        from,
        size: raw.len(),
    }
}

/// Body lines that a mail without the blank line after its headers (CPython
/// sample msg_35) left inside the header block: mail-parser drops lines that
/// are neither a field nor a continuation, and they would be lost to the
/// agent. `None` when there are none.
fn stray_header_lines(raw: &[u8], root: &mail_parser::MessagePart<'_>) -> Option<String> {
    let block = raw.get(root.raw_header_offset() as usize..root.raw_body_offset() as usize)?;
    let stray: Vec<String> = block
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| {
            let is_field = line.iter().position(|&b| b == b':').is_some_and(|colon| {
                colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b))
            });
            let is_continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            // An mbox "From " separator is not part of the mail.
            !line.trim_ascii().is_empty()
                && !is_field
                && !is_continuation
                && !line.starts_with(b"From ")
        })
        .map(|line| clean(&String::from_utf8_lossy(line)))
        .collect();
    (!stray.is_empty()).then(|| stray.join("\n"))
}

/// RFC 5322 `field-name`: printable ASCII except the colon.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Input that has no header block: a mail only if it looks like text.
fn headerless(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    let sample = &raw[..raw.len().min(8192)];
    let control_bytes = sample
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c)) || b == 0x7f)
        .count();
    if control_bytes * 10 > sample.len() {
        return Err(ParseError::NotAMail {
            control_bytes,
            sampled: sample.len(),
        });
    }
    let text = String::from_utf8_lossy(raw);
    Ok(ParsedMail {
        message_id: None,
        in_reply_to: Vec::new(),
        references: Vec::new(),
        from: None,
        reply_to: Vec::new(),
        to: Vec::new(),
        cc: Vec::new(),
        subject: String::new(),
        date: None,
        text: clean(normalize_newlines(&text).trim()),
        html: None,
        attachments: Vec::new(),
        auto_reply: false,
        bounce: None,
        content_hash: content_hash(raw, &[], 0),
        size: raw.len(),
    })
}

/// A text body part as ingest stores it: LF line ends, format=flowed unwrapped.
fn body_text(part: &mail_parser::MessagePart<'_>, text: &str) -> String {
    let text = normalize_newlines(text);
    let ct = part.content_type();
    let attr_is = |name: &str, value: &str| {
        ct.and_then(|c| c.attribute(name))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    if attr_is("format", "flowed") {
        flowed::unflow(&text, attr_is("delsp", "yes"))
    } else {
        text.into_owned()
    }
}

fn attachment(
    index: usize,
    part: &mail_parser::MessagePart<'_>,
    cids: &HashSet<String>,
) -> Option<ParsedAttachment> {
    let (fallback_type, data): (&str, Vec<u8>) = match &part.body {
        PartType::Text(t) => ("text/plain", t.as_bytes().to_vec()),
        PartType::Html(h) => ("text/html", h.as_bytes().to_vec()),
        PartType::Binary(b) | PartType::InlineBinary(b) => ("application/octet-stream", b.to_vec()),
        PartType::Message(m) => ("message/rfc822", m.raw_message().to_vec()),
        PartType::Multipart(_) => return None,
    };
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .map(|t| clean(&t).trim().to_ascii_lowercase())
        .filter(|t| t.contains('/') && !t.chars().any(char::is_whitespace))
        .unwrap_or_else(|| fallback_type.to_string());
    let content_id = part
        .content_id()
        .map(clean)
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let inline = content_id
        .as_ref()
        .is_some_and(|c| cids.contains(c) || cids.contains(&c.to_lowercase()));
    let filename = part
        .attachment_name()
        .and_then(safe_filename)
        .unwrap_or_else(|| format!("attachment-{index}.{}", extension_for(&content_type)));
    Some(ParsedAttachment {
        filename,
        content_type,
        content_id,
        inline,
        data,
    })
}

/// The last path component of a sender-chosen name, without control
/// characters; `None` when nothing usable is left (`..`, empty).
fn safe_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
        return None;
    }
    Some(trimmed.chars().take(200).collect())
}

fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/pgp-signature" => "asc",
        "application/pkcs7-signature" | "application/x-pkcs7-signature" => "p7s",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/csv" => "csv",
        "text/calendar" => "ics",
        "message/rfc822" | "message/global" => "eml",
        "message/delivery-status"
        | "message/global-delivery-status"
        | "text/rfc822-headers"
        | "message/global-headers"
        | "message/disposition-notification" => "txt",
        _ => "bin",
    }
}

fn first_mailbox(addr: &mail_parser::Address<'_>) -> Option<Mailbox> {
    addr.iter().find_map(mailbox)
}

fn mailboxes(addr: &mail_parser::Address<'_>) -> Vec<Mailbox> {
    addr.iter().filter_map(mailbox).collect()
}

fn mailbox(addr: &Addr<'_>) -> Option<Mailbox> {
    let address = clean(addr.address()?);
    let address = address.trim();
    if address.is_empty() {
        return None;
    }
    // Domains are case-insensitive; local parts are kept as written.
    let address = match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => address.to_string(),
    };
    let name = addr
        .name()
        .map(one_line)
        .filter(|n| !n.is_empty() && *n != address);
    Some(Mailbox { name, address })
}

fn id_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    let mut seen = HashSet::new();
    value
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .map(|id| clean(id).trim().to_string())
        .filter(|id| !id.is_empty() && seen.insert(id.clone()))
        .collect()
}

/// mail-parser's date fields → UTC; `None` for impossible dates (Feb 30th).
fn to_utc(d: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    let naive = NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())?
        // A leap second (":60") is read as :59 rather than dropping the date.
        .and_hms_opt(d.hour.into(), d.minute.into(), u32::from(d.second).min(59))?;
    let secs = i32::from(d.tz_hour) * 3600 + i32::from(d.tz_minute) * 60;
    let offset = FixedOffset::east_opt(if d.tz_before_gmt { -secs } else { secs })?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// The auto-reply headers of DESIGN.md ("Threads"), on the top-level header
/// block only (a forwarded auto-reply inside a customer's mail does not count).
fn is_auto_reply(raw: &[u8], headers: &[Header<'_>]) -> bool {
    headers.iter().any(|h| {
        let name = h.name.as_str();
        let value = || {
            let v = raw_value(raw, h).to_ascii_lowercase();
            // "auto-replied; owner-email=..." → "auto-replied"
            v.split(';').next().unwrap_or_default().trim().to_string()
        };
        if name.eq_ignore_ascii_case("auto-submitted") {
            value() != "no"
        } else if name.eq_ignore_ascii_case("x-autoreply")
            || name.eq_ignore_ascii_case("x-autorespond")
        {
            !matches!(value().as_str(), "no" | "false" | "0")
        } else if name.eq_ignore_ascii_case("precedence") {
            matches!(value().as_str(), "bulk" | "junk" | "list" | "auto_reply")
        } else {
            name.eq_ignore_ascii_case("x-loop")
        }
    })
}

/// A header's value as written, unfolded (CR and LF dropped), trimmed; lossy
/// for 8-bit bytes.
fn raw_value(raw: &[u8], h: &Header<'_>) -> String {
    String::from_utf8_lossy(&raw_value_bytes(raw, h)).into_owned()
}

fn raw_value_bytes(raw: &[u8], h: &Header<'_>) -> Vec<u8> {
    let bytes = raw
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default();
    let unfolded: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    unfolded.trim_ascii().to_vec()
}

/// The fingerprint that tells a re-delivered mail from a new mail under a
/// reused (or missing) Message-ID (invariant 1). Construction, version 1:
///
/// ```text
/// SHA-256( "mailroom.content-hash.v1\n"
///          ‖ field(From) ‖ field(Date) ‖ field(Subject)
///          ‖ body )
/// field(h) = 0x00                                  if the header is absent
///          | 0x01 ‖ u64_be(len(v)) ‖ v             v = the first such header's
///                                                  raw value bytes (as written,
///                                                  not decoded), CR and LF
///                                                  removed (unfolded), trimmed
///                                                  of ASCII whitespace
/// body     = the raw bytes after the top-level header block (after the blank
///            line), with CRLF turned into LF and trailing CR/LF removed
/// ```
///
/// Received, Delivered-To, Return-Path and every other header are left out,
/// so a mail that reached us twice on different paths hashes the same; the
/// length prefixes keep "a"+"bc" apart from "ab"+"c". A mail without any
/// header hashes its whole input as the body.
fn content_hash(raw: &[u8], headers: &[Header<'_>], body_offset: usize) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"mailroom.content-hash.v1\n");
    for name in [HeaderName::From, HeaderName::Date, HeaderName::Subject] {
        match headers.iter().find(|h| h.name == name) {
            Some(h) => {
                let value = raw_value_bytes(raw, h);
                hasher.update([1u8]);
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(&value);
            }
            None => hasher.update([0u8]),
        }
    }
    let body = raw.get(body_offset..).unwrap_or_default();
    let end = body
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    let body = &body[..end];
    // CRLF → LF, streamed: hash the runs between the CRs that precede an LF.
    let mut start = 0;
    for (i, pair) in body.windows(2).enumerate() {
        if pair == b"\r\n" {
            hasher.update(&body[start..i]);
            start = i + 1;
        }
    }
    hasher.update(&body[start..]);
    hasher.finalize().into()
}

/// NUL removed (Postgres `text` refuses it).
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

/// A header-ish string on one line: NUL removed, other control characters
/// become spaces, runs of whitespace one space, trimmed.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || (c.is_control() && c != '\0'))
        .map(|w| w.replace('\0', ""))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalize_newlines(s: &str) -> Cow<'_, str> {
    if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests;
