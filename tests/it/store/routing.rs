//! Contract: routing (issue #4, invariant 2): offers and their outcomes, the
//! accept that claims (exactly one winner, the others rescinded `taken`),
//! the waiting list, cancelling live offers at start, owned counts, the
//! sticky agent and round_robin's place.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mailroom::domain::{AgentId, InteractionId, QueueId};
use mailroom::domain::{ContactId, OfferId, OfferStatus, RescindReason};
use mailroom::store::{AcceptOutcome, OfferRow, ReopenOutcome, TransferOutcome, TransferTarget};

use super::*;

// ---- fixtures ------------------------------------------------------------------------

/// An offer's expiry, with more precision than the store keeps.
fn in_30s() -> DateTime<Utc> {
    Utc::now() + Duration::seconds(30) + Duration::nanoseconds(123_456)
}

/// Another open interaction like `like` (same account and queue).
async fn another(store: &Store, like: &Interaction, priority: i32) -> Interaction {
    store
        .create_interaction(NewInteraction {
            account: like.account,
            queue: like.queue,
            subject: format!("priority {priority}"),
            contact: like.contact,
            priority,
        })
        .await
        .expect("create interaction")
}

async fn offer(store: &Store, i: &Interaction, agents: &[AgentId]) -> Vec<OfferRow> {
    store
        .create_offers(i.id, i.queue, agents, in_30s())
        .await
        .expect("create offers")
}

async fn agents(store: &Store, names: &[&str]) -> Vec<AgentId> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        ids.push(agent(store, name).await.id);
    }
    ids
}

#[track_caller]
fn won(outcome: AcceptOutcome) -> (Interaction, Vec<OfferRow>) {
    match outcome {
        AcceptOutcome::Won {
            interaction,
            rescinded,
        } => (interaction, rescinded),
        AcceptOutcome::Gone => panic!("expected Won, got Gone"),
    }
}

/// Whether an offer is still live: deciding it succeeds only then. (Decides
/// it as a side effect, so only for the end of a test.)
async fn is_live(store: &Store, offer: OfferId) -> bool {
    store
        .decide_offer(
            offer,
            OfferStatus::Rescinded,
            Some(RescindReason::Cancelled),
        )
        .await
        .expect("decide")
        .is_some()
}

// ---- offers ---------------------------------------------------------------------------

pub(super) async fn create_offers_records_live_offers_once_per_agent(store: &Store) {
    let [alice, bob, carol, dave] = agents(store, &["alice", "bob", "carol", "dave"]).await[..]
    else {
        unreachable!()
    };
    let open = interaction(store).await;
    let before = now_ms();
    let expires_at = in_30s();
    let rows = store
        .create_offers(open.id, open.queue, &[bob, alice], expires_at)
        .await
        .unwrap();
    // In the order given.
    assert_eq!(
        rows.iter().map(|r| r.agent).collect::<Vec<_>>(),
        [bob, alice]
    );
    for row in &rows {
        assert_eq!(
            (row.interaction, row.queue, row.status, row.reason),
            (open.id, open.queue, OfferStatus::Offered, None)
        );
        assert_eq!(row.decided_at, None);
        assert!(row.offered_at >= before && row.offered_at <= Utc::now());
        // Stored at the store's precision, and read back as written.
        assert_eq!(
            row.expires_at,
            expires_at
                .duration_trunc(TimeDelta::milliseconds(1))
                .unwrap()
        );
    }
    assert!(rows[0].id < rows[1].id);

    // Agents who hold a live offer are skipped; a name listed twice gets one.
    let again = offer(store, &open, &[alice, carol, carol, bob]).await;
    assert_eq!(again.iter().map(|r| r.agent).collect::<Vec<_>>(), [carol]);
    assert!(offer(store, &open, &[alice, bob, carol]).await.is_empty());
    assert!(offer(store, &open, &[]).await.is_empty());

    // A decided offer is not live: the agent can be offered it again.
    store
        .decide_offer(rows[0].id, OfferStatus::Rejected, None)
        .await
        .unwrap()
        .expect("live");
    let renewed = offer(store, &open, &[bob]).await;
    assert_eq!(renewed.len(), 1);
    assert_ne!(renewed[0].id, rows[0].id);

    // One transaction: an unknown agent refuses the lot.
    assert!(matches!(
        store
            .create_offers(open.id, open.queue, &[dave, AgentId(999_999)], in_30s())
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(offer(store, &open, &[dave]).await.len(), 1);

    assert_not_found(
        store
            .create_offers(InteractionId(999_999), open.queue, &[alice], in_30s())
            .await,
        "interaction",
    );
}

/// No zombie offers: an interaction that is taken or closed gets none.
pub(super) async fn owned_or_closed_interactions_get_no_offers(store: &Store) {
    let [alice, bob] = agents(store, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    assert!(matches!(
        store.claim(open.id, alice, open.version).await.unwrap(),
        ClaimOutcome::Won(_)
    ));
    assert!(offer(store, &open, &[bob]).await.is_empty());

    let other = another(store, &open, 0).await;
    store
        .close_interaction(other.id, InteractionStatus::ClosedUnmanaged, None)
        .await
        .unwrap();
    assert!(offer(store, &other, &[bob]).await.is_empty());
}

pub(super) async fn decide_offer_decides_a_live_offer_once(store: &Store) {
    let [alice, bob, carol] = agents(store, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let rows = offer(store, &open, &[alice, bob, carol]).await;
    let before = now_ms();

    let rejected = store
        .decide_offer(rows[0].id, OfferStatus::Rejected, None)
        .await
        .unwrap()
        .expect("a live offer is decided");
    assert_eq!(
        (
            rejected.id,
            rejected.agent,
            rejected.status,
            rejected.reason
        ),
        (rows[0].id, alice, OfferStatus::Rejected, None)
    );
    let at = rejected.decided_at.expect("decided_at");
    assert!(at >= before && at <= Utc::now());
    assert_eq!(
        (rejected.offered_at, rejected.expires_at),
        (rows[0].offered_at, rows[0].expires_at)
    );
    // Repeats are harmless, whatever they ask for.
    for status in [
        OfferStatus::Rejected,
        OfferStatus::Expired,
        OfferStatus::Rescinded,
    ] {
        assert_eq!(
            store.decide_offer(rows[0].id, status, None).await.unwrap(),
            None
        );
    }

    let expired = store
        .decide_offer(
            rows[1].id,
            OfferStatus::Expired,
            Some(RescindReason::Timeout),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (expired.status, expired.reason),
        (OfferStatus::Expired, Some(RescindReason::Timeout))
    );
    let cancelled = store
        .decide_offer(
            rows[2].id,
            OfferStatus::Rescinded,
            Some(RescindReason::Cancelled),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cancelled.status, cancelled.reason),
        (OfferStatus::Rescinded, Some(RescindReason::Cancelled))
    );
    assert_eq!(
        store
            .decide_offer(OfferId(999_999), OfferStatus::Rejected, None)
            .await
            .unwrap(),
        None
    );

    // Accepting is the claim's business, and `offered` is no outcome.
    let live = offer(store, &open, &[alice]).await;
    for status in [OfferStatus::Accepted, OfferStatus::Offered] {
        assert_invalid(
            store.decide_offer(live[0].id, status, None).await,
            status.as_str(),
        );
    }
    assert!(is_live(store, live[0].id).await);
}

// ---- accept ---------------------------------------------------------------------------

pub(super) async fn accept_claims_and_rescinds_the_other_offers(store: &Store) {
    let [alice, bob, carol, dave] = agents(store, &["alice", "bob", "carol", "dave"]).await[..]
    else {
        unreachable!()
    };
    let open = interaction(store).await;
    let rows = offer(store, &open, &[alice, bob, carol, dave]).await;
    store
        .decide_offer(rows[3].id, OfferStatus::Rejected, None)
        .await
        .unwrap();

    // Only the offer's own agent may accept it; the offer stays live.
    assert_eq!(
        store.accept_offer(rows[0].id, bob).await.unwrap(),
        AcceptOutcome::Gone
    );
    // A decided offer cannot be accepted.
    assert_eq!(
        store.accept_offer(rows[3].id, dave).await.unwrap(),
        AcceptOutcome::Gone
    );
    assert_eq!(
        store.accept_offer(OfferId(999_999), alice).await.unwrap(),
        AcceptOutcome::Gone
    );

    let before = now_ms();
    let (interaction, rescinded) = won(store.accept_offer(rows[0].id, alice).await.unwrap());
    assert_eq!(interaction.owner, Some(alice));
    assert_eq!(interaction.first_agent, Some(alice));
    assert_eq!(interaction.version, open.version + 1);
    assert!(interaction.updated_at >= before);
    assert_eq!(store.interaction(open.id).await.unwrap(), interaction);
    // The live ones, in the order they were made; the rejected one stays rejected.
    assert_eq!(
        rescinded.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[1].id, rows[2].id]
    );
    for row in &rescinded {
        assert_eq!(
            (row.status, row.reason, row.interaction),
            (OfferStatus::Rescinded, Some(RescindReason::Taken), open.id)
        );
        let at = row.decided_at.expect("decided_at");
        assert!(at >= before);
    }

    // Everything after is gone: the winner again, the rescinded ones.
    for (offer, agent) in [(rows[0].id, alice), (rows[1].id, bob), (rows[2].id, carol)] {
        assert_eq!(
            store.accept_offer(offer, agent).await.unwrap(),
            AcceptOutcome::Gone
        );
    }
    for row in &rows {
        assert!(!is_live(store, row.id).await, "{row:?}");
    }
    assert_eq!(store.interaction(open.id).await.unwrap(), interaction);

    // A second interaction keeps first_agent through a later owner.
    let next = another(store, &open, 0).await;
    let offered = offer(store, &next, &[bob]).await;
    let (taken, rescinded) = won(store.accept_offer(offered[0].id, bob).await.unwrap());
    assert_eq!((taken.owner, taken.first_agent), (Some(bob), Some(bob)));
    assert!(rescinded.is_empty());
}

/// The claim decides, not the offer: an interaction taken (or closed) some
/// other way leaves its offers live, for the caller to rescind.
pub(super) async fn accept_of_a_taken_or_closed_interaction_is_gone(store: &Store) {
    let [alice, bob] = agents(store, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let rows = offer(store, &open, &[alice, bob]).await;
    assert!(matches!(
        store.claim(open.id, bob, open.version).await.unwrap(),
        ClaimOutcome::Won(_)
    ));
    assert_eq!(
        store.accept_offer(rows[0].id, alice).await.unwrap(),
        AcceptOutcome::Gone
    );
    assert_eq!(store.interaction(open.id).await.unwrap().owner, Some(bob));
    assert!(is_live(store, rows[0].id).await);

    let other = another(store, &open, 0).await;
    let rows = offer(store, &other, &[alice]).await;
    store
        .close_interaction(other.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_eq!(
        store.accept_offer(rows[0].id, alice).await.unwrap(),
        AcceptOutcome::Gone
    );
    let closed = store.interaction(other.id).await.unwrap();
    assert_eq!((closed.owner, closed.first_agent), (None, None));
    // Closing withdrew the offer itself (no zombie offer stays live).
    assert!(!is_live(store, rows[0].id).await);
}

/// Invariant 2 through offers: 50 agents hold live offers for one
/// interaction and accept at once, from 50 tasks on a multi-threaded
/// runtime. Two rounds, as for the claim: the first warms the Postgres pool,
/// so that in the second the accepts meet in the database.
pub(super) async fn fifty_concurrent_accepts_have_exactly_one_winner(store: &Store) {
    const AGENTS: usize = 50;
    let first = interaction(store).await;
    let second = another(store, &first, 0).await;
    let mut ids = Vec::with_capacity(AGENTS);
    for n in 0..AGENTS {
        ids.push(agent(store, &format!("agent{n:02}")).await.id);
    }
    for open in [first, second] {
        accept_race(store, &ids, &open).await;
    }
}

async fn accept_race(store: &Store, agents: &[AgentId], open: &Interaction) {
    let offers = offer(store, open, agents).await;
    assert_eq!(offers.len(), agents.len());
    let start = Arc::new(tokio::sync::Barrier::new(offers.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for row in &offers {
        let (store, start, offer, agent) = (store.clone(), Arc::clone(&start), row.id, row.agent);
        tasks.spawn(async move {
            start.wait().await;
            (agent, store.accept_offer(offer, agent).await)
        });
    }
    let mut winners = Vec::new();
    let mut gone = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("accept task") {
            (
                agent,
                Ok(AcceptOutcome::Won {
                    interaction,
                    rescinded,
                }),
            ) => winners.push((agent, interaction, rescinded)),
            (agent, Ok(AcceptOutcome::Gone)) => {
                gone.insert(agent);
            }
            (agent, Err(e)) => panic!("accept by {agent} failed: {e}"),
        }
    }

    let owners: Vec<AgentId> = winners.iter().map(|(agent, _, _)| *agent).collect();
    assert_eq!(owners.len(), 1, "exactly one winner, got {owners:?}");
    let (winner, interaction, rescinded) = &winners[0];
    let others: BTreeSet<AgentId> = agents.iter().copied().filter(|a| a != winner).collect();
    assert_eq!(gone, others, "every other accept is gone");
    // Every other offer was live when the winner committed (losers change
    // nothing), so the winner rescinded each of them, once.
    let told: Vec<AgentId> = rescinded.iter().map(|r| r.agent).collect();
    assert_eq!(told.len(), others.len(), "{told:?}");
    assert_eq!(told.into_iter().collect::<BTreeSet<_>>(), others);
    assert!(
        rescinded
            .iter()
            .all(|r| r.status == OfferStatus::Rescinded && r.reason == Some(RescindReason::Taken))
    );

    assert_eq!(interaction.owner, Some(*winner));
    assert_eq!(interaction.version, open.version + 1);
    let stored = store.interaction(open.id).await.unwrap();
    assert_eq!(stored.owner, Some(*winner));
    assert_eq!(stored.first_agent, Some(*winner));
    assert_eq!(stored.version, open.version + 1);
    for row in &offers {
        assert!(!is_live(store, row.id).await, "{row:?} is still live");
    }
}

// ---- recovery and what routing reads ----------------------------------------------------

pub(super) async fn waiting_interactions_come_by_priority_then_age(
    store: &Store,
    backdoor: &Backdoor,
) {
    let alice = agent(store, "alice").await.id;
    let a = interaction(store).await; // priority 0
    let b = another(store, &a, 5).await;
    let c = another(store, &a, 0).await;
    let d = another(store, &a, 5).await;
    let e = another(store, &a, -1).await;
    let owned = another(store, &a, 9).await;
    let closed = another(store, &a, 9).await;
    assert!(matches!(
        store.claim(owned.id, alice, owned.version).await.unwrap(),
        ClaimOutcome::Won(_)
    ));
    store
        .close_interaction(closed.id, InteractionStatus::ClosedUnmanaged, None)
        .await
        .unwrap();
    // Another queue's interaction is not this queue's business.
    store.upsert_queue(queue_spec("sales", &[])).await.unwrap();
    let sale = store
        .upsert_account(account_spec("SALE", "sales"))
        .await
        .unwrap();
    store
        .create_interaction(NewInteraction {
            account: sale.id,
            queue: sale.queue_id,
            subject: "elsewhere".into(),
            contact: None,
            priority: 9,
        })
        .await
        .unwrap();

    let ids = |w: Vec<mailroom::store::WaitingInteraction>| -> Vec<InteractionId> {
        w.into_iter().map(|w| w.id).collect()
    };
    let waiting = store.waiting_interactions(a.queue).await.unwrap();
    assert_eq!(waiting[0].priority, 5);
    assert_eq!(waiting[0].version, b.version);
    assert_eq!(waiting[0].enqueued_at, b.created_at);
    assert_eq!(waiting[0].contact, None);
    assert_eq!(ids(waiting), [b.id, d.id, a.id, c.id, e.id]);

    // Age is the time it (last) entered the queue, not its creation: `a`
    // re-enqueued later (as a transfer to the queue does) goes behind `c`.
    let later = if store.backend() == "sqlite" {
        "enqueued_at + 60000"
    } else {
        "enqueued_at + interval '1 minute'"
    };
    backdoor
        .exec(&format!(
            "UPDATE interactions SET enqueued_at = {later} WHERE id = {}",
            a.id
        ))
        .await;
    // Without an enqueue time, its creation counts.
    backdoor
        .exec(&format!(
            "UPDATE interactions SET enqueued_at = NULL WHERE id = {}",
            c.id
        ))
        .await;
    let waiting = store.waiting_interactions(a.queue).await.unwrap();
    assert_eq!(waiting[2].enqueued_at, c.created_at);
    assert_eq!(
        waiting[3].enqueued_at,
        a.created_at + Duration::milliseconds(60_000)
    );
    assert_eq!(ids(waiting), [b.id, d.id, c.id, a.id, e.id]);

    assert!(
        store
            .waiting_interactions(QueueId(999_999))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn cancel_live_offers_rescinds_every_live_offer(store: &Store) {
    let [alice, bob, carol] = agents(store, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    assert_eq!(store.cancel_live_offers().await.unwrap(), 0);
    let first = interaction(store).await;
    let second = another(store, &first, 0).await;
    let third = another(store, &first, 0).await;
    let one = offer(store, &first, &[alice, bob]).await;
    let two = offer(store, &second, &[alice, carol]).await;
    let three = offer(store, &third, &[bob]).await;
    store
        .decide_offer(one[0].id, OfferStatus::Rejected, None)
        .await
        .unwrap();
    won(store.accept_offer(three[0].id, bob).await.unwrap());

    assert_eq!(store.cancel_live_offers().await.unwrap(), 3);
    assert_eq!(store.cancel_live_offers().await.unwrap(), 0);
    for row in [&one[1], &two[0], &two[1]] {
        assert_eq!(
            store.accept_offer(row.id, row.agent).await.unwrap(),
            AcceptOutcome::Gone
        );
        assert!(!is_live(store, row.id).await);
    }
    // The interactions are untouched, and can be offered again.
    assert_eq!(store.interaction(first.id).await.unwrap(), first);
    assert_eq!(offer(store, &first, &[alice, bob]).await.len(), 2);
}

pub(super) async fn owned_open_counts_count_open_interactions_per_owner(store: &Store) {
    let [alice, bob, _carol] = agents(store, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    assert!(store.owned_open_counts().await.unwrap().is_empty());
    let first = interaction(store).await;
    let mut all = vec![first.clone()];
    for _ in 0..4 {
        all.push(another(store, &first, 0).await);
    }
    for (i, owner) in all.iter().zip([alice, alice, alice, bob]) {
        assert!(matches!(
            store.claim(i.id, owner, i.version).await.unwrap(),
            ClaimOutcome::Won(_)
        ));
    }
    store
        .close_interaction(all[2].id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_eq!(
        store.owned_open_counts().await.unwrap(),
        HashMap::from([(alice, 2), (bob, 1)])
    );
}

/// Sticky routing's memory: the owner, else the first agent, of the
/// contact's most recently updated other interaction that had one.
pub(super) async fn last_agent_of_contact_is_the_latest_owner(store: &Store, backdoor: &Backdoor) {
    let [alice, bob, carol] = agents(store, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    let account = serv(store).await;
    let (new, _, contact) = created(
        ingest(
            store,
            &account,
            &Mail::new("s1", "Hello again", "Me again").raw(),
            1,
        )
        .await,
    );
    let contact = contact.expect("a contact");
    let of = |i: &Interaction| NewInteraction {
        account: i.account,
        queue: i.queue,
        subject: "earlier".into(),
        contact: Some(contact),
        priority: 0,
    };
    // Nobody ever owned one of this contact's interactions.
    let unowned = store.create_interaction(of(&new)).await.unwrap();
    assert_eq!(
        store.last_agent_of_contact(contact, new.id).await.unwrap(),
        None
    );

    let one = store.create_interaction(of(&new)).await.unwrap();
    let rows = offer(store, &one, &[alice]).await;
    won(store.accept_offer(rows[0].id, alice).await.unwrap());
    assert_eq!(
        store.last_agent_of_contact(contact, new.id).await.unwrap(),
        Some(alice)
    );
    // Only other interactions count.
    assert_eq!(
        store.last_agent_of_contact(contact, one.id).await.unwrap(),
        None
    );

    let two = store.create_interaction(of(&new)).await.unwrap();
    let rows = offer(store, &two, &[bob]).await;
    let (two_taken, _) = won(store.accept_offer(rows[0].id, bob).await.unwrap());
    assert_eq!(
        store.last_agent_of_contact(contact, new.id).await.unwrap(),
        Some(bob)
    );
    assert_eq!(
        store.last_agent_of_contact(contact, two.id).await.unwrap(),
        Some(alice)
    );

    // The owner counts over the first agent (transferred to carol), and
    // without an owner (transferred back to the queue) the first agent does.
    backdoor
        .exec(&format!(
            "UPDATE interactions SET owner_id = {carol} WHERE id = {}; \
             UPDATE interactions SET owner_id = NULL WHERE id = {}",
            one.id, two.id
        ))
        .await;
    assert_eq!(
        store.last_agent_of_contact(contact, new.id).await.unwrap(),
        Some(bob)
    );
    assert_eq!(
        store.last_agent_of_contact(contact, two.id).await.unwrap(),
        Some(carol)
    );
    // A closed interaction still remembers its owner. (Closed on a later
    // millisecond than `two` was taken, so that it is the latest updated.)
    while now_ms() <= two_taken.updated_at {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store
        .close_interaction(one.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_eq!(
        store.last_agent_of_contact(contact, new.id).await.unwrap(),
        Some(carol)
    );

    // Another contact has no history; nor does an unknown one.
    assert_eq!(
        store
            .last_agent_of_contact(ContactId(999_999), unowned.id)
            .await
            .unwrap(),
        None
    );
}

/// round_robin's place lives in the queue's row: another handle on the same
/// database (a restart, another node) reads it back.
pub(super) async fn round_robin_place_survives_a_new_store_handle(store: &Store) {
    // Its own database of the same backend, to open twice.
    let (url, _db) = match store.backend() {
        "sqlite" => TestDb::sqlite_url(),
        _ => TestDb::postgres_url().await,
    };
    let first = Store::connect(&url).await.expect("connect");
    first.migrate().await.expect("migrate");
    let [alice, bob] = agents(&first, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let queue = first
        .upsert_queue(queue_spec("support", &["alice", "bob"]))
        .await
        .unwrap();
    assert_eq!(first.round_robin_last(queue.id).await.unwrap(), None);
    first.set_round_robin_last(queue.id, alice).await.unwrap();
    assert_eq!(first.round_robin_last(queue.id).await.unwrap(), Some(alice));
    first.set_round_robin_last(queue.id, bob).await.unwrap();
    drop(first);

    let second = Store::connect(&url).await.expect("connect again");
    assert_eq!(second.round_robin_last(queue.id).await.unwrap(), Some(bob));
    // The place is not a setting: the queue's settings are unchanged.
    assert_eq!(second.queue(queue.id).await.unwrap(), queue);

    assert_not_found(second.round_robin_last(QueueId(999_999)).await, "queue");
    assert_not_found(
        second.set_round_robin_last(QueueId(999_999), alice).await,
        "queue",
    );
    assert!(matches!(
        second
            .set_round_robin_last(queue.id, AgentId(999_999))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(second.round_robin_last(queue.id).await.unwrap(), Some(bob));
}

// ---- transfer ---------------------------------------------------------------------------

#[track_caller]
fn moved(outcome: TransferOutcome) -> (Interaction, Option<AgentId>, QueueId, Vec<OfferRow>) {
    match outcome {
        TransferOutcome::Moved {
            interaction,
            previous_owner,
            previous_queue,
            rescinded,
        } => (interaction, previous_owner, previous_queue, rescinded),
        other => panic!("expected Moved, got {other:?}"),
    }
}

pub(super) async fn transfer_to_a_queue_clears_the_owner_and_marks_unread(store: &Store) {
    let [alice] = agents(store, &["alice"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let other_queue = store
        .upsert_queue(queue_spec("billing", &[]))
        .await
        .expect("queue");
    let owned = match store.claim(open.id, alice, open.version).await.unwrap() {
        ClaimOutcome::Won(i) => i,
        lost => panic!("{lost:?}"),
    };
    let (after, previous_owner, previous_queue, rescinded) = moved(
        store
            .transfer(
                owned.id,
                owned.version,
                TransferTarget::Queue(other_queue.id),
            )
            .await
            .expect("transfer"),
    );
    assert_eq!(previous_owner, Some(alice));
    assert_eq!(previous_queue, open.queue);
    assert!(rescinded.is_empty());
    assert_eq!(after.owner, None);
    assert_eq!(after.queue, other_queue.id);
    assert!(after.unread);
    assert_eq!(after.first_agent, Some(alice), "first agent is history");
    assert!(after.version > owned.version);
    assert_eq!(store.interaction(open.id).await.unwrap(), after);
    // It waits in the new queue, not the old one.
    let waiting: Vec<_> = store
        .waiting_interactions(other_queue.id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(waiting, vec![open.id]);
    assert!(
        store
            .waiting_interactions(open.queue)
            .await
            .unwrap()
            .is_empty()
    );
    // The old queue can make no offer for it any more; the new one can.
    assert!(offer(store, &open, &[alice]).await.is_empty());
    assert_eq!(offer(store, &after, &[alice]).await.len(), 1);
}

pub(super) async fn transfer_to_an_agent_assigns_and_rescinds_live_offers(store: &Store) {
    let [alice, bob, carol] = agents(store, &["alice", "bob", "carol"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let live = offer(store, &open, &[alice, bob]).await;
    let (after, previous_owner, _, rescinded) = moved(
        store
            .transfer(open.id, open.version, TransferTarget::Agent(carol))
            .await
            .expect("transfer"),
    );
    assert_eq!(previous_owner, None);
    assert_eq!(after.owner, Some(carol));
    assert_eq!(after.first_agent, Some(carol));
    assert!(after.unread);
    assert_eq!(
        rescinded.iter().map(|r| r.id).collect::<Vec<_>>(),
        live.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert!(
        rescinded
            .iter()
            .all(|r| r.status == OfferStatus::Rescinded && r.reason == Some(RescindReason::Taken))
    );
    // A late accept of a rescinded offer finds it gone.
    assert_eq!(
        store.accept_offer(live[0].id, alice).await.unwrap(),
        AcceptOutcome::Gone
    );
    assert_eq!(store.interaction(open.id).await.unwrap().owner, Some(carol));
    // Transferring to the owner is refused.
    assert_invalid(
        store
            .transfer(after.id, after.version, TransferTarget::Agent(carol))
            .await,
        "already",
    );
}

pub(super) async fn transfer_needs_the_expected_version_and_an_open_interaction(store: &Store) {
    let [alice, bob] = agents(store, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let claimed = match store.claim(open.id, alice, open.version).await.unwrap() {
        ClaimOutcome::Won(i) => i,
        lost => panic!("{lost:?}"),
    };
    // Checked against the version before the claim: refused, unchanged.
    match store
        .transfer(open.id, open.version, TransferTarget::Agent(bob))
        .await
        .unwrap()
    {
        TransferOutcome::Changed(now) => assert_eq!(now, claimed),
        other => panic!("{other:?}"),
    }
    let closed = store
        .close_interaction(open.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    match store
        .transfer(open.id, closed.version, TransferTarget::Queue(open.queue))
        .await
        .unwrap()
    {
        TransferOutcome::Changed(now) => assert_eq!(now.status, InteractionStatus::Closed),
        other => panic!("{other:?}"),
    }
    assert_not_found(
        store
            .transfer(InteractionId(999_999), 1, TransferTarget::Queue(open.queue))
            .await,
        "interaction",
    );
    let fresh = another(store, &open, 0).await;
    assert_not_found(
        store
            .transfer(
                fresh.id,
                fresh.version,
                TransferTarget::Queue(QueueId(999_999)),
            )
            .await,
        "queue",
    );
    assert_not_found(
        store
            .transfer(
                fresh.id,
                fresh.version,
                TransferTarget::Agent(AgentId(999_999)),
            )
            .await,
        "agent",
    );
}

pub(super) async fn transfer_to_an_agent_respects_capacity(store: &Store) {
    let mut spec = agent_spec("solo");
    spec.capacity = 1;
    let solo = store.upsert_agent(spec).await.unwrap().id;
    let first = interaction(store).await;
    let second = another(store, &first, 0).await;
    moved(
        store
            .transfer(first.id, first.version, TransferTarget::Agent(solo))
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .transfer(second.id, second.version, TransferTarget::Agent(solo))
            .await
            .unwrap(),
        TransferOutcome::OverCapacity
    );
    assert_eq!(store.interaction(second.id).await.unwrap().owner, None);
    // Closing the first frees the slot.
    store
        .close_interaction(first.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    let (after, ..) = moved(
        store
            .transfer(second.id, second.version, TransferTarget::Agent(solo))
            .await
            .unwrap(),
    );
    assert_eq!(after.owner, Some(solo));
}

/// Ten transfers of ten interactions to one agent with three free slots, at
/// once: exactly three succeed.
pub(super) async fn concurrent_transfers_never_exceed_capacity(store: &Store) {
    let mut spec = agent_spec("trio");
    spec.capacity = 3;
    let trio = store.upsert_agent(spec).await.unwrap().id;
    let first = interaction(store).await;
    let mut all = vec![first.clone()];
    for _ in 0..9 {
        all.push(another(store, &first, 0).await);
    }
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = all
        .iter()
        .map(|i| {
            let store = store.clone();
            let (id, version) = (i.id, i.version);
            tokio::spawn(async move {
                store
                    .transfer(id, version, TransferTarget::Agent(trio))
                    .await
                    .expect("transfer")
            })
        })
        .collect();
    let mut moved_n = 0;
    for t in tasks {
        match t.await.unwrap() {
            TransferOutcome::Moved { .. } => moved_n += 1,
            TransferOutcome::OverCapacity => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(moved_n, 3);
    assert_eq!(
        store.owned_open_counts().await.unwrap().get(&trio),
        Some(&3)
    );
}

pub(super) async fn closing_rescinds_live_offers(store: &Store) {
    let [alice, bob] = agents(store, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    let live = offer(store, &open, &[alice, bob]).await;
    store
        .close_interaction(open.id, InteractionStatus::ClosedUnmanaged, None)
        .await
        .unwrap();
    for row in live {
        assert!(!is_live(store, row.id).await, "offer {} still live", row.id);
    }
}

// ---- reopen and dispositions ----------------------------------------------------------

pub(super) async fn reopen_to_the_queue_or_to_an_agent(store: &Store) {
    let [alice] = agents(store, &["alice"]).await[..] else {
        unreachable!()
    };
    let open = interaction(store).await;
    // Not closed: nothing to reopen.
    assert!(matches!(
        store.reopen(open.id, open.version, None).await.unwrap(),
        ReopenOutcome::Changed(_)
    ));
    let closed = store
        .close_interaction(
            open.id,
            InteractionStatus::Closed,
            Some(vec!["Done".into()]),
        )
        .await
        .unwrap();
    assert_eq!(closed.disposition, Some(vec!["Done".to_string()]));
    // A stale version changes nothing.
    assert!(matches!(
        store.reopen(open.id, open.version, None).await.unwrap(),
        ReopenOutcome::Changed(_)
    ));
    let ReopenOutcome::Reopened(back) =
        store.reopen(closed.id, closed.version, None).await.unwrap()
    else {
        panic!("expected Reopened")
    };
    assert_eq!(back.status, InteractionStatus::Open);
    assert_eq!(back.owner, None);
    assert!(back.reopened && back.unread);
    assert_eq!(back.closed_at, None);
    assert_eq!(back.disposition, None);
    assert_eq!(
        store
            .waiting_interactions(back.queue)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect::<Vec<_>>(),
        vec![back.id]
    );
    let again = store
        .close_interaction(back.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    let ReopenOutcome::Reopened(mine) = store
        .reopen(again.id, again.version, Some(alice))
        .await
        .unwrap()
    else {
        panic!("expected Reopened")
    };
    assert_eq!(mine.owner, Some(alice));
    assert_eq!(mine.first_agent, Some(alice));
}

pub(super) async fn reopen_to_an_agent_respects_capacity(store: &Store) {
    let mut spec = agent_spec("solo");
    spec.capacity = 1;
    let solo = store.upsert_agent(spec).await.unwrap().id;
    let busy = interaction(store).await;
    moved(
        store
            .transfer(busy.id, busy.version, TransferTarget::Agent(solo))
            .await
            .unwrap(),
    );
    let other = another(store, &busy, 0).await;
    let closed = store
        .close_interaction(other.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .reopen(closed.id, closed.version, Some(solo))
            .await
            .unwrap(),
        ReopenOutcome::OverCapacity
    );
    assert_eq!(
        store.interaction(closed.id).await.unwrap().status,
        InteractionStatus::Closed
    );
}

pub(super) async fn dispositions_form_a_tree_of_three_levels(store: &Store) {
    let sales = store.create_disposition("Sales", None).await.unwrap();
    assert_eq!((sales.level, sales.parent), (1, None));
    let lost = store
        .create_disposition(" Lost ", Some(sales.id))
        .await
        .unwrap();
    assert_eq!((lost.level, lost.name.as_str()), (2, "Lost"));
    let price = store
        .create_disposition("Price", Some(lost.id))
        .await
        .unwrap();
    assert_eq!(price.level, 3);
    assert_invalid(
        store.create_disposition("Deeper", Some(price.id)).await,
        "3 levels",
    );
    assert_invalid(store.create_disposition("  ", None).await, "1 to 100");
    assert_conflict(store.create_disposition("Sales", None).await, "");
    // The same name under another parent is fine.
    store.create_disposition("Lost", None).await.unwrap();
    assert_not_found(
        store
            .create_disposition("Orphan", Some(mailroom::domain::DispositionId(999_999)))
            .await,
        "parent disposition",
    );
    let names: Vec<(u8, String)> = store
        .list_dispositions()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.level, d.name))
        .collect();
    assert_eq!(
        names,
        [
            (1, "Lost".to_string()),
            (1, "Sales".to_string()),
            (2, "Lost".to_string()),
            (3, "Price".to_string())
        ]
    );
    // Deleting a node removes its subtree.
    store.delete_disposition(sales.id).await.unwrap();
    assert_eq!(store.list_dispositions().await.unwrap().len(), 1);
    assert_not_found(store.delete_disposition(sales.id).await, "disposition");
}
