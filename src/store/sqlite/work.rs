//! Working an interaction: see `store/work.rs` (the rules live there).
//!
//! Every write here is one `BEGIN IMMEDIATE` transaction on the single
//! writer, so a read and the write that depends on it (the stored draft and
//! its replacement, the tag list and the new set) cannot interleave with
//! another write.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::interactions::{interaction_cols, interaction_row, load};
use super::{Millis, SqliteStore, ms};
use crate::domain::{
    AgentId, AttachmentId, Direction, InteractionId, InteractionStatus, MessageId, MessageKind,
};
use crate::store::common::{self, stored};
use crate::store::ingest::{mailbox_json, mailboxes_from_json};
use crate::store::work::{
    DraftDecision, PENDING, attachment_json, decide_draft, display_name, interaction_closed,
    not_a_mail_here, not_an_upload, not_attachable, unknown_names,
};
use crate::store::{
    AttachmentMeta, Draft, DraftContent, DraftListing, DraftMode, DraftOutcome, DraftSave,
    Interaction, NewNote, StoreError, StoreResult, StoredMessage, Substatus, Tag,
};

const MARK_READ: &str = concat!(
    "UPDATE interactions SET unread = 0, unread_count = 0 WHERE id = ?1 RETURNING ",
    interaction_cols!()
);

const MARK_UNREAD: &str = concat!(
    "UPDATE interactions SET unread = 1 WHERE id = ?1 RETURNING ",
    interaction_cols!()
);

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
    " FROM drafts d WHERE d.interaction_id = ?1"
);

const UPSERT_DRAFT: &str = "INSERT INTO drafts (interaction_id, agent_id, mode, to_addrs,
         cc_addrs, bcc_addrs, subject, text_body, html_body, attachments, created_at, updated_at,
         message_row_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
     ON CONFLICT (interaction_id) DO UPDATE SET
         agent_id = excluded.agent_id, mode = excluded.mode, to_addrs = excluded.to_addrs,
         cc_addrs = excluded.cc_addrs, bcc_addrs = excluded.bcc_addrs,
         subject = excluded.subject, text_body = excluded.text_body,
         html_body = excluded.html_body, attachments = excluded.attachments,
         created_at = excluded.created_at, updated_at = excluded.updated_at,
         message_row_id = excluded.message_row_id";

const DELETE_OWN_DRAFT: &str = "DELETE FROM drafts WHERE interaction_id = ?1 AND agent_id = ?2";

const DRAFTS_OF: &str = concat!(
    "SELECT ",
    draft_cols!(),
    ", a.key AS account_key
     FROM drafts d
     JOIN interactions i ON i.id = d.interaction_id
     JOIN accounts a ON a.id = i.account_id
     WHERE d.agent_id = ?1
     ORDER BY d.updated_at DESC, d.interaction_id DESC"
);

// An attachment a draft may name: the author's upload not yet used in a
// message, or a file of this interaction's messages (forwarding carries them).
const ATTACHABLE: &str = "SELECT 1 FROM attachments a
     LEFT JOIN messages m ON m.id = a.message_row_id
     WHERE a.id = ?1
       AND ((a.message_row_id IS NULL AND a.uploaded_by = ?2) OR m.interaction_id = ?3)";

// A reply or forward answers a mail of its own interaction.
const MAIL_HERE: &str =
    "SELECT 1 FROM messages WHERE id = ?1 AND interaction_id = ?2 AND kind = 'mail'";

// ---- notes -----------------------------------------------------------------------

const NEW_NOTE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         subject, text_body, author_agent_id, for_agent_id, created_at)
     VALUES (?1, ?2, 'out', ?3, '', ?4, ?5, ?6, ?7)
     RETURNING id";

// Only an upload of the author that no message uses yet: the condition is
// the check, so a file cannot end up on two messages.
const LINK_UPLOAD: &str = "UPDATE attachments SET message_row_id = ?1
     WHERE id = ?2 AND message_row_id IS NULL AND uploaded_by = ?3
     RETURNING id, filename, content_type, size, content_id, is_inline";

// ---- tags and sub-statuses ---------------------------------------------------------

const TAGS: &str = "SELECT name, created_at FROM tags ORDER BY name";
const NEW_TAG: &str =
    "INSERT INTO tags (name, created_at) VALUES (?1, ?2) RETURNING name, created_at";
const DELETE_TAG: &str = "DELETE FROM tags WHERE name = ?1";
const TAGS_OF: &str = "SELECT tag FROM interaction_tags WHERE interaction_id = ?1 ORDER BY tag";
const TAGS_OF_MANY: &str = "SELECT interaction_id, tag FROM interaction_tags
     WHERE interaction_id IN (SELECT value FROM json_each(?1))
     ORDER BY interaction_id, tag";
const CLEAR_TAGS: &str = "DELETE FROM interaction_tags WHERE interaction_id = ?1";
const ADD_TAG: &str = "INSERT INTO interaction_tags (interaction_id, tag) VALUES (?1, ?2)";

const SUBSTATUSES: &str = "SELECT name, created_at FROM substatuses ORDER BY name";
const NEW_SUBSTATUS: &str =
    "INSERT INTO substatuses (name, created_at) VALUES (?1, ?2) RETURNING name, created_at";
const DELETE_SUBSTATUS: &str = "DELETE FROM substatuses WHERE name = ?1";

const SET_SUBSTATUS: &str = concat!(
    "UPDATE interactions SET substatus = ?2 WHERE id = ?1 RETURNING ",
    interaction_cols!()
);

// ---- rows ------------------------------------------------------------------------

fn draft_row(row: &Row<'_>) -> StoreResult<Draft> {
    let attachments: String = row.get("attachments")?;
    Ok(Draft {
        interaction: InteractionId(row.get("interaction_id")?),
        agent: AgentId(row.get("agent_id")?),
        content: DraftContent {
            mode: DraftMode::parse(&row.get::<_, String>("mode")?)?,
            message: row.get::<_, Option<i64>>("message_row_id")?.map(MessageId),
            to: mailboxes_from_json(&row.get::<_, String>("to_addrs")?, "to_addrs")?,
            cc: mailboxes_from_json(&row.get::<_, String>("cc_addrs")?, "cc_addrs")?,
            bcc: mailboxes_from_json(&row.get::<_, String>("bcc_addrs")?, "bcc_addrs")?,
            subject: row.get("subject")?,
            text: row.get("text_body")?,
            html: row.get("html_body")?,
            attachments: serde_json::from_str(&attachments).map_err(|e| {
                StoreError::Invalid(format!("stored draft attachments are not ids: {e}"))
            })?,
        },
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
    })
}

fn draft_of(conn: &Connection, interaction: InteractionId) -> StoreResult<Option<Draft>> {
    let mut stmt = conn.prepare_cached(DRAFT)?;
    let mut rows = stmt.query([interaction.0])?;
    rows.next()?.map(draft_row).transpose()
}

fn name_row<T>(make: impl Fn(String, Millis) -> T) -> impl Fn(&Row<'_>) -> rusqlite::Result<T> {
    move |r| Ok(make(r.get(0)?, r.get(1)?))
}

fn tag(name: String, at: Millis) -> Tag {
    Tag {
        name,
        created_at: at.0,
    }
}

fn substatus(name: String, at: Millis) -> Substatus {
    Substatus {
        built_in: name == PENDING,
        name,
        created_at: at.0,
    }
}

fn names(conn: &Connection, sql: &str, param: Option<i64>) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(param), |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

fn open_interaction(conn: &Connection, id: InteractionId) -> StoreResult<Interaction> {
    let interaction = load(conn, id.0)?;
    if interaction.status != InteractionStatus::Open {
        return Err(interaction_closed());
    }
    Ok(interaction)
}

fn set_substatus_in(
    tx: &Connection,
    id: InteractionId,
    substatus: Option<String>,
) -> StoreResult<Interaction> {
    open_interaction(tx, id)?;
    if let Some(name) = &substatus {
        let valid = names(tx, SUBSTATUSES, None)?;
        if !valid.contains(name) {
            return Err(unknown_names(
                "sub-status",
                std::slice::from_ref(name),
                &valid,
            ));
        }
    }
    Ok(tx
        .prepare_cached(SET_SUBSTATUS)?
        .query_row(params![id.0, substatus], interaction_row)?)
}

impl SqliteStore {
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.write(move |tx| {
            tx.prepare_cached(MARK_READ)?
                .query_row([id.0], interaction_row)
                .optional()?
                .ok_or(StoreError::NotFound("interaction"))
        })
        .await
    }

    pub async fn mark_unread(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.write(move |tx| {
            tx.prepare_cached(MARK_UNREAD)?
                .query_row([id.0], interaction_row)
                .optional()?
                .ok_or(StoreError::NotFound("interaction"))
        })
        .await
    }

    // ---- drafts ---------------------------------------------------------

    pub async fn draft(&self, interaction: InteractionId) -> StoreResult<Draft> {
        self.read(move |conn| draft_of(conn, interaction)?.ok_or(StoreError::NotFound("draft")))
            .await
    }

    pub async fn save_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
        content: DraftContent,
        save: DraftSave,
    ) -> StoreResult<DraftOutcome> {
        self.write(move |tx| {
            open_interaction(tx, interaction)?;
            let existing = draft_of(tx, interaction)?;
            let (created_at, updated_at) =
                match decide_draft(existing.as_ref(), agent, &content, save, common::now()) {
                    DraftDecision::Refuse(outcome) => return Ok(*outcome),
                    DraftDecision::Write {
                        created_at,
                        updated_at,
                    } => (created_at, updated_at),
                };
            if let Some(m) = content.message {
                let ok = tx
                    .prepare_cached(MAIL_HERE)?
                    .query_row(params![m.0, interaction.0], |_| Ok(()))
                    .optional()?;
                if ok.is_none() {
                    return Err(not_a_mail_here(m));
                }
            }
            for a in &content.attachments {
                let ok = tx
                    .prepare_cached(ATTACHABLE)?
                    .query_row(params![a.0, agent.0, interaction.0], |_| Ok(()))
                    .optional()?;
                if ok.is_none() {
                    return Err(not_attachable(*a));
                }
            }
            tx.prepare_cached(UPSERT_DRAFT)?.execute(params![
                interaction.0,
                agent.0,
                content.mode.as_str(),
                mailbox_json(&content.to),
                mailbox_json(&content.cc),
                mailbox_json(&content.bcc),
                content.subject,
                content.text,
                content.html,
                attachment_json(&content.attachments),
                ms(created_at),
                ms(updated_at),
                content.message.map(|m| m.0),
            ])?;
            Ok(DraftOutcome::Saved(Draft {
                interaction,
                agent,
                content,
                created_at,
                updated_at,
            }))
        })
        .await
    }

    pub async fn delete_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            match tx
                .prepare_cached(DELETE_OWN_DRAFT)?
                .execute(params![interaction.0, agent.0])?
            {
                0 => Err(StoreError::NotFound("draft")),
                _ => Ok(()),
            }
        })
        .await
    }

    pub async fn drafts_of(&self, agent: AgentId) -> StoreResult<Vec<DraftListing>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(DRAFTS_OF)?;
            let mut rows = stmt.query([agent.0])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let draft = draft_row(row)?;
                let account: String = row.get("account_key")?;
                out.push(DraftListing {
                    display_name: display_name(&account, &draft.content),
                    draft,
                    account,
                });
            }
            Ok(out)
        })
        .await
    }

    // ---- notes ------------------------------------------------------------

    pub async fn add_note(&self, note: NewNote) -> StoreResult<StoredMessage> {
        self.write(move |tx| {
            let interaction = load(tx, note.interaction.0)?;
            let kind = match note.for_agent {
                Some(_) => MessageKind::SupervisorNote,
                None => MessageKind::Note,
            };
            let now = common::now();
            let id: i64 = tx.prepare_cached(NEW_NOTE)?.query_row(
                params![
                    interaction.id.0,
                    interaction.account.0,
                    kind.as_str(),
                    note.text,
                    note.author.0,
                    note.for_agent.map(|a| a.0),
                    ms(now),
                ],
                |r| r.get(0),
            )?;
            let mut attachments = Vec::with_capacity(note.attachments.len());
            for a in &note.attachments {
                let linked = tx
                    .prepare_cached(LINK_UPLOAD)?
                    .query_row(params![id, a.0, note.author.0], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, bool>(5)?,
                        ))
                    })
                    .optional()?;
                let Some((id, filename, content_type, size, content_id, inline)) = linked else {
                    return Err(not_an_upload(*a));
                };
                attachments.push(AttachmentMeta {
                    id: AttachmentId(id),
                    filename,
                    content_type,
                    size: stored(size, "size")?,
                    content_id,
                    inline,
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
        })
        .await
    }

    // ---- tags ---------------------------------------------------------------

    pub async fn tags(&self) -> StoreResult<Vec<Tag>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(TAGS)?;
            let rows = stmt.query_map([], name_row(tag))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn create_tag(&self, name: String) -> StoreResult<Tag> {
        self.write(move |tx| {
            tx.prepare_cached(NEW_TAG)?
                .query_row(params![name, ms(common::now())], name_row(tag))
                .map_err(|e| {
                    common::taken(|| format!("a tag named `{name}` already exists"))(e.into())
                })
        })
        .await
    }

    pub async fn delete_tag(&self, name: String) -> StoreResult<()> {
        self.write(
            move |tx| match tx.prepare_cached(DELETE_TAG)?.execute([name])? {
                0 => Err(StoreError::NotFound("tag")),
                _ => Ok(()),
            },
        )
        .await
    }

    pub async fn interaction_tags(&self, id: InteractionId) -> StoreResult<Vec<String>> {
        self.read(move |conn| {
            load(conn, id.0)?;
            names(conn, TAGS_OF, Some(id.0))
        })
        .await
    }

    pub async fn tags_of(&self, ids: Vec<i64>) -> StoreResult<HashMap<InteractionId, Vec<String>>> {
        let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(TAGS_OF_MANY)?;
            let mut rows = stmt.query([ids])?;
            let mut out: HashMap<InteractionId, Vec<String>> = HashMap::new();
            while let Some(row) = rows.next()? {
                out.entry(InteractionId(row.get(0)?))
                    .or_default()
                    .push(row.get(1)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn set_interaction_tags(
        &self,
        id: InteractionId,
        tags: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        self.write(move |tx| {
            load(tx, id.0)?;
            let valid = names(tx, TAGS, None)?;
            let unknown: Vec<String> = tags
                .iter()
                .filter(|t| !valid.contains(t))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(unknown_names("tag(s)", &unknown, &valid));
            }
            tx.prepare_cached(CLEAR_TAGS)?.execute([id.0])?;
            for t in &tags {
                tx.prepare_cached(ADD_TAG)?.execute(params![id.0, t])?;
            }
            Ok(tags)
        })
        .await
    }

    // ---- sub-statuses ---------------------------------------------------------

    pub async fn substatuses(&self) -> StoreResult<Vec<Substatus>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(SUBSTATUSES)?;
            let rows = stmt.query_map([], name_row(substatus))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn create_substatus(&self, name: String) -> StoreResult<Substatus> {
        self.write(move |tx| {
            tx.prepare_cached(NEW_SUBSTATUS)?
                .query_row(params![name, ms(common::now())], name_row(substatus))
                .map_err(|e| {
                    common::taken(|| format!("a sub-status named `{name}` already exists"))(
                        e.into(),
                    )
                })
        })
        .await
    }

    pub async fn delete_substatus(&self, name: String) -> StoreResult<()> {
        self.write(
            move |tx| match tx.prepare_cached(DELETE_SUBSTATUS)?.execute([name])? {
                0 => Err(StoreError::NotFound("sub-status")),
                _ => Ok(()),
            },
        )
        .await
    }

    pub async fn set_substatus(
        &self,
        id: InteractionId,
        substatus: Option<String>,
    ) -> StoreResult<Interaction> {
        self.write(move |tx| set_substatus_in(tx, id, substatus))
            .await
    }
}
