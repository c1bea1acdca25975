//! Presence: who is online or paused, and on which node(s) their sockets
//! live. One enum, two backends (invariant 7):
//!
//! - [`memory`]: in-process, for a single node (the default, `memory://`).
//! - [`redis`]: shared by several nodes (`redis://…`), through a
//!   `ConnectionManager` that reconnects by itself.
//!
//! Two things are kept per agent, because they live differently:
//! - the **wish** (`online`, or `paused` with a reason), set by the agent or a
//!   supervisor. It has no TTL: an agent who paused, closed the laptop and
//!   came back is still paused.
//! - **liveness**: per node, "this agent has a socket here", refreshed by
//!   every heartbeat and expiring after `ttl`. A node that dies stops
//!   refreshing, so its agents fall offline by themselves — no cleanup job.
//!
//! An agent is `offline` when no node holds a live entry; otherwise their
//! status is the wish.

pub mod memory;
pub mod redis;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{AgentId, PresenceStatus};

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("the presence URL is not supported: {0} (expected memory:// or redis://…)")]
    BadUrl(String),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("presence data is corrupt: {0}")]
    Corrupt(String),
}

pub type PresenceResult<T> = Result<T, PresenceError>;

/// What the agent chose to be (the wish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Online,
    Paused { reason: Option<String> },
}

/// An agent's presence as seen from anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PresenceState {
    pub status: PresenceStatus,
    /// The pause reason, when paused.
    pub reason: Option<String>,
    /// When the wish last changed (None if never set).
    pub since: Option<DateTime<Utc>>,
    /// Nodes holding a live socket of this agent, sorted.
    pub nodes: Vec<String>,
}

impl PresenceState {
    pub fn offline() -> Self {
        PresenceState {
            status: PresenceStatus::Offline,
            reason: None,
            since: None,
            nodes: Vec::new(),
        }
    }

    /// The one rule both backends apply: no live node means offline (the
    /// wish is kept but not shown); otherwise the status is the wish. `nodes`
    /// come back sorted, whatever order the backend found them in.
    pub fn resolve(
        wish: Availability,
        since: Option<DateTime<Utc>>,
        mut nodes: Vec<String>,
    ) -> Self {
        if nodes.is_empty() {
            return PresenceState::offline();
        }
        nodes.sort();
        nodes.dedup();
        let (status, reason) = match wish {
            Availability::Online => (PresenceStatus::Online, None),
            Availability::Paused { reason } => (PresenceStatus::Paused, reason),
        };
        PresenceState {
            status,
            reason,
            since,
            nodes,
        }
    }
}

/// The presence service. Cheap to clone.
#[derive(Clone)]
pub enum Presence {
    Memory(memory::MemoryPresence),
    Redis(redis::RedisPresence),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Presence::Memory(p) => p.$method($($arg),*).await,
            Presence::Redis(p) => p.$method($($arg),*).await,
        }
    };
}

impl Presence {
    /// `memory://` or `redis://host:port[/db]`. `ttl` is how long a liveness
    /// entry lasts without a heartbeat; `prefix` namespaces Redis keys (so
    /// that tests, or two deployments, can share one Redis).
    pub async fn connect(url: &str, ttl: Duration, prefix: &str) -> PresenceResult<Presence> {
        if url.starts_with("memory:") {
            Ok(Presence::Memory(memory::MemoryPresence::new(ttl)))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Presence::Redis(
                redis::RedisPresence::connect(url, ttl, prefix).await?,
            ))
        } else {
            Err(PresenceError::BadUrl(crate::secret::redact_url(url)))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Presence::Memory(_) => "memory",
            Presence::Redis(_) => "redis",
        }
    }

    /// A round trip, for `/ready` (always Ok in memory).
    pub async fn ping(&self) -> PresenceResult<()> {
        dispatch!(self.ping())
    }

    /// Record the agent's wish (online, or paused with a reason). `since`
    /// becomes now, even when the wish is the same as before.
    pub async fn set_availability(&self, agent: AgentId, wish: Availability) -> PresenceResult<()> {
        dispatch!(self.set_availability(agent, wish))
    }

    /// The agent's wish; `Online` if never set.
    pub async fn availability(&self, agent: AgentId) -> PresenceResult<Availability> {
        dispatch!(self.availability(agent))
    }

    /// The agent has a live socket on `node`: (re)start its TTL. Called on
    /// connect and on every pong.
    pub async fn heartbeat(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        dispatch!(self.heartbeat(agent, node))
    }

    /// The agent's last socket on `node` closed.
    pub async fn leave(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        dispatch!(self.leave(agent, node))
    }

    pub async fn get(&self, agent: AgentId) -> PresenceResult<PresenceState> {
        dispatch!(self.get(agent))
    }

    /// Presence of many agents at once, in the order asked.
    pub async fn get_many(&self, agents: &[AgentId]) -> PresenceResult<Vec<PresenceState>> {
        dispatch!(self.get_many(agents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_is_offline_without_nodes_whatever_the_wish() {
        let wish = Availability::Paused {
            reason: Some("lunch".to_string()),
        };
        assert_eq!(
            PresenceState::resolve(wish, Some(Utc::now()), vec![]),
            PresenceState::offline()
        );
    }

    #[test]
    fn resolve_shows_the_wish_with_sorted_nodes() {
        let since = Some(Utc::now());
        let nodes = vec!["b".to_string(), "a".to_string(), "b".to_string()];
        let state = PresenceState::resolve(
            Availability::Paused {
                reason: Some("lunch".to_string()),
            },
            since,
            nodes.clone(),
        );
        assert_eq!(state.status, PresenceStatus::Paused);
        assert_eq!(state.reason.as_deref(), Some("lunch"));
        assert_eq!(state.since, since);
        assert_eq!(state.nodes, vec!["a".to_string(), "b".to_string()]);

        let online = PresenceState::resolve(Availability::Online, None, nodes);
        assert_eq!(
            (online.status, online.reason),
            (PresenceStatus::Online, None)
        );
    }
}
