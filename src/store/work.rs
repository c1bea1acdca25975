//! Working an interaction (issue #5): what its owner (and supervisors) do
//! with it besides sending mail — reading, drafts, notes, tags, sub-status,
//! unread. Each write is one transaction in the backend files
//! (`sqlite/work.rs`, `postgres/work.rs`).
//!
//! # Rules shared by both backends
//!
//! The rules are decided here, in plain Rust, from what the backend read
//! inside its transaction ([`decide_draft`], [`display_name`],
//! [`vocabulary_name`]), so that SQLite and Postgres cannot drift apart.
//! Every write that depends on a read locks the interaction row first on
//! Postgres (`SELECT … FOR UPDATE`); SQLite's single writer serialises them
//! anyway. So two saves of one draft, two tag sets or a save racing a close
//! are applied one after the other, never interleaved: a draft saved while
//! the interaction closes is either deleted by the close or refused because
//! the interaction is closed.
//!
//! - **Drafts**: one per interaction, owned by the agent who saved it. A save
//!   is refused (`DraftOutcome::OwnedByOther`) over another agent's draft,
//!   and (`DraftOutcome::Changed`) when the caller names the `updated_at` it
//!   last saw (`base`) and the stored draft has another one — unless the
//!   content is the same as stored (a retried autosave is idempotent) or the
//!   caller replaces. `updated_at` strictly increases with every save (by at
//!   least one millisecond), so that `base` always tells two saves apart.
//!   HTML is sanitised before it is stored.
//! - **Notes** (`note`, `supervisor_note`): direction `out`, never sent, no
//!   addresses, never the last message, and they change nothing on the
//!   interaction (not unread, not its activity time, not its version).
//!   Attachments are the author's unused uploads, linked to the note.
//! - **Tags** and **sub-statuses** come from admin lists. Setting an unknown
//!   one is `Invalid`; deleting a tag removes it from every interaction,
//!   deleting a sub-status clears it where set (foreign keys). `Pending` is
//!   built in and cannot be deleted.
//! - **Unread**: marking sets the flag only; `unread_count` still counts the
//!   customer mails since the last read.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Interaction, Store, StoreError, StoreResult, StoredMessage};
use crate::domain::{AgentId, AttachmentId, InteractionId, MessageId};
use crate::mail::Mailbox;

/// The sub-status every installation has; it cannot be deleted.
pub const PENDING: &str = "Pending";

/// Longest tag or sub-status name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What a draft will become when sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DraftMode {
    Reply,
    ReplyAll,
    Forward,
}

impl DraftMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DraftMode::Reply => "reply",
            DraftMode::ReplyAll => "reply_all",
            DraftMode::Forward => "forward",
        }
    }

    pub fn parse(s: &str) -> StoreResult<DraftMode> {
        match s {
            "reply" => Ok(DraftMode::Reply),
            "reply_all" => Ok(DraftMode::ReplyAll),
            "forward" => Ok(DraftMode::Forward),
            other => Err(StoreError::Invalid(format!(
                "stored draft mode is unknown: {other}"
            ))),
        }
    }
}

/// What a draft says: everything the agent typed.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftContent {
    pub mode: DraftMode,
    /// The mail of this interaction a reply or forward answers; `None`: the
    /// default original (as `POST /interactions/{id}/messages` chooses it).
    pub message: Option<MessageId>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    /// Sanitised when stored.
    pub html: Option<String>,
    /// Uploads of the draft's author, or attachments of this interaction's
    /// messages (a forward carries the original's).
    pub attachments: Vec<AttachmentId>,
}

/// A stored draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub interaction: InteractionId,
    /// The agent who saved it; only they see it.
    pub agent: AgentId,
    pub content: DraftContent,
    /// When this agent first saved it (a replace by another agent starts anew).
    pub created_at: DateTime<Utc>,
    /// When it was last saved; strictly increasing.
    pub updated_at: DateTime<Utc>,
}

/// One of an agent's drafts as their list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftListing {
    pub draft: Draft,
    /// The account's key.
    pub account: String,
    /// The guide's name for it: `KEY - TO`, else `KEY - SUBJECT`, else
    /// `KEY - Untitled`.
    pub display_name: String,
}

/// Under which condition a save may overwrite a stored draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftSave {
    /// Overwrite whatever is stored, whoever saved it (`?replace=true`).
    Replace,
    /// Refuse to overwrite another agent's draft, and — when `base` is given
    /// — the caller's own draft if it was saved since `base` (its
    /// `updated_at` differs).
    Check { base: Option<DateTime<Utc>> },
}

/// What [`Store::save_draft`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum DraftOutcome {
    /// Stored; the draft as it is now.
    Saved(Draft),
    /// Not stored: another agent's draft is there (shown as it is).
    OwnedByOther(Draft),
    /// Not stored: the caller's draft was saved since `base` (shown as it is).
    Changed(Draft),
}

/// What the backend does after reading the stored draft (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DraftDecision {
    /// Write, keeping (or setting) this `created_at`, at this `updated_at`.
    Write {
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    },
    /// Boxed: a refusal carries the stored draft, a write only two times.
    Refuse(Box<DraftOutcome>),
}

/// The draft rules, decided on the row read inside the save's transaction.
pub(crate) fn decide_draft(
    existing: Option<&Draft>,
    agent: AgentId,
    content: &DraftContent,
    save: DraftSave,
    now: DateTime<Utc>,
) -> DraftDecision {
    let Some(existing) = existing else {
        return DraftDecision::Write {
            created_at: now,
            updated_at: now,
        };
    };
    if let DraftSave::Check { base } = save {
        if existing.agent != agent {
            return DraftDecision::Refuse(Box::new(DraftOutcome::OwnedByOther(existing.clone())));
        }
        // A retried save of the same content is not a conflict: the caller
        // already has what is stored (its first answer was lost, or a second
        // tab autosaved the same text).
        let same = existing.content == *content;
        if !same && base.is_some_and(|b| b != existing.updated_at) {
            return DraftDecision::Refuse(Box::new(DraftOutcome::Changed(existing.clone())));
        }
    }
    // Strictly later than the stored time, so that a save in the same
    // millisecond still gets a new `updated_at` (and `base` sees it).
    let updated_at = now.max(existing.updated_at + TimeDelta::milliseconds(1));
    let created_at = if existing.agent == agent {
        existing.created_at
    } else {
        updated_at
    };
    DraftDecision::Write {
        created_at,
        updated_at,
    }
}

/// The guide's name of a draft in "my drafts": `KEY - TO` (the first To
/// address), else `KEY - SUBJECT`, else `KEY - Untitled`.
pub fn display_name(account_key: &str, content: &DraftContent) -> String {
    let to = content
        .to
        .iter()
        .map(|m| m.address.trim())
        .find(|a| !a.is_empty());
    let subject = content.subject.trim();
    match to {
        Some(address) => format!("{account_key} - {address}"),
        None if !subject.is_empty() => format!("{account_key} - {subject}"),
        None => format!("{account_key} - Untitled"),
    }
}

/// A new note on an interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNote {
    pub interaction: InteractionId,
    pub author: AgentId,
    /// `Some(agent)`: a supervisor's note for that agent (`supervisor_note`).
    pub for_agent: Option<AgentId>,
    pub text: String,
    /// The author's uploads (not yet used anywhere) to attach.
    pub attachments: Vec<AttachmentId>,
}

/// An admin-defined tag.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tag {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An admin-defined sub-status.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Substatus {
    pub name: String,
    /// `Pending`: always there, cannot be deleted.
    pub built_in: bool,
    pub created_at: DateTime<Utc>,
}

/// A tag or sub-status name as an admin may create it: trimmed, 1 to
/// [`MAX_NAME_CHARS`] characters, no control characters.
pub fn vocabulary_name(what: &str, name: &str) -> StoreResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a {what} name cannot be empty"
        )));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::Invalid(format!(
            "a {what} name has at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "a {what} name cannot contain control characters"
        )));
    }
    Ok(name.to_string())
}

/// The error for names not in an admin list, listing the valid ones.
pub(crate) fn unknown_names(what: &str, unknown: &[String], valid: &[String]) -> StoreError {
    StoreError::Invalid(format!(
        "unknown {what}: {} (valid: {})",
        unknown.join(", "),
        if valid.is_empty() {
            "none defined".to_string()
        } else {
            valid.join(", ")
        }
    ))
}

/// Without NUL characters, which Postgres `text` refuses (so that both
/// backends store the same thing).
fn clean_content(content: &mut DraftContent) {
    use super::ingest::clean;
    for list in [&mut content.to, &mut content.cc, &mut content.bcc] {
        for m in list.iter_mut() {
            m.address = clean(&m.address);
            m.name = m.name.as_deref().map(clean);
        }
    }
    content.subject = clean(&content.subject);
    content.text = content.text.as_deref().map(clean);
    content.html = content.html.as_deref().map(clean);
}

/// Draft attachments as the JSON the `attachments` column holds.
pub(crate) fn attachment_json(ids: &[AttachmentId]) -> String {
    // Serialising ids (strings) cannot fail.
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_string())
}

pub(crate) fn not_attachable(id: AttachmentId) -> StoreError {
    StoreError::Invalid(format!(
        "attachment {id} is neither your unused upload nor a file of this interaction"
    ))
}

pub(crate) fn not_an_upload(id: AttachmentId) -> StoreError {
    StoreError::Invalid(format!(
        "attachment {id} is not an unused upload of yours (already used, or someone else's)"
    ))
}

pub(crate) fn not_a_mail_here(id: MessageId) -> StoreError {
    StoreError::Invalid(format!("message {id} is not a mail of this interaction"))
}

pub(crate) fn interaction_closed() -> StoreError {
    StoreError::Conflict("the interaction is closed".into())
}

impl Store {
    /// The owner opened it: unread cleared (flag and count). Not a change of
    /// owner or status, so the version stays.
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        dispatch!(self.mark_read(id))
    }

    /// Mark it unread (flag only; the count of unread customer mails stays).
    /// Whether the account allows it is the caller's check.
    pub async fn mark_unread(&self, id: InteractionId) -> StoreResult<Interaction> {
        dispatch!(self.mark_unread(id))
    }

    // ---- drafts -------------------------------------------------------

    /// The draft of an interaction, whoever saved it (`NotFound("draft")`
    /// if there is none). Hiding other agents' drafts is the caller's rule.
    pub async fn draft(&self, interaction: InteractionId) -> StoreResult<Draft> {
        dispatch!(self.draft(interaction))
    }

    /// Save `agent`'s draft on an open interaction under the rules of
    /// [`DraftSave`] (see the module docs). The HTML is sanitised first.
    /// `Conflict` if the interaction is closed; `Invalid` for an attachment
    /// that is neither the agent's unused upload nor one of this
    /// interaction's attachments, or a `message` that is not a mail of this
    /// interaction.
    pub async fn save_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
        mut content: DraftContent,
        save: DraftSave,
    ) -> StoreResult<DraftOutcome> {
        content.html = content
            .html
            .as_deref()
            .map(crate::mail::parse::sanitize_html);
        clean_content(&mut content);
        let mut seen = std::collections::HashSet::new();
        content.attachments.retain(|a| seen.insert(*a));
        dispatch!(self.save_draft(interaction, agent, content, save))
    }

    /// Delete `agent`'s draft; `NotFound("draft")` if the interaction has no
    /// draft of theirs.
    pub async fn delete_draft(
        &self,
        interaction: InteractionId,
        agent: AgentId,
    ) -> StoreResult<()> {
        dispatch!(self.delete_draft(interaction, agent))
    }

    /// Every draft of `agent`, the most recently saved first.
    pub async fn drafts_of(&self, agent: AgentId) -> StoreResult<Vec<DraftListing>> {
        dispatch!(self.drafts_of(agent))
    }

    // ---- notes --------------------------------------------------------

    /// Add a note (or, with `for_agent`, a supervisor's note for that
    /// agent). Never sent; the interaction itself is left as it is. Every
    /// attachment must be an unused upload of the author (`Invalid`
    /// otherwise, and nothing is written).
    pub async fn add_note(&self, note: NewNote) -> StoreResult<StoredMessage> {
        let mut seen = std::collections::HashSet::new();
        let mut note = note;
        note.attachments.retain(|a| seen.insert(*a));
        note.text = super::ingest::clean(&note.text);
        dispatch!(self.add_note(note))
    }

    // ---- tags ---------------------------------------------------------

    /// The admin list, by name.
    pub async fn tags(&self) -> StoreResult<Vec<Tag>> {
        dispatch!(self.tags())
    }

    /// `Conflict` if it exists; `Invalid` for a bad name.
    pub async fn create_tag(&self, name: &str) -> StoreResult<Tag> {
        let name = vocabulary_name("tag", name)?;
        dispatch!(self.create_tag(name))
    }

    /// Also removes it from every interaction. `NotFound("tag")` if unknown.
    pub async fn delete_tag(&self, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        dispatch!(self.delete_tag(name))
    }

    /// An interaction's tags, by name.
    pub async fn interaction_tags(&self, id: InteractionId) -> StoreResult<Vec<String>> {
        dispatch!(self.interaction_tags(id))
    }

    /// The tags of many interactions in one query (for lists), each by
    /// name; interactions without tags (or unknown) are absent.
    pub async fn tags_of(
        &self,
        ids: &[InteractionId],
    ) -> StoreResult<std::collections::HashMap<InteractionId, Vec<String>>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        dispatch!(self.tags_of(ids))
    }

    /// Replace an interaction's tags with `tags` (duplicates ignored);
    /// `Invalid` naming the unknown ones and the valid ones. Returns the tags
    /// as stored, by name.
    pub async fn set_interaction_tags(
        &self,
        id: InteractionId,
        tags: Vec<String>,
    ) -> StoreResult<Vec<String>> {
        let mut tags = tags;
        tags.sort();
        tags.dedup();
        dispatch!(self.set_interaction_tags(id, tags))
    }

    // ---- sub-statuses ---------------------------------------------------

    /// The admin list (`Pending` included), by name.
    pub async fn substatuses(&self) -> StoreResult<Vec<Substatus>> {
        dispatch!(self.substatuses())
    }

    /// `Conflict` if it exists; `Invalid` for a bad name.
    pub async fn create_substatus(&self, name: &str) -> StoreResult<Substatus> {
        let name = vocabulary_name("sub-status", name)?;
        dispatch!(self.create_substatus(name))
    }

    /// Also clears it where it is set. `Conflict` for `Pending`,
    /// `NotFound("sub-status")` if unknown.
    pub async fn delete_substatus(&self, name: &str) -> StoreResult<()> {
        if name == PENDING {
            return Err(StoreError::Conflict(format!(
                "`{PENDING}` is built in and cannot be deleted"
            )));
        }
        let name = name.to_string();
        dispatch!(self.delete_substatus(name))
    }

    /// Set (or, with `None`, clear) the sub-status of an open interaction:
    /// `Invalid` for a name not in the admin list, `Conflict` if closed. A
    /// customer's reply clears it again (ingest); an auto-reply does not.
    pub async fn set_substatus(
        &self,
        id: InteractionId,
        substatus: Option<String>,
    ) -> StoreResult<Interaction> {
        dispatch!(self.set_substatus(id, substatus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(to: &[&str], subject: &str) -> DraftContent {
        DraftContent {
            mode: DraftMode::Reply,
            message: None,
            to: to
                .iter()
                .map(|a| Mailbox {
                    name: None,
                    address: a.to_string(),
                })
                .collect(),
            cc: Vec::new(),
            bcc: Vec::new(),
            subject: subject.into(),
            text: Some("hello".into()),
            html: None,
            attachments: Vec::new(),
        }
    }

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn stored(agent: i64, c: DraftContent, updated: i64) -> Draft {
        Draft {
            interaction: InteractionId(1),
            agent: AgentId(agent),
            content: c,
            created_at: t(100),
            updated_at: t(updated),
        }
    }

    #[test]
    fn display_names_follow_the_guide() {
        assert_eq!(
            display_name("SERV", &content(&["a@x.test", "b@x.test"], "Hi")),
            "SERV - a@x.test"
        );
        assert_eq!(display_name("SERV", &content(&[], " Hi ")), "SERV - Hi");
        assert_eq!(
            display_name("SERV", &content(&[" "], "")),
            "SERV - Untitled"
        );
    }

    #[test]
    fn draft_rules() {
        let mine = content(&["a@x.test"], "Hi");
        let other = content(&["b@x.test"], "Hi");
        let now = t(1000);
        let check = |base| DraftSave::Check { base };
        // Nothing stored: written.
        assert_eq!(
            decide_draft(None, AgentId(1), &mine, check(Some(t(5))), now),
            DraftDecision::Write {
                created_at: now,
                updated_at: now
            }
        );
        // Another agent's: refused unless replaced (which starts anew).
        let theirs = stored(2, mine.clone(), 500);
        assert!(matches!(
            decide_draft(Some(&theirs), AgentId(1), &mine, check(None), now),
            DraftDecision::Refuse(o) if matches!(*o, DraftOutcome::OwnedByOther(_))
        ));
        assert_eq!(
            decide_draft(Some(&theirs), AgentId(1), &other, DraftSave::Replace, now),
            DraftDecision::Write {
                created_at: now,
                updated_at: now
            }
        );
        // Mine, saved since my base: refused, unless the content is the same.
        let own = stored(1, mine.clone(), 500);
        assert!(matches!(
            decide_draft(Some(&own), AgentId(1), &other, check(Some(t(400))), now),
            DraftDecision::Refuse(o) if matches!(*o, DraftOutcome::Changed(_))
        ));
        assert_eq!(
            decide_draft(Some(&own), AgentId(1), &mine, check(Some(t(400))), now),
            DraftDecision::Write {
                created_at: t(100),
                updated_at: now
            }
        );
        // Mine at my base, or no base: written, keeping created_at.
        for base in [Some(t(500)), None] {
            assert_eq!(
                decide_draft(Some(&own), AgentId(1), &other, check(base), now),
                DraftDecision::Write {
                    created_at: t(100),
                    updated_at: now
                }
            );
        }
        // The clock did not move: updated_at still does.
        assert_eq!(
            decide_draft(Some(&own), AgentId(1), &other, check(None), t(500)),
            DraftDecision::Write {
                created_at: t(100),
                updated_at: t(501)
            }
        );
    }

    #[test]
    fn vocabulary_names_are_trimmed_and_bounded() {
        assert_eq!(vocabulary_name("tag", " VIP ").unwrap(), "VIP");
        assert!(vocabulary_name("tag", "  ").is_err());
        assert!(vocabulary_name("tag", &"x".repeat(65)).is_err());
        assert!(vocabulary_name("tag", "a\nb").is_err());
    }
}
