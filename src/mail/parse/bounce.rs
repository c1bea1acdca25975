//! Delivery status notifications (RFC 3464): which of our mails bounced, and why.
//!
//! A mail is a bounce when it is a `multipart/report; report-type=delivery-status`,
//! or when it comes from a mailer-daemon / postmaster and carries a
//! `message/delivery-status` part (older MTAs omit `report-type`, as in the
//! CPython sample msg_16). The returned mail's Message-ID is taken from, in
//! order: the `message/rfc822` part, the `text/rfc822-headers` part, an
//! `Original-Message-ID` field, a `Message-ID:` line quoted in the
//! human-readable part.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::{Bounce, Mailbox, clean, one_line};

/// Longest reason kept; DSNs sometimes quote whole SMTP transcripts.
const MAX_REASON: usize = 1000;

/// Local parts of the addresses bounces come from.
const DAEMONS: &[&str] = &[
    "mailer-daemon",
    "mailer_daemon",
    "postmaster",
    "mail-daemon",
    "mail-delivery-system",
];

pub(super) fn detect(msg: &Message<'_>, from: Option<&Mailbox>) -> Option<Bounce> {
    let is_report = msg.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                && ct
                    .attribute("report-type")
                    .is_some_and(|r| r.trim().eq_ignore_ascii_case("delivery-status"))
        })
    });
    let status_part = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status")
                        || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    });
    let from_daemon = from.is_some_and(|m| {
        let local = m.address.split('@').next().unwrap_or_default();
        DAEMONS.iter().any(|d| local.eq_ignore_ascii_case(d))
    });
    if !(is_report || from_daemon && status_part.is_some()) {
        return None;
    }

    let groups = status_part
        .map(|p| field_groups(&String::from_utf8_lossy(p.contents())))
        .unwrap_or_default();
    let recipients: Vec<&Fields> = groups.iter().filter(|g| g.is_recipient()).collect();
    let acted: Vec<&&Fields> = recipients
        .iter()
        .filter(|g| g.get("action").is_some())
        .collect();
    let failed: Vec<&Fields> = recipients
        .iter()
        .copied()
        .filter(|g| {
            g.get("action")
                .is_none_or(|a| a.eq_ignore_ascii_case("failed"))
        })
        .collect();
    // Only "delayed", "delivered", "relayed" or "expanded": not a failure.
    if !acted.is_empty() && failed.is_empty() {
        return None;
    }

    let mut reason = failed
        .iter()
        .map(|g| g.reason())
        .collect::<Vec<_>>()
        .join("; ");
    if reason.is_empty() {
        reason = human_readable(msg).unwrap_or_else(|| "delivery failed".to_string());
    }
    if reason.chars().count() > MAX_REASON {
        reason = reason.chars().take(MAX_REASON).collect::<String>() + "…";
    }

    let original_message_id = original_from_parts(msg)
        .or_else(|| {
            groups
                .iter()
                .find_map(|g| g.get("original-message-id"))
                .map(strip_angles)
        })
        .or_else(|| quoted_message_id(msg))
        .map(|id| clean(&id))
        .filter(|id| !id.is_empty());

    Some(Bounce {
        original_message_id,
        reason: clean(&reason),
    })
}

/// One block of `Name: value` fields (the per-message block, or one
/// per-recipient block), names lower-cased, continuation lines unfolded.
#[derive(Debug, Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn is_recipient(&self) -> bool {
        ["final-recipient", "original-recipient", "action", "status"]
            .iter()
            .any(|f| self.get(f).is_some())
    }

    fn reason(&self) -> String {
        let what = match (self.get("diagnostic-code"), self.get("status")) {
            (Some(diag), _) => strip_type(diag).to_string(),
            (None, Some(status)) => format!(
                "{} (status {status})",
                self.get("action").unwrap_or("failed")
            ),
            (None, None) => self.get("action").unwrap_or("failed").to_string(),
        };
        match self
            .get("final-recipient")
            .or_else(|| self.get("original-recipient"))
        {
            Some(rcpt) => format!("{}: {what}", strip_type(rcpt)),
            None => what,
        }
    }
}

fn field_groups(text: &str) -> Vec<Fields> {
    let mut groups = vec![Fields::default()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.0.is_empty()) {
                groups.push(Fields::default());
            }
            continue;
        }
        let Some(group) = groups.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.0.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            group
                .0
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups.retain(|g| !g.0.is_empty());
    groups
}

/// `smtp; 550 5.1.1 …` → `550 5.1.1 …`; `rfc822;a@b` → `a@b`.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind.len() <= 20
                && kind
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

fn strip_angles(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn original_from_parts(msg: &Message<'_>) -> Option<String> {
    msg.parts.iter().find_map(|p| {
        let ct = p.content_type()?;
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        let kind = ct.ctype().to_ascii_lowercase();
        match (&p.body, kind.as_str(), sub.as_str()) {
            (PartType::Message(m), _, _) => m.message_id().map(str::to_string),
            (_, "text", "rfc822-headers")
            | (_, "message", "global-headers" | "rfc822" | "global") => MessageParser::default()
                .parse_headers(p.contents())
                .and_then(|m| m.message_id().map(str::to_string)),
            _ => None,
        }
    })
}

/// A `Message-ID: <…>` line quoted in the human-readable part.
fn quoted_message_id(msg: &Message<'_>) -> Option<String> {
    msg.text_bodies().find_map(|p| {
        let text = p.text_contents()?;
        text.lines().find_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("message-id") {
                return None;
            }
            let value = value.trim();
            let inner = value.strip_prefix('<')?.split('>').next()?;
            (!inner.is_empty() && !inner.contains(char::is_whitespace)).then(|| inner.to_string())
        })
    })
}

/// The first few non-empty lines of the human-readable part.
fn human_readable(msg: &Message<'_>) -> Option<String> {
    let text = msg.body_text(0)?;
    let lines: Vec<String> = text
        .lines()
        .map(one_line)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect();
    (!lines.is_empty()).then(|| lines.join(" "))
}
