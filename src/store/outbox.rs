//! Outgoing mail (issue #5, invariant 4): uploads, the commit of an
//! outgoing message together with its outbox row, and the outbox the sender
//! actors (`actors/sender.rs`) work through.
//!
//! # The outbox's life
//!
//! [`Store::enqueue_mail`] commits, in **one** transaction: the message
//! (direction `out`, kind `mail`, `delivery: queued`, its raw MIME as a
//! blob), its attachments (the author's uploads linked to it, a forward's
//! carried attachments copied onto it), the interaction's last message (or
//! the new interaction itself, for new mail) and the `outbox` row, due now.
//! Nothing is sent before that commit, and nothing committed is lost: the
//! outbox row is there until it is `sent` or `failed`.
//!
//! A sender takes a due row with [`Store::claim_outbox`]: one conditional
//! update (`… WHERE status = 'queued' AND next_attempt_at <= now`) that
//! counts the attempt and pushes `next_attempt_at` to when a retry would be
//! due. That is the row's lease: two senders (a restart racing an old task,
//! or two nodes) cannot both take it, and a sender that dies mid-attempt
//! leaves it to be retried when the lease runs out. The attempt then ends in
//! [`Store::finish_outbox`]: `sent`, `failed` with the server's reason, or
//! queued again for later. `messages.delivery` and `delivery_error` change
//! in the same transaction, so the API never shows an outbox state the
//! message does not.
//!
//! The one window left: the SMTP server accepted the mail and the process
//! died before `finish_outbox` committed. The row is still `queued`, and the
//! mail is sent again (same Message-ID) when its lease runs out:
//! at-least-once, never lost. docs/compose.md says so.

use chrono::{DateTime, Utc};

use super::{AttachmentMeta, Interaction, Store, StoreError, StoreResult};
use crate::domain::{
    AccountId, AgentId, AttachmentId, Delivery, InteractionId, MessageId, QueueId,
};
use crate::mail::Mailbox;

/// A file uploaded by an agent, not yet used in a message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUpload {
    pub agent: AgentId,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Where an outgoing mail goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutgoingThread {
    /// On an existing interaction, which must still be open and, when
    /// `owner` is given, still owned by that agent (it may have been
    /// transferred between the check and the commit).
    Existing {
        interaction: InteractionId,
        owner: Option<AgentId>,
    },
    /// A new interaction, owned by `owner` from the start (never queued).
    /// Its contact is the one of `contact` (the first recipient), created
    /// if the address is new.
    New {
        account: AccountId,
        queue: QueueId,
        owner: AgentId,
        subject: String,
        contact: Option<Mailbox>,
    },
}

/// An outgoing mail as committed: what the API shows, and the MIME sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMail {
    pub author: AgentId,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Kept on the message (the author's record) and in the SMTP envelope,
    /// never in the MIME headers.
    pub bcc: Vec<Mailbox>,
    pub subject: String,
    pub text: String,
    /// Already sanitised.
    pub html: Option<String>,
    /// Without angle brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The whole message as sent (no Bcc header).
    pub raw: Vec<u8>,
}

/// The files of an outgoing mail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingFiles {
    /// Uploads of the author (unused so far); they become this message's.
    pub uploads: Vec<AttachmentId>,
    /// Attachments of stored messages (a forward's original), copied onto
    /// this message (the bytes are shared, not copied).
    pub carried: Vec<AttachmentId>,
}

/// Builds the mail once the interaction is known (a new interaction's id is
/// only known inside the transaction, and the Message-ID and subject token
/// name it). Runs inside the transaction: it must be quick and pure.
pub type BuildMail = Box<dyn FnOnce(&Interaction) -> StoreResult<OutgoingMail> + Send>;

/// What [`Store::enqueue_mail`] committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The interaction after the commit (new, or with its last message updated).
    pub interaction: Interaction,
    pub message: MessageId,
    /// The outbox row.
    pub outbox: i64,
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub message: MessageId,
    pub account: AccountId,
    pub status: Delivery,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A claimed outbox row: everything the sender needs for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxJob {
    pub id: i64,
    pub message: MessageId,
    pub interaction: InteractionId,
    pub account: AccountId,
    /// Including this one.
    pub attempts: u32,
    /// When the mail was queued (the retry schedule gives up relative to it).
    pub queued_at: DateTime<Utc>,
    /// The envelope sender: the From address.
    pub from: String,
    /// The envelope recipients: every To, Cc and Bcc address, once each.
    pub recipients: Vec<String>,
    pub message_id: Option<String>,
    pub raw: Vec<u8>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxOutcome {
    Sent,
    /// Try again at `at`; `error` is shown on the message meanwhile.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Permanently refused (or given up): `error` is the server's reason.
    Failed {
        error: String,
    },
}

/// What [`Store::finish_outbox`] changed, for the owner's socket.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryChange {
    pub interaction: Interaction,
    pub message: MessageId,
    pub delivery: Delivery,
}

/// Longest `delivery_error` / `last_error` kept (a server may send pages).
pub(crate) const MAX_ERROR_CHARS: usize = 2000;

pub(crate) fn error_text(error: &str) -> String {
    let cleaned = super::ingest::clean(error.trim());
    match cleaned.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &cleaned[..cut]),
        None => cleaned,
    }
}

/// Each address once (case-insensitively), in order.
pub(crate) fn envelope(lists: &[&[Mailbox]]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|m| m.address.trim().to_string())
        .filter(|a| !a.is_empty() && seen.insert(a.to_lowercase()))
        .collect()
}

pub(crate) fn upload_gone(id: AttachmentId) -> StoreError {
    StoreError::Conflict(format!(
        "attachment {id} is not an unused upload of yours (already sent, or someone else's)"
    ))
}

pub(crate) fn not_open() -> StoreError {
    StoreError::Conflict("the interaction is closed; reopen it first".into())
}

pub(crate) fn not_yours() -> StoreError {
    StoreError::Conflict("the interaction is no longer yours (transferred meanwhile)".into())
}

impl Store {
    /// Store an upload: its bytes as a blob (deduplicated by SHA-256) and an
    /// attachment row with no message yet, `uploaded_by` the agent.
    pub async fn store_upload(&self, upload: NewUpload) -> StoreResult<AttachmentMeta> {
        dispatch!(self.store_upload(upload))
    }

    /// An upload and its bytes, only for the agent who uploaded it and only
    /// while no message uses it; `NotFound` otherwise (someone else's upload
    /// is not theirs to see).
    pub async fn upload(
        &self,
        id: AttachmentId,
        agent: AgentId,
    ) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        dispatch!(self.upload(id, agent))
    }

    /// Commit an outgoing mail and its outbox row in one transaction (see
    /// the module doc). `Conflict` if the interaction is closed or no longer
    /// the author's, or an upload is not (or no longer) an unused upload of
    /// the author's; `NotFound` for an unknown interaction or attachment.
    pub async fn enqueue_mail(
        &self,
        thread: OutgoingThread,
        files: OutgoingFiles,
        build: BuildMail,
    ) -> StoreResult<Enqueued> {
        dispatch!(self.enqueue_mail(thread, files, build))
    }

    /// Ids of the account's queued rows due at `now`, oldest first.
    pub async fn due_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<i64>> {
        dispatch!(self.due_outbox(account, now, limit))
    }

    /// When the account's next queued row is due, if any.
    pub async fn next_outbox_due(&self, account: AccountId) -> StoreResult<Option<DateTime<Utc>>> {
        dispatch!(self.next_outbox_due(account))
    }

    /// Take a due row for one attempt: counts the attempt and moves
    /// `next_attempt_at` to `lease_until` (when it is retried if this
    /// attempt never reports back). `None` if it is not queued and due (sent,
    /// failed, or taken by another sender).
    pub async fn claim_outbox(
        &self,
        id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<OutboxJob>> {
        let (now, lease_until) = (
            super::common::millis(now),
            super::common::millis(lease_until),
        );
        dispatch!(self.claim_outbox(id, now, lease_until))
    }

    /// Record how an attempt ended, on the outbox row and on the message, in
    /// one transaction. `Conflict` if the row is no longer queued.
    pub async fn finish_outbox(
        &self,
        id: i64,
        outcome: OutboxOutcome,
    ) -> StoreResult<DeliveryChange> {
        let outcome = match outcome {
            OutboxOutcome::Retry { at, error } => OutboxOutcome::Retry {
                at: super::common::millis(at),
                error: error_text(&error),
            },
            OutboxOutcome::Failed { error } => OutboxOutcome::Failed {
                error: error_text(&error),
            },
            OutboxOutcome::Sent => OutboxOutcome::Sent,
        };
        dispatch!(self.finish_outbox(id, outcome))
    }

    /// Make every queued row of the account due at `now` (the server took a
    /// mail, so it is back: mail waiting for a retry need not wait longer).
    /// Returns how many rows were moved forward.
    pub async fn expedite_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        dispatch!(self.expedite_outbox(account, now))
    }

    /// The outbox row of an outgoing message.
    pub async fn outbox_entry(&self, message: MessageId) -> StoreResult<OutboxEntry> {
        dispatch!(self.outbox_entry(message))
    }
}
