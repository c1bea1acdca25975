//! Contract: agents (upsert, create, patch, delete and revival, credentials)
//! and their sessions (lookup, expiry, revocation).

use super::*;

pub(super) async fn upsert_agent_inserts_then_updates_in_place(store: &Store) {
    let before = now_ms();
    let alice = agent(store, "alice").await;
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.name, "alice Example");
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.role, Role::Agent);
    assert_eq!(alice.capacity, 5);
    assert!(alice.created_at >= before && alice.created_at <= Utc::now());
    assert_eq!(store.agent(alice.id).await.unwrap(), alice);
    assert_eq!(store.agent_by_username("alice").await.unwrap(), alice);

    // A second upsert updates the same row, and keeps the hash when none is given.
    let changed = store
        .upsert_agent(AgentSpec {
            name: "Alice Doe".into(),
            email: None,
            role: Role::Supervisor,
            capacity: 7,
            password_hash: None,
            ..agent_spec("alice")
        })
        .await
        .unwrap();
    assert_eq!(changed.id, alice.id);
    assert_eq!(changed.created_at, alice.created_at);
    assert!(changed.updated_at >= alice.updated_at);
    assert_eq!(
        (
            changed.name.as_str(),
            changed.email.as_deref(),
            changed.role,
            changed.capacity
        ),
        ("Alice Doe", None, Role::Supervisor, 7)
    );
    let (_, hash) = store.agent_credentials("alice").await.unwrap();
    assert_eq!(hash, "$argon2id$v=19$hash-of-alice");

    let rehashed = AgentSpec {
        password_hash: Some("$argon2id$new".into()),
        ..agent_spec("alice")
    };
    store.upsert_agent(rehashed).await.unwrap();
    let (found, hash) = store.agent_credentials("alice").await.unwrap();
    assert_eq!(found.id, alice.id);
    assert_eq!(hash, "$argon2id$new");
    assert_eq!(store.list_agents().await.unwrap().len(), 1);
}

pub(super) async fn create_agent_refuses_a_taken_username(store: &Store) {
    let bob = store.create_agent(agent_spec("bob")).await.unwrap();
    assert_eq!(store.agent(bob.id).await.unwrap(), bob);
    assert_conflict(store.create_agent(agent_spec("bob")).await, "`bob`");
    // A deleted agent keeps its username: it can be revived, not reused.
    store.delete_agent(bob.id).await.unwrap();
    assert_conflict(store.create_agent(agent_spec("bob")).await, "`bob`");
}

pub(super) async fn update_agent_patches_only_the_given_fields(store: &Store) {
    let alice = agent(store, "alice").await;
    let renamed = store
        .update_agent(
            alice.id,
            AgentPatch {
                name: Some("Alice D.".into()),
                ..AgentPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Alice D.");
    assert_eq!(renamed.email, alice.email);
    assert_eq!(
        (renamed.role, renamed.capacity),
        (alice.role, alice.capacity)
    );

    let patched = store
        .update_agent(
            alice.id,
            AgentPatch {
                email: Some(None),
                role: Some(Role::Admin),
                capacity: Some(0),
                password_hash: Some("$argon2id$patched".into()),
                ..AgentPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.name, "Alice D.");
    assert_eq!(
        (patched.email, patched.role, patched.capacity),
        (None, Role::Admin, 0)
    );
    assert_eq!(
        store.agent_credentials("alice").await.unwrap().1,
        "$argon2id$patched"
    );

    let emailed = store
        .update_agent(
            alice.id,
            AgentPatch {
                email: Some(Some("a@example.test".into())),
                ..AgentPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(emailed.email.as_deref(), Some("a@example.test"));
    assert_eq!(store.agent(alice.id).await.unwrap(), emailed);

    assert_not_found(
        store
            .update_agent(AgentId(999_999), AgentPatch::default())
            .await,
        "agent",
    );
    store.delete_agent(alice.id).await.unwrap();
    assert_not_found(
        store.update_agent(alice.id, AgentPatch::default()).await,
        "agent",
    );
}

pub(super) async fn agent_numbers_out_of_range_are_invalid(store: &Store) {
    let huge = AgentSpec {
        capacity: u32::MAX,
        ..agent_spec("alice")
    };
    assert_invalid(store.upsert_agent(huge.clone()).await, "capacity");
    assert_invalid(store.create_agent(huge).await, "capacity");
    let alice = agent(store, "alice").await;
    let patch = AgentPatch {
        capacity: Some(u32::MAX),
        ..AgentPatch::default()
    };
    assert_invalid(store.update_agent(alice.id, patch).await, "capacity");
    assert_eq!(store.agent(alice.id).await.unwrap().capacity, 5);
}

pub(super) async fn list_agents_orders_by_username_bytewise(store: &Store) {
    for name in ["carol", "bob", "_bot", "Zed", "alice"] {
        agent(store, name).await;
    }
    let carol = store.agent_by_username("carol").await.unwrap();
    store.delete_agent(carol.id).await.unwrap();
    // Byte order, the same on both backends: uppercase < '_' < lowercase.
    assert_eq!(
        usernames(&store.list_agents().await.unwrap()),
        ["Zed", "_bot", "alice", "bob"]
    );
}

pub(super) async fn deleting_an_agent_revokes_sessions_and_leaves_queues(store: &Store) {
    let alice = agent(store, "alice").await;
    agent(store, "bob").await;
    let queue = store
        .upsert_queue(queue_spec("support", &["alice", "bob"]))
        .await
        .unwrap();
    let expires = Utc::now() + Duration::hours(1);
    store
        .create_session(b"alice-token-hash", alice.id, expires)
        .await
        .unwrap();

    store.delete_agent(alice.id).await.unwrap();

    assert_not_found(
        store.session(b"alice-token-hash", Utc::now()).await,
        "session",
    );
    assert_eq!(store.queue(queue.id).await.unwrap().agents, ["bob"]);
    assert_not_found(store.agent(alice.id).await, "agent");
    assert_not_found(store.agent_by_username("alice").await, "agent");
    assert_not_found(store.agent_credentials("alice").await, "agent");
    assert_eq!(usernames(&store.list_agents().await.unwrap()), ["bob"]);
    assert_not_found(store.delete_agent(alice.id).await, "agent");
    assert_not_found(store.delete_agent(AgentId(999_999)).await, "agent");

    // An upsert of the same username brings the agent back, with the same id,
    // but neither the old sessions nor the old queues.
    let revived = agent(store, "alice").await;
    assert_eq!(revived.id, alice.id);
    assert_eq!(store.agent(alice.id).await.unwrap(), revived);
    assert_not_found(
        store.session(b"alice-token-hash", Utc::now()).await,
        "session",
    );
    assert_eq!(store.queue(queue.id).await.unwrap().agents, ["bob"]);
    store
        .create_session(b"alice-token-2", alice.id, expires)
        .await
        .unwrap();
    assert_eq!(
        store
            .session(b"alice-token-2", Utc::now())
            .await
            .unwrap()
            .agent,
        revived
    );
}

pub(super) async fn agent_credentials_need_a_password(store: &Store) {
    store
        .upsert_agent(AgentSpec {
            password_hash: None,
            ..agent_spec("nopw")
        })
        .await
        .unwrap();
    assert!(store.agent_by_username("nopw").await.is_ok());
    assert_not_found(store.agent_credentials("nopw").await, "agent");
    assert_not_found(store.agent_credentials("nobody").await, "agent");
    let (found, hash) = {
        agent(store, "alice").await;
        store.agent_credentials("alice").await.unwrap()
    };
    assert_eq!(found.username, "alice");
    assert_eq!(hash, "$argon2id$v=19$hash-of-alice");
}

// ---- sessions -------------------------------------------------------------------

pub(super) async fn sessions_live_until_expiry_or_revocation(store: &Store) {
    let alice = agent(store, "alice").await;
    let expires = Utc::now() + Duration::hours(8);
    store
        .create_session(b"hash-1", alice.id, expires)
        .await
        .unwrap();

    let live = store.session(b"hash-1", Utc::now()).await.unwrap();
    assert_eq!(live.agent, alice);
    let expires_ms = expires.duration_trunc(TimeDelta::milliseconds(1)).unwrap();
    assert_eq!(live.expires_at, expires_ms);
    // Live until the last millisecond before `expires_at`, gone from then on.
    assert!(
        store
            .session(b"hash-1", expires_ms - Duration::milliseconds(1))
            .await
            .is_ok()
    );
    assert_not_found(store.session(b"hash-1", expires_ms).await, "session");
    assert_not_found(store.session(b"unknown", Utc::now()).await, "session");

    store.revoke_session(b"hash-1").await.unwrap();
    assert_not_found(store.session(b"hash-1", Utc::now()).await, "session");
    store
        .revoke_session(b"hash-1")
        .await
        .expect("revoking twice is fine");
    store
        .revoke_session(b"never-issued")
        .await
        .expect("revoking an unknown token is fine");
}

pub(super) async fn revoke_agent_sessions_counts_live_sessions(store: &Store) {
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let later = Utc::now() + Duration::hours(1);
    store
        .create_session(b"alice-1", alice.id, later)
        .await
        .unwrap();
    store
        .create_session(b"alice-2", alice.id, later)
        .await
        .unwrap();
    store
        .create_session(b"alice-old", alice.id, Utc::now() - Duration::hours(1))
        .await
        .unwrap();
    store.create_session(b"bob-1", bob.id, later).await.unwrap();

    assert_eq!(store.revoke_agent_sessions(alice.id).await.unwrap(), 2);
    assert_not_found(store.session(b"alice-1", Utc::now()).await, "session");
    assert_not_found(store.session(b"alice-2", Utc::now()).await, "session");
    assert_eq!(
        store.session(b"bob-1", Utc::now()).await.unwrap().agent,
        bob
    );
    assert_eq!(store.revoke_agent_sessions(alice.id).await.unwrap(), 0);
}

pub(super) async fn sessions_need_an_active_agent(store: &Store) {
    let later = Utc::now() + Duration::hours(1);
    assert_not_found(
        store.create_session(b"x", AgentId(999_999), later).await,
        "agent",
    );
    let alice = agent(store, "alice").await;
    store.delete_agent(alice.id).await.unwrap();
    assert_not_found(store.create_session(b"x", alice.id, later).await, "agent");
    // The same token hash twice is a conflict, never a second session.
    let bob = agent(store, "bob").await;
    store.create_session(b"dup", bob.id, later).await.unwrap();
    assert!(matches!(
        store.create_session(b"dup", bob.id, later).await,
        Err(StoreError::Conflict(_))
    ));
}
