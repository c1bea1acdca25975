//! `mailroom-load --scenario NAME --out DIR`: a whole deployment under load.
//!
//! The server runs in its own process (this binary's hidden `__serve`, or
//! `--server-bin`), or is a running deployment (`--target URL`). N agents
//! ([`crate::swarm`]) log in and hold WebSockets; M mails are injected at a
//! target rate ([`crate::inject`]), each with a token in its subject; every
//! frame is stamped on arrival and matched to its mail. The run is bounded
//! in count and time: at the hard deadline it stops and reports what it has,
//! counting as lost every mail injected and never offered.
//!
//! Scenarios (flags override their counts):
//!
//! | name | agents | mails | store | queue |
//! |---|---|---|---|---|
//! | smoke | 10 | 100 at 20/s | SQLite | ring_all, think 0–200 ms, reject 10 %, reply 20 %, close |
//! | steady | 2,000 | 1,000/s for 60 s over 4 accounts | Postgres | round_robin, think 0–200 ms, reject 5 % |
//! | agents | 10,000 idle | none | SQLite | held ≥ 4 heartbeats (5 s) |
//! | contention | 50 | 200 at 5/s | SQLite | ring_all, think 0–10 ms: all race |
//! | soak | 200 | 20/s for 30 min | SQLite | round_robin, reply 50 %, close |

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::Services;
use crate::inject::{self, Injected, Via};
use crate::mailgen::MailGen;
use crate::prom::Histogram;
use crate::report::{self, P50P99, Report, Timeline};
use crate::sample::{self, Sampler};
use crate::server::{Deployment, Plan, Source, StoreKind};
use crate::swarm::{self, Behaviour, Kind};

const EXISTS_TO_OFFER: &str = "mailroom_exists_to_offer_seconds";
/// After the last mail is settled, how long to keep listening for frames
/// that should not come (a second interaction for a mail).
const TAIL_LISTEN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Name {
    Smoke,
    Steady,
    Agents,
    Contention,
    Soak,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresenceKind {
    Memory,
    Redis,
}

/// The scenario options (top-level flags of `mailroom-load`).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Run a scenario: smoke, steady, agents, contention, soak.
    #[arg(long, value_enum, value_name = "NAME")]
    pub scenario: Option<Name>,
    /// Where report.json, report.txt, the plots and server.log go.
    #[arg(long, value_name = "DIR", requires = "scenario")]
    pub out: Option<PathBuf>,
    /// Agents (overrides the scenario's).
    #[arg(long, value_name = "N", requires = "scenario")]
    pub agents: Option<usize>,
    /// Mails to inject (overrides; default rate × duration).
    #[arg(long, value_name = "M", requires = "scenario")]
    pub mails: Option<u64>,
    /// Target injection rate, mails per second.
    #[arg(long, value_name = "PER_S", requires = "scenario")]
    pub rate: Option<f64>,
    /// Injection window in seconds (steady, soak; with --rate gives --mails);
    /// for `agents`, how long to hold the sockets.
    #[arg(long, value_name = "SECONDS", requires = "scenario")]
    pub duration: Option<f64>,
    /// The store of a server started here.
    #[arg(
        long,
        value_enum,
        value_name = "sqlite|postgres",
        requires = "scenario"
    )]
    pub store: Option<StoreKind>,
    /// The queue's routing strategy (ring_all, round_robin, longest_idle, fewest_active).
    #[arg(long, value_name = "STRATEGY", requires = "scenario")]
    pub strategy: Option<String>,
    /// Think time before answering an offer, ms: `MIN-MAX` (uniform) or `MS`.
    #[arg(long, value_name = "MIN-MAX", requires = "scenario")]
    pub think_ms: Option<String>,
    /// Probability that an agent rejects an offer.
    #[arg(long, value_name = "P", requires = "scenario")]
    pub reject_p: Option<f64>,
    /// Probability that an agent replies once assigned.
    #[arg(long, value_name = "P", requires = "scenario")]
    pub reply_p: Option<f64>,
    /// Do not close interactions once assigned.
    #[arg(long, requires = "scenario")]
    pub no_close: bool,
    /// How mail is injected: through Postfix (smtp) or IMAP APPEND into Dovecot.
    #[arg(long, value_enum, value_name = "smtp|imap", requires = "scenario")]
    pub inject: Option<Via>,
    /// Parallel injection connections.
    #[arg(long, value_name = "N", requires = "scenario")]
    pub connections: Option<usize>,
    /// Accounts (each its own mailbox and mailbox actor) feeding the queue.
    #[arg(long, value_name = "N", requires = "scenario")]
    pub accounts: Option<usize>,
    /// Presence backend of a server started here.
    #[arg(long, value_enum, value_name = "memory|redis", requires = "scenario")]
    pub presence: Option<PresenceKind>,
    /// `ws.heartbeat_secs` of a server started here.
    #[arg(long, value_name = "SECONDS", requires = "scenario")]
    pub heartbeat_secs: Option<u32>,
    /// How long after the last mail is injected the run may still wait for
    /// offers and assignments before it stops (what is missing is lost).
    #[arg(long, value_name = "SECONDS", requires = "scenario")]
    pub settle_secs: Option<u64>,
    /// Use a running deployment (loopback only) instead of starting one.
    #[arg(long, value_name = "URL", requires = "scenario")]
    pub target: Option<String>,
    /// `--target`: the admin who creates the run's agents, queue, accounts.
    #[arg(long, value_name = "USER", default_value = "admin")]
    pub admin_user: String,
    /// `--target`: the admin's password (or env MAILROOM_LOAD_ADMIN_PASSWORD).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "MAILROOM_LOAD_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// `--target`: the server's pid, to measure its RSS and CPU.
    #[arg(long, value_name = "PID", requires = "target")]
    pub server_pid: Option<u32>,
    /// Run this `mailroom` binary (`serve --config …`) instead of this
    /// binary's built-in server.
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub server_bin: Option<PathBuf>,
    /// Keep the store (SQLite directory, Postgres database) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The env file written by `scripts/services.sh start`.
    #[arg(
        long,
        default_value = "/var/tmp/mailroom-services/env",
        value_name = "FILE"
    )]
    pub services_env: PathBuf,
    /// The IMAP server mail is injected into / the accounts read (host:port;
    /// default from the services env).
    #[arg(long, value_name = "HOST:PORT")]
    pub imap_addr: Option<String>,
    /// The SMTP server mail is injected through (host:port).
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp_addr: Option<String>,
    /// The mail domain whose any address Dovecot accepts.
    #[arg(long, value_name = "DOMAIN")]
    pub mail_domain: Option<String>,
}

/// A scenario's settings once defaults and flags are merged.
#[derive(Clone, Debug)]
struct Setup {
    name: Name,
    agents: usize,
    mails: u64,
    rate: f64,
    hold_secs: f64,
    store: StoreKind,
    strategy: String,
    behaviour: Behaviour,
    via: Via,
    connections: usize,
    accounts: usize,
    heartbeat_secs: u32,
    settle: Duration,
}

fn parse_think(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u64, u64) = (
        a.trim().parse().context("--think-ms MIN-MAX")?,
        b.trim().parse().context("--think-ms MIN-MAX")?,
    );
    if b < a {
        bail!("--think-ms: MAX is below MIN");
    }
    Ok((a, b))
}

fn setup(args: &Args, name: Name) -> anyhow::Result<Setup> {
    // (agents, rate, duration s, store, strategy, think, reject, reply, close, accounts, hb)
    let (agents, rate, duration, store, strategy, think, reject, reply, close, accounts, hb) =
        match name {
            Name::Smoke => (
                10,
                20.0,
                5.0,
                StoreKind::Sqlite,
                "ring_all",
                (0, 200),
                0.1,
                0.2,
                true,
                1,
                15,
            ),
            Name::Steady => (
                2000,
                1000.0,
                60.0,
                StoreKind::Postgres,
                "round_robin",
                (0, 200),
                0.05,
                0.0,
                false,
                4,
                15,
            ),
            Name::Agents => (
                10_000,
                0.0,
                0.0,
                StoreKind::Sqlite,
                "round_robin",
                (0, 0),
                0.0,
                0.0,
                false,
                1,
                5,
            ),
            Name::Contention => (
                50,
                5.0,
                40.0,
                StoreKind::Sqlite,
                "ring_all",
                (0, 10),
                0.0,
                0.0,
                true,
                1,
                15,
            ),
            Name::Soak => (
                200,
                20.0,
                1800.0,
                StoreKind::Sqlite,
                "round_robin",
                (0, 200),
                0.05,
                0.5,
                true,
                2,
                15,
            ),
        };
    let rate = args.rate.unwrap_or(rate);
    let duration = args.duration.unwrap_or(duration);
    let mails = match name {
        Name::Agents => args.mails.unwrap_or(0),
        _ => args.mails.unwrap_or((rate * duration).round() as u64),
    };
    if mails > 0 && rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let hb = args.heartbeat_secs.unwrap_or(hb);
    let agents = args.agents.unwrap_or(agents);
    if agents == 0 {
        bail!("--agents must be at least 1");
    }
    let strategy = args.strategy.clone().unwrap_or(strategy.to_string());
    let connections = args
        .connections
        .unwrap_or(((rate / 50.0).ceil() as usize).clamp(2, 16));
    let settle = Duration::from_secs(args.settle_secs.unwrap_or(match name {
        Name::Steady => 120,
        _ => 30,
    }));
    Ok(Setup {
        name,
        agents,
        mails,
        rate,
        // `agents`: at least four heartbeats (the server's, from `hello`).
        hold_secs: if name == Name::Agents { duration } else { 0.0 },
        store: args.store.unwrap_or(store),
        strategy,
        behaviour: Behaviour {
            think_ms: match &args.think_ms {
                Some(s) => parse_think(s)?,
                None => think,
            },
            reject_p: args.reject_p.unwrap_or(reject),
            reply_p: args.reply_p.unwrap_or(reply),
            close: close && !args.no_close,
            sink: String::new(),
        },
        via: args.inject.unwrap_or(Via::Smtp),
        connections,
        accounts: args.accounts.unwrap_or(accounts).clamp(1, 99),
        heartbeat_secs: hb,
        settle,
    })
}

fn services(args: &Args) -> anyhow::Result<Services> {
    let mut s = Services::load(&args.services_env)?;
    let split = |a: &str| -> anyhow::Result<(String, u16)> {
        let (h, p) = a.rsplit_once(':').context("expected HOST:PORT")?;
        Ok((h.to_string(), p.parse().context("port")?))
    };
    if let Some(a) = &args.imap_addr {
        (s.imap_host, s.imap_port) = split(a)?;
    }
    if let Some(a) = &args.smtp_addr {
        (s.smtp_host, s.smtp_port) = split(a)?;
    }
    if let Some(d) = &args.mail_domain {
        s.mail_domain = d.clone();
    }
    Ok(s)
}

/// Read a variable from the environment or the services env file.
fn env_or_file(file: &Path, name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let name = args.scenario.context("--scenario NAME")?;
    let out = args.out.clone().context("--scenario needs --out DIR")?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut setup = setup(&args, name)?;
    let nofile = crate::server::raise_nofile();
    if args.target.is_none() {
        crate::server::ensure_services(&args.services_env)?;
    }
    let services = services(&args)?;
    let source = match &args.target {
        Some(url) => Source::Target {
            url: url.clone(),
            admin_user: args.admin_user.clone(),
            admin_password: args
                .admin_password
                .clone()
                .context("--target needs --admin-password or MAILROOM_LOAD_ADMIN_PASSWORD")?,
            server_pid: args.server_pid,
        },
        None => Source::Local {
            server_bin: args.server_bin.clone(),
            keep: args.keep,
        },
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let plan = Plan {
        run: run_id.clone(),
        agents: setup.agents,
        accounts: setup.accounts,
        strategy: setup.strategy.clone(),
        // Longer than any think time: an offer expiring is not what is measured.
        offer_timeout_secs: 60,
        // Nobody fills up, however long the run.
        capacity: 1_000_000,
        heartbeat_secs: setup.heartbeat_secs,
        store: setup.store,
        presence_redis: args.presence == Some(PresenceKind::Redis),
    };
    let pg_admin = env_or_file(&args.services_env, "MAILROOM_TEST_PG_URL");
    let redis = env_or_file(&args.services_env, "MAILROOM_TEST_REDIS_URL");
    match &args.target {
        Some(url) => {
            // Refused before anything is sent anywhere.
            crate::server::check_loopback(url)?;
            eprintln!(
                "{name:?}: creating {} agents, a queue and {} accounts on {url} …",
                setup.agents, setup.accounts
            );
        }
        None => eprintln!(
            "{name:?}: starting the server ({} agents, {} accounts, {:?}) …",
            setup.agents, setup.accounts, setup.store
        ),
    }
    let dep = Deployment::start(
        &source,
        &plan,
        &services,
        pg_admin.as_deref(),
        redis.as_deref(),
        &out,
    )
    .await?;
    setup.behaviour.sink = dep.sink.clone();
    let result = match name {
        Name::Agents => idle_agents(&dep, &setup, nofile).await,
        _ => mail_run(&dep, &setup, &services, &args.services_env, nofile).await,
    };
    let logs = dep.log_counts();
    let finish = dep.finish().await;
    let (mut report, timeline) = result?;
    if let Some((w, e)) = logs {
        report.extra.insert("server_log_warnings".into(), json!(w));
        report.extra.insert("server_log_errors".into(), json!(e));
    }
    if let Err(e) = finish {
        report
            .extra
            .insert("cleanup_error".into(), json!(format!("{e:#}")));
    }
    report::write(&out, &report, &timeline)?;
    if let Ok(text) = std::fs::read_to_string(out.join("report.txt")) {
        println!("{text}");
    }
    eprintln!("report written to {}", out.display());
    Ok(())
}

fn base_extra(
    dep: &Deployment,
    setup: &Setup,
    nofile: Option<u64>,
) -> serde_json::Map<String, Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("store".into(), json!(dep.store_label));
    extra.insert("strategy".into(), json!(setup.strategy));
    extra.insert("accounts".into(), json!(setup.accounts));
    extra.insert("notes".into(), json!(dep.notes));
    extra.insert(
        "password_hash".into(),
        json!("every agent shares one argon2id hash made with cheap parameters (m=1024 KiB, t=1, p=1), so that thousands of logins take seconds; the server verifies with the parameters embedded in the hash"),
    );
    extra.insert("nofile_limit".into(), json!(nofile));
    extra.insert(
        "profile".into(),
        json!(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    );
    extra.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );
    extra.insert("loadavg_before".into(), json!(crate::app::load_average()));
    extra
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb
}

async fn connect_swarm(dep: &Deployment, setup: &Setup) -> anyhow::Result<(swarm::Swarm, f64)> {
    let pb = bar(
        setup.agents as u64,
        "agents   {bar:40} {pos}/{len} connected ({elapsed})",
    );
    let started = Instant::now();
    // 64 logins and handshakes in flight: enough to keep both cores busy
    // with argon2 (cheap) and TLS-free handshakes, without a SYN flood.
    let swarm = swarm::connect(dep, setup.behaviour.clone(), 64, |n| {
        pb.set_position(n as u64)
    })
    .await;
    pb.finish_and_clear();
    Ok((swarm?, started.elapsed().as_secs_f64()))
}

/// Everything heard about one interaction.
#[derive(Default)]
struct Inter {
    mail: Option<u64>,
    offered: HashMap<u32, Instant>,
    accept_sent: HashMap<u32, Instant>,
    assigned: Vec<(u32, Instant)>,
    taken: Vec<(u32, Instant)>,
}

#[derive(Default)]
struct Ledger {
    injected: BTreeMap<u64, Instant>,
    inject_failed: u64,
    inject_errors: Vec<String>,
    /// Mail → the interactions offered for it, in order of first offer.
    mails: HashMap<u64, Vec<String>>,
    inters: HashMap<String, Inter>,
    first_offer: HashMap<u64, Instant>,
    assigned_at: Vec<Instant>,
    offers: u64,
    gone: u64,
    rejects: u64,
    other_rescinds: u64,
    replies: u64,
    closes: u64,
    work_ended: u64,
    strays: u64,
    errors: Vec<String>,
    sockets_ended: Vec<String>,
}

impl Ledger {
    fn mail_of(gens: &[MailGen], subject: &str) -> Option<u64> {
        gens.iter().find_map(|g| g.index_of_subject(subject))
    }

    fn apply(&mut self, gens: &[MailGen], ev: swarm::Event) {
        match ev.kind {
            Kind::Offer {
                interaction,
                subject,
            } => {
                self.offers += 1;
                let mail = Self::mail_of(gens, &subject);
                let Some(mail) = mail else {
                    self.strays += 1;
                    return;
                };
                let ids = self.mails.entry(mail).or_default();
                if !ids.contains(&interaction) {
                    ids.push(interaction.clone());
                }
                self.first_offer.entry(mail).or_insert(ev.at);
                let i = self.inters.entry(interaction).or_default();
                i.mail = Some(mail);
                i.offered.entry(ev.agent).or_insert(ev.at);
            }
            Kind::AcceptSent { interaction } => {
                self.inters
                    .entry(interaction)
                    .or_default()
                    .accept_sent
                    .insert(ev.agent, ev.at);
            }
            Kind::Rejected => self.rejects += 1,
            Kind::Assigned { interaction } => {
                self.assigned_at.push(ev.at);
                self.inters
                    .entry(interaction)
                    .or_default()
                    .assigned
                    .push((ev.agent, ev.at));
            }
            Kind::Rescinded {
                interaction,
                reason,
            } => {
                if reason == "taken" {
                    self.inters
                        .entry(interaction)
                        .or_default()
                        .taken
                        .push((ev.agent, ev.at));
                } else {
                    self.other_rescinds += 1;
                }
            }
            Kind::Gone => self.gone += 1,
            Kind::Error(e) => self.errors.push(format!("agent {}: {e}", ev.agent)),
            Kind::Replied => self.replies += 1,
            Kind::Closed => self.closes += 1,
            Kind::WorkEnded => self.work_ended += 1,
            Kind::SocketEnded(why) => self
                .sockets_ended
                .push(format!("agent {}: {why}", ev.agent)),
        }
    }

    fn apply_injected(&mut self, ev: Injected) {
        match ev {
            Injected::Sent { index, at } => {
                self.injected.insert(index, at);
            }
            Injected::Failed { index, error } => {
                self.inject_failed += 1;
                if self.inject_errors.len() < 5 {
                    self.inject_errors.push(format!("mail {index}: {error}"));
                }
            }
        }
    }

    /// Injected mails with an assigned interaction.
    fn settled(&self) -> usize {
        self.injected
            .keys()
            .filter(|m| {
                self.mails.get(m).is_some_and(|ids| {
                    ids.iter()
                        .any(|i| self.inters.get(i).is_some_and(|x| !x.assigned.is_empty()))
                })
            })
            .count()
    }
}

async fn exists_to_offer(dep: &Deployment) -> Option<Histogram> {
    let text = dep.metrics().await.ok()?;
    Histogram::parse(&text, EXISTS_TO_OFFER, &[])
}

async fn mail_run(
    dep: &Deployment,
    setup: &Setup,
    services: &Services,
    env_file: &Path,
    nofile: Option<u64>,
) -> anyhow::Result<(Report, Timeline)> {
    let mut extra = base_extra(dep, setup, nofile);
    dep.wait_idle(Duration::from_secs(120)).await?;
    let (mut swarm, connect_s) = connect_swarm(dep, setup).await?;
    extra.insert("connect_s".into(), json!(round3(connect_s)));
    // Routing counts an agent once its session has started, a moment after
    // `hello`; wait until the queue sees every agent online.
    wait_online(dep, setup.agents, Duration::from_secs(120)).await?;
    let gens: Arc<Vec<MailGen>> = Arc::new(
        dep.accounts
            .iter()
            .map(|a| MailGen::tagged(&a.mailbox))
            .collect(),
    );
    let hist_before = exists_to_offer(dep).await.unwrap_or_default();
    let sampler = Sampler::start(dep.server_pid);
    let start = Instant::now();
    let inject_window = Duration::from_secs_f64(setup.mails as f64 / setup.rate.max(1e-9));
    let inject_deadline = start + inject_window + Duration::from_secs(10);
    let hard_deadline = inject_deadline + setup.settle;
    let (itx, mut irx) = mpsc::unbounded_channel();
    let mut injectors = inject::spawn(
        inject::Plan {
            via: setup.via,
            mails: setup.mails,
            rate: setup.rate,
            connections: setup.connections,
            gens: gens.clone(),
            mailboxes: dep.accounts.iter().map(|a| a.mailbox.clone()).collect(),
            deadline: inject_deadline,
        },
        services,
        itx,
    );
    let pb = bar(
        setup.mails,
        "{bar:40} {pos}/{len} assigned  {msg} ({elapsed})",
    );
    let mut ledger = Ledger::default();
    let mut injecting = true;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut settled_at: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        tokio::select! {
            ev = irx.recv(), if injecting => match ev {
                Some(ev) => ledger.apply_injected(ev),
                None => injecting = false,
            },
            ev = swarm.events.recv() => match ev {
                Some(ev) => ledger.apply(&gens, ev),
                None => break,
            },
            _ = tick.tick() => {
                let settled = ledger.settled();
                pb.set_position(settled as u64);
                pb.set_message(format!(
                    "injected {} offered {} errors {}",
                    ledger.injected.len(),
                    ledger.first_offer.len(),
                    ledger.errors.len() + ledger.inject_failed as usize + ledger.sockets_ended.len()
                ));
                let now = Instant::now();
                let work_done = !setup.behaviour.close && setup.behaviour.reply_p == 0.0
                    || ledger.work_ended as usize >= ledger.assigned_at.len();
                if !injecting && settled == ledger.injected.len() && work_done {
                    // Everything settled: listen a moment longer for a
                    // duplicate offer, then stop.
                    let at = *settled_at.get_or_insert(now);
                    if now >= at + TAIL_LISTEN {
                        break;
                    }
                } else {
                    settled_at = None;
                }
                if now >= hard_deadline {
                    timed_out = true;
                    break;
                }
            }
        }
    }
    pb.finish_and_clear();
    injectors.abort_all();
    while let Ok(ev) = irx.try_recv() {
        ledger.apply_injected(ev);
    }
    let duration_s = start.elapsed().as_secs_f64();
    let usage = sampler.stop();
    let hist_after = exists_to_offer(dep).await.unwrap_or_default();
    swarm.close().await;

    // Figures.
    let injected = ledger.injected.len() as u64;
    let lost = ledger
        .injected
        .keys()
        .filter(|m| !ledger.first_offer.contains_key(m))
        .count() as u64;
    let duplicated = ledger.mails.values().filter(|ids| ids.len() > 1).count() as u64;
    let interactions = ledger
        .mails
        .iter()
        .filter(|(m, _)| ledger.injected.contains_key(m))
        .map(|(_, ids)| ids.len() as u64)
        .sum::<u64>();
    let mut offer_ms = Vec::new();
    let mut offers_t = Vec::new();
    for (m, at) in &ledger.injected {
        if let Some(first) = ledger.first_offer.get(m) {
            let ms = first.saturating_duration_since(*at).as_secs_f64() * 1000.0;
            offer_ms.push(ms);
            offers_t.push((first.duration_since(start).as_secs_f64(), ms));
        }
    }
    offers_t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut accept_ms = Vec::new();
    let mut taken_ms = Vec::new();
    let mut multi_assigned = 0u64;
    let mut unassigned = 0u64;
    for inter in ledger.inters.values().filter(|i| i.mail.is_some()) {
        if inter.assigned.len() > 1 {
            multi_assigned += 1;
        }
        let Some(&(winner, assigned_at)) = inter.assigned.first() else {
            unassigned += 1;
            continue;
        };
        let Some(&sent) = inter.accept_sent.get(&winner) else {
            continue;
        };
        accept_ms.push(assigned_at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
        for &(agent, at) in &inter.taken {
            if agent != winner {
                taken_ms.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
            }
        }
    }
    let assigned_t: Vec<f64> = ledger
        .assigned_at
        .iter()
        .map(|a| a.duration_since(start).as_secs_f64())
        .collect();
    let throughput = match (
        ledger.injected.values().min(),
        ledger.assigned_at.iter().max(),
    ) {
        (Some(first), Some(last)) if last > first => Some(round3(
            ledger.assigned_at.len() as f64 / last.duration_since(*first).as_secs_f64(),
        )),
        _ => None,
    };
    let injected_rate = match (
        ledger.injected.values().min(),
        ledger.injected.values().max(),
    ) {
        (Some(a), Some(b)) if b > a => injected as f64 / b.duration_since(*a).as_secs_f64(),
        _ => 0.0,
    };
    let hist = hist_after.since(&hist_before);
    let errors =
        ledger.errors.len() as u64 + ledger.inject_failed + ledger.sockets_ended.len() as u64;

    // Mailroom never deletes from the mailbox, so what it holds is what
    // reached Dovecot; a lost mail not among them was still in Postfix.
    let in_mailboxes = inject::in_mailboxes(
        services,
        &dep.accounts
            .iter()
            .map(|a| a.mailbox.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    extra.insert("in_mailboxes_at_end".into(), json!(in_mailboxes));
    if setup.via == Via::Smtp {
        let mailboxes: Vec<String> = dep.accounts.iter().map(|a| a.mailbox.clone()).collect();
        let env = env_file.to_path_buf();
        let purged = tokio::task::spawn_blocking(move || inject::purge_postfix(&env, &mailboxes))
            .await
            .ok()
            .flatten();
        extra.insert("purged_from_postfix_queue".into(), json!(purged));
    }
    extra.insert(
        "lost_not_yet_in_mailbox".into(),
        json!(in_mailboxes.map(|n| injected.saturating_sub(n).min(lost))),
    );
    extra.insert("mails_planned".into(), json!(setup.mails));
    extra.insert("mail_rate_per_s".into(), json!(setup.rate));
    extra.insert("rate_injected_per_s".into(), json!(round3(injected_rate)));
    extra.insert(
        "inject_via".into(),
        json!(format!("{:?}", setup.via).to_lowercase()),
    );
    extra.insert("inject_connections".into(), json!(setup.connections));
    extra.insert("inject_failed".into(), json!(ledger.inject_failed));
    extra.insert("inject_errors_sample".into(), json!(ledger.inject_errors));
    extra.insert(
        "think_ms".into(),
        json!([setup.behaviour.think_ms.0, setup.behaviour.think_ms.1]),
    );
    extra.insert("reject_p".into(), json!(setup.behaviour.reject_p));
    extra.insert("reply_p".into(), json!(setup.behaviour.reply_p));
    extra.insert("close".into(), json!(setup.behaviour.close));
    extra.insert("offers".into(), json!(ledger.offers));
    extra.insert("rejects".into(), json!(ledger.rejects));
    extra.insert("accepts_lost_race".into(), json!(ledger.gone));
    extra.insert("rescinds_not_taken".into(), json!(ledger.other_rescinds));
    extra.insert("assigned".into(), json!(ledger.assigned_at.len()));
    extra.insert("interactions_assigned_twice".into(), json!(multi_assigned));
    extra.insert("interactions_never_assigned".into(), json!(unassigned));
    extra.insert("replies".into(), json!(ledger.replies));
    extra.insert("closes".into(), json!(ledger.closes));
    extra.insert("stray_offers".into(), json!(ledger.strays));
    extra.insert("sockets_ended".into(), json!(ledger.sockets_ended.len()));
    extra.insert(
        "errors_sample".into(),
        json!(
            ledger
                .errors
                .iter()
                .chain(&ledger.sockets_ended)
                .take(10)
                .collect::<Vec<_>>()
        ),
    );
    extra.insert("exists_to_offer_n".into(), json!(hist.count));
    extra.insert(
        "exists_to_offer_note".into(),
        json!("from /metrics: mailroom_exists_to_offer_seconds over the run, percentiles interpolated inside the histogram's buckets"),
    );
    extra.insert("hit_deadline".into(), json!(timed_out));
    extra.insert("window_s".into(), json!(round3(usage.window_s)));
    extra.insert("server_rss_mb_last".into(), json!(usage.server_rss_mb_last));
    extra.insert("loadavg_after".into(), json!(crate::app::load_average()));

    let report = Report {
        scenario: format!("{:?}", setup.name).to_lowercase(),
        agents: setup.agents as u64,
        injected,
        interactions,
        lost,
        duplicated,
        offer_latency_ms: report::pcts(&offer_ms),
        accept_to_assigned_ms: report::pcts(&accept_ms),
        exists_to_offer_ms: P50P99::from_histogram(&hist),
        taken_latency_ms: report::pcts(&taken_ms).map(|p| p.p50_p99()),
        throughput_per_s: throughput,
        server_rss_mb: usage.server_rss_mb_peak,
        cpu_share: Some(usage.cpu_share),
        errors,
        duration_s: round3(duration_s),
        extra,
    };
    let timeline = Timeline {
        offers: offers_t,
        assigned_at: assigned_t,
        rss: usage.rss_series,
    };
    Ok((report, timeline))
}

/// Wait until the supervisor view counts `n` of the run's agents online.
async fn wait_online(dep: &Deployment, n: usize, within: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        let online = online_agents(dep).await.unwrap_or(0);
        if online >= n {
            return Ok(online);
        }
        if Instant::now() >= deadline {
            bail!("only {online} of {n} agents are online after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run's agents that `GET /api/v1/supervisor/agents` shows online.
async fn online_agents(dep: &Deployment) -> anyhow::Result<usize> {
    let list = dep.admin_get("/supervisor/agents").await?;
    let names: std::collections::HashSet<&str> = dep.agents.iter().map(String::as_str).collect();
    Ok(list
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| {
                    x["agent"]["username"]
                        .as_str()
                        .is_some_and(|u| names.contains(u))
                        && x["presence"]["status"] == "online"
                })
                .count()
        })
        .unwrap_or(0))
}

/// `agents`: N idle agents connected and held for at least four heartbeats.
async fn idle_agents(
    dep: &Deployment,
    setup: &Setup,
    nofile: Option<u64>,
) -> anyhow::Result<(Report, Timeline)> {
    let mut extra = base_extra(dep, setup, nofile);
    let sampler = Sampler::start(dep.server_pid);
    let start = Instant::now();
    // Let the server settle after provisioning before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = || dep.server_pid.and_then(sample::rss_mb);
    let rss_before = rss();
    let (mut swarm, connect_s) = connect_swarm(dep, setup).await?;
    let rss_connected = rss();
    let online_connected = wait_online(dep, setup.agents, Duration::from_secs(120))
        .await
        .unwrap_or(0);
    let hb = swarm
        .heartbeat_secs
        .unwrap_or(u64::from(setup.heartbeat_secs));
    let hold = (setup.hold_secs).max(4.0 * hb as f64 + 1.0);
    eprintln!(
        "{} agents connected in {connect_s:.1} s; holding for {hold:.0} s (heartbeat {hb} s) …",
        swarm.connected
    );
    let pb = bar((hold * 10.0) as u64, "holding  {bar:40} {msg} ({elapsed})");
    let mut ledger = Ledger::default();
    let hold_until = Instant::now() + Duration::from_secs_f64(hold);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = swarm.events.recv() => match ev {
                Some(ev) => ledger.apply(&[], ev),
                None => break,
            },
            _ = tick.tick() => {
                let left = hold_until.saturating_duration_since(Instant::now());
                pb.set_position(((hold - left.as_secs_f64()) * 10.0) as u64);
                pb.set_message(format!("{} sockets ended", ledger.sockets_ended.len()));
                if left.is_zero() {
                    break;
                }
            }
        }
    }
    pb.finish_and_clear();
    let rss_held = rss();
    let online_after = online_agents(dep).await.unwrap_or(0);
    let duration_s = start.elapsed().as_secs_f64();
    let usage = sampler.stop();
    swarm.close().await;
    let n = setup.agents as f64;
    let per_agent = rss_before
        .zip(rss_held)
        .map(|(a, b)| round3((b - a) * 1024.0 / n));
    let held = ledger.sockets_ended.is_empty() && online_after == setup.agents;
    extra.insert("connect_s".into(), json!(round3(connect_s)));
    extra.insert("heartbeat_secs".into(), json!(hb));
    extra.insert("hold_s".into(), json!(round3(hold)));
    extra.insert("heartbeats_held".into(), json!(held));
    extra.insert("sockets_ended".into(), json!(ledger.sockets_ended.len()));
    extra.insert("online_after_connect".into(), json!(online_connected));
    extra.insert("online_after_hold".into(), json!(online_after));
    extra.insert("server_rss_mb_before".into(), json!(rss_before));
    extra.insert("server_rss_mb_connected".into(), json!(rss_connected));
    extra.insert("server_rss_mb_after_hold".into(), json!(rss_held));
    extra.insert("rss_per_agent_kib".into(), json!(per_agent));
    extra.insert(
        "rss_per_agent_note".into(),
        json!("(server RSS after the hold − before any agent connected) / agents; includes each agent's login token and session state"),
    );
    extra.insert(
        "errors_sample".into(),
        json!(
            ledger
                .errors
                .iter()
                .chain(&ledger.sockets_ended)
                .take(10)
                .collect::<Vec<_>>()
        ),
    );
    extra.insert("loadavg_after".into(), json!(crate::app::load_average()));
    let report = Report {
        scenario: "agents".into(),
        agents: swarm_count(setup),
        injected: 0,
        interactions: 0,
        lost: 0,
        duplicated: 0,
        offer_latency_ms: None,
        accept_to_assigned_ms: None,
        exists_to_offer_ms: None,
        taken_latency_ms: None,
        throughput_per_s: None,
        server_rss_mb: usage.server_rss_mb_peak,
        cpu_share: Some(usage.cpu_share),
        errors: ledger.errors.len() as u64 + ledger.sockets_ended.len() as u64,
        duration_s: round3(duration_s),
        extra,
    };
    Ok((
        report,
        Timeline {
            offers: Vec::new(),
            assigned_at: Vec::new(),
            rss: usage.rss_series,
        },
    ))
}

fn swarm_count(setup: &Setup) -> u64 {
    setup.agents as u64
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
