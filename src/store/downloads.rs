//! Downloads and canned answers (issue #5, parts 10 and 11): what the
//! download endpoints need beyond `read.rs` — where an attachment belongs
//! (for the access check, before any bytes are read), a message's stored
//! source, who wrote each note — and the admin-defined canned answers.
//!
//! Attachment bytes themselves come from [`Store::attachment`] one at a
//! time, so that a zip of many attachments holds at most one of them in
//! memory besides the archive being built.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AttachmentMeta, Store, StoreError, StoreResult};
use crate::domain::{AgentId, AttachmentId, InteractionId, MessageId};

/// Where an attachment belongs: a message of an interaction, or (an upload
/// not yet used in a message) only its uploader.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentPlace {
    pub meta: AttachmentMeta,
    /// The message it is part of; `None` for an upload not yet used.
    pub message: Option<MessageId>,
    pub interaction: Option<InteractionId>,
    pub uploaded_by: Option<AgentId>,
}

/// A message's stored source: the raw MIME of an incoming mail (and of an
/// outgoing one, once the outbox keeps it); `None` for notes and for mail
/// stored without its source.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSource {
    pub interaction: InteractionId,
    pub raw: Option<Vec<u8>>,
}

/// The agents behind a message: who wrote a note or sent a mail, and whom a
/// supervisor's note is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageAgents {
    pub message: MessageId,
    pub author: Option<AgentId>,
    pub for_agent: Option<AgentId>,
}

/// An admin-defined answer agents insert into replies; its text (and HTML)
/// may hold placeholders such as `{{contact.first_name}}`, filled when an
/// agent lists them for an interaction.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CannedAnswer {
    #[serde(serialize_with = "crate::domain::serialize_as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    pub title: String,
    pub text: String,
    /// Sanitised on save (as mail HTML is).
    pub html: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A canned answer as an admin writes it. The HTTP layer checks the lengths
/// and sanitises the HTML; the store keeps what it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct CannedAnswerSpec {
    pub title: String,
    pub text: String,
    pub html: Option<String>,
}

impl CannedAnswerSpec {
    /// The store's own rule, the same on both backends: a title.
    pub(crate) fn check(&self) -> StoreResult<()> {
        if self.title.trim().is_empty() {
            return Err(StoreError::Invalid("a canned answer needs a title".into()));
        }
        Ok(())
    }
}

impl Store {
    /// Where an attachment belongs (its message, interaction and uploader),
    /// without its bytes.
    pub async fn attachment_place(&self, id: AttachmentId) -> StoreResult<AttachmentPlace> {
        dispatch!(self.attachment_place(id))
    }

    /// The interaction a message belongs to (a cheap lookup: the access
    /// check comes before any source is read).
    pub async fn message_interaction(&self, id: MessageId) -> StoreResult<InteractionId> {
        dispatch!(self.message_interaction(id))
    }

    /// A message's interaction and stored raw source.
    pub async fn message_source(&self, id: MessageId) -> StoreResult<MessageSource> {
        dispatch!(self.message_source(id))
    }

    /// The author and addressee agents of every message of an interaction,
    /// in the order of [`Store::messages`]. `NotFound` for an unknown interaction.
    pub async fn message_agents(
        &self,
        interaction: InteractionId,
    ) -> StoreResult<Vec<MessageAgents>> {
        dispatch!(self.message_agents(interaction))
    }

    /// Every canned answer, by title (bytewise), then id.
    pub async fn list_canned_answers(&self) -> StoreResult<Vec<CannedAnswer>> {
        dispatch!(self.list_canned_answers())
    }

    pub async fn canned_answer(&self, id: i64) -> StoreResult<CannedAnswer> {
        dispatch!(self.canned_answer(id))
    }

    /// `Invalid` without a title.
    pub async fn create_canned_answer(&self, spec: CannedAnswerSpec) -> StoreResult<CannedAnswer> {
        spec.check()?;
        dispatch!(self.create_canned_answer(spec))
    }

    /// Replace title, text and HTML.
    pub async fn update_canned_answer(
        &self,
        id: i64,
        spec: CannedAnswerSpec,
    ) -> StoreResult<CannedAnswer> {
        spec.check()?;
        dispatch!(self.update_canned_answer(id, spec))
    }

    /// Delete for good (answers already sent are copies in their messages).
    pub async fn delete_canned_answer(&self, id: i64) -> StoreResult<()> {
        dispatch!(self.delete_canned_answer(id))
    }
}
