//! Uploads and the outbox: see `store/outbox.rs`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::ingest::store_blob;
use super::interactions::{interaction_cols, interaction_row, load};
use super::{Millis, Name, SqliteStore, ms};
use crate::domain::threading::split_display_name;
use crate::domain::{AccountId, AgentId, AttachmentId, Delivery, InteractionId, MessageId};
use crate::mail::Mailbox;
use crate::store::common::{self, stored};
use crate::store::ingest::{Blob, MAX_CHAIN, clean, mailbox_json, mailboxes_from_json, preview};
use crate::store::outbox::{envelope, not_open, not_yours, upload_gone};
use crate::store::{
    AttachmentMeta, BuildMail, DeliveryChange, Enqueued, NewUpload, OutboxEntry, OutboxJob,
    OutboxOutcome, OutgoingFiles, OutgoingThread, StoreError, StoreResult,
};

const UPLOAD_INSERT: &str = "INSERT INTO attachments (message_row_id, blob_id, filename,
         content_type, size, is_inline, uploaded_by, created_at)
     VALUES (NULL, ?1, ?2, ?3, ?4, 0, ?5, ?6)
     RETURNING id";

const UPLOAD: &str = "SELECT a.id, a.filename, a.content_type, a.size, a.content_id, a.is_inline,
         b.data
     FROM attachments a JOIN blobs b ON b.id = a.blob_id
     WHERE a.id = ?1 AND a.uploaded_by = ?2 AND a.message_row_id IS NULL";

const THREAD_STATE: &str = "SELECT status, owner_id FROM interactions WHERE id = ?1";

const ACCOUNT_OF: &str = "SELECT account_id FROM interactions WHERE id = ?1";

const NEW_OUTBOUND: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, owner_id, first_agent_id,
         contact_id, priority, version, created_at, updated_at)
     VALUES (?1, ?2, ?3, 'open', ?4, ?4, ?5, 0, 1, ?6, ?6)
     RETURNING ",
    interaction_cols!()
);

const CONTACT_BY_EMAIL: &str = "SELECT contact_id FROM contact_emails WHERE email = ?1";
const CONTACT_MERGED_INTO: &str = "SELECT merged_into FROM contacts WHERE id = ?1";
const CONTACT_INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?3) RETURNING id";
const CONTACT_EMAIL_INSERT: &str = "INSERT INTO contact_emails (email, contact_id, created_at)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (email) DO NOTHING";

const NEW_MESSAGE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, from_name, to_addrs, cc_addrs, bcc_addrs, subject, text_body, html_body,
         message_id_header, in_reply_to, references_header, raw_blob_id, author_agent_id,
         delivery, created_at)
     VALUES (?1, ?2, 'out', 'mail', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
         'queued', ?16)
     RETURNING id";

// Conditional: only the author's own upload, and only while unused, so an
// upload can never end up on two messages (or on someone else's).
const LINK_UPLOAD: &str = "UPDATE attachments SET message_row_id = ?1
     WHERE id = ?2 AND uploaded_by = ?3 AND message_row_id IS NULL";

const CARRY: &str = "INSERT INTO attachments (message_row_id, blob_id, filename, content_type,
         size, content_id, is_inline, uploaded_by, created_at)
     SELECT ?1, blob_id, filename, content_type, size, content_id, is_inline, NULL, ?3
     FROM attachments WHERE id = ?2 AND message_row_id IS NOT NULL";

const LAST_OUTGOING: &str = concat!(
    "UPDATE interactions SET updated_at = ?2,
         last_message_direction = 'out', last_message_at = ?2, last_message_preview = ?3
     WHERE id = ?1
     RETURNING ",
    interaction_cols!()
);

const NEW_OUTBOX: &str = "INSERT INTO outbox (message_row_id, account_id, status, attempts,
         next_attempt_at, created_at, updated_at)
     VALUES (?1, ?2, 'queued', 0, ?3, ?3, ?3)
     RETURNING id";

const DUE: &str = "SELECT id FROM outbox
     WHERE account_id = ?1 AND status = 'queued' AND next_attempt_at <= ?2
     ORDER BY next_attempt_at, id LIMIT ?3";

const NEXT_DUE: &str =
    "SELECT MIN(next_attempt_at) FROM outbox WHERE account_id = ?1 AND status = 'queued'";

// The lease: of two senders racing for one row, the single writer lets one
// UPDATE through at a time, and only the first still finds it due.
const CLAIM: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?3,
         updated_at = ?2
     WHERE id = ?1 AND status = 'queued' AND next_attempt_at <= ?2
     RETURNING id, message_row_id, account_id, attempts, created_at";

const JOB_MESSAGE: &str = "SELECT m.interaction_id, m.from_addr, m.to_addrs, m.cc_addrs,
         m.bcc_addrs, m.message_id_header, b.data
     FROM messages m JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.id = ?1";

const FINISH: &str = "UPDATE outbox SET status = ?2, next_attempt_at = ?3, last_error = ?4,
         updated_at = ?5
     WHERE id = ?1 AND status = 'queued'
     RETURNING message_row_id";

const MESSAGE_DELIVERY: &str = "UPDATE messages SET delivery = ?2, delivery_error = ?3
     WHERE id = ?1
     RETURNING interaction_id";

const EXPEDITE: &str = "UPDATE outbox SET next_attempt_at = ?2
     WHERE account_id = ?1 AND status = 'queued' AND next_attempt_at > ?2";

const ENTRY: &str = "SELECT id, message_row_id, account_id, status, attempts, next_attempt_at,
         last_error, created_at, updated_at
     FROM outbox WHERE message_row_id = ?1";

fn meta_row(row: &Row<'_>) -> StoreResult<AttachmentMeta> {
    Ok(AttachmentMeta {
        id: AttachmentId(row.get("id")?),
        filename: row.get("filename")?,
        content_type: row.get("content_type")?,
        size: stored(row.get("size")?, "size")?,
        content_id: row.get("content_id")?,
        inline: row.get("is_inline")?,
    })
}

/// The contact of an address (following merges), created if new.
fn contact_for(tx: &Connection, who: &Mailbox, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
    let email = who.address.trim().to_lowercase();
    if email.is_empty() {
        return Ok(None);
    }
    let find = |tx: &Connection| -> StoreResult<Option<i64>> {
        let Some(mut id) = tx
            .prepare_cached(CONTACT_BY_EMAIL)?
            .query_row([&email], |r| r.get::<_, i64>(0))
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
    };
    if let Some(id) = find(tx)? {
        return Ok(Some(id));
    }
    let (first, last) = split_display_name(who.name.as_deref(), &who.address);
    let id: i64 = tx
        .prepare_cached(CONTACT_INSERT)?
        .query_row(params![clean(&first), clean(&last), ms(now)], |r| r.get(0))?;
    // SQLite has one writer, so nobody can have linked the address since
    // `find`; the DO NOTHING only mirrors the Postgres twin.
    tx.prepare_cached(CONTACT_EMAIL_INSERT)?
        .execute(params![email, id, ms(now)])?;
    Ok(Some(id))
}

fn entry_row(row: &Row<'_>) -> StoreResult<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.get("id")?,
        message: MessageId(row.get("message_row_id")?),
        account: AccountId(row.get("account_id")?),
        status: row.get::<_, Name<Delivery>>("status")?.0,
        attempts: stored(row.get("attempts")?, "attempts")?,
        next_attempt_at: row.get::<_, Millis>("next_attempt_at")?.0,
        last_error: row.get("last_error")?,
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
    })
}

impl SqliteStore {
    pub async fn store_upload(&self, upload: NewUpload) -> StoreResult<AttachmentMeta> {
        self.write(move |tx| {
            let now = common::now();
            let size = upload.data.len() as u64;
            let blob = store_blob(tx, &Blob::new(upload.data), now)?;
            let filename = clean(&upload.filename);
            let content_type = clean(&upload.content_type);
            let id: i64 = tx.prepare_cached(UPLOAD_INSERT)?.query_row(
                params![
                    blob,
                    filename,
                    content_type,
                    common::bigint(size, "size")?,
                    upload.agent.0,
                    ms(now)
                ],
                |r| r.get(0),
            )?;
            Ok(AttachmentMeta {
                id: AttachmentId(id),
                filename,
                content_type,
                size,
                content_id: None,
                inline: false,
            })
        })
        .await
    }

    pub async fn upload(
        &self,
        id: AttachmentId,
        agent: AgentId,
    ) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(UPLOAD)?;
            let mut rows = stmt.query([id.0, agent.0])?;
            let row = rows.next()?.ok_or(StoreError::NotFound("upload"))?;
            Ok((meta_row(row)?, row.get("data")?))
        })
        .await
    }

    pub async fn enqueue_mail(
        &self,
        thread: OutgoingThread,
        files: OutgoingFiles,
        build: BuildMail,
    ) -> StoreResult<Enqueued> {
        self.write(move |tx| {
            let now = common::now();
            let (interaction, account) = match thread {
                OutgoingThread::Existing { interaction, owner } => {
                    let (status, current): (String, Option<i64>) = tx
                        .prepare_cached(THREAD_STATE)?
                        .query_row([interaction.0], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?
                        .ok_or(StoreError::NotFound("interaction"))?;
                    if status != "open" {
                        return Err(not_open());
                    }
                    if owner.is_some_and(|o| current != Some(o.0)) {
                        return Err(not_yours());
                    }
                    let account: i64 = tx
                        .prepare_cached(ACCOUNT_OF)?
                        .query_row([interaction.0], |r| r.get(0))?;
                    (load(tx, interaction.0)?, account)
                }
                OutgoingThread::New {
                    account,
                    queue,
                    owner,
                    subject,
                    contact,
                } => {
                    let contact = match &contact {
                        Some(who) => contact_for(tx, who, now)?,
                        None => None,
                    };
                    let created = tx.prepare_cached(NEW_OUTBOUND)?.query_row(
                        params![
                            account.0,
                            queue.0,
                            clean(&subject),
                            owner.0,
                            contact,
                            ms(now)
                        ],
                        interaction_row,
                    )?;
                    (created, account.0)
                }
            };
            let mail = build(&interaction)?;
            let raw = store_blob(tx, &Blob::new(mail.raw), now)?;
            let text = clean(&mail.text);
            let references = mail.references.join(" ");
            let message: i64 = tx.prepare_cached(NEW_MESSAGE)?.query_row(
                params![
                    interaction.id.0,
                    account,
                    clean(&mail.from.address),
                    mail.from.name.as_deref().map(clean),
                    mailbox_json(&mail.to),
                    mailbox_json(&mail.cc),
                    mailbox_json(&mail.bcc),
                    clean(&mail.subject),
                    text,
                    mail.html.as_deref().map(clean),
                    clean(&mail.message_id),
                    mail.in_reply_to.as_deref().map(clean),
                    (!references.is_empty()).then(|| clean(&references)),
                    raw,
                    mail.author.0,
                    ms(now),
                ],
                |r| r.get(0),
            )?;
            for id in &files.uploads {
                let linked = tx.prepare_cached(LINK_UPLOAD)?.execute(params![
                    message,
                    id.0,
                    mail.author.0
                ])?;
                if linked != 1 {
                    return Err(upload_gone(*id));
                }
            }
            for id in &files.carried {
                let copied = tx
                    .prepare_cached(CARRY)?
                    .execute(params![message, id.0, ms(now)])?;
                if copied != 1 {
                    return Err(StoreError::NotFound("attachment"));
                }
            }
            let interaction = tx.prepare_cached(LAST_OUTGOING)?.query_row(
                params![interaction.id.0, ms(now), preview(&text)],
                interaction_row,
            )?;
            let outbox: i64 = tx
                .prepare_cached(NEW_OUTBOX)?
                .query_row(params![message, account, ms(now)], |r| r.get(0))?;
            Ok(Enqueued {
                interaction,
                message: MessageId(message),
                outbox,
            })
        })
        .await
    }

    pub async fn due_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<i64>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(DUE)?;
            let rows = stmt.query_map(params![account.0, ms(now), limit], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
        })
        .await
    }

    pub async fn next_outbox_due(&self, account: AccountId) -> StoreResult<Option<DateTime<Utc>>> {
        self.read(move |conn| {
            let next: Option<Millis> = conn
                .prepare_cached(NEXT_DUE)?
                .query_row([account.0], |r| r.get(0))?;
            Ok(next.map(|m| m.0))
        })
        .await
    }

    pub async fn claim_outbox(
        &self,
        id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<OutboxJob>> {
        self.write(move |tx| {
            let claimed = tx
                .prepare_cached(CLAIM)?
                .query_row(params![id, ms(now), ms(lease_until)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Millis>(4)?,
                    ))
                })
                .optional()?;
            let Some((id, message, account, attempts, queued_at)) = claimed else {
                return Ok(None);
            };
            let mut stmt = tx.prepare_cached(JOB_MESSAGE)?;
            let mut rows = stmt.query([message])?;
            let row = rows.next()?.ok_or(StoreError::NotFound("message"))?;
            let to = mailboxes_from_json(&row.get::<_, String>("to_addrs")?, "to_addrs")?;
            let cc = mailboxes_from_json(&row.get::<_, String>("cc_addrs")?, "cc_addrs")?;
            let bcc = mailboxes_from_json(&row.get::<_, String>("bcc_addrs")?, "bcc_addrs")?;
            Ok(Some(OutboxJob {
                id,
                message: MessageId(message),
                interaction: InteractionId(row.get("interaction_id")?),
                account: AccountId(account),
                attempts: stored(attempts, "attempts")?,
                queued_at: queued_at.0,
                from: row
                    .get::<_, Option<String>>("from_addr")?
                    .unwrap_or_default(),
                recipients: envelope(&[&to, &cc, &bcc]),
                message_id: row.get("message_id_header")?,
                raw: row.get("data")?,
            }))
        })
        .await
    }

    pub async fn finish_outbox(
        &self,
        id: i64,
        outcome: OutboxOutcome,
    ) -> StoreResult<DeliveryChange> {
        self.write(move |tx| {
            let now = common::now();
            let (status, next, error) = match &outcome {
                OutboxOutcome::Sent => (Delivery::Sent, now, None),
                OutboxOutcome::Retry { at, error } => (Delivery::Queued, *at, Some(error.clone())),
                OutboxOutcome::Failed { error } => (Delivery::Failed, now, Some(error.clone())),
            };
            let message: i64 = tx
                .prepare_cached(FINISH)?
                .query_row(
                    params![id, status.as_str(), ms(next), error, ms(now)],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::Conflict("the outbox row is not queued".into()))?;
            let interaction: i64 = tx
                .prepare_cached(MESSAGE_DELIVERY)?
                .query_row(params![message, status.as_str(), error], |r| r.get(0))?;
            Ok(DeliveryChange {
                interaction: load(tx, interaction)?,
                message: MessageId(message),
                delivery: status,
            })
        })
        .await
    }

    pub async fn expedite_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(EXPEDITE)?
                .execute(params![account.0, ms(now)])? as u64)
        })
        .await
    }

    pub async fn outbox_entry(&self, message: MessageId) -> StoreResult<OutboxEntry> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(ENTRY)?;
            let mut rows = stmt.query([message.0])?;
            let row = rows.next()?.ok_or(StoreError::NotFound("outbox entry"))?;
            entry_row(row)
        })
        .await
    }
}
