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
//! - [`scenario`]: `--scenario NAME --out DIR` — a whole deployment under
//!   load (smoke, steady, agents, contention, soak): the server in its own
//!   process ([`server`], or `--target URL`), N agents on WebSockets
//!   ([`swarm`]), M mails injected at a rate ([`inject`]), a report with
//!   plots ([`report`], [`plot`], [`sample`]).
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
mod inject;
mod logs;
mod mailgen;
mod plot;
mod prom;
mod report;
mod routing;
mod sample;
mod scenario;
mod search;
mod server;
mod stats;
mod swarm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mailroom-load",
    version,
    about = "Load tests and measurements for mailroom, against real servers on loopback",
    args_conflicts_with_subcommands = true
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
    command: Option<Command>,
    #[command(flatten)]
    scenario: scenario::Args,
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
    /// Internal: what `mailroom serve --config FILE` does, in this binary,
    /// so that `--scenario` runs the server in a process of its own.
    #[command(name = "__serve", hide = true)]
    Serve {
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Serve { config }) = &cli.command {
        // Before any subscriber is installed: the server installs its own.
        return server::serve(config);
    }
    let Some(command) = cli.command else {
        if cli.scenario.scenario.is_none() {
            use clap::CommandFactory as _;
            Cli::command().print_help()?;
            anyhow::bail!("give a subcommand or --scenario NAME --out DIR");
        }
        return run_scenario(cli.scenario);
    };
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
        match command {
            Command::Ingest(args) => ingest::run(args, &counts).await,
            Command::Routing(args) => routing::run(args, &counts).await,
            Command::Search(args) => search::run(args, &counts).await,
            Command::Serve { .. } => unreachable!("handled above"),
        }
    })
}

/// `--scenario`: the server is another process, so the harness may use
/// both cores for its agents and injectors (they share them with the
/// server, the store and the mail servers; the report gives each one's
/// CPU share).
fn run_scenario(args: scenario::Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(scenario::run(args))
}
