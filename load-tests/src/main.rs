//! `mailroom-load`: measures mailroom against the real servers it talks to
//! in production (Dovecot, Postfix, Postgres), on loopback.
//!
//! One subcommand per measurement, each in its own module:
//!
//! - [`ingest`]: mails appended to Dovecot → interactions committed, in
//!   mails/s, and the app's own `mailroom_ingest_latency_seconds` (EXISTS →
//!   commit); `--trickle N` measures that path one mail at a time.
//! - [`routing`]: mails appended one at a time → `offer` frames at agents
//!   connected over WebSockets (APPEND → offer, EXISTS → offer, accept →
//!   assigned, lost and duplicated); `--taken` times taken-by-another
//!   reaching every other agent of a ring_all queue.
//!
//! Shared pieces, meant to be reused by the scenarios of issue #7 (agents,
//! floods, `--target URL`):
//!
//! - [`app`]: mailroom started in-process on a fresh store (optionally with
//!   a team of agents in its queue), its HTTP surface (login, account
//!   status, `/metrics`), and the services env file;
//! - [`agents`]: agents over real WebSockets, each frame stamped on arrival;
//! - [`mailgen`]: realistic customer mail (sizes, MIME shapes, attachments);
//! - [`prom`]: reading histograms out of Prometheus text, with percentiles
//!   interpolated inside buckets;
//! - [`stats`]: exact percentiles of samples we timed ourselves;
//! - [`logs`]: the app's tracing output, to a file if asked, with every
//!   warning and error counted for the report.

mod agents;
mod app;
mod ingest;
mod logs;
mod mailgen;
mod prom;
mod routing;
mod search;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mailroom-load",
    version,
    about = "Load tests and measurements for mailroom, against real servers on loopback"
)]
struct Cli {
    /// Write mailroom's log here (it is otherwise only counted: warnings and
    /// errors are summarised in the report).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// Tracing filter for `--log`, e.g. `info` or `info,mailroom=debug`.
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest throughput and latency: append mail to a fresh Dovecot mailbox
    /// and time mailroom committing it.
    Ingest(ingest::Args),
    /// Routing latency: mail appended to Dovecot → offer at agents over
    /// WebSockets, accept → assigned; `--taken`: taken-by-another reaching
    /// every other agent.
    Routing(routing::Args),
    /// The interactions list, search and advanced search on a Postgres
    /// database filled with a contact center's year (p50/p95 over HTTP,
    /// `--explain` for the plans).
    Search(search::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let counts = logs::init(cli.log.as_deref(), &cli.log_level)?;
    // Two workers: the harness's own clients (IMAP appends, polls) are
    // light, and the app under test runs on its own threads
    // (`spawn_in_thread`); on a 2-core machine more would only compete with
    // it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Ingest(args) => ingest::run(args, &counts).await,
            Command::Routing(args) => routing::run(args, &counts).await,
            Command::Search(args) => search::run(args, &counts).await,
        }
    })
}
