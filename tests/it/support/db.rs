//! Test databases: every test gets its own, and loses it afterwards.
//!
//! - SQLite: a file in a temporary directory. A file, not `sqlite::memory:`,
//!   so that the store's reader connections are exercised as in production.
//! - Postgres: a fresh database `mailroom_test_<random>` on the server named
//!   by `MAILROOM_TEST_PG_URL` (from the environment, else from the file that
//!   `scripts/services.sh start` writes; see [`super::services`]). It is
//!   dropped when the [`TestDb`] guard is dropped. A missing server fails the
//!   test: nothing is skipped.
//!
//! Keep the guard alive as long as the store: bind it to a name
//! (`let (store, _db) = …`), never to `_`, which drops it at once.

use std::path::PathBuf;

use mailroom::store::Store;
use tokio_postgres::NoTls;

use super::services::service_var;

/// The admin URL of the test Postgres server (any database on it; tests
/// create and drop their own).
pub fn pg_admin_url() -> String {
    service_var("MAILROOM_TEST_PG_URL")
}

/// A migrated store on a fresh SQLite file, and the guard that removes it.
pub async fn sqlite_store() -> (Store, TestDb) {
    let (url, db) = TestDb::sqlite_url();
    (migrated(&url).await, db)
}

/// A migrated store on a fresh Postgres database, and the guard that drops it.
pub async fn postgres_store() -> (Store, TestDb) {
    let (url, db) = TestDb::postgres_url().await;
    (migrated(&url).await, db)
}

async fn migrated(url: &str) -> Store {
    let store = Store::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test store {url}: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate the test store {url}: {e}"));
    store
}

/// Owns a test database; dropping it removes the database.
pub struct TestDb {
    kind: Kind,
}

enum Kind {
    Sqlite {
        _dir: tempfile::TempDir,
        file: PathBuf,
    },
    Postgres {
        admin_url: String,
        url: String,
        name: String,
    },
}

impl TestDb {
    /// The URL of a fresh, empty (not migrated) SQLite database.
    pub fn sqlite_url() -> (String, TestDb) {
        let dir = tempfile::Builder::new()
            .prefix("mailroom-test-")
            .tempdir()
            .expect("create a temporary directory for the test database");
        let file = dir.path().join("mailroom.db");
        // An absolute path: `sqlite:///tmp/…/mailroom.db`.
        let url = format!("sqlite://{}", file.display());
        (
            url,
            TestDb {
                kind: Kind::Sqlite { _dir: dir, file },
            },
        )
    }

    /// The URL of a fresh, empty (not migrated) Postgres database.
    pub async fn postgres_url() -> (String, TestDb) {
        let admin_url = pg_admin_url();
        let name = format!("mailroom_test_{:016x}", rand::random::<u64>());
        let mut url = url::Url::parse(&admin_url).unwrap_or_else(|e| {
            panic!("MAILROOM_TEST_PG_URL must be a postgres:// URL ({e}): {admin_url}")
        });
        url.set_path(&format!("/{name}"));
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("create the test database {name}: {e}"));
        let url = url.to_string();
        let db = TestDb {
            kind: Kind::Postgres {
                admin_url,
                url: url.clone(),
                name,
            },
        };
        (url, db)
    }

    /// How many migrations the database records as applied (read behind
    /// the store's back, from refinery's history table).
    pub async fn applied_migrations(&self) -> i64 {
        let sql = "SELECT count(*) FROM refinery_schema_history";
        match &self.kind {
            Kind::Sqlite { file, .. } => {
                let conn = rusqlite::Connection::open(file).expect("open the test database");
                conn.query_row(sql, [], |row| row.get(0))
                    .expect("read the migration history")
            }
            Kind::Postgres { url, .. } => {
                let client = admin_client(url).await;
                client
                    .query_one(sql, &[])
                    .await
                    .expect("read the migration history")
                    .get(0)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Kind::Postgres {
            admin_url, name, ..
        } = &self.kind
        else {
            // The TempDir removes the SQLite files itself.
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop cannot await, and it usually runs on the test's runtime, which
        // cannot be blocked on from inside: a thread with its own small
        // runtime drops the database, and we wait for it, so that the
        // database is gone when the test ends. WITH (FORCE) ends the
        // connections the store's pool may still hold.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            })
        })
        .join();
        // Never panic here: a test that already failed would abort instead
        // of reporting its own failure.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop the test database: {e}"),
            Err(_) => eprintln!("warning: the thread dropping a test database panicked"),
        }
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test Postgres ({e}); run `scripts/services.sh start` or set \
             MAILROOM_TEST_PG_URL"
            )
        });
    tokio::spawn(connection);
    client
}
