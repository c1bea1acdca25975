//! Thread 1 as one file: the `application/mbox` attachment (RFC 4155) that
//! thread 2 carries when a customer replies to a closed thread (DESIGN.md,
//! "Threads"). Pure: the backends load the messages, this renders them.
//!
//! # Format: mboxrd
//!
//! - Each message starts with a separator line
//!   `From <sender> <date>`, where `<sender>` is the message's From address
//!   (`MAILER-DAEMON` when it has none, or one with spaces or control
//!   characters), and `<date>` is when the store received or created the
//!   message, in UTC, in C `asctime` form: `Thu Mar 13 15:00:10 2025` (the
//!   day of the month padded with a space).
//! - Then the message itself: its **raw bytes as received** when the store
//!   has them (incoming mail), else a minimal RFC 5322 rendering of the
//!   stored fields (our outgoing mail, notes): `From`, `To`, `Cc`,
//!   `Subject`, `Date`, `Message-ID`, `In-Reply-To`, `References`,
//!   `X-Mailroom-Kind` (the message kind), and the text as a UTF-8
//!   `text/plain` body (8bit). Non-ASCII header values become RFC 2047
//!   encoded words; CR and LF inside a value become spaces.
//! - **Quoting** (the "rd" of mboxrd): every line of a message that starts
//!   with `From `, after any number of `>`, gets one more `>` in front.
//!   Readers remove one `>` from such lines, so every message reads back
//!   byte for byte (`>From ` included, which the older mboxo cannot promise).
//! - **Line endings** are the message's own: raw mail keeps what the server
//!   delivered (IMAP hands over CRLF), rendered messages use CRLF. The
//!   separator line and the empty line that ends each message use the
//!   message's ending (CRLF when its first line ends with CRLF, else LF).
//!   A message that does not end with a line ending gets one.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::domain::{Direction, MessageKind};
use crate::mail::Mailbox;

/// One message of the thread, as the backends load it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MboxMessage {
    /// The raw mail, when the store has it.
    pub raw: Option<Vec<u8>>,
    pub direction: Direction,
    pub kind: MessageKind,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The messages, in the order given, as one mboxrd file.
pub(crate) fn render(messages: &[MboxMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let rendered;
        let body: &[u8] = match &m.raw {
            Some(raw) => raw,
            None => {
                rendered = render_rfc5322(m);
                &rendered
            }
        };
        let eol: &[u8] = if first_line_ends_crlf(body) {
            b"\r\n"
        } else {
            b"\n"
        };
        out.extend_from_slice(separator(m).as_bytes());
        out.extend_from_slice(eol);
        quote_into(&mut out, body);
        if !body.is_empty() && !body.ends_with(b"\n") {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(eol);
    }
    out
}

/// `From sender asctime-date`.
fn separator(m: &MboxMessage) -> String {
    let sender = m
        .from
        .as_ref()
        .map(|f| f.address.trim())
        .filter(|a| !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || c.is_control()))
        .unwrap_or("MAILER-DAEMON");
    format!(
        "From {sender} {}",
        m.created_at.format("%a %b %e %H:%M:%S %Y")
    )
}

fn first_line_ends_crlf(body: &[u8]) -> bool {
    body.iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && body[i - 1] == b'\r')
}

/// Append `body`, giving every `>*From ` line one more `>`.
fn quote_into(out: &mut Vec<u8>, body: &[u8]) {
    for line in body.split_inclusive(|&b| b == b'\n') {
        let unquoted = line
            .iter()
            .position(|&b| b != b'>')
            .map_or(&line[line.len()..], |i| &line[i..]);
        if unquoted.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
}

/// A minimal RFC 5322 mail from a message's stored fields (CRLF).
fn render_rfc5322(m: &MboxMessage) -> Vec<u8> {
    let mut head = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = write!(head, "{name}: {value}\r\n");
    };
    match &m.from {
        Some(from) => field("From", &address(from)),
        None => field("From", "MAILER-DAEMON"),
    }
    if !m.to.is_empty() {
        field("To", &address_list(&m.to));
    }
    if !m.cc.is_empty() {
        field("Cc", &address_list(&m.cc));
    }
    field("Subject", &encode_words(&m.subject));
    field("Date", &m.created_at.to_rfc2822());
    if let Some(id) = &m.message_id {
        field("Message-ID", &angle(id));
    }
    if let Some(ids) = &m.in_reply_to {
        let ids: Vec<String> = ids.split_whitespace().map(angle).collect();
        field("In-Reply-To", &ids.join(" "));
    }
    if !m.references.is_empty() {
        let ids: Vec<String> = m.references.iter().map(|id| angle(id)).collect();
        field("References", &ids.join(" "));
    }
    field("X-Mailroom-Kind", m.kind.as_str());
    field("X-Mailroom-Direction", m.direction.as_str());
    field("MIME-Version", "1.0");
    field("Content-Type", "text/plain; charset=utf-8");
    field("Content-Transfer-Encoding", "8bit");
    head.push_str("\r\n");
    let text = m.text.as_deref().unwrap_or_default();
    for line in text.split_inclusive('\n') {
        head.push_str(line.trim_end_matches(['\r', '\n']));
        head.push_str("\r\n");
    }
    head.into_bytes()
}

/// `<id>`, with characters that would break the header removed.
fn angle(id: &str) -> String {
    let id: String = id
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>'))
        .collect();
    format!("<{id}>")
}

fn address_list(list: &[Mailbox]) -> String {
    list.iter().map(address).collect::<Vec<_>>().join(", ")
}

/// `"Display Name" <address>` or just the address.
fn address(m: &Mailbox) -> String {
    let addr: String = m
        .address
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>'))
        .collect();
    match m.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        None => addr,
        Some(name) if name.is_ascii() => {
            let name = one_line(name).replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{name}\" <{addr}>")
        }
        Some(name) => format!("{} <{addr}>", encode_words(name)),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A header value: as it is when ASCII, else RFC 2047 `B` encoded words of
/// at most 75 characters, folded onto continuation lines.
fn encode_words(value: &str) -> String {
    let value = one_line(value);
    if value.is_ascii() {
        return value;
    }
    // 45 bytes of UTF-8 → 60 base64 characters + 12 of `=?UTF-8?B?…?=`.
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut rest = value.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        words.push(format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(chunk)
        ));
        rest = tail;
    }
    words.join("\r\n ")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 3, 9, 5, 7).unwrap()
    }

    fn message(raw: Option<&[u8]>) -> MboxMessage {
        MboxMessage {
            raw: raw.map(<[u8]>::to_vec),
            direction: Direction::In,
            kind: MessageKind::Mail,
            from: Some(Mailbox {
                name: Some("Jane Doe".into()),
                address: "jane@customer.test".into(),
            }),
            to: vec![Mailbox {
                name: None,
                address: "support@example.test".into(),
            }],
            cc: Vec::new(),
            subject: "Hello".into(),
            text: Some("Body\nFrom here on\n".into()),
            message_id: Some("a@b".into()),
            in_reply_to: None,
            references: Vec::new(),
            created_at: at(),
        }
    }

    /// What an mboxrd reader does: split on separators, unquote one `>`.
    fn read_back(mbox: &[u8]) -> Vec<Vec<u8>> {
        let mut messages: Vec<Vec<u8>> = Vec::new();
        for line in mbox.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                messages.push(Vec::new());
                continue;
            }
            let Some(current) = messages.last_mut() else {
                panic!("content before the first separator");
            };
            let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
            if unquoted > 0 && line[unquoted..].starts_with(b"From ") {
                current.extend_from_slice(&line[1..]);
            } else {
                current.extend_from_slice(line);
            }
        }
        // Each message ends with the blank line the writer added.
        for m in &mut messages {
            if m.ends_with(b"\r\n") {
                m.truncate(m.len() - 2);
            } else if m.ends_with(b"\n") {
                m.truncate(m.len() - 1);
            }
        }
        messages
    }

    #[test]
    fn separators_use_asctime_dates_and_the_sender() {
        let mbox = render(&[message(Some(b"Subject: x\n\nhi\n"))]);
        let text = String::from_utf8(mbox).unwrap();
        assert!(
            text.starts_with("From jane@customer.test Mon Mar  3 09:05:07 2025\n"),
            "{text}"
        );
        let mut anonymous = message(Some(b"x\n"));
        anonymous.from = None;
        let text = String::from_utf8(render(&[anonymous])).unwrap();
        assert!(text.starts_with("From MAILER-DAEMON Mon Mar  3 09:05:07 2025\n"));
    }

    #[test]
    fn from_lines_are_quoted_and_read_back_exactly() {
        let raw =
            b"Subject: s\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\nFromage\r\n";
        let other = b"Subject: t\n\nno newline at the end";
        let mbox = render(&[message(Some(raw)), message(Some(other))]);
        let text = String::from_utf8(mbox.clone()).unwrap();
        assert!(
            text.contains("\r\n>From the start\r\n>>From quoted\r\n>>>From twice\r\nFromage\r\n")
        );
        let back = read_back(&mbox);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], raw.to_vec());
        assert_eq!(back[1], [other.as_slice(), b"\n"].concat());
    }

    #[test]
    fn messages_without_raw_are_rendered_as_rfc5322() {
        let mut note = message(None);
        note.direction = Direction::Out;
        note.subject = "Réponse à votre demande".into();
        note.in_reply_to = Some("x@y".into());
        note.references = vec!["r1@y".into(), "x@y".into()];
        let mbox = render(&[note]);
        let text = String::from_utf8(mbox).unwrap();
        assert!(
            text.contains("\r\nFrom: \"Jane Doe\" <jane@customer.test>\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nTo: support@example.test\r\n"));
        assert!(text.contains("\r\nSubject: =?UTF-8?B?"));
        assert!(text.contains("\r\nDate: Mon, 3 Mar 2025 09:05:07 +0000\r\n"));
        assert!(text.contains("\r\nMessage-ID: <a@b>\r\n"));
        assert!(text.contains("\r\nIn-Reply-To: <x@y>\r\n"));
        assert!(text.contains("\r\nReferences: <r1@y> <x@y>\r\n"));
        assert!(text.contains("\r\nX-Mailroom-Direction: out\r\n"));
        assert!(text.contains("\r\n\r\nBody\r\n>From here on\r\n"));
        let parsed = crate::mail::parse::parse(&read_back(text.as_bytes())[0]).unwrap();
        assert_eq!(parsed.subject, "Réponse à votre demande");
        assert_eq!(parsed.text.trim_end(), "Body\nFrom here on");
    }

    #[test]
    fn long_non_ascii_values_fold_into_short_encoded_words() {
        let value = encode_words(&"ü".repeat(100));
        for word in value.split("\r\n ") {
            assert!(word.len() <= 75, "{word}");
            assert!(word.starts_with("=?UTF-8?B?") && word.ends_with("?="));
        }
        assert_eq!(encode_words("plain\r\nvalue"), "plain  value");
    }
}
