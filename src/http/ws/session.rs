//! `WsSession`: one actix actor per WebSocket, on actix-ws.
//!
//! Reading: the actor is fed by actix-ws's message stream (`add_stream`).
//! Writing: frames go through a bounded channel to one writer task that owns
//! the `actix_ws::Session`, so frames leave in order and the actor never
//! awaits a slow client. When that channel is full the client is too slow to
//! keep up; it is closed (policy violation) rather than allowed to hold memory
//! or stall whoever is sending to it — a slow agent never stalls its queue.
//!
//! Heartbeat: the server pings every `heartbeat`; a client that answers
//! nothing (no pong, no frame) for two heartbeats is closed and, if it was the
//! agent's last socket, the agent goes offline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{
    AggregatedMessage as WsMessage, CloseCode as WsCloseCode, CloseReason, ProtocolError,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::protocol::{ClientFrame, Command, ErrorCode, MAX_CLIENT_FRAME, ServerFrame};
use crate::actors::agent::{
    AgentActor, AgentIdentity, CloseCode, CloseSession, Heartbeat, Join, Leave, Push,
    SessionHandle, SessionKey, SetAvailability,
};
use crate::actors::queue::{Accept, OfferError, Reject, Routing};
use crate::domain::PresenceStatus;
use crate::presence::Availability;

/// What the writer task is asked to do.
enum Outbound {
    Text(String),
    Ping,
    Pong(bytes::Bytes),
    Close(Option<CloseReason>),
}

pub struct WsSession {
    key: SessionKey,
    identity: AgentIdentity,
    token_hash: Arc<[u8]>,
    expires_at: DateTime<Utc>,
    agent: Addr<AgentActor>,
    routing: Routing,
    out: mpsc::Sender<Outbound>,
    heartbeat: Duration,
    last_seen: Instant,
    joined: bool,
    closing: bool,
}

impl WsSession {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        key: SessionKey,
        identity: AgentIdentity,
        token_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
        agent: Addr<AgentActor>,
        routing: Routing,
        heartbeat: Duration,
        send_buffer: usize,
        session: actix_ws::Session,
        stream: actix_ws::MessageStream,
    ) -> Addr<WsSession> {
        let (tx, rx) = mpsc::channel(send_buffer);
        // The writer lives on this worker's runtime beside the socket; it ends
        // when the actor drops its sender or the socket fails.
        actix_web::rt::spawn(writer(session, rx));
        let stream = stream
            .max_frame_size(MAX_CLIENT_FRAME)
            .aggregate_continuations()
            .max_continuation_size(MAX_CLIENT_FRAME);
        WsSession::create(|ctx| {
            ctx.add_stream(stream);
            WsSession {
                key,
                identity,
                token_hash: token_hash.into(),
                expires_at,
                agent,
                routing,
                out: tx,
                heartbeat,
                last_seen: Instant::now(),
                joined: false,
                closing: false,
            }
        })
    }

    fn send(&mut self, frame: ServerFrame, ctx: &mut Context<Self>) {
        let kind = frame.kind();
        match self.out.try_send(Outbound::Text(frame.to_text())) {
            Ok(()) => {
                metrics::counter!(crate::metrics::WS_FRAMES_OUT, "type" => kind).increment(1);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(agent = %self.identity.id, session = self.key, "client too slow, closing");
                self.close(
                    WsCloseCode::Policy,
                    "too slow to read its frames",
                    "slow",
                    ctx,
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn close(
        &mut self,
        code: WsCloseCode,
        reason: &str,
        metric: &'static str,
        ctx: &mut Context<Self>,
    ) {
        if self.closing {
            return;
        }
        self.closing = true;
        metrics::counter!(crate::metrics::WS_CLOSED, "reason" => metric).increment(1);
        // try_send: if the buffer is full the writer is stuck anyway; dropping
        // the sender (on stop) ends it and the socket with it.
        let _ = self.out.try_send(Outbound::Close(Some(CloseReason {
            code,
            description: Some(reason.to_string()),
        })));
        ctx.stop();
    }

    fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        // Tokens are checked on every frame: an expired session may not act.
        if Utc::now() >= self.expires_at {
            self.send(
                ServerFrame::error(None, ErrorCode::Unauthorized, "the session expired"),
                ctx,
            );
            self.close(WsCloseCode::Other(4001), "session expired", "expired", ctx);
            return;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                metrics::counter!(crate::metrics::WS_FRAMES_IN, "type" => "invalid").increment(1);
                debug!(agent = %self.identity.id, error = %e.message, "bad frame");
                self.send(e.into(), ctx);
                return;
            }
        };
        let kind = match &frame.command {
            Command::Accept { .. } => "accept",
            Command::Reject { .. } => "reject",
            Command::SetPresence { .. } => "set_presence",
            Command::Ping => "ping",
        };
        metrics::counter!(crate::metrics::WS_FRAMES_IN, "type" => kind).increment(1);
        let req_id = frame.req_id;
        match frame.command {
            Command::Ping => self.send(ServerFrame::ok(req_id), ctx),
            Command::SetPresence { status, reason } => {
                self.set_presence(req_id, status, reason, ctx)
            }
            Command::Accept { offer_id } => self.decide(req_id, offer_id, true, ctx),
            Command::Reject { offer_id } => self.decide(req_id, offer_id, false, ctx),
        }
    }

    /// Accept or reject an offer through the queue that holds it. Spawned,
    /// not waited on: other frames of this socket go on meanwhile.
    fn decide(
        &mut self,
        req_id: Option<Value>,
        offer: crate::domain::OfferId,
        accept: bool,
        ctx: &mut Context<Self>,
    ) {
        let gone = move |req_id| {
            ServerFrame::error(
                req_id,
                ErrorCode::OfferGone,
                format!("offer {offer} is not open"),
            )
        };
        let Some(queue) = self.routing.offer_queue(offer) else {
            self.send(gone(req_id), ctx);
            return;
        };
        let agent = self.identity.id;
        let fut = async move {
            if accept {
                queue
                    .send(Accept { offer, agent })
                    .await
                    .map(|r| r.map(Some))
            } else {
                queue
                    .send(Reject { offer, agent })
                    .await
                    .map(|r| r.map(|()| None))
            }
        };
        fut.into_actor(self)
            .map(move |res, act, ctx| {
                let frame = match res {
                    Ok(Ok(interaction)) => {
                        let mut result = serde_json::Map::new();
                        if let Some(i) = interaction {
                            result.insert("interaction_id".into(), Value::from(i.to_string()));
                        }
                        ServerFrame::Ok { req_id, result }
                    }
                    Ok(Err(OfferError::Gone)) => gone(req_id),
                    Ok(Err(OfferError::NotYours)) => {
                        ServerFrame::error(req_id, ErrorCode::Forbidden, "that offer is not yours")
                    }
                    Ok(Err(OfferError::Store(e))) => {
                        warn!(error = %e, "offer decision failed");
                        ServerFrame::error(
                            req_id,
                            ErrorCode::Internal,
                            "could not record the decision, try again",
                        )
                    }
                    Err(_) => ServerFrame::error(
                        req_id,
                        ErrorCode::Internal,
                        "the queue is restarting, try again",
                    ),
                };
                act.send(frame, ctx);
            })
            .spawn(ctx);
    }

    fn set_presence(
        &mut self,
        req_id: Option<Value>,
        status: PresenceStatus,
        reason: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let wish = match status {
            PresenceStatus::Online => Availability::Online,
            PresenceStatus::Paused => Availability::Paused {
                reason: reason.map(|r| r.chars().take(200).collect()),
            },
            PresenceStatus::Offline => {
                self.send(
                    ServerFrame::error(
                        req_id,
                        ErrorCode::BadRequest,
                        "status must be online or paused; close the socket to go offline",
                    ),
                    ctx,
                );
                return;
            }
        };
        // The agent actor persists, then tells every tab (this one included)
        // with a `presence` frame; this tab also gets its `ok`.
        self.agent
            .send(SetAvailability(wish))
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Ok(view)) => {
                    let mut result = serde_json::Map::new();
                    result.insert("status".into(), Value::from(view.status.as_str()));
                    result.insert(
                        "reason".into(),
                        view.reason.map(Value::from).unwrap_or(Value::Null),
                    );
                    act.send(ServerFrame::Ok { req_id, result }, ctx);
                }
                Ok(Err(e)) => {
                    warn!(agent = %act.identity.id, error = %e, "presence update failed");
                    act.send(
                        ServerFrame::error(
                            req_id,
                            ErrorCode::Internal,
                            "presence is unavailable, try again",
                        ),
                        ctx,
                    );
                }
                Err(_) => act.send(
                    ServerFrame::error(
                        req_id,
                        ErrorCode::Internal,
                        "agent is restarting, try again",
                    ),
                    ctx,
                ),
            })
            .wait(ctx);
    }
}

impl WsSession {
    /// One heartbeat tick: close a client silent for two periods, else ping.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.last_seen.elapsed() > self.heartbeat * 2 {
            info!(agent = %self.identity.id, session = self.key, "no pong for two heartbeats, closing");
            self.close(WsCloseCode::Away, "heartbeat timeout", "heartbeat", ctx);
            return;
        }
        if self.out.try_send(Outbound::Ping).is_err() {
            self.close(
                WsCloseCode::Policy,
                "too slow to read its frames",
                "slow",
                ctx,
            );
        }
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!(crate::metrics::WS_SESSIONS).increment(1.0);
        let handle = SessionHandle {
            push: ctx.address().recipient(),
            close: ctx.address().recipient(),
            token_hash: self.token_hash.clone(),
        };
        // `wait`: no client frame is handled before the agent actor knows this
        // socket and `hello` is out, so `hello` is always the first frame.
        self.agent
            .send(Join {
                key: self.key,
                session: handle,
            })
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(Ok(presence)) => {
                    act.joined = true;
                    let agent = crate::http::ws::protocol::AgentInfo {
                        id: act.identity.id,
                        username: act.identity.username.clone(),
                        name: act.identity.name.clone(),
                        role: act.identity.role,
                    };
                    let heartbeat_secs = act.heartbeat.as_secs();
                    act.send(
                        ServerFrame::Hello {
                            agent,
                            presence,
                            heartbeat_secs,
                        },
                        ctx,
                    );
                }
                Ok(Err(e)) => {
                    warn!(agent = %act.identity.id, error = %e, "presence unavailable at connect");
                    act.send(
                        ServerFrame::error(None, ErrorCode::Internal, "presence is unavailable"),
                        ctx,
                    );
                    act.close(
                        WsCloseCode::Error,
                        "presence unavailable",
                        "presence_error",
                        ctx,
                    );
                }
                Err(_) => act.close(
                    WsCloseCode::Error,
                    "agent actor unavailable",
                    "internal",
                    ctx,
                ),
            })
            .wait(ctx);

        // Pings start one period after connect, then every period. A random
        // phase per socket (to spread the pings of sockets that connected
        // together) was tried and reverted: with it, the close of a silent
        // client went missing in
        // ws::a_client_that_never_pongs_is_closed_and_goes_offline about one
        // run in two, for a reason not found yet. At 10,000 sockets the
        // bunched pings still held (docs/performance.md).
        let phase = self.heartbeat;
        ctx.run_later(phase, |act, ctx| {
            act.beat(ctx);
            ctx.run_interval(act.heartbeat, |act, ctx| act.beat(ctx));
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        metrics::gauge!(crate::metrics::WS_SESSIONS).decrement(1.0);
        if self.joined {
            // Leave must arrive: `do_send` queues even when the agent's
            // mailbox is at capacity (it only fails if the actor is gone, and
            // then there is nothing to leave).
            self.agent.do_send(Leave { key: self.key });
        }
    }
}

impl StreamHandler<Result<WsMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<WsMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(WsMessage::Text(text)) => self.handle_text(&text, ctx),
            Ok(WsMessage::Binary(_)) => self.send(
                ServerFrame::error(
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text",
                ),
                ctx,
            ),
            Ok(WsMessage::Ping(bytes)) => {
                // actix-ws leaves answering pings to us.
                let _ = self.out.try_send(Outbound::Pong(bytes));
                self.agent.do_send(Heartbeat);
            }
            Ok(WsMessage::Pong(_)) => self.agent.do_send(Heartbeat),
            Ok(WsMessage::Close(reason)) => {
                debug!(agent = %self.identity.id, ?reason, "client closed");
                metrics::counter!(crate::metrics::WS_CLOSED, "reason" => "client").increment(1);
                self.closing = true;
                let _ = self.out.try_send(Outbound::Close(reason));
                ctx.stop();
            }
            Err(e) => {
                // An oversized or malformed frame at the protocol level: the
                // WebSocket itself is no longer usable, so close it clearly.
                warn!(agent = %self.identity.id, error = %e, "websocket protocol error");
                self.close(WsCloseCode::Protocol, "protocol error", "protocol", ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Push> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        if !self.closing {
            self.send(msg.0, ctx);
        }
    }
}

impl Handler<CloseSession> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        let (code, metric) = match msg.code {
            CloseCode::GoingAway => (WsCloseCode::Away, "shutdown"),
            CloseCode::Unauthorized => (WsCloseCode::Other(4001), "revoked"),
            CloseCode::Policy => (WsCloseCode::Policy, "policy"),
        };
        self.close(code, &msg.reason, metric, ctx);
    }
}

/// Owns the socket's write half: writes frames in order, then closes.
async fn writer(mut session: actix_ws::Session, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(out) = rx.recv().await {
        let result = match out {
            Outbound::Text(text) => session.text(text).await,
            Outbound::Ping => session.ping(b"").await,
            Outbound::Pong(bytes) => session.pong(&bytes).await,
            Outbound::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
    let _ = session.close(None).await;
}
