//! Outgoing mail as bytes, kept apart from who may send it and where it is
//! stored (`http/compose.rs`, `store/outbox.rs`): recipients parsed and
//! checked, reply and reply-all recipients worked out, the bodies prepared
//! (HTML sanitised, a text alternative made, the signature appended), and
//! the MIME built with lettre. Pure: no I/O.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox as LettreMailbox, MultiPart, SinglePart};

use super::Mailbox;
use super::parse::{html_to_text, sanitize_html};
use crate::domain::EmailAddress;

/// At most this many ids are kept in an outgoing References header: the
/// first (the thread's root) and the newest ones. Long threads would
/// otherwise grow it without bound; RFC 5322 3.6.4 allows trimming.
pub const MAX_REFERENCES: usize = 20;

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Everything the MIME of one outgoing mail is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct MailParts {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text: String,
    /// Sanitised HTML; the text above is its alternative.
    pub html: Option<String>,
    /// Without angle brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub attachments: Vec<OutgoingFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// The addresses that could not be used, as given.
    #[error("not valid email addresses: {}", .0.join(", "))]
    BadAddresses(Vec<String>),
    #[error("the mail cannot be built: {0}")]
    Build(String),
}

/// Parse recipients given as `addr@example.test` or `Name <addr@example.test>`.
/// Every bad one is reported together, as given.
pub fn parse_recipients(list: &[String]) -> Result<Vec<Mailbox>, ComposeError> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for item in list {
        match parse_recipient(item) {
            Some(m) => good.push(m),
            None => bad.push(item.clone()),
        }
    }
    if bad.is_empty() {
        Ok(good)
    } else {
        Err(ComposeError::BadAddresses(bad))
    }
}

fn parse_recipient(item: &str) -> Option<Mailbox> {
    let s = item.trim();
    let (name, address) = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(open), Some(rest)) => {
            let name = rest[..open].trim().trim_matches('"').trim();
            (
                (!name.is_empty()).then(|| name.to_string()),
                &rest[open + 1..],
            )
        }
        _ => (None, s),
    };
    let address = EmailAddress::parse(address).ok()?;
    // lettre is stricter than EmailAddress (e.g. on the domain); an address
    // it cannot put in a header is refused here, not when the mail is built.
    address.as_str().parse::<lettre::Address>().ok()?;
    Some(Mailbox {
        name,
        address: address.as_str().to_string(),
    })
}

/// Whether `m` is one of `ours` (case-insensitively).
fn is_ours(m: &Mailbox, ours: &[String]) -> bool {
    ours.iter()
        .any(|o| o.trim().eq_ignore_ascii_case(m.address.trim()))
}

/// `list` without our addresses and without repeats (first kept).
pub fn without(list: Vec<Mailbox>, ours: &[String], seen: &mut Vec<String>) -> Vec<Mailbox> {
    list.into_iter()
        .filter(|m| !is_ours(m, ours))
        .filter(|m| {
            let key = m.address.trim().to_lowercase();
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        })
        .collect()
}

/// Who a reply goes to: the Reply-To of the mail replied to, else its From.
pub fn reply_to_of(reply_to: &[Mailbox], from: Option<&Mailbox>) -> Vec<Mailbox> {
    if reply_to.is_empty() {
        from.cloned().into_iter().collect()
    } else {
        reply_to.to_vec()
    }
}

/// Reply-all: To = the reply address(es) and the original To, Cc = the
/// original Cc, our own addresses left out, each address once.
pub fn reply_all(
    reply_to: &[Mailbox],
    from: Option<&Mailbox>,
    to: &[Mailbox],
    cc: &[Mailbox],
    ours: &[String],
) -> (Vec<Mailbox>, Vec<Mailbox>) {
    let mut seen = Vec::new();
    let mut first = reply_to_of(reply_to, from);
    first.extend(to.iter().cloned());
    let to = without(first, ours, &mut seen);
    let cc = without(cc.to_vec(), ours, &mut seen);
    (to, cc)
}

/// References of a reply: the original's References plus its Message-ID,
/// trimmed to the root and the newest ids ([`MAX_REFERENCES`]).
pub fn reply_references(original: &[String], message_id: Option<&str>) -> Vec<String> {
    let mut refs: Vec<String> = original.to_vec();
    if let Some(id) = message_id {
        refs.push(id.to_string());
    }
    refs.dedup();
    if refs.len() > MAX_REFERENCES {
        let tail = refs.split_off(refs.len() - (MAX_REFERENCES - 1));
        refs.truncate(1);
        refs.extend(tail);
    }
    refs
}

/// The bodies of an outgoing mail: the HTML sanitised (with the incoming
/// sanitiser's policy, except that remote images are kept: they are the
/// agent's own, e.g. a logo, and the customer's client decides whether to
/// load them), a text alternative made from it when no text is given, and
/// the signature appended to both.
pub fn bodies(
    text: Option<&str>,
    html: Option<&str>,
    signature: Option<&str>,
) -> (String, Option<String>) {
    let html = html
        .filter(|h| !h.trim().is_empty())
        .map(|h| sanitize_html(h).replace(" data-remote-src=\"", " src=\""));
    let mut text = match (text, &html) {
        (Some(t), _) => t.to_string(),
        (None, Some(h)) => html_to_text(h),
        (None, None) => String::new(),
    };
    let mut html = html;
    if let Some(sig) = signature
        .map(str::trim_end)
        .filter(|s| !s.trim().is_empty())
    {
        text = format!("{}\n\n{sig}\n", text.trim_end());
        if let Some(h) = &mut html {
            let escaped = escape_html(sig).replace('\n', "<br>\n");
            h.push_str(&format!(
                "\n<br><br>\n<div class=\"signature\">{escaped}</div>"
            ));
        }
    }
    (text, html)
}

/// The text of a forward: the agent's text, then the original's headers and text.
pub fn forwarded_text(intro: &str, header: &[(&str, String)], original: &str) -> String {
    let mut out = intro.trim_end().to_string();
    out.push_str("\n\n---------- Forwarded message ----------\n");
    for (name, value) in header {
        if !value.is_empty() {
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    out.push('\n');
    out.push_str(original);
    out
}

/// The HTML of a forward, if either side has HTML.
pub fn forwarded_html(
    intro_html: Option<&str>,
    intro_text: &str,
    header: &[(&str, String)],
    original_html: Option<&str>,
    original_text: &str,
) -> Option<String> {
    if intro_html.is_none() && original_html.is_none() {
        return None;
    }
    let intro = intro_html
        .map(str::to_string)
        .unwrap_or_else(|| text_to_html(intro_text));
    let original = original_html
        .map(str::to_string)
        .unwrap_or_else(|| text_to_html(original_text));
    let mut head = String::new();
    for (name, value) in header {
        if !value.is_empty() {
            head.push_str(&format!("{name}: {}<br>\n", escape_html(value)));
        }
    }
    Some(format!(
        "{intro}\n<br><br>\n<div class=\"forwarded\">---------- Forwarded message ----------<br>\n{head}<br>\n{original}</div>"
    ))
}

fn text_to_html(text: &str) -> String {
    escape_html(text).replace('\n', "<br>\n")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A mailbox as a header shows it: `Name <addr>` or `addr`.
pub fn display(list: &[Mailbox]) -> String {
    list.iter()
        .map(|m| match &m.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", m.address),
            _ => m.address.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn lettre_mailbox(m: &Mailbox) -> Result<LettreMailbox, ComposeError> {
    let address = m
        .address
        .trim()
        .parse::<lettre::Address>()
        .map_err(|_| ComposeError::BadAddresses(vec![m.address.clone()]))?;
    Ok(LettreMailbox::new(
        m.name.clone().filter(|n| !n.trim().is_empty()),
        address,
    ))
}

/// The whole message, as sent. Bcc recipients are not in it (they are only
/// in the SMTP envelope).
pub fn build_mime(parts: &MailParts) -> Result<Vec<u8>, ComposeError> {
    let mut builder = lettre::Message::builder()
        .from(lettre_mailbox(&parts.from)?)
        .subject(parts.subject.clone())
        .message_id(Some(format!("<{}>", parts.message_id)))
        .user_agent("mailroom".to_string());
    for m in &parts.to {
        builder = builder.to(lettre_mailbox(m)?);
    }
    for m in &parts.cc {
        builder = builder.cc(lettre_mailbox(m)?);
    }
    if parts.to.is_empty() && parts.cc.is_empty() {
        // A mail with Bcc recipients only: lettre derives the envelope from
        // the headers and needs one recipient there; the real envelope is
        // built by the sender from the stored recipients anyway.
        builder = builder.to(lettre_mailbox(&parts.from)?);
    }
    if let Some(id) = &parts.in_reply_to {
        builder = builder.in_reply_to(format!("<{id}>"));
    }
    if !parts.references.is_empty() {
        let refs: Vec<String> = parts.references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(refs.join(" "));
    }
    let plain = || SinglePart::plain(parts.text.clone());
    let alternative = parts
        .html
        .as_ref()
        .map(|html| MultiPart::alternative_plain_html(parts.text.clone(), html.clone()));
    let message = if parts.attachments.is_empty() {
        match alternative {
            Some(alt) => builder.multipart(alt),
            None => builder.singlepart(plain()),
        }
    } else {
        let mut mixed = match alternative {
            Some(alt) => MultiPart::mixed().multipart(alt),
            None => MultiPart::mixed().singlepart(plain()),
        };
        for file in &parts.attachments {
            let content_type = ContentType::parse(&file.content_type)
                .or_else(|_| ContentType::parse("application/octet-stream"))
                .map_err(|e| ComposeError::Build(format!("content type: {e}")))?;
            // Always base64: lettre would pick 7bit or quoted-printable for
            // data that looks like text and normalise its line ends, and a
            // file must arrive byte for byte.
            let body = Body::new_with_encoding(file.data.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| ComposeError::Build("an attachment cannot be encoded".into()))?;
            mixed =
                mixed.singlepart(Attachment::new(file.filename.clone()).body(body, content_type));
        }
        builder.multipart(mixed)
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::parse::parse;

    fn mb(address: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: address.into(),
        }
    }

    #[test]
    fn recipients_parse_with_or_without_a_name_and_bad_ones_are_all_listed() {
        let ok = parse_recipients(&["a@example.test".into(), "Jane Doe <j@Example.TEST>".into()])
            .unwrap();
        assert_eq!(ok[0], mb("a@example.test"));
        assert_eq!(ok[1].name.as_deref(), Some("Jane Doe"));
        assert_eq!(ok[1].address, "j@example.test");
        let err = parse_recipients(&["nope".into(), "x@y.test".into(), "a@@b".into()]).unwrap_err();
        assert_eq!(
            err,
            ComposeError::BadAddresses(vec!["nope".into(), "a@@b".into()])
        );
    }

    #[test]
    fn reply_all_leaves_out_our_addresses_and_repeats() {
        let (to, cc) = reply_all(
            &[],
            Some(&mb("cust@example.test")),
            &[mb("Support@Example.test"), mb("colleague@example.test")],
            &[mb("cust@example.test"), mb("boss@example.test")],
            &["support@example.test".into()],
        );
        assert_eq!(
            to,
            vec![mb("cust@example.test"), mb("colleague@example.test")]
        );
        assert_eq!(cc, vec![mb("boss@example.test")]);
    }

    #[test]
    fn references_keep_the_root_and_the_newest() {
        let original: Vec<String> = (0..30).map(|i| format!("id{i}@x")).collect();
        let refs = reply_references(&original, Some("last@x"));
        assert_eq!(refs.len(), MAX_REFERENCES);
        assert_eq!(refs[0], "id0@x");
        assert_eq!(refs.last().map(String::as_str), Some("last@x"));
        assert_eq!(reply_references(&[], Some("m@x")), vec!["m@x".to_string()]);
    }

    #[test]
    fn html_is_sanitised_and_gets_a_text_alternative_and_the_signature() {
        let (text, html) = bodies(
            None,
            Some(
                "<p>Hello <b>you</b></p><script>alert(1)</script><img src=\"https://x.test/logo.png\">",
            ),
            Some("-- \nSupport"),
        );
        let html = html.unwrap();
        assert!(!html.contains("script"), "{html}");
        assert!(html.contains("src=\"https://x.test/logo.png\""), "{html}");
        assert!(html.contains("Support"));
        assert!(text.starts_with("Hello you"), "{text}");
        assert!(text.ends_with("-- \nSupport\n"), "{text:?}");
    }

    #[test]
    fn built_mail_parses_back_with_its_headers_and_without_bcc() {
        let refs: Vec<String> = (0..12)
            .map(|i| format!("a-long-message-id-{i}@customer.example.test"))
            .collect();
        let parts = MailParts {
            from: mb("support@example.test"),
            to: vec![Mailbox {
                name: Some("Jane Doe".into()),
                address: "jane@example.test".into(),
            }],
            cc: vec![mb("cc@example.test")],
            subject: "Re: Ünïcode [SERV#12]".into(),
            text: "Hello\n".into(),
            html: Some("<p>Hello</p>".into()),
            message_id: "mr.serv.12.abc@example.test".into(),
            in_reply_to: Some(refs[11].clone()),
            references: refs.clone(),
            attachments: vec![OutgoingFile {
                filename: "a.pdf".into(),
                content_type: "application/pdf".into(),
                data: b"%PDF-1.4\nline".to_vec(),
            }],
        };
        let raw = build_mime(&parts).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.lines().all(|l| l.len() <= 998));
        assert!(!text.to_ascii_lowercase().contains("\nbcc:"));
        let parsed = parse(&raw).unwrap();
        assert_eq!(
            parsed.message_id.as_deref(),
            Some("mr.serv.12.abc@example.test")
        );
        assert_eq!(parsed.subject, "Re: Ünïcode [SERV#12]");
        assert_eq!(parsed.in_reply_to, vec![refs[11].clone()]);
        assert_eq!(parsed.references, refs);
        assert_eq!(parsed.to[0].address, "jane@example.test");
        assert_eq!(parsed.cc[0].address, "cc@example.test");
        assert_eq!(parsed.attachments.len(), 1);
        assert_eq!(
            parsed.attachments[0].data, b"%PDF-1.4\nline",
            "byte for byte"
        );
        assert!(parsed.text.contains("Hello"));
    }
}
