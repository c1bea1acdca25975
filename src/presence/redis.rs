//! Presence shared by several nodes, in Redis (`redis://…`).
//!
//! Keys, per agent (`{prefix}` namespaces a deployment or a test run):
//! - `{prefix}:wish:{agent}`: a hash `{status, reason?, since}` (`since` in
//!   Unix milliseconds). No TTL: the wish outlives every socket.
//! - `{prefix}:live:{agent}`: a sorted set, member = node, score = the Unix
//!   millisecond at which that node's entry expires. A member whose score is
//!   not in the future is absent. The key itself gets `PEXPIRE ttl` on every
//!   heartbeat, so that an agent whose nodes all died leaves no key behind.
//!   (This assumes every node runs with the same `ttl`, which is a
//!   cluster-wide setting: the key then always outlives its members.)
//!
//! **Whose clock.** Expiries are computed from this node's wall clock, not
//! from Redis's `TIME`. Heartbeats are the hot path (every pong of every
//! agent); asking Redis for the time first would double their round trips,
//! or need a Lua script, for a gain measured in NTP skew: milliseconds,
//! against a TTL of tens of seconds. The cost of skew is bounded and benign:
//! a node whose clock is Δ ahead sees entries expire Δ early, and its own
//! entries last Δ longer for others. Key expiry (`PEXPIRE`) is relative and
//! judged by Redis alone, so garbage collection never depends on clocks.
//!
//! **Concurrency.** `ConnectionManager` multiplexes every caller over one
//! connection and reconnects by itself; cloning it is cheap, so each call
//! takes its own clone and nothing is locked across an `.await`. Commands that
//! must land together (the liveness entry and its key's expiry; the whole
//! wish) go in `MULTI`/`EXEC` pipelines. Reads are plain pipelines: a
//! `get_many` of a thousand agents should not hold Redis in one transaction,
//! and the wish and the liveness of an agent are independent facts anyway.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use super::{Availability, PresenceError, PresenceResult, PresenceState};
use crate::domain::{AgentId, PresenceStatus};

/// Shared presence in Redis. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisPresence {
    conn: ConnectionManager,
    ttl: Duration,
    prefix: String,
}

impl RedisPresence {
    /// Connects once (so that a wrong URL or a Redis that is down is reported
    /// at start); later connection losses are repaired by the manager.
    pub async fn connect(url: &str, ttl: Duration, prefix: &str) -> PresenceResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(RedisPresence {
            conn,
            ttl,
            prefix: prefix.to_string(),
        })
    }

    pub async fn ping(&self) -> PresenceResult<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn set_availability(&self, agent: AgentId, wish: Availability) -> PresenceResult<()> {
        let key = wish_key(&self.prefix, agent);
        let fields = wish_fields(&wish, Utc::now());
        let mut conn = self.conn.clone();
        // DEL then HSET in one transaction: going back online must drop the
        // old `reason`, and no reader may see a hash without its status.
        redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn availability(&self, agent: AgentId) -> PresenceResult<Availability> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(wish_key(&self.prefix, agent))
            .query_async(&mut conn)
            .await?;
        Ok(parse_wish(&fields)?.map_or(Availability::Online, |(wish, _)| wish))
    }

    pub async fn heartbeat(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        let key = live_key(&self.prefix, agent);
        let now = now_ms();
        let mut conn = self.conn.clone();
        // One transaction, so that the entry never exists without its key's
        // expiry. Pruning here keeps the set small when a node died while the
        // agent stays connected elsewhere (nobody would ZREM its member).
        redis::pipe()
            .atomic()
            .zrembyscore(&key, "-inf", now)
            .ignore()
            .zadd(&key, node, expiry_ms(now, self.ttl))
            .ignore()
            .pexpire(&key, ttl_ms(self.ttl))
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn leave(&self, agent: AgentId, node: &str) -> PresenceResult<()> {
        let mut conn = self.conn.clone();
        // Redis deletes the key itself when its last member goes.
        let _: i64 = redis::cmd("ZREM")
            .arg(live_key(&self.prefix, agent))
            .arg(node)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn get(&self, agent: AgentId) -> PresenceResult<PresenceState> {
        let mut states = self.get_many(&[agent]).await?;
        states
            .pop()
            .ok_or_else(|| PresenceError::Corrupt("no answer for the agent".to_string()))
    }

    pub async fn get_many(&self, agents: &[AgentId]) -> PresenceResult<Vec<PresenceState>> {
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let live_from = live_min(now_ms());
        let mut pipe = redis::pipe();
        for agent in agents {
            pipe.hgetall(wish_key(&self.prefix, *agent)).zrangebyscore(
                live_key(&self.prefix, *agent),
                &live_from,
                "+inf",
            );
        }
        let mut conn = self.conn.clone();
        // Raw values, paired by hand: letting the crate decode a flat reply
        // into `Vec<(A, B)>` guesses the grouping from the values' shapes.
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let (pairs, rest) = replies.as_chunks::<2>();
        if pairs.len() != agents.len() || !rest.is_empty() {
            return Err(PresenceError::Corrupt(format!(
                "asked for {} agents, got {} replies",
                agents.len(),
                replies.len()
            )));
        }
        pairs
            .iter()
            .map(|[fields, nodes]| {
                let fields: HashMap<String, String> =
                    redis::from_redis_value_ref(fields).map_err(corrupt)?;
                let nodes: Vec<String> = redis::from_redis_value_ref(nodes).map_err(corrupt)?;
                state_from(&fields, nodes)
            })
            .collect()
    }
}

// ---- the mapping between PresenceState and Redis, kept pure ----

const STATUS: &str = "status";
const REASON: &str = "reason";
const SINCE: &str = "since";

fn wish_key(prefix: &str, agent: AgentId) -> String {
    format!("{prefix}:wish:{agent}")
}

fn live_key(prefix: &str, agent: AgentId) -> String {
    format!("{prefix}:live:{agent}")
}

fn corrupt(e: redis::ParsingError) -> PresenceError {
    PresenceError::Corrupt(e.to_string())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A `Duration` in whole milliseconds, at least 1 (`PEXPIRE 0` would delete
/// the key at once) and saturating rather than wrapping.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The score of a liveness entry written at `now_ms`.
fn expiry_ms(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(ttl_ms(ttl))
}

/// The lower bound of `ZRANGEBYSCORE` for live entries: exclusive, so that an
/// entry expiring exactly now is already gone (as in the memory backend).
fn live_min(now_ms: i64) -> String {
    format!("({now_ms}")
}

/// The hash fields that store a wish.
fn wish_fields(wish: &Availability, since: DateTime<Utc>) -> Vec<(&'static str, String)> {
    let since = (SINCE, since.timestamp_millis().to_string());
    match wish {
        Availability::Online => vec![(STATUS, PresenceStatus::Online.as_str().to_string()), since],
        Availability::Paused { reason } => {
            let mut fields = vec![(STATUS, PresenceStatus::Paused.as_str().to_string()), since];
            if let Some(reason) = reason {
                fields.push((REASON, reason.clone()));
            }
            fields
        }
    }
}

/// The wish stored in a hash, or `None` for an empty hash (never set).
fn parse_wish(
    fields: &HashMap<String, String>,
) -> PresenceResult<Option<(Availability, DateTime<Utc>)>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| PresenceError::Corrupt(format!("wish without `{name}`")))
    };
    let status = field(STATUS)?;
    let wish = match status.parse::<PresenceStatus>() {
        Ok(PresenceStatus::Online) => Availability::Online,
        Ok(PresenceStatus::Paused) => Availability::Paused {
            reason: fields.get(REASON).cloned(),
        },
        _ => return Err(PresenceError::Corrupt(format!("wish status `{status}`"))),
    };
    let since_raw = field(SINCE)?;
    let since = since_raw
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| PresenceError::Corrupt(format!("wish since `{since_raw}`")))?;
    Ok(Some((wish, since)))
}

/// An agent's state from their wish hash and their live nodes.
fn state_from(
    fields: &HashMap<String, String>,
    nodes: Vec<String>,
) -> PresenceResult<PresenceState> {
    Ok(match parse_wish(fields)? {
        Some((wish, since)) => PresenceState::resolve(wish, Some(since), nodes),
        None => PresenceState::resolve(Availability::Online, None, nodes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn as_hash(fields: Vec<(&'static str, String)>) -> HashMap<String, String> {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn keys_are_namespaced_by_prefix_and_agent() {
        assert_eq!(wish_key("mr", AgentId(42)), "mr:wish:42");
        assert_eq!(live_key("mr", AgentId(42)), "mr:live:42");
    }

    #[test]
    fn ttl_is_whole_milliseconds_at_least_one() {
        assert_eq!(ttl_ms(Duration::from_millis(300)), 300);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 1);
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::MAX), i64::MAX);
        assert_eq!(expiry_ms(1_000, Duration::from_secs(60)), 61_000);
        assert_eq!(expiry_ms(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
    }

    #[test]
    fn live_entries_are_those_expiring_strictly_after_now() {
        assert_eq!(live_min(1_700_000_000_000), "(1700000000000");
    }

    #[test]
    fn wishes_round_trip_through_the_hash() {
        let since = at(1_700_000_000_123);
        for wish in [
            Availability::Online,
            Availability::Paused { reason: None },
            Availability::Paused {
                reason: Some("lunch".to_string()),
            },
            Availability::Paused {
                reason: Some(String::new()),
            },
        ] {
            let stored = as_hash(wish_fields(&wish, since));
            assert_eq!(
                parse_wish(&stored).unwrap(),
                Some((wish.clone(), since)),
                "{wish:?}"
            );
        }
    }

    #[test]
    fn the_hash_holds_readable_fields() {
        let fields = wish_fields(
            &Availability::Paused {
                reason: Some("lunch".to_string()),
            },
            at(5),
        );
        assert_eq!(
            as_hash(fields),
            hash(&[("status", "paused"), ("since", "5"), ("reason", "lunch")])
        );
        assert_eq!(
            as_hash(wish_fields(&Availability::Online, at(5))),
            hash(&[("status", "online"), ("since", "5")])
        );
    }

    #[test]
    fn an_empty_hash_is_no_wish() {
        assert_eq!(parse_wish(&HashMap::new()).unwrap(), None);
    }

    #[test]
    fn a_reason_left_beside_online_is_ignored() {
        let fields = hash(&[("status", "online"), ("since", "5"), ("reason", "old")]);
        assert_eq!(
            parse_wish(&fields).unwrap(),
            Some((Availability::Online, at(5)))
        );
    }

    #[test]
    fn corrupt_hashes_are_errors_not_guesses() {
        for fields in [
            hash(&[("since", "5")]),
            hash(&[("status", "offline"), ("since", "5")]),
            hash(&[("status", "away"), ("since", "5")]),
            hash(&[("status", "online")]),
            hash(&[("status", "online"), ("since", "yesterday")]),
        ] {
            assert!(
                matches!(parse_wish(&fields), Err(PresenceError::Corrupt(_))),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn state_is_offline_without_nodes_and_the_wish_otherwise() {
        let paused = hash(&[("status", "paused"), ("since", "5"), ("reason", "lunch")]);
        assert_eq!(
            state_from(&paused, vec![]).unwrap(),
            PresenceState::offline()
        );

        let state = state_from(&paused, vec!["n2".to_string(), "n1".to_string()]).unwrap();
        assert_eq!(state.status, PresenceStatus::Paused);
        assert_eq!(state.reason.as_deref(), Some("lunch"));
        assert_eq!(state.since, Some(at(5)));
        assert_eq!(state.nodes, vec!["n1".to_string(), "n2".to_string()]);

        let never_set = state_from(&HashMap::new(), vec!["n1".to_string()]).unwrap();
        assert_eq!(never_set.status, PresenceStatus::Online);
        assert_eq!(never_set.since, None);
    }
}
