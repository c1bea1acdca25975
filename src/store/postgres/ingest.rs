//! Ingest on Postgres: one transaction per mail (the watermark and receipts
//! it writes are in [`super::bookkeeping`]).
//!
//! The rules are in `store/ingest.rs`; the SQLite twin runs the same steps
//! in the same order. Here several nodes may ingest at once (a takeover
//! while the old owner still runs, a mailbox resynced after a UIDVALIDITY
//! change), and the transactions run at READ COMMITTED, so nothing is
//! decided on a read alone:
//!
//! - the receipt and the message are inserted `ON CONFLICT DO NOTHING`: a
//!   concurrent insert of the same key waits for the other transaction and
//!   then sees its row, so exactly one ingest writes the mail;
//! - the thread a reply goes to is read `FOR UPDATE`, so that two replies to
//!   one closed thread cannot both create a thread 2: the second waits, then
//!   sees `continued_in` set and follows it;
//! - blobs are inserted in SHA-256 order, the receipt first and the
//!   watermark last, so two ingests that wait for each other always wait in
//!   the same order and cannot deadlock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::Json;

use super::bookkeeping::{advance, insert_receipt, receipt_message, receipt_of};
use super::interactions::{interaction_cols, interaction_row};
use super::{PgStore, name};
use crate::domain::{AccountId, ContactId, Direction, InteractionStatus, MessageId, MessageKind};
use crate::mail::Mailbox;
use crate::store::common;
use crate::store::ingest::{
    Blob, MAX_CHAIN, MBOX_TYPE, Prepared, continued_meanwhile, reference_list, refused,
    thread_file_name, vanished,
};
use crate::store::mbox::{self, MboxMessage};
use crate::store::{IngestMail, IngestOutcome, Interaction, StoreError, StoreResult};

// ---- SQL ------------------------------------------------------------------------
// The same statements as the SQLite twin, in Postgres' dialect; the comments
// there say why each is shaped as it is, and the ones here what differs.

const SAME_MAIL: &str = "SELECT id FROM messages
     WHERE account_id = $1 AND message_id_header = $2 AND content_hash = $3
       AND message_id_header IS NOT NULL AND content_hash IS NOT NULL";

const SAME_CONTENT: &str = "SELECT id FROM messages
     WHERE account_id = $1 AND content_hash = $2
       AND message_id_header IS NULL AND content_hash IS NOT NULL";

const BLOB_INSERT: &str = "INSERT INTO blobs (sha256, size, data, created_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (sha256) DO NOTHING
     RETURNING id";

const BLOB_ID: &str = "SELECT id FROM blobs WHERE sha256 = $1";

const CONTACT_BY_EMAIL: &str = "SELECT contact_id FROM contact_emails WHERE email = $1";

const CONTACT_MERGED_INTO: &str = "SELECT merged_into FROM contacts WHERE id = $1";

const CONTACT_FILL: &str = "UPDATE contacts SET
         first_name = CASE WHEN COALESCE(first_name, '') = '' THEN $2 ELSE first_name END,
         last_name = CASE WHEN COALESCE(last_name, '') = '' THEN $3 ELSE last_name END,
         updated_at = $4
     WHERE id = $1
       AND ((COALESCE(first_name, '') = '' AND $2 <> '')
         OR (COALESCE(last_name, '') = '' AND $3 <> ''))";

const CONTACT_INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES ($1, $2, $3, $3) RETURNING id";

const CONTACT_EMAIL_INSERT: &str = "INSERT INTO contact_emails (email, contact_id, created_at)
     VALUES ($1, $2, $3)
     ON CONFLICT (email) DO NOTHING";

const CONTACT_DELETE: &str = "DELETE FROM contacts WHERE id = $1";

const IN_ACCOUNT: &str = "SELECT id FROM interactions WHERE id = $1 AND account_id = $2";

const BY_MESSAGE_ID: &str = "SELECT interaction_id FROM messages
     WHERE account_id = $1 AND message_id_header = $2
     ORDER BY id DESC LIMIT 1";

// FOR UPDATE: the thread is appended to, or continued, by this transaction;
// a concurrent ingest of a reply to it waits and then reads it as this one
// left it (with `continued_in` set, if this one created thread 2).
const IN_ACCOUNT_LOCKED: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = $1 AND account_id = $2 FOR UPDATE"
);

const MARK_BOUNCED: &str = "UPDATE messages SET delivery = 'failed', delivery_error = $3
     WHERE account_id = $1 AND message_id_header = $2 AND direction = 'out'
     RETURNING id, interaction_id";

const NEW_INTERACTION: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, contact_id, priority,
         unread, unread_count, continues_id, version, enqueued_at, created_at, updated_at,
         last_message_direction, last_message_at, last_message_preview)
     VALUES ($1, $2, $3, 'open', $4, $5, true, $11, $6, 1, $7, $7, $7, $8, $9, $10)
     RETURNING ",
    interaction_cols!()
);

const NEW_MESSAGE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, text_body, html_body,
         message_id_header, in_reply_to, references_header, content_hash, raw_blob_id,
         created_at)
     VALUES ($1, $2, 'in', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
     ON CONFLICT DO NOTHING
     RETURNING id";

const NEW_ATTACHMENT: &str = "INSERT INTO attachments (message_row_id, blob_id, filename,
         content_type, size, content_id, is_inline, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const APPEND_MAIL: &str = concat!(
    "UPDATE interactions SET
         substatus = NULL, unread = true, unread_count = unread_count + 1, updated_at = $2,
         last_message_direction = 'in', last_message_at = $2, last_message_preview = $3,
         version = version + 1
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const APPEND_QUIET: &str = concat!(
    "UPDATE interactions SET version = version + 1 WHERE id = $1 RETURNING ",
    interaction_cols!()
);

const LINK_CONTINUED: &str = "UPDATE interactions SET continued_in_id = $2
     WHERE id = $1 AND continued_in_id IS NULL";

const THREAD_FOR_MBOX: &str = "SELECT m.direction, m.kind,
         COALESCE(m.from_addr, a.address) AS from_addr, COALESCE(m.from_name, ag.name) AS from_name,
         m.to_addrs, m.cc_addrs, m.subject, m.text_body, m.message_id_header, m.in_reply_to,
         m.references_header, m.created_at, b.data AS raw
     FROM messages m
     JOIN accounts a ON a.id = m.account_id
     LEFT JOIN agents ag ON ag.id = m.author_agent_id
     LEFT JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.interaction_id = $1
     ORDER BY m.created_at, m.id";

// ---- the store methods -------------------------------------------------------------

impl PgStore {
    pub async fn ingest_mail(&self, mail: IngestMail) -> StoreResult<IngestOutcome> {
        // Hashing up to 40 MB is CPU work: not on the async threads, where it
        // would stall whoever shares them (invariant 5).
        let p = tokio::task::spawn_blocking(move || Prepared::new(mail))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = ingest(&tx, &p, common::now()).await.map_err(data_refused)?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Postgres refuses what it cannot store with SQLSTATE class 22 (data
/// exception: a NUL in text, a bad escape in json) or 23 (integrity; the
/// common ones are already `Conflict`/`Invalid`): such a mail is `Invalid`,
/// so that the mailbox quarantines it instead of retrying it forever.
pub(super) fn data_refused(err: StoreError) -> StoreError {
    if let StoreError::Postgres(e) = &err
        && let Some(code) = e.code()
        && (code.code().starts_with("22") || code.code().starts_with("23"))
    {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| format!("SQLSTATE {}", code.code()));
        return refused(&detail);
    }
    err
}

// ---- one mail ---------------------------------------------------------------------

async fn ingest(
    tx: &Transaction<'_>,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<IngestOutcome> {
    if let Some(position) = p.position
        && !insert_receipt(tx, p.account, position, now).await?
    {
        let (message, _) = receipt_of(tx, p.account, position).await?;
        advance(tx, p.account, position, now).await?;
        return Ok(IngestOutcome::Duplicate {
            message: message.map(MessageId),
        });
    }
    if let Some(existing) = stored_duplicate(tx, p).await? {
        return duplicate(tx, p, existing, now).await;
    }
    // Everything the mail writes from here on can be undone alone if its
    // message turns out to be stored already (see `store/ingest.rs`).
    tx.batch_execute("SAVEPOINT ingest_mail").await?;
    match commit_new(tx, p, now).await? {
        Some((outcome, message)) => {
            tx.batch_execute("RELEASE SAVEPOINT ingest_mail").await?;
            if let Some(position) = p.position {
                receipt_message(tx, p.account, position, message).await?;
                advance(tx, p.account, position, now).await?;
            }
            Ok(outcome)
        }
        None => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT ingest_mail; RELEASE SAVEPOINT ingest_mail")
                .await?;
            let existing = stored_duplicate(tx, p).await?.ok_or_else(vanished)?;
            duplicate(tx, p, existing, now).await
        }
    }
}

async fn duplicate(
    tx: &Transaction<'_>,
    p: &Prepared,
    existing: i64,
    now: DateTime<Utc>,
) -> StoreResult<IngestOutcome> {
    if let Some(position) = p.position {
        receipt_message(tx, p.account, position, existing).await?;
        advance(tx, p.account, position, now).await?;
    }
    Ok(IngestOutcome::Duplicate {
        message: Some(MessageId(existing)),
    })
}

async fn stored_duplicate(tx: &Transaction<'_>, p: &Prepared) -> StoreResult<Option<i64>> {
    let row = match &p.message_id {
        Some(id) => {
            let stmt = tx.prepare_cached(SAME_MAIL).await?;
            tx.query_opt(&stmt, &[&p.account.0, id, &p.content_hash])
                .await?
        }
        None => {
            let stmt = tx.prepare_cached(SAME_CONTENT).await?;
            tx.query_opt(&stmt, &[&p.account.0, &p.content_hash])
                .await?
        }
    };
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

async fn commit_new(
    tx: &Transaction<'_>,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Option<(IngestOutcome, i64)>> {
    let mut blobs = HashMap::new();
    for blob in p.blobs() {
        blobs.insert(blob.sha256.as_slice(), store_blob(tx, blob, now).await?);
    }
    let contact = upsert_contact(tx, p, now).await?;

    if let Some(bounce) = &p.bounce
        && let Some(original) = &bounce.original
    {
        let stmt = tx.prepare_cached(MARK_BOUNCED).await?;
        let rows = tx
            .query(&stmt, &[&p.account.0, original, &bounce.reason])
            .await?;
        let mut bounced = Vec::with_capacity(rows.len());
        for r in &rows {
            bounced.push((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?));
        }
        if let Some(&(message_row, interaction)) = bounced.iter().max() {
            let Some(message) = insert_message(tx, p, interaction, &blobs, now).await? else {
                return Ok(None);
            };
            let interaction = append(tx, p, interaction, now).await?;
            let outcome = IngestOutcome::Bounced {
                original: Some(MessageId(message_row)),
                interaction: Some(interaction),
            };
            return Ok(Some((outcome, message)));
        }
    }

    match resolve_thread(tx, p).await? {
        Some(thread) if thread.status == InteractionStatus::Open => {
            let Some(message) = insert_message(tx, p, thread.id.0, &blobs, now).await? else {
                return Ok(None);
            };
            let interaction = append(tx, p, thread.id.0, now).await?;
            let outcome = IngestOutcome::Appended {
                interaction,
                message: MessageId(message),
            };
            Ok(Some((outcome, message)))
        }
        Some(previous) => {
            let contact = previous.contact.or(contact);
            let thread = new_interaction(tx, p, Some(&previous), contact, now).await?;
            let Some(message) = insert_message(tx, p, thread.id.0, &blobs, now).await? else {
                return Ok(None);
            };
            let stmt = tx.prepare_cached(LINK_CONTINUED).await?;
            if tx.execute(&stmt, &[&previous.id.0, &thread.id.0]).await? != 1 {
                return Err(continued_meanwhile());
            }
            attach_thread(tx, p, &previous, message, now).await?;
            let outcome = IngestOutcome::Continued {
                interaction: thread,
                previous: previous.id,
                message: MessageId(message),
                contact,
            };
            Ok(Some((outcome, message)))
        }
        None => {
            let interaction = new_interaction(tx, p, None, contact, now).await?;
            let Some(message) = insert_message(tx, p, interaction.id.0, &blobs, now).await? else {
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

pub(super) async fn store_blob(
    tx: &Transaction<'_>,
    blob: &Blob,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let stmt = tx.prepare_cached(BLOB_INSERT).await?;
    if let Some(row) = tx
        .query_opt(&stmt, &[&blob.sha256, &blob.size(), &blob.data, &now])
        .await?
    {
        return Ok(row.try_get(0)?);
    }
    // DO NOTHING returned no row: the blob exists (committed, since a
    // concurrent insert of it made us wait for its transaction).
    let stmt = tx.prepare_cached(BLOB_ID).await?;
    Ok(tx.query_one(&stmt, &[&blob.sha256]).await?.try_get(0)?)
}

async fn upsert_contact(
    tx: &Transaction<'_>,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<Option<ContactId>> {
    let Some(sender) = &p.sender else {
        return Ok(None);
    };
    for _ in 0..2 {
        if let Some(found) = contact_by_email(tx, &sender.email).await? {
            if sender.named {
                let stmt = tx.prepare_cached(CONTACT_FILL).await?;
                tx.execute(
                    &stmt,
                    &[&found, &sender.first_name, &sender.last_name, &now],
                )
                .await?;
            }
            return Ok(Some(ContactId(found)));
        }
        let stmt = tx.prepare_cached(CONTACT_INSERT).await?;
        let id: i64 = tx
            .query_one(&stmt, &[&sender.first_name, &sender.last_name, &now])
            .await?
            .try_get(0)?;
        let stmt = tx.prepare_cached(CONTACT_EMAIL_INSERT).await?;
        if tx.execute(&stmt, &[&sender.email, &id, &now]).await? == 1 {
            return Ok(Some(ContactId(id)));
        }
        // Another ingest created this sender's contact first: use theirs.
        let stmt = tx.prepare_cached(CONTACT_DELETE).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    contact_by_email(tx, &sender.email)
        .await?
        .map(|id| Some(ContactId(id)))
        .ok_or_else(|| StoreError::Conflict("the sender's contact changed meanwhile".into()))
}

async fn contact_by_email(tx: &Transaction<'_>, email: &str) -> StoreResult<Option<i64>> {
    let stmt = tx.prepare_cached(CONTACT_BY_EMAIL).await?;
    let Some(row) = tx.query_opt(&stmt, &[&email]).await? else {
        return Ok(None);
    };
    let mut id: i64 = row.try_get(0)?;
    let stmt = tx.prepare_cached(CONTACT_MERGED_INTO).await?;
    for _ in 0..MAX_CHAIN {
        let merged: Option<i64> = tx.query_one(&stmt, &[&id]).await?.try_get(0)?;
        match merged {
            Some(next) => id = next,
            None => break,
        }
    }
    Ok(Some(id))
}

async fn resolve_thread(tx: &Transaction<'_>, p: &Prepared) -> StoreResult<Option<Interaction>> {
    let Some(matched) = matched_thread(tx, p).await? else {
        return Ok(None);
    };
    let mut thread = locked_in_account(tx, matched, p.account).await?;
    for _ in 0..MAX_CHAIN {
        let Some(next) = thread.continued_in else {
            break;
        };
        thread = locked_in_account(tx, next.0, p.account).await?;
    }
    Ok(Some(thread))
}

async fn matched_thread(tx: &Transaction<'_>, p: &Prepared) -> StoreResult<Option<i64>> {
    let owned = tx.prepare_cached(IN_ACCOUNT).await?;
    for id in &p.refs.ours {
        if let Some(row) = tx.query_opt(&owned, &[&id.0, &p.account.0]).await? {
            return Ok(Some(row.try_get(0)?));
        }
    }
    let by_id = tx.prepare_cached(BY_MESSAGE_ID).await?;
    for message_id in &p.refs.message_ids {
        if let Some(row) = tx.query_opt(&by_id, &[&p.account.0, message_id]).await? {
            return Ok(Some(row.try_get(0)?));
        }
    }
    if let Some(id) = p.refs.subject_token
        && let Some(row) = tx.query_opt(&owned, &[&id.0, &p.account.0]).await?
    {
        return Ok(Some(row.try_get(0)?));
    }
    Ok(None)
}

async fn locked_in_account(
    tx: &Transaction<'_>,
    id: i64,
    account: AccountId,
) -> StoreResult<Interaction> {
    let stmt = tx.prepare_cached(IN_ACCOUNT_LOCKED).await?;
    let row = tx
        .query_opt(&stmt, &[&id, &account.0])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    interaction_row(&row)
}

async fn new_interaction(
    tx: &Transaction<'_>,
    p: &Prepared,
    previous: Option<&Interaction>,
    contact: Option<ContactId>,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let queue = previous.map_or(p.queue, |t| t.queue);
    let priority = previous.map_or(0, |t| t.priority);
    let last_direction = p.preview.as_ref().map(|_| Direction::In.as_str());
    let last_at = p.preview.as_ref().map(|_| now);
    let stmt = tx.prepare_cached(NEW_INTERACTION).await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &p.account.0,
                &queue.0,
                &p.subject,
                &contact.map(|c| c.0),
                &priority,
                &previous.map(|t| t.id.0),
                &now,
                &last_direction,
                &last_at,
                &p.preview,
                &i32::from(p.counts()),
            ],
        )
        .await?;
    interaction_row(&row)
}

async fn insert_message(
    tx: &Transaction<'_>,
    p: &Prepared,
    interaction: i64,
    blobs: &HashMap<&[u8], i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let raw_blob = blobs.get(p.raw.sha256.as_slice()).copied();
    let stmt = tx.prepare_cached(NEW_MESSAGE).await?;
    let inserted = tx
        .query_opt(
            &stmt,
            &[
                &interaction,
                &p.account.0,
                &p.kind.as_str(),
                &p.from.as_ref().map(|f| &f.address),
                &p.from.as_ref().and_then(|f| f.name.as_ref()),
                &Json(&p.to),
                &Json(&p.cc),
                &p.reply_to,
                &p.subject,
                &p.text,
                &p.html,
                &p.message_id,
                &p.in_reply_to,
                &p.references,
                &p.content_hash,
                &raw_blob,
                &now,
            ],
        )
        .await?;
    let Some(row) = inserted else {
        return Ok(None);
    };
    let message: i64 = row.try_get(0)?;
    let stmt = tx.prepare_cached(NEW_ATTACHMENT).await?;
    for a in &p.attachments {
        let blob = blobs
            .get(a.blob.sha256.as_slice())
            .copied()
            .ok_or_else(|| StoreError::Invalid("an attachment's blob was not stored".into()))?;
        tx.execute(
            &stmt,
            &[
                &message,
                &blob,
                &a.filename,
                &a.content_type,
                &a.blob.size(),
                &a.content_id,
                &a.inline,
                &now,
            ],
        )
        .await?;
    }
    Ok(Some(message))
}

async fn append(
    tx: &Transaction<'_>,
    p: &Prepared,
    interaction: i64,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let row = match &p.preview {
        Some(preview) if p.counts() => {
            let stmt = tx.prepare_cached(APPEND_MAIL).await?;
            tx.query_one(&stmt, &[&interaction, &now, preview]).await?
        }
        _ => {
            let stmt = tx.prepare_cached(APPEND_QUIET).await?;
            tx.query_one(&stmt, &[&interaction]).await?
        }
    };
    interaction_row(&row)
}

async fn attach_thread(
    tx: &Transaction<'_>,
    p: &Prepared,
    previous: &Interaction,
    message: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let stmt = tx.prepare_cached(THREAD_FOR_MBOX).await?;
    let rows = tx.query(&stmt, &[&previous.id.0]).await?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let from_addr: Option<String> = r.try_get("from_addr")?;
        let from_name: Option<String> = r.try_get("from_name")?;
        messages.push(MboxMessage {
            raw: r.try_get("raw")?,
            direction: name(r, "direction")?,
            kind: name::<MessageKind>(r, "kind")?,
            from: from_addr.map(|address| Mailbox {
                name: from_name,
                address,
            }),
            to: r.try_get::<_, Json<Vec<Mailbox>>>("to_addrs")?.0,
            cc: r.try_get::<_, Json<Vec<Mailbox>>>("cc_addrs")?.0,
            subject: r.try_get("subject")?,
            text: r.try_get("text_body")?,
            message_id: r.try_get("message_id_header")?,
            in_reply_to: r.try_get("in_reply_to")?,
            references: reference_list(r.try_get("references_header")?),
            created_at: r.try_get("created_at")?,
        });
    }
    let file = Blob::new(mbox::render(&messages));
    let blob = store_blob(tx, &file, now).await?;
    let stmt = tx.prepare_cached(NEW_ATTACHMENT).await?;
    tx.execute(
        &stmt,
        &[
            &message,
            &blob,
            &thread_file_name(&p.account_key, previous.id),
            &MBOX_TYPE,
            &file.size(),
            &Option::<String>::None,
            &false,
            &now,
        ],
    )
    .await?;
    Ok(())
}
