//! What both backends write for a mail, computed once before the
//! transaction ([`Prepared`], [`PreparedQuarantine`]), and the small rules and
//! error texts they share: so that SQLite and Postgres store the same values
//! and answer with the same errors.

use sha2::{Digest, Sha256};

use super::{IngestMail, QuarantineMail};
use crate::domain::threading::{ReplyRefs, split_display_name};
use crate::domain::{AccountId, InteractionId, InteractionStatus, MessageKind, QueueId};
use crate::mail::Mailbox;
use crate::store::{StoreError, StoreResult, common};

/// In-Reply-To / References ids looked up per mail, newest first. A long
/// References header (hundreds of ids in an old thread) must not make one
/// mail cost hundreds of queries; the newest references are the ones that
/// match in practice.
pub(crate) const MAX_REFERENCES: usize = 100;

/// `continued_in` links followed at most (a cycle cannot be written by
/// ingest, but a damaged row must not loop forever).
pub(crate) const MAX_CHAIN: usize = 64;

/// Characters of text kept as a list preview.
const PREVIEW_CHARS: usize = 200;

/// The bytes of the secrets `server_secret` creates.
pub(crate) const SECRET_BYTES: usize = 32;

/// Raw bytes to store in `blobs`, under their SHA-256.
#[derive(Debug)]
pub(crate) struct Blob {
    pub sha256: Vec<u8>,
    pub data: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(data: Vec<u8>) -> Blob {
        Blob {
            sha256: Sha256::digest(&data).to_vec(),
            data,
        }
    }

    /// The size as a `bigint`; a `Vec` never holds more than `isize::MAX`.
    pub(crate) fn size(&self) -> i64 {
        i64::try_from(self.data.len()).unwrap_or(i64::MAX)
    }
}

/// An attachment of the mail, ready to write.
#[derive(Debug)]
pub(crate) struct PreparedAttachment {
    pub blob: Blob,
    pub filename: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub inline: bool,
}

/// The sender, as a contact.
#[derive(Debug)]
pub(crate) struct Sender {
    /// Lower-cased: `contact_emails` is looked up exactly.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The mail carried a display name (not just an address): only then
    /// may it fill an existing contact's empty names.
    pub named: bool,
}

#[derive(Debug)]
pub(crate) struct PreparedBounce {
    pub original: Option<String>,
    pub reason: String,
}

/// Everything `ingest_mail` writes, computed once before the transaction,
/// so both backends write the same values.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub account: AccountId,
    pub account_key: String,
    pub queue: QueueId,
    /// (uidvalidity, uid), as the store's integers.
    pub position: Option<(i64, i64)>,
    pub refs: ReplyRefs,
    pub kind: MessageKind,
    pub message_id: Option<String>,
    pub content_hash: Vec<u8>,
    pub subject: String,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// `messages.reply_to`: a JSON array of mailboxes, `None` when empty.
    pub reply_to: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    /// `Some` for a real mail: what becomes the interaction's last message.
    /// Auto-replies never count as the last message.
    pub preview: Option<String>,
    pub sender: Option<Sender>,
    pub raw: Blob,
    pub attachments: Vec<PreparedAttachment>,
    pub bounce: Option<PreparedBounce>,
}

impl Prepared {
    /// CPU work (hashing up to the mail's size): backends call it off the
    /// async threads.
    pub(crate) fn new(mail: IngestMail) -> Prepared {
        let IngestMail {
            account,
            account_key,
            queue,
            position,
            internal_date: _,
            raw,
            parsed,
            mut refs,
        } = mail;
        refs.message_ids.truncate(MAX_REFERENCES);
        for id in &mut refs.message_ids {
            *id = clean(id);
        }
        let kind = if parsed.auto_reply || parsed.bounce.is_some() {
            MessageKind::AutoReply
        } else {
            MessageKind::Mail
        };
        let from = parsed.from.as_ref().map(clean_mailbox);
        // A mailer-daemon is not a customer: bounces make no contact.
        let sender = from
            .as_ref()
            .or(parsed.reply_to.first())
            .filter(|_| parsed.bounce.is_none())
            .and_then(sender_of);
        let text = clean(&parsed.text);
        let preview = (kind == MessageKind::Mail).then(|| preview(&text));
        let reply_to: Vec<Mailbox> = parsed.reply_to.iter().map(clean_mailbox).collect();
        Prepared {
            account,
            account_key,
            queue,
            position: position.map(|(v, u)| (i64::from(v), i64::from(u))),
            refs,
            kind,
            message_id: parsed
                .message_id
                .as_deref()
                .map(clean)
                .filter(|id| !id.trim().is_empty()),
            content_hash: parsed.content_hash.to_vec(),
            subject: clean(&parsed.subject),
            to: parsed.to.iter().map(clean_mailbox).collect(),
            cc: parsed.cc.iter().map(clean_mailbox).collect(),
            reply_to: (!reply_to.is_empty()).then(|| mailbox_json(&reply_to)),
            from,
            text,
            html: parsed.html.as_deref().map(clean),
            in_reply_to: id_list(&parsed.in_reply_to),
            references: id_list(&parsed.references),
            preview,
            sender,
            raw: Blob::new(raw),
            attachments: parsed
                .attachments
                .into_iter()
                .map(|a| PreparedAttachment {
                    filename: clean(&a.filename),
                    content_type: clean(&a.content_type),
                    content_id: a.content_id.as_deref().map(clean),
                    inline: a.inline,
                    blob: Blob::new(a.data),
                })
                .collect(),
            bounce: parsed.bounce.map(|b| PreparedBounce {
                original: b
                    .original_message_id
                    .as_deref()
                    .map(clean)
                    .filter(|id| !id.trim().is_empty()),
                reason: clean(&b.reason),
            }),
        }
    }

    /// The mail's blobs (raw, then attachments), each content once, in
    /// SHA-256 order. Inserting in one global order means two transactions
    /// that share blobs wait for each other instead of deadlocking.
    pub(crate) fn blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = std::iter::once(&self.raw)
            .chain(self.attachments.iter().map(|a| &a.blob))
            .collect();
        blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        blobs.dedup_by(|a, b| a.sha256 == b.sha256);
        blobs
    }

    /// Whether this mail clears the sub-status, sets unread and becomes the
    /// last message when appended (a real mail, not an auto-reply).
    pub(crate) fn counts(&self) -> bool {
        self.kind == MessageKind::Mail
    }
}

/// What `quarantine_mail` writes.
#[derive(Debug)]
pub(crate) struct PreparedQuarantine {
    pub account: AccountId,
    pub position: Option<(i64, i64)>,
    pub raw: Blob,
    pub reason: String,
    pub attempts: i32,
}

/// Reasons are shown in lists; a parser error quoting half a mail is cut.
const MAX_REASON_CHARS: usize = 2000;

impl PreparedQuarantine {
    pub(crate) fn new(mail: QuarantineMail) -> StoreResult<PreparedQuarantine> {
        let mut reason = clean(&mail.reason);
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
            reason.push('…');
        }
        Ok(PreparedQuarantine {
            account: mail.account,
            position: mail.position.map(|(v, u)| (i64::from(v), i64::from(u))),
            raw: Blob::new(mail.raw),
            reason,
            attempts: common::int(mail.attempts, "attempts")?,
        })
    }
}

/// `s` without NUL characters (Postgres `text` refuses them).
pub(crate) fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

fn clean_mailbox(m: &Mailbox) -> Mailbox {
    Mailbox {
        name: m.name.as_deref().map(clean),
        address: clean(&m.address),
    }
}

fn sender_of(m: &Mailbox) -> Option<Sender> {
    let email = m.address.trim().to_lowercase();
    if email.is_empty() {
        return None;
    }
    let (first_name, last_name) = split_display_name(m.name.as_deref(), &m.address);
    Some(Sender {
        email,
        first_name: clean(&first_name),
        last_name: clean(&last_name),
        named: m
            .name
            .as_deref()
            .is_some_and(|n| !n.trim().is_empty() && !n.contains('@')),
    })
}

/// Message-IDs as one column: space-separated, without angle brackets.
fn id_list(ids: &[String]) -> Option<String> {
    let ids: Vec<String> = ids
        .iter()
        .map(|id| clean(id).split_whitespace().collect::<String>())
        .filter(|id| !id.is_empty())
        .collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// The first ~200 characters of `text`, whitespace collapsed; `…` marks a cut.
pub(crate) fn preview(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", collapsed[..cut].trim_end()),
        None => collapsed,
    }
}

/// Mailboxes as the JSON the address columns hold: `[{"name", "address"}]`.
pub(crate) fn mailbox_json(list: &[Mailbox]) -> String {
    // Serialising strings and options into a Vec cannot fail.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_string())
}

/// An address column (`to_addrs`, `cc_addrs`) back into mailboxes.
pub(crate) fn mailboxes_from_json(json: &str, column: &'static str) -> StoreResult<Vec<Mailbox>> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Invalid(format!("stored {column} is not a list of addresses: {e}"))
    })
}

/// `messages.reply_to` back into mailboxes. It may hold a bare address
/// (written by hand or by another version): that is kept as one mailbox.
pub(crate) fn reply_to_from_column(value: Option<String>) -> Vec<Mailbox> {
    match value {
        None => Vec::new(),
        Some(text) => serde_json::from_str(&text).unwrap_or_else(|_| {
            vec![Mailbox {
                name: None,
                address: text,
            }]
        }),
    }
}

/// The stored `references_header` as ids, oldest first.
pub(crate) fn reference_list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The name of the mbox attachment thread 2 carries: `SERV-12-thread.mbox`.
pub(crate) fn thread_file_name(account_key: &str, thread: InteractionId) -> String {
    let key: String = account_key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{key}-{thread}-thread.mbox")
}

pub(crate) const MBOX_TYPE: &str = "application/mbox";

/// A random secret for `server_secret`.
pub(crate) fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// The same refusal text on both backends for a value the database will not
/// store (Postgres SQLSTATE classes 22 and 23, SQLite's "too big"): the
/// mailbox quarantines such a mail instead of retrying it forever.
pub(crate) fn refused(detail: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the database refuses a value of this mail: {detail}"
    ))
}

/// The text when the dedupe insert said "exists" but the row cannot be
/// found: only a concurrent delete could do that.
pub(crate) fn vanished() -> StoreError {
    StoreError::Conflict("the mail this one duplicates was deleted meanwhile; try again".into())
}

/// Thread 1 already has a thread 2 that this ingest did not see (only
/// possible if its lock was bypassed); the mail is fetched and tried again.
pub(crate) fn continued_meanwhile() -> StoreError {
    StoreError::Conflict("the thread was continued meanwhile; try again".into())
}

/// A position that was ingested as a mail cannot be quarantined too.
pub(crate) fn already_ingested() -> StoreError {
    StoreError::Conflict("the mail at this position was already ingested".into())
}

/// Checks `close_interaction`'s arguments; the disposition as stored (JSON).
pub(super) fn close_args(
    status: InteractionStatus,
    disposition: Option<Vec<String>>,
) -> StoreResult<Option<Vec<String>>> {
    if status == InteractionStatus::Open {
        return Err(StoreError::Invalid(
            "an interaction is closed as `closed` or `closed_unmanaged`".into(),
        ));
    }
    match disposition {
        Some(path) if path.is_empty() || path.len() > 3 => Err(StoreError::Invalid(
            "a disposition is a path of 1 to 3 names".into(),
        )),
        Some(path) if path.iter().any(|name| name.trim().is_empty()) => Err(StoreError::Invalid(
            "a disposition name cannot be empty".into(),
        )),
        Some(path) => Ok(Some(path.iter().map(|n| clean(n)).collect())),
        None => Ok(None),
    }
}

pub(crate) fn already_closed() -> StoreError {
    StoreError::Conflict("the interaction is already closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_collapse_whitespace_and_cut_at_200_chars() {
        assert_eq!(preview("  Hello\n\n  world\t!  "), "Hello world !");
        let long = "é".repeat(300);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(preview(""), "");
    }

    #[test]
    fn nul_is_removed() {
        assert_eq!(clean("a\0b\0"), "ab");
        assert_eq!(clean("plain"), "plain");
    }

    #[test]
    fn thread_files_are_named_after_key_and_thread() {
        assert_eq!(
            thread_file_name("SERV", InteractionId(12)),
            "SERV-12-thread.mbox"
        );
        assert_eq!(
            thread_file_name("S/../x", InteractionId(3)),
            "Sx-3-thread.mbox"
        );
    }

    #[test]
    fn reply_to_accepts_json_or_a_bare_address() {
        let list = vec![Mailbox {
            name: Some("Jane".into()),
            address: "jane@x.test".into(),
        }];
        assert_eq!(reply_to_from_column(Some(mailbox_json(&list))), list);
        assert_eq!(
            reply_to_from_column(Some("bob@x.test".into())),
            vec![Mailbox {
                name: None,
                address: "bob@x.test".into()
            }]
        );
        assert!(reply_to_from_column(None).is_empty());
    }

    #[test]
    fn dispositions_are_one_to_three_names() {
        let path = |n: usize| Some((0..n).map(|i| format!("L{i}")).collect::<Vec<_>>());
        assert!(close_args(InteractionStatus::Closed, path(0)).is_err());
        assert!(close_args(InteractionStatus::Closed, path(4)).is_err());
        assert!(close_args(InteractionStatus::Closed, path(3)).is_ok());
        assert!(close_args(InteractionStatus::Closed, None).is_ok());
        assert!(close_args(InteractionStatus::Open, None).is_err());
    }
}
