//! Contract: queues (upsert, create, update, delete) and their members.

use super::*;

pub(super) async fn upsert_queue_replaces_settings_and_members(store: &Store) {
    for name in ["alice", "bob", "carol"] {
        agent(store, name).await;
    }
    let first = store
        .upsert_queue(queue_spec("support", &["bob", "alice", "bob"]))
        .await
        .unwrap();
    assert_eq!(first.name, "support");
    assert_eq!(first.strategy, Strategy::RingAll);
    assert_eq!(
        (
            first.offer_timeout_secs,
            first.sticky_secs,
            first.retry_backoff_secs
        ),
        (30, 10, 5)
    );
    assert_eq!(first.agents, ["alice", "bob"]);
    assert_eq!(store.queue(first.id).await.unwrap(), first);
    assert_eq!(store.queue_by_name("support").await.unwrap(), first);

    let second = store
        .upsert_queue(QueueSpec {
            strategy: Strategy::RoundRobin,
            offer_timeout_secs: 20,
            sticky_secs: 0,
            retry_backoff_secs: 2,
            max_simultaneous_offers: Some(3),
            auto_pause_after_missed: Some(2),
            disposition_required: true,
            ..queue_spec("support", &["carol"])
        })
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(second.strategy, Strategy::RoundRobin);
    assert_eq!(
        (
            second.offer_timeout_secs,
            second.sticky_secs,
            second.retry_backoff_secs
        ),
        (20, 0, 2)
    );
    assert_eq!(second.max_simultaneous_offers, Some(3));
    assert_eq!(second.auto_pause_after_missed, Some(2));
    assert!(second.disposition_required);
    assert_eq!(second.agents, ["carol"]);
    assert_eq!(store.queue(first.id).await.unwrap(), second);

    let emptied = store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    assert!(emptied.agents.is_empty());
    assert_eq!(emptied.max_simultaneous_offers, None);
}

pub(super) async fn queue_members_must_be_active_agents(store: &Store) {
    agent(store, "alice").await;
    let gone = agent(store, "gone").await;
    store.delete_agent(gone.id).await.unwrap();

    assert_invalid(
        store
            .upsert_queue(queue_spec("support", &["alice", "ghost"]))
            .await,
        "`ghost`",
    );
    // Nothing of the failed upsert remains.
    assert_not_found(store.queue_by_name("support").await, "queue");
    assert_invalid(
        store.create_queue(queue_spec("support", &["gone"])).await,
        "`gone`",
    );
    assert_not_found(store.queue_by_name("support").await, "queue");

    let queue = store
        .upsert_queue(queue_spec("support", &["alice"]))
        .await
        .unwrap();
    assert_invalid(
        store
            .update_queue(queue.id, queue_spec("support", &["ghost"]))
            .await,
        "`ghost`",
    );
    assert_eq!(store.queue(queue.id).await.unwrap(), queue);
    // Several unknown names: the first in sorted order is the one reported.
    assert_invalid(
        store
            .upsert_queue(queue_spec("support", &["zed", "bert"]))
            .await,
        "`bert`",
    );
}

pub(super) async fn create_queue_refuses_a_taken_name(store: &Store) {
    let queue = store.create_queue(queue_spec("sales", &[])).await.unwrap();
    assert_eq!(store.queue(queue.id).await.unwrap(), queue);
    assert_conflict(
        store.create_queue(queue_spec("sales", &[])).await,
        "`sales`",
    );
}

pub(super) async fn update_queue_renames_and_refuses_taken_names(store: &Store) {
    agent(store, "alice").await;
    let q1 = store.create_queue(queue_spec("q1", &[])).await.unwrap();
    store.create_queue(queue_spec("q2", &[])).await.unwrap();

    let renamed = store
        .update_queue(q1.id, queue_spec("first", &["alice"]))
        .await
        .unwrap();
    assert_eq!((renamed.id, renamed.name.as_str()), (q1.id, "first"));
    assert_eq!(renamed.agents, ["alice"]);
    assert_not_found(store.queue_by_name("q1").await, "queue");
    assert_eq!(store.queue_by_name("first").await.unwrap(), renamed);

    assert_conflict(
        store.update_queue(q1.id, queue_spec("q2", &[])).await,
        "`q2`",
    );
    assert_eq!(store.queue(q1.id).await.unwrap(), renamed);
    assert_not_found(
        store
            .update_queue(QueueId(999_999), queue_spec("x", &[]))
            .await,
        "queue",
    );
}

pub(super) async fn deleting_a_queue_in_use_is_a_conflict(store: &Store) {
    agent(store, "alice").await;
    let queue = store
        .upsert_queue(queue_spec("support", &["alice"]))
        .await
        .unwrap();
    let account = store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .unwrap();

    assert_conflict(store.delete_queue(queue.id).await, "SERV");
    assert_eq!(store.queue(queue.id).await.unwrap(), queue);

    store.delete_account(account.id).await.unwrap();
    store.delete_queue(queue.id).await.unwrap();
    assert_not_found(store.queue(queue.id).await, "queue");
    assert_not_found(store.queue_by_name("support").await, "queue");
    assert!(store.list_queues().await.unwrap().is_empty());
    assert_not_found(store.delete_queue(queue.id).await, "queue");
    assert_not_found(store.delete_queue(QueueId(999_999)).await, "queue");
    assert_not_found(
        store
            .update_queue(queue.id, queue_spec("support", &[]))
            .await,
        "queue",
    );
    // A deleted queue's name still belongs to it: create conflicts, upsert revives.
    assert_conflict(
        store.create_queue(queue_spec("support", &[])).await,
        "`support`",
    );
    let revived = store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .unwrap();
    assert_eq!(revived.id, queue.id);
    assert!(revived.agents.is_empty());
}

pub(super) async fn list_queues_orders_by_name_with_members(store: &Store) {
    agent(store, "alice").await;
    agent(store, "bob").await;
    store
        .upsert_queue(queue_spec("sales", &["bob"]))
        .await
        .unwrap();
    store
        .upsert_queue(queue_spec("Billing", &[]))
        .await
        .unwrap();
    store
        .upsert_queue(queue_spec("support", &["bob", "alice"]))
        .await
        .unwrap();
    let old = store
        .upsert_queue(queue_spec("old", &["alice"]))
        .await
        .unwrap();
    store.delete_queue(old.id).await.unwrap();

    let queues = store.list_queues().await.unwrap();
    let summary: Vec<(&str, Vec<&str>)> = queues
        .iter()
        .map(|q| {
            (
                q.name.as_str(),
                q.agents.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Billing", vec![]),
            ("sales", vec!["bob"]),
            ("support", vec!["alice", "bob"])
        ]
    );
    for queue in &queues {
        assert_eq!(&store.queue(queue.id).await.unwrap(), queue);
    }
}

pub(super) async fn queue_numbers_out_of_range_are_invalid(store: &Store) {
    let huge = QueueSpec {
        offer_timeout_secs: u32::MAX,
        ..queue_spec("support", &[])
    };
    assert_invalid(store.upsert_queue(huge.clone()).await, "offer_timeout_secs");
    assert_invalid(store.create_queue(huge).await, "offer_timeout_secs");
    let capped = QueueSpec {
        max_simultaneous_offers: Some(u32::MAX),
        ..queue_spec("support", &[])
    };
    assert_invalid(store.upsert_queue(capped).await, "max_simultaneous_offers");
    assert!(store.list_queues().await.unwrap().is_empty());
}
