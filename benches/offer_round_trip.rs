//! Offer → accept round trips per second through the real actors.
//!
//! The whole app runs in this process (`startup::spawn_in_thread`) on a fresh
//! SQLite store, with one ring_all queue of 1 or 10 agents, each logged in
//! over HTTP and connected over a real WebSocket on loopback. One round trip:
//!
//! 1. (not timed) an interaction is created in the store, as ingest does;
//! 2. it is handed to its queue (`routing().enqueue`, what ingest calls next);
//! 3. the queue records the offers and pushes an `offer` frame to every agent;
//! 4. the first agent to receive it sends `accept`;
//! 5. that agent gets both `ok` (the answer) and `assigned` (the event).
//!
//! The time of 2 → 5 is what criterion sees (`iter_custom`, one round trip in
//! flight at a time, so elements/s = sequential round trips per second).
//! With 10 agents the other nine also get their offer and then
//! `offer_rescinded{taken}`; the round waits for those too before the next
//! one starts (untimed), so rounds never overlap.
//!
//! After each bench a summary prints p50/p99 of the round trip and of its two
//! parts, enqueue → offer frame received and accept sent → ok + assigned
//! received, from every round timed (warm-up included).
//!
//! Each size runs twice:
//!
//! - `server_default`: the app as it ships. actix-web leaves Nagle's
//!   algorithm on for accepted sockets, so a small frame written while the
//!   previous one is unacknowledged waits for the client's delayed ACK (up
//!   to 40 ms on Linux): the next offer right after `ok` + `assigned`, or
//!   the second of those two frames.
//! - `server_nodelay`: the same, after the bench sets `TCP_NODELAY` on the
//!   server's side of every connection (the sockets live in this process),
//!   i.e. what the actors and the store cost once the server sets it.
//!
//! Agents have a capacity of 1,000,000, so they never fill up however many
//! rounds criterion runs. The account's IMAP points at port 1: no mailbox is
//! involved (its connection fails and backs off quietly).
//!
//! Run: `cargo bench --bench offer_round_trip` (needs no service).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use mailroom::config::Settings;
use mailroom::domain::{AccountId, AgentId, QueueId};
use mailroom::startup::{RunningApp, spawn_in_thread};
use mailroom::store::NewInteraction;
use serde_json::{Value, json};
use std::os::fd::{FromRawFd as _, IntoRawFd as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PASSWORD: &str = "pw-bench";
const CAPACITY: u32 = 1_000_000;
/// Longest wait for any one frame; a round that takes longer is a bug.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// A frame as one agent's socket delivered it, stamped on arrival.
struct Event {
    agent: usize,
    at: Instant,
    frame: Value,
}

/// One timed round trip.
#[derive(Clone, Copy)]
struct Sample {
    /// enqueue → all of `ok` and `assigned` received.
    total: Duration,
    /// enqueue → the first `offer` frame received.
    offer: Duration,
    /// accept sent → all of `ok` and `assigned` received.
    accept: Duration,
}

struct Harness {
    app: RunningApp,
    account: AccountId,
    queue: QueueId,
    agents: usize,
    sinks: Vec<SplitSink<Ws, Message>>,
    events: mpsc::UnboundedReceiver<Event>,
    round: u64,
    // Dropped last: the SQLite file must outlive the app that has it open.
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(agents: usize, nodelay: bool) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        // One hash for every agent: provisioning hashes nothing, and only the
        // logins below pay argon2 (once per agent, before any timing).
        let hash = mailroom::auth::hash_password(PASSWORD).expect("hash");
        let names: Vec<String> = (0..agents).map(|i| format!("agent{i:02}")).collect();
        let mut toml = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}/bench.db\"\n\
             [presence]\nurl = \"memory://\"\nprefix = \"mailroom_bench_{:08x}\"\n\
             [bootstrap]\nadmin_password_file = \"\"\n",
            dir.path().display(),
            rand::random::<u32>(),
        );
        for n in &names {
            toml.push_str(&format!(
                "[[agents]]\nusername = \"{n}\"\npassword_hash = \"{hash}\"\ncapacity = {CAPACITY}\n"
            ));
        }
        let members: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        // A long offer timeout and no sticky agent: nothing but the accept
        // ends an offer during the bench.
        toml.push_str(&format!(
            "[[queues]]\nname = \"bench\"\nstrategy = \"ring_all\"\noffer_timeout_secs = 3600\nsticky_secs = 0\nagents = [{}]\n\
             [[accounts]]\nkey = \"BENCH\"\naddress = \"bench@example.test\"\nqueue = \"bench\"\n\
             imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
             smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n",
            members.join(", ")
        ));
        let settings = Settings::from_toml(&toml).expect("bench config is valid");
        // Building migrates and binds: off this runtime's thread.
        let app = tokio::task::spawn_blocking(move || spawn_in_thread(settings))
            .await
            .expect("start thread")
            .expect("app starts");
        let store = &app.state.store;
        let account = store.account_by_key("BENCH").await.expect("account");
        let http = reqwest::Client::new();
        let (tx, events) = mpsc::unbounded_channel();
        let mut sinks = Vec::with_capacity(agents);
        let mut ids: Vec<AgentId> = Vec::with_capacity(agents);
        for (i, n) in names.iter().enumerate() {
            ids.push(store.agent_by_username(n).await.expect("agent").id);
            let res = http
                .post(app.url("/api/v1/login"))
                .json(&json!({"username": n, "password": PASSWORD}))
                .send()
                .await
                .expect("login");
            assert_eq!(res.status(), 200, "login {n}");
            let body: Value = res.json().await.expect("login body");
            let token = body["token"].as_str().expect("token");
            // TCP_NODELAY on the client, as browsers set it: the accept must
            // not wait for the ACK of an earlier small write.
            let (ws, _) =
                tokio_tungstenite::connect_async_with_config(app.ws_url(token), None, true)
                    .await
                    .expect("ws connects");
            let (sink, stream) = ws.split();
            sinks.push(sink);
            // One reader task per socket: frames of the K sockets come in
            // any order, and each is stamped the moment its socket yields
            // it, not when the round's loop gets round to that socket. The
            // unbounded channel is fine: a round produces at most 2K+1
            // frames and the loop drains them all before the next round.
            tokio::spawn(read_frames(i, stream, tx.clone()));
        }
        let mut harness = Harness {
            app,
            account: account.id,
            queue: account.queue_id,
            agents,
            sinks,
            events,
            round: 0,
            _dir: dir,
        };
        for i in 0..agents {
            let hello = harness.next_event().await;
            assert_eq!(hello.frame["type"], "hello", "agent {i}: {}", hello.frame);
        }
        harness.wait_available(&ids).await;
        if nodelay {
            let set = server_nodelay(harness.app.addr.port());
            assert!(set >= agents, "TCP_NODELAY set on {set} server sockets");
        }
        harness
    }

    /// Every agent counts as online in routing's directory: from then on
    /// each offer goes to all K of them, which the rounds rely on.
    async fn wait_available(&self, ids: &[AgentId]) {
        let directory = &self.app.state.hub.routing().directory;
        let deadline = Instant::now() + FRAME_DEADLINE;
        while !ids
            .iter()
            .all(|a| directory.get(a).is_some_and(|rt| rt.available))
        {
            assert!(Instant::now() < deadline, "agents never became available");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(FRAME_DEADLINE, self.events.recv())
            .await
            .expect("a frame within the deadline")
            .expect("the readers are running")
    }

    async fn round_trip(&mut self) -> Sample {
        self.round += 1;
        let round = self.round;
        let interaction = self
            .app
            .state
            .store
            .create_interaction(NewInteraction {
                account: self.account,
                queue: self.queue,
                subject: format!("Round {round}"),
                contact: None,
                priority: 0,
            })
            .await
            .expect("create interaction")
            .id;
        let id = interaction.to_string();
        let t0 = Instant::now();
        self.app
            .state
            .hub
            .routing()
            .enqueue(self.queue, interaction);
        let mut offers = 0;
        let mut taken = 0;
        let mut winner: Option<(usize, Instant, Instant)> = None;
        let (mut ok_at, mut assigned_at) = (None, None);
        while !(ok_at.is_some()
            && assigned_at.is_some()
            && offers == self.agents
            && taken == self.agents - 1)
        {
            let ev = self.next_event().await;
            let f = &ev.frame;
            let for_this = f["interaction_id"] == id.as_str();
            match f["type"].as_str().unwrap_or_default() {
                "offer" if for_this => {
                    offers += 1;
                    if winner.is_none() {
                        let accept =
                            json!({"type": "accept", "offer_id": f["offer_id"], "req_id": round});
                        let sent = Instant::now();
                        self.sinks[ev.agent]
                            .send(Message::Text(accept.to_string().into()))
                            .await
                            .expect("send accept");
                        winner = Some((ev.agent, ev.at, sent));
                    }
                }
                "ok" if f["req_id"] == round => ok_at = Some(ev.at),
                "assigned" if for_this => assigned_at = Some(ev.at),
                "offer_rescinded" if for_this && f["reason"] == "taken" => taken += 1,
                "error" => panic!("round {round}: agent {} got {f}", ev.agent),
                _ => {}
            }
        }
        let (_, offered_at, accept_sent) = winner.expect("an offer");
        let done = ok_at.max(assigned_at).expect("both frames");
        Sample {
            total: done - t0,
            offer: offered_at - t0,
            accept: done - accept_sent,
        }
    }
}

async fn read_frames(
    agent: usize,
    mut stream: futures_util::stream::SplitStream<Ws>,
    tx: mpsc::UnboundedSender<Event>,
) {
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Text(text) = msg {
            let at = Instant::now();
            let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
            if tx.send(Event { agent, at, frame }).is_err() {
                return;
            }
        }
    }
}

/// Set `TCP_NODELAY` on the server's side of every TCP connection accepted
/// on `port` in this process (mailroom does not set it yet; see the module
/// doc). Returns how many sockets were changed. Linux only (`/proc`).
fn server_nodelay(port: u16) -> usize {
    let mut changed = 0;
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: `fd` is an open socket of this process (listed just now,
        // and the app's connections stay open while the bench holds their
        // clients). The TcpStream only borrows it: `into_raw_fd` hands it
        // back without closing it. setsockopt on a socket another thread
        // uses is safe; on a socket that is not TCP it fails, ignored.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        let accepted_here =
            stream.local_addr().is_ok_and(|a| a.port() == port) && stream.peer_addr().is_ok();
        if accepted_here && stream.set_nodelay(true).is_ok() {
            changed += 1;
        }
        let _ = stream.into_raw_fd();
    }
    changed
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = (q * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let line = |name: &str, pick: fn(&Sample) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(pick).collect();
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "  {name:<34} p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  mean {:>9.3?}",
            percentile(&v, 0.50),
            percentile(&v, 0.99),
            v[v.len() - 1],
            mean
        );
    };
    println!(
        "offer_round_trip/{name}: {} round trips timed (warm-up included)",
        samples.len()
    );
    line("enqueue → ok + assigned (total)", |s| s.total);
    line("enqueue → offer frame received", |s| s.offer);
    line("accept sent → ok + assigned", |s| s.accept);
}

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("offer_round_trip");
    g.throughput(Throughput::Elements(1));
    // A round trip takes from under a millisecond to ~45 ms (the delayed
    // ACK): a short warm-up, a few seconds of measurement and criterion's
    // smallest sample count keep each bench to a few seconds.
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for (server, nodelay, agents) in [
        ("server_default", false, 1usize),
        ("server_default", false, 10),
        ("server_nodelay", true, 1),
        ("server_nodelay", true, 10),
    ] {
        // The client side on one thread: readers and the round loop take
        // turns there, and the app under test keeps its own threads (actix
        // arbiters, the SQLite pool) to itself as far as 2 cores allow.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut harness = rt.block_on(Harness::start(agents, nodelay));
        let mut samples = Vec::new();
        let id = BenchmarkId::new(format!("{server}/agents"), agents);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let s = harness.round_trip().await;
                        total += s.total;
                        samples.push(s);
                    }
                    total
                })
            })
        });
        summary(&format!("{server}/agents/{agents}"), &samples);
        let Harness { app, _dir, .. } = harness;
        app.stop();
        drop(_dir);
    }
    g.finish();
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
