//! Persistence. [`Store`] is one enum over two backends with domain-shaped
//! methods (`claim`, `upsert_agent`, …), in the manner of Stalwart's store:
//! reporting in a contact center needs real, queryable tables, not a key-value
//! API.
//!
//! - [`sqlite`]: the embedded default (rusqlite, bundled). rusqlite is
//!   synchronous, so every call runs on tokio's blocking pool and never on an
//!   actor's thread (invariant 5).
//! - [`postgres`]: deadpool-postgres, for production and for several nodes.
//!
//! Both run the same migrations (one SQL dialect each, in `migrations/`) and
//! pass the same contract suite (`tests/it/store.rs`).
//!
//! The mail side: `ingest.rs` ([`Store::ingest_mail`]) commits one mail per
//! transaction (invariant 1) and keeps the mailbox's watermark, receipts and
//! quarantine; `read.rs` reads messages, contacts and attachments back;
//! `mbox.rs` renders a closed thread as the mbox file its thread 2 carries.
//!
//! Time is `DateTime<Utc>` everywhere in Rust; SQLite keeps it as integer
//! milliseconds since the epoch, Postgres as `timestamptz`.

/// Dispatch one method call to the backend. Defined before the submodules
/// so that `ingest`, `read` and `routing` use this one definition.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

pub mod advanced;
mod common;
pub mod contacts;
mod dispositions;
mod downloads;
mod ingest;
pub mod listing;
mod mbox;
mod outbox;
pub mod postgres;
mod read;
mod routing;
pub mod sqlite;
mod types;
mod work;

pub use dispositions::{Disposition, check_path as check_disposition_path};
pub use downloads::*;
pub use ingest::*;
pub use outbox::*;
pub use routing::*;
pub use types::*;
pub use work::*;

use chrono::{DateTime, Utc};

use crate::domain::{AccountId, AgentId, InteractionId, QueueId};

/// Everything that can go wrong below the domain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist (or is deleted).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule or a precondition was violated (e.g. a second
    /// username). The text is safe to show to the caller.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request names something invalid (e.g. a queue member that is not an agent).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("the store URL is not supported: {0}")]
    BadUrl(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// Any other SQLite error. (Constraint violations never arrive here: the
    /// `From` conversion below turns them into `Conflict` or `Invalid`.)
    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// Any other Postgres error (constraint violations: as for SQLite).
    #[error("postgres: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("store task failed: {0}")]
    Task(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every driver error passes through here (`?` included), so that a unique
/// violation is a `Conflict` and a foreign-key or CHECK violation is
/// `Invalid` on both backends, with the same safe text.
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match sqlite::violation(&err) {
            Some(violation) => violation.into_error(),
            None => StoreError::Sqlite(err),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        match postgres::violation(&err) {
            Some(violation) => violation.into_error(),
            None => StoreError::Postgres(err),
        }
    }
}

/// The store. Cheap to clone: both variants are handles to a shared pool.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Open the store named by `url`: `sqlite://path` (relative to the working
    /// directory; `sqlite::memory:` for a private in-memory database) or
    /// `postgres://…`. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str) -> StoreResult<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::connect(url).await?))
        } else {
            Err(StoreError::BadUrl(crate::secret::redact_url(url)))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Apply pending migrations (idempotent; safe to run on every start, and
    /// from several nodes at once on Postgres).
    pub async fn migrate(&self) -> StoreResult<()> {
        dispatch!(self.migrate())
    }

    /// A trivial round trip, for `/ready`.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self.ping())
    }

    // ---- agents -------------------------------------------------------

    /// Insert or update an agent by username (provisioning and the admin
    /// API). `password_hash: None` keeps the stored hash. A deleted agent of
    /// the same username is brought back.
    pub async fn upsert_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        dispatch!(self.upsert_agent(spec))
    }

    /// Create a new agent; `Conflict` if the username is taken (also by a deleted one).
    pub async fn create_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        dispatch!(self.create_agent(spec))
    }

    pub async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent> {
        dispatch!(self.update_agent(id, patch))
    }

    /// Soft delete: the row stays for reporting (interactions reference it),
    /// the agent can no longer log in, their sessions are revoked and they
    /// leave every queue.
    pub async fn delete_agent(&self, id: AgentId) -> StoreResult<()> {
        dispatch!(self.delete_agent(id))
    }

    pub async fn agent(&self, id: AgentId) -> StoreResult<Agent> {
        dispatch!(self.agent(id))
    }

    pub async fn agent_by_username(&self, username: &str) -> StoreResult<Agent> {
        dispatch!(self.agent_by_username(username))
    }

    /// Active agents, ordered by username.
    pub async fn list_agents(&self) -> StoreResult<Vec<Agent>> {
        dispatch!(self.list_agents())
    }

    /// The agent and its password hash, for login. `NotFound` for unknown or
    /// deleted agents, and for agents without a password.
    pub async fn agent_credentials(&self, username: &str) -> StoreResult<(Agent, String)> {
        dispatch!(self.agent_credentials(username))
    }

    // ---- sessions -----------------------------------------------------

    /// Store a new session under the SHA-256 of its token (the token itself
    /// is never stored).
    pub async fn create_session(
        &self,
        token_hash: &[u8],
        agent: AgentId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        dispatch!(self.create_session(token_hash, agent, expires_at))
    }

    /// The agent of a live session: not expired at `now`, not revoked, agent
    /// not deleted. `NotFound` otherwise.
    pub async fn session(&self, token_hash: &[u8], now: DateTime<Utc>) -> StoreResult<SessionInfo> {
        dispatch!(self.session(token_hash, now))
    }

    /// Revoke one session (logout). Revoking twice is not an error.
    pub async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        dispatch!(self.revoke_session(token_hash))
    }

    /// Revoke every session of an agent (forced logout, deletion). Returns how many.
    pub async fn revoke_agent_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        dispatch!(self.revoke_agent_sessions(agent))
    }

    // ---- queues -------------------------------------------------------

    /// Insert or update a queue by name, replacing its members (usernames;
    /// `Invalid` if one is not an active agent).
    pub async fn upsert_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        dispatch!(self.upsert_queue(spec))
    }

    /// `Conflict` if the name is taken.
    pub async fn create_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        dispatch!(self.create_queue(spec))
    }

    /// Replace a queue's settings and members; the name may change
    /// (`Conflict` if taken).
    pub async fn update_queue(&self, id: QueueId, spec: QueueSpec) -> StoreResult<Queue> {
        dispatch!(self.update_queue(id, spec))
    }

    /// Soft delete; `Conflict` while an active account routes to it.
    pub async fn delete_queue(&self, id: QueueId) -> StoreResult<()> {
        dispatch!(self.delete_queue(id))
    }

    pub async fn queue(&self, id: QueueId) -> StoreResult<Queue> {
        dispatch!(self.queue(id))
    }

    pub async fn queue_by_name(&self, name: &str) -> StoreResult<Queue> {
        dispatch!(self.queue_by_name(name))
    }

    /// Active queues, ordered by name.
    pub async fn list_queues(&self) -> StoreResult<Vec<Queue>> {
        dispatch!(self.list_queues())
    }

    // ---- accounts -----------------------------------------------------

    /// Insert or update an account by key. `None` passwords keep the stored
    /// ones. `import_since` is set on insert only (default: now), so that a
    /// restart never re-imports history. `Invalid` if the queue is unknown.
    pub async fn upsert_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        dispatch!(self.upsert_account(spec))
    }

    /// `Conflict` if the key is taken.
    pub async fn create_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        dispatch!(self.create_account(spec))
    }

    /// Replace an account's settings (the key may not change). `None`
    /// passwords keep the stored ones.
    pub async fn update_account(&self, id: AccountId, spec: AccountSpec) -> StoreResult<Account> {
        dispatch!(self.update_account(id, spec))
    }

    /// Soft delete (its interactions stay).
    pub async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        dispatch!(self.delete_account(id))
    }

    pub async fn account(&self, id: AccountId) -> StoreResult<Account> {
        dispatch!(self.account(id))
    }

    pub async fn account_by_key(&self, key: &str) -> StoreResult<Account> {
        dispatch!(self.account_by_key(key))
    }

    /// Active accounts, ordered by key.
    pub async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        dispatch!(self.list_accounts())
    }

    /// The IMAP and SMTP passwords, for the mailbox and sender actors only.
    pub async fn account_secrets(&self, id: AccountId) -> StoreResult<AccountSecrets> {
        dispatch!(self.account_secrets(id))
    }

    // ---- interactions and routing ---------------------------------------

    /// Create an interaction (open, no owner, version 1). Ingest (#3) and
    /// outbound mail (#5) build on this; tests use it directly.
    pub async fn create_interaction(&self, new: NewInteraction) -> StoreResult<Interaction> {
        dispatch!(self.create_interaction(new))
    }

    pub async fn interaction(&self, id: InteractionId) -> StoreResult<Interaction> {
        dispatch!(self.interaction(id))
    }

    /// Make `agent` the owner of an open, unowned interaction — **the**
    /// exactly-one-owner rule (invariant 2). It is one conditional update,
    /// `… SET owner = $agent, version = version + 1 WHERE id = $id AND owner
    /// IS NULL AND status = 'open' AND version = $expected`, so however many
    /// agents, tasks or nodes race, the database lets exactly one through;
    /// everyone else gets [`ClaimOutcome::Lost`] with the current state. No
    /// lock is held in Rust and nothing is read-then-written.
    pub async fn claim(
        &self,
        id: InteractionId,
        agent: AgentId,
        expected_version: i64,
    ) -> StoreResult<ClaimOutcome> {
        let outcome = dispatch!(self.claim(id, agent, expected_version))?;
        let label = match outcome {
            ClaimOutcome::Won(_) => "won",
            ClaimOutcome::Lost(_) => "lost",
        };
        metrics::counter!(crate::metrics::CLAIMS, "outcome" => label).increment(1);
        Ok(outcome)
    }
}
