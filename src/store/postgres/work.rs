//! Working an interaction: see `store/work.rs` (the rules live there).
//!
//! Lock order: every write that reads before it writes locks the
//! interaction row first (`LOCK_INTERACTION`, `FOR UPDATE`) and nothing
//! else before it, as routing does, so these transactions cannot deadlock
//! with a claim, a transfer or a close. Holding that lock serialises, per
//! interaction, two draft saves (the second sees the first's row and its
//! owner), two tag sets (no union of both, no duplicate-key error), and a
//! save or a sub-status racing a close (the close's `UPDATE` waits for the
//! lock, or the save sees `closed`).

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::PgStore;
use super::interactions::{interaction_cols, interaction_row, load};
use crate::domain::{
    AgentId, AttachmentId, Direction, InteractionId, InteractionStatus, MessageId, MessageKind,
};
use crate::mail::Mailbox;
use crate::store::common::{self, stored};
use crate::store::work::{
    DraftDecision, PENDING, decide_draft, display_name, interaction_closed, not_a_mail_here,
    not_an_upload, not_attachable, unknown_names,
};
use crate::store::{
    AttachmentMeta, Draft, DraftContent, DraftListing, DraftMode, DraftOutcome, DraftSave,
    Interaction, NewNote, StoreError, StoreResult, StoredMessage, Substatus, Tag,
};

const MARK_READ: &str = concat!(
    "UPDATE interactions SET unread = false, unread_count = 0 WHERE id = $1 RETURNING ",
    interaction_cols!()
);

const MARK_UNREAD: &str = concat!(
    "UPDATE interactions SET unread = true WHERE id = $1 RETURNING ",
    interaction_cols!()
);

const LOCK_INTERACTION: &str = "SELECT status FROM interactions WHERE id = $1 FOR UPDATE";

// ---- drafts ----------------------------------------------------------------------

/// The columns [`draft_row`] reads.
macro_rules! draft_cols {
    () => {
        "d.interaction_id, d.agent_id, d.mode, d.message_row_id, d.to_addrs, d.cc_addrs,
         d.bcc_addrs, d.subject, d.text_body, d.html_body, d.attachments, d.created_at,
         d.updated_at"
    };
}

const DRAFT: &str = concat!(
    "SELECT ",
    draft_cols!(),
    " FROM drafts d WHERE d.interaction_id = $1"
);

const UPSERT_DRAFT: &str = "INSERT INTO drafts (interaction_id, agent_id, mode, to_addrs,
         cc_addrs, bcc_addrs, subject, text_body, html_body, attachments, created_at, updated_at,
         message_row_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (interaction_id) DO UPDATE SET
         agent_id = excluded.agent_id, mode = excluded.mode, to_addrs = excluded.to_addrs,
         cc_addrs = excluded.cc_addrs, bcc_addrs = excluded.bcc_addrs,
         subject = excluded.subject, text_body = excluded.text_body,
         html_body = excluded.html_body, attachments = excluded.attachments,
         created_at = excluded.created_at, updated_at = excluded.updated_at,
         message_row_id = excluded.message_row_id";

const DELETE_OWN_DRAFT: &str = "DELETE FROM drafts WHERE interaction_id = $1 AND agent_id = $2";

const DRAFTS_OF: &str = concat!(
    "SELECT ",
    draft_cols!(),
    ", a.key AS account_key
     FROM drafts d
     JOIN interactions i ON i.id = d.interaction_id
     JOIN accounts a ON a.id = i.account_id
     WHERE d.agent_id = $1
     ORDER BY d.updated_at DESC, d.interaction_id DESC"
);

// An attachment a draft may name: the author's upload not yet used in a
// message, or a file of this interaction's messages (forwarding carries them).
const ATTACHABLE: &str = "SELECT 1 FROM attachments a
     LEFT JOIN messages m ON m.id = a.message_row_id
     WHERE a.id = $1
       AND ((a.message_row_id IS NULL AND a.uploaded_by = $2) OR m.interaction_id = $3)";

// A reply or forward answers a mail of its own interaction.
const MAIL_HERE: &str =
    "SELECT 1 FROM messages WHERE id = $1 AND interaction_id = $2 AND kind = 'mail'";

// ---- notes -----------------------------------------------------------------------

const NEW_NOTE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         subject, text_body, author_agent_id, for_agent_id, created_at)
     VALUES ($1, $2, 'out', $3, '', $4, $5, $6, $7)
     RETURNING id";

// Only an upload of the author that no message uses yet: the condition is
// the check (re-evaluated on the locked row when two notes race for one
// upload), so a file cannot end up on two messages.
const LINK_UPLOAD: &str = "UPDATE attachments SET message_row_id = $1
     WHERE id = $2 AND message_row_id IS NULL AND uploaded_by = $3
     RETURNING id, filename, content_type, size, content_id, is_inline";

// ---- tags and sub-statuses ---------------------------------------------------------

const TAGS: &str = "SELECT name, created_at FROM tags ORDER BY name";
const NEW_TAG: &str =
    "INSERT INTO tags (name, created_at) VALUES ($1, $2) RETURNING name, created_at";
const DELETE_TAG: &str = "DELETE FROM tags WHERE name = $1";
const TAGS_OF: &str = "SELECT tag FROM interaction_tags WHERE interaction_id = $1 ORDER BY tag";
const TAGS_OF_MANY: &str = "SELECT interaction_id, tag FROM interaction_tags
     WHERE interaction_id = ANY($1::bigint[])
     ORDER BY interaction_id, tag";
const CLEAR_TAGS: &str = "DELETE FROM interaction_tags WHERE interaction_id = $1";
const ADD_TAGS: &str = "INSERT INTO interaction_tags (interaction_id, tag)
     SELECT $1, tag FROM unnest($2::text[]) AS wanted (tag)";

const SUBSTATUSES: &str = "SELECT name, created_at FROM substatuses ORDER BY name";
const NEW_SUBSTATUS: &str =
    "INSERT INTO substatuses (name, created_at) VALUES ($1, $2) RETURNING name, created_at";
const DELETE_SUBSTATUS: &str = "DELETE FROM substatuses WHERE name = $1";

const SET_SUBSTATUS: &str = concat!(
    "UPDATE interactions SET substatus = $2 WHERE id = $1 RETURNING ",
    interaction_cols!()
);

// ---- rows ------------------------------------------------------------------------

fn draft_row(row: &Row) -> StoreResult<Draft> {
    Ok(Draft {
        interaction: InteractionId(row.try_get("interaction_id")?),
        agent: AgentId(row.try_get("agent_id")?),
        content: DraftContent {
            mode: DraftMode::parse(row.try_get("mode")?)?,
            message: row
                .try_get::<_, Option<i64>>("message_row_id")?
                .map(MessageId),
            to: row.try_get::<_, Json<Vec<Mailbox>>>("to_addrs")?.0,
            cc: row.try_get::<_, Json<Vec<Mailbox>>>("cc_addrs")?.0,
            bcc: row.try_get::<_, Json<Vec<Mailbox>>>("bcc_addrs")?.0,
            subject: row.try_get("subject")?,
            text: row.try_get("text_body")?,
            html: row.try_get("html_body")?,
            attachments: row.try_get::<_, Json<Vec<AttachmentId>>>("attachments")?.0,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn draft_of<C: GenericClient>(
    client: &C,
    interaction: InteractionId,
) -> StoreResult<Option<Draft>> {
    let stmt = client.prepare_cached(DRAFT).await?;
    client
        .query_opt(&stmt, &[&interaction.0])
        .await?
        .as_ref()
        .map(draft_row)
        .transpose()
}

async fn names<C: GenericClient>(
    client: &C,
    sql: &str,
    param: Option<i64>,
) -> StoreResult<Vec<String>> {
    let stmt = client.prepare_cached(sql).await?;
    let rows = match &param {
        Some(p) => client.query(&stmt, &[p]).await?,
        None => client.query(&stmt, &[]).await?,
    };
    rows.iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect::<StoreResult<Vec<String>>>()
}

fn tag(row: &Row) -> StoreResult<Tag> {
    Ok(Tag {
        name: row.try_get(0)?,
        created_at: row.try_get(1)?,
    })
}

fn substatus(row: &Row) -> StoreResult<Substatus> {
    let name: String = row.try_get(0)?;
    Ok(Substatus {
        built_in: name == PENDING,
        name,
        created_at: row.try_get(1)?,
    })
}

/// Lock the interaction row (see the module docs); `NotFound` if there is
/// none, and with `open`, `Conflict` if it is closed.
async fn lock_interaction(tx: &Transaction<'_>, id: InteractionId, open: bool) -> StoreResult<()> {
    let stmt = tx.prepare_cached(LOCK_INTERACTION).await?;
    let row = tx
        .query_opt(&stmt, &[&id.0])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    let status: &str = row.try_get(0)?;
    if open && status != InteractionStatus::Open.as_str() {
        return Err(interaction_closed());
    }
    Ok(())
}

async fn save_draft_in(
    tx: &Transaction<'_>,
    interaction: InteractionId,
    agent: AgentId,
    content: DraftContent,
    save: DraftSave,
) -> StoreResult<DraftOutcome> {
    lock_interaction(tx, interaction, true).await?;
    let existing = draft_of(tx, interaction).await?;
    let (created_at, updated_at) =
        match decide_draft(existing.as_ref(), agent, &content, save, common::now()) {
            DraftDecision::Refuse(outcome) => return Ok(*outcome),
            DraftDecision::Write {
                created_at,
                updated_at,
            } => (created_at, updated_at),
        };
    if let Some(m) = content.message {
        let stmt = tx.prepare_cached(MAIL_HERE).await?;
        if tx
            .query_opt(&stmt, &[&m.0, &interaction.0])
            .await?
            .is_none()
        {
            return Err(not_a_mail_here(m));
        }
    }
    let stmt = tx.prepare_cached(ATTACHABLE).await?;
    for a in &content.attachments {
        if tx
            .query_opt(&stmt, &[&a.0, &agent.0, &interaction.0])
            .await?
            .is_none()
        {
            return Err(not_attachable(*a));
        }
    }
    let stmt = tx.prepare_cached(UPSERT_DRAFT).await?;
    tx.execute(
        &stmt,
        &[
            &interaction.0,
            &agent.0,
            &content.mode.as_str(),
            &Json(&content.to),
            &Json(&content.cc),
            &Json(&content.bcc),
            &content.subject,
            &content.text,
            &content.html,
            &Json(&content.attachments),
            &created_at,
            &updated_at,
            &content.message.map(|m| m.0),
        ],
    )
    .await?;
    Ok(DraftOutcome::Saved(Draft {
        interaction,
        agent,
        content,
        created_at,
        updated_at,
    }))
}

async fn add_note_in(tx: &Transaction<'_>, note: NewNote) -> StoreResult<StoredMessage> {
    let interaction = load(tx, note.interaction.0).await?;
    let kind = match note.for_agent {
        Some(_) => MessageKind::SupervisorNote,
        None => MessageKind::Note,
    };
    let now = common::now();
    let stmt = tx.prepare_cached(NEW_NOTE).await?;
    let id: i64 = tx
        .query_one(
            &stmt,
            &[
                &interaction.id.0,
                &interaction.account.0,
                &kind.as_str(),
                &note.text,
                &note.author.0,
                &note.for_agent.map(|a| a.0),
                &now,
            ],
        )
        .await?
        .try_get(0)?;
    let stmt = tx.prepare_cached(LINK_UPLOAD).await?;
    let mut attachments = Vec::with_capacity(note.attachments.len());
    for a in &note.attachments {
        let row = tx
            .query_opt(&stmt, &[&id, &a.0, &note.author.0])
            .await?
            .ok_or_else(|| not_an_upload(*a))?;
        attachments.push(AttachmentMeta {
            id: AttachmentId(row.try_get(0)?),
            filename: row.try_get(1)?,
            content_type: row.try_get(2)?,
            size: stored(row.try_get(3)?, "size")?,
            content_id: row.try_get(4)?,
            inline: row.try_get(5)?,
        });
    }
    Ok(StoredMessage {
        id: MessageId(id),
        interaction: interaction.id,
        direction: Direction::Out,
        kind,
        from: None,
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject: String::new(),
        text: Some(note.text),
        html: None,
        message_id: None,
        in_reply_to: None,
        references: Vec::new(),
        delivery: None,
        delivery_error: None,
        author: Some(note.author),
        attachments,
        created_at: now,
    })
}

async fn set_tags_in(
    tx: &Transaction<'_>,
    id: InteractionId,
    tags: Vec<String>,
) -> StoreResult<Vec<String>> {
    lock_interaction(tx, id, false).await?;
    let valid = names(tx, TAGS, None).await?;
    let unknown: Vec<String> = tags
        .iter()
        .filter(|t| !valid.contains(t))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown_names("tag(s)", &unknown, &valid));
    }
    let stmt = tx.prepare_cached(CLEAR_TAGS).await?;
    tx.execute(&stmt, &[&id.0]).await?;
    let stmt = tx.prepare_cached(ADD_TAGS).await?;
    tx.execute(&stmt, &[&id.0, &tags]).await?;
    Ok(tags)
}

async fn set_substatus_in(
    tx: &Transaction<'_>,
    id: InteractionId,
    substatus: Option<String>,
) -> StoreResult<Interaction> {
    lock_interaction(tx, id, true).await?;
    if let Some(name) = &substatus {
        let valid = names(tx, SUBSTATUSES, None).await?;
        if !valid.contains(name) {
            return Err(unknown_names(
                "sub-status",
                std::slice::from_ref(name),
                &valid,
            ));
        }
    }
    let stmt = tx.prepare_cached(SET_SUBSTATUS).await?;
    interaction_row(&tx.query_one(&stmt, &[&id.0, &substatus]).await?)
}

impl PgStore {
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.update_interaction(MARK_READ, id).await
    }

    pub async fn mark_unread(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.update_interaction(MARK_UNREAD, id).await
    }

    /// One `UPDATE … WHERE id = $1 RETURNING` of an interaction.
    async fn update_interaction(&self, sql: &str, id: InteractionId) -> StoreResult<Interaction> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("interaction"))?;
        interaction_row(&row)
    }

    // ---- drafts ---------------------------------------------------------

    pub async fn draft(&self, interaction: InteractionId) -> StoreResult<Draft> {
        let client = self.client().await?;
        draft_of(&client, interaction)
            .await?
            .ok_or(StoreError::NotFound("draft"))
    }

    pub async fn save_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
        content: DraftContent,
        save: DraftSave,
    ) -> StoreResult<DraftOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = save_draft_in(&tx, interaction, agent, content, save).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn delete_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DELETE_OWN_DRAFT).await?;
        match client.execute(&stmt, &[&interaction.0, &agent.0]).await? {
            0 => Err(StoreError::NotFound("draft")),
            _ => Ok(()),
        }
    }

    pub async fn drafts_of(&self, agent: AgentId) -> StoreResult<Vec<DraftListing>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DRAFTS_OF).await?;
        client
            .query(&stmt, &[&agent.0])
            .await?
            .iter()
            .map(|row| {
                let draft = draft_row(row)?;
                let account: String = row.try_get("account_key")?;
                Ok(DraftListing {
                    display_name: display_name(&account, &draft.content),
                    draft,
                    account,
                })
            })
            .collect()
    }

    // ---- notes ------------------------------------------------------------

    pub async fn add_note(&self, note: NewNote) -> StoreResult<StoredMessage> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let message = add_note_in(&tx, note).await?;
        tx.commit().await?;
        Ok(message)
    }

    // ---- tags ---------------------------------------------------------------

    pub async fn tags(&self) -> StoreResult<Vec<Tag>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(TAGS).await?;
        client.query(&stmt, &[]).await?.iter().map(tag).collect()
    }

    pub async fn create_tag(&self, name: String) -> StoreResult<Tag> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(NEW_TAG).await?;
        let row = client
            .query_one(&stmt, &[&name, &common::now()])
            .await
            .map_err(|e| {
                common::taken(|| format!("a tag named `{name}` already exists"))(e.into())
            })?;
        tag(&row)
    }

    pub async fn delete_tag(&self, name: String) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DELETE_TAG).await?;
        match client.execute(&stmt, &[&name]).await? {
            0 => Err(StoreError::NotFound("tag")),
            _ => Ok(()),
        }
    }

    pub async fn interaction_tags(&self, id: InteractionId) -> StoreResult<Vec<String>> {
        let mut client = self.client().await?;
        // One snapshot for both reads (REPEATABLE READ): the tags of the
        // interaction that was found.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        load(&tx, id.0).await?;
        let tags = names(&tx, TAGS_OF, Some(id.0)).await?;
        tx.commit().await?;
        Ok(tags)
    }

    pub async fn tags_of(&self, ids: Vec<i64>) -> StoreResult<HashMap<InteractionId, Vec<String>>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(TAGS_OF_MANY).await?;
        let mut out: HashMap<InteractionId, Vec<String>> = HashMap::new();
        for row in client.query(&stmt, &[&ids]).await? {
            out.entry(InteractionId(row.try_get(0)?))
                .or_default()
                .push(row.try_get(1)?);
        }
        Ok(out)
    }

    pub async fn set_interaction_tags(
        &self,
        id: InteractionId,
        tags: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let tags = set_tags_in(&tx, id, tags).await?;
        tx.commit().await?;
        Ok(tags)
    }

    // ---- sub-statuses ---------------------------------------------------------

    pub async fn substatuses(&self) -> StoreResult<Vec<Substatus>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SUBSTATUSES).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(substatus)
            .collect()
    }

    pub async fn create_substatus(&self, name: String) -> StoreResult<Substatus> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(NEW_SUBSTATUS).await?;
        let row = client
            .query_one(&stmt, &[&name, &common::now()])
            .await
            .map_err(|e| {
                common::taken(|| format!("a sub-status named `{name}` already exists"))(e.into())
            })?;
        substatus(&row)
    }

    pub async fn delete_substatus(&self, name: String) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DELETE_SUBSTATUS).await?;
        match client.execute(&stmt, &[&name]).await? {
            0 => Err(StoreError::NotFound("sub-status")),
            _ => Ok(()),
        }
    }

    pub async fn set_substatus(
        &self,
        id: InteractionId,
        substatus: Option<String>,
    ) -> StoreResult<Interaction> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let interaction = set_substatus_in(&tx, id, substatus).await?;
        tx.commit().await?;
        Ok(interaction)
    }
}
