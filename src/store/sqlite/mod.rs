//! The SQLite backend: the embedded default, through rusqlite (bundled).
//!
//! rusqlite is synchronous, so every call runs on tokio's blocking pool
//! (`spawn_blocking`), never on the calling thread: an actor awaiting the store
//! keeps serving its other messages (invariant 5).
//!
//! Connections: SQLite lets one writer in at a time, so there is exactly one
//! writer connection, and a few reader connections that WAL mode lets read
//! while the writer writes. Every write is one `BEGIN IMMEDIATE` transaction.
//!
//! The methods are split by aggregate: [`agents`] (agents and sessions),
//! [`queues`], [`accounts`], [`interactions`], [`ingest`] (one transaction
//! per mail), [`bookkeeping`] (watermark, receipts, quarantine, server
//! secrets), [`messages`] (messages, contacts and attachments read back).

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

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql, Transaction, TransactionBehavior};

use super::common::Violation;
use super::{StoreError, StoreResult};
use crate::domain::UnknownName;

mod embedded {
    refinery::embed_migrations!("src/store/migrations/sqlite");
}

/// Reader connections of a file database. Reads are short; four let the
/// HTTP workers and the actors read side by side on a small machine.
const READERS: usize = 4;

/// How long a connection waits for a lock held by another process (another
/// `mailroom migrate`, an operator's `sqlite3` shell) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// A handle to one SQLite database; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    // A std Mutex, not a tokio one: it is only ever locked inside
    // `spawn_blocking`, where blocking is the point, and never held across an
    // `.await`. SQLite admits one writer at a time anyway; this queue in
    // front of it costs nothing that the database would not charge.
    writer: Mutex<Connection>,
    /// Empty for an in-memory database, whose one connection does everything.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Where the database lives, parsed from the store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Memory,
    File(PathBuf),
}

impl Location {
    /// `sqlite://data/mailroom.db` (relative), `sqlite:///abs/path.db`,
    /// `sqlite::memory:`.
    fn parse(url: &str) -> StoreResult<Location> {
        let bad = |why: &str| StoreError::BadUrl(format!("{url}: {why}"));
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| bad("not a sqlite URL"))?;
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(Location::Memory);
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.contains('?') {
            return Err(bad("options in the URL are not supported"));
        }
        if path.is_empty() {
            return Err(bad("no database path"));
        }
        Ok(Location::File(PathBuf::from(path)))
    }
}

impl SqliteStore {
    /// Open (and create, with its directory) the database named by `url`.
    /// Does not migrate.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let location = Location::parse(url)?;
        blocking(move || Self::open_blocking(location)).await
    }

    fn open_blocking(location: Location) -> StoreResult<SqliteStore> {
        let (writer, readers) = match location {
            Location::Memory => (Connection::open_in_memory()?, Vec::new()),
            Location::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::BadUrl(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let writer = Connection::open(&path)?;
                // WAL is a property of the file: set it before the readers open.
                let mode: String =
                    writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::BadUrl(format!(
                        "{}: the database cannot use WAL mode (got {mode})",
                        path.display()
                    )));
                }
                let readers = (0..READERS)
                    .map(|_| {
                        let reader = Connection::open_with_flags(
                            &path,
                            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        reader.busy_timeout(BUSY_TIMEOUT)?;
                        // A reader that tries to write is a bug; make it an error.
                        reader.pragma_update(None, "query_only", true)?;
                        Ok(Mutex::new(reader))
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                (writer, readers)
            }
        };
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // NORMAL is durable across application crashes in WAL mode; only a
        // power loss can take back the last commits, which FULL would
        // prevent at the cost of an fsync per transaction.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "foreign_keys", true)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Apply pending migrations, on the writer connection.
    pub async fn migrate(&self) -> StoreResult<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            embedded::migrations::runner()
                .run(&mut *conn)
                .map(|_| ())
                .map_err(|e| StoreError::Migration(e.to_string()))
        })
        .await
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Run `f` on a reader connection, inside one read transaction so that
    /// several statements see the same snapshot.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = inner.reader();
            let tx = conn.unchecked_transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Run `f` in one write transaction on the writer connection; it commits
    /// if `f` returns `Ok` and rolls back otherwise.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            // IMMEDIATE takes the write lock at BEGIN. A deferred transaction
            // would take it at its first write, and if another process wrote
            // in between, SQLite fails it with SQLITE_BUSY at once instead of
            // waiting (busy_timeout cannot help a transaction that already read).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

impl Inner {
    /// A free reader if there is one (starting from a rotating place, so the
    /// connections and their statement caches are used evenly), else wait for
    /// the next one in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.readers.is_empty() {
            return lock(&self.writer);
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        for i in 0..self.readers.len() {
            match self.readers[(start + i) % self.readers.len()].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            }
        }
        lock(&self.readers[start])
    }
}

/// Lock a connection, recovering it if a panic poisoned the lock: a panic
/// inside a transaction drops the transaction, which rolls back, so the
/// connection is in a clean state again.
fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run blocking database work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Classify a constraint violation (see `From<rusqlite::Error> for StoreError`).
pub(crate) fn violation(err: &rusqlite::Error) -> Option<Violation> {
    let rusqlite::Error::SqliteFailure(e, _) = err else {
        return None;
    };
    if e.code != ErrorCode::ConstraintViolation {
        return None;
    }
    use rusqlite::ffi;
    Some(match e.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Violation::Unique,
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Violation::ForeignKey,
        ffi::SQLITE_CONSTRAINT_NOTNULL => Violation::NotNull,
        _ => Violation::Check,
    })
}

/// A time as SQLite keeps it: integer milliseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Millis(DateTime<Utc>);

impl ToSql for Millis {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.timestamp_millis()))
    }
}

impl FromSql for Millis {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let ms = i64::column_result(value)?;
        DateTime::from_timestamp_millis(ms)
            .map(Millis)
            .ok_or(FromSqlError::OutOfRange(ms))
    }
}

fn ms(t: DateTime<Utc>) -> Millis {
    Millis(t)
}

/// One of the domain's named enums, stored as its name.
struct Name<T>(T);

impl<T: FromStr<Err = UnknownName>> FromSql for Name<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map(Name)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_relative_absolute_and_memory_databases() {
        assert_eq!(
            Location::parse("sqlite://data/mailroom.db").ok(),
            Some(Location::File("data/mailroom.db".into()))
        );
        assert_eq!(
            Location::parse("sqlite:///var/lib/mailroom/db.sqlite").ok(),
            Some(Location::File("/var/lib/mailroom/db.sqlite".into()))
        );
        assert_eq!(
            Location::parse("sqlite::memory:").ok(),
            Some(Location::Memory)
        );
        assert!(Location::parse("sqlite://").is_err());
        assert!(Location::parse("sqlite://x.db?mode=ro").is_err());
        assert!(Location::parse("postgres://x").is_err());
    }

    #[tokio::test]
    async fn an_in_memory_store_migrates_and_answers() -> StoreResult<()> {
        let store = SqliteStore::open("sqlite::memory:").await?;
        store.migrate().await?;
        store.migrate().await?;
        store.ping().await
    }
}
