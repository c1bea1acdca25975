//! The ingest side of the store: every mail is committed atomically with
//! its watermark (invariant 1); on Postgres several mails of a fetched batch
//! may share one transaction (`ingest_batch`).
//!
//! `ingest_mail` does, atomically: the receipt (unique on account,
//! uidvalidity, uid), deduplication by Message-ID + content hash, the raw
//! blob, the contact, the thread match, the interaction (new, appended, or
//! thread 2 of a closed one), the message and its attachments, and the
//! watermark. If any step fails nothing is written, and the watermark has
//! not moved: the mail is fetched again.
//!
//! # How exactly-once holds
//!
//! Nothing is decided on a read alone. Two nodes (or two tasks) may ingest
//! the same mail at once; the database's unique constraints pick one:
//!
//! 1. **Position**: the receipt row `(account, uidvalidity, uid)` is inserted
//!    first, `ON CONFLICT DO NOTHING`. A second ingest of the same position
//!    waits for the first transaction and then finds the row: `Duplicate`.
//! 2. **Content**: the message row is inserted `ON CONFLICT DO NOTHING` on
//!    the dedupe indexes (account + Message-ID + content hash, or account +
//!    content hash when there is no Message-ID). Everything written for the
//!    mail before that insert (contact, interaction, …) sits after a
//!    savepoint; when the insert finds the mail already there, the
//!    transaction rolls back to the savepoint and records a `Duplicate`
//!    instead. A cheap look-up before the savepoint answers the usual case
//!    (a re-delivery long after the first) without writing anything.
//!
//! # Rules shared by both backends
//!
//! Everything a backend writes is computed once (`ingest/prepare.rs`,
//! [`Prepared`]), so that SQLite and Postgres store the same values: kind,
//! preview, contact names, address lists, blobs, and the text with NUL bytes
//! removed (Postgres `text` refuses them; the parser strips them already,
//! this is the second line of defence).
//!
//! - **Dedupe** (DESIGN.md, invariant 1): same account, same Message-ID and
//!   same content hash → `Duplicate`; same Message-ID with another content
//!   hash → a new mail, kept; no Message-ID → the content hash alone. Only
//!   incoming mail is deduplicated (our outgoing messages have no content
//!   hash, so the indexes skip them).
//! - **Threading**, scoped to the account, in this order: our signed
//!   Message-IDs (`refs.ours`), then In-Reply-To / References looked up among
//!   the account's stored messages (newest reference first, at most
//!   [`MAX_REFERENCES`]), then the subject token. The match then follows
//!   `continued_in` to the newest thread of the conversation.
//! - **No match**: a new interaction, open, unowned, unread, enqueued now,
//!   priority 0, in the account's queue; `unread_count` 1 and the mail as its
//!   last message, unless it is an auto-reply.
//! - **Open thread**: the message is appended. A real mail clears the
//!   sub-status, sets unread, bumps `unread_count`, `updated_at` and the last
//!   message; an auto-reply changes none of those. Both bump `version`, so
//!   that a claim made with the version read before the append loses (the
//!   claimant has not seen the new mail; routing re-offers with the new one).
//! - **Closed thread**: thread 2 is created (same account, queue, contact and
//!   priority as thread 1, the subject of the new mail), carrying thread 1
//!   as an mbox attachment ([`super::mbox`]), linked both ways.
//! - **Auto-replies to a closed thread** are appended to it and open
//!   nothing: an out-of-office answering our closing reply is not new work
//!   (DESIGN.md: an auto-reply never marks unread nor counts as the last
//!   message; a thread 2 would do both). The closed thread keeps its status,
//!   owner and last message; only `version` moves. Only a real mail makes
//!   thread 2.
//! - **Contacts**: the sender (From, else the first Reply-To), by its
//!   lower-cased address; a new contact is named from the display name
//!   (`split_display_name`), an existing one only has empty names filled.
//!   A bounce makes no contact (a mailer-daemon is not a customer).
//! - **Bounces**: the original outgoing message (found by its Message-ID
//!   among this account's outgoing messages) becomes `failed` with the
//!   reason, and the DSN is stored as an auto-reply on its interaction
//!   (whatever its status: a bounce never opens a thread). An unknown
//!   original: the DSN goes through threading as an auto-reply.

mod prepare;

pub(crate) use prepare::*;

use chrono::{DateTime, Utc};

use super::{Interaction, NewOutgoing, Store, StoreResult};
use crate::domain::threading::ReplyRefs;
use crate::domain::{AccountId, ContactId, InteractionId, InteractionStatus, MessageId, QueueId};
use crate::mail::ParsedMail;

/// Where a mailbox's sync stands: the UID watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// One fetched mail to commit.
#[derive(Debug, Clone)]
pub struct IngestMail {
    pub account: AccountId,
    /// The account's key (for subject tokens and the thread 2 attachment name).
    pub account_key: String,
    /// The queue new interactions of this account go to.
    pub queue: QueueId,
    /// The IMAP position; `None` for mail that did not come from IMAP
    /// (quarantine retry of an already-receipted mail).
    pub position: Option<(u32, u32)>,
    pub internal_date: Option<DateTime<Utc>>,
    pub raw: Vec<u8>,
    pub parsed: ParsedMail,
    pub refs: ReplyRefs,
}

/// What `ingest_mail` did.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// Seen before (same UID, or same Message-ID with the same content):
    /// nothing new, but the watermark moved past it. `message` is the
    /// stored message it duplicates, when known (a position that was
    /// quarantined has none).
    Duplicate { message: Option<MessageId> },
    /// A new thread, open and waiting for an agent. `contact` is `None` only
    /// for a mail without any sender address.
    Created {
        interaction: Interaction,
        message: MessageId,
        contact: Option<ContactId>,
    },
    /// A reply appended to an open thread (sub-status cleared and unread set,
    /// unless it is an auto-reply), or an auto-reply kept on a closed one.
    Appended {
        interaction: Interaction,
        message: MessageId,
    },
    /// A reply to a closed thread: thread 2, carrying thread 1 as an mbox
    /// attachment, linked both ways.
    Continued {
        interaction: Interaction,
        previous: InteractionId,
        message: MessageId,
        contact: Option<ContactId>,
    },
    /// A delivery status notification: the bounced outgoing message is now
    /// `failed` with the reason, and the DSN itself is stored as an
    /// `auto_reply` message on that interaction. (A DSN whose original is
    /// not found is ingested like any auto-reply and reported as
    /// `Created`, `Appended` or `Continued`.)
    Bounced {
        original: Option<MessageId>,
        interaction: Option<Interaction>,
    },
}

/// What [`Store::ingest_batch`] did: the outcomes of the mails committed,
/// in order (a prefix of the batch), and the error that stopped it.
#[derive(Debug)]
pub struct BatchIngest {
    pub committed: Vec<IngestOutcome>,
    pub failed: Option<super::StoreError>,
}

/// A mail that could not be ingested, kept raw.
#[derive(Debug, Clone)]
pub struct QuarantineMail {
    pub account: AccountId,
    pub position: Option<(u32, u32)>,
    pub raw: Vec<u8>,
    pub reason: String,
    pub attempts: u32,
}

/// A quarantined mail, as listed by the API (without its bytes).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QuarantineEntry {
    /// An opaque string in JSON, like every id.
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::domain::ids::serialize_as_string")]
    pub id: i64,
    pub account: String,
    pub uid_validity: Option<u32>,
    pub uid: Option<u32>,
    pub size: u64,
    pub reason: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// The account's watermark, if it ever synced.
    pub async fn watermark(&self, account: AccountId) -> StoreResult<Option<Watermark>> {
        dispatch!(self.watermark(account))
    }

    /// Move the watermark (never backwards within one uidvalidity; a new
    /// uidvalidity replaces it). Used when a first sync skips old mail and
    /// when UIDVALIDITY changes.
    pub async fn set_watermark(&self, account: AccountId, mark: Watermark) -> StoreResult<()> {
        dispatch!(self.set_watermark(account, mark))
    }

    /// Commit one mail (see the module doc). Advances the watermark to its
    /// position in the same transaction. `Invalid` (or `Conflict`) means the
    /// database refuses something in this mail: retrying will not help, the
    /// caller quarantines it.
    pub async fn ingest_mail(&self, mail: IngestMail) -> StoreResult<IngestOutcome> {
        dispatch!(self.ingest_mail(mail))
    }

    /// Commit several mails of one account, in UID order, as
    /// [`Store::ingest_mail`] would one after another, and move the
    /// watermark past the committed ones. On Postgres they share one
    /// transaction (one commit, and so one fsync, for all; see
    /// `store/postgres/ingest.rs`): all are committed or none. On SQLite
    /// each is its own transaction (a commit there costs no server round
    /// trip), and the batch stops at the first error. Either way `committed`
    /// is the prefix that is in the store, and the caller commits the rest
    /// one by one after a failure.
    pub async fn ingest_batch(&self, mails: &[IngestMail]) -> BatchIngest {
        match self {
            Store::Postgres(s) => s.ingest_batch(mails).await,
            Store::Sqlite(s) => {
                let mut committed = Vec::with_capacity(mails.len());
                for mail in mails {
                    match s.ingest_mail(mail.clone()).await {
                        Ok(outcome) => committed.push(outcome),
                        Err(e) => {
                            return BatchIngest {
                                committed,
                                failed: Some(e),
                            };
                        }
                    }
                }
                BatchIngest {
                    committed,
                    failed: None,
                }
            }
        }
    }

    /// Keep a mail that cannot be ingested, raw, and move the watermark past
    /// it, in one transaction. Idempotent for a position: a second call
    /// returns the first quarantine id. `Conflict` if the position was
    /// ingested as a mail already.
    pub async fn quarantine_mail(&self, mail: QuarantineMail) -> StoreResult<i64> {
        dispatch!(self.quarantine_mail(mail))
    }

    /// Unresolved quarantined mail of an account, newest first.
    pub async fn list_quarantine(&self, account: AccountId) -> StoreResult<Vec<QuarantineEntry>> {
        dispatch!(self.list_quarantine(account))
    }

    /// A quarantined mail's raw bytes (for retry and download), resolved or
    /// not. `NotFound` for another account's id.
    pub async fn quarantine_raw(&self, account: AccountId, id: i64) -> StoreResult<Vec<u8>> {
        dispatch!(self.quarantine_raw(account, id))
    }

    /// Mark a quarantined mail resolved (after a successful retry, or
    /// deleted). Resolving twice is not an error; `NotFound` for another
    /// account's id.
    pub async fn resolve_quarantine(&self, account: AccountId, id: i64) -> StoreResult<()> {
        dispatch!(self.resolve_quarantine(account, id))
    }

    /// A deployment-wide secret by name, created (random, 32 bytes) on first
    /// use. Every node of a cluster reads the same one (e.g. the key that
    /// signs our Message-IDs).
    pub async fn server_secret(&self, name: &str) -> StoreResult<Vec<u8>> {
        dispatch!(self.server_secret(name))
    }

    /// Record an outgoing mail on an interaction, `delivery: queued`, from
    /// the account's address; it becomes the interaction's last message.
    /// The seed of the outbox (#5), which will add the send itself; today it
    /// is what a bounce finds by Message-ID.
    pub async fn insert_outgoing_message(
        &self,
        interaction: InteractionId,
        mail: NewOutgoing,
    ) -> StoreResult<MessageId> {
        dispatch!(self.insert_outgoing_message(interaction, mail))
    }

    /// Close an open interaction as `closed` or `closed_unmanaged`, with an
    /// optional disposition path (1 to 3 names): sets `closed_at`, bumps
    /// `version`, deletes its draft. `Invalid` if it is closed already. The
    /// minimal close that #5 builds on (no mandatory-disposition check yet).
    pub async fn close_interaction(
        &self,
        id: InteractionId,
        status: InteractionStatus,
        disposition: Option<Vec<String>>,
    ) -> StoreResult<Interaction> {
        let disposition = close_args(status, disposition)?;
        dispatch!(self.close_interaction(id, status, disposition))
    }
}
