//! # mailroom
//!
//! The email channel of a contact center: mail comes in over IMAP (pushed by
//! IDLE), becomes an **interaction**, is routed through a **queue** and
//! offered to **agents** over WebSockets; exactly one agent owns it and works
//! it until it is closed. See `README.md` and `docs/`.
//!
//! # Layout
//!
//! - [`config`]: `Settings`, parsed once from `config/default.toml`, an
//!   optional file and `MAILROOM__SECTION__KEY` variables; every error is
//!   reported, then the process refuses to start.
//! - [`startup`]: `App::build(settings)` binds (port 0 works) and wires the
//!   store, presence, actors and HTTP server; `run_until_stopped(shutdown)`.
//! - [`telemetry`]: tracing setup (text or JSON). [`metrics`]: every metric
//!   name, unit and description, declared once.
//! - [`domain`]: pure types and rules, no I/O: ids, addresses, enums.
//! - [`mail`]: mail on the wire: parsing (mail-parser, ammonia) and the
//!   IMAP session (async-imap, rustls); no product behaviour.
//! - [`auth`]: password hashing (argon2) and session tokens.
//! - [`store`]: `enum Store { Sqlite, Postgres }` with domain-shaped
//!   methods; migrations; the exactly-one-owner `claim`.
//! - [`presence`]: `enum Presence { Memory, Redis }`: who is online or
//!   paused, with a heartbeat TTL, and on which node.
//! - [`provision`]: upserts the agents, queues and accounts named in the config.
//! - [`actors`]: one actix actor per agent (all of its sockets), per
//!   mailbox (IMAP IDLE and ingest), per queue (routing) and per account's
//!   outbox (`sender`: SMTP delivery, retries, the Sent copy).
//! - [`http`]: one file per resource (health, auth, admin, interactions,
//!   compose, desk, downloads, contacts, supervisor…), the access rule
//!   (`access.rs`), the PDF transcript renderer (`transcript.rs`), the error
//!   mapping, OpenAPI, and `ws/` (route, protocol frames, session actor).
//! - [`secret`]: `Secret`, redacted in `Debug`, for passwords and tokens.

pub mod actors;
pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod presence;
pub mod provision;
pub mod secret;
pub mod startup;
pub mod store;
pub mod telemetry;
