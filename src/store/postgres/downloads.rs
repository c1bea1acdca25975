//! Downloads and canned answers: see `store/downloads.rs`.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use super::interactions::load;
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
     WHERE a.id = $1";

const SOURCE: &str = "SELECT m.interaction_id, b.data
     FROM messages m LEFT JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.id = $1";

const MESSAGE_INTERACTION: &str = "SELECT interaction_id FROM messages WHERE id = $1";

// The order of `messages` in postgres/messages.rs.
const AGENTS: &str = "SELECT id, author_agent_id, for_agent_id FROM messages
     WHERE interaction_id = $1 ORDER BY created_at, id";

const LIST_CANNED: &str = "SELECT id, title, body_text, body_html, created_at, updated_at
     FROM canned_answers ORDER BY title COLLATE \"C\", id";

const CANNED: &str = "SELECT id, title, body_text, body_html, created_at, updated_at
     FROM canned_answers WHERE id = $1";

const CREATE_CANNED: &str =
    "INSERT INTO canned_answers (title, body_text, body_html, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $4)
     RETURNING id, title, body_text, body_html, created_at, updated_at";

const UPDATE_CANNED: &str = "UPDATE canned_answers SET title = $2, body_text = $3, body_html = $4,
         updated_at = $5
     WHERE id = $1
     RETURNING id, title, body_text, body_html, created_at, updated_at";

const DELETE_CANNED: &str = "DELETE FROM canned_answers WHERE id = $1";

fn canned_row(row: &Row) -> StoreResult<CannedAnswer> {
    Ok(CannedAnswer {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        text: row.try_get("body_text")?,
        html: row.try_get("body_html")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PgStore {
    pub async fn attachment_place(&self, id: AttachmentId) -> StoreResult<AttachmentPlace> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(PLACE).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("attachment"))?;
        Ok(AttachmentPlace {
            meta: AttachmentMeta {
                id: AttachmentId(row.try_get("id")?),
                filename: row.try_get("filename")?,
                content_type: row.try_get("content_type")?,
                size: stored(row.try_get("size")?, "size")?,
                content_id: row.try_get("content_id")?,
                inline: row.try_get("is_inline")?,
            },
            message: row
                .try_get::<_, Option<i64>>("message_row_id")?
                .map(MessageId),
            interaction: row
                .try_get::<_, Option<i64>>("interaction_id")?
                .map(InteractionId),
            uploaded_by: row.try_get::<_, Option<i64>>("uploaded_by")?.map(AgentId),
        })
    }

    pub async fn message_interaction(&self, id: MessageId) -> StoreResult<InteractionId> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(MESSAGE_INTERACTION).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        Ok(InteractionId(row.try_get(0)?))
    }

    pub async fn message_source(&self, id: MessageId) -> StoreResult<MessageSource> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SOURCE).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("message"))?;
        Ok(MessageSource {
            interaction: InteractionId(row.try_get(0)?),
            raw: row.try_get(1)?,
        })
    }

    pub async fn message_agents(
        &self,
        interaction: InteractionId,
    ) -> StoreResult<Vec<MessageAgents>> {
        let client = self.client().await?;
        load(&client, interaction.0).await?;
        let stmt = client.prepare_cached(AGENTS).await?;
        client
            .query(&stmt, &[&interaction.0])
            .await?
            .iter()
            .map(|r| {
                Ok(MessageAgents {
                    message: MessageId(r.try_get(0)?),
                    author: r.try_get::<_, Option<i64>>(1)?.map(AgentId),
                    for_agent: r.try_get::<_, Option<i64>>(2)?.map(AgentId),
                })
            })
            .collect()
    }

    pub async fn list_canned_answers(&self) -> StoreResult<Vec<CannedAnswer>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIST_CANNED).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(canned_row)
            .collect()
    }

    pub async fn canned_answer(&self, id: i64) -> StoreResult<CannedAnswer> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CANNED).await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or(StoreError::NotFound("canned answer"))?;
        canned_row(&row)
    }

    pub async fn create_canned_answer(&self, spec: CannedAnswerSpec) -> StoreResult<CannedAnswer> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CREATE_CANNED).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &clean(spec.title.trim()),
                    &clean(&spec.text),
                    &spec.html.as_deref().map(clean),
                    &common::now(),
                ],
            )
            .await?;
        canned_row(&row)
    }

    pub async fn update_canned_answer(
        &self,
        id: i64,
        spec: CannedAnswerSpec,
    ) -> StoreResult<CannedAnswer> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(UPDATE_CANNED).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &id,
                    &clean(spec.title.trim()),
                    &clean(&spec.text),
                    &spec.html.as_deref().map(clean),
                    &common::now(),
                ],
            )
            .await?
            .ok_or(StoreError::NotFound("canned answer"))?;
        canned_row(&row)
    }

    pub async fn delete_canned_answer(&self, id: i64) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DELETE_CANNED).await?;
        if client.execute(&stmt, &[&id]).await? == 0 {
            return Err(StoreError::NotFound("canned answer"));
        }
        Ok(())
    }
}
