//! Uploads and the outbox: see `store/outbox.rs`.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::ingest::store_blob;
use super::interactions::{interaction_cols, interaction_row, load};
use super::{PgStore, name};
use crate::domain::threading::split_display_name;
use crate::domain::{AccountId, AgentId, AttachmentId, Delivery, InteractionId, MessageId};
use crate::mail::Mailbox;
use crate::store::common::{self, stored};
use crate::store::ingest::{Blob, MAX_CHAIN, clean, preview};
use crate::store::outbox::{envelope, not_open, not_yours, upload_gone};
use crate::store::{
    AttachmentMeta, BuildMail, DeliveryChange, Enqueued, NewUpload, OutboxEntry, OutboxJob,
    OutboxOutcome, OutgoingFiles, OutgoingThread, StoreError, StoreResult,
};

const UPLOAD_INSERT: &str = "INSERT INTO attachments (message_row_id, blob_id, filename,
         content_type, size, is_inline, uploaded_by, created_at)
     VALUES (NULL, $1, $2, $3, $4, false, $5, $6)
     RETURNING id";

const UPLOAD: &str = "SELECT a.id, a.filename, a.content_type, a.size, a.content_id, a.is_inline,
         b.data
     FROM attachments a JOIN blobs b ON b.id = a.blob_id
     WHERE a.id = $1 AND a.uploaded_by = $2 AND a.message_row_id IS NULL";

// Locked: a close, a transfer or a claim of this interaction waits for this
// transaction, so the message never lands on a thread that was closed or
// handed to someone else after the check.
const THREAD_STATE: &str =
    "SELECT status, owner_id, account_id FROM interactions WHERE id = $1 FOR UPDATE";

const NEW_OUTBOUND: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, owner_id, first_agent_id,
         contact_id, priority, version, created_at, updated_at)
     VALUES ($1, $2, $3, 'open', $4, $4, $5, 0, 1, $6, $6)
     RETURNING ",
    interaction_cols!()
);

const CONTACT_BY_EMAIL: &str = "SELECT contact_id FROM contact_emails WHERE email = $1";
const CONTACT_MERGED_INTO: &str = "SELECT merged_into FROM contacts WHERE id = $1";
const CONTACT_INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES ($1, $2, $3, $3) RETURNING id";
const CONTACT_EMAIL_INSERT: &str = "INSERT INTO contact_emails (email, contact_id, created_at)
     VALUES ($1, $2, $3)
     ON CONFLICT (email) DO NOTHING";
const CONTACT_DELETE: &str = "DELETE FROM contacts WHERE id = $1";

const NEW_MESSAGE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, from_name, to_addrs, cc_addrs, bcc_addrs, subject, text_body, html_body,
         message_id_header, in_reply_to, references_header, raw_blob_id, author_agent_id,
         delivery, created_at)
     VALUES ($1, $2, 'out', 'mail', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
         'queued', $16)
     RETURNING id";

// Conditional: only the author's own upload, and only while unused. Two
// sends racing for one upload queue on its row lock; the second re-checks
// `message_row_id IS NULL`, finds it used, and changes nothing.
const LINK_UPLOAD: &str = "UPDATE attachments SET message_row_id = $1
     WHERE id = $2 AND uploaded_by = $3 AND message_row_id IS NULL";

const CARRY: &str = "INSERT INTO attachments (message_row_id, blob_id, filename, content_type,
         size, content_id, is_inline, uploaded_by, created_at)
     SELECT $1, blob_id, filename, content_type, size, content_id, is_inline, NULL, $3
     FROM attachments WHERE id = $2 AND message_row_id IS NOT NULL";

const LAST_OUTGOING: &str = concat!(
    "UPDATE interactions SET updated_at = $2,
         last_message_direction = 'out', last_message_at = $2, last_message_preview = $3
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const NEW_OUTBOX: &str = "INSERT INTO outbox (message_row_id, account_id, status, attempts,
         next_attempt_at, created_at, updated_at)
     VALUES ($1, $2, 'queued', 0, $3, $3, $3)
     RETURNING id";

const DUE: &str = "SELECT id FROM outbox
     WHERE account_id = $1 AND status = 'queued' AND next_attempt_at <= $2
     ORDER BY next_attempt_at, id LIMIT $3";

const NEXT_DUE: &str =
    "SELECT MIN(next_attempt_at) FROM outbox WHERE account_id = $1 AND status = 'queued'";

// The lease, in one statement: concurrent claims of a row queue on its row
// lock, and each re-checks the WHERE clause against the committed row, so
// only the first still finds it due (READ COMMITTED's UPDATE re-check).
const CLAIM: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $3,
         updated_at = $2
     WHERE id = $1 AND status = 'queued' AND next_attempt_at <= $2
     RETURNING id, message_row_id, account_id, attempts, created_at";

const JOB_MESSAGE: &str = "SELECT m.interaction_id, m.from_addr, m.to_addrs, m.cc_addrs,
         m.bcc_addrs, m.message_id_header, b.data
     FROM messages m JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.id = $1";

const FINISH: &str = "UPDATE outbox SET status = $2, next_attempt_at = $3, last_error = $4,
         updated_at = $5
     WHERE id = $1 AND status = 'queued'
     RETURNING message_row_id";

const MESSAGE_DELIVERY: &str = "UPDATE messages SET delivery = $2, delivery_error = $3
     WHERE id = $1
     RETURNING interaction_id";

const EXPEDITE: &str = "UPDATE outbox SET next_attempt_at = $2
     WHERE account_id = $1 AND status = 'queued' AND next_attempt_at > $2";

const ENTRY: &str = "SELECT id, message_row_id, account_id, status, attempts, next_attempt_at,
         last_error, created_at, updated_at
     FROM outbox WHERE message_row_id = $1";

fn meta_row(row: &Row) -> StoreResult<AttachmentMeta> {
    Ok(AttachmentMeta {
        id: AttachmentId(row.try_get("id")?),
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size: stored(row.try_get("size")?, "size")?,
        content_id: row.try_get("content_id")?,
        inline: row.try_get("is_inline")?,
    })
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

/// The contact of an address (following merges), created if new.
async fn contact_for(
    tx: &Transaction<'_>,
    who: &Mailbox,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let email = who.address.trim().to_lowercase();
    if email.is_empty() {
        return Ok(None);
    }
    let (first, last) = split_display_name(who.name.as_deref(), &who.address);
    for _ in 0..2 {
        if let Some(found) = contact_by_email(tx, &email).await? {
            return Ok(Some(found));
        }
        let stmt = tx.prepare_cached(CONTACT_INSERT).await?;
        let id: i64 = tx
            .query_one(&stmt, &[&clean(&first), &clean(&last), &now])
            .await?
            .try_get(0)?;
        let stmt = tx.prepare_cached(CONTACT_EMAIL_INSERT).await?;
        if tx.execute(&stmt, &[&email, &id, &now]).await? == 1 {
            return Ok(Some(id));
        }
        // Someone linked this address first (an ingest, another send): use theirs.
        let stmt = tx.prepare_cached(CONTACT_DELETE).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    contact_by_email(tx, &email).await
}

fn entry_row(row: &Row) -> StoreResult<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.try_get("id")?,
        message: MessageId(row.try_get("message_row_id")?),
        account: AccountId(row.try_get("account_id")?),
        status: name(row, "status")?,
        attempts: stored(i64::from(row.try_get::<_, i32>("attempts")?), "attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PgStore {
    pub async fn store_upload(&self, upload: NewUpload) -> StoreResult<AttachmentMeta> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = common::now();
        let size = upload.data.len() as u64;
        let blob = store_blob(&tx, &Blob::new(upload.data), now).await?;
        let filename = clean(&upload.filename);
        let content_type = clean(&upload.content_type);
        let stmt = tx.prepare_cached(UPLOAD_INSERT).await?;
        let id: i64 = tx
            .query_one(
                &stmt,
                &[
                    &blob,
                    &filename,
                    &content_type,
                    &common::bigint(size, "size")?,
                    &upload.agent.0,
                    &now,
                ],
            )
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(AttachmentMeta {
            id: AttachmentId(id),
            filename,
            content_type,
            size,
            content_id: None,
            inline: false,
        })
    }

    pub async fn upload(
        &self,
        id: AttachmentId,
        agent: AgentId,
    ) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(UPLOAD).await?;
        let row = client
            .query_opt(&stmt, &[&id.0, &agent.0])
            .await?
            .ok_or(StoreError::NotFound("upload"))?;
        Ok((meta_row(&row)?, row.try_get("data")?))
    }

    pub async fn enqueue_mail(
        &self,
        thread: OutgoingThread,
        files: OutgoingFiles,
        build: BuildMail,
    ) -> StoreResult<Enqueued> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = common::now();
        let (interaction, account) = match thread {
            OutgoingThread::Existing { interaction, owner } => {
                let stmt = tx.prepare_cached(THREAD_STATE).await?;
                let row = tx
                    .query_opt(&stmt, &[&interaction.0])
                    .await?
                    .ok_or(StoreError::NotFound("interaction"))?;
                let status: String = row.try_get(0)?;
                let current: Option<i64> = row.try_get(1)?;
                let account: i64 = row.try_get(2)?;
                if status != "open" {
                    return Err(not_open());
                }
                if owner.is_some_and(|o| current != Some(o.0)) {
                    return Err(not_yours());
                }
                (load(&tx, interaction.0).await?, account)
            }
            OutgoingThread::New {
                account,
                queue,
                owner,
                subject,
                contact,
            } => {
                let contact = match &contact {
                    Some(who) => contact_for(&tx, who, now).await?,
                    None => None,
                };
                let stmt = tx.prepare_cached(NEW_OUTBOUND).await?;
                let row = tx
                    .query_one(
                        &stmt,
                        &[
                            &account.0,
                            &queue.0,
                            &clean(&subject),
                            &owner.0,
                            &contact,
                            &now,
                        ],
                    )
                    .await?;
                (interaction_row(&row)?, account.0)
            }
        };
        let mail = build(&interaction)?;
        let raw = store_blob(&tx, &Blob::new(mail.raw), now).await?;
        let text = clean(&mail.text);
        let references = mail.references.join(" ");
        let stmt = tx.prepare_cached(NEW_MESSAGE).await?;
        let message: i64 = tx
            .query_one(
                &stmt,
                &[
                    &interaction.id.0,
                    &account,
                    &clean(&mail.from.address),
                    &mail.from.name.as_deref().map(clean),
                    &Json(&mail.to),
                    &Json(&mail.cc),
                    &Json(&mail.bcc),
                    &clean(&mail.subject),
                    &text,
                    &mail.html.as_deref().map(clean),
                    &clean(&mail.message_id),
                    &mail.in_reply_to.as_deref().map(clean),
                    &(!references.is_empty()).then(|| clean(&references)),
                    &raw,
                    &mail.author.0,
                    &now,
                ],
            )
            .await?
            .try_get(0)?;
        let stmt = tx.prepare_cached(LINK_UPLOAD).await?;
        for id in &files.uploads {
            if tx
                .execute(&stmt, &[&message, &id.0, &mail.author.0])
                .await?
                != 1
            {
                return Err(upload_gone(*id));
            }
        }
        let stmt = tx.prepare_cached(CARRY).await?;
        for id in &files.carried {
            if tx.execute(&stmt, &[&message, &id.0, &now]).await? != 1 {
                return Err(StoreError::NotFound("attachment"));
            }
        }
        let stmt = tx.prepare_cached(LAST_OUTGOING).await?;
        let row = tx
            .query_one(&stmt, &[&interaction.id.0, &now, &preview(&text)])
            .await?;
        let interaction = interaction_row(&row)?;
        let stmt = tx.prepare_cached(NEW_OUTBOX).await?;
        let outbox: i64 = tx
            .query_one(&stmt, &[&message, &account, &now])
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(Enqueued {
            interaction,
            message: MessageId(message),
            outbox,
        })
    }

    pub async fn due_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<i64>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DUE).await?;
        let rows = client
            .query(&stmt, &[&account.0, &now, &i64::from(limit)])
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<StoreResult<Vec<i64>>>()
    }

    pub async fn next_outbox_due(&self, account: AccountId) -> StoreResult<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(NEXT_DUE).await?;
        Ok(client.query_one(&stmt, &[&account.0]).await?.try_get(0)?)
    }

    pub async fn claim_outbox(
        &self,
        id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<OutboxJob>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(CLAIM).await?;
        let Some(row) = tx.query_opt(&stmt, &[&id, &now, &lease_until]).await? else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let message: i64 = row.try_get(1)?;
        let account: i64 = row.try_get(2)?;
        let attempts: i32 = row.try_get(3)?;
        let queued_at: DateTime<Utc> = row.try_get(4)?;
        let stmt = tx.prepare_cached(JOB_MESSAGE).await?;
        let row = tx
            .query_opt(&stmt, &[&message])
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        let to = row.try_get::<_, Json<Vec<Mailbox>>>("to_addrs")?.0;
        let cc = row.try_get::<_, Json<Vec<Mailbox>>>("cc_addrs")?.0;
        let bcc = row.try_get::<_, Json<Vec<Mailbox>>>("bcc_addrs")?.0;
        let job = OutboxJob {
            id,
            message: MessageId(message),
            interaction: InteractionId(row.try_get("interaction_id")?),
            account: AccountId(account),
            attempts: stored(i64::from(attempts), "attempts")?,
            queued_at,
            from: row
                .try_get::<_, Option<String>>("from_addr")?
                .unwrap_or_default(),
            recipients: envelope(&[&to, &cc, &bcc]),
            message_id: row.try_get("message_id_header")?,
            raw: row.try_get("data")?,
        };
        tx.commit().await?;
        Ok(Some(job))
    }

    pub async fn finish_outbox(
        &self,
        id: i64,
        outcome: OutboxOutcome,
    ) -> StoreResult<DeliveryChange> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = common::now();
        let (status, next, error) = match &outcome {
            OutboxOutcome::Sent => (Delivery::Sent, now, None),
            OutboxOutcome::Retry { at, error } => (Delivery::Queued, *at, Some(error.clone())),
            OutboxOutcome::Failed { error } => (Delivery::Failed, now, Some(error.clone())),
        };
        let stmt = tx.prepare_cached(FINISH).await?;
        let message: i64 = tx
            .query_opt(&stmt, &[&id, &status.as_str(), &next, &error, &now])
            .await?
            .ok_or_else(|| StoreError::Conflict("the outbox row is not queued".into()))?
            .try_get(0)?;
        let stmt = tx.prepare_cached(MESSAGE_DELIVERY).await?;
        let interaction: i64 = tx
            .query_one(&stmt, &[&message, &status.as_str(), &error])
            .await?
            .try_get(0)?;
        let interaction = load(&tx, interaction).await?;
        tx.commit().await?;
        Ok(DeliveryChange {
            interaction,
            message: MessageId(message),
            delivery: status,
        })
    }

    pub async fn expedite_outbox(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(EXPEDITE).await?;
        Ok(client.execute(&stmt, &[&account.0, &now]).await?)
    }

    pub async fn outbox_entry(&self, message: MessageId) -> StoreResult<OutboxEntry> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(ENTRY).await?;
        let row = client
            .query_opt(&stmt, &[&message.0])
            .await?
            .ok_or(StoreError::NotFound("outbox entry"))?;
        entry_row(&row)
    }
}
