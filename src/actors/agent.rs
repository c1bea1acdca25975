//! `AgentActor`: one per agent, on this node. It owns the agent's sockets
//! (each tab gets every frame) and their presence wish, and it is the single
//! place that turns "sockets came and went" into presence changes, so two
//! tabs closing at once cannot race each other into a wrong state.
//!
//! Invariant 5: the actor never awaits I/O in a handler's body. Store and
//! presence calls are futures spawned on the actor's context
//! (`ResponseActFuture` / `ctx.spawn`), and they update the actor's state
//! only when they complete, inside the actor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use dashmap::DashMap;
use tracing::warn;

use crate::actors::queue::Routing;
use crate::domain::{AgentId, PresenceStatus, Role};
use crate::http::ws::protocol::{PresenceView, ServerFrame};
use crate::presence::{Availability, Presence, PresenceError, PresenceState};

/// Identifies one socket of one agent within this process.
pub type SessionKey = u64;

/// The actor-facing identity of an agent (what frames and logs need).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    pub id: AgentId,
    pub username: String,
    pub name: String,
    pub role: Role,
    /// Open interactions the agent may own at once.
    pub capacity: u32,
}

/// A frame for the socket(s). Sent by the agent actor to each session.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Push(pub ServerFrame);

/// Ask a session to close (logout, deleted agent, shutdown), with a reason
/// shown to the client in the close frame.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct CloseSession {
    pub code: CloseCode,
    pub reason: String,
}

/// Close codes the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1001: the server is shutting down.
    GoingAway,
    /// 4001: the token was revoked or expired.
    Unauthorized,
    /// 1008: the client broke the protocol (too slow, too big).
    Policy,
}

/// A socket's handles, as the agent actor keeps them.
#[derive(Clone)]
pub struct SessionHandle {
    pub push: Recipient<Push>,
    pub close: Recipient<CloseSession>,
    /// SHA-256 of the session's token, so a logout closes exactly its sockets.
    pub token_hash: Arc<[u8]>,
}

/// A socket opened. Answers with the presence to put in `hello`.
#[derive(Message)]
#[rtype(result = "Result<PresenceView, PresenceError>")]
pub struct Join {
    pub key: SessionKey,
    pub session: SessionHandle,
}

/// A socket closed (or timed out). Repeats are harmless.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub key: SessionKey,
}

/// A pong arrived on one of the agent's sockets: keep them alive in presence.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat;

/// Change the presence wish (from a socket's `set_presence`, or a supervisor).
#[derive(Message)]
#[rtype(result = "Result<PresenceView, PresenceError>")]
pub struct SetAvailability(pub Availability);

/// Close the agent's sockets: those of one token (logout), or all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick {
    pub token_hash: Option<Vec<u8>>,
    pub code: CloseCode,
    pub reason: String,
}

pub struct AgentActor {
    identity: AgentIdentity,
    presence: Presence,
    node: String,
    sessions: HashMap<SessionKey, SessionHandle>,
    /// The last presence announced to the sockets, to send `presence` frames
    /// only on change.
    wish: Option<Availability>,
    connected_gauge: Arc<AtomicU64>,
    routing: Routing,
    /// Availability last reported to routing (online, not paused, connected).
    available: bool,
}

impl AgentActor {
    fn view(&self) -> PresenceView {
        match &self.wish {
            _ if self.sessions.is_empty() => PresenceView {
                status: PresenceStatus::Offline,
                reason: None,
            },
            Some(Availability::Paused { reason }) => PresenceView {
                status: PresenceStatus::Paused,
                reason: reason.clone(),
            },
            _ => PresenceView {
                status: PresenceStatus::Online,
                reason: None,
            },
        }
    }

    /// Tell the queues when the agent starts or stops being offerable.
    fn report_availability(&mut self) {
        let now = !self.sessions.is_empty() && matches!(self.wish, Some(Availability::Online));
        if now != self.available {
            self.available = now;
            self.routing
                .agent_changed(self.identity.id, now, self.identity.capacity);
        }
    }

    fn broadcast(&self, frame: ServerFrame) {
        for s in self.sessions.values() {
            // `do_send` to a socket is fine: a lost frame to a socket that is
            // closing is not a lost state change (the store holds the state,
            // invariant 3), and a full socket closes itself as too slow.
            s.push.do_send(Push(frame.clone()));
        }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;
}

impl Handler<Join> for AgentActor {
    type Result = ResponseActFuture<Self, Result<PresenceView, PresenceError>>;

    fn handle(&mut self, msg: Join, _ctx: &mut Self::Context) -> Self::Result {
        let first = self.sessions.is_empty();
        self.sessions.insert(msg.key, msg.session);
        if first {
            self.connected_gauge.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!(crate::metrics::AGENTS_CONNECTED).increment(1.0);
        }
        let presence = self.presence.clone();
        let agent = self.identity.id;
        let node = self.node.clone();
        // Read the stored wish (an agent who paused and reconnects stays
        // paused) and mark the agent live on this node.
        let fut = async move {
            let wish = presence.availability(agent).await?;
            presence.heartbeat(agent, &node).await?;
            Ok::<_, PresenceError>(wish)
        };
        Box::pin(fut.into_actor(self).map(|res, act, _ctx| {
            let wish = res?;
            act.wish = Some(wish);
            act.report_availability();
            Ok(act.view())
        }))
    }
}

impl Handler<Leave> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Self::Context) {
        if self.sessions.remove(&msg.key).is_none() || !self.sessions.is_empty() {
            return;
        }
        self.report_availability();
        self.connected_gauge.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::AGENTS_CONNECTED).decrement(1.0);
        let presence = self.presence.clone();
        let agent = self.identity.id;
        let node = self.node.clone();
        ctx.spawn(
            async move {
                if let Err(e) = presence.leave(agent, &node).await {
                    warn!(agent = %agent, error = %e, "could not mark the agent offline; the TTL will");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Heartbeat> for AgentActor {
    type Result = ();

    fn handle(&mut self, _msg: Heartbeat, ctx: &mut Self::Context) {
        if self.sessions.is_empty() {
            return;
        }
        let presence = self.presence.clone();
        let agent = self.identity.id;
        let node = self.node.clone();
        ctx.spawn(
            async move {
                if let Err(e) = presence.heartbeat(agent, &node).await {
                    warn!(agent = %agent, error = %e, "presence heartbeat failed");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<SetAvailability> for AgentActor {
    type Result = ResponseActFuture<Self, Result<PresenceView, PresenceError>>;

    fn handle(&mut self, msg: SetAvailability, _ctx: &mut Self::Context) -> Self::Result {
        let presence = self.presence.clone();
        let agent = self.identity.id;
        let wish = msg.0;
        let stored = wish.clone();
        // Persist, then announce (invariant 3): the frame goes out only after
        // the presence store holds the new wish.
        Box::pin(
            async move { presence.set_availability(agent, stored).await }
                .into_actor(self)
                .map(move |res, act, _ctx| {
                    res?;
                    let changed = act.wish.as_ref() != Some(&wish);
                    act.wish = Some(wish);
                    act.report_availability();
                    let view = act.view();
                    if changed {
                        act.broadcast(ServerFrame::Presence {
                            status: view.status,
                            reason: view.reason.clone(),
                        });
                    }
                    Ok(view)
                }),
        )
    }
}

impl Handler<Push> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Push, _ctx: &mut Self::Context) {
        self.broadcast(msg.0);
    }
}

impl Handler<Kick> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Kick, _ctx: &mut Self::Context) {
        for s in self.sessions.values() {
            if msg
                .token_hash
                .as_deref()
                .is_none_or(|h| h == &*s.token_hash)
            {
                s.close.do_send(CloseSession {
                    code: msg.code,
                    reason: msg.reason.clone(),
                });
            }
        }
    }
}

/// Finds or starts the actor of an agent. Shared by every HTTP worker.
///
/// A `DashMap` (sharded locks, never held across `.await`) rather than an
/// actor of its own: lookups happen on every WebSocket connect and must not
/// queue behind one another.
#[derive(Clone)]
pub struct AgentHub {
    agents: Arc<DashMap<AgentId, Addr<AgentActor>>>,
    presence: Presence,
    node: String,
    arbiters: Arc<Vec<ArbiterHandle>>,
    next_session: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
    routing: Routing,
}

impl AgentHub {
    /// `arbiters` are the threads agent actors run on. Agent actors are not
    /// started on the HTTP worker that happened to accept a socket: they
    /// outlive that socket and serve the agent's other tabs, which may sit on
    /// other workers.
    pub fn new(
        presence: Presence,
        node: String,
        arbiters: Vec<ArbiterHandle>,
        routing: Routing,
    ) -> Self {
        AgentHub {
            routing,
            agents: Arc::new(DashMap::new()),
            presence,
            node,
            arbiters: Arc::new(arbiters),
            next_session: Arc::new(AtomicU64::new(1)),
            connected: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn next_session_key(&self) -> SessionKey {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Agents with at least one socket on this node.
    pub fn connected(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn get(&self, agent: AgentId) -> Option<Addr<AgentActor>> {
        self.agents.get(&agent).map(|a| a.clone())
    }

    pub fn get_or_start(&self, identity: &AgentIdentity) -> Addr<AgentActor> {
        // The entry API holds the shard lock while starting, so two sockets
        // of one agent connecting at once still get one actor.
        self.agents
            .entry(identity.id)
            .or_insert_with(|| {
                let actor = AgentActor {
                    identity: identity.clone(),
                    presence: self.presence.clone(),
                    node: self.node.clone(),
                    sessions: HashMap::new(),
                    wish: None,
                    connected_gauge: self.connected.clone(),
                    routing: self.routing.clone(),
                    available: false,
                };
                let idx = (identity.id.get().unsigned_abs() as usize) % self.arbiters.len().max(1);
                match self.arbiters.get(idx) {
                    Some(arbiter) => AgentActor::start_in_arbiter(arbiter, |_| actor),
                    None => actor.start(),
                }
            })
            .clone()
    }

    /// Close sockets of an agent (all, or those of one token).
    pub fn kick(&self, agent: AgentId, token_hash: Option<Vec<u8>>, code: CloseCode, reason: &str) {
        if let Some(addr) = self.get(agent) {
            addr.do_send(Kick {
                token_hash,
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Send a frame to every socket of an agent on this node (no-op when the
    /// agent has none here).
    pub fn push(&self, agent: AgentId, frame: ServerFrame) {
        if let Some(addr) = self.get(agent) {
            addr.do_send(Push(frame));
        }
    }

    /// Pause an agent on the server's initiative (missed offers, a
    /// supervisor), as if they had paused themselves.
    pub fn auto_pause(&self, agent: AgentId, reason: &str) {
        if let Some(addr) = self.get(agent) {
            addr.do_send(SetAvailability(Availability::Paused {
                reason: Some(reason.to_string()),
            }));
        }
    }

    /// Set an agent's presence on someone else's initiative (a supervisor's
    /// force-pause or resume). Through the agent's actor when they are
    /// connected here (their tabs hear `presence`, their offers are
    /// cancelled at once), else straight into the presence store (it holds
    /// when they next connect).
    pub async fn set_availability(
        &self,
        agent: AgentId,
        wish: Availability,
    ) -> Result<(), PresenceError> {
        match self.get(agent) {
            Some(addr) => match addr.send(SetAvailability(wish.clone())).await {
                Ok(res) => res.map(|_| ()),
                // The actor stopped meanwhile: the store is the truth.
                Err(_) => self.presence.set_availability(agent, wish).await,
            },
            None => self.presence.set_availability(agent, wish).await,
        }
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Close every socket on this node (shutdown).
    pub fn kick_all(&self, code: CloseCode, reason: &str) {
        for entry in self.agents.iter() {
            entry.value().do_send(Kick {
                token_hash: None,
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// Presence of one agent (what a supervisor sees).
    pub async fn presence_of(&self, agent: AgentId) -> Result<PresenceState, PresenceError> {
        self.presence.get(agent).await
    }
}
