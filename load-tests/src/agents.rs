//! Agents over real WebSockets, for the routing scenarios: each logs in over
//! HTTP, opens `/ws`, and then either accepts every offer the moment it
//! arrives (a bot that never hesitates) or accepts when the harness tells it
//! to. Every frame is stamped on arrival and handed to the harness as an
//! [`Event`].

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use mailroom::domain::AgentId;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::app::{Mailroom, Team};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long connecting and the first frame (`hello`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one agent saw or did, and when.
#[derive(Debug)]
pub struct Event {
    /// The agent's index in [`Team::agents`].
    pub agent: usize,
    /// When the frame came off the socket (or the command went on it).
    pub at: Instant,
    /// The same moment on the wall clock, to compare with a frame's `at`
    /// (the server's clock: the same machine, to the millisecond).
    pub wall: DateTime<Utc>,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    /// A server frame, as JSON.
    Frame(Value),
    /// The agent wrote `accept` for an offer of this interaction.
    AcceptSent { interaction: String },
    /// The socket ended.
    Closed,
}

/// How the agents answer offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accept every offer as soon as it arrives.
    AcceptAll,
    /// Accept only when told ([`Agents::accept`]).
    WhenTold,
}

/// An order to accept one offer.
#[derive(Debug)]
struct AcceptOrder {
    offer_id: Value,
    interaction: String,
}

/// The `req_id` of an accept: the interaction and the agent, so that the
/// answer (`ok` or `error`) can be attributed without more bookkeeping.
pub fn req_id(interaction: &str, agent: usize) -> String {
    format!("{interaction}/{agent}")
}

/// The interaction an answer's `req_id` names (see [`req_id`]).
pub fn interaction_of_req(req_id: &Value) -> Option<&str> {
    req_id.as_str()?.split_once('/').map(|(i, _)| i)
}

/// The team's agents, connected; their events arrive on [`Agents::next`].
pub struct Agents {
    orders: Vec<mpsc::UnboundedSender<AcceptOrder>>,
    events: mpsc::UnboundedReceiver<Event>,
    tasks: JoinSet<()>,
}

impl Agents {
    /// Log every agent of `team` in, open its socket (each past its
    /// `hello`), and wait until routing counts all of them as available,
    /// so that the first offer already goes to every one.
    pub async fn connect(app: &Mailroom, team: &Team, answer: Answer) -> anyhow::Result<Agents> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut orders = Vec::with_capacity(team.agents.len());
        let mut tasks = JoinSet::new();
        let mut ids = Vec::with_capacity(team.agents.len());
        for (index, name) in team.agents.iter().enumerate() {
            ids.push(
                app.store()
                    .agent_by_username(name)
                    .await
                    .map_err(|e| anyhow::anyhow!("agent {name} was not provisioned: {e}"))?
                    .id,
            );
            let token = app.login(name, &team.password).await?;
            // TCP_NODELAY on our side, as browsers set it: a small frame
            // (an accept) must not wait for the ACK of the one before.
            let (mut ws, _) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async_with_config(app.app.ws_url(&token), None, true),
            )
            .await
            .with_context(|| format!("{name}: the WebSocket did not open in time"))?
            .with_context(|| format!("{name}: opening the WebSocket"))?;
            let hello = tokio::time::timeout(CONNECT_TIMEOUT, ws.next())
                .await
                .with_context(|| format!("{name}: no hello"))?;
            match hello {
                Some(Ok(Message::Text(t))) if t.contains("\"hello\"") => {}
                other => bail!("{name}: the first frame is not hello: {other:?}"),
            }
            let (order_tx, order_rx) = mpsc::unbounded_channel();
            orders.push(order_tx);
            // One task per agent, owning its socket: an agent reacts to its
            // own frames (auto-accept) without waiting for the harness's
            // loop, as a client would, and every frame is stamped when its
            // socket yields it. Unbounded channels: a round produces a few
            // frames per agent, and the harness drains them as they come.
            tasks.spawn(run_agent(index, ws, answer, order_rx, tx.clone()));
        }
        wait_available(app, &ids).await?;
        Ok(Agents {
            orders,
            events,
            tasks,
        })
    }

    /// Tell `agent` to accept `offer_id` (of `interaction`).
    pub fn accept(&self, agent: usize, offer_id: Value, interaction: &str) -> anyhow::Result<()> {
        self.orders
            .get(agent)
            .context("no such agent")?
            .send(AcceptOrder {
                offer_id,
                interaction: interaction.to_string(),
            })
            .map_err(|_| anyhow::anyhow!("agent {agent}'s socket has ended"))
    }

    /// The next event, or `None` at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Option<Event> {
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Close every socket (each task sends a close frame once its orders
    /// channel ends) and wait for the tasks, within a deadline.
    pub async fn close(self) {
        let Agents {
            orders, mut tasks, ..
        } = self;
        drop(orders);
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
}

/// Routing offers only to agents its directory counts as available; an
/// agent is added there when its socket's session starts, a moment after
/// `hello`. In-process, so read directly rather than polled over HTTP.
async fn wait_available(app: &Mailroom, ids: &[AgentId]) -> anyhow::Result<()> {
    let directory = &app.app.state.hub.routing().directory;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let missing = ids
            .iter()
            .filter(|a| !directory.get(a).is_some_and(|rt| rt.available))
            .count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{missing} agents are still not available to routing after {CONNECT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run_agent(
    agent: usize,
    mut ws: Ws,
    answer: Answer,
    mut orders: mpsc::UnboundedReceiver<AcceptOrder>,
    events: mpsc::UnboundedSender<Event>,
) {
    let event = |kind: Kind, at: Instant, wall: DateTime<Utc>| Event {
        agent,
        at,
        wall,
        kind,
    };
    loop {
        tokio::select! {
            msg = ws.next() => {
                let (at, wall) = (Instant::now(), Utc::now());
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    // tungstenite answers pings itself while we read.
                    Some(Ok(_)) => continue,
                    _ => {
                        let _ = events.send(event(Kind::Closed, at, wall));
                        return;
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if answer == Answer::AcceptAll && frame["type"] == "offer" {
                    let interaction = frame["interaction_id"].as_str().unwrap_or_default().to_string();
                    let order = AcceptOrder { offer_id: frame["offer_id"].clone(), interaction };
                    // Accept first, report after: the report is not on the
                    // path being measured (the harness keys what it hears by
                    // interaction, so the order of the two events is moot).
                    let sent = send_accept(agent, &mut ws, order, &events).await;
                    let _ = events.send(event(Kind::Frame(frame), at, wall));
                    if !sent {
                        return;
                    }
                } else if events.send(event(Kind::Frame(frame), at, wall)).is_err() {
                    return;
                }
            }
            order = orders.recv() => {
                let Some(order) = order else {
                    // Close, and read until the server's close answers ours:
                    // dropping the socket at once makes the server log the
                    // EOF as a protocol error.
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                    return;
                };
                if !send_accept(agent, &mut ws, order, &events).await {
                    return;
                }
            }
        }
    }
}

/// Write `accept` and report when it went out; false when the socket is gone.
async fn send_accept(
    agent: usize,
    ws: &mut Ws,
    order: AcceptOrder,
    events: &mpsc::UnboundedSender<Event>,
) -> bool {
    let frame = json!({
        "type": "accept",
        "offer_id": order.offer_id,
        "req_id": req_id(&order.interaction, agent),
    });
    let (at, wall) = (Instant::now(), Utc::now());
    if ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_err()
    {
        let _ = events.send(Event {
            agent,
            at,
            wall,
            kind: Kind::Closed,
        });
        return false;
    }
    let _ = events.send(Event {
        agent,
        at,
        wall,
        kind: Kind::AcceptSent {
            interaction: order.interaction,
        },
    });
    true
}
