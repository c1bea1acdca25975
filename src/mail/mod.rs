//! Mail as bytes on the wire, kept apart from what the product does with it
//! (Stalwart's habit of separating protocol parsing from behaviour):
//!
//! - [`parse`]: raw RFC 5322 bytes → [`ParsedMail`] (mail-parser), with HTML
//!   sanitised (ammonia), auto-replies and DSN bounces recognised, and the
//!   content hash that stands in for a missing or reused Message-ID.
//! - [`imap`]: an IMAP session over plain TCP, STARTTLS or TLS (rustls with
//!   ring), login, SELECT, batched UID FETCH and IDLE (async-imap on tokio).
//!
//! - [`compose`]: outgoing mail: recipients, subjects, bodies and MIME
//!   (lettre's builder); the sender is `actors/sender.rs`.

pub mod compose;
pub mod imap;
pub mod parse;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A display name and an address, as found in a header. The address is kept
/// as written (lower-cased domain) even when it would not pass
/// `EmailAddress::parse`: real mail has odd senders and we must not lose them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// A part of a mail that is a file: an attachment, or an inline image
/// referenced from the HTML by `cid:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAttachment {
    /// Never empty: a name is made up (`attachment-2.pdf`) when the mail has none.
    pub filename: String,
    /// `type/subtype`, lower-case; `application/octet-stream` when unknown.
    pub content_type: String,
    /// The `Content-ID` without angle brackets, for inline parts.
    pub content_id: Option<String>,
    /// Shown inline (referenced from the HTML) rather than listed.
    pub inline: bool,
    pub data: Vec<u8>,
}

/// A delivery status notification about one of our outgoing mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of the mail that bounced (without angle brackets), when
    /// the report carries it.
    pub original_message_id: Option<String>,
    /// The server's reason (Diagnostic-Code / Status / first lines of the text).
    pub reason: String,
}

/// Everything ingest needs from one mail. All strings are valid UTF-8 without
/// NUL bytes (Postgres `text` refuses them).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMail {
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Message-IDs from In-Reply-To, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Message-IDs from References, oldest first, without angle brackets.
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded (RFC 2047), trimmed; empty when absent.
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    /// The plain-text body; derived from the HTML when the mail has no text part.
    pub text: String,
    /// The HTML body, already sanitised; `cid:` references are kept so the
    /// client can map them to inline attachments.
    pub html: Option<String>,
    pub attachments: Vec<ParsedAttachment>,
    /// Auto-Submitted ≠ no, X-Autoreply, X-Autorespond, Precedence
    /// bulk|junk|list|auto_reply, or X-Loop.
    pub auto_reply: bool,
    pub bounce: Option<Bounce>,
    /// SHA-256 over From, Date and Subject (as raw header values) and the
    /// bytes after the header block: the same mail re-delivered (with extra
    /// Received headers) hashes the same; a different mail under a reused
    /// Message-ID does not.
    pub content_hash: [u8; 32],
    /// Size of the raw mail in bytes.
    pub size: usize,
}
