//! Ingest on SQLite: one `BEGIN IMMEDIATE` transaction per mail on the
//! writer connection (the watermark and receipts it writes are in
//! [`super::bookkeeping`]).
//!
//! The rules are in `store/ingest.rs`; the Postgres twin runs the same
//! steps in the same order. SQLite admits one writer at a time (and the
//! IMMEDIATE transaction takes the write lock at BEGIN, also against other
//! processes), so the look-ups here see every committed mail and nothing
//! can slip in between; the `ON CONFLICT` inserts and the savepoint are
//! still written exactly as on Postgres, where they are what makes ingest
//! exactly-once, so that both backends share one algorithm.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::bookkeeping::{advance, insert_receipt, receipt_message, receipt_of};
use super::interactions::{interaction_cols, interaction_row};
use super::{Millis, Name, SqliteStore, blocking, ms};
use crate::domain::{
    AccountId, ContactId, Direction, InteractionId, InteractionStatus, MessageId, MessageKind,
};
use crate::mail::Mailbox;
use crate::store::common;
use crate::store::ingest::{
    Blob, MAX_CHAIN, MBOX_TYPE, Prepared, continued_meanwhile, mailbox_json, mailboxes_from_json,
    reference_list, refused, thread_file_name, vanished,
};
use crate::store::mbox::{self, MboxMessage};
use crate::store::{IngestMail, IngestOutcome, Interaction, StoreError, StoreResult};

// ---- SQL ------------------------------------------------------------------------

// The dedupe indexes' own predicates, so that these look-ups use them.
const SAME_MAIL: &str = "SELECT id FROM messages
     WHERE account_id = ?1 AND message_id_header = ?2 AND content_hash = ?3
       AND message_id_header IS NOT NULL AND content_hash IS NOT NULL";

const SAME_CONTENT: &str = "SELECT id FROM messages
     WHERE account_id = ?1 AND content_hash = ?2
       AND message_id_header IS NULL AND content_hash IS NOT NULL";

// Identical bytes are stored once. DO NOTHING (not DO UPDATE … RETURNING):
// an update would rewrite a row of up to 40 MB for nothing.
const BLOB_INSERT: &str = "INSERT INTO blobs (sha256, size, data, created_at)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (sha256) DO NOTHING
     RETURNING id";

const BLOB_ID: &str = "SELECT id FROM blobs WHERE sha256 = ?1";

const CONTACT_BY_EMAIL: &str = "SELECT contact_id FROM contact_emails WHERE email = ?1";

const CONTACT_MERGED_INTO: &str = "SELECT merged_into FROM contacts WHERE id = ?1";

// Names are filled where empty, never overwritten: an agent may have
// corrected them, and a mail's display name is only a hint.
const CONTACT_FILL: &str = "UPDATE contacts SET
         first_name = CASE WHEN COALESCE(first_name, '') = '' THEN ?2 ELSE first_name END,
         last_name = CASE WHEN COALESCE(last_name, '') = '' THEN ?3 ELSE last_name END,
         updated_at = ?4
     WHERE id = ?1
       AND ((COALESCE(first_name, '') = '' AND ?2 <> '')
         OR (COALESCE(last_name, '') = '' AND ?3 <> ''))";

const CONTACT_INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?3) RETURNING id";

// The address's primary key decides which new contact wins when two mails
// of a new sender are ingested at once; the loser deletes its own row.
const CONTACT_EMAIL_INSERT: &str = "INSERT INTO contact_emails (email, contact_id, created_at)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (email) DO NOTHING";

const CONTACT_DELETE: &str = "DELETE FROM contacts WHERE id = ?1";

const IN_ACCOUNT: &str = "SELECT id FROM interactions WHERE id = ?1 AND account_id = ?2";

const BY_MESSAGE_ID: &str = "SELECT interaction_id FROM messages
     WHERE account_id = ?1 AND message_id_header = ?2
     ORDER BY id DESC LIMIT 1";

const IN_ACCOUNT_FULL: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = ?1 AND account_id = ?2"
);

// A DSN: the original is one of our outgoing messages of this account.
const MARK_BOUNCED: &str = "UPDATE messages SET delivery = 'failed', delivery_error = ?3
     WHERE account_id = ?1 AND message_id_header = ?2 AND direction = 'out'
     RETURNING id, interaction_id";

// Unread: nobody has seen it yet. It counts one unread mail and shows it as
// the last message unless it is an auto-reply (?8–?11 say which).
const NEW_INTERACTION: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, contact_id, priority,
         unread, unread_count, continues_id, version, enqueued_at, created_at, updated_at,
         last_message_direction, last_message_at, last_message_preview)
     VALUES (?1, ?2, ?3, 'open', ?4, ?5, 1, ?11, ?6, 1, ?7, ?7, ?7, ?8, ?9, ?10)
     RETURNING ",
    interaction_cols!()
);

// Untargeted DO NOTHING: besides the id, the only unique indexes of
// `messages` are the two dedupe indexes (with and without a Message-ID), and
// either one means "this mail is stored already".
const NEW_MESSAGE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, text_body, html_body,
         message_id_header, in_reply_to, references_header, content_hash, raw_blob_id,
         created_at)
     VALUES (?1, ?2, 'in', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
     ON CONFLICT DO NOTHING
     RETURNING id";

const NEW_ATTACHMENT: &str = "INSERT INTO attachments (message_row_id, blob_id, filename,
         content_type, size, content_id, is_inline, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

// A customer's reply: the sub-status is cleared (DESIGN.md), the
// interaction is unread and shows this mail as its last message.
const APPEND_MAIL: &str = concat!(
    "UPDATE interactions SET
         substatus = NULL, unread = 1, unread_count = unread_count + 1, updated_at = ?2,
         last_message_direction = 'in', last_message_at = ?2, last_message_preview = ?3,
         version = version + 1
     WHERE id = ?1
     RETURNING ",
    interaction_cols!()
);

// An auto-reply or a DSN: stored and announced, but it changes nothing an
// agent works by (sub-status, unread, last message, activity time).
const APPEND_QUIET: &str = concat!(
    "UPDATE interactions SET version = version + 1 WHERE id = ?1 RETURNING ",
    interaction_cols!()
);

// Thread 1 points at thread 2 once; the condition (and the unique index on
// `continues_id`) turns a second thread 2 into an error, never a fork.
const LINK_CONTINUED: &str = "UPDATE interactions SET continued_in_id = ?2
     WHERE id = ?1 AND continued_in_id IS NULL";

// Thread 1 for its mbox: raw bytes where stored; otherwise the fields, the
// sender being the account (our mail) or the author (notes).
const THREAD_FOR_MBOX: &str = "SELECT m.direction, m.kind,
         COALESCE(m.from_addr, a.address) AS from_addr, COALESCE(m.from_name, ag.name) AS from_name,
         m.to_addrs, m.cc_addrs, m.subject, m.text_body, m.message_id_header, m.in_reply_to,
         m.references_header, m.created_at, b.data AS raw
     FROM messages m
     JOIN accounts a ON a.id = m.account_id
     LEFT JOIN agents ag ON ag.id = m.author_agent_id
     LEFT JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.interaction_id = ?1
     ORDER BY m.created_at, m.id";

// ---- the store methods -------------------------------------------------------------

impl SqliteStore {
    pub async fn ingest_mail(&self, mail: IngestMail) -> StoreResult<IngestOutcome> {
        // Hashing up to 40 MB is CPU work: on the blocking pool, and before
        // the writer is locked, so that other writes do not wait for it.
        let p = blocking(move || Ok(Prepared::new(mail))).await?;
        self.write(move |tx| ingest(tx, &p, common::now()).map_err(too_big))
            .await
    }
}

// ---- one mail ---------------------------------------------------------------------

fn ingest(tx: &Connection, p: &Prepared, now: DateTime<Utc>) -> StoreResult<IngestOutcome> {
    if let Some(position) = p.position
        && !insert_receipt(tx, p.account, position, now)?
    {
        let (message, _) = receipt_of(tx, p.account, position)?;
        advance(tx, p.account, position, now)?;
        return Ok(IngestOutcome::Duplicate {
            message: message.map(MessageId),
        });
    }
    if let Some(existing) = stored_duplicate(tx, p)? {
        return duplicate(tx, p, existing, now);
    }
    // Everything the mail writes from here on can be undone alone if its
    // message turns out to be stored already (see `store/ingest.rs`).
    tx.execute_batch("SAVEPOINT ingest_mail")?;
    match commit_new(tx, p, now)? {
        Some((outcome, message)) => {
            tx.execute_batch("RELEASE ingest_mail")?;
            if let Some(position) = p.position {
                receipt_message(tx, p.account, position, message)?;
                advance(tx, p.account, position, now)?;
            }
            Ok(outcome)
        }
        None => {
            tx.execute_batch("ROLLBACK TO ingest_mail; RELEASE ingest_mail")?;
            let existing = stored_duplicate(tx, p)?.ok_or_else(vanished)?;
            duplicate(tx, p, existing, now)
        }
    }
}

/// A mail stored before: the receipt points at it, the watermark moves.
fn duplicate(
    tx: &Connection,
    p: &Prepared,
    existing: i64,
    now: DateTime<Utc>,
) -> StoreResult<IngestOutcome> {
    if let Some(position) = p.position {
        receipt_message(tx, p.account, position, existing)?;
        advance(tx, p.account, position, now)?;
    }
    Ok(IngestOutcome::Duplicate {
        message: Some(MessageId(existing)),
    })
}

/// The stored message this mail duplicates (same Message-ID and content,
/// or the same content without a Message-ID).
fn stored_duplicate(tx: &Connection, p: &Prepared) -> StoreResult<Option<i64>> {
    Ok(match &p.message_id {
        Some(id) => tx
            .prepare_cached(SAME_MAIL)?
            .query_row(params![p.account.0, id, p.content_hash], |r| r.get(0))
            .optional()?,
        None => tx
            .prepare_cached(SAME_CONTENT)?
            .query_row(params![p.account.0, p.content_hash], |r| r.get(0))
            .optional()?,
    })
}

/// Write the mail as new. `None` when its message insert finds it stored
/// already (a concurrent ingest won): the caller rolls back to the savepoint.
fn commit_new(
    tx: &Connection,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Option<(IngestOutcome, i64)>> {
    let mut blobs = HashMap::new();
    for blob in p.blobs() {
        blobs.insert(blob.sha256.as_slice(), store_blob(tx, blob, now)?);
    }
    let contact = upsert_contact(tx, p, now)?;

    if let Some(bounce) = &p.bounce
        && let Some(original) = &bounce.original
    {
        let bounced = tx
            .prepare_cached(MARK_BOUNCED)?
            .query_map(params![p.account.0, original, bounce.reason], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if let Some(&(message_row, interaction)) = bounced.iter().max() {
            let Some(message) = insert_message(tx, p, interaction, &blobs, now)? else {
                return Ok(None);
            };
            let interaction = append(tx, p, interaction, now)?;
            let outcome = IngestOutcome::Bounced {
                original: Some(MessageId(message_row)),
                interaction: Some(interaction),
            };
            return Ok(Some((outcome, message)));
        }
    }

    match resolve_thread(tx, p)? {
        // An auto-reply to a closed thread (an out-of-office answering our
        // closing reply) is kept on it and opens nothing (module docs).
        Some(thread) if thread.status == InteractionStatus::Open || !p.counts() => {
            let Some(message) = insert_message(tx, p, thread.id.0, &blobs, now)? else {
                return Ok(None);
            };
            let interaction = append(tx, p, thread.id.0, now)?;
            let outcome = IngestOutcome::Appended {
                interaction,
                message: MessageId(message),
            };
            Ok(Some((outcome, message)))
        }
        Some(previous) => {
            let contact = previous.contact.or(contact);
            let thread = new_interaction(tx, p, Some(&previous), contact, now)?;
            let Some(message) = insert_message(tx, p, thread.id.0, &blobs, now)? else {
                return Ok(None);
            };
            if tx
                .prepare_cached(LINK_CONTINUED)?
                .execute(params![previous.id.0, thread.id.0])?
                != 1
            {
                return Err(continued_meanwhile());
            }
            attach_thread(tx, p, &previous, message, now)?;
            let outcome = IngestOutcome::Continued {
                interaction: thread,
                previous: previous.id,
                message: MessageId(message),
                contact,
            };
            Ok(Some((outcome, message)))
        }
        None => {
            let interaction = new_interaction(tx, p, None, contact, now)?;
            let Some(message) = insert_message(tx, p, interaction.id.0, &blobs, now)? else {
                return Ok(None);
            };
            let outcome = IngestOutcome::Created {
                interaction,
                message: MessageId(message),
                contact,
            };
            Ok(Some((outcome, message)))
        }
    }
}

pub(super) fn store_blob(tx: &Connection, blob: &Blob, now: DateTime<Utc>) -> StoreResult<i64> {
    let inserted = tx
        .prepare_cached(BLOB_INSERT)?
        .query_row(params![blob.sha256, blob.size(), blob.data, ms(now)], |r| {
            r.get(0)
        })
        .optional()?;
    match inserted {
        Some(id) => Ok(id),
        None => Ok(tx
            .prepare_cached(BLOB_ID)?
            .query_row([&blob.sha256], |r| r.get(0))?),
    }
}

fn upsert_contact(
    tx: &Connection,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Option<ContactId>> {
    let Some(sender) = &p.sender else {
        return Ok(None);
    };
    for _ in 0..2 {
        if let Some(found) = contact_by_email(tx, &sender.email)? {
            if sender.named {
                tx.prepare_cached(CONTACT_FILL)?.execute(params![
                    found,
                    sender.first_name,
                    sender.last_name,
                    ms(now)
                ])?;
            }
            return Ok(Some(ContactId(found)));
        }
        let id: i64 = tx
            .prepare_cached(CONTACT_INSERT)?
            .query_row(params![sender.first_name, sender.last_name, ms(now)], |r| {
                r.get(0)
            })?;
        let linked =
            tx.prepare_cached(CONTACT_EMAIL_INSERT)?
                .execute(params![sender.email, id, ms(now)])?;
        if linked == 1 {
            return Ok(Some(ContactId(id)));
        }
        // Another ingest created this sender's contact first: use theirs.
        tx.prepare_cached(CONTACT_DELETE)?.execute([id])?;
    }
    contact_by_email(tx, &sender.email)?
        .map(|id| Some(ContactId(id)))
        .ok_or_else(|| StoreError::Conflict("the sender's contact changed meanwhile".into()))
}

/// The contact of an address, following merges.
fn contact_by_email(tx: &Connection, email: &str) -> StoreResult<Option<i64>> {
    let Some(mut id) = tx
        .prepare_cached(CONTACT_BY_EMAIL)?
        .query_row([email], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(None);
    };
    for _ in 0..MAX_CHAIN {
        let merged: Option<i64> = tx
            .prepare_cached(CONTACT_MERGED_INTO)?
            .query_row([id], |r| r.get(0))?;
        match merged {
            Some(next) => id = next,
            None => break,
        }
    }
    Ok(Some(id))
}

/// The thread this mail continues (DESIGN.md order, scoped to the account),
/// followed to the newest thread of the conversation.
fn resolve_thread(tx: &Connection, p: &Prepared) -> StoreResult<Option<Interaction>> {
    let Some(matched) = matched_thread(tx, p)? else {
        return Ok(None);
    };
    let mut thread = in_account(tx, matched, p.account)?;
    for _ in 0..MAX_CHAIN {
        let Some(next) = thread.continued_in else {
            break;
        };
        thread = in_account(tx, next.0, p.account)?;
    }
    Ok(Some(thread))
}

fn matched_thread(tx: &Connection, p: &Prepared) -> StoreResult<Option<i64>> {
    let mut owned = tx.prepare_cached(IN_ACCOUNT)?;
    let mut exists = |id: InteractionId| -> StoreResult<Option<i64>> {
        Ok(owned
            .query_row(params![id.0, p.account.0], |r| r.get(0))
            .optional()?)
    };
    for &id in &p.refs.ours {
        if let Some(found) = exists(id)? {
            return Ok(Some(found));
        }
    }
    let mut by_id = tx.prepare_cached(BY_MESSAGE_ID)?;
    for message_id in &p.refs.message_ids {
        let found: Option<i64> = by_id
            .query_row(params![p.account.0, message_id], |r| r.get(0))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    match p.refs.subject_token {
        Some(id) => exists(id),
        None => Ok(None),
    }
}

fn in_account(tx: &Connection, id: i64, account: AccountId) -> StoreResult<Interaction> {
    tx.prepare_cached(IN_ACCOUNT_FULL)?
        .query_row(params![id, account.0], interaction_row)
        .optional()?
        .ok_or(StoreError::NotFound("interaction"))
}

/// A new interaction for this mail: open, unowned, unread, enqueued now.
/// As thread 2 it takes thread 1's queue, contact and priority.
fn new_interaction(
    tx: &Connection,
    p: &Prepared,
    previous: Option<&Interaction>,
    contact: Option<ContactId>,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let queue = previous.map_or(p.queue, |t| t.queue);
    let priority = previous.map_or(0, |t| t.priority);
    let last_direction = p.preview.as_ref().map(|_| Direction::In.as_str());
    let last_at = p.preview.as_ref().map(|_| ms(now));
    Ok(tx.prepare_cached(NEW_INTERACTION)?.query_row(
        params![
            p.account.0,
            queue.0,
            p.subject,
            contact.map(|c| c.0),
            priority,
            previous.map(|t| t.id.0),
            ms(now),
            last_direction,
            last_at,
            p.preview,
            i32::from(p.counts()),
        ],
        interaction_row,
    )?)
}

/// The message and its attachments; `None` if the dedupe indexes say it is
/// stored already.
fn insert_message(
    tx: &Connection,
    p: &Prepared,
    interaction: i64,
    blobs: &HashMap<&[u8], i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let raw_blob = blobs.get(p.raw.sha256.as_slice()).copied();
    let inserted: Option<i64> = tx
        .prepare_cached(NEW_MESSAGE)?
        .query_row(
            params![
                interaction,
                p.account.0,
                p.kind.as_str(),
                p.from.as_ref().map(|f| &f.address),
                p.from.as_ref().and_then(|f| f.name.as_ref()),
                mailbox_json(&p.to),
                mailbox_json(&p.cc),
                p.reply_to,
                p.subject,
                p.text,
                p.html,
                p.message_id,
                p.in_reply_to,
                p.references,
                p.content_hash,
                raw_blob,
                ms(now),
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(message) = inserted else {
        return Ok(None);
    };
    let mut stmt = tx.prepare_cached(NEW_ATTACHMENT)?;
    for a in &p.attachments {
        let blob = blobs
            .get(a.blob.sha256.as_slice())
            .copied()
            .ok_or_else(|| StoreError::Invalid("an attachment's blob was not stored".into()))?;
        stmt.execute(params![
            message,
            blob,
            a.filename,
            a.content_type,
            a.blob.size(),
            a.content_id,
            a.inline,
            ms(now),
        ])?;
    }
    Ok(Some(message))
}

/// The interaction after a message was appended to it.
fn append(
    tx: &Connection,
    p: &Prepared,
    interaction: i64,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let row = match &p.preview {
        Some(preview) if p.counts() => tx
            .prepare_cached(APPEND_MAIL)?
            .query_row(params![interaction, ms(now), preview], interaction_row),
        _ => tx
            .prepare_cached(APPEND_QUIET)?
            .query_row([interaction], interaction_row),
    };
    Ok(row?)
}

/// Thread 1 as an mbox attachment of thread 2's first message.
fn attach_thread(
    tx: &Connection,
    p: &Prepared,
    previous: &Interaction,
    message: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut stmt = tx.prepare_cached(THREAD_FOR_MBOX)?;
    let rows = stmt.query_map([previous.id.0], |r| {
        Ok((
            r.get::<_, Name<Direction>>(0)?.0,
            r.get::<_, Name<MessageKind>>(1)?.0,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<String>>(8)?,
            r.get::<_, Option<String>>(9)?,
            r.get::<_, Option<String>>(10)?,
            r.get::<_, Millis>(11)?,
            r.get::<_, Option<Vec<u8>>>(12)?,
        ))
    })?;
    let mut messages = Vec::new();
    for row in rows {
        let (direction, kind, from_addr, from_name, to, cc, subject, text, id, irt, refs, at, raw) =
            row?;
        messages.push(MboxMessage {
            raw,
            direction,
            kind,
            from: from_addr.map(|address| Mailbox {
                name: from_name,
                address,
            }),
            to: mailboxes_from_json(&to, "to_addrs")?,
            cc: mailboxes_from_json(&cc, "cc_addrs")?,
            subject,
            text,
            message_id: id,
            in_reply_to: irt,
            references: reference_list(refs),
            created_at: at.0,
        });
    }
    let file = Blob::new(mbox::render(&messages));
    let blob = store_blob(tx, &file, now)?;
    tx.prepare_cached(NEW_ATTACHMENT)?.execute(params![
        message,
        blob,
        thread_file_name(&p.account_key, previous.id),
        MBOX_TYPE,
        file.size(),
        Option::<String>::None,
        false,
        ms(now),
    ])?;
    Ok(())
}

/// SQLite's "string or blob too big": the same refusal as Postgres' data
/// exceptions, so the mail is quarantined instead of retried.
pub(super) fn too_big(err: StoreError) -> StoreError {
    match &err {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, detail))
            if e.code == ErrorCode::TooBig =>
        {
            refused(detail.as_deref().unwrap_or("a value is too big"))
        }
        _ => err,
    }
}
