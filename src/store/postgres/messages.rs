//! Messages, contacts and attachments as read back; the minimal close and
//! the outgoing-message seed of the outbox.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::interactions::{interaction_cols, interaction_row, load};
use super::{Name, PgStore, name};
use crate::domain::{
    AccountId, AttachmentId, ContactId, Delivery, InteractionId, InteractionStatus, MessageId,
};
use crate::mail::Mailbox;
use crate::store::common::{self, stored};
use crate::store::ingest::{already_closed, clean, preview, reference_list, reply_to_from_column};
use crate::store::{
    AttachmentMeta, Contact, Interaction, NewOutgoing, StoreError, StoreResult, StoredMessage,
};

const MESSAGES: &str = "SELECT id, interaction_id, direction, kind, from_addr, from_name,
         to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body, message_id_header,
         in_reply_to, references_header, delivery, delivery_error, author_agent_id, created_at
     FROM messages WHERE interaction_id = $1
     ORDER BY created_at, id";

const ATTACHMENTS: &str = "SELECT a.id, a.message_row_id, a.filename, a.content_type, a.size,
         a.content_id, a.is_inline
     FROM attachments a JOIN messages m ON m.id = a.message_row_id
     WHERE m.interaction_id = $1
     ORDER BY a.id";

const OF_ACCOUNT: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE account_id = $1 ORDER BY id"
);

const CONTACT: &str =
    "SELECT id, COALESCE(first_name, ''), COALESCE(last_name, '') FROM contacts WHERE id = $1";

const CONTACT_EMAILS: &str =
    "SELECT email FROM contact_emails WHERE contact_id = $1 ORDER BY email";

const ATTACHMENT: &str = "SELECT a.id, a.message_row_id, a.filename, a.content_type, a.size,
         a.content_id, a.is_inline, b.data
     FROM attachments a JOIN blobs b ON b.id = a.blob_id
     WHERE a.id = $1";

// A conditional update: of concurrent closes (or a close racing a claim),
// the row lock lets one at a time re-check `status = 'open'`; only the
// first close finds it open.
const CLOSE: &str = concat!(
    "UPDATE interactions SET status = $2, closed_at = $3, updated_at = $3, disposition = $4,
         version = version + 1
     WHERE id = $1 AND status = 'open'
     RETURNING ",
    interaction_cols!()
);

const DELETE_DRAFT: &str = "DELETE FROM drafts WHERE interaction_id = $1";

const ACCOUNT_OF: &str = "SELECT i.account_id, a.address
     FROM interactions i JOIN accounts a ON a.id = i.account_id
     WHERE i.id = $1";

const NEW_OUTGOING: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, to_addrs, subject, text_body, message_id_header, delivery, created_at)
     VALUES ($1, $2, 'out', 'mail', $3, $4, $5, $6, $7, 'queued', $8)
     RETURNING id";

const LAST_OUTGOING: &str = "UPDATE interactions SET updated_at = $2,
         last_message_direction = 'out', last_message_at = $2, last_message_preview = $3
     WHERE id = $1";

fn message_row(row: &Row) -> StoreResult<StoredMessage> {
    let from_addr: Option<String> = row.try_get("from_addr")?;
    let from_name: Option<String> = row.try_get("from_name")?;
    Ok(StoredMessage {
        id: MessageId(row.try_get("id")?),
        interaction: InteractionId(row.try_get("interaction_id")?),
        direction: name(row, "direction")?,
        kind: name(row, "kind")?,
        from: from_addr.map(|address| Mailbox {
            name: from_name,
            address,
        }),
        to: row.try_get::<_, Json<Vec<Mailbox>>>("to_addrs")?.0,
        cc: row.try_get::<_, Json<Vec<Mailbox>>>("cc_addrs")?.0,
        bcc: row.try_get::<_, Json<Vec<Mailbox>>>("bcc_addrs")?.0,
        reply_to: reply_to_from_column(row.try_get("reply_to")?),
        subject: row.try_get("subject")?,
        text: row.try_get("text_body")?,
        html: row.try_get("html_body")?,
        message_id: row.try_get("message_id_header")?,
        in_reply_to: row.try_get("in_reply_to")?,
        references: reference_list(row.try_get("references_header")?),
        delivery: row
            .try_get::<_, Option<Name<Delivery>>>("delivery")?
            .map(|d| d.0),
        delivery_error: row.try_get("delivery_error")?,
        author: row
            .try_get::<_, Option<i64>>("author_agent_id")?
            .map(crate::domain::AgentId),
        attachments: Vec::new(),
        created_at: row.try_get("created_at")?,
    })
}

fn attachment_row(row: &Row) -> StoreResult<(Option<i64>, AttachmentMeta)> {
    Ok((
        row.try_get("message_row_id")?,
        AttachmentMeta {
            id: AttachmentId(row.try_get("id")?),
            filename: row.try_get("filename")?,
            content_type: row.try_get("content_type")?,
            size: stored(row.try_get("size")?, "size")?,
            content_id: row.try_get("content_id")?,
            inline: row.try_get("is_inline")?,
        },
    ))
}

async fn messages_of<C: GenericClient>(
    client: &C,
    interaction: InteractionId,
) -> StoreResult<Vec<StoredMessage>> {
    load(client, interaction.0).await?;
    let stmt = client.prepare_cached(MESSAGES).await?;
    let mut messages = client
        .query(&stmt, &[&interaction.0])
        .await?
        .iter()
        .map(message_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let index: HashMap<i64, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.0, i))
        .collect();
    let stmt = client.prepare_cached(ATTACHMENTS).await?;
    for row in client.query(&stmt, &[&interaction.0]).await? {
        let (message, meta) = attachment_row(&row)?;
        if let Some(&i) = message.and_then(|m| index.get(&m)) {
            messages[i].attachments.push(meta);
        }
    }
    Ok(messages)
}

impl PgStore {
    pub async fn messages(&self, interaction: InteractionId) -> StoreResult<Vec<StoredMessage>> {
        let mut client = self.client().await?;
        // One snapshot for the messages and their attachments.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let messages = messages_of(&tx, interaction).await?;
        tx.commit().await?;
        Ok(messages)
    }

    pub async fn interactions_of_account(
        &self,
        account: AccountId,
    ) -> StoreResult<Vec<Interaction>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(OF_ACCOUNT).await?;
        client
            .query(&stmt, &[&account.0])
            .await?
            .iter()
            .map(interaction_row)
            .collect()
    }

    pub async fn contact(&self, id: ContactId) -> StoreResult<Contact> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CONTACT).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("contact"))?;
        let stmt = client.prepare_cached(CONTACT_EMAILS).await?;
        let emails = client
            .query(&stmt, &[&id.0])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Contact {
            id: ContactId(row.try_get(0)?),
            first_name: row.try_get(1)?,
            last_name: row.try_get(2)?,
            emails,
        })
    }

    pub async fn attachment(&self, id: AttachmentId) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(ATTACHMENT).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("attachment"))?;
        let (_, meta) = attachment_row(&row)?;
        Ok((meta, row.try_get("data")?))
    }

    pub async fn close_interaction(
        &self,
        id: InteractionId,
        status: InteractionStatus,
        disposition: Option<Vec<String>>,
    ) -> StoreResult<Interaction> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(CLOSE).await?;
        let closed = tx
            .query_opt(
                &stmt,
                &[
                    &id.0,
                    &status.as_str(),
                    &common::now(),
                    &disposition.as_ref().map(Json),
                ],
            )
            .await?;
        let Some(row) = closed else {
            load(&tx, id.0).await?;
            return Err(already_closed());
        };
        let closed = interaction_row(&row)?;
        let stmt = tx.prepare_cached(DELETE_DRAFT).await?;
        tx.execute(&stmt, &[&id.0]).await?;
        // A closed interaction is offered to nobody.
        super::routing::rescind_live(&tx, id, crate::domain::RescindReason::Cancelled).await?;
        tx.commit().await?;
        Ok(closed)
    }

    pub async fn insert_outgoing_message(
        &self,
        interaction: InteractionId,
        mail: NewOutgoing,
    ) -> StoreResult<MessageId> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(ACCOUNT_OF).await?;
        let row = tx
            .query_opt(&stmt, &[&interaction.0])
            .await?
            .ok_or(StoreError::NotFound("interaction"))?;
        let (account, address): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let now = common::now();
        let to: Vec<Mailbox> = mail
            .to
            .iter()
            .map(|m| Mailbox {
                name: m.name.as_deref().map(clean),
                address: clean(&m.address),
            })
            .collect();
        let text = clean(&mail.text);
        let stmt = tx.prepare_cached(NEW_OUTGOING).await?;
        let id: i64 = tx
            .query_one(
                &stmt,
                &[
                    &interaction.0,
                    &account,
                    &address,
                    &Json(&to),
                    &clean(&mail.subject),
                    &text,
                    &clean(&mail.message_id_header),
                    &now,
                ],
            )
            .await?
            .try_get(0)?;
        let stmt = tx.prepare_cached(LAST_OUTGOING).await?;
        tx.execute(&stmt, &[&interaction.0, &now, &preview(&text)])
            .await?;
        tx.commit().await?;
        Ok(MessageId(id))
    }
}
