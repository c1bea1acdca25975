//! Contract: interactions and the exactly-one-owner claim (invariant 2).

use std::sync::Arc;

use super::*;

pub(super) async fn interactions_are_created_open_and_unowned(store: &Store) {
    let before = now_ms();
    let created = interaction(store).await;
    assert_eq!(created.subject, "Where is my order?");
    assert_eq!(created.status, InteractionStatus::Open);
    assert_eq!(
        (created.owner, created.first_agent, created.contact),
        (None, None, None)
    );
    assert_eq!(created.substatus, None);
    assert_eq!(created.version, 1);
    assert_eq!(created.priority, 0);
    assert!(!created.unread);
    assert_eq!(created.closed_at, None);
    assert!(created.created_at >= before && created.created_at <= Utc::now());
    assert_eq!(store.interaction(created.id).await.unwrap(), created);
    assert_not_found(
        store.interaction(InteractionId(999_999)).await,
        "interaction",
    );

    let urgent = store
        .create_interaction(NewInteraction {
            priority: 9,
            subject: "Urgent".into(),
            ..new_like(&created)
        })
        .await
        .unwrap();
    assert!(urgent.id > created.id);
    assert_eq!(urgent.priority, 9);

    let orphan = NewInteraction {
        account: AccountId(999_999),
        ..new_like(&created)
    };
    assert!(matches!(
        store.create_interaction(orphan).await,
        Err(StoreError::Invalid(_))
    ));
}

fn new_like(i: &Interaction) -> NewInteraction {
    NewInteraction {
        account: i.account,
        queue: i.queue,
        subject: i.subject.clone(),
        contact: None,
        priority: i.priority,
    }
}

pub(super) async fn claim_makes_exactly_one_owner(store: &Store) {
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let open = interaction(store).await;

    let won = match store.claim(open.id, alice.id, open.version).await.unwrap() {
        ClaimOutcome::Won(i) => i,
        lost => panic!("the first claim must win: {lost:?}"),
    };
    assert_eq!(won.owner, Some(alice.id));
    assert_eq!(won.first_agent, Some(alice.id));
    assert_eq!(won.version, open.version + 1);
    assert!(won.updated_at >= open.updated_at);
    assert_eq!(store.interaction(open.id).await.unwrap(), won);

    // A stale version loses, and reports the interaction as it is now.
    assert_eq!(
        store.claim(open.id, bob.id, open.version).await.unwrap(),
        ClaimOutcome::Lost(won.clone())
    );
    // The current version loses too: it is owned.
    assert_eq!(
        store.claim(open.id, bob.id, won.version).await.unwrap(),
        ClaimOutcome::Lost(won.clone())
    );
    // Even for its owner: a claim is for unowned interactions only.
    assert_eq!(
        store.claim(open.id, alice.id, won.version).await.unwrap(),
        ClaimOutcome::Lost(won.clone())
    );
    assert_eq!(store.interaction(open.id).await.unwrap(), won);

    // An unowned interaction with another version: nothing changes.
    let other = store.create_interaction(new_like(&open)).await.unwrap();
    assert_eq!(
        store
            .claim(other.id, bob.id, other.version + 5)
            .await
            .unwrap(),
        ClaimOutcome::Lost(other.clone())
    );
    assert_not_found(
        store.claim(InteractionId(999_999), bob.id, 1).await,
        "interaction",
    );
}

/// Invariant 2 under contention: 50 tasks on a multi-threaded runtime, one
/// interaction, 50 agents, all released at once. Two rounds, on two
/// interactions: the first one also fills the Postgres pool and prepares the
/// statements on every connection, so that in the second the claims really
/// meet in the database instead of queueing behind connection set-up (with a
/// cold pool, a read-then-write claim was seen to pass this test).
pub(super) async fn fifty_concurrent_claims_have_exactly_one_winner(store: &Store) {
    const AGENTS: usize = 50;
    let first = interaction(store).await;
    let second = store.create_interaction(new_like(&first)).await.unwrap();
    let mut agents = Vec::with_capacity(AGENTS);
    for n in 0..AGENTS {
        agents.push(agent(store, &format!("agent{n:02}")).await.id);
    }
    for open in [first, second] {
        race_for(store, &agents, &open).await;
    }
}

pub(super) async fn race_for(store: &Store, agents: &[AgentId], open: &Interaction) {
    let start = Arc::new(tokio::sync::Barrier::new(agents.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for &agent in agents {
        let (store, start, id, version) =
            (store.clone(), Arc::clone(&start), open.id, open.version);
        tasks.spawn(async move {
            start.wait().await;
            (agent, store.claim(id, agent, version).await)
        });
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("claim task") {
            (agent, Ok(ClaimOutcome::Won(i))) => winners.push((agent, i)),
            (agent, Ok(ClaimOutcome::Lost(i))) => losers.push((agent, i)),
            (agent, Err(e)) => panic!("claim by {agent} failed: {e}"),
        }
    }

    let owners: Vec<AgentId> = winners.iter().map(|(agent, _)| *agent).collect();
    assert_eq!(owners.len(), 1, "exactly one winner, got {owners:?}");
    assert_eq!(losers.len(), agents.len() - 1);
    let (winner, won) = &winners[0];
    assert_eq!(won.owner, Some(*winner));
    assert_eq!(won.first_agent, Some(*winner));
    assert_eq!(won.version, open.version + 1);
    for (agent, seen) in &losers {
        assert_ne!(agent, winner);
        // Every loser lost to the winner, and sees it.
        assert_eq!(seen.owner, Some(*winner), "{agent} saw {seen:?}");
    }
    let stored = store.interaction(open.id).await.unwrap();
    assert_eq!(stored.owner, Some(*winner));
    assert_eq!(stored.version, open.version + 1);
}
