//! `mailroom-load routing`: how long a mail takes to reach an agent as an
//! offer, and how long "taken by another" takes to reach everyone else.
//!
//! Both modes start mailroom in this process on a fresh store, with one
//! account on a fresh Dovecot mailbox and a queue of `--agents` agents
//! (capacity 1,000,000 each, so nobody ever fills up), each logged in and
//! connected over a real WebSocket. Mail is appended one at a time, each
//! once the previous one is settled and the mailbox is back in IDLE, so
//! every figure is the notify path without batching. Every subject carries
//! a token unique to its mail, so an `offer` frame (which shows the subject)
//! names its mail: that is how a mail lost (never offered) or duplicated
//! (offered under two interactions) shows.
//!
//! - **Mails** (default, `--mails N`): every agent accepts every offer at
//!   once. Measured per mail: APPEND → first `offer` frame at an agent, the
//!   winner's accept → `assigned`, the fan-out (first → last agent offered);
//!   and mailroom's own part, `mailroom_exists_to_offer_seconds` (EXISTS →
//!   offer), exact per mail (the histogram's sum grows by one observation per
//!   mail), split the same way into ingest's EXISTS → commit
//!   (`mailroom_ingest_latency_seconds`) and the rest, commit → offer; and
//!   as the histograms read, with `mailroom_offer_latency_seconds` (enqueue
//!   → offer, one observation per agent offered).
//! - **Taken** (`--taken`, ring_all, default 50 agents): per round every
//!   agent gets the offer, one agent chosen at random accepts, and the time
//!   from its accept leaving to each other agent's
//!   `offer_rescinded{reason:"taken"}` arriving is measured; also from the
//!   winner's `assigned` frame's server `at` (ms). Each round must end with
//!   exactly one `assigned` and K − 1 `taken`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use mailroom::domain::Strategy;
use mailroom::mail::imap::ImapSession;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::agents::{Agents, Answer, Event, Kind, interaction_of_req};
use crate::app::{
    ACCOUNT, Mailroom, Services, StoreArg, Team, load_average, peak_rss_mib, process_cpu_seconds,
};
use crate::ingest::{Outcome, append_json_line, histogram_json, round3, tail};
use crate::logs::LogCounts;
use crate::mailgen::MailGen;
use crate::prom::{Estimate, Histogram, ms};
use crate::stats::Summary;

const EXISTS_TO_OFFER: &str = "mailroom_exists_to_offer_seconds";
const OFFER_LATENCY: &str = "mailroom_offer_latency_seconds";
const INGEST_LATENCY: &str = "mailroom_ingest_latency_seconds";
const OFFERS: &str = "mailroom_offers_total";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const CAPACITY: u32 = 1_000_000;
/// How often the wait for IDLE polls the account's status.
const POLL: Duration = Duration::from_millis(2);
/// The pause between seeing `idle: true` and appending (as ingest's
/// trickle): the status flips just before IDLE is sent, and a mail appended
/// in that gap would be announced at once, without Dovecot's usual delay.
const SETTLE: Duration = Duration::from_millis(100);
/// After the last mail, how long to keep listening for frames that should
/// not come (a second interaction for a mail, a second `assigned`).
const TAIL_LISTEN: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Mails to append, one at a time (each once the previous one was
    /// offered and accepted, and the mailbox is back in IDLE).
    #[arg(long, default_value_t = 200, value_name = "N")]
    mails: u64,
    /// Measure taken-by-another instead: per round, one random agent
    /// accepts and every other agent must hear `offer_rescinded{taken}`.
    #[arg(long, conflicts_with = "mails")]
    taken: bool,
    /// Rounds of `--taken` (one mail each).
    #[arg(long, default_value_t = 100, value_name = "R", requires = "taken")]
    rounds: u64,
    /// Agents in the queue, all connected (default 5, or 50 with `--taken`).
    #[arg(long, value_name = "K")]
    agents: Option<usize>,
    /// Experiment: set TCP_NODELAY on the server's side of the agents'
    /// connections (mailroom leaves Nagle's algorithm on, so a frame right
    /// after another can wait ~40 ms for the client's delayed ACK).
    #[arg(long)]
    server_nodelay: bool,
    /// The queue's strategy (`--taken` needs ring_all).
    #[arg(long, default_value = "ring_all", value_name = "STRATEGY")]
    strategy: Strategy,
    /// `sqlite` (a file in a temporary directory) or a store URL such as
    /// postgres://postgres@127.0.0.1:5432/mailroom_load_1 (an empty
    /// database; it is migrated and left in place).
    #[arg(long, default_value = "sqlite", value_name = "sqlite|URL")]
    store: StoreArg,
    /// Append the figures to FILE as one JSON line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// How long one mail may take to be offered and settled before it
    /// counts as lost (and the run moves on).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    stall_secs: u64,
    /// The env file written by `scripts/services.sh start`.
    #[arg(
        long,
        default_value = "/var/tmp/mailroom-services/env",
        value_name = "FILE"
    )]
    services_env: PathBuf,
}

/// An offer as one agent received it.
#[derive(Debug)]
struct Offered {
    offer_id: Value,
    at: Instant,
}

/// A frame that settles an interaction (`assigned`, `offer_rescinded`), as
/// one agent received it.
#[derive(Debug)]
struct Heard {
    agent: usize,
    at: Instant,
    wall: DateTime<Utc>,
    server_at: Option<DateTime<Utc>>,
}

/// Everything the agents heard about one interaction.
#[derive(Debug, Default)]
struct Tally {
    offers: BTreeMap<usize, Offered>,
    accept_sent: HashMap<usize, Instant>,
    /// Answers to accepts, by agent: `ok`, or the error's code.
    answered: HashMap<usize, String>,
    assigned: Vec<Heard>,
    taken: Vec<Heard>,
    /// Rescinds for other reasons (timeout, cancelled), by agent.
    other_rescinds: Vec<(usize, String)>,
}

impl Tally {
    fn first_offer(&self) -> Option<&Offered> {
        self.offers.values().min_by_key(|o| o.at)
    }

    fn last_offer(&self) -> Option<&Offered> {
        self.offers.values().max_by_key(|o| o.at)
    }

    /// Every accept sent has its answer, and someone was assigned.
    fn settled(&self) -> bool {
        !self.assigned.is_empty()
            && self
                .accept_sent
                .keys()
                .all(|a| self.answered.contains_key(a))
    }
}

/// What the agents heard, by interaction and by mail.
#[derive(Default)]
struct Ledger {
    tallies: HashMap<String, Tally>,
    /// Mail index → the interactions offered for it, in order.
    mails: BTreeMap<u64, Vec<String>>,
    /// Offers whose subject names no mail of this run.
    strays: u64,
    /// Error frames that answer no accept of ours, and sockets that ended.
    trouble: Vec<String>,
}

impl Ledger {
    fn apply(&mut self, generator: &MailGen, ev: Event) {
        let frame = match ev.kind {
            Kind::Frame(f) => f,
            Kind::AcceptSent { interaction } => {
                self.tallies
                    .entry(interaction)
                    .or_default()
                    .accept_sent
                    .insert(ev.agent, ev.at);
                return;
            }
            Kind::Closed => {
                self.trouble
                    .push(format!("agent {}'s socket ended", ev.agent));
                return;
            }
        };
        let server_at = frame["at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let interaction = frame["interaction_id"].as_str().unwrap_or_default();
        let heard = Heard {
            agent: ev.agent,
            at: ev.at,
            wall: ev.wall,
            server_at,
        };
        match frame["type"].as_str().unwrap_or_default() {
            "offer" => {
                let Some(mail) = frame["subject"]
                    .as_str()
                    .and_then(|s| generator.index_of_subject(s))
                else {
                    self.strays += 1;
                    return;
                };
                let ids = self.mails.entry(mail).or_default();
                if !ids.iter().any(|i| i == interaction) {
                    ids.push(interaction.to_string());
                }
                self.tallies
                    .entry(interaction.to_string())
                    .or_default()
                    .offers
                    .insert(
                        ev.agent,
                        Offered {
                            offer_id: frame["offer_id"].clone(),
                            at: ev.at,
                        },
                    );
            }
            "assigned" => self
                .tallies
                .entry(interaction.to_string())
                .or_default()
                .assigned
                .push(heard),
            "offer_rescinded" => {
                let t = self.tallies.entry(interaction.to_string()).or_default();
                match frame["reason"].as_str() {
                    Some("taken") => t.taken.push(heard),
                    other => t
                        .other_rescinds
                        .push((ev.agent, other.unwrap_or("?").to_string())),
                }
            }
            kind @ ("ok" | "error") => {
                let answer = if kind == "ok" {
                    "ok".to_string()
                } else {
                    frame["code"].as_str().unwrap_or("?").to_string()
                };
                match interaction_of_req(&frame["req_id"]) {
                    Some(i) => {
                        self.tallies
                            .entry(i.to_string())
                            .or_default()
                            .answered
                            .insert(ev.agent, answer);
                    }
                    None if kind == "error" => self
                        .trouble
                        .push(format!("agent {}: unexpected {frame}", ev.agent)),
                    None => {}
                }
            }
            _ => {}
        }
    }

    /// The first interaction offered for mail `index`, and its tally.
    fn of_mail(&self, index: u64) -> Option<(&str, &Tally)> {
        let id = self.mails.get(&index)?.first()?;
        Some((id.as_str(), self.tallies.get(id)?))
    }
}

/// The agents' events, applied to the ledger as they come.
struct Listener {
    agents: Agents,
    ledger: Ledger,
}

impl Listener {
    /// Apply events until `done` holds (true) or `deadline` passes (false).
    async fn until(
        &mut self,
        generator: &MailGen,
        deadline: Instant,
        done: impl Fn(&Ledger) -> bool,
    ) -> bool {
        loop {
            if done(&self.ledger) {
                return true;
            }
            match self.agents.next(deadline).await {
                Some(ev) => self.ledger.apply(generator, ev),
                None => return done(&self.ledger),
            }
        }
    }
}

pub async fn run(args: Args, logs: &LogCounts) -> anyhow::Result<()> {
    let k = args.agents.unwrap_or(if args.taken { 50 } else { 5 });
    if k == 0 {
        bail!("--agents must be at least 1");
    }
    if args.taken && (k < 2 || args.strategy != Strategy::RingAll) {
        bail!("--taken needs a ring_all queue of at least 2 agents");
    }
    let n = if args.taken { args.rounds } else { args.mails };
    if n == 0 {
        bail!("--mails and --rounds must be at least 1");
    }
    let services = Services::load(&args.services_env)?;
    let load_before = load_average();
    let mailbox = services.fresh_mailbox("route");
    let generator = MailGen::tagged(&mailbox);
    let team = Team {
        agents: (0..k).map(|i| format!("agent{i:03}")).collect(),
        strategy: args.strategy,
        capacity: CAPACITY,
        // Nothing in a round waits for a timeout; a long one keeps a slow
        // round from turning into a second offer.
        offer_timeout_secs: 300,
        password: format!("{:032x}", rand::random::<u128>()),
    };

    eprintln!("starting mailroom on {mailbox} with {k} agents …");
    let app = Mailroom::start_with(&args.store, &services, &mailbox, None, Some(&team)).await?;
    let answer = if args.taken {
        Answer::WhenTold
    } else {
        Answer::AcceptAll
    };
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let mut server_line = "as shipped: Nagle's algorithm on (actix-web's default)".to_string();
    let measured = match Agents::connect(&app, &team, answer).await {
        Err(e) => Err(e),
        Ok(agents) => {
            if args.server_nodelay {
                let n = app.set_server_nodelay();
                server_line = format!(
                    "TCP_NODELAY set by the harness on {n} accepted sockets (--server-nodelay; mailroom does not set it)"
                );
            }
            let mut listener = Listener {
                agents,
                ledger: Ledger::default(),
            };
            let result = match app
                .wait_idle(Duration::from_secs(60), Duration::from_millis(20))
                .await
            {
                Err(e) => Err(e),
                Ok(_) => {
                    if args.taken {
                        taken(
                            &app,
                            &services,
                            &mailbox,
                            &generator,
                            &mut listener,
                            &args,
                            k,
                        )
                        .await
                    } else {
                        mails(
                            &app,
                            &services,
                            &mailbox,
                            &generator,
                            &mut listener,
                            &args,
                            k,
                        )
                        .await
                    }
                }
            };
            listener.agents.close().await;
            result
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    let load_after = load_average();
    let stored = stored_once(&app, &generator, n).await;
    let tail = tail(&app, logs).await;
    let backend = app.backend;
    app.stop().await?;
    let mut outcome = measured?;
    let mut tail = tail?;
    let (stored_lines, stored_json) = stored?;
    tail.lines.splice(0..0, stored_lines);
    tail.json.extend(stored_json);

    let mode = if args.taken { "taken" } else { "mails" };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let store = match &args.store {
        StoreArg::TempSqlite => "sqlite (temporary file)".to_string(),
        StoreArg::Url(url) => format!("{backend} ({})", mailroom::secret::redact_url(url)),
    };
    println!();
    println!("mailroom-load routing — {mode}");
    println!("  store     {store}");
    println!(
        "  queue     {} with {k} agents (capacity {CAPACITY} each), all connected over WebSockets",
        args.strategy
    );
    println!("  sockets   {server_line}");
    println!("  build     {profile} (mailroom and harness in one process)");
    println!(
        "  machine   {cpus} CPUs; load average {} before the run, {} after",
        load_before.map_or("?".into(), |l| format!("{l:.2}")),
        load_after.map_or("?".into(), |l| format!("{l:.2}"))
    );
    for line in outcome.lines.iter().chain(&tail.lines) {
        println!("  {line}");
    }
    if let Some(cpu) = cpu {
        let rss = peak_rss_mib().map_or(String::new(), |m| format!("; peak RSS {m:.0} MiB"));
        println!(
            "  cpu       {cpu:.1} s in this process (mailroom + harness) over {elapsed:.1} s = {:.2} cores{rss}",
            cpu / elapsed.max(1e-9)
        );
    }
    if let Some(path) = &args.json {
        let mut j = serde_json::Map::new();
        j.insert("at".into(), json!(Utc::now().to_rfc3339()));
        j.insert("command".into(), json!("routing"));
        j.insert("mode".into(), json!(mode));
        j.insert("store".into(), json!(backend));
        j.insert("strategy".into(), json!(args.strategy.as_str()));
        j.insert("agents".into(), json!(k));
        j.insert("server_nodelay".into(), json!(args.server_nodelay));
        j.insert("profile".into(), json!(profile));
        j.insert("cpus".into(), json!(cpus));
        j.insert("loadavg_before".into(), json!(load_before));
        j.insert("loadavg_after".into(), json!(load_after));
        j.append(&mut outcome.json);
        j.append(&mut tail.json);
        j.insert("cpu_s".into(), json!(cpu.map(round3)));
        j.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
        append_json_line(path, &Value::Object(j))?;
    }
    Ok(())
}

/// Append mail `index` once the mailbox waits in IDLE; returns when the
/// APPEND was sent and when Dovecot answered it.
async fn append_when_idle(
    app: &Mailroom,
    session: &mut ImapSession,
    generator: &MailGen,
    index: u64,
    stall: Duration,
) -> anyhow::Result<(Instant, Instant)> {
    app.wait_idle(stall, POLL).await?;
    tokio::time::sleep(SETTLE).await;
    let mail = generator.mail(index);
    let sent = Instant::now();
    session
        .append("INBOX", None, &mail)
        .await
        .with_context(|| format!("APPEND of mail {index}"))?;
    Ok((sent, Instant::now()))
}

/// The exact EXISTS → offer of the mail just offered, and its EXISTS →
/// commit (ingest's part of it): what each histogram's sum grew by, when it
/// grew by exactly one observation.
struct Exact {
    offer: Histogram,
    commit: Histogram,
}

/// One mail's exact figures, in seconds.
struct Split {
    exists_to_offer: Option<f64>,
    exists_to_commit: Option<f64>,
}

impl Exact {
    async fn new(app: &Mailroom) -> anyhow::Result<Exact> {
        let text = app.metrics().await?;
        Ok(Exact {
            offer: exists_to_offer(&text),
            commit: exists_to_commit(&text),
        })
    }

    async fn next(&mut self, app: &Mailroom) -> anyhow::Result<Split> {
        let text = app.metrics().await?;
        let (offer, commit) = (exists_to_offer(&text), exists_to_commit(&text));
        let one = |d: Histogram| (d.count == 1).then_some(d.sum);
        let split = Split {
            exists_to_offer: one(offer.since(&self.offer)),
            exists_to_commit: one(commit.since(&self.commit)),
        };
        (self.offer, self.commit) = (offer, commit);
        Ok(split)
    }
}

/// The exact splits of every mail that had both, as three series.
#[derive(Default)]
struct Splits {
    exists_to_offer: Vec<f64>,
    exists_to_commit: Vec<f64>,
    commit_to_offer: Vec<f64>,
    untimed: u64,
}

impl Splits {
    fn push(&mut self, s: Split) {
        let Some(offer) = s.exists_to_offer else {
            self.untimed += 1;
            return;
        };
        self.exists_to_offer.push(offer);
        if let Some(commit) = s.exists_to_commit {
            self.exists_to_commit.push(commit);
            self.commit_to_offer.push(offer - commit);
        }
    }

    fn report(&self, r: &mut Report) {
        r.dist(
            "EXISTS → offer, exact per mail (each mail's own observation of mailroom_exists_to_offer_seconds):",
            "exists_to_offer_ms",
            &self.exists_to_offer,
        );
        r.dist(
            "… of which EXISTS → commit (ingest: fetch, parse, one transaction; mailroom_ingest_latency_seconds):",
            "exists_to_commit_ms",
            &self.exists_to_commit,
        );
        r.dist(
            "… and commit → offer (enqueue, the queue's reads, offers recorded, frames pushed; the difference):",
            "commit_to_offer_ms",
            &self.commit_to_offer,
        );
        if self.untimed > 0 {
            r.lines.push(format!(
                "note      {} mails could not be timed on their own (their offer did not add exactly one observation)",
                self.untimed
            ));
        }
        r.json.insert("untimed".into(), json!(self.untimed));
    }
}

fn exists_to_offer(text: &str) -> Histogram {
    Histogram::parse(text, EXISTS_TO_OFFER, &[]).unwrap_or_default()
}

fn exists_to_commit(text: &str) -> Histogram {
    Histogram::parse(text, INGEST_LATENCY, &[("account", ACCOUNT)]).unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn bar(n: u64, prefix: &'static str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos:>6}/{len} {elapsed:>4}")
            .context("progress template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    Ok(bar)
}

/// Samples in seconds, reported as one labelled distribution.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn dist(&mut self, label: &str, key: &str, samples: &[f64]) {
        if let Some(s) = Summary::of(samples) {
            self.lines.push(label.to_string());
            self.lines.push(format!("          {}", s.line()));
            self.json.insert(key.into(), s.json_ms());
        }
    }

    /// A histogram's change over the run, as its buckets tell it.
    fn histogram(&mut self, label: &str, key: &str, h: &Histogram) {
        let q = |p: f64| h.quantile(p).map_or("-".to_string(), |e| e.to_string());
        let max = match h.max() {
            Some(Estimate::Within { lower, upper, .. }) => {
                format!("in ({}, {}]", ms(lower), ms(upper))
            }
            Some(e) => e.to_string(),
            None => "-".into(),
        };
        self.lines.push(format!(
            "{label} (n {}; percentiles interpolated inside the buckets):",
            h.count
        ));
        self.lines.push(format!(
            "          p50 {}  p90 {}  p99 {}  max {max}  (mean {}, exact)",
            q(0.5),
            q(0.9),
            q(0.99),
            h.mean().map_or("-".into(), ms)
        ));
        self.json.insert(key.into(), histogram_json(h));
    }

    /// The server's own figures over the run: both routing histograms and
    /// the offers it counted by outcome.
    fn server(&mut self, before: &str, after: &str) {
        let delta = |name: &str| {
            let a = Histogram::parse(after, name, &[]).unwrap_or_default();
            let b = Histogram::parse(before, name, &[]).unwrap_or_default();
            a.since(&b)
        };
        self.histogram(
            "EXISTS → offer, mailroom_exists_to_offer_seconds (one per mail)",
            "exists_to_offer_histogram_ms",
            &delta(EXISTS_TO_OFFER),
        );
        self.histogram(
            "enqueue → offer, mailroom_offer_latency_seconds (one per agent offered)",
            "offer_latency_histogram_ms",
            &delta(OFFER_LATENCY),
        );
        let count = |outcome: &str| {
            let total = |text: &str| crate::prom::total(text, OFFERS, &[("outcome", outcome)]);
            (total(after) - total(before)) as u64
        };
        let outcomes = [
            "offered",
            "accepted",
            "taken",
            "rejected",
            "expired",
            "cancelled",
        ];
        let counted: Vec<String> = outcomes
            .iter()
            .map(|o| format!("{} {o}", count(o)))
            .collect();
        self.lines
            .push(format!("offers    server counted {}", counted.join(", ")));
        for o in outcomes {
            self.json.insert(format!("offers_{o}"), json!(count(o)));
        }
    }

    fn done(self) -> Outcome {
        Outcome {
            lines: self.lines,
            json: self.json,
            appended_at: Vec::new(),
        }
    }
}

/// Every agent accepts every offer; one mail at a time.
async fn mails(
    app: &Mailroom,
    services: &Services,
    mailbox: &str,
    generator: &MailGen,
    listener: &mut Listener,
    args: &Args,
    k: usize,
) -> anyhow::Result<Outcome> {
    let n = args.mails;
    let stall = Duration::from_secs(args.stall_secs);
    // ring_all offers to everyone; the other strategies to one agent.
    let fan_out = if args.strategy == Strategy::RingAll {
        k
    } else {
        1
    };
    let mut session = ImapSession::connect(&services.imap(mailbox), CONNECT_TIMEOUT)
        .await
        .context("the harness's IMAP login")?;
    let before = app.metrics().await?;
    let mut exact = Exact::new(app).await?;
    let progress = bar(n, "offered")?;
    let (mut append_to_offer, mut answered_to_offer, mut accept_to_assigned) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut spread, mut append_rtt, mut splits) = (Vec::new(), Vec::new(), Splits::default());
    let mut unsettled = 0u64;
    for i in 0..n {
        let (sent, answered) = append_when_idle(app, &mut session, generator, i, stall).await?;
        append_rtt.push(secs(answered - sent));
        let settled = listener
            .until(generator, answered + stall, |l| {
                l.of_mail(i)
                    .is_some_and(|(_, t)| t.offers.len() >= fan_out && t.settled())
            })
            .await;
        progress.inc(1);
        let Some((_, tally)) = listener.ledger.of_mail(i).filter(|_| settled) else {
            unsettled += 1;
            continue;
        };
        if let Some(first) = tally.first_offer() {
            append_to_offer.push(secs(first.at - sent));
            answered_to_offer.push(secs(first.at.saturating_duration_since(answered)));
            if let Some(last) = tally.last_offer().filter(|_| tally.offers.len() > 1) {
                spread.push(secs(last.at - first.at));
            }
        }
        if let Some(winner) = tally.assigned.first()
            && let Some(sent) = tally.accept_sent.get(&winner.agent)
        {
            accept_to_assigned.push(secs(winner.at - *sent));
        }
        splits.push(exact.next(app).await?);
    }
    progress.finish();
    session.logout().await;
    listener
        .until(generator, Instant::now() + TAIL_LISTEN, |_| false)
        .await;
    let after = app.metrics().await?;

    let mut r = Report::default();
    r.lines.push(format!(
        "mails     {n} appended one at a time, each once the previous one was offered and accepted and the mailbox was back in IDLE (+{} ms); every agent accepts every offer",
        SETTLE.as_millis()
    ));
    r.json.insert("mails".into(), json!(n));
    r.dist(
        "APPEND sent → first offer frame at an agent (includes Dovecot's fixed 500 ms IDLE notification delay):",
        "append_to_offer_ms",
        &append_to_offer,
    );
    r.dist(
        "APPEND answered → first offer frame:",
        "answered_to_offer_ms",
        &answered_to_offer,
    );
    splits.report(&mut r);
    r.dist(
        &format!("first → last of the {fan_out} agents offered (fan-out, client side):"),
        "offer_spread_ms",
        &spread,
    );
    r.dist(
        "accept sent → assigned received (the winner; every agent accepted at once):",
        "accept_to_assigned_ms",
        &accept_to_assigned,
    );
    r.dist(
        "APPEND round trip (the harness's command to Dovecot):",
        "append_rtt_ms",
        &append_rtt,
    );
    r.server(&before, &after);
    once_lines(&listener.ledger, n, unsettled, &mut r);
    Ok(r.done())
}

/// Lost, duplicated and ownership, as the agents heard it.
fn once_lines(ledger: &Ledger, n: u64, unsettled: u64, r: &mut Report) {
    let lost = (0..n).filter(|i| !ledger.mails.contains_key(i)).count();
    let duplicated = ledger.mails.values().filter(|ids| ids.len() > 1).count();
    // Every interaction offered must have been assigned exactly once.
    let owners_wrong = ledger
        .mails
        .values()
        .flatten()
        .filter(|id| {
            ledger
                .tallies
                .get(*id)
                .is_none_or(|t| t.assigned.len() != 1)
        })
        .count();
    r.lines.push(format!(
        "once      {} of {n} mails offered under exactly one interaction: {lost} lost (never offered), {duplicated} duplicated (offered under two interactions); {owners_wrong} interactions not assigned exactly once; {unsettled} mails not settled within --stall-secs; {} stray offers",
        n as usize - lost - duplicated,
        ledger.strays,
    ));
    for t in ledger.trouble.iter().take(5) {
        r.lines.push(format!("trouble   {t}"));
    }
    r.json.insert("lost".into(), json!(lost));
    r.json.insert("duplicated".into(), json!(duplicated));
    r.json.insert("owners_wrong".into(), json!(owners_wrong));
    r.json.insert("unsettled".into(), json!(unsettled));
    r.json.insert("trouble".into(), json!(ledger.trouble.len()));
}

/// Per round: everyone is offered, one random agent accepts, the others
/// must hear `taken`.
async fn taken(
    app: &Mailroom,
    services: &Services,
    mailbox: &str,
    generator: &MailGen,
    listener: &mut Listener,
    args: &Args,
    k: usize,
) -> anyhow::Result<Outcome> {
    let rounds = args.rounds;
    let stall = Duration::from_secs(args.stall_secs);
    let mut session = ImapSession::connect(&services.imap(mailbox), CONNECT_TIMEOUT)
        .await
        .context("the harness's IMAP login")?;
    let before = app.metrics().await?;
    let mut exact = Exact::new(app).await?;
    let progress = bar(rounds, "rounds")?;
    // Pooled over every loser of every round, and the slowest loser of each
    // round (when the last of the K − 1 knew).
    let (mut accept_to_taken, mut round_max) = (Vec::new(), Vec::new());
    let (mut assigned_at_to_taken, mut server_spread) = (Vec::new(), Vec::new());
    let (mut accept_to_assigned, mut append_to_offer, mut offer_spread) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut splits = Splits::default();
    let (mut incomplete, mut unsettled, mut good, mut wrong) = (0u64, 0u64, 0u64, Vec::new());
    for r in 0..rounds {
        let (sent, answered) = append_when_idle(app, &mut session, generator, r, stall).await?;
        let all_offered = listener
            .until(generator, answered + stall, |l| {
                l.of_mail(r).is_some_and(|(_, t)| t.offers.len() >= k)
            })
            .await;
        progress.inc(1);
        let Some((id, tally)) = listener.ledger.of_mail(r) else {
            unsettled += 1;
            continue;
        };
        if !all_offered {
            incomplete += 1;
        }
        let id = id.to_string();
        if let (Some(first), Some(last)) = (tally.first_offer(), tally.last_offer()) {
            append_to_offer.push(secs(first.at - sent));
            offer_spread.push(secs(last.at - first.at));
        }
        splits.push(exact.next(app).await?);
        let offered: Vec<usize> = tally.offers.keys().copied().collect();
        let winner = offered[rand::random_range(0..offered.len())];
        let offer_id = tally.offers[&winner].offer_id.clone();
        listener.agents.accept(winner, offer_id, &id)?;
        let losers = offered.len() - 1;
        let settled = listener
            .until(generator, Instant::now() + stall, |l| {
                l.tallies.get(&id).is_some_and(|t| {
                    t.settled() && t.answered.contains_key(&winner) && t.taken.len() >= losers
                })
            })
            .await;
        let tally = &listener.ledger.tallies[&id];
        if !settled {
            unsettled += 1;
        }
        let Some(accepted) = tally.accept_sent.get(&winner).copied() else {
            continue;
        };
        let assigned = tally.assigned.iter().find(|h| h.agent == winner);
        if let Some(a) = assigned {
            accept_to_assigned.push(secs(a.at - accepted));
        }
        let mut slowest = Duration::ZERO;
        for h in &tally.taken {
            let d = h.at.saturating_duration_since(accepted);
            slowest = slowest.max(d);
            accept_to_taken.push(secs(d));
            if let Some(at) = assigned.and_then(|a| a.server_at) {
                assigned_at_to_taken.push((h.wall - at).as_seconds_f64());
                if let Some(t) = h.server_at {
                    server_spread.push((t - at).as_seconds_f64());
                }
            }
        }
        if settled {
            round_max.push(secs(slowest));
        }
        let answer = tally.answered.get(&winner).map_or("none", String::as_str);
        if !settled
            || tally.assigned.len() != 1
            || assigned.is_none()
            || tally.taken.len() != losers
            || tally.taken.iter().any(|h| h.agent == winner)
            || !tally.other_rescinds.is_empty()
            || answer != "ok"
        {
            wrong.push(format!(
                "round {r}: {} assigned, {} taken of {losers}, other rescinds {:?}, the winner's answer {answer}",
                tally.assigned.len(),
                tally.taken.len(),
                tally.other_rescinds
            ));
        } else {
            good += 1;
        }
    }
    progress.finish();
    session.logout().await;
    listener
        .until(generator, Instant::now() + TAIL_LISTEN, |_| false)
        .await;
    let after = app.metrics().await?;
    // Extra frames that came after a round was judged (a second assigned, a
    // late taken) count too.
    let mut late = 0;
    for ids in listener.ledger.mails.values() {
        for id in ids {
            let t = &listener.ledger.tallies[id];
            if t.assigned.len() > 1 || t.taken.len() > k - 1 {
                late += 1;
            }
        }
    }

    let mut rep = Report::default();
    rep.lines.push(format!(
        "rounds    {rounds}: one mail each (appended once the mailbox was back in IDLE, +{} ms), offered to all {k} agents, accepted by one chosen at random",
        SETTLE.as_millis()
    ));
    rep.json.insert("rounds".into(), json!(rounds));
    rep.dist(
        &format!(
            "accept sent → offer_rescinded{{taken}} received, each of the {} other agents, all rounds:",
            k - 1
        ),
        "accept_to_taken_ms",
        &accept_to_taken,
    );
    rep.dist(
        &format!(
            "accept sent → the last of the {} others heard taken, per round:",
            k - 1
        ),
        "accept_to_last_taken_ms",
        &round_max,
    );
    rep.dist(
        "the winner's assigned `at` (server, ms) → taken received (client wall clock, same machine):",
        "assigned_at_to_taken_ms",
        &assigned_at_to_taken,
    );
    rep.dist(
        "taken `at` − assigned `at`, both server stamps (ms resolution):",
        "server_assigned_to_taken_ms",
        &server_spread,
    );
    rep.dist(
        "accept sent → assigned received (the winner):",
        "accept_to_assigned_ms",
        &accept_to_assigned,
    );
    rep.dist(
        "APPEND sent → first offer frame (includes Dovecot's 500 ms):",
        "append_to_offer_ms",
        &append_to_offer,
    );
    rep.dist(
        &format!("first → last of the {k} agents offered (fan-out):"),
        "offer_spread_ms",
        &offer_spread,
    );
    splits.report(&mut rep);
    rep.server(&before, &after);
    rep.lines.push(format!(
        "check     {good} of {rounds} rounds had exactly one assigned (the chosen agent, answered ok) and {} taken; {incomplete} rounds not offered to all {k}; {unsettled} not settled within --stall-secs; {late} interactions with extra frames after their round",
        k - 1,
    ));
    for w in wrong.iter().take(5) {
        rep.lines.push(format!("          {w}"));
    }
    for t in listener.ledger.trouble.iter().take(5) {
        rep.lines.push(format!("trouble   {t}"));
    }
    rep.json.insert("good_rounds".into(), json!(good));
    rep.json.insert("wrong_rounds".into(), json!(wrong.len()));
    rep.json.insert("incomplete".into(), json!(incomplete));
    rep.json.insert("unsettled".into(), json!(unsettled));
    rep.json.insert("late_extra".into(), json!(late));
    Ok(rep.done())
}

/// What the store holds: one interaction per mail (by Message-ID), each
/// with an owner.
async fn stored_once(
    app: &Mailroom,
    generator: &MailGen,
    n: u64,
) -> anyhow::Result<(Vec<String>, serde_json::Map<String, Value>)> {
    let store = app.store();
    let interactions = store
        .interactions_of_account(app.account)
        .await
        .map_err(|e| anyhow::anyhow!("listing interactions: {e}"))?;
    let mut found: HashMap<u64, u32> = HashMap::new();
    let mut unowned = 0;
    for interaction in &interactions {
        if interaction.owner.is_none() {
            unowned += 1;
        }
        let messages = store
            .messages(interaction.id)
            .await
            .map_err(|e| anyhow::anyhow!("messages of {}: {e}", interaction.id))?;
        if let Some(i) = messages
            .first()
            .and_then(|m| m.message_id.as_deref())
            .and_then(|id| generator.index_of(id))
        {
            *found.entry(i).or_default() += 1;
        }
    }
    let lost = (0..n).filter(|i| !found.contains_key(i)).count();
    let duplicated = found.values().filter(|c| **c > 1).count();
    let mut j = serde_json::Map::new();
    j.insert("stored_interactions".into(), json!(interactions.len()));
    j.insert("stored_lost".into(), json!(lost));
    j.insert("stored_duplicated".into(), json!(duplicated));
    j.insert("stored_unowned".into(), json!(unowned));
    Ok((
        vec![format!(
            "store     {} interactions; by Message-ID {lost} mails lost, {duplicated} in more than one interaction; {unowned} interactions without an owner",
            interactions.len()
        )],
        j,
    ))
}
