//! Routing choices, as pure functions: given a queue's strategy and what is
//! known about its members, which agents get an offer now. No I/O, no clock:
//! the queue actor gathers the facts and applies the answer, so every rule
//! here is unit- and property-tested, and benchmarked in decisions per
//! second (`benches/routing.rs`).
//!
//! Rules (DESIGN.md, "Routing rules"):
//! - only **eligible** agents get offers: available (online, not paused),
//!   under capacity, not excluded for this interaction (they rejected or let
//!   an offer expire this round) and not already holding an offer for it;
//! - **sticky**: when the interaction has a sticky agent who is eligible,
//!   only that agent is offered (for `sticky_secs`; the caller decides when
//!   the sticky window is over by passing `sticky: None`);
//! - **ring_all**: every eligible agent, up to the queue's cap on
//!   simultaneous offers (none by default);
//! - **round_robin**, **longest_idle**, **fewest_active**: one agent at a
//!   time — nobody new while an offer is out.

use std::collections::HashSet;

use super::{AgentId, OfferStatus, Strategy};

/// What the queue knows about one member, at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub agent: AgentId,
    /// Online and not paused.
    pub available: bool,
    /// Open interactions the agent owns now.
    pub owned: u32,
    pub capacity: u32,
    /// When the agent last became idle (ms since the epoch); lower = idle longer.
    pub idle_since_ms: i64,
}

impl Candidate {
    fn has_room(&self) -> bool {
        self.owned < self.capacity
    }
}

/// The facts about one waiting interaction.
#[derive(Debug, Clone, Default)]
pub struct Situation<'a> {
    /// Agents excluded for this interaction in this round.
    pub excluded: Option<&'a HashSet<AgentId>>,
    /// Agents holding a live offer for this interaction.
    pub offered: Option<&'a HashSet<AgentId>>,
    /// The contact's last agent, while the sticky window lasts.
    pub sticky: Option<AgentId>,
}

/// The queue's routing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    /// ring_all: at most this many live offers per interaction.
    pub max_simultaneous: Option<u32>,
}

/// Who gets an offer now. `members` is in the queue's member order (the
/// order round_robin walks); `last_served` is the member who received the
/// queue's previous round_robin offer.
/// How many new offers an interaction that holds `offered` live (or
/// pending) offers may get now: ring_all up to its `max_simultaneous`, the
/// other strategies one at a time.
pub fn room(policy: Policy, offered: usize) -> usize {
    match policy.strategy {
        Strategy::RingAll => policy
            .max_simultaneous
            .map_or(usize::MAX, |m| (m as usize).saturating_sub(offered)),
        _ if offered > 0 => 0,
        _ => 1,
    }
}

pub fn choose(
    policy: Policy,
    members: &[Candidate],
    situation: &Situation<'_>,
    last_served: Option<AgentId>,
) -> Vec<AgentId> {
    let room = room(policy, situation.offered.map_or(0, HashSet::len));
    let eligible = |c: &&Candidate| {
        c.available
            && c.has_room()
            && !situation.excluded.is_some_and(|e| e.contains(&c.agent))
            && !situation.offered.is_some_and(|o| o.contains(&c.agent))
    };
    if room == 0 {
        return Vec::new();
    }
    if let Some(sticky) = situation.sticky {
        // While the sticky agent holds the offer, nobody else is offered; if
        // they are not eligible, the window is moot and the strategy applies.
        if situation.offered.is_some_and(|o| o.contains(&sticky)) {
            return Vec::new();
        }
        if members.iter().filter(eligible).any(|c| c.agent == sticky) {
            return vec![sticky];
        }
    }
    match policy.strategy {
        Strategy::RingAll => members
            .iter()
            .filter(eligible)
            .take(room)
            .map(|c| c.agent)
            .collect(),
        Strategy::RoundRobin => {
            let start = last_served
                .and_then(|last| members.iter().position(|c| c.agent == last))
                .map_or(0, |i| i + 1);
            let n = members.len();
            (0..n)
                .map(|k| &members[(start + k) % n])
                .find(|c| eligible(c))
                .map(|c| vec![c.agent])
                .unwrap_or_default()
        }
        Strategy::LongestIdle => members
            .iter()
            .filter(eligible)
            .min_by_key(|c| (c.idle_since_ms, c.agent))
            .map(|c| vec![c.agent])
            .unwrap_or_default(),
        Strategy::FewestActive => members
            .iter()
            .filter(eligible)
            .min_by_key(|c| (c.owned, c.idle_since_ms, c.agent))
            .map(|c| vec![c.agent])
            .unwrap_or_default(),
    }
}

/// What can happen to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEvent {
    Accept,
    Reject,
    Expire,
    /// Taken by another agent, or cancelled (pause, disconnect, restart).
    Rescind,
}

/// An offer's next status, or `None` when the offer is already decided: a
/// late or repeated accept is `offer_gone`, never a second decision.
pub fn next_offer_status(current: OfferStatus, event: OfferEvent) -> Option<OfferStatus> {
    match current {
        OfferStatus::Offered => Some(match event {
            OfferEvent::Accept => OfferStatus::Accepted,
            OfferEvent::Reject => OfferStatus::Rejected,
            OfferEvent::Expire => OfferStatus::Expired,
            OfferEvent::Rescind => OfferStatus::Rescinded,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{Just, any, prop_assert, prop_assert_eq, prop_oneof, proptest};

    fn c(id: i64, owned: u32, idle: i64) -> Candidate {
        Candidate {
            agent: AgentId(id),
            available: true,
            owned,
            capacity: 3,
            idle_since_ms: idle,
        }
    }

    fn ring() -> Policy {
        Policy {
            strategy: Strategy::RingAll,
            max_simultaneous: None,
        }
    }

    #[test]
    fn ring_all_offers_every_eligible_agent() {
        let mut members = vec![c(1, 0, 0), c(2, 3, 0), c(3, 0, 0), c(4, 0, 0)];
        members[3].available = false;
        let excluded: HashSet<_> = [AgentId(3)].into();
        let s = Situation {
            excluded: Some(&excluded),
            ..Default::default()
        };
        // 2 is full, 3 rejected, 4 is paused or offline.
        assert_eq!(choose(ring(), &members, &s, None), vec![AgentId(1)]);
    }

    #[test]
    fn ring_all_respects_the_cap_and_live_offers() {
        let members: Vec<_> = (1..=10).map(|i| c(i, 0, 0)).collect();
        let offered: HashSet<_> = [AgentId(1), AgentId(2)].into();
        let s = Situation {
            offered: Some(&offered),
            ..Default::default()
        };
        let capped = Policy {
            strategy: Strategy::RingAll,
            max_simultaneous: Some(5),
        };
        assert_eq!(
            choose(capped, &members, &s, None),
            vec![AgentId(3), AgentId(4), AgentId(5)]
        );
        assert_eq!(
            choose(ring(), &members, &s, None).len(),
            8,
            "no cap by default"
        );
    }

    #[test]
    fn round_robin_continues_after_the_last_served_and_wraps() {
        let members = vec![c(1, 0, 0), c(2, 0, 0), c(3, 0, 0)];
        let rr = Policy {
            strategy: Strategy::RoundRobin,
            max_simultaneous: None,
        };
        let s = Situation::default();
        assert_eq!(choose(rr, &members, &s, None), vec![AgentId(1)]);
        assert_eq!(choose(rr, &members, &s, Some(AgentId(1))), vec![AgentId(2)]);
        assert_eq!(choose(rr, &members, &s, Some(AgentId(3))), vec![AgentId(1)]);
        // A departed last-served member restarts at the top.
        assert_eq!(
            choose(rr, &members, &s, Some(AgentId(99))),
            vec![AgentId(1)]
        );
        // One at a time.
        let offered: HashSet<_> = [AgentId(2)].into();
        let busy = Situation {
            offered: Some(&offered),
            ..Default::default()
        };
        assert!(choose(rr, &members, &busy, Some(AgentId(1))).is_empty());
    }

    #[test]
    fn thirty_interactions_over_three_agents_give_ten_each() {
        let members = vec![c(1, 0, 0), c(2, 0, 0), c(3, 0, 0)];
        let rr = Policy {
            strategy: Strategy::RoundRobin,
            max_simultaneous: None,
        };
        let mut last = None;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..30 {
            let chosen = choose(rr, &members, &Situation::default(), last);
            *counts.entry(chosen[0]).or_insert(0) += 1;
            last = Some(chosen[0]);
        }
        assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    }

    #[test]
    fn longest_idle_and_fewest_active() {
        let members = vec![c(1, 2, 500), c(2, 0, 900), c(3, 1, 100)];
        let li = Policy {
            strategy: Strategy::LongestIdle,
            max_simultaneous: None,
        };
        let fa = Policy {
            strategy: Strategy::FewestActive,
            max_simultaneous: None,
        };
        assert_eq!(
            choose(li, &members, &Situation::default(), None),
            vec![AgentId(3)]
        );
        assert_eq!(
            choose(fa, &members, &Situation::default(), None),
            vec![AgentId(2)]
        );
    }

    #[test]
    fn sticky_agent_goes_first_and_alone_when_eligible() {
        let members = vec![c(1, 0, 0), c(2, 0, 0), c(3, 0, 0)];
        let s = Situation {
            sticky: Some(AgentId(2)),
            ..Default::default()
        };
        assert_eq!(choose(ring(), &members, &s, None), vec![AgentId(2)]);
        // While the sticky agent holds the offer, nobody else gets one.
        let offered: HashSet<_> = [AgentId(2)].into();
        let s = Situation {
            sticky: Some(AgentId(2)),
            offered: Some(&offered),
            ..Default::default()
        };
        assert!(choose(ring(), &members, &s, None).is_empty());
        // A sticky agent who is full does not hold the interaction back.
        let mut full = members.clone();
        full[1].owned = 3;
        let s = Situation {
            sticky: Some(AgentId(2)),
            ..Default::default()
        };
        assert_eq!(
            choose(ring(), &full, &s, None),
            vec![AgentId(1), AgentId(3)]
        );
    }

    #[test]
    fn decided_offers_stay_decided() {
        use OfferEvent::*;
        assert_eq!(
            next_offer_status(OfferStatus::Offered, Accept),
            Some(OfferStatus::Accepted)
        );
        for done in [
            OfferStatus::Accepted,
            OfferStatus::Rejected,
            OfferStatus::Expired,
            OfferStatus::Rescinded,
        ] {
            for e in [Accept, Reject, Expire, Rescind] {
                assert_eq!(next_offer_status(done, e), None, "{done:?} {e:?}");
            }
        }
    }

    fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
        prop_oneof![
            Just(Strategy::RingAll),
            Just(Strategy::RoundRobin),
            Just(Strategy::LongestIdle),
            Just(Strategy::FewestActive),
        ]
    }

    proptest! {
        /// Whatever the facts, nobody ineligible is ever chosen, nobody is
        /// chosen twice, and one-at-a-time strategies choose at most one.
        #[test]
        fn only_eligible_agents_are_chosen(
            strat in strategy(),
            raw in proptest::collection::vec((any::<bool>(), 0u32..4, 1u32..4, 0i64..1000), 0..30),
            excluded_mask in any::<u32>(),
            offered_mask in any::<u32>(),
            sticky in proptest::option::of(1i64..32),
            last in proptest::option::of(1i64..32),
            cap in proptest::option::of(0u32..10),
        ) {
            let members: Vec<Candidate> = raw.iter().enumerate().map(|(i, (a, o, cap, idle))| Candidate {
                agent: AgentId(i as i64 + 1), available: *a, owned: *o, capacity: *cap, idle_since_ms: *idle,
            }).collect();
            let excluded: HashSet<AgentId> = members.iter().filter(|c| excluded_mask & (1 << (c.agent.0 % 32)) != 0).map(|c| c.agent).collect();
            let offered: HashSet<AgentId> = members.iter().filter(|c| offered_mask & (1 << ((c.agent.0 * 7) % 32)) != 0).map(|c| c.agent).collect();
            let s = Situation { excluded: Some(&excluded), offered: Some(&offered), sticky: sticky.map(AgentId) };
            let chosen = choose(Policy { strategy: strat, max_simultaneous: cap }, &members, &s, last.map(AgentId));
            let unique: HashSet<_> = chosen.iter().collect();
            prop_assert_eq!(unique.len(), chosen.len());
            for a in &chosen {
                let c = members.iter().find(|c| c.agent == *a).unwrap();
                prop_assert!(c.available && c.owned < c.capacity && !excluded.contains(a) && !offered.contains(a));
            }
            if strat != Strategy::RingAll || (sticky.is_some() && chosen.len() == 1 && chosen[0] == AgentId(sticky.unwrap())) {
                prop_assert!(chosen.len() <= 1);
            }
            if let (Strategy::RingAll, Some(m)) = (strat, cap) {
                prop_assert!(chosen.len() + offered.len() <= (m as usize).max(offered.len()));
            }
        }
    }
}
