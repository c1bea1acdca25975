//! The one integration test binary. Each module tests one part against real
//! services (see `support`); new tests go in the module of the part they test:
//!
//! - `api`: HTTP endpoints (auth, admin, health) against a spawned app.
//! - `ws`: WebSocket sessions against a spawned app.
//! - `cli`: the `mailroom` binary itself (config errors, migrate, signals).
//! - `store`: the store contract suite, run on SQLite and on Postgres.
//! - `presence`: the presence contract suite, run on memory and on Redis.
//! - `ingest`: mail through Postfix and Dovecot into interactions (IDLE, threading, quarantine).
//! - `ingest_faults`: corrupt and huge mail, UIDVALIDITY change, IMAP outage, a crash mid-burst.
//! - `routing`: offers over real WebSockets: reject, accept, taken, timeout, pause, the 50-way race.
//! - `transfer`: transfer to a queue and to an agent, close, transfer targets, and the supervisor's queue and agent views, force-pause and logout.
//! - `compose`: reply, reply-all, forward and new mail through the outbox to Postfix and back through Dovecot; uploads.
//! - `desk`: drafts, notes, tags, sub-status, unread.
//! - `downloads`: attachments, `.eml`, zip, PDF transcripts, canned answers.
//! - `permissions`: who may do what, as a matrix over every interaction endpoint.
//! - `listing`: the interactions list: scopes, filters, read rights in the query, the cursor.
//! - `contacts`: contacts (create, edit, search, merge) and the journey.
//! - `imap`: the IMAP session against Dovecot (login, TLS, fetch, IDLE).
//! - `corpus`: every corpus and fixture mail parses or errors, never panics.
//! - `fuzz`: a bounded random run over parsing and reply matching.
//! - `web`: the agent desktop served at `/` (security headers, types, ETags, 404s, API routes win).

mod api;
mod cli;
mod compose;
mod contacts;
mod corpus;
mod desk;
mod downloads;
mod fuzz;
mod imap;
mod ingest;
mod ingest_faults;
mod listing;
mod permissions;
mod presence;
mod routing;
mod store;
mod support;
mod transfer;
mod web;
mod ws;
