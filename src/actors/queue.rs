//! `QueueActor`: one per queue. It holds the waiting list (priority, then
//! age), chooses who gets an offer (`domain::routing::choose`), records every
//! offer before announcing it (invariant 3), and settles accepts, rejects,
//! timeouts and cancellations.
//!
//! Exactly one owner (invariant 2) does not depend on this actor: an accept
//! is [`Store::accept_offer`], one conditional transaction. The actor only
//! keeps the live picture (who holds which offer) so that the losers hear
//! `offer_rescinded{taken}` in the same round trip.
//!
//! Store calls are futures spawned on the actor's context; their results
//! come back into the actor, so its state is never touched concurrently and
//! its mailbox never waits on I/O (invariant 5).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use dashmap::DashMap;
use tracing::{debug, info, warn};

use crate::actors::agent::AgentHub;
use crate::domain::routing::{Candidate, Policy, Situation, choose, room};
use crate::domain::{
    AgentId, AssignedVia, InteractionId, OfferId, OfferStatus, QueueId, RescindReason,
};
use crate::http::ws::protocol::ServerFrame;
use crate::store::{AcceptOutcome, Queue, Store, StoreError};

/// What routing knows about an agent, kept current by the agent actors and
/// by assignments. A `DashMap` read synchronously when choosing: choosing
/// must not wait on anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRuntime {
    pub available: bool,
    pub owned: u32,
    pub capacity: u32,
    pub idle_since_ms: i64,
}

pub type Directory = Arc<DashMap<AgentId, AgentRuntime>>;

/// Which queue holds a live offer: sessions route accept/reject by it.
pub type OfferIndex = Arc<DashMap<OfferId, Addr<QueueActor>>>;

/// Why an interaction enters a queue.
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    /// New mail. `seen` is when the mailbox learnt of it (the EXISTS, or the
    /// fetch that found it): the start of `mailroom_exists_to_offer_seconds`.
    Arrival { seen: Option<Instant> },
    /// Re-read from the store (start, or the queue's settings changed).
    Recovery,
    /// Transferred here. The agent who gave it away is left out of the first
    /// round (they just passed it on), and the sticky agent does not apply.
    Transfer { from: Option<AgentId> },
    /// Reopened by a supervisor: back to the queue, no sticky agent.
    Reopen,
}

/// Put an interaction on the waiting list (new mail, transfer, recovery).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Enqueue {
    pub interaction: InteractionId,
    pub origin: Origin,
    /// Its place, when the sender knows it: priority, and when it entered
    /// the queue. The interaction then holds that place from the moment the
    /// message arrives, while what its offer shows is still being read, so
    /// interactions enqueued together are offered in their order, not in
    /// the order their reads finish.
    pub rank: Option<(i32, DateTime<Utc>)>,
    /// What the offer shows, when the sender has it at hand (the mailbox,
    /// which has just parsed and committed the mail). With it and a `rank`,
    /// the queue reads nothing from the store but the sticky agent: three
    /// reads fewer per new mail. A stale picture costs nothing: whether the
    /// interaction may still be offered is checked by `create_offers` itself.
    pub known: Option<Known>,
}

/// What the mailbox knows of a new interaction (see [`Enqueue::known`]).
#[derive(Debug, Clone)]
pub struct Known {
    pub summary: Summary,
    pub contact: Option<crate::domain::ContactId>,
}

/// The interaction left this queue (transferred, assigned directly, or
/// closed): forget it, and tell the agents holding its offers (the store has
/// already rescinded them in the same transaction as the move).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub interaction: InteractionId,
    pub reason: RescindReason,
}

/// What a supervisor sees of a queue.
#[derive(Message)]
#[rtype(result = "QueueSnapshot")]
pub struct Snapshot;

#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    pub members: Vec<AgentId>,
    /// In the queue with no live offer.
    pub waiting: usize,
    /// In the queue with at least one live offer out.
    pub offered: usize,
    /// Age of the oldest interaction in the queue (since it entered this queue).
    pub oldest_wait_secs: Option<f64>,
}

/// An agent accepted an offer. Answers with the interaction id, or why not.
#[derive(Message)]
#[rtype(result = "Result<InteractionId, OfferError>")]
pub struct Accept {
    pub offer: OfferId,
    pub agent: AgentId,
}

/// An agent rejected an offer.
#[derive(Message)]
#[rtype(result = "Result<(), OfferError>")]
pub struct Reject {
    pub offer: OfferId,
    pub agent: AgentId,
}

/// An agent became unavailable (paused, or last socket gone): their live
/// offers are cancelled and re-offered. Or available again: try to offer.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct AgentChanged {
    pub agent: AgentId,
    pub available: bool,
}

/// Look at the waiting list again (a timer, a backoff ending, an agent freeing up).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Dispatch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is gone (taken, expired or withdrawn)")]
    Gone,
    #[error("that offer is not yours")]
    NotYours,
    #[error("the store failed: {0}")]
    Store(String),
}

/// What an offer frame shows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub subject: String,
    /// The first message's sender, `Name <address>` or the address.
    pub from: String,
    pub preview: String,
    /// The account's key.
    pub account: String,
}

impl Summary {
    /// What the offer of `interaction` shows, `from` being its first
    /// message's sender and `account` its account's key.
    pub fn of(
        interaction: &crate::store::Interaction,
        from: Option<&crate::mail::Mailbox>,
        account: String,
    ) -> Summary {
        Summary {
            subject: interaction.subject.clone(),
            from: Summary::show_from(from),
            preview: interaction
                .last_message
                .as_ref()
                .map(|l| l.preview.clone())
                .unwrap_or_default(),
            account,
        }
    }

    /// How the offer shows a sender.
    /// (NULs dropped, as the store drops them: the same either way.)
    fn show_from(from: Option<&crate::mail::Mailbox>) -> String {
        from.map(|f| match &f.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", f.address),
            _ => f.address.clone(),
        })
        .unwrap_or_default()
        .replace('\0', "")
    }
}

/// What an enqueue read (or was told): see [`Enqueue::known`].
struct Read {
    summary: Summary,
    sticky: Option<AgentId>,
    /// Priority and creation, for an entry that was given no place.
    rank: (i32, DateTime<Utc>),
    /// Still open, unowned and in this queue (as far as the read saw).
    fits: bool,
}

#[derive(Debug)]
struct Waiting {
    id: InteractionId,
    enqueued: Instant,
    /// What the offer frame shows; `None` while it is being read. Such an
    /// entry holds its place: nothing behind it is offered until it is read.
    summary: Option<Summary>,
    /// When the mailbox learnt of the mail (new mail only), until its
    /// first offer is written.
    seen: Option<Instant>,
    sticky: Option<(AgentId, Instant)>,
    excluded: HashSet<AgentId>,
    /// Live offers: agent → offer.
    live: HashMap<AgentId, OfferId>,
    /// Offers being recorded (not yet announced).
    pending: HashSet<AgentId>,
    /// After a round where everyone said no: wait until then.
    retry_at: Option<Instant>,
}

type Key = (Reverse<i32>, DateTime<Utc>, InteractionId);

pub struct QueueActor {
    queue: Queue,
    members: Vec<AgentId>,
    store: Store,
    hub: AgentHub,
    directory: Directory,
    offers: OfferIndex,
    waiting: BTreeMap<Key, Waiting>,
    keys: HashMap<InteractionId, Key>,
    /// offer → (interaction, agent).
    live: HashMap<OfferId, (InteractionId, AgentId)>,
    rr_last: Option<AgentId>,
    /// Unanswered offers in a row, per agent (auto-pause).
    missed: HashMap<AgentId, u32>,
    /// Offer deadlines, earliest first. A decided offer's entry is skipped
    /// when its deadline passes (`live` no longer has it), or dropped
    /// earlier by `prune_deadlines`.
    ///
    /// Why one heap and one timer rather than a `notify_later` per offer:
    /// actix polls every item spawned on a context each time the actor
    /// wakes, so 12,000 pending 60 s timers (200 offers/s) cost 12,000 polls
    /// per message. That was the queue actor's largest cost in the steady
    /// scenario's profile (docs/performance.md).
    deadlines: BinaryHeap<Reverse<(Instant, OfferId)>>,
    /// When the waiting list must be looked at again (a sticky window or a
    /// retry backoff ending), if anything asks for it.
    redispatch_at: Option<Instant>,
    /// The one timer on the context, and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
    /// The round-robin place not yet saved (a save is scheduled).
    rr_unsaved: Option<AgentId>,
}

impl QueueActor {
    pub fn new(
        queue: Queue,
        members: Vec<AgentId>,
        store: Store,
        hub: AgentHub,
        directory: Directory,
        offers: OfferIndex,
        rr_last: Option<AgentId>,
    ) -> Self {
        QueueActor {
            queue,
            members,
            store,
            hub,
            directory,
            offers,
            waiting: BTreeMap::new(),
            keys: HashMap::new(),
            live: HashMap::new(),
            rr_last,
            missed: HashMap::new(),
            deadlines: BinaryHeap::new(),
            redispatch_at: None,
            timer: None,
            rr_unsaved: None,
        }
    }

    /// Remember the round-robin place in the store, at most once a second.
    ///
    /// Why not with every offer: it is one `UPDATE` of the queue's row (and
    /// a commit) per offer, on a row every new interaction's foreign key
    /// also locks, which made Postgres resolve multixacts on it in steady's
    /// profile. The place only lets a restart resume the rotation; a restart
    /// within the second resumes from the place a second older.
    fn save_round_robin_place(&mut self, agent: AgentId, ctx: &mut Context<Self>) {
        let scheduled = self.rr_unsaved.is_some();
        self.rr_unsaved = Some(agent);
        if scheduled {
            return;
        }
        ctx.run_later(Duration::from_secs(1), |act, ctx| {
            let Some(agent) = act.rr_unsaved.take() else {
                return;
            };
            let (store, queue) = (act.store.clone(), act.queue.id);
            ctx.spawn(
                async move {
                    if let Err(e) = store.set_round_robin_last(queue, agent).await {
                        debug!(queue = %queue, error = %e, "could not save the round-robin place");
                    }
                }
                .into_actor(act),
            );
        });
    }

    /// Drop the deadlines of decided offers once they outnumber the live
    /// ones: ring_all to 2,000 agents leaves 1,999 rescinded offers per
    /// interaction, each otherwise kept until its timeout. Amortised O(1):
    /// after a pass the heap holds about the live offers, and the next pass
    /// comes 1,024 offers or more later.
    fn prune_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.live.len() + 1024 {
            let live = &self.live;
            self.deadlines
                .retain(|Reverse((_, offer))| live.contains_key(offer));
        }
    }

    /// Arm the one timer for the earliest of the next offer deadline and the
    /// next re-dispatch, unless it is armed for that or earlier already.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let next_deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let Some(next) = [next_deadline, self.redispatch_at]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        if let Some((at, handle)) = self.timer {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(
            next.saturating_duration_since(Instant::now()),
            |act, ctx| act.fire(ctx),
        );
        self.timer = Some((next, handle));
    }

    /// The timer fired: expire the offers past their deadline, re-dispatch
    /// if that is due, and arm for what comes next.
    fn fire(&mut self, ctx: &mut Context<Self>) {
        self.timer = None;
        let now = Instant::now();
        while let Some(&Reverse((at, offer))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            self.expire(offer, ctx);
        }
        if self.redispatch_at.is_some_and(|at| at <= now) {
            self.redispatch_at = None;
            self.dispatch(ctx);
        }
        self.arm(ctx);
    }

    fn policy(&self) -> Policy {
        Policy {
            strategy: self.queue.strategy,
            max_simultaneous: self.queue.max_simultaneous_offers,
        }
    }

    fn candidates(&self) -> Vec<Candidate> {
        let held = self.offers_held();
        self.members
            .iter()
            .map(|a| {
                let rt = self.directory.get(a).map(|r| *r);
                match rt {
                    Some(r) => Candidate {
                        agent: *a,
                        available: r.available,
                        // Offers out count against capacity: an agent with
                        // one free slot is not offered two interactions.
                        owned: r.owned + held.get(a).copied().unwrap_or(0),
                        capacity: r.capacity,
                        idle_since_ms: r.idle_since_ms,
                    },
                    None => Candidate {
                        agent: *a,
                        available: false,
                        owned: 0,
                        capacity: 0,
                        idle_since_ms: 0,
                    },
                }
            })
            .collect()
    }

    /// Live offers, and offers being recorded (not yet live): both will
    /// take a slot if accepted, so an agent with one free slot must not be
    /// chosen for a second interaction while the first offer is in flight.
    ///
    /// Counted for every agent in one pass over the offers: asking per
    /// member walked all waiting interactions once per member, which the
    /// profile of a 3,000-mail backlog showed as the queue actor's largest
    /// cost (members × waiting on every dispatch).
    fn offers_held(&self) -> HashMap<AgentId, u32> {
        let mut held: HashMap<AgentId, u32> = HashMap::new();
        for (_, agent) in self.live.values() {
            *held.entry(*agent).or_insert(0) += 1;
        }
        for w in self.waiting.values() {
            for agent in &w.pending {
                *held.entry(*agent).or_insert(0) += 1;
            }
        }
        held
    }

    fn gauge(&self) {
        metrics::gauge!(crate::metrics::QUEUE_WAITING, "queue" => self.queue.name.clone())
            .set(self.waiting.len() as f64);
    }

    /// Offer every waiting interaction to whoever is eligible now, in order.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut candidates = self.candidates();
        // Free slots among the agents who could be offered anything now.
        // None: no offer can be made, so the waiting list is not walked at
        // all (it was walked per enqueue, O(waiting) per mail during a
        // backlog with nobody online). Whatever frees a slot or brings an
        // agent online (accept, close, reject, expiry, presence) dispatches
        // again, and that pass schedules the retry and sticky wake-ups.
        let free: u64 = candidates
            .iter()
            .filter(|c| c.available)
            .map(|c| u64::from(c.capacity.saturating_sub(c.owned)))
            .sum();
        if free == 0 {
            return;
        }
        let mut used: u64 = 0;
        let policy = self.policy();
        let mut plans: Vec<(InteractionId, Vec<AgentId>)> = Vec::new();
        // Agents chosen earlier in this pass count as busy for the later
        // interactions (one free slot, one offer): their `owned` goes up in
        // `candidates` itself, found through this index (built once, when
        // the first agent is chosen). A copy of the candidates per waiting
        // interaction was the queue's largest cost with 2,000 members.
        let mut index: Option<HashMap<AgentId, usize>> = None;
        let mut next_wakeup: Option<Instant> = None;
        for w in self.waiting.values_mut() {
            if used >= free {
                // Every free slot is spoken for in this pass.
                break;
            }
            if w.summary.is_none() {
                // Its read finishes shortly and dispatches again.
                break;
            }
            if w.retry_at.is_some_and(|t| t > now) {
                next_wakeup = Some(next_wakeup.map_or(w.retry_at.unwrap_or(now), |n: Instant| {
                    n.min(w.retry_at.unwrap_or(now))
                }));
                continue;
            }
            w.retry_at = None;
            let sticky = w.sticky.filter(|(_, until)| *until > now).map(|(a, _)| a);
            if let Some((_, until)) = w.sticky.filter(|(_, until)| *until > now) {
                next_wakeup = Some(next_wakeup.map_or(until, |n: Instant| n.min(until)));
            }
            let in_flight = w.live.len() + w.pending.len();
            if in_flight > 0 && room(policy, in_flight) == 0 {
                // Offered as far as the strategy allows: nothing to choose
                // (and, with offers out, no new round to start).
                continue;
            }
            let mut offered: HashSet<AgentId> = w.live.keys().copied().collect();
            offered.extend(w.pending.iter().copied());
            let situation = Situation {
                excluded: Some(&w.excluded),
                offered: Some(&offered),
                sticky,
            };
            let chosen = choose(policy, &candidates, &situation, self.rr_last);
            if chosen.is_empty() {
                // Nobody left to ask this round: everyone eligible said no or
                // let it expire. Start a new round after the backoff; the
                // interaction keeps its place.
                let anyone_eligible_ignoring_exclusions = candidates
                    .iter()
                    .any(|c| c.available && c.owned < c.capacity && !offered.contains(&c.agent));
                if offered.is_empty()
                    && !w.excluded.is_empty()
                    && anyone_eligible_ignoring_exclusions
                {
                    let at = now + Duration::from_secs(u64::from(self.queue.retry_backoff_secs));
                    w.excluded.clear();
                    w.retry_at = Some(at);
                    next_wakeup = Some(next_wakeup.map_or(at, |n: Instant| n.min(at)));
                }
                continue;
            }
            let index = index.get_or_insert_with(|| {
                candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.agent, i))
                    .collect()
            });
            for a in &chosen {
                used += 1;
                if let Some(&i) = index.get(a) {
                    candidates[i].owned += 1;
                }
                w.pending.insert(*a);
            }
            if self.queue.strategy == crate::domain::Strategy::RoundRobin && sticky.is_none() {
                self.rr_last = chosen.first().copied();
            }
            plans.push((w.id, chosen));
        }
        if let Some(at) = next_wakeup {
            let at = at + Duration::from_millis(5);
            if self.redispatch_at.is_none_or(|t| at < t) {
                self.redispatch_at = Some(at);
                self.arm(ctx);
            }
        }
        for (interaction, agents) in plans {
            self.offer(interaction, agents, ctx);
        }
    }

    /// Record the offers, then announce them.
    fn offer(&mut self, interaction: InteractionId, agents: Vec<AgentId>, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let queue = self.queue.id;
        let timeout = Duration::from_secs(u64::from(self.queue.offer_timeout_secs));
        let expires_at = Utc::now() + chrono::Duration::from_std(timeout).unwrap_or_default();
        let deadline = Instant::now() + timeout;
        let rr = (self.queue.strategy == crate::domain::Strategy::RoundRobin).then_some(agents[0]);
        let wanted = agents.clone();
        ctx.spawn(
            async move { store.create_offers(interaction, queue, &wanted, expires_at).await }
            .into_actor(self)
            .map(move |res, act, ctx| {
                if let (Ok(rows), Some(agent)) = (&res, rr)
                    && !rows.is_empty()
                {
                    act.save_round_robin_place(agent, ctx);
                }
                let Some(w) = act.keys.get(&interaction).copied().and_then(|k| act.waiting.get_mut(&k)) else {
                    // It left the queue while its offers were being recorded
                    // (transferred, closed): withdraw them in the store too,
                    // unannounced, so no row stays `offered`.
                    if let Ok(rows) = res {
                        act.withdraw_unannounced(rows, ctx);
                    }
                    return;
                };
                for a in &agents {
                    w.pending.remove(a);
                }
                let rows = match res {
                    Ok(rows) => rows,
                    Err(e) => {
                        warn!(queue = %act.queue.name, interaction = %interaction, error = %e, "could not record offers; retrying");
                        ctx.run_later(Duration::from_secs(1), |act, ctx| act.dispatch(ctx));
                        return;
                    }
                };
                if rows.is_empty() && w.live.is_empty() && w.pending.is_empty() {
                    // The store offers nothing for an interaction that was
                    // taken or closed meanwhile (no zombie offers): it no
                    // longer waits here.
                    act.remove_waiting(interaction);
                    return;
                }
                let addr = ctx.address();
                let expires = expires_at.to_rfc3339_opts(SecondsFormat::Millis, true);
                let summary = w.summary.clone().unwrap_or_else(|| Summary {
                    subject: String::new(),
                    from: String::new(),
                    preview: String::new(),
                    account: String::new(),
                });
                for row in rows {
                    w.live.insert(row.agent, row.id);
                    act.live.insert(row.id, (interaction, row.agent));
                    act.offers.insert(row.id, addr.clone());
                    metrics::counter!(crate::metrics::OFFERS, "outcome" => "offered").increment(1);
                    metrics::histogram!(crate::metrics::OFFER_LATENCY).record(w.enqueued.elapsed().as_secs_f64());
                    if let Some(seen) = w.seen.take() {
                        metrics::histogram!(crate::metrics::EXISTS_TO_OFFER).record(seen.elapsed().as_secs_f64());
                    }
                    act.hub.push(
                        row.agent,
                        ServerFrame::Offer {
                            offer_id: row.id,
                            interaction_id: interaction,
                            queue: act.queue.name.clone(),
                            account: summary.account.clone(),
                            subject: summary.subject.clone(),
                            from: summary.from.clone(),
                            preview: summary.preview.clone(),
                            expires_at: expires.clone(),
                        },
                    );
                    act.deadlines.push(Reverse((deadline, row.id)));
                }
                act.prune_deadlines();
                act.arm(ctx);
            }),
        );
    }

    /// Forget a live offer locally (after it was decided in the store).
    fn forget(&mut self, offer: OfferId) -> Option<(InteractionId, AgentId)> {
        let entry = self.live.remove(&offer)?;
        self.offers.remove(&offer);
        if let Some(key) = self.keys.get(&entry.0)
            && let Some(w) = self.waiting.get_mut(key)
        {
            w.live.remove(&entry.1);
        }
        Some(entry)
    }

    fn withdraw_unannounced(&mut self, rows: Vec<crate::store::OfferRow>, ctx: &mut Context<Self>) {
        if rows.is_empty() {
            return;
        }
        let store = self.store.clone();
        ctx.spawn(
            async move {
                for row in rows {
                    let _ = store
                        .decide_offer(
                            row.id,
                            OfferStatus::Rescinded,
                            Some(RescindReason::Cancelled),
                        )
                        .await;
                }
            }
            .into_actor(self),
        );
    }

    fn remove_waiting(&mut self, interaction: InteractionId) {
        if let Some(key) = self.keys.remove(&interaction) {
            self.waiting.remove(&key);
        }
        self.gauge();
    }

    /// Decide a live offer (reject, expire, cancel) in the store, then tell
    /// the agent and offer the interaction again.
    fn settle(
        &mut self,
        offer: OfferId,
        status: OfferStatus,
        reason: Option<RescindReason>,
        exclude: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some((interaction, agent)) = self.forget(offer) else {
            return;
        };
        if exclude
            && let Some(key) = self.keys.get(&interaction)
            && let Some(w) = self.waiting.get_mut(key)
        {
            w.excluded.insert(agent);
        }
        let outcome = match status {
            OfferStatus::Rejected => "rejected",
            OfferStatus::Expired => "expired",
            _ => "cancelled",
        };
        metrics::counter!(crate::metrics::OFFERS, "outcome" => outcome).increment(1);
        let store = self.store.clone();
        ctx.spawn(
            async move { store.decide_offer(offer, status, reason).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    if let Err(e) = res {
                        warn!(offer = %offer, error = %e, "could not record the offer's outcome");
                    }
                    if let Some(reason) = reason {
                        act.hub.push(
                            agent,
                            ServerFrame::OfferRescinded {
                                offer_id: offer,
                                interaction_id: interaction,
                                reason,
                            },
                        );
                    }
                    act.dispatch(ctx);
                }),
        );
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        info!(queue = %self.queue.name, members = self.members.len(), strategy = %self.queue.strategy, "queue started");
    }
}

impl Handler<Enqueue> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        if self.keys.contains_key(&msg.interaction) {
            return;
        }
        let (store, queue) = (self.store.clone(), self.queue.id);
        // A transfer is not a new thread from the contact: no sticky agent
        // (it would usually be the agent who just gave it away).
        let sticky_secs = match msg.origin {
            Origin::Transfer { .. } | Origin::Reopen => 0,
            _ => self.queue.sticky_secs,
        };
        let id = msg.interaction;
        let (seen, passed_on_by) = match msg.origin {
            Origin::Arrival { seen } => (seen, None),
            Origin::Recovery | Origin::Reopen => (None, None),
            Origin::Transfer { from } => (None, from),
        };
        let enqueued = Instant::now();
        let placeholder = move || Waiting {
            id,
            enqueued,
            summary: None,
            seen,
            sticky: None,
            excluded: passed_on_by.into_iter().collect(),
            live: HashMap::new(),
            pending: HashSet::new(),
            retry_at: None,
        };
        if let Some((priority, at)) = msg.rank {
            let key = (Reverse(priority), at, id);
            self.keys.insert(id, key);
            self.waiting.insert(key, placeholder());
            self.gauge();
        }
        // Read what the offer frame shows (and the sticky agent), then fill
        // the entry in (or insert it, when its place was not given).
        let known = msg.known.clone().zip(msg.rank);
        ctx.spawn(
            async move {
                if let Some((known, rank)) = known {
                    let sticky = match (known.contact, sticky_secs) {
                        (Some(c), s) if s > 0 => store.last_agent_of_contact(c, id).await?,
                        _ => None,
                    };
                    return Ok(Read {
                        summary: known.summary,
                        sticky,
                        rank,
                        fits: true,
                    });
                }
                let interaction = store.interaction(id).await?;
                let messages = store.messages(id).await?;
                let account = store.account(interaction.account).await?;
                let sticky = match (interaction.contact, sticky_secs) {
                    (Some(c), s) if s > 0 => store.last_agent_of_contact(c, id).await?,
                    _ => None,
                };
                let from = messages.first().and_then(|m| m.from.as_ref());
                let summary = Summary::of(&interaction, from, account.key);
                Ok::<_, StoreError>(Read {
                    summary,
                    sticky,
                    rank: (interaction.priority, interaction.created_at),
                    fits: interaction.owner.is_none()
                        && interaction.status == crate::domain::InteractionStatus::Open
                        && interaction.queue == queue,
                })
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                let placed = act.keys.get(&id).copied();
                if msg.rank.is_some() && placed.is_none() {
                    // Withdrawn (transferred, closed) while being read.
                    return;
                }
                let read = match res {
                    Ok(v) => v,
                    Err(e) => {
                        // Never dropped: a placeholder would hold up the
                        // queue, so it goes, and the whole enqueue is tried
                        // again shortly.
                        warn!(queue = %act.queue.name, interaction = %id, error = %e, "cannot read an interaction to enqueue; retrying in 1 s");
                        act.remove_waiting(id);
                        ctx.notify_later(msg, Duration::from_secs(1));
                        act.dispatch(ctx);
                        return;
                    }
                };
                if !read.fits {
                    act.remove_waiting(id);
                    act.dispatch(ctx);
                    return;
                }
                let Read { summary, sticky, rank: (priority, created_at), .. } = read;
                let sticky = sticky.map(|a| (a, enqueued + Duration::from_secs(u64::from(sticky_secs))));
                let key = match placed {
                    Some(key) => key,
                    None => {
                        // No place given: by priority, then creation.
                        let key = (Reverse(priority), created_at, id);
                        act.keys.insert(id, key);
                        act.waiting.insert(key, placeholder());
                        act.gauge();
                        key
                    }
                };
                if let Some(w) = act.waiting.get_mut(&key) {
                    w.summary = Some(summary);
                    w.sticky = sticky;
                }
                debug!(queue = %act.queue.name, interaction = %id, "enqueued");
                act.dispatch(ctx);
            }),
        );
    }
}

impl Handler<Accept> for QueueActor {
    type Result = ResponseActFuture<Self, Result<InteractionId, OfferError>>;

    fn handle(&mut self, msg: Accept, _ctx: &mut Self::Context) -> Self::Result {
        let check = match self.live.get(&msg.offer) {
            None => Err(OfferError::Gone),
            Some((_, agent)) if *agent != msg.agent => Err(OfferError::NotYours),
            Some((interaction, _)) => Ok(*interaction),
        };
        let store = self.store.clone();
        Box::pin(
            async move {
                check?;
                store.accept_offer(msg.offer, msg.agent).await.map_err(|e| OfferError::Store(e.to_string()))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res? {
                AcceptOutcome::Gone => {
                    // The claim failed (taken or closed meanwhile): withdraw
                    // the offer in the store too, so no row stays `offered`.
                    if act.forget(msg.offer).is_some() {
                        let store = act.store.clone();
                        let offer = msg.offer;
                        ctx.spawn(
                            async move {
                                let _ = store.decide_offer(offer, OfferStatus::Rescinded, Some(RescindReason::Taken)).await;
                            }
                            .into_actor(act),
                        );
                        act.dispatch(ctx);
                    }
                    Err(OfferError::Gone)
                }
                AcceptOutcome::Won { interaction, rescinded } => {
                    // Persisted; now announce: the winner is assigned, every
                    // other offered agent is told it was taken.
                    act.forget(msg.offer);
                    metrics::counter!(crate::metrics::OFFERS, "outcome" => "accepted").increment(1);
                    if let Some(key) = act.keys.get(&interaction.id)
                        && let Some(w) = act.waiting.get(key)
                    {
                        metrics::histogram!(crate::metrics::WAIT_SECONDS).record(w.enqueued.elapsed().as_secs_f64());
                    }
                    for row in rescinded {
                        act.forget(row.id);
                        metrics::counter!(crate::metrics::OFFERS, "outcome" => "taken").increment(1);
                        act.hub.push(
                            row.agent,
                            ServerFrame::OfferRescinded { offer_id: row.id, interaction_id: interaction.id, reason: RescindReason::Taken },
                        );
                    }
                    act.remove_waiting(interaction.id);
                    act.missed.remove(&msg.agent);
                    if let Some(mut rt) = act.directory.get_mut(&msg.agent) {
                        rt.owned += 1;
                        rt.idle_since_ms = now_ms();
                    }
                    act.hub.push(msg.agent, ServerFrame::Assigned { interaction_id: interaction.id, via: AssignedVia::Accept });
                    info!(queue = %act.queue.name, interaction = %interaction.id, agent = %msg.agent, "assigned");
                    act.dispatch(ctx);
                    Ok(interaction.id)
                }
            }),
        )
    }
}

impl Handler<Reject> for QueueActor {
    type Result = Result<(), OfferError>;

    fn handle(&mut self, msg: Reject, ctx: &mut Self::Context) -> Self::Result {
        match self.live.get(&msg.offer) {
            None => Err(OfferError::Gone),
            Some((_, agent)) if *agent != msg.agent => Err(OfferError::NotYours),
            Some(_) => {
                self.missed.remove(&msg.agent);
                // No frame back for a reject: the agent's `ok` says it.
                self.settle(msg.offer, OfferStatus::Rejected, None, true, ctx);
                Ok(())
            }
        }
    }
}

impl QueueActor {
    /// An offer's deadline passed: if it is still live, it expires (and
    /// counts as missed for auto-pause).
    fn expire(&mut self, offer: OfferId, ctx: &mut Context<Self>) {
        let Some((_, agent)) = self.live.get(&offer).copied() else {
            return;
        };
        let missed = {
            let n = self.missed.entry(agent).or_insert(0);
            *n += 1;
            *n
        };
        if let Some(limit) = self.queue.auto_pause_after_missed
            && limit > 0
            && missed >= limit
        {
            self.missed.remove(&agent);
            info!(queue = %self.queue.name, agent = %agent, missed, "auto-pausing an agent who missed offers");
            self.hub.auto_pause(agent, "missed offers");
        }
        self.settle(
            offer,
            OfferStatus::Expired,
            Some(RescindReason::Timeout),
            true,
            ctx,
        );
    }
}

impl Handler<AgentChanged> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: AgentChanged, ctx: &mut Self::Context) {
        if !self.members.contains(&msg.agent) {
            return;
        }
        if msg.available {
            self.dispatch(ctx);
            return;
        }
        let offers: Vec<OfferId> = self
            .live
            .iter()
            .filter(|(_, (_, a))| *a == msg.agent)
            .map(|(o, _)| *o)
            .collect();
        for offer in offers {
            self.settle(
                offer,
                OfferStatus::Rescinded,
                Some(RescindReason::Cancelled),
                false,
                ctx,
            );
        }
    }
}

impl Handler<Withdraw> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Withdraw, ctx: &mut Self::Context) {
        let offers: Vec<(OfferId, AgentId)> = self
            .live
            .iter()
            .filter(|(_, (i, _))| *i == msg.interaction)
            .map(|(o, (_, a))| (*o, *a))
            .collect();
        for (offer, agent) in offers {
            self.forget(offer);
            metrics::counter!(crate::metrics::OFFERS, "outcome" => msg.reason.as_str())
                .increment(1);
            self.hub.push(
                agent,
                ServerFrame::OfferRescinded {
                    offer_id: offer,
                    interaction_id: msg.interaction,
                    reason: msg.reason,
                },
            );
        }
        if self.keys.contains_key(&msg.interaction) {
            self.remove_waiting(msg.interaction);
            // Agents whose offers were withdrawn are free for the next one.
            self.dispatch(ctx);
        }
    }
}

impl Handler<Snapshot> for QueueActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _msg: Snapshot, _ctx: &mut Self::Context) -> Self::Result {
        let offered = self.waiting.values().filter(|w| !w.live.is_empty()).count();
        let oldest = self
            .waiting
            .values()
            .map(|w| w.enqueued)
            .min()
            .map(|t| t.elapsed().as_secs_f64());
        MessageResult(QueueSnapshot {
            members: self.members.clone(),
            waiting: self.waiting.len() - offered,
            offered,
            oldest_wait_secs: oldest,
        })
    }
}

impl Handler<Dispatch> for QueueActor {
    type Result = ();

    fn handle(&mut self, _msg: Dispatch, ctx: &mut Self::Context) {
        self.dispatch(ctx);
    }
}

/// Stop a queue actor (its settings changed, or it was deleted): its live
/// offers are cancelled, in the store and to the agents.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopQueue;

impl Handler<StopQueue> for QueueActor {
    type Result = ();

    fn handle(&mut self, _msg: StopQueue, ctx: &mut Self::Context) {
        let offers: Vec<(OfferId, (InteractionId, AgentId))> = self.live.drain().collect();
        let store = self.store.clone();
        let hub = self.hub.clone();
        for (offer, _) in &offers {
            self.offers.remove(offer);
        }
        // Wait for the cancellations to be recorded, then stop: the new
        // actor re-reads the waiting list from the store.
        ctx.wait(
            async move {
                for (offer, (interaction, agent)) in offers {
                    if let Ok(Some(_)) = store
                        .decide_offer(
                            offer,
                            OfferStatus::Rescinded,
                            Some(RescindReason::Cancelled),
                        )
                        .await
                    {
                        hub.push(
                            agent,
                            ServerFrame::OfferRescinded {
                                offer_id: offer,
                                interaction_id: interaction,
                                reason: RescindReason::Cancelled,
                            },
                        );
                    }
                }
            }
            .into_actor(self)
            .map(|(), _act, ctx| ctx.stop()),
        );
    }
}

/// The queue actors, by queue; the offer index; the agent directory.
#[derive(Clone)]
pub struct Routing {
    pub queues: Arc<DashMap<QueueId, Addr<QueueActor>>>,
    pub offers: OfferIndex,
    pub directory: Directory,
}

impl Routing {
    pub fn new() -> Self {
        Routing {
            queues: Arc::new(DashMap::new()),
            offers: Arc::new(DashMap::new()),
            directory: Arc::new(DashMap::new()),
        }
    }

    /// Start (or restart) the actor of a queue: resolve its members, load
    /// its round_robin place and its waiting list from the store (recovery:
    /// every open, unowned interaction is offered again, in order).
    pub async fn start_queue(
        &self,
        store: &Store,
        hub: &AgentHub,
        queue: Queue,
        arbiter: &ArbiterHandle,
    ) -> Result<(), StoreError> {
        let agents = store.list_agents().await?;
        for a in &agents {
            let mut rt = self.directory.entry(a.id).or_insert(AgentRuntime {
                available: false,
                owned: 0,
                capacity: a.capacity,
                idle_since_ms: now_ms(),
            });
            rt.capacity = a.capacity;
        }
        let members: Vec<AgentId> = queue
            .agents
            .iter()
            .filter_map(|u| agents.iter().find(|a| &a.username == u).map(|a| a.id))
            .collect();
        let rr_last = store.round_robin_last(queue.id).await?;
        let waiting = store.waiting_interactions(queue.id).await?;
        let id = queue.id;
        let actor = QueueActor::new(
            queue,
            members,
            store.clone(),
            hub.clone(),
            self.directory.clone(),
            self.offers.clone(),
            rr_last,
        );
        let addr = QueueActor::start_in_arbiter(arbiter, |_| actor);
        if let Some(old) = self.queues.insert(id, addr.clone()) {
            old.do_send(StopQueue);
        }
        for w in waiting {
            addr.do_send(Enqueue {
                interaction: w.id,
                origin: Origin::Recovery,
                rank: Some((w.priority, w.enqueued_at)),
                known: None,
            });
        }
        Ok(())
    }

    pub fn stop_queue(&self, queue: QueueId) {
        if let Some((_, addr)) = self.queues.remove(&queue) {
            addr.do_send(StopQueue);
        }
    }

    /// Load the open-interaction counts (capacity) from the store.
    pub async fn load_owned(&self, store: &Store) -> Result<(), StoreError> {
        let counts = store.owned_open_counts().await?;
        for (agent, n) in counts {
            self.directory
                .entry(agent)
                .or_insert(AgentRuntime {
                    available: false,
                    owned: 0,
                    capacity: 0,
                    idle_since_ms: now_ms(),
                })
                .owned = n;
        }
        Ok(())
    }

    /// Hand a new interaction to its queue.
    pub fn enqueue(&self, queue: QueueId, interaction: InteractionId) {
        self.enqueue_with(queue, interaction, Origin::Arrival { seen: None }, None);
    }

    /// Hand an interaction to its queue; `rank` (priority, when it entered
    /// the queue) gives it its place at once (see [`Enqueue::rank`]).
    pub fn enqueue_with(
        &self,
        queue: QueueId,
        interaction: InteractionId,
        origin: Origin,
        rank: Option<(i32, DateTime<Utc>)>,
    ) {
        if let Some(q) = self.queues.get(&queue) {
            q.do_send(Enqueue {
                interaction,
                origin,
                rank,
                known: None,
            });
        }
    }

    /// Hand new mail's interaction to its queue with what its offer shows
    /// (see [`Enqueue::known`]); `seen` is when the mailbox learnt of it.
    pub fn enqueue_arrival(
        &self,
        interaction: &crate::store::Interaction,
        seen: Instant,
        known: Known,
    ) {
        if let Some(q) = self.queues.get(&interaction.queue) {
            q.do_send(Enqueue {
                interaction: interaction.id,
                origin: Origin::Arrival { seen: Some(seen) },
                rank: Some((interaction.priority, interaction.created_at)),
                known: Some(known),
            });
        }
    }

    /// The interaction left `queue` (moved, assigned directly, closed).
    pub fn withdraw(&self, queue: QueueId, interaction: InteractionId, reason: RescindReason) {
        if let Some(q) = self.queues.get(&queue) {
            q.do_send(Withdraw {
                interaction,
                reason,
            });
        }
    }

    /// An agent's count of owned open interactions changed by `delta`
    /// (assigned by transfer: +1; closed or transferred away: -1). A freed
    /// slot is offered at once.
    pub fn owned_changed(&self, agent: AgentId, delta: i32) {
        if let Some(mut rt) = self.directory.get_mut(&agent) {
            rt.owned = rt.owned.saturating_add_signed(delta);
            if delta > 0 {
                // New work: the idle clock (longest_idle) restarts.
                rt.idle_since_ms = now_ms();
            }
        }
        if delta < 0 {
            for q in self.queues.iter() {
                q.value().do_send(Dispatch);
            }
        }
    }

    /// After the store moved an interaction ([`Store::transfer`]): the old
    /// queue forgets it (its offers' holders are told), capacity moves with
    /// it, the new owner hears `assigned{transfer}`, the old owner gets the
    /// new state (`view`), or the new queue offers it, leaving out whoever
    /// passed it on.
    pub fn transferred(
        &self,
        hub: &AgentHub,
        interaction: &crate::store::Interaction,
        previous_owner: Option<AgentId>,
        previous_queue: QueueId,
        view: serde_json::Value,
    ) {
        let reason = match interaction.owner {
            Some(_) => RescindReason::Taken,
            None => RescindReason::Cancelled,
        };
        self.withdraw(previous_queue, interaction.id, reason);
        if let Some(p) = previous_owner {
            self.owned_changed(p, -1);
            hub.push(p, ServerFrame::InteractionUpdated { interaction: view });
        }
        match interaction.owner {
            Some(owner) => {
                self.owned_changed(owner, 1);
                hub.push(
                    owner,
                    ServerFrame::Assigned {
                        interaction_id: interaction.id,
                        via: AssignedVia::Transfer,
                    },
                );
            }
            // Behind those already waiting there, as the store's
            // `enqueued_at` (now) has it for recovery.
            None => self.enqueue_with(
                interaction.queue,
                interaction.id,
                Origin::Transfer {
                    from: previous_owner,
                },
                Some((interaction.priority, Utc::now())),
            ),
        }
    }

    /// After the store closed an interaction: it leaves its queue (if it was
    /// waiting), its owner's slot frees, and the owner's tabs get `view`.
    pub fn closed(
        &self,
        hub: &AgentHub,
        interaction: &crate::store::Interaction,
        view: serde_json::Value,
    ) {
        self.withdraw(interaction.queue, interaction.id, RescindReason::Cancelled);
        if let Some(owner) = interaction.owner {
            self.owned_changed(owner, -1);
            hub.push(owner, ServerFrame::InteractionUpdated { interaction: view });
        }
    }

    /// A queue's live picture, or `None` when it has no actor here.
    pub async fn snapshot(&self, queue: QueueId) -> Option<QueueSnapshot> {
        let addr = self.queues.get(&queue).map(|q| q.clone())?;
        addr.send(Snapshot).await.ok()
    }

    /// Tell every queue that an agent's availability changed.
    pub fn agent_changed(&self, agent: AgentId, available: bool, capacity: u32) {
        {
            let mut rt = self.directory.entry(agent).or_insert(AgentRuntime {
                available: false,
                owned: 0,
                capacity,
                idle_since_ms: now_ms(),
            });
            if rt.available != available && available {
                rt.idle_since_ms = now_ms();
            }
            rt.available = available;
            rt.capacity = capacity;
        }
        for q in self.queues.iter() {
            q.value().do_send(AgentChanged { agent, available });
        }
    }

    pub fn offer_queue(&self, offer: OfferId) -> Option<Addr<QueueActor>> {
        self.offers.get(&offer).map(|a| a.clone())
    }
}

impl Default for Routing {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the epoch, ms precision, for idle clocks.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
