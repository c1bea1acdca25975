//! `mailroom-load ingest`: how fast mailroom turns mail in a real Dovecot
//! mailbox into interactions, and how long its own part takes.
//!
//! Both modes start mailroom in this process with one account on a fresh
//! mailbox (`load<random>@example.test`) and a fresh store, wait until the
//! account's mailbox sits in IDLE, then APPEND mail to that mailbox.
//!
//! - **Flood** (default, `--mails N`): N mails over `--connections`
//!   parallel IMAP sessions, as fast as Dovecot takes them (optionally in
//!   `--batch` bursts, each committed before the next). Measured: wall time
//!   from the first APPEND to the commit of the last mail → mails/s, and the
//!   app's `mailroom_ingest_latency_seconds` histogram from `/metrics`.
//! - **Trickle** (`--trickle N`): one mail at a time, each appended only
//!   once the previous one is committed and the mailbox is back in IDLE.
//!   This is the notify path without batching effects. Every mail's own
//!   EXISTS → commit time is exact (the histogram's sum grows by exactly that
//!   one observation), and APPEND → commit includes Dovecot's fixed 500 ms
//!   notification delay.
//!
//! The UIDs of a fresh mailbox are 1, 2, 3 … in order of arrival, so "mail
//! k is committed" is "the account's watermark is at least k": one indexed
//! row, cheap to poll, where counting interactions would not be.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mailroom::mail::imap::ImapSession;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::app::{
    ACCOUNT, Mailroom, Services, StoreArg, load_average, peak_rss_mib, process_cpu_seconds,
};
use crate::logs::LogCounts;
use crate::mailgen::MailGen;
use crate::prom::{Histogram, ms};
use crate::stats::Summary;

const LATENCY: &str = "mailroom_ingest_latency_seconds";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the flood checks the watermark: fine enough for runs that
/// last seconds; the end time itself is taken from the app's own
/// `last_mail_at`, not from this poll.
const FLOOD_POLL: Duration = Duration::from_millis(10);
/// How often the trickle checks for the commit and for IDLE: the exact
/// figures come from the app, this only decides how soon the next mail goes.
const TRICKLE_POLL: Duration = Duration::from_millis(2);
/// In trickle mode, the pause between seeing `idle: true` and appending.
/// The status flips just before the IDLE command is sent; a mail appended
/// in that gap would be reported by Dovecot at IDLE start, without its
/// usual 500 ms delay, and mix a second distribution into the figures.
const TRICKLE_SETTLE: Duration = Duration::from_millis(100);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Mails to append in the flood (or the backlog).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    mails: u64,
    /// Instead of a flood, append N mails one at a time, each after the
    /// previous one is committed.
    #[arg(long, value_name = "N", conflicts_with_all = ["mails", "connections", "batch", "backlog"])]
    trickle: Option<u64>,
    /// Append all the mails first, then start mailroom and time its catch-up
    /// (its own ingest rate, whatever Dovecot's APPEND rate is).
    #[arg(long, conflicts_with = "batch")]
    backlog: bool,
    /// `sqlite` (a file in a temporary directory) or a store URL such as
    /// postgres://postgres@127.0.0.1:5432/mailroom_load_1 (an empty
    /// database; it is migrated and left in place).
    #[arg(long, default_value = "sqlite", value_name = "sqlite|URL")]
    store: StoreArg,
    /// Parallel IMAP sessions appending the flood.
    #[arg(long, default_value_t = 8, value_name = "N")]
    connections: usize,
    /// Append in bursts of this many mails, each burst committed before the
    /// next is appended (0: a single burst of all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    batch: u64,
    /// Append the figures to FILE as one JSON line.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Give up when nothing is committed for this long.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    stall_secs: u64,
    /// The env file written by `scripts/services.sh start`.
    #[arg(
        long,
        default_value = "/var/tmp/mailroom-services/env",
        value_name = "FILE"
    )]
    services_env: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Flood,
    Backlog,
    Trickle(u64),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Flood => "flood",
            Mode::Backlog => "backlog",
            Mode::Trickle(_) => "trickle",
        }
    }
}

/// When a mail's APPEND was sent, and when Dovecot answered it.
type AppendTimes = (DateTime<Utc>, DateTime<Utc>);

/// What a mode measured: report lines and JSON fields.
pub(crate) struct Outcome {
    pub(crate) lines: Vec<String>,
    pub(crate) json: serde_json::Map<String, Value>,
    /// When each mail's APPEND was sent and answered, by index, where the
    /// mode timed every mail against its commit (the flood).
    pub(crate) appended_at: Vec<Option<AppendTimes>>,
}

pub async fn run(args: Args, logs: &LogCounts) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.mails == 0 {
        bail!("--mails must be at least 1");
    }
    let mode = match (args.trickle, args.backlog) {
        (Some(0), _) => bail!("--trickle must be at least 1"),
        (Some(n), _) => Mode::Trickle(n),
        (None, true) => Mode::Backlog,
        (None, false) => Mode::Flood,
    };
    let services = Services::load(&args.services_env)?;
    let load_before = load_average();
    let mailbox = services.fresh_mailbox("load");
    let generator = Arc::new(MailGen::new(&mailbox));

    // A backlog is put in the mailbox before mailroom exists.
    let (import_since, preloaded) = if mode == Mode::Backlog {
        // INTERNALDATE is compared to the second: leave a margin.
        let since = Utc::now() - chrono::Duration::seconds(5);
        eprintln!("appending the backlog to {mailbox} …");
        let appended = append_all(&services, &mailbox, &generator, &args).await?;
        (Some(since), Some(appended))
    } else {
        (None, None)
    };

    eprintln!("starting mailroom on {mailbox} …");
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let started_at = Utc::now();
    let app = Mailroom::start(&args.store, &services, &mailbox, import_since).await?;
    let measured = match (mode, preloaded) {
        (Mode::Backlog, Some(appended)) => {
            backlog(&app, &args, appended, started, started_at).await
        }
        _ => match app
            .wait_idle(Duration::from_secs(60), Duration::from_millis(20))
            .await
        {
            Err(e) => Err(e),
            Ok(_) => match mode {
                Mode::Trickle(n) => trickle(&app, &services, &mailbox, &generator, n, &args).await,
                _ => flood(&app, &services, &mailbox, &generator, &args).await,
            },
        },
    };
    let elapsed = started.elapsed().as_secs_f64();
    let load_after = load_average();
    let cpu = cpu_before.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    // Whatever happened, read what the app says and stop it cleanly.
    let n = match mode {
        Mode::Trickle(n) => n,
        _ => args.mails,
    };
    let ledger = Ledger::read(&app, &generator, n).await;
    let tail = tail(&app, logs).await;
    let backend = app.backend;
    app.stop().await?;
    let mut outcome = measured?;
    let mut tail = tail?;
    let ledger = ledger?;
    ledger.report(&mut outcome, &mut tail);

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
    println!("mailroom-load ingest — {}", mode.name());
    println!("  store     {store}");
    println!("  build     {profile} (mailroom and harness in one process)");
    println!(
        "  machine   {cpus} CPUs; load average {} before the run, {} after",
        load_before.map_or("?".into(), |l| format!("{l:.2}")),
        load_after.map_or("?".into(), |l| format!("{l:.2}"))
    );
    for line in &outcome.lines {
        println!("  {line}");
    }
    for line in &tail.lines {
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
        j.insert("command".into(), json!("ingest"));
        j.insert("mode".into(), json!(mode.name()));
        j.insert("store".into(), json!(backend));
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

/// Parallel APPENDs of mails `0..n`, each session taking the next index;
/// an index is appended only once it is below the `allowed` limit (bursts).
struct Appenders {
    tasks: JoinSet<anyhow::Result<Option<Instant>>>,
    bytes: Arc<AtomicU64>,
    /// When each mail's APPEND was sent and when it was answered. A std
    /// Mutex: locked for one store, never across an `.await`.
    appended_at: Arc<Mutex<Vec<Option<AppendTimes>>>>,
    /// When the first APPEND was sent.
    t0: Instant,
    t0_utc: DateTime<Utc>,
}

impl Appenders {
    /// Log in `connections` sessions (not timed), then start appending.
    async fn start(
        services: &Services,
        mailbox: &str,
        generator: &Arc<MailGen>,
        n: u64,
        connections: usize,
        allowed: tokio::sync::watch::Receiver<u64>,
        bar: ProgressBar,
    ) -> anyhow::Result<Appenders> {
        let cfg = services.imap(mailbox);
        let mut sessions = Vec::with_capacity(connections);
        for _ in 0..connections {
            sessions.push(
                ImapSession::connect(&cfg, CONNECT_TIMEOUT)
                    .await
                    .context("the harness's IMAP login")?,
            );
        }
        let next = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let appended_at = Arc::new(Mutex::new(vec![None; usize::try_from(n)?]));
        let t0_utc = Utc::now();
        let t0 = Instant::now();
        let mut tasks = JoinSet::new();
        for mut session in sessions {
            let (generator, next, bytes, bar, appended_at) = (
                generator.clone(),
                next.clone(),
                bytes.clone(),
                bar.clone(),
                appended_at.clone(),
            );
            let mut allowed = allowed.clone();
            tasks.spawn(async move {
                let mut last = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    allowed
                        .wait_for(|&limit| i < limit)
                        .await
                        .context("the run ended early")?;
                    let mail = generator.mail(i);
                    let sent = Utc::now();
                    session
                        .append("INBOX", None, &mail)
                        .await
                        .with_context(|| format!("APPEND of mail {i}"))?;
                    let answered = Utc::now();
                    if let Ok(mut at) = appended_at.lock()
                        && let Some(slot) = usize::try_from(i).ok().and_then(|i| at.get_mut(i))
                    {
                        *slot = Some((sent, answered));
                    }
                    bytes.fetch_add(mail.len() as u64, Ordering::Relaxed);
                    bar.inc(1);
                    last = Some(Instant::now());
                }
                session.logout().await;
                anyhow::Ok(last)
            });
        }
        Ok(Appenders {
            tasks,
            bytes,
            appended_at,
            t0,
            t0_utc,
        })
    }

    /// Collect the appenders that have ended; the first failure ends the run.
    fn poll(&mut self, done_at: &mut Option<Instant>) -> anyhow::Result<()> {
        while let Some(done) = self.tasks.try_join_next() {
            *done_at = (*done_at).max(done.context("an appender panicked")??);
        }
        Ok(())
    }

    async fn join(&mut self, done_at: &mut Option<Instant>) -> anyhow::Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            *done_at = (*done_at).max(done.context("an appender panicked")??);
        }
        Ok(())
    }
}

fn bar_style() -> anyhow::Result<ProgressStyle> {
    Ok(ProgressStyle::with_template(
        "{prefix:>9} [{bar:40}] {pos:>6}/{len} {per_sec:>12} {elapsed:>4}",
    )
    .context("progress template")?
    .progress_chars("=> "))
}

/// What the APPENDs took, for the report.
struct Appended {
    n: u64,
    bytes: u64,
    seconds: f64,
}

impl Appended {
    fn lines(&self, connections: usize, extra: &str) -> Vec<String> {
        vec![
            format!(
                "mails     {} appended over {connections} IMAP connections{extra}; {:.1} KB average, {:.1} MB in all",
                self.n,
                self.bytes as f64 / self.n as f64 / 1024.0,
                self.bytes as f64 / 1024.0 / 1024.0
            ),
            format!(
                "appending {:.2} s for all APPENDs to be answered ({:.0} mails/s taken by Dovecot)",
                self.seconds,
                self.n as f64 / self.seconds.max(1e-9)
            ),
        ]
    }
}

/// The backlog: every mail appended, before mailroom starts.
async fn append_all(
    services: &Services,
    mailbox: &str,
    generator: &Arc<MailGen>,
    args: &Args,
) -> anyhow::Result<Appended> {
    let n = args.mails;
    let bar = ProgressBar::new(n).with_style(bar_style()?);
    bar.set_prefix("appended");
    let (_allow, allowed) = tokio::sync::watch::channel(n);
    let mut appenders = Appenders::start(
        services,
        mailbox,
        generator,
        n,
        args.connections,
        allowed,
        bar.clone(),
    )
    .await?;
    let mut done_at = None;
    appenders.join(&mut done_at).await?;
    bar.finish();
    Ok(Appended {
        n,
        bytes: appenders.bytes.load(Ordering::Relaxed),
        seconds: done_at.map_or(0.0, |at| (at - appenders.t0).as_secs_f64()),
    })
}

/// Wait until the watermark reaches `target`, calling `progress` on each
/// advance; fails after `stall` without progress.
async fn wait_watermark(
    app: &Mailroom,
    target: u32,
    stall: Duration,
    mut progress: impl FnMut(u32),
) -> anyhow::Result<()> {
    let mut mark = 0;
    let mut progress_at = Instant::now();
    loop {
        let now = app.watermark().await?;
        if now > mark {
            mark = now;
            progress_at = Instant::now();
            progress(mark);
        }
        if mark >= target {
            return Ok(());
        }
        if progress_at.elapsed() > stall {
            let status = app.status().await.unwrap_or(Value::Null);
            bail!(
                "nothing committed for {stall:?} (at {mark} of {target}); mailbox status: {status}"
            );
        }
        tokio::time::sleep(FLOOD_POLL).await;
    }
}

/// N mails, as fast as Dovecot takes them, over parallel sessions, while
/// mailroom sits in IDLE.
async fn flood(
    app: &Mailroom,
    services: &Services,
    mailbox: &str,
    generator: &Arc<MailGen>,
    args: &Args,
) -> anyhow::Result<Outcome> {
    let n = args.mails;
    let burst = if args.batch == 0 {
        n
    } else {
        args.batch.min(n)
    };
    let bars = MultiProgress::new();
    let appended_bar = bars.add(ProgressBar::new(n).with_style(bar_style()?));
    appended_bar.set_prefix("appended");
    let committed_bar = bars.add(ProgressBar::new(n).with_style(bar_style()?));
    committed_bar.set_prefix("committed");

    // The appenders may take indexes below this; it moves one burst ahead
    // each time a burst is committed.
    let (allow, allowed) = tokio::sync::watch::channel(burst);
    let mut appenders = Appenders::start(
        services,
        mailbox,
        generator,
        n,
        args.connections,
        allowed,
        appended_bar.clone(),
    )
    .await?;

    let stall = Duration::from_secs(args.stall_secs);
    let mut target = burst;
    let mut bursts = Vec::new();
    let mut burst_started = appenders.t0;
    let mut committed = 0u32;
    let mut progress_at = Instant::now();
    let mut appends_done_at: Option<Instant> = None;
    loop {
        appenders.poll(&mut appends_done_at)?;
        let mark = app.watermark().await?;
        if mark > committed {
            committed = mark;
            progress_at = Instant::now();
            committed_bar.set_position(u64::from(mark));
        }
        if u64::from(committed) >= target {
            bursts.push(burst_started.elapsed().as_secs_f64());
            if target >= n {
                break;
            }
            target = (target + burst).min(n);
            burst_started = Instant::now();
            let _ = allow.send(target);
        }
        if progress_at.elapsed() > stall {
            let status = app.status().await.unwrap_or(Value::Null);
            bail!(
                "nothing committed for {stall:?} (at {committed} of {n}); mailbox status: {status}"
            );
        }
        tokio::time::sleep(FLOOD_POLL).await;
    }
    let polled_end = appenders.t0.elapsed().as_secs_f64();
    appenders.join(&mut appends_done_at).await?;
    appended_bar.finish();
    committed_bar.finish();

    // The end is the app's own time of its last commit; the poll above only
    // noticed it up to FLOOD_POLL later.
    let status = settled_status(app, n).await?;
    let wall = last_mail_at(&status)
        .map(|at| (at - appenders.t0_utc).as_seconds_f64())
        .filter(|w| *w > 0.0)
        .unwrap_or(polled_end);
    let appended = Appended {
        n,
        bytes: appenders.bytes.load(Ordering::Relaxed),
        seconds: appends_done_at.map_or(0.0, |at| (at - appenders.t0).as_secs_f64()),
    };
    let histogram = Histogram::parse(&app.metrics().await?, LATENCY, &[("account", ACCOUNT)])
        .unwrap_or_default();
    let appended_at = appenders
        .appended_at
        .lock()
        .map(|at| at.clone())
        .unwrap_or_default();

    let bursts_text = if burst >= n {
        ", one burst".to_string()
    } else {
        format!(
            ", bursts of {burst} each committed before the next ({} bursts, median {:.2} s each)",
            bursts.len(),
            Summary::of(&bursts).map_or(0.0, |s| s.p50)
        )
    };
    let mut lines = appended.lines(args.connections, &bursts_text);
    lines.push(format!(
        "ingest    {n} mails committed {wall:.2} s after the first APPEND → {:.0} mails/s",
        n as f64 / wall
    ));
    lines.extend(histogram_lines(&histogram));
    let mut j = serde_json::Map::new();
    j.insert("mails".into(), json!(n));
    j.insert("connections".into(), json!(args.connections));
    j.insert("batch".into(), json!(burst));
    j.insert("bytes".into(), json!(appended.bytes));
    j.insert("append_s".into(), json!(round3(appended.seconds)));
    j.insert("wall_s".into(), json!(round3(wall)));
    j.insert("mails_per_s".into(), json!(round3(n as f64 / wall)));
    j.insert("exists_to_commit_ms".into(), histogram_json(&histogram));
    Ok(Outcome {
        lines,
        json: j,
        appended_at,
    })
}

/// The backlog is in the mailbox; mailroom has just been started. Time its
/// first sync until every mail is committed.
async fn backlog(
    app: &Mailroom,
    args: &Args,
    appended: Appended,
    started: Instant,
    started_at: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let n = args.mails;
    let target = u32::try_from(n).context("too many mails")?;
    let bar = ProgressBar::new(n).with_style(bar_style()?);
    bar.set_prefix("committed");
    // The first commit seen, and when: the rate is taken from there, so
    // that the app's start (migrations, password hashing, login) and the
    // first SEARCH are not counted against ingest.
    let mut first: Option<(u32, DateTime<Utc>)> = None;
    wait_watermark(app, target, Duration::from_secs(args.stall_secs), |mark| {
        bar.set_position(u64::from(mark));
        first.get_or_insert((mark, Utc::now()));
    })
    .await?;
    let polled_end = started.elapsed().as_secs_f64();
    bar.finish();
    let status = settled_status(app, n).await?;
    let end = last_mail_at(&status).unwrap_or_else(Utc::now);
    let total = Some((end - started_at).as_seconds_f64())
        .filter(|t| *t > 0.0)
        .unwrap_or(polled_end);
    let (k, first_at) = first.unwrap_or((0, started_at));
    let steady = (end - first_at).as_seconds_f64();
    let rate = if steady > 0.0 && u64::from(k) < n {
        (n - u64::from(k)) as f64 / steady
    } else {
        n as f64 / total
    };

    let mut lines = appended.lines(args.connections, ", all before mailroom started");
    lines.push(format!(
        "ingest    first sync: first commit {:.2} s after the app was started, all {n} committed {total:.2} s after",
        (first_at - started_at).as_seconds_f64()
    ));
    lines.push(format!(
        "          → {rate:.0} mails/s from the first commit to the last ({} mails in {steady:.2} s)",
        n - u64::from(k)
    ));
    lines.push(format!(
        "          ({LATENCY} is not reported: a backlog is one sync round, and it counts from the round's start)"
    ));
    let mut j = serde_json::Map::new();
    j.insert("mails".into(), json!(n));
    j.insert("connections".into(), json!(args.connections));
    j.insert("bytes".into(), json!(appended.bytes));
    j.insert("append_s".into(), json!(round3(appended.seconds)));
    j.insert("wall_s".into(), json!(round3(total)));
    j.insert("steady_s".into(), json!(round3(steady)));
    j.insert("mails_per_s".into(), json!(round3(rate)));
    Ok(Outcome {
        lines,
        json: j,
        appended_at: Vec::new(),
    })
}

/// One mail at a time: the notify path without batching effects.
async fn trickle(
    app: &Mailroom,
    services: &Services,
    mailbox: &str,
    generator: &MailGen,
    n: u64,
    args: &Args,
) -> anyhow::Result<Outcome> {
    let mut session = ImapSession::connect(&services.imap(mailbox), CONNECT_TIMEOUT)
        .await
        .context("the harness's IMAP login")?;
    let bar = ProgressBar::new(n).with_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos:>6}/{len} {elapsed:>4}")
            .context("progress template")?
            .progress_chars("=> "),
    );
    bar.set_prefix("committed");
    let stall = Duration::from_secs(args.stall_secs);

    let metric = |text: &str| Histogram::parse(text, LATENCY, &[("account", ACCOUNT)]);
    let mut previous = metric(&app.metrics().await?).unwrap_or_default();
    let mut exists_to_commit = Vec::new();
    let mut append_to_commit = Vec::new();
    let mut append_to_exists = Vec::new();
    let mut append_rtt = Vec::new();
    // Mails whose commit added other than exactly one observation (a
    // retry, or a sync that picked two mails up): their split is unknown.
    let mut unclear = 0u64;
    for i in 0..n {
        app.wait_idle(stall, TRICKLE_POLL).await?;
        tokio::time::sleep(TRICKLE_SETTLE).await;
        let mail = generator.mail(i);
        let sent = Utc::now();
        session
            .append("INBOX", None, &mail)
            .await
            .with_context(|| format!("APPEND of mail {i}"))?;
        let stored = Utc::now();
        let uid = u32::try_from(i + 1).context("too many mails")?;
        let deadline = Instant::now() + stall;
        while app.watermark().await? < uid {
            if Instant::now() > deadline {
                let status = app.status().await.unwrap_or(Value::Null);
                bail!(
                    "mail {} not committed within {stall:?}; mailbox status: {status}",
                    i + 1
                );
            }
            tokio::time::sleep(TRICKLE_POLL).await;
        }
        let status = settled_status(app, i + 1).await?;
        let now = metric(&app.metrics().await?).unwrap_or_default();
        let delta = now.since(&previous);
        previous = now;
        append_rtt.push((stored - sent).as_seconds_f64());
        let Some(committed) = last_mail_at(&status) else {
            unclear += 1;
            bar.inc(1);
            continue;
        };
        append_to_commit.push((committed - stored).as_seconds_f64());
        if delta.count == 1 {
            exists_to_commit.push(delta.sum);
            append_to_exists.push((committed - stored).as_seconds_f64() - delta.sum);
        } else {
            unclear += 1;
        }
        bar.inc(1);
    }
    bar.finish();
    session.logout().await;

    let whole = metric(&app.metrics().await?).unwrap_or_default();
    let mut lines = vec![format!(
        "mails     {n} appended one at a time, each after the previous one was committed and the mailbox was back in IDLE (+{} ms)",
        TRICKLE_SETTLE.as_millis()
    )];
    let mut j = serde_json::Map::new();
    j.insert("mails".into(), json!(n));
    let mut add = |label: &str, key: &str, samples: &[f64]| {
        if let Some(s) = Summary::of(samples) {
            lines.push(label.to_string());
            lines.push(format!("          {}", s.line()));
            j.insert(key.into(), s.json_ms());
        }
    };
    add(
        "EXISTS → commit, exact per mail (each mail's own observation of mailroom_ingest_latency_seconds):",
        "exists_to_commit_ms",
        &exists_to_commit,
    );
    add(
        "APPEND answered → commit (includes Dovecot's fixed 500 ms IDLE notification delay):",
        "append_to_commit_ms",
        &append_to_commit,
    );
    add(
        "APPEND answered → EXISTS acted on (Dovecot's delay and the IDLE read; the difference of the two above):",
        "append_to_exists_ms",
        &append_to_exists,
    );
    add(
        "APPEND round trip (the harness's command to Dovecot):",
        "append_rtt_ms",
        &append_rtt,
    );
    lines.push("the same, as the histogram alone tells it:".into());
    lines.extend(histogram_lines(&whole));
    j.insert("histogram_ms".into(), histogram_json(&whole));
    if unclear > 0 {
        lines.push(format!(
            "note      {unclear} mails could not be timed on their own (their commit did not add exactly one observation)"
        ));
    }
    j.insert("untimed".into(), json!(unclear));
    Ok(Outcome {
        lines,
        json: j,
        appended_at: Vec::new(),
    })
}

/// Which of the run's mails became interactions, and when: read back from
/// the store by Message-ID, so a mail lost or ingested twice shows even
/// when the counts happen to add up.
struct Ledger {
    /// By index: the `created_at` of the interaction the mail opened (stamped
    /// in its ingest transaction, to the millisecond).
    committed: Vec<Option<DateTime<Utc>>>,
    /// Mails of this run found more than once.
    duplicated: u64,
    /// Messages that are not mails of this run, or not the first of their
    /// interaction (a mail threaded into another one).
    other: u64,
}

impl Ledger {
    async fn read(app: &Mailroom, generator: &MailGen, n: u64) -> anyhow::Result<Ledger> {
        let store = app.store();
        let interactions = store
            .interactions_of_account(app.account)
            .await
            .map_err(|e| anyhow::anyhow!("listing interactions: {e}"))?;
        let mut ledger = Ledger {
            committed: vec![None; usize::try_from(n)?],
            duplicated: 0,
            other: 0,
        };
        for interaction in interactions {
            let messages = store
                .messages(interaction.id)
                .await
                .map_err(|e| anyhow::anyhow!("messages of {}: {e}", interaction.id))?;
            for (k, message) in messages.iter().enumerate() {
                let index = message
                    .message_id
                    .as_deref()
                    .and_then(|id| generator.index_of(id))
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|_| k == 0);
                match index.and_then(|i| ledger.committed.get_mut(i)) {
                    Some(slot @ None) => *slot = Some(interaction.created_at),
                    Some(Some(_)) => ledger.duplicated += 1,
                    None => ledger.other += 1,
                }
            }
        }
        Ok(ledger)
    }

    fn lost(&self) -> usize {
        self.committed.iter().filter(|c| c.is_none()).count()
    }

    /// The exactly-once line, and, where the mode timed every APPEND, the
    /// per-mail APPEND → commit distribution.
    fn report(&self, outcome: &mut Outcome, tail: &mut Outcome) {
        let n = self.committed.len();
        tail.lines.insert(
            0,
            format!(
                "once      {} of {n} mails each opened exactly one interaction: {} lost, {} duplicated, {} other messages",
                n - self.lost(),
                self.lost(),
                self.duplicated,
                self.other
            ),
        );
        tail.json.insert("lost".into(), json!(self.lost()));
        tail.json
            .insert("duplicated".into(), json!(self.duplicated));
        if outcome.appended_at.is_empty() {
            return;
        }
        // From the APPEND's sending: under load Dovecot may show a mail to
        // other sessions (mailroom's) well before its answer reaches the
        // appender, so "answered" can come after the commit.
        let samples: Vec<f64> = self
            .committed
            .iter()
            .zip(&outcome.appended_at)
            .filter_map(|(c, a)| Some(((*c)? - a.as_ref()?.0).as_seconds_f64()))
            .collect();
        let rtt: Vec<f64> = outcome
            .appended_at
            .iter()
            .flatten()
            .map(|(sent, answered)| (*answered - *sent).as_seconds_f64())
            .collect();
        if let Some(s) = Summary::of(&samples) {
            outcome.lines.push(
                "APPEND sent → committed, per mail (the interaction's created_at, to the ms; includes the APPEND itself, Dovecot's 500 ms notify delay and any wait behind earlier mail):".into(),
            );
            outcome.lines.push(format!("          {}", s.line()));
            outcome
                .json
                .insert("append_to_commit_ms".into(), s.json_ms());
        }
        if let Some(s) = Summary::of(&rtt) {
            outcome
                .lines
                .push("APPEND round trip (sent → answered by Dovecot):".into());
            outcome.lines.push(format!("          {}", s.line()));
            outcome.json.insert("append_rtt_ms".into(), s.json_ms());
        }
    }
}

/// What the app says after the run: its counters, its log, the store.
pub(crate) async fn tail(app: &Mailroom, logs: &LogCounts) -> anyhow::Result<Outcome> {
    let status = app.status().await?;
    let interactions = app.interactions().await?;
    let metrics = app.metrics().await?;
    // Counters are floats in the text format; this one is whole.
    let imap_errors = crate::prom::total(
        &metrics,
        "mailroom_imap_errors_total",
        &[("account", ACCOUNT)],
    ) as u64;
    let log = logs.snapshot();
    let num = |k: &str| status[k].as_u64().unwrap_or(0);
    let mut lines = vec![format!(
        "outcome   {interactions} interactions; mailbox counted {} ingested, {} duplicates, {} quarantined; {} IMAP errors; state `{}`",
        num("ingested"),
        num("duplicates"),
        num("quarantined"),
        imap_errors,
        status["state"].as_str().unwrap_or("?"),
    )];
    if let Some(e) = status["last_error"].as_str() {
        lines.push(format!("last err  {e}"));
    }
    lines.push(format!(
        "app log   {} errors, {} warnings",
        log.errors, log.warnings
    ));
    for (line, count) in &log.samples {
        lines.push(format!("          {count}× {line}"));
    }
    let mut j = serde_json::Map::new();
    j.insert("interactions".into(), json!(interactions));
    j.insert("mailbox_duplicates".into(), json!(num("duplicates")));
    j.insert("quarantined".into(), json!(num("quarantined")));
    j.insert("imap_errors".into(), json!(imap_errors));
    j.insert("log_errors".into(), json!(log.errors));
    j.insert("log_warnings".into(), json!(log.warnings));
    Ok(Outcome {
        lines,
        json: j,
        appended_at: Vec::new(),
    })
}

fn histogram_lines(h: &Histogram) -> Vec<String> {
    let q = |p: f64| h.quantile(p).map_or("-".to_string(), |e| e.to_string());
    let max = match h.max() {
        Some(crate::prom::Estimate::Within { lower, upper, .. }) => {
            format!("in ({}, {}]", ms(lower), ms(upper))
        }
        Some(e) => e.to_string(),
        None => "-".into(),
    };
    vec![
        format!(
            "EXISTS → commit, {LATENCY} (n {}; percentiles interpolated inside the histogram's buckets, max known only to its bucket):",
            h.count
        ),
        format!(
            "          p50 {}  p90 {}  p99 {}  max {max}  (mean {}, exact)",
            q(0.5),
            q(0.9),
            q(0.99),
            h.mean().map_or("-".into(), ms)
        ),
    ]
}

pub(crate) fn histogram_json(h: &Histogram) -> Value {
    let q = |p: f64| h.quantile(p).map(|e| round3(e.value() * 1000.0));
    json!({
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
        "max_bucket": h.max().map(|e| round3(e.value() * 1000.0)),
        "mean": h.mean().map(|m| round3(m * 1000.0)),
        "n": h.count,
        "interpolated": true,
    })
}

/// The mailbox status once it accounts for `mails` mails. The watermark
/// moves in the commit's transaction, so the store shows a mail a moment
/// before the mailbox has recorded its latency, counted it and stamped
/// `last_mail_at`; reading the status in that gap would attribute the
/// previous mail's figures to this one.
async fn settled_status(app: &Mailroom, mails: u64) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = app.status().await?;
        let n = |k: &str| status[k].as_u64().unwrap_or(0);
        let seen = n("ingested") + n("duplicates") + n("quarantined");
        if seen >= mails || Instant::now() > deadline {
            return Ok(status);
        }
        tokio::time::sleep(TRICKLE_POLL).await;
    }
}

fn last_mail_at(status: &Value) -> Option<DateTime<Utc>> {
    let text = status["last_mail_at"].as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn append_json_line(path: &std::path::Path, value: &Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{value}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
