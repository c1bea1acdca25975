//! Messages, contacts and attachments as read back; the minimal close and
//! the outgoing-message seed of the outbox.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::interactions::{interaction_cols, interaction_row, load};
use super::{Millis, Name, SqliteStore, ms};
use crate::domain::{
    AccountId, AttachmentId, ContactId, Delivery, Direction, InteractionId, InteractionStatus,
    MessageId, MessageKind,
};
use crate::mail::Mailbox;
use crate::store::common::{self, stored};
use crate::store::ingest::{
    already_closed, clean, mailbox_json, mailboxes_from_json, preview, reference_list,
    reply_to_from_column,
};
use crate::store::{
    AttachmentMeta, Contact, Interaction, NewOutgoing, StoreError, StoreResult, StoredMessage,
};

const MESSAGES: &str = "SELECT id, interaction_id, direction, kind, from_addr, from_name,
         to_addrs, cc_addrs, bcc_addrs, reply_to, subject, text_body, html_body, message_id_header,
         in_reply_to, references_header, delivery, delivery_error, author_agent_id, created_at
     FROM messages WHERE interaction_id = ?1
     ORDER BY created_at, id";

const ATTACHMENTS: &str = "SELECT a.id, a.message_row_id, a.filename, a.content_type, a.size,
         a.content_id, a.is_inline
     FROM attachments a JOIN messages m ON m.id = a.message_row_id
     WHERE m.interaction_id = ?1
     ORDER BY a.id";

const OF_ACCOUNT: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE account_id = ?1 ORDER BY id"
);

const CONTACT: &str =
    "SELECT id, COALESCE(first_name, ''), COALESCE(last_name, '') FROM contacts WHERE id = ?1";

const CONTACT_EMAILS: &str =
    "SELECT email FROM contact_emails WHERE contact_id = ?1 ORDER BY email";

const ATTACHMENT: &str = "SELECT a.id, a.message_row_id, a.filename, a.content_type, a.size,
         a.content_id, a.is_inline, b.data
     FROM attachments a JOIN blobs b ON b.id = a.blob_id
     WHERE a.id = ?1";

// Closing is a conditional update: of a close and anything else racing on
// the same open interaction, the database applies one at a time and only
// the first close finds it open.
const CLOSE: &str = concat!(
    "UPDATE interactions SET status = ?2, closed_at = ?3, updated_at = ?3, disposition = ?4,
         version = version + 1
     WHERE id = ?1 AND status = 'open'
     RETURNING ",
    interaction_cols!()
);

const DELETE_DRAFT: &str = "DELETE FROM drafts WHERE interaction_id = ?1";

const ACCOUNT_OF: &str = "SELECT i.account_id, a.address
     FROM interactions i JOIN accounts a ON a.id = i.account_id
     WHERE i.id = ?1";

const NEW_OUTGOING: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, to_addrs, subject, text_body, message_id_header, delivery, created_at)
     VALUES (?1, ?2, 'out', 'mail', ?3, ?4, ?5, ?6, ?7, 'queued', ?8)
     RETURNING id";

const LAST_OUTGOING: &str = "UPDATE interactions SET updated_at = ?2,
         last_message_direction = 'out', last_message_at = ?2, last_message_preview = ?3
     WHERE id = ?1";

fn message_row(row: &Row<'_>) -> StoreResult<StoredMessage> {
    let from_addr: Option<String> = row.get("from_addr")?;
    let from_name: Option<String> = row.get("from_name")?;
    Ok(StoredMessage {
        id: MessageId(row.get("id")?),
        interaction: InteractionId(row.get("interaction_id")?),
        direction: row.get::<_, Name<Direction>>("direction")?.0,
        kind: row.get::<_, Name<MessageKind>>("kind")?.0,
        from: from_addr.map(|address| Mailbox {
            name: from_name,
            address,
        }),
        to: mailboxes_from_json(&row.get::<_, String>("to_addrs")?, "to_addrs")?,
        cc: mailboxes_from_json(&row.get::<_, String>("cc_addrs")?, "cc_addrs")?,
        bcc: mailboxes_from_json(&row.get::<_, String>("bcc_addrs")?, "bcc_addrs")?,
        reply_to: reply_to_from_column(row.get("reply_to")?),
        subject: row.get("subject")?,
        text: row.get("text_body")?,
        html: row.get("html_body")?,
        message_id: row.get("message_id_header")?,
        in_reply_to: row.get("in_reply_to")?,
        references: reference_list(row.get("references_header")?),
        delivery: row
            .get::<_, Option<Name<Delivery>>>("delivery")?
            .map(|d| d.0),
        delivery_error: row.get("delivery_error")?,
        author: row
            .get::<_, Option<i64>>("author_agent_id")?
            .map(crate::domain::AgentId),
        attachments: Vec::new(),
        created_at: row.get::<_, Millis>("created_at")?.0,
    })
}

/// `(message row, metadata)` of an attachment row.
fn attachment_row(row: &Row<'_>) -> StoreResult<(Option<i64>, AttachmentMeta)> {
    Ok((
        row.get("message_row_id")?,
        AttachmentMeta {
            id: AttachmentId(row.get("id")?),
            filename: row.get("filename")?,
            content_type: row.get("content_type")?,
            size: stored(row.get("size")?, "size")?,
            content_id: row.get("content_id")?,
            inline: row.get("is_inline")?,
        },
    ))
}

fn messages_of(conn: &Connection, interaction: InteractionId) -> StoreResult<Vec<StoredMessage>> {
    load(conn, interaction.0)?;
    let mut messages = Vec::new();
    let mut stmt = conn.prepare_cached(MESSAGES)?;
    let mut rows = stmt.query([interaction.0])?;
    while let Some(row) = rows.next()? {
        messages.push(message_row(row)?);
    }
    let index: HashMap<i64, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.0, i))
        .collect();
    let mut stmt = conn.prepare_cached(ATTACHMENTS)?;
    let mut rows = stmt.query([interaction.0])?;
    while let Some(row) = rows.next()? {
        let (message, meta) = attachment_row(row)?;
        if let Some(&i) = message.and_then(|m| index.get(&m)) {
            messages[i].attachments.push(meta);
        }
    }
    Ok(messages)
}

impl SqliteStore {
    pub async fn messages(&self, interaction: InteractionId) -> StoreResult<Vec<StoredMessage>> {
        self.read(move |conn| messages_of(conn, interaction)).await
    }

    pub async fn interactions_of_account(
        &self,
        account: AccountId,
    ) -> StoreResult<Vec<Interaction>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(OF_ACCOUNT)?;
            let rows = stmt.query_map([account.0], interaction_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn contact(&self, id: ContactId) -> StoreResult<Contact> {
        self.read(move |conn| {
            let (id, first_name, last_name) = conn
                .prepare_cached(CONTACT)?
                .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
                .ok_or(StoreError::NotFound("contact"))?;
            let emails = conn
                .prepare_cached(CONTACT_EMAILS)?
                .query_map([id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(Contact {
                id: ContactId(id),
                first_name,
                last_name,
                emails,
            })
        })
        .await
    }

    pub async fn attachment(&self, id: AttachmentId) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(ATTACHMENT)?;
            let mut rows = stmt.query([id.0])?;
            let row = rows.next()?.ok_or(StoreError::NotFound("attachment"))?;
            let (_, meta) = attachment_row(row)?;
            Ok((meta, row.get("data")?))
        })
        .await
    }

    pub async fn close_interaction(
        &self,
        id: InteractionId,
        status: InteractionStatus,
        disposition: Option<Vec<String>>,
    ) -> StoreResult<Interaction> {
        let disposition = disposition
            .map(|path| serde_json::to_string(&path))
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("disposition: {e}")))?;
        self.write(move |tx| {
            let closed = tx
                .prepare_cached(CLOSE)?
                .query_row(
                    params![id.0, status.as_str(), ms(common::now()), disposition],
                    interaction_row,
                )
                .optional()?;
            let Some(closed) = closed else {
                load(tx, id.0)?;
                return Err(already_closed());
            };
            tx.prepare_cached(DELETE_DRAFT)?.execute([id.0])?;
            // A closed interaction is offered to nobody.
            super::routing::rescind_live(tx, id, crate::domain::RescindReason::Cancelled)?;
            Ok(closed)
        })
        .await
    }

    pub async fn insert_outgoing_message(
        &self,
        interaction: InteractionId,
        mail: NewOutgoing,
    ) -> StoreResult<MessageId> {
        self.write(move |tx| {
            let (account, address): (i64, String) = tx
                .prepare_cached(ACCOUNT_OF)?
                .query_row([interaction.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or(StoreError::NotFound("interaction"))?;
            let now = ms(common::now());
            let to: Vec<Mailbox> = mail
                .to
                .iter()
                .map(|m| Mailbox {
                    name: m.name.as_deref().map(clean),
                    address: clean(&m.address),
                })
                .collect();
            let text = clean(&mail.text);
            let id: i64 = tx.prepare_cached(NEW_OUTGOING)?.query_row(
                params![
                    interaction.0,
                    account,
                    address,
                    mailbox_json(&to),
                    clean(&mail.subject),
                    text,
                    clean(&mail.message_id_header),
                    now,
                ],
                |r| r.get(0),
            )?;
            tx.prepare_cached(LAST_OUTGOING)?.execute(params![
                interaction.0,
                now,
                preview(&text)
            ])?;
            Ok(MessageId(id))
        })
        .await
    }
}
