//! Memory per connected agent, and whether heartbeats hold, measured on the
//! release binary in its own process (issue #7, "10,000 agents on one node
//! at ≤ 64 KiB RSS each"). A stop-gap beside `mailroom-load --scenario
//! agents`, kept because it isolates the server's resident memory:
//!
//! ```text
//! cargo build --release --bin mailroom
//! cargo run --release -p load-tests --example agents_rss -- \
//!     --agents 10000 --heartbeat-secs 5 --hold-secs 30
//! ```
//!
//! It writes a config with N agents that all share one argon2id hash made
//! with cheap parameters (m=1024 KiB, t=1, p=1: the server verifies with the
//! parameters in the PHC string, so N logins cost N × ~1 ms, not N × 19 MiB
//! and tens of ms), starts `mailroom serve`, and reads the server's VmRSS
//! from /proc at four points: ready, after N logins, after N sockets got
//! `hello`, and after holding them for `--hold-secs` (several heartbeats).
//! Per agent = (last − ready) / N. The clients answer pings (tungstenite
//! queues the pong and writes it on the next read); the report says how
//! many sockets the server closed, why, and how many agents a supervisor
//! sees online at the end. The client needs ~N open files (`ulimit -n`);
//! the server raises its own limit. Other options: `--bin PATH`,
//! `--concurrency K` (logins and connects in flight, 64), `--hash PHC`
//! (another hash of `load-agent-pw`, e.g. argon2's defaults for a realistic
//! login storm), `--extra-config FILE` (TOML appended to the config).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// `load-agent-pw` hashed with argon2id m=1024,t=1,p=1 (python argon2-cffi:
/// `PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)`).
const CHEAP_HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$9wyiIAHzd5eBODAbgU/1vw$KO4dUE95ZVfyOaXc2DkZVb/znYriLccbEQg0qptUXPc";
const PASSWORD: &str = "load-agent-pw";

struct Args {
    agents: usize,
    heartbeat_secs: u64,
    hold_secs: u64,
    bin: PathBuf,
    concurrency: usize,
    extra_config: Option<PathBuf>,
    /// Another PHC string of PASSWORD, e.g. one with argon2's default
    /// parameters (19 MiB, t=2) to see a realistic login storm.
    hash: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        agents: 1000,
        heartbeat_secs: 5,
        hold_secs: 30,
        bin: PathBuf::from("target/release/mailroom"),
        concurrency: 64,
        extra_config: None,
        hash: CHEAP_HASH.to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--agents" => a.agents = v.parse()?,
            "--heartbeat-secs" => a.heartbeat_secs = v.parse()?,
            "--hold-secs" => a.hold_secs = v.parse()?,
            "--bin" => a.bin = v.into(),
            "--concurrency" => a.concurrency = v.parse()?,
            "--extra-config" => a.extra_config = Some(v.into()),
            "--hash" => a.hash = v,
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One line of `/metrics` whose name and labels start with `prefix`, summed.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Default)]
struct Counters {
    hello: AtomicUsize,
    pings: AtomicU64,
    closed_by_server: AtomicUsize,
    ended: AtomicUsize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cfg = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}/m.db\"\n\
         [ws]\nheartbeat_secs = {}\n[bootstrap]\nadmin_password_file = \"\"\n[log]\nlevel = \"warn\"\n",
        dir.path().display(),
        a.heartbeat_secs
    );
    if let Some(extra) = &a.extra_config {
        cfg.push_str(&std::fs::read_to_string(extra)?);
    }
    cfg.push_str(&format!(
        "[[agents]]\nusername = \"sup\"\nrole = \"supervisor\"\npassword_hash = \"{}\"\n",
        a.hash
    ));
    for i in 0..a.agents {
        cfg.push_str(&format!(
            "[[agents]]\nusername = \"a{i:05}\"\npassword_hash = \"{}\"\n",
            a.hash
        ));
    }
    let cfg_path = dir.path().join("mailroom.toml");
    std::fs::write(&cfg_path, cfg)?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = std::process::Command::new(&a.bin)
        .arg("serve")
        .arg("--config")
        .arg(&cfg_path)
        .current_dir(dir.path())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", a.bin.display()))?;
    let pid = child.id();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "server exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("server.log"))?
            );
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("server not ready after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready = rss_kib(pid)?;
    println!(
        "agents={} heartbeat={}s ready in {:.1}s rss_ready={} KiB threads={}",
        a.agents,
        a.heartbeat_secs,
        t0.elapsed().as_secs_f64(),
        ready,
        threads(pid)
    );

    // The peak RSS during the logins (argon2's memory), sampled every 20 ms.
    let login_peak = Arc::new(AtomicU64::new(ready));
    let sampler = {
        let peak = login_peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Logins, `concurrency` at a time.
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.agents {
        let (http, base, sem) = (http.clone(), base.clone(), sem.clone());
        tasks.spawn(async move {
            let _p = sem.acquire_owned().await?;
            login(&http, &base, &format!("a{i:05}"))
                .await
                .map(|t| (i, t))
        });
    }
    let mut tokens = vec![String::new(); a.agents];
    while let Some(r) = tasks.join_next().await {
        let (i, t) = r??;
        tokens[i] = t;
    }
    let after_login = rss_kib(pid)?;
    sampler.abort();
    println!(
        "logins: {:.1}s rss={} KiB (+{:.1} KiB/agent) peak_during_logins={} KiB threads={}",
        t.elapsed().as_secs_f64(),
        after_login,
        (after_login - ready) as f64 / a.agents as f64,
        login_peak.load(Ordering::Relaxed),
        threads(pid)
    );

    // Sockets: each client task connects, waits for `hello`, then reads
    // until the socket ends (reading is what answers the server's pings).
    let t = Instant::now();
    let counters = Arc::new(Counters::default());
    let close_reasons = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut sockets = tokio::task::JoinSet::new();
    for token in tokens {
        let (sem, c, reasons) = (sem.clone(), counters.clone(), close_reasons.clone());
        let url = format!("ws://127.0.0.1:{port}/ws?token={token}");
        sockets.spawn(async move {
            let permit = sem.acquire_owned().await;
            // Small client buffers: the clients share the machine with the
            // server, and their memory is not what is measured.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
            // Hello first.
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"hello\"") => {}
                other => bail!("expected hello, got {other:?}"),
            }
            c.hello.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            while let Some(msg) = ws.next().await {
                match msg {
                    Ok(Message::Ping(_)) => {
                        c.pings.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Message::Close(reason)) => {
                        c.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        reasons.lock().expect("reasons").push(format!("{reason:?}"));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            c.ended.fetch_add(1, Ordering::Relaxed);
            anyhow::Ok(())
        });
    }
    while counters.hello.load(Ordering::Relaxed) < a.agents {
        if sockets.len() < a.agents
            && let Some(Ok(Err(e))) = sockets.try_join_next()
        {
            bail!("a socket failed before hello: {e:#}");
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {} sockets got hello",
                counters.hello.load(Ordering::Relaxed),
                a.agents
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_ws = rss_kib(pid)?;
    println!(
        "sockets: {:.1}s rss={} KiB (+{:.1} KiB/agent over ready, +{:.1} over logins) threads={}",
        t.elapsed().as_secs_f64(),
        after_ws,
        (after_ws - ready) as f64 / a.agents as f64,
        (after_ws - after_login) as f64 / a.agents as f64,
        threads(pid)
    );

    // Hold, sampling the RSS each heartbeat.
    let mut peak = after_ws;
    while connected_at.elapsed() < Duration::from_secs(a.hold_secs) {
        tokio::time::sleep(Duration::from_secs(a.heartbeat_secs)).await;
        let r = rss_kib(pid)?;
        peak = peak.max(r);
        println!(
            "  t+{:>3}s rss={} KiB pings={} closed_by_server={} ended={}",
            connected_at.elapsed().as_secs(),
            r,
            counters.pings.load(Ordering::Relaxed),
            counters.closed_by_server.load(Ordering::Relaxed),
            counters.ended.load(Ordering::Relaxed),
        );
    }
    let held = rss_kib(pid)?;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let sup = login(&http, &base, "sup").await?;
    let agents: Value = http
        .get(format!("{base}/api/v1/supervisor/agents"))
        .bearer_auth(&sup)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let online = agents
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["presence"]["status"] == "online")
                .count()
        })
        .unwrap_or(0);
    let reasons = close_reasons.lock().expect("reasons").clone();
    println!(
        "held {}s: rss={} KiB peak={} KiB per_agent={:.1} KiB (ready {} KiB) threads={}",
        connected_at.elapsed().as_secs(),
        held,
        peak,
        (held - ready) as f64 / a.agents as f64,
        ready,
        threads(pid)
    );
    println!(
        "heartbeats: pings_received={} (~{:.1}/socket) closed_by_server={} ended={} \
         server ws_sessions={} agents_connected={} ws_closed_heartbeat={} online_in_presence={}/{}",
        counters.pings.load(Ordering::Relaxed),
        counters.pings.load(Ordering::Relaxed) as f64 / a.agents as f64,
        counters.closed_by_server.load(Ordering::Relaxed),
        counters.ended.load(Ordering::Relaxed),
        metric(&metrics, "mailroom_ws_sessions"),
        metric(&metrics, "mailroom_agents_connected"),
        metric(&metrics, "mailroom_ws_closed_total{reason=\"heartbeat\""),
        online,
        a.agents
    );
    if !reasons.is_empty() {
        println!(
            "close reasons (first 5): {:?}",
            &reasons[..reasons.len().min(5)]
        );
    }
    println!(
        "summary agents={} ready_kib={} login_kib={} ws_kib={} held_kib={} per_agent_kib={:.1}",
        a.agents,
        ready,
        after_login,
        after_ws,
        held,
        (held - ready) as f64 / a.agents as f64
    );
    Ok(())
}

/// The server is stopped whichever way this program ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("login {username}: {}", r.status());
    }
    let v: Value = r.json().await?;
    v["token"]
        .as_str()
        .map(str::to_string)
        .context("no token in the login answer")
}
