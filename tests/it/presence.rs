//! The presence contract (invariant 7): one suite of cases, each run against
//! both backends by `contract!`, as `memory_<case>` and `redis_<case>`.
//!
//! A new presence behaviour gets one `async fn` case here taking a
//! `&Backend`, and one line in `contract!`. The Redis cases use a real Redis
//! (`MAILROOM_TEST_REDIS_URL`, see `support::services`), each under its own
//! key prefix, whose keys are deleted when the case ends, even on failure.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mailroom::domain::{AgentId, PresenceStatus};
use mailroom::presence::{Availability, Presence, PresenceState};

use crate::support::services::service_var;

/// Long enough that no entry expires during a case that is not about expiry.
const LONG_TTL: Duration = Duration::from_secs(60);
/// For the cases about expiry.
const SHORT_TTL: Duration = Duration::from_millis(300);
/// How long a case waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

const ALICE: AgentId = AgentId(1);
const BOB: AgentId = AgentId(2);
const CAROL: AgentId = AgentId(3);

macro_rules! contract {
    ($($case:ident => $memory:ident, $redis:ident;)+) => {$(
        #[tokio::test]
        async fn $memory() {
            $case(&Backend::memory()).await;
        }

        #[tokio::test]
        async fn $redis() {
            $case(&Backend::redis()).await;
        }
    )+};
}

contract! {
    unknown_agent_is_offline_and_wishes_online
        => memory_unknown_agent_is_offline_and_wishes_online, redis_unknown_agent_is_offline_and_wishes_online;
    heartbeat_makes_the_agent_online
        => memory_heartbeat_makes_the_agent_online, redis_heartbeat_makes_the_agent_online;
    pause_carries_its_reason_and_since
        => memory_pause_carries_its_reason_and_since, redis_pause_carries_its_reason_and_since;
    leave_makes_offline_and_the_wish_survives_a_reconnect
        => memory_leave_makes_offline_and_the_wish_survives_a_reconnect,
           redis_leave_makes_offline_and_the_wish_survives_a_reconnect;
    leaving_one_node_keeps_the_agent_online_on_another
        => memory_leaving_one_node_keeps_the_agent_online_on_another,
           redis_leaving_one_node_keeps_the_agent_online_on_another;
    without_heartbeat_the_agent_goes_offline_after_the_ttl
        => memory_without_heartbeat_the_agent_goes_offline_after_the_ttl,
           redis_without_heartbeat_the_agent_goes_offline_after_the_ttl;
    heartbeat_renews_the_ttl
        => memory_heartbeat_renews_the_ttl, redis_heartbeat_renews_the_ttl;
    get_many_answers_in_the_order_asked
        => memory_get_many_answers_in_the_order_asked, redis_get_many_answers_in_the_order_asked;
    ping_answers
        => memory_ping_answers, redis_ping_answers;
}

// ---- the cases ----

async fn unknown_agent_is_offline_and_wishes_online(backend: &Backend) {
    let (p, _) = backend.open(LONG_TTL).await;
    assert_eq!(p.get(ALICE).await.unwrap(), PresenceState::offline());
    assert_eq!(p.availability(ALICE).await.unwrap(), Availability::Online);
    assert_eq!(
        p.get_many(&[ALICE]).await.unwrap(),
        vec![PresenceState::offline()]
    );
}

async fn heartbeat_makes_the_agent_online(backend: &Backend) {
    let (node_a, node_b) = backend.open(LONG_TTL).await;
    node_a.heartbeat(ALICE, "node-a").await.unwrap();

    let expected = PresenceState {
        status: PresenceStatus::Online,
        reason: None,
        since: None,
        nodes: vec!["node-a".to_string()],
    };
    assert_eq!(node_a.get(ALICE).await.unwrap(), expected);
    // Another node of the cluster sees it too.
    assert_eq!(node_b.get(ALICE).await.unwrap(), expected);
    // Repeated heartbeats (every pong) change nothing visible.
    node_a.heartbeat(ALICE, "node-a").await.unwrap();
    assert_eq!(node_b.get(ALICE).await.unwrap(), expected);
    assert_eq!(node_b.get(BOB).await.unwrap(), PresenceState::offline());
}

async fn pause_carries_its_reason_and_since(backend: &Backend) {
    let (p, other) = backend.open(LONG_TTL).await;
    p.heartbeat(ALICE, "node-a").await.unwrap();

    let before = now_to_the_ms();
    p.set_availability(ALICE, paused("lunch")).await.unwrap();
    let after = Utc::now();

    let state = other.get(ALICE).await.unwrap();
    assert_eq!(state.status, PresenceStatus::Paused);
    assert_eq!(state.reason.as_deref(), Some("lunch"));
    let since = state.since.expect("a set wish has a since");
    assert!(
        before <= since && since <= after,
        "since {since} not within [{before}, {after}]"
    );
    assert_eq!(other.availability(ALICE).await.unwrap(), paused("lunch"));

    // Back online: the reason goes, `since` moves on.
    p.set_availability(ALICE, Availability::Online)
        .await
        .unwrap();
    let state = other.get(ALICE).await.unwrap();
    assert_eq!(state.status, PresenceStatus::Online);
    assert_eq!(state.reason, None);
    assert!(state.since.expect("a set wish has a since") >= since);

    // A pause without a reason.
    p.set_availability(ALICE, Availability::Paused { reason: None })
        .await
        .unwrap();
    let state = other.get(ALICE).await.unwrap();
    assert_eq!((state.status, state.reason), (PresenceStatus::Paused, None));
}

async fn leave_makes_offline_and_the_wish_survives_a_reconnect(backend: &Backend) {
    let (p, other) = backend.open(LONG_TTL).await;
    p.set_availability(ALICE, paused("meeting")).await.unwrap();
    p.heartbeat(ALICE, "node-a").await.unwrap();
    assert_eq!(
        other.get(ALICE).await.unwrap().status,
        PresenceStatus::Paused
    );

    p.leave(ALICE, "node-a").await.unwrap();
    assert_eq!(other.get(ALICE).await.unwrap(), PresenceState::offline());
    assert_eq!(other.availability(ALICE).await.unwrap(), paused("meeting"));
    // A second leave (a late disconnect after a timeout) is harmless.
    p.leave(ALICE, "node-a").await.unwrap();

    // Reconnecting, on any node, comes back paused.
    other.heartbeat(ALICE, "node-b").await.unwrap();
    let state = p.get(ALICE).await.unwrap();
    assert_eq!(state.status, PresenceStatus::Paused);
    assert_eq!(state.reason.as_deref(), Some("meeting"));
    assert_eq!(state.nodes, vec!["node-b".to_string()]);
}

async fn leaving_one_node_keeps_the_agent_online_on_another(backend: &Backend) {
    let (node_a, node_b) = backend.open(LONG_TTL).await;
    // node-b connects first: `nodes` comes back sorted, not in arrival order.
    node_b.heartbeat(ALICE, "node-b").await.unwrap();
    node_a.heartbeat(ALICE, "node-a").await.unwrap();
    let state = node_a.get(ALICE).await.unwrap();
    assert_eq!(state.status, PresenceStatus::Online);
    assert_eq!(
        state.nodes,
        vec!["node-a".to_string(), "node-b".to_string()]
    );

    node_a.leave(ALICE, "node-a").await.unwrap();
    let state = node_a.get(ALICE).await.unwrap();
    assert_eq!(state.status, PresenceStatus::Online);
    assert_eq!(state.nodes, vec!["node-b".to_string()]);

    node_b.leave(ALICE, "node-b").await.unwrap();
    assert_eq!(node_a.get(ALICE).await.unwrap(), PresenceState::offline());
}

async fn without_heartbeat_the_agent_goes_offline_after_the_ttl(backend: &Backend) {
    let (p, _) = backend.open(SHORT_TTL).await;
    p.set_availability(ALICE, paused("break")).await.unwrap();

    let beat = Instant::now();
    p.heartbeat(ALICE, "node-a").await.unwrap();
    let state = p.get(ALICE).await.unwrap();
    // Only assert "still live" when the machine was quick enough for it to
    // be true: a loaded CI may take longer than the TTL between two calls.
    if beat.elapsed() < SHORT_TTL {
        assert_eq!(state.status, PresenceStatus::Paused, "{state:?}");
    }

    let state = wait_for(&p, ALICE, "offline after the TTL", |s| {
        s.status == PresenceStatus::Offline
    })
    .await;
    assert_eq!(state, PresenceState::offline());
    // Never early. (A few ms of slack: Redis scores are whole milliseconds.)
    let lived = beat.elapsed();
    assert!(
        lived + Duration::from_millis(5) >= SHORT_TTL,
        "offline after {lived:?}, before the TTL of {SHORT_TTL:?}"
    );
    // Expiry took the liveness only: the wish is still there.
    assert_eq!(p.availability(ALICE).await.unwrap(), paused("break"));
}

async fn heartbeat_renews_the_ttl(backend: &Backend) {
    let (p, _) = backend.open(SHORT_TTL).await;
    let deadline = Instant::now() + DEADLINE;
    // Heartbeat at t0 and t1 = t0 + ttl/2, read at t0 + ttl + ε: the first
    // entry has expired, the renewed one has not. If the machine is too
    // slow for that window, the attempt proves nothing and is retried.
    loop {
        p.heartbeat(ALICE, "node-a").await.unwrap();
        let first_done = Instant::now();
        tokio::time::sleep_until((first_done + SHORT_TTL / 2).into()).await;
        let renew = Instant::now();
        p.heartbeat(ALICE, "node-a").await.unwrap();
        tokio::time::sleep_until((first_done + SHORT_TTL + Duration::from_millis(20)).into()).await;
        let read = Instant::now();
        let state = p.get(ALICE).await.unwrap();
        let read_done = Instant::now();

        let first_expired = read > first_done + SHORT_TTL;
        let renewed_live = read_done + Duration::from_millis(5) < renew + SHORT_TTL;
        if first_expired && renewed_live {
            assert_eq!(state.status, PresenceStatus::Online, "{state:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the machine never met the timing window"
        );
        p.leave(ALICE, "node-a").await.unwrap();
    }
}

async fn get_many_answers_in_the_order_asked(backend: &Backend) {
    let (p, _) = backend.open(LONG_TTL).await;
    p.heartbeat(ALICE, "node-a").await.unwrap();
    p.set_availability(BOB, paused("training")).await.unwrap();
    p.heartbeat(BOB, "node-b").await.unwrap();
    // CAROL never connected.

    let states = p.get_many(&[CAROL, ALICE, BOB, ALICE]).await.unwrap();
    let summary: Vec<_> = states
        .iter()
        .map(|s| (s.status, s.reason.as_deref(), s.nodes.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (PresenceStatus::Offline, None, vec![]),
            (PresenceStatus::Online, None, vec!["node-a".to_string()]),
            (
                PresenceStatus::Paused,
                Some("training"),
                vec!["node-b".to_string()]
            ),
            (PresenceStatus::Online, None, vec!["node-a".to_string()]),
        ]
    );
    for (agent, state) in [CAROL, ALICE, BOB].into_iter().zip(&states) {
        assert_eq!(
            &p.get(agent).await.unwrap(),
            state,
            "get and get_many agree for {agent}"
        );
    }
    assert_eq!(p.get_many(&[]).await.unwrap(), vec![]);
}

async fn ping_answers(backend: &Backend) {
    let (p, other) = backend.open(LONG_TTL).await;
    p.ping().await.unwrap();
    other.ping().await.unwrap();
}

// ---- Redis only: what the contract cannot see ----

/// A node that dies never sends `leave`: its agents' liveness keys must
/// vanish by themselves, while the wish, which has no TTL, stays.
#[tokio::test]
async fn redis_liveness_keys_expire_by_themselves_and_wishes_do_not() {
    let backend = Backend::redis();
    let (p, _) = backend.open(LONG_TTL).await;
    p.set_availability(ALICE, paused("lunch")).await.unwrap();
    p.heartbeat(ALICE, "node-a").await.unwrap();

    let Backend::Redis { url, prefix } = &backend else {
        unreachable!()
    };
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut pttl = |key: String| -> i64 { redis::cmd("PTTL").arg(key).query(&mut conn).unwrap() };
    let live_ttl = pttl(format!("{prefix}:live:{ALICE}"));
    assert!(
        0 < live_ttl && live_ttl <= LONG_TTL.as_millis() as i64,
        "liveness key PTTL {live_ttl}"
    );
    assert_eq!(
        pttl(format!("{prefix}:wish:{ALICE}")),
        -1,
        "the wish has no TTL"
    );

    // The last leave removes the liveness key altogether.
    p.leave(ALICE, "node-a").await.unwrap();
    assert_eq!(pttl(format!("{prefix}:live:{ALICE}")), -2, "no key left");
}

// ---- helpers ----

fn paused(reason: &str) -> Availability {
    Availability::Paused {
        reason: Some(reason.to_string()),
    }
}

/// Now, cut to whole milliseconds (the precision Redis stores `since` at).
fn now_to_the_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now is representable")
}

/// Polls `agent`'s presence until `done` holds, failing after `DEADLINE`.
async fn wait_for(
    p: &Presence,
    agent: AgentId,
    what: &str,
    done: impl Fn(&PresenceState) -> bool,
) -> PresenceState {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = p.get(agent).await.unwrap();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {DEADLINE:?}; last state {state:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A presence backend under test.
enum Backend {
    Memory,
    /// A real Redis, under a prefix of this test's own; its keys are deleted
    /// on drop, so also when the case panics.
    Redis {
        url: String,
        prefix: String,
    },
}

impl Backend {
    fn memory() -> Self {
        Backend::Memory
    }

    fn redis() -> Self {
        Backend::Redis {
            url: service_var("MAILROOM_TEST_REDIS_URL"),
            prefix: format!("mailroom_test_{:016x}", rand::random::<u64>()),
        }
    }

    /// Two handles on one presence, as two nodes of a cluster hold: for
    /// memory, two clones of one store (a single node); for Redis, two
    /// separate connections under the same prefix.
    async fn open(&self, ttl: Duration) -> (Presence, Presence) {
        match self {
            Backend::Memory => {
                let p = Presence::connect("memory://", ttl, "").await.unwrap();
                assert_eq!(p.backend(), "memory");
                (p.clone(), p)
            }
            Backend::Redis { url, prefix } => {
                let a = Presence::connect(url, ttl, prefix).await.unwrap();
                let b = Presence::connect(url, ttl, prefix).await.unwrap();
                assert_eq!(a.backend(), "redis");
                (a, b)
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let Backend::Redis { url, prefix } = self else {
            return;
        };
        // Synchronous on purpose: `Drop` cannot await, and a blocking call of
        // a few ms at the end of a test harms nobody.
        let cleanup = || -> redis::RedisResult<()> {
            let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
            // SCAN, not KEYS: the Redis may be shared and large.
            let keys: Vec<String> =
                redis::Commands::scan_match::<_, String>(&mut conn, format!("{prefix}:*"))?
                    .collect::<Result<_, _>>()?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
            }
            Ok(())
        };
        if let Err(e) = cleanup() {
            // Not a panic: this may run while a failed case unwinds.
            eprintln!("could not delete the test keys under {prefix}: {e}");
        }
    }
}
