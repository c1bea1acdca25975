//! Downloads and canned answers: see `store/downloads.rs`.

use rusqlite::{OptionalExtension, Row, params};

use super::interactions::load;
use super::{Millis, SqliteStore, ms};
use crate::domain::{AgentId, AttachmentId, InteractionId, MessageId};
use crate::store::common::{self, stored};
use crate::store::ingest::clean;
use crate::store::{
    AttachmentMeta, AttachmentPlace, CannedAnswer, CannedAnswerSpec, MessageAgents, MessageSource,
    StoreError, StoreResult,
};

const PLACE: &str = "SELECT a.id, a.message_row_id, m.interaction_id, a.uploaded_by, a.filename,
         a.content_type, a.size, a.content_id, a.is_inline
     FROM attachments a LEFT JOIN messages m ON m.id = a.message_row_id
     WHERE a.id = ?1";

const SOURCE: &str = "SELECT m.interaction_id, b.data
     FROM messages m LEFT JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.id = ?1";

const MESSAGE_INTERACTION: &str = "SELECT interaction_id FROM messages WHERE id = ?1";

// The order of `messages` in sqlite/messages.rs.
const AGENTS: &str = "SELECT id, author_agent_id, for_agent_id FROM messages
     WHERE interaction_id = ?1 ORDER BY created_at, id";

const CANNED_COLS: &str = "id, title, body_text, body_html, created_at, updated_at";

fn canned_row(row: &Row<'_>) -> rusqlite::Result<CannedAnswer> {
    Ok(CannedAnswer {
        id: row.get(0)?,
        title: row.get(1)?,
        text: row.get(2)?,
        html: row.get(3)?,
        created_at: row.get::<_, Millis>(4)?.0,
        updated_at: row.get::<_, Millis>(5)?.0,
    })
}

impl SqliteStore {
    pub async fn attachment_place(&self, id: AttachmentId) -> StoreResult<AttachmentPlace> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(PLACE)?;
            let mut rows = stmt.query([id.0])?;
            let row = rows.next()?.ok_or(StoreError::NotFound("attachment"))?;
            Ok(AttachmentPlace {
                meta: AttachmentMeta {
                    id: AttachmentId(row.get("id")?),
                    filename: row.get("filename")?,
                    content_type: row.get("content_type")?,
                    size: stored(row.get("size")?, "size")?,
                    content_id: row.get("content_id")?,
                    inline: row.get("is_inline")?,
                },
                message: row.get::<_, Option<i64>>("message_row_id")?.map(MessageId),
                interaction: row
                    .get::<_, Option<i64>>("interaction_id")?
                    .map(InteractionId),
                uploaded_by: row.get::<_, Option<i64>>("uploaded_by")?.map(AgentId),
            })
        })
        .await
    }

    pub async fn message_interaction(&self, id: MessageId) -> StoreResult<InteractionId> {
        self.read(move |conn| {
            conn.prepare_cached(MESSAGE_INTERACTION)?
                .query_row([id.0], |r| r.get(0))
                .optional()?
                .map(InteractionId)
                .ok_or(StoreError::NotFound("message"))
        })
        .await
    }

    pub async fn message_source(&self, id: MessageId) -> StoreResult<MessageSource> {
        self.read(move |conn| {
            let (interaction, raw) = conn
                .prepare_cached(SOURCE)?
                .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or(StoreError::NotFound("message"))?;
            Ok(MessageSource {
                interaction: InteractionId(interaction),
                raw,
            })
        })
        .await
    }

    pub async fn message_agents(
        &self,
        interaction: InteractionId,
    ) -> StoreResult<Vec<MessageAgents>> {
        self.read(move |conn| {
            load(conn, interaction.0)?;
            let mut stmt = conn.prepare_cached(AGENTS)?;
            let rows = stmt.query_map([interaction.0], |r| {
                Ok(MessageAgents {
                    message: MessageId(r.get(0)?),
                    author: r.get::<_, Option<i64>>(1)?.map(AgentId),
                    for_agent: r.get::<_, Option<i64>>(2)?.map(AgentId),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn list_canned_answers(&self) -> StoreResult<Vec<CannedAnswer>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CANNED_COLS} FROM canned_answers ORDER BY title, id");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([], canned_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn canned_answer(&self, id: i64) -> StoreResult<CannedAnswer> {
        self.read(move |conn| {
            let sql = format!("SELECT {CANNED_COLS} FROM canned_answers WHERE id = ?1");
            conn.prepare_cached(&sql)?
                .query_row([id], canned_row)
                .optional()?
                .ok_or(StoreError::NotFound("canned answer"))
        })
        .await
    }

    pub async fn create_canned_answer(&self, spec: CannedAnswerSpec) -> StoreResult<CannedAnswer> {
        self.write(move |tx| {
            let now = ms(common::now());
            let sql = format!(
                "INSERT INTO canned_answers (title, body_text, body_html, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4) RETURNING {CANNED_COLS}"
            );
            Ok(tx.prepare_cached(&sql)?.query_row(
                params![
                    clean(spec.title.trim()),
                    clean(&spec.text),
                    spec.html.as_deref().map(clean),
                    now
                ],
                canned_row,
            )?)
        })
        .await
    }

    pub async fn update_canned_answer(
        &self,
        id: i64,
        spec: CannedAnswerSpec,
    ) -> StoreResult<CannedAnswer> {
        self.write(move |tx| {
            let sql = format!(
                "UPDATE canned_answers SET title = ?2, body_text = ?3, body_html = ?4,
                     updated_at = ?5
                 WHERE id = ?1 RETURNING {CANNED_COLS}"
            );
            tx.prepare_cached(&sql)?
                .query_row(
                    params![
                        id,
                        clean(spec.title.trim()),
                        clean(&spec.text),
                        spec.html.as_deref().map(clean),
                        ms(common::now())
                    ],
                    canned_row,
                )
                .optional()?
                .ok_or(StoreError::NotFound("canned answer"))
        })
        .await
    }

    pub async fn delete_canned_answer(&self, id: i64) -> StoreResult<()> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM canned_answers WHERE id = ?1")?
                .execute([id])?;
            if n == 0 {
                return Err(StoreError::NotFound("canned answer"));
            }
            Ok(())
        })
        .await
    }
}
