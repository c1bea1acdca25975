//! Shared by the store benches (`threading`, `store_claim`): which mode
//! criterion runs in, a fresh store on SQLite or Postgres with one account,
//! its queue and some agents, and the Postgres database's lifetime.
//!
//! A directory module (`benches/support/mod.rs`), not `benches/support.rs`:
//! cargo would take the latter for a bench target of its own.

#![allow(dead_code)] // each bench uses part of it

use mailroom::domain::{AccountId, AgentId, QueueId, Role, Strategy};
use mailroom::store::{AgentSpec, QueueSpec, Store};
use tokio_postgres::NoTls;

/// The account's key: subject tokens read `[BNCH#123]`.
pub const ACCOUNT_KEY: &str = "BNCH";

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the same
/// binary without it, and criterion then runs each bench once (`Mode::Test`,
/// see criterion's `configure_from_args`). The benches size their fixtures
/// on this, so that the test suite runs them in seconds.
pub fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The Postgres admin URL: `MAILROOM_TEST_PG_URL` from the environment,
/// else from the env file `scripts/services.sh start` writes (as the tests
/// read it). `Err` says why there is none.
pub fn pg_admin_url() -> Result<String, String> {
    const NAME: &str = "MAILROOM_TEST_PG_URL";
    if let Some(v) = std::env::var(NAME).ok().filter(|v| !v.is_empty()) {
        return Ok(v);
    }
    let dir = std::env::var("MAILROOM_SERVICES_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/var/tmp/mailroom-services".into());
    let file = format!("{dir}/env");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .find(|(k, _)| k.trim() == NAME)
        .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "{NAME} is neither set nor in {file} (run `scripts/services.sh start`, or export it)"
            )
        })
}

/// Say once, on stdout where criterion's figures go, that a Postgres group
/// was not run and why. Never a figure in its place.
pub fn skip_postgres(bench: &str, why: &str) {
    println!("{bench}/postgres: NOT RUN — {why}");
}

/// Where a bench store lives; dropping it removes the database.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Db {
    /// A fresh SQLite file in a temporary directory: its URL and guard.
    pub fn sqlite() -> (String, Db) {
        let dir = tempfile::Builder::new()
            .prefix("mailroom-bench-")
            .tempdir()
            .expect("tempdir");
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        (url, Db::Sqlite(dir))
    }

    /// A fresh database `mailroom_bench_<random>` on the server of
    /// `admin_url`: its URL and guard. Panics if the server cannot be
    /// reached: the URL was given, so a failure is a broken setup, not a
    /// reason to skip.
    pub async fn postgres(admin_url: &str) -> (String, Db) {
        let name = format!("mailroom_bench_{:016x}", rand::random::<u64>());
        let mut url = url::Url::parse(admin_url).expect("MAILROOM_TEST_PG_URL is a URL");
        url.set_path(&format!("/{name}"));
        let (client, conn) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres at MAILROOM_TEST_PG_URL: {e}"));
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the bench database");
        drop(client);
        let _ = conn.await;
        (
            url.to_string(),
            Db::Postgres {
                admin_url: admin_url.to_string(),
                name,
            },
        )
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Db::Postgres { admin_url, name } = self else {
            return; // the TempDir removes the file
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop may run on a runtime's thread, which must not block on
        // another runtime: a thread of its own drops the database, and we
        // wait for it. WITH (FORCE) ends the pool's idle connections.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin_url, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: could not drop a bench database: {done:?}");
        }
    }
}

/// A migrated store with one ring_all queue `bench` of `agents` agents
/// (`agent00`, …, capacity 1,000,000 so that they never fill up) and one
/// account `BNCH` on that queue, whose IMAP/SMTP point at port 1 (no
/// mailbox runs: the benches call the store directly).
pub struct Fixture {
    pub store: Store,
    pub account: AccountId,
    pub queue: QueueId,
    pub agents: Vec<AgentId>,
}

pub async fn fixture(url: &str, agents: usize) -> Fixture {
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let mut ids = Vec::with_capacity(agents);
    let mut names = Vec::with_capacity(agents);
    for i in 0..agents {
        let username = format!("agent{i:02}");
        let agent = store
            .upsert_agent(AgentSpec {
                username: username.clone(),
                name: format!("Agent {i}"),
                email: None,
                role: Role::Agent,
                capacity: 1_000_000,
                password_hash: None,
            })
            .await
            .expect("agent");
        ids.push(agent.id);
        names.push(username);
    }
    let queue = store
        .upsert_queue(QueueSpec {
            name: "bench".into(),
            strategy: Strategy::RingAll,
            offer_timeout_secs: 30,
            sticky_secs: 0,
            retry_backoff_secs: 5,
            max_simultaneous_offers: None,
            auto_pause_after_missed: None,
            disposition_required: false,
            agents: names,
        })
        .await
        .expect("queue");
    let account = store
        .upsert_account(
            mailroom::config::parse_account(&serde_json::json!({
                "key": ACCOUNT_KEY, "address": "support@example.test", "queue": "bench",
                "imap": {"host": "127.0.0.1", "port": 1, "tls": "none", "username": "u", "password": "p"},
                "smtp": {"host": "127.0.0.1", "port": 1, "tls": "none", "username": "u", "password": "p"}
            }))
            .expect("account spec"),
        )
        .await
        .expect("account");
    Fixture {
        store,
        account: account.id,
        queue: queue.id,
        agents: ids,
    }
}
