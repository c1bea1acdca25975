//! Helpers shared by the integration tests.
//!
//! - `services`: where the real services listen (env var or the services' env file).
//! - `db`: fresh SQLite files and Postgres databases, dropped afterwards.
//! - `app`: `spawn_app`, the application on port 0 with its own store.
//! - `mail`: sending through the real Postfix, fresh mailbox addresses.

pub mod app;
pub mod db;
pub mod mail;
pub mod services;
