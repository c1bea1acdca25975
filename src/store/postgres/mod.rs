//! The Postgres backend: deadpool-postgres over tokio-postgres, for
//! production and for several nodes sharing one database.
//!
//! Every statement is prepared once per connection (`prepare_cached`).
//! Transactions run at READ COMMITTED; where a rule spans two statements, the
//! rows involved are locked (`FOR UPDATE` / `FOR SHARE`), and the comment there
//! says why.
//!
//! The methods are split by aggregate, like the SQLite twin: [`agents`]
//! (agents and sessions), [`queues`], [`accounts`], [`interactions`],
//! [`ingest`] (one transaction per mail), [`bookkeeping`] (watermark,
//! receipts, quarantine, server secrets), [`messages`] (messages, contacts
//! and attachments read back).

mod accounts;
mod agents;
mod bookkeeping;
mod contacts;
mod dispositions;
mod downloads;
mod ingest;
mod interactions;
mod listing;
mod messages;
mod outbox;
mod queues;
mod routing;
mod work;

use std::error::Error;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{NoTls, Row};

use super::common::{Violation, stored};
use super::{StoreError, StoreResult};
use crate::domain::UnknownName;
use crate::secret::redact_url;

mod embedded {
    refinery::embed_migrations!("src/store/migrations/postgres");
}

/// Connections per node. Statements are short; sixteen serve thousands of
/// agents' reads and keep several nodes well under Postgres' default limit
/// of 100 connections.
const POOL_SIZE: usize = 16;

/// How long a caller waits for a free connection before the store reports an
/// error (instead of hanging an HTTP request or an actor forever).
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock that serialises migrations across processes and nodes.
/// Any constant would do, as long as every node uses the same one: this is
/// "mailroom" in ASCII.
const MIGRATION_LOCK: i64 = 0x6d61_696c_726f_6f6d;

/// A handle to a Postgres connection pool; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Build the pool. Connections are opened on first use, so a database
    /// that is briefly away at start shows up in `/ready` (and in
    /// `migrate`), not as a refusal to build the store.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact_url(url))))?;
        if config.get_application_name().is_none() {
            config.application_name("mailroom");
        }
        // Every statement here is short: JIT compiling a plan costs more
        // (17–330 ms measured on the 1 M-message search plans) than it
        // saves. Options given in the URL come first and still win.
        if config.get_options().is_none() {
            config.options("-c jit=off");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // Fast: a broken connection shows up as an error on its next
                // statement; checking each one on checkout would add a round
                // trip to every store call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(PgStore { pool })
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(e.to_string()))
    }

    /// Apply pending migrations. Two nodes starting at once must not both
    /// create the tables, so the runner holds a session-level advisory lock
    /// on its connection: the second waits, then finds nothing to do.
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let migrated = embedded::migrations::runner()
            .run_async(&mut **client)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()));
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        if unlocked.is_err() {
            // The lock belongs to the session: closing the connection (not
            // returning it to the pool) is what releases it now.
            drop(Object::take(client));
        }
        migrated?;
        unlocked?;
        Ok(())
    }

    pub async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}

/// Classify a constraint violation (see `From<tokio_postgres::Error> for StoreError`).
pub(crate) fn violation(err: &tokio_postgres::Error) -> Option<Violation> {
    let code = err.code()?;
    if *code == SqlState::UNIQUE_VIOLATION {
        Some(Violation::Unique)
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        Some(Violation::ForeignKey)
    } else if *code == SqlState::CHECK_VIOLATION {
        Some(Violation::Check)
    } else if *code == SqlState::NOT_NULL_VIOLATION {
        Some(Violation::NotNull)
    } else {
        None
    }
}

/// One of the domain's named enums, stored as its name in a text column.
struct Name<T>(T);

impl<'a, T: FromStr<Err = UnknownName>> FromSql<'a> for Name<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Ok(Name(text.parse()?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

fn name<T: FromStr<Err = UnknownName>>(row: &Row, column: &'static str) -> StoreResult<T> {
    Ok(row.try_get::<_, Name<T>>(column)?.0)
}

/// An `integer` column as the unsigned number the domain uses.
fn unsigned<T: TryFrom<i64>>(row: &Row, column: &'static str) -> StoreResult<T> {
    stored(i64::from(row.try_get::<_, i32>(column)?), column)
}

fn opt_unsigned<T: TryFrom<i64>>(row: &Row, column: &'static str) -> StoreResult<Option<T>> {
    row.try_get::<_, Option<i32>>(column)?
        .map(|v| stored(i64::from(v), column))
        .transpose()
}
