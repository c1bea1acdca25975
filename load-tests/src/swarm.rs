//! N agents, each logged in over HTTP and holding its own WebSocket, each
//! its own task: it stamps every frame as it comes off the socket, answers
//! offers after a think time (accepting, or rejecting with a probability),
//! and once assigned may reply (`POST …/messages`) and then close
//! (`POST …/close`), as a person at a desk would, only faster.
//!
//! Why a task per agent: an agent reacts to its own frames without waiting
//! for the harness's loop (which would serialise 10,000 agents behind one
//! consumer), and each frame's arrival instant is taken where it arrives.
//! Everything an agent sees or does goes to the harness over one unbounded
//! channel; the harness drains it continuously.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Deployment, login};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the agents behave.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Think time before answering an offer, uniform in [min, max] ms.
    pub think_ms: (u64, u64),
    pub reject_p: f64,
    /// Probability of replying once assigned.
    pub reply_p: f64,
    /// Close every interaction once assigned (after the reply, if any).
    pub close: bool,
    /// Where replies go (a mailbox nobody reads; never a customer).
    pub sink: String,
}

#[derive(Debug)]
pub struct Event {
    pub agent: u32,
    pub at: Instant,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Offer {
        interaction: String,
        subject: String,
    },
    AcceptSent {
        interaction: String,
    },
    Rejected,
    Assigned {
        interaction: String,
    },
    /// `offer_rescinded`, with its reason.
    Rescinded {
        interaction: String,
        reason: String,
    },
    /// `error offer_gone` answering an accept: a lost race, not an error.
    Gone,
    /// An error frame, or an HTTP request of the agent's that failed.
    Error(String),
    Replied,
    Closed,
    /// The reply and close of one assignment are over (whatever their
    /// outcome): the harness waits for these before it stops.
    WorkEnded,
    /// The socket ended (an error unless the harness asked for it).
    SocketEnded(String),
}

enum Cmd {
    Decide {
        offer_id: Value,
        interaction: String,
    },
}

pub struct Swarm {
    pub events: mpsc::UnboundedReceiver<Event>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The server's `heartbeat_secs`, from the first `hello`.
    pub heartbeat_secs: Option<u64>,
    pub connected: usize,
}

/// Log every agent in and open its socket, `parallel` at a time, calling
/// `progress` with the number connected so far. Fails on the first agent
/// that cannot connect (a scenario with fewer agents than asked would not
/// measure what it says).
pub async fn connect(
    dep: &Deployment,
    behaviour: Behaviour,
    parallel: usize,
    progress: impl Fn(usize),
) -> anyhow::Result<Swarm> {
    let (tx, events) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let behaviour = Arc::new(behaviour);
    let mut tasks = JoinSet::new();
    let mut heartbeat_secs = None;
    let mut connected = 0;
    let mut pending = futures_util::stream::iter(dep.agents.iter().enumerate().map(|(i, name)| {
        let http = dep.http.clone();
        let base = dep.base.clone();
        let password = dep.agent_password.clone();
        let name = name.clone();
        let ws_base = dep.ws_url("");
        async move {
            let token = login(&http, &base, &name, &password).await?;
            let (mut ws, _) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                // TCP_NODELAY on our side, as browsers set it.
                tokio_tungstenite::connect_async_with_config(
                    format!("{ws_base}{token}"),
                    None,
                    true,
                ),
            )
            .await
            .with_context(|| format!("{name}: the WebSocket did not open in time"))?
            .with_context(|| format!("{name}: opening the WebSocket"))?;
            let hello = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
                .await
                .with_context(|| format!("{name}: no hello"))?;
            let hb = match hello {
                Some(Ok(Message::Text(t))) if t.contains("\"hello\"") => {
                    serde_json::from_str::<Value>(&t)
                        .ok()
                        .and_then(|v| v["heartbeat_secs"].as_u64())
                }
                other => bail!("{name}: the first frame is not hello: {other:?}"),
            };
            Ok::<_, anyhow::Error>((i as u32, token, ws, hb))
        }
    }))
    .buffer_unordered(parallel.max(1));
    while let Some(r) = pending.next().await {
        let (agent, token, ws, hb) = r?;
        heartbeat_secs = heartbeat_secs.or(hb);
        connected += 1;
        progress(connected);
        let agent_ctx = AgentCtx {
            agent,
            token,
            http: dep.http.clone(),
            base: dep.base.clone(),
            behaviour: behaviour.clone(),
            events: tx.clone(),
        };
        tasks.spawn(run_agent(agent_ctx, ws, stop_rx.clone()));
    }
    Ok(Swarm {
        events,
        stop,
        tasks,
        heartbeat_secs,
        connected,
    })
}

impl Swarm {
    /// Close every socket (a close frame each) and wait for the tasks,
    /// within a deadline.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

struct AgentCtx {
    agent: u32,
    token: String,
    http: reqwest::Client,
    base: String,
    behaviour: Arc<Behaviour>,
    events: mpsc::UnboundedSender<Event>,
}

impl AgentCtx {
    fn emit(&self, kind: Kind) {
        let _ = self.events.send(Event {
            agent: self.agent,
            at: Instant::now(),
            kind,
        });
    }
}

async fn run_agent(ctx: AgentCtx, mut ws: Ws, mut stop: watch::Receiver<bool>) {
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Cmd>();
    // Offers still live for this agent (not rescinded, not answered).
    let mut live: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let at = Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    // tungstenite answers pings by itself while we read.
                    Some(Ok(Message::Close(frame))) => {
                        ctx.emit(Kind::SocketEnded(format!("closed by the server: {frame:?}")));
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        ctx.emit(Kind::SocketEnded(format!("{e}")));
                        return;
                    }
                    None => {
                        ctx.emit(Kind::SocketEnded("the socket ended".into()));
                        return;
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    ctx.emit(Kind::Error(format!("a frame that is not JSON: {text}")));
                    continue;
                };
                handle_frame(&ctx, frame, at, &mut live, &cmd_tx);
            }
            cmd = cmd_rx.recv() => {
                let Some(Cmd::Decide { offer_id, interaction }) = cmd else { continue };
                let key = offer_id.to_string();
                // Rescinded (taken by another) while thinking: nothing to answer.
                if !live.remove(&key) {
                    continue;
                }
                let reject = ctx.behaviour.reject_p > 0.0
                    && rand::rng().random_bool(ctx.behaviour.reject_p.min(1.0));
                let kind = if reject { "reject" } else { "accept" };
                let frame = json!({"type": kind, "offer_id": offer_id, "req_id": format!("{kind}/{interaction}")});
                let at = Instant::now();
                if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                    ctx.emit(Kind::SocketEnded("writing an answer failed".into()));
                    return;
                }
                let kind = if reject { Kind::Rejected } else { Kind::AcceptSent { interaction } };
                let _ = ctx.events.send(Event { agent: ctx.agent, at, kind });
            }
            _ = stop.changed() => {
                // Close, and read until the server's close answers ours:
                // dropping the socket at once makes the server log an EOF.
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(_)) = ws.next().await {}
                }).await;
                return;
            }
        }
    }
}

fn handle_frame(
    ctx: &AgentCtx,
    frame: Value,
    at: Instant,
    live: &mut HashSet<String>,
    cmd_tx: &mpsc::UnboundedSender<Cmd>,
) {
    let interaction = frame["interaction_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let send = |kind| {
        let _ = ctx.events.send(Event {
            agent: ctx.agent,
            at,
            kind,
        });
    };
    match frame["type"].as_str().unwrap_or_default() {
        "offer" => {
            let offer_id = frame["offer_id"].clone();
            live.insert(offer_id.to_string());
            send(Kind::Offer {
                interaction: interaction.clone(),
                subject: frame["subject"].as_str().unwrap_or_default().to_string(),
            });
            let (lo, hi) = ctx.behaviour.think_ms;
            let think = if hi > lo {
                rand::rng().random_range(lo..=hi)
            } else {
                lo
            };
            if think == 0 {
                let _ = cmd_tx.send(Cmd::Decide {
                    offer_id,
                    interaction,
                });
            } else {
                // A timer per offer, not per agent: an agent may hold
                // several offers at once (capacity > 1).
                let cmd_tx = cmd_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(think)).await;
                    let _ = cmd_tx.send(Cmd::Decide {
                        offer_id,
                        interaction,
                    });
                });
            }
        }
        "offer_rescinded" => {
            live.remove(&frame["offer_id"].to_string());
            send(Kind::Rescinded {
                interaction,
                reason: frame["reason"].as_str().unwrap_or("?").to_string(),
            });
        }
        "assigned" => {
            let via_accept = frame["via"] == "accept";
            send(Kind::Assigned {
                interaction: interaction.clone(),
            });
            if via_accept {
                let b = &ctx.behaviour;
                let reply = b.reply_p > 0.0 && rand::rng().random_bool(b.reply_p.min(1.0));
                // Spawned whenever the run does work after an assignment,
                // even with nothing to do for this one: the harness counts
                // `WorkEnded` against assignments to know when to stop.
                if b.reply_p > 0.0 || b.close {
                    tokio::spawn(work(
                        ctx.http.clone(),
                        ctx.base.clone(),
                        ctx.token.clone(),
                        interaction,
                        reply,
                        b.close,
                        b.sink.clone(),
                        ctx.agent,
                        ctx.events.clone(),
                    ));
                }
            }
        }
        "error" => {
            let code = frame["code"].as_str().unwrap_or("?");
            let is_answer = frame["req_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("accept/") || r.starts_with("reject/"));
            if code == "offer_gone" && is_answer {
                send(Kind::Gone);
            } else {
                send(Kind::Error(format!("error frame: {frame}")));
            }
        }
        _ => {}
    }
}

/// Reply (maybe) and close one interaction over HTTP, as the owner.
#[allow(clippy::too_many_arguments)]
async fn work(
    http: reqwest::Client,
    base: String,
    token: String,
    interaction: String,
    reply: bool,
    close: bool,
    sink: String,
    agent: u32,
    events: mpsc::UnboundedSender<Event>,
) {
    let emit = |kind| {
        let _ = events.send(Event {
            agent,
            at: Instant::now(),
            kind,
        });
    };
    if reply {
        // Addressed to a sink mailbox of the mail domain: a reply to the
        // generated customers would bounce back into the account.
        let body = json!({"mode": "reply", "to": [sink], "text": "Thank you for your mail; this is a load test's reply."});
        match post(
            &http,
            &base,
            &token,
            &format!("/interactions/{interaction}/messages"),
            &body,
        )
        .await
        {
            Ok(()) => emit(Kind::Replied),
            Err(e) => emit(Kind::Error(format!("reply to {interaction}: {e:#}"))),
        }
    }
    if close {
        match post(
            &http,
            &base,
            &token,
            &format!("/interactions/{interaction}/close"),
            &json!({}),
        )
        .await
        {
            Ok(()) => emit(Kind::Closed),
            Err(e) => emit(Kind::Error(format!("close {interaction}: {e:#}"))),
        }
    }
    emit(Kind::WorkEnded);
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let res = http
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    if !res.status().is_success() {
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        bail!("POST {path} answered {status}: {text}");
    }
    Ok(())
}
