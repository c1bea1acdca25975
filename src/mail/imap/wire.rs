//! IMAP on the wire, without I/O: encoding what is sent (quoted strings,
//! modified UTF-7 folder names, UID sets, flag lists) and decoding what
//! comes back (FETCH items, INTERNALDATE, server texts, what is news for a
//! session in IDLE).

use std::io;

use async_imap::imap_proto::{
    self, AttributeValue, MailboxDatum, Outcome, Response, ResponseCode, Status,
};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use tracing::debug;

use super::ImapError;

/// What an answer means for a session waiting in IDLE.
pub(super) enum IdleEvent {
    Changed,
    Bye(String),
    Other,
}

pub(super) fn idle_event(response: &Response<'_>) -> IdleEvent {
    match response {
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_))
        | Response::Expunge(_)
        | Response::Vanished { .. }
        | Response::Fetch(..) => IdleEvent::Changed,
        Response::Data {
            status: Status::Bye,
            outcome,
        } => IdleEvent::Bye(outcome_text(outcome)),
        _ => IdleEvent::Other,
    }
}

pub(super) fn imap_error(command: &'static str, error: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error;
    match error {
        Error::Io(e) => io_error(e),
        Error::ConnectionLost => {
            ImapError::Closed(format!("the server closed the connection during {command}"))
        }
        Error::No(text) | Error::Bad(text) => ImapError::Protocol {
            command,
            reason: server_text(&text),
        },
        other => ImapError::Protocol {
            command,
            reason: other.to_string(),
        },
    }
}

pub(super) fn io_error(error: io::Error) -> ImapError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        ImapError::Closed(error.to_string())
    } else {
        ImapError::Io(error)
    }
}

/// async-imap formats a NO as `code: Some(..), info: Some("text")`; the
/// text is what a person wants to read.
pub(super) fn server_text(formatted: &str) -> String {
    formatted
        .split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(text, _)| text.replace("\\\"", "\""))
        .unwrap_or_else(|| formatted.to_string())
}

pub(super) fn outcome_text(outcome: &Outcome<'_>) -> String {
    let text = outcome.information.as_deref().unwrap_or("").trim();
    match &outcome.code {
        Some(code @ (ResponseCode::TryCreate | ResponseCode::Alert | ResponseCode::Parse)) => {
            format!("[{code:?}] {text}")
        }
        _ => text.to_string(),
    }
}

pub(super) fn capability_name(capability: &imap_proto::Capability<'_>) -> String {
    match capability {
        imap_proto::Capability::Imap4rev1 => "IMAP4REV1".to_string(),
        imap_proto::Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
        imap_proto::Capability::Atom(a) => a.to_ascii_uppercase(),
    }
}

/// What one FETCH response said about one mail.
#[derive(Debug, Default, PartialEq)]
pub(super) struct FetchParts {
    pub(super) uid: Option<u32>,
    pub(super) flags: Option<Vec<String>>,
    pub(super) internal_date: Option<DateTime<Utc>>,
    pub(super) size: Option<u32>,
    pub(super) body: Option<Vec<u8>>,
}

impl FetchParts {
    pub(super) fn from_attributes(attributes: &[AttributeValue<'_>]) -> FetchParts {
        let mut parts = FetchParts::default();
        for attribute in attributes {
            match attribute {
                AttributeValue::Uid(uid) => parts.uid = Some(*uid),
                AttributeValue::Flags(flags) => {
                    parts.flags = Some(flags.iter().map(|f| f.to_string()).collect());
                }
                AttributeValue::InternalDate(date) => {
                    parts.internal_date = parse_internal_date(date);
                    if parts.internal_date.is_none() {
                        debug!(date = %date, "IMAP INTERNALDATE not understood");
                    }
                }
                AttributeValue::Rfc822Size(size) => parts.size = Some(*size),
                AttributeValue::BodySection {
                    section: None,
                    index: None,
                    data,
                }
                | AttributeValue::Rfc822(data) => {
                    parts.body = Some(data.as_deref().map(<[u8]>::to_vec).unwrap_or_default());
                }
                _ => {}
            }
        }
        parts
    }

    /// Servers may split one mail's items over several FETCH responses.
    pub(super) fn merge(&mut self, other: FetchParts) {
        self.uid = other.uid.or(self.uid);
        self.flags = other.flags.or(self.flags.take());
        self.internal_date = other.internal_date.or(self.internal_date);
        self.size = other.size.or(self.size);
        self.body = other.body.or(self.body.take());
    }
}

/// `date-time` of RFC 3501: `"24-Nov-2025 10:26:00 +0000"`, the day
/// possibly space-padded.
pub(super) fn parse_internal_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|date| date.with_timezone(&Utc))
}

/// A sorted, deduplicated UID list as an IMAP set: `1:3,7,9:10`.
pub(super) fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// An IMAP quoted string. Line breaks and NUL cannot be quoted (they would
/// end or corrupt the command), so they are refused.
pub(super) fn quoted(text: &str) -> Result<String, ImapError> {
    if text.contains(['\r', '\n', '\0']) {
        return Err(ImapError::Invalid(format!(
            "{text:?} contains a line break or NUL"
        )));
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): printable ASCII
/// stays, `&` becomes `&-`, anything else is UTF-16 in base64 with `,` for
/// `/`, between `&` and `-`. Needed for names like `Éléments envoyés`.
pub(super) fn encode_folder(name: &str) -> String {
    const MUTF7: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::general_purpose::NO_PAD,
    );
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&MUTF7.encode(bytes));
        out.push('-');
        pending.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut pending = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// `(\Seen $Label)`: a parenthesised list of flag atoms, nothing that could
/// end the command early.
pub(super) fn valid_flag_list(flags: &str) -> bool {
    flags
        .strip_prefix('(')
        .and_then(|f| f.strip_suffix(')'))
        .is_some_and(|inner| {
            inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " \\$_-.".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn folder_names_use_modified_utf7() {
        assert_eq!(encode_folder("INBOX"), "INBOX");
        assert_eq!(encode_folder("A&B"), "A&-B");
        assert_eq!(encode_folder("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(
            encode_folder("Éléments envoyés"),
            "&AMk-l&AOk-ments envoy&AOk-s"
        );
        // RFC 3501 5.1.3's own example.
        assert_eq!(
            encode_folder("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
    }

    #[test]
    fn quoting_escapes_and_refuses_line_breaks() {
        assert_eq!(quoted(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(matches!(quoted("a\r\nb"), Err(ImapError::Invalid(_))));
    }

    #[test]
    fn flag_lists_are_checked() {
        assert!(valid_flag_list(r"(\Seen)"));
        assert!(valid_flag_list(r"(\Seen $Forwarded)"));
        assert!(valid_flag_list("()"));
        assert!(!valid_flag_list(r"\Seen"));
        assert!(!valid_flag_list("(\\Seen) {5}\r\n"));
    }

    #[test]
    fn internal_dates_parse_with_padded_days_and_offsets() {
        let d = parse_internal_date(" 4-Nov-2025 09:03:07 +0100").unwrap();
        assert_eq!(d.to_rfc3339(), "2025-11-04T08:03:07+00:00");
        let d = parse_internal_date("24-Nov-2025 10:26:00 +0000").unwrap();
        assert_eq!(d.to_rfc3339(), "2025-11-24T10:26:00+00:00");
        assert_eq!(parse_internal_date("yesterday"), None);
    }

    #[test]
    fn fetch_responses_become_parts() {
        let raw = b"* 3 FETCH (UID 7 FLAGS (\\Seen $Label) INTERNALDATE \"24-Nov-2025 10:26:00 +0000\" RFC822.SIZE 5 BODY[] {5}\r\nhello)\r\n";
        let (_, response) = Response::parse(raw).unwrap();
        let Response::Fetch(3, attributes) = response else {
            panic!("not a FETCH: {response:?}");
        };
        let parts = FetchParts::from_attributes(&attributes);
        assert_eq!(parts.uid, Some(7));
        assert_eq!(
            parts.flags,
            Some(vec!["\\Seen".to_string(), "$Label".to_string()])
        );
        assert_eq!(parts.size, Some(5));
        assert_eq!(parts.body.as_deref(), Some(&b"hello"[..]));
        assert!(parts.internal_date.is_some());

        // A flag change arriving on its own, then the body: merged.
        let mut merged = FetchParts::from_attributes(&attributes);
        merged.body = None;
        merged.merge(FetchParts {
            body: Some(b"x".to_vec()),
            ..FetchParts::default()
        });
        assert_eq!(merged.uid, Some(7));
        assert_eq!(merged.body.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn idle_news_is_recognised() {
        for raw in [
            &b"* 4 EXISTS\r\n"[..],
            b"* 1 RECENT\r\n",
            b"* 2 EXPUNGE\r\n",
            b"* 2 FETCH (FLAGS (\\Seen))\r\n",
        ] {
            let (_, response) = Response::parse(raw).unwrap();
            assert!(
                matches!(idle_event(&response), IdleEvent::Changed),
                "{response:?}"
            );
        }
        let (_, response) = Response::parse(b"* OK Still here\r\n").unwrap();
        assert!(matches!(idle_event(&response), IdleEvent::Other));
        let (_, response) = Response::parse(b"* BYE shutting down\r\n").unwrap();
        assert!(matches!(idle_event(&response), IdleEvent::Bye(t) if t == "shutting down"));
    }

    #[test]
    fn server_text_is_extracted_from_async_imap_errors() {
        assert_eq!(
            server_text(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_text("something else"), "something else");
    }
}
