//! The rows the store reads and writes, shaped for the domain (and, where
//! they are returned by the API as they are, for JSON).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    AccountId, AgentId, AttachmentId, ContactId, Delivery, Direction, InteractionId,
    InteractionStatus, MessageId, MessageKind, QueueId, Role, Strategy, TlsMode,
};
use crate::mail::Mailbox;
use crate::secret::Secret;

/// A user: agent, supervisor or admin. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    /// How many open email interactions the agent may own at once.
    pub capacity: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What provisioning and the admin API write about an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub capacity: u32,
    /// An argon2 PHC string. `None` keeps the stored hash (on update) or
    /// leaves the agent unable to log in (on create).
    pub password_hash: Option<String>,
}

/// A partial update of an agent; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentPatch {
    pub name: Option<String>,
    /// `Some(None)` clears the email.
    pub email: Option<Option<String>>,
    pub role: Option<Role>,
    pub capacity: Option<u32>,
    pub password_hash: Option<String>,
}

/// A live session, looked up by its token's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub agent: Agent,
    pub expires_at: DateTime<Utc>,
}

/// A routing queue with its settings and members.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Queue {
    pub id: QueueId,
    pub name: String,
    pub strategy: Strategy,
    pub offer_timeout_secs: u32,
    /// How long a new interaction waits for the contact's last agent before
    /// the strategy takes over; 0 turns sticky routing off.
    pub sticky_secs: u32,
    /// Pause before a new round when every offered agent rejected or timed out.
    pub retry_backoff_secs: u32,
    /// ring_all only: at most this many simultaneous offers; `None` = no cap.
    pub max_simultaneous_offers: Option<u32>,
    /// Pause an agent after this many offers in a row went unanswered; `None` = off.
    pub auto_pause_after_missed: Option<u32>,
    /// Closing an interaction of this queue requires a disposition.
    pub disposition_required: bool,
    /// Member usernames, sorted.
    pub agents: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What provisioning and the admin API write about a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub strategy: Strategy,
    pub offer_timeout_secs: u32,
    pub sticky_secs: u32,
    pub retry_backoff_secs: u32,
    pub max_simultaneous_offers: Option<u32>,
    pub auto_pause_after_missed: Option<u32>,
    pub disposition_required: bool,
    /// Member usernames.
    pub agents: Vec<String>,
}

/// IMAP settings of an account, without the password.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub folder: String,
    /// Accept any certificate (the guide's option for self-signed servers).
    pub accept_invalid_certs: bool,
    /// Polling interval, used only when the server lacks IDLE.
    pub poll_secs: u32,
    /// Folder to append sent mail to, if any.
    pub sent_folder: Option<String>,
}

/// SMTP settings of an account, without the password.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub accept_invalid_certs: bool,
}

/// Per-account behaviour the guide lets an admin switch.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AccountOptions {
    /// Put `[KEY#id]` in outgoing subjects.
    pub subject_token: bool,
    /// Agents may mark interactions of this account unread.
    pub allow_mark_unread: bool,
    /// Show a preview of the last message in lists.
    pub show_preview: bool,
    /// Upload limit per attachment, in bytes (default 15 MB).
    pub max_attachment_bytes: u64,
    /// Mails larger than this go to quarantine, in bytes (default 40 MB).
    pub max_mail_bytes: u64,
    /// Agents' signature for this account, appended to replies.
    pub signature: Option<String>,
}

/// A mail account: where mail comes from, where replies go out, which queue
/// routes it. Passwords are write-only and live in [`AccountSecrets`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Account {
    pub id: AccountId,
    /// Up to 5 letters, e.g. `SERV`; shown in subject tokens and lists.
    pub key: String,
    pub address: String,
    /// The queue's name.
    pub queue: String,
    #[serde(skip)]
    pub queue_id: QueueId,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    /// The first sync imports mail whose INTERNALDATE is at or after this.
    pub import_since: DateTime<Utc>,
    pub options: AccountOptions,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What provisioning and the admin API write about an account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    pub key: String,
    pub address: String,
    /// The queue's name.
    pub queue: String,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    /// `None` keeps the stored password (or none, on insert).
    pub imap_password: Option<Secret>,
    pub smtp_password: Option<Secret>,
    /// `None`: on insert, now; on update, unchanged.
    pub import_since: Option<DateTime<Utc>>,
    pub options: AccountOptions,
}

/// The passwords of an account. Never serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSecrets {
    pub imap_password: Secret,
    pub smtp_password: Secret,
}

/// A new interaction (thread).
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    pub account: AccountId,
    pub queue: QueueId,
    pub subject: String,
    pub contact: Option<ContactId>,
    /// Higher is offered first.
    pub priority: i32,
}

/// An interaction as the store holds it. The API's richer view (contact,
/// tags, last message, …) is assembled from this plus joins.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub id: InteractionId,
    pub account: AccountId,
    pub queue: QueueId,
    pub subject: String,
    pub status: InteractionStatus,
    pub substatus: Option<String>,
    pub owner: Option<AgentId>,
    pub first_agent: Option<AgentId>,
    pub contact: Option<ContactId>,
    pub priority: i32,
    pub unread: bool,
    /// Customer mails that arrived since an agent last read the interaction
    /// (auto-replies do not count).
    pub unread_count: u32,
    /// Reopened after a close (by a supervisor or an agent).
    pub reopened: bool,
    /// The disposition path it was closed with, e.g. `["Sales", "Won"]`.
    pub disposition: Option<Vec<String>>,
    /// The earlier thread this one continues (a reply to it after it closed).
    pub continues: Option<InteractionId>,
    /// The later thread that continues this one; replies to this thread go
    /// there (to the newest thread of the conversation).
    pub continued_in: Option<InteractionId>,
    /// Bumped by every change of owner or status, and by every message
    /// appended by ingest; the claim compares it.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The last customer mail or outgoing mail (never a note or an
    /// auto-reply), for lists.
    pub last_message: Option<LastMessage>,
}

/// What lists show of an interaction's last message.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LastMessage {
    pub direction: Direction,
    pub at: DateTime<Utc>,
    /// The first ~200 characters of the text, whitespace collapsed.
    pub preview: String,
}

/// One message of an interaction, as stored (mail in or out, auto-reply, note).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredMessage {
    pub id: MessageId,
    pub interaction: InteractionId,
    pub direction: Direction,
    pub kind: MessageKind,
    /// `None` for notes (their author is an agent).
    #[schema(value_type = Option<Object>)]
    pub from: Option<Mailbox>,
    #[schema(value_type = Vec<Object>)]
    pub to: Vec<Mailbox>,
    #[schema(value_type = Vec<Object>)]
    pub cc: Vec<Mailbox>,
    /// Outgoing mail only (an incoming mail's Bcc is not in its headers).
    #[schema(value_type = Vec<Object>)]
    pub bcc: Vec<Mailbox>,
    #[schema(value_type = Vec<Object>)]
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    /// Already sanitised.
    pub html: Option<String>,
    /// The Message-ID header, without angle brackets.
    pub message_id: Option<String>,
    /// The In-Reply-To ids, without angle brackets, space-separated (almost
    /// always one).
    pub in_reply_to: Option<String>,
    /// The References ids, oldest first, without angle brackets.
    pub references: Vec<String>,
    /// Outgoing mail only: where the outbox stands.
    pub delivery: Option<Delivery>,
    /// Why delivery failed (an SMTP error or a bounce's reason).
    pub delivery_error: Option<String>,
    /// The agent who wrote it (notes and outgoing mail).
    pub author: Option<AgentId>,
    pub attachments: Vec<AttachmentMeta>,
    /// When the store received (or, for outgoing mail, created) it.
    #[serde(rename = "at")]
    pub created_at: DateTime<Utc>,
}

/// A stored file's description (its bytes come from `Store::attachment`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AttachmentMeta {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: String,
    /// In bytes.
    pub size: u64,
    /// The `Content-ID` (without angle brackets) an inline part is referenced by.
    pub content_id: Option<String>,
    /// Shown inline in the HTML (`cid:`), not listed as a file.
    pub inline: bool,
}

/// A customer, created from a sender on first contact.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Contact {
    pub id: ContactId,
    /// From the display name (or the address's local part); may be empty.
    pub first_name: String,
    pub last_name: String,
    /// Lower-cased addresses, sorted.
    pub emails: Vec<String>,
}

/// An outgoing mail to record on an interaction (`Store::insert_outgoing_message`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutgoing {
    /// Our (signed) Message-ID, without angle brackets.
    pub message_id_header: String,
    pub to: Vec<Mailbox>,
    pub subject: String,
    pub text: String,
}

/// The result of [`super::Store::claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This agent is now the owner; the interaction as updated.
    Won(Interaction),
    /// Someone else got it first, or it changed (closed, new version); the
    /// interaction as it is now.
    Lost(Interaction),
}
