//! The actors. Each owns its state and is reached only by messages, so no
//! lock guards routing or presence state:
//!
//! - [`agent`]: one `AgentActor` per agent, holding every socket (tab) of
//!   that agent and its presence. Created on first connect, kept by the
//!   [`agent::AgentHub`].
//! - the WebSocket session actor (one per socket) lives in `http::ws::session`
//!   because it is the transport's edge.
//!
//! - [`mailbox`]: one `MailboxActor` per account: IMAP IDLE, sync, ingest.
//!
//! - [`queue`]: one `QueueActor` per queue: the waiting list, offers,
//!   accept/reject/timeout; `Routing` finds queues and offers.
//!
//! - [`sender`]: one `SenderActor` per account: the outbox over SMTP
//!   (lettre), retries with backoff, the copy to the Sent folder.

pub mod agent;
pub mod mailbox;
pub mod queue;
pub mod sender;
