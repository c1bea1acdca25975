//! In-process presence, for a single node (`memory://`, the default).
//!
//! Two `DashMap`s keyed by agent: the wish (no expiry) and liveness (node →
//! expiry `Instant`). An entry whose expiry has passed counts as absent; it is
//! removed lazily, by the next heartbeat, leave or read of that agent, so
//! there is no sweeper task to start, stop or forget.
//!
//! Why `DashMap` rather than one `Mutex<HashMap>`: every agent's pong and
//! every routing decision touches presence, from many actors on many worker
//! threads at once. `DashMap` shards its locks, so two agents rarely contend.
//! Each method is `async` only to match the Redis backend: none awaits, so
//! no shard lock is ever held across an `.await` (which could otherwise stall
//! a worker thread behind a suspended task).
//!
//! Why `Instant` for expiries: it is monotonic, so a wall-clock jump (NTP
//! step, daylight saving) never revives or kills an entry. One node means
//! one clock; the Redis backend, shared by nodes, has to use wall time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::{Availability, PresenceResult, PresenceState};
use crate::domain::AgentId;

/// The wish and when it was set.
#[derive(Debug, Clone)]
struct Wish {
    availability: Availability,
    since: DateTime<Utc>,
}

struct Inner {
    ttl: Duration,
    wishes: DashMap<AgentId, Wish>,
    /// Per agent: node → the instant its liveness entry expires.
    live: DashMap<AgentId, HashMap<String, Instant>>,
}

/// In-process presence. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct MemoryPresence {
    inner: Arc<Inner>,
}

impl MemoryPresence {
    /// `ttl`: how long a liveness entry lasts without a heartbeat.
    pub fn new(ttl: Duration) -> Self {
        MemoryPresence {
            inner: Arc::new(Inner {
                ttl,
                wishes: DashMap::new(),
                live: DashMap::new(),
            }),
        }
    }

    pub async fn ping(&self) -> PresenceResult<()> {
        Ok(())
    }

    pub async fn set_availability(&self, agent: AgentId, wish: Availability) -> PresenceResult<()> {
        self.inner.wishes.insert(
            agent,
            Wish {
                availability: wish,
                since: Utc::now(),
            },
        );
        Ok(())
    }

    pub async fn availability(&self, agent: AgentId) -> PresenceResult<Availability> {
        Ok(self
            .wish(agent)
            .map_or(Availability::Online, |w| w.availability))
    }

    pub async fn heartbeat(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        let now = Instant::now();
        // `entry` holds the shard's write lock until `nodes` drops at the end
        // of this function; nothing else in `live` is touched meanwhile.
        let mut nodes = self.inner.live.entry(agent).or_default();
        prune(&mut nodes, now);
        nodes.insert(node.to_string(), now + self.inner.ttl);
        Ok(())
    }

    pub async fn leave(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        if let Some(mut nodes) = self.inner.live.get_mut(&agent) {
            nodes.remove(node);
            prune(&mut nodes, Instant::now());
        }
        // The guard above is dropped before this call: taking the same
        // shard's lock again while holding it would deadlock.
        self.forget_if_empty(agent);
        Ok(())
    }

    pub async fn get(&self, agent: AgentId) -> PresenceResult<PresenceState> {
        Ok(self.state(agent, Instant::now()))
    }

    pub async fn get_many(&self, agents: &[AgentId]) -> PresenceResult<Vec<PresenceState>> {
        let now = Instant::now();
        Ok(agents.iter().map(|a| self.state(*a, now)).collect())
    }

    fn wish(&self, agent: AgentId) -> Option<Wish> {
        // Clone out so that the shard's read lock is released at once.
        self.inner.wishes.get(&agent).map(|w| w.clone())
    }

    /// The live nodes of `agent` at `now`, dropping expired entries on the way.
    fn live_nodes(&self, agent: AgentId, now: Instant) -> Vec<String> {
        let nodes = match self.inner.live.get_mut(&agent) {
            Some(mut nodes) => {
                prune(&mut nodes, now);
                nodes.keys().cloned().collect()
            }
            None => return Vec::new(),
        };
        self.forget_if_empty(agent);
        nodes
    }

    fn state(&self, agent: AgentId, now: Instant) -> PresenceState {
        let nodes = self.live_nodes(agent, now);
        match self.wish(agent) {
            Some(w) => PresenceState::resolve(w.availability, Some(w.since), nodes),
            None => PresenceState::resolve(Availability::Online, None, nodes),
        }
    }

    /// Drop the agent's liveness map once it is empty, so that agents who
    /// left do not keep an entry. `remove_if` re-checks under the lock, so a
    /// heartbeat that raced in between is never lost.
    fn forget_if_empty(&self, agent: AgentId) {
        self.inner
            .live
            .remove_if(&agent, |_, nodes| nodes.is_empty());
    }
}

/// Remove the entries that expired at or before `now`.
fn prune(nodes: &mut HashMap<String, Instant>, now: Instant) {
    nodes.retain(|_, expiry| *expiry > now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PresenceStatus;

    const AGENT: AgentId = AgentId(7);

    #[test]
    fn prune_drops_entries_expiring_at_or_before_now() {
        let now = Instant::now();
        let mut nodes = HashMap::from([
            ("past".to_string(), now - Duration::from_millis(1)),
            ("exact".to_string(), now),
            ("future".to_string(), now + Duration::from_millis(1)),
        ]);
        prune(&mut nodes, now);
        assert_eq!(nodes.keys().collect::<Vec<_>>(), vec!["future"]);
    }

    #[tokio::test]
    async fn expired_entries_are_removed_lazily_on_read() {
        let p = MemoryPresence::new(Duration::from_secs(60));
        p.heartbeat(AGENT, "n1").await.unwrap();
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(p.state(AGENT, later).status, PresenceStatus::Offline);
        assert!(
            p.inner.live.get(&AGENT).is_none(),
            "the empty map is dropped"
        );
    }

    #[tokio::test]
    async fn leaving_the_last_node_drops_the_agent_entry() {
        let p = MemoryPresence::new(Duration::from_secs(60));
        p.heartbeat(AGENT, "n1").await.unwrap();
        p.heartbeat(AGENT, "n2").await.unwrap();
        p.leave(AGENT, "n1").await.unwrap();
        assert!(p.inner.live.get(&AGENT).is_some());
        p.leave(AGENT, "n2").await.unwrap();
        assert!(p.inner.live.get(&AGENT).is_none());
    }

    #[tokio::test]
    async fn clones_share_one_state() {
        let a = MemoryPresence::new(Duration::from_secs(60));
        let b = a.clone();
        a.heartbeat(AGENT, "n1").await.unwrap();
        assert_eq!(b.get(AGENT).await.unwrap().nodes, vec!["n1".to_string()]);
    }
}
