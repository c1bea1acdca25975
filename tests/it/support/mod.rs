//! Helpers shared by the integration tests.
//!
//! - `services`: where the real services listen (env var or the services' env file).
//! - `db`: fresh SQLite files and Postgres databases, dropped afterwards.
//! - `app`: `spawn_app`, the application on port 0 with its own store.
//! - `mail`: sending through the real Postfix, fresh mailbox addresses.
//! - `proxy`: a TCP proxy that can be taken down, for outage tests.
//! - `on_both_stores!`: one test body, run on SQLite and on Postgres.

/// Run each named `async fn name(backend: Backend)` of the calling module
/// as two tests, `sqlite::name` and `postgres::name` (so `cargo test
/// postgres` runs one store's share), on a 2-worker runtime.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::support::app::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::support::app::Backend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;

pub mod app;
pub mod db;
pub mod mail;
pub mod proxy;
pub mod services;
