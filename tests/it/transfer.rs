//! Transfer, close and the supervisor's views over HTTP, with the agents'
//! WebSockets hearing of each change; and the waiting list's order when an
//! agent has one free slot at a time. Every test runs on both stores.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{Backend, Options, TestApp, Ws, next_frame, send_frame, spawn_app};
use crate::support::on_both_stores;

/// Two queues: `support` (alice, bob, sup; ring_all) and `billing` (bob,
/// carol). carol has capacity 1. Sticky routing is off.
fn config() -> String {
    "[[agents]]\nusername = \"carol\"\npassword = \"pw-carol\"\nname = \"Carol\"\nrole = \"agent\"\ncapacity = 1\n\
     [[queues]]\nname = \"support\"\nstrategy = \"ring_all\"\noffer_timeout_secs = 30\nsticky_secs = 0\nretry_backoff_secs = 1\nagents = [\"alice\", \"bob\", \"sup\"]\n\
     [[queues]]\nname = \"billing\"\nstrategy = \"ring_all\"\noffer_timeout_secs = 30\nsticky_secs = 0\nretry_backoff_secs = 1\nagents = [\"bob\", \"carol\"]\n\
     [[accounts]]\nkey = \"SERV\"\naddress = \"support@example.test\"\nqueue = \"support\"\n\
     imap = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
     smtp = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n"
        .to_string()
}

async fn app(backend: Backend) -> TestApp {
    spawn_app(Options {
        backend,
        extra: config(),
        ..Options::default()
    })
    .await
}

/// A new open interaction in `support`, handed to its queue as ingest does.
async fn new_interaction(app: &TestApp, subject: &str) -> String {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let i = store
        .create_interaction(mailroom::store::NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: subject.into(),
            contact: None,
            priority: 0,
        })
        .await
        .unwrap();
    app.app.state.hub.routing().enqueue(account.queue_id, i.id);
    i.id.to_string()
}

async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    loop {
        let f = next_frame(ws).await;
        if types.contains(&f["type"].as_str().unwrap_or_default()) {
            return f;
        }
    }
}

/// No frame of these types within `wait` (only for what must NOT happen).
async fn none_of(ws: &mut Ws, types: &[&str], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                assert!(
                    !types.contains(&f["type"].as_str().unwrap_or_default()),
                    "unexpected {f}"
                );
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

async fn connect(app: &TestApp, user: &str) -> (String, Ws) {
    let token = app.login(user).await;
    let ws = app.ws(&token).await.0;
    (token, ws)
}

/// Accept the next offer on `ws` and wait until it is assigned; returns the
/// interaction id.
async fn take_next_offer(ws: &mut Ws) -> String {
    let offer = next_of(ws, &["offer"]).await;
    send_frame(ws, json!({"type": "accept", "offer_id": offer["offer_id"]})).await;
    let assigned = next_of(ws, &["assigned"]).await;
    assert_eq!(assigned["interaction_id"], offer["interaction_id"]);
    assert_eq!(assigned["via"], "accept");
    offer["interaction_id"].as_str().unwrap().to_string()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app.send_json(Method::POST, token, path, body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let res = app.get(token, path).await;
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

/// Until the supervisor sees `user` with `status` (presence is reported
/// asynchronously by the agent's actor).
async fn wait_available(app: &TestApp, sup: &str, user: &str) {
    app.wait_presence(sup, user, "online").await;
    // Availability reaches routing's directory right after presence.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let targets = get_json(app, sup, "/api/v1/transfer-targets").await;
        if targets["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["username"] == user)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} never became a transfer target"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tests -------------------------------------------------------------------------

/// alice owns it and transfers it to `billing`: she is told it changed, it
/// is unowned and unread, and billing's agents get the offer; transferring
/// it back to `support` offers it to support's agents but not to alice,
/// who just passed it on.
async fn transfer_to_a_queue(backend: Backend) {
    let app = app(backend).await;
    let (alice_t, mut alice) = connect(&app, "alice").await;
    let id = new_interaction(&app, "Refund please").await;
    assert_eq!(take_next_offer(&mut alice).await, id);
    let (_, mut carol) = connect(&app, "carol").await;

    let (status, view) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{id}/transfer"),
        json!({"queue": "billing"}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["id"], id);
    assert_eq!(view["queue"], "billing");
    assert_eq!(view["owner"], Value::Null);
    assert_eq!(view["first_agent"], "alice");
    assert_eq!(view["unread"], true);
    assert_eq!(view["status"], "open");
    let updated = next_of(&mut alice, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["id"], id);
    assert_eq!(updated["interaction"]["owner"], Value::Null);
    let offer = next_of(&mut carol, &["offer"]).await;
    assert_eq!(offer["interaction_id"], id);
    assert_eq!(offer["queue"], "billing");

    // A supervisor moves it back to support: carol's offer is withdrawn, and
    // support's agents get it (alice too: she did not pass it on this time).
    let sup_t = app.login("sup").await;
    let (status, view) = post(
        &app,
        &sup_t,
        &format!("/api/v1/interactions/{id}/transfer"),
        json!({"queue": "support"}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    let rescinded = next_of(&mut carol, &["offer_rescinded"]).await;
    assert_eq!(rescinded["offer_id"], offer["offer_id"]);
    assert_eq!(rescinded["reason"], "cancelled");
    let again = next_of(&mut alice, &["offer"]).await;
    assert_eq!(again["interaction_id"], id);
    assert_eq!(again["queue"], "support");
    // carol's late accept of the withdrawn offer is refused.
    send_frame(
        &mut carol,
        json!({"type": "accept", "offer_id": offer["offer_id"], "req_id": 9}),
    )
    .await;
    let answer = next_of(&mut carol, &["ok", "error"]).await;
    assert_eq!(answer["code"], "offer_gone", "{answer}");

    // alice takes it, then passes it on to support itself: bob gets it,
    // alice does not (she is left out of the first round).
    send_frame(
        &mut alice,
        json!({"type": "accept", "offer_id": again["offer_id"]}),
    )
    .await;
    next_of(&mut alice, &["assigned"]).await;
    let (_, mut bob) = connect(&app, "bob").await;
    let (status, _) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{id}/transfer"),
        json!({"queue": "support"}),
    )
    .await;
    assert_eq!(status, 200);
    let to_bob = next_of(&mut bob, &["offer"]).await;
    assert_eq!(to_bob["interaction_id"], id);
    none_of(&mut alice, &["offer"], Duration::from_millis(800)).await;
}

/// To an agent: the target must be online, not paused and under capacity;
/// they get `assigned{transfer}` and the old owner `interaction_updated`.
async fn transfer_to_an_agent(backend: Backend) {
    let app = app(backend).await;
    let sup_t = app.login("sup").await;
    let (alice_t, mut alice) = connect(&app, "alice").await;
    let first = new_interaction(&app, "First").await;
    assert_eq!(take_next_offer(&mut alice).await, first);
    let path = format!("/api/v1/interactions/{first}/transfer");

    // carol is offline: refused, nothing changes.
    let (status, body) = post(&app, &alice_t, &path, json!({"agent": "carol"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_available");

    let (carol_t, mut carol) = connect(&app, "carol").await;
    wait_available(&app, &sup_t, "carol").await;
    // Targets: carol (online, 0 of 1), not alice herself.
    let targets = get_json(
        &app,
        &alice_t,
        &format!("/api/v1/transfer-targets?interaction={first}"),
    )
    .await;
    let names: Vec<&str> = targets["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"carol"), "{targets}");
    assert!(!names.contains(&"alice"), "{targets}");
    let queues: Vec<&str> = targets["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["billing", "support"]);

    // bob may not transfer alice's interaction.
    let bob_t = app.login("bob").await;
    let (status, _) = post(&app, &bob_t, &path, json!({"agent": "carol"})).await;
    assert_eq!(status, 403);
    // Neither or both targets: 400; unknown names: 404.
    let (status, _) = post(&app, &alice_t, &path, json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &app,
        &alice_t,
        &path,
        json!({"agent": "carol", "queue": "support"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(&app, &alice_t, &path, json!({"agent": "nobody"})).await;
    assert_eq!(status, 404);
    let (status, _) = post(&app, &alice_t, &path, json!({"queue": "nowhere"})).await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        &alice_t,
        "/api/v1/interactions/999999/transfer",
        json!({"agent": "carol"}),
    )
    .await;
    assert_eq!(status, 404);

    let (status, view) = post(&app, &alice_t, &path, json!({"agent": "carol"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["owner"], "carol");
    let assigned = next_of(&mut carol, &["assigned"]).await;
    assert_eq!(assigned["interaction_id"], first);
    assert_eq!(assigned["via"], "transfer");
    let updated = next_of(&mut alice, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["owner"], "carol");
    let stored = app
        .app
        .state
        .store
        .interaction(
            first
                .parse::<i64>()
                .map(mailroom::domain::InteractionId)
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(stored.unread);

    // carol is now full (capacity 1): a second transfer to her is refused,
    // and she is no longer a target.
    let second = new_interaction(&app, "Second").await;
    assert_eq!(take_next_offer(&mut alice).await, second);
    let (status, body) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{second}/transfer"),
        json!({"agent": "carol"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "over_capacity");
    let targets = get_json(&app, &alice_t, "/api/v1/transfer-targets").await;
    assert!(
        !targets["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["username"] == "carol"),
        "{targets}"
    );

    // A paused agent is not a target either.
    send_frame(
        &mut carol,
        json!({"type": "set_presence", "status": "paused", "reason": "lunch"}),
    )
    .await;
    app.wait_presence(&sup_t, "carol", "paused").await;
    let (_, mut bob) = connect(&app, "bob").await;
    wait_available(&app, &sup_t, "bob").await;
    send_frame(
        &mut bob,
        json!({"type": "set_presence", "status": "paused"}),
    )
    .await;
    app.wait_presence(&sup_t, "bob", "paused").await;
    let (status, body) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{second}/transfer"),
        json!({"agent": "bob"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_available");
    drop(carol_t);
}

/// Closing frees the owner's slot at once: carol (capacity 1) gets the next
/// offer of billing only after she closes what she owns.
async fn close_frees_capacity(backend: Backend) {
    let app = app(backend).await;
    let (carol_t, mut carol) = connect(&app, "carol").await;
    let sup_t = app.login("sup").await;
    wait_available(&app, &sup_t, "carol").await;
    let store = &app.app.state.store;
    let billing = store.queue_by_name("billing").await.unwrap();
    let account = store.account_by_key("SERV").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..2 {
        let i = store
            .create_interaction(mailroom::store::NewInteraction {
                account: account.id,
                queue: billing.id,
                subject: format!("billing {n}"),
                contact: None,
                priority: 0,
            })
            .await
            .unwrap();
        app.app.state.hub.routing().enqueue(billing.id, i.id);
        ids.push(i.id.to_string());
    }
    // Both were enqueued at once; whichever is offered first, the other
    // waits while carol is full.
    let first = take_next_offer(&mut carol).await;
    let other = if first == ids[0] { &ids[1] } else { &ids[0] };
    none_of(&mut carol, &["offer"], Duration::from_millis(1000)).await;

    // Not hers to close: bob (an agent who does not own it) gets 403.
    let bob_t = app.login("bob").await;
    let (status, _) = post(
        &app,
        &bob_t,
        &format!("/api/v1/interactions/{first}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    let admin_t = app.login("admin").await;
    let (status, _) = post(
        &app,
        &admin_t,
        "/api/v1/dispositions",
        json!({"name": "Resolved"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, view) = post(
        &app,
        &carol_t,
        &format!("/api/v1/interactions/{first}/close"),
        json!({"disposition": ["Resolved"]}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "closed");
    assert!(view["closed_at"].is_string());
    let offer = next_of(&mut carol, &["offer"]).await;
    assert_eq!(&offer["interaction_id"], other);
    // Closing twice: 409.
    let (status, _) = post(
        &app,
        &carol_t,
        &format!("/api/v1/interactions/{first}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
}

/// Queue status and agent status as a supervisor sees them; agents may not.
async fn supervisor_views(backend: Backend) {
    let app = app(backend).await;
    let sup_t = app.login("sup").await;
    let (alice_t, mut alice) = connect(&app, "alice").await;
    let (_, mut carol) = connect(&app, "carol").await;
    wait_available(&app, &sup_t, "alice").await;
    wait_available(&app, &sup_t, "carol").await;
    let res = app.get(&alice_t, "/api/v1/supervisor/queues").await;
    assert_eq!(res.status(), 403);
    let res = app.get(&alice_t, "/api/v1/supervisor/agents").await;
    assert_eq!(res.status(), 403);

    // One interaction offered (to alice; sup is offline), one owned by carol.
    let id = new_interaction(&app, "Offered").await;
    next_of(&mut alice, &["offer"]).await;
    let store = &app.app.state.store;
    let billing = store.queue_by_name("billing").await.unwrap();
    let account = store.account_by_key("SERV").await.unwrap();
    let b = store
        .create_interaction(mailroom::store::NewInteraction {
            account: account.id,
            queue: billing.id,
            subject: "billing".into(),
            contact: None,
            priority: 0,
        })
        .await
        .unwrap();
    app.app.state.hub.routing().enqueue(billing.id, b.id);
    take_next_offer(&mut carol).await;

    let queues = get_json(&app, &sup_t, "/api/v1/supervisor/queues").await;
    let support = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "support")
        .unwrap();
    assert_eq!(support["offered"], 1, "{support}");
    assert_eq!(support["waiting"], 0, "{support}");
    assert_eq!(support["agents"]["members"], 3);
    assert_eq!(support["agents"]["online"], 1, "alice: {support}");
    assert_eq!(support["agents"]["offline"], 2, "bob and sup: {support}");
    let billing_status = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "billing")
        .unwrap();
    assert_eq!(
        billing_status["agents"]["full"], 1,
        "carol: {billing_status}"
    );
    assert_eq!(billing_status["waiting"], 0);

    let agents = get_json(&app, &sup_t, "/api/v1/supervisor/agents").await;
    let find = |u: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"]["username"] == u)
            .cloned()
            .unwrap()
    };
    let carol_row = find("carol");
    assert_eq!(carol_row["owned"], 1);
    assert_eq!(carol_row["capacity"], 1);
    assert_eq!(carol_row["presence"]["status"], "online");
    assert_eq!(carol_row["queues"], json!(["billing"]));
    assert!(carol_row["idle_secs"].as_f64().unwrap() >= 0.0);
    let bob_row = find("bob");
    assert_eq!(bob_row["presence"]["status"], "offline");
    assert_eq!(bob_row["idle_secs"], Value::Null);
    assert_eq!(bob_row["queues"], json!(["billing", "support"]));
    let _ = id;
}

/// A supervisor force-pauses alice: her offer is cancelled and passed on,
/// she hears `presence`, and stays paused until resumed. Logout closes her
/// sockets (4001) and revokes her tokens.
async fn force_pause_resume_and_logout(backend: Backend) {
    let app = app(backend).await;
    let sup_t = app.login("sup").await;
    let (alice_t, mut alice) = connect(&app, "alice").await;
    wait_available(&app, &sup_t, "alice").await;
    let id = new_interaction(&app, "Pause me").await;
    let offer = next_of(&mut alice, &["offer"]).await;
    assert_eq!(offer["interaction_id"], id);
    let alice_id = get_json(&app, &alice_t, "/api/v1/me").await["id"].clone();
    let alice_id = alice_id.as_str().unwrap().to_string();

    // Agents may not pause others.
    let bob_t = app.login("bob").await;
    let (status, _) = post(
        &app,
        &bob_t,
        &format!("/api/v1/agents/{alice_id}/pause"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    let (status, presence) = post(
        &app,
        &sup_t,
        &format!("/api/v1/agents/{alice_id}/pause"),
        json!({"reason": "coaching"}),
    )
    .await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(presence["status"], "paused");
    assert_eq!(presence["reason"], "coaching");
    let frame = next_of(&mut alice, &["presence", "offer_rescinded"]).await;
    let (p, r) = if frame["type"] == "presence" {
        (frame, next_of(&mut alice, &["offer_rescinded"]).await)
    } else {
        (next_of(&mut alice, &["presence"]).await, frame)
    };
    assert_eq!(p["status"], "paused");
    assert_eq!(p["reason"], "coaching");
    assert_eq!(r["offer_id"], offer["offer_id"]);
    assert_eq!(r["reason"], "cancelled");
    // bob connects and gets the interaction alice no longer holds.
    let (_, mut bob) = connect(&app, "bob").await;
    assert_eq!(next_of(&mut bob, &["offer"]).await["interaction_id"], id);

    let (status, presence) = post(
        &app,
        &sup_t,
        &format!("/api/v1/agents/{alice_id}/resume"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(presence["status"], "online");
    assert_eq!(next_of(&mut alice, &["presence"]).await["status"], "online");

    // An unknown agent: 404.
    let (status, _) = post(&app, &sup_t, "/api/v1/agents/999999/pause", json!({})).await;
    assert_eq!(status, 404);
    // A supervisor may not log out an admin.
    let admin_id = {
        let admin_t = app.login("admin").await;
        get_json(&app, &admin_t, "/api/v1/me").await["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (status, _) = post(
        &app,
        &sup_t,
        &format!("/api/v1/agents/{admin_id}/logout"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    let (status, body) = post(
        &app,
        &sup_t,
        &format!("/api/v1/agents/{alice_id}/logout"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["sessions"].as_u64().unwrap() >= 1);
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match alice.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed after logout");
    assert_eq!(code, Some(4001));
    assert_eq!(app.get(&alice_t, "/api/v1/me").await.status(), 401);
}

/// Five interactions wait in billing (one of them with priority 5) while
/// nobody is connected; after a restart, carol (capacity 1) gets them one at
/// a time as she closes each: the priority one first, then oldest first.
async fn the_waiting_list_is_served_by_priority_then_age(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let billing = store.queue_by_name("billing").await.unwrap();
    let account = store.account_by_key("SERV").await.unwrap();
    let mut ids = Vec::new();
    for (n, priority) in [0, 0, 5, 0, 0].into_iter().enumerate() {
        let i = store
            .create_interaction(mailroom::store::NewInteraction {
                account: account.id,
                queue: billing.id,
                subject: format!("billing {n}"),
                contact: None,
                priority,
            })
            .await
            .unwrap();
        ids.push(i.id.to_string());
    }
    let expected = [&ids[2], &ids[0], &ids[1], &ids[3], &ids[4]];
    let app = app.restart().await;
    let (carol_t, mut carol) = connect(&app, "carol").await;
    for want in expected {
        let got = take_next_offer(&mut carol).await;
        assert_eq!(&got, want, "order {expected:?}");
        none_of(&mut carol, &["offer"], Duration::from_millis(300)).await;
        let (status, _) = post(
            &app,
            &carol_t,
            &format!("/api/v1/interactions/{got}/close"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200);
    }
}

/// Ten new interactions reach billing together while carol (capacity 1)
/// is free: she gets them in their order, though what each offer shows is
/// read concurrently and those reads may finish in any order.
async fn interactions_arriving_together_are_offered_in_order(backend: Backend) {
    let app = app(backend).await;
    let sup_t = app.login("sup").await;
    let (carol_t, mut carol) = connect(&app, "carol").await;
    wait_available(&app, &sup_t, "carol").await;
    let store = app.app.state.store.clone();
    let billing = store.queue_by_name("billing").await.unwrap();
    let account = store.account_by_key("SERV").await.unwrap();
    let mut created = Vec::new();
    for n in 0..10 {
        created.push(
            store
                .create_interaction(mailroom::store::NewInteraction {
                    account: account.id,
                    queue: billing.id,
                    subject: format!("together {n}"),
                    contact: None,
                    priority: 0,
                })
                .await
                .unwrap(),
        );
    }
    for i in &created {
        app.app.state.hub.routing().enqueue_with(
            billing.id,
            i.id,
            mailroom::actors::queue::Origin::Arrival { seen: None },
            Some((i.priority, i.created_at)),
        );
    }
    for want in &created {
        let got = take_next_offer(&mut carol).await;
        assert_eq!(got, want.id.to_string());
        let (status, _) = post(
            &app,
            &carol_t,
            &format!("/api/v1/interactions/{got}/close"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200);
    }
}

/// The `desk` queue requires a disposition. Closing without one is a 400
/// and pauses the owner (`disposition`); a path that is not in the tree is a
/// 400 naming the valid choices; closing with a leaf path closes, keeps the
/// path, and lifts the pause.
async fn a_mandatory_disposition_pauses_until_disposed(backend: Backend) {
    let app = spawn_app(Options {
        backend,
        extra: "[[queues]]\nname = \"desk\"\nstrategy = \"ring_all\"\nsticky_secs = 0\ndisposition_required = true\nagents = [\"alice\"]\n\
                [[accounts]]\nkey = \"DESK\"\naddress = \"desk@example.test\"\nqueue = \"desk\"\n\
                imap = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
                smtp = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n"
            .into(),
        ..Options::default()
    })
    .await;
    let admin_t = app.login("admin").await;
    let sup_t = app.login("sup").await;
    let (_, sales) = post(
        &app,
        &admin_t,
        "/api/v1/dispositions",
        json!({"name": "Sales"}),
    )
    .await;
    let (status, _) = post(
        &app,
        &admin_t,
        "/api/v1/dispositions",
        json!({"name": "Won", "parent": sales["id"]}),
    )
    .await;
    assert_eq!(status, 201);
    // Agents may read the tree but not change it.
    let (alice_t, mut alice) = connect(&app, "alice").await;
    assert_eq!(
        get_json(&app, &alice_t, "/api/v1/dispositions")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = post(
        &app,
        &alice_t,
        "/api/v1/dispositions",
        json!({"name": "Mine"}),
    )
    .await;
    assert_eq!(status, 403);

    let store = &app.app.state.store;
    let account = store.account_by_key("DESK").await.unwrap();
    let i = store
        .create_interaction(mailroom::store::NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: "dispose me".into(),
            contact: None,
            priority: 0,
        })
        .await
        .unwrap();
    app.app.state.hub.routing().enqueue(account.queue_id, i.id);
    let id = take_next_offer(&mut alice).await;
    let close = format!("/api/v1/interactions/{id}/close");

    let (status, body) = post(&app, &alice_t, &close, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "disposition_required");
    let paused = next_of(&mut alice, &["presence"]).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["reason"], "disposition");
    app.wait_presence(&sup_t, "alice", "paused").await;

    let (status, body) = post(&app, &alice_t, &close, json!({"disposition": ["Sales"]})).await;
    assert_eq!(status, 400, "not a leaf: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Won"),
        "{body}"
    );
    let (status, body) = post(&app, &alice_t, &close, json!({"disposition": ["Support"]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Sales"),
        "{body}"
    );

    let (status, view) = post(
        &app,
        &alice_t,
        &close,
        json!({"disposition": ["Sales", "Won"]}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "closed");
    let online = next_of(&mut alice, &["presence"]).await;
    assert_eq!(online["status"], "online");
    assert_eq!(view["disposition"], json!(["Sales", "Won"]));
    assert_eq!(
        store.interaction(i.id).await.unwrap().disposition,
        Some(vec!["Sales".to_string(), "Won".to_string()])
    );
}

/// An admin closes what nobody accepted: `closed_unmanaged`. An admin then
/// reopens it: open, unread, reopened, unowned, offered again. alice takes
/// and closes it, then reopens it herself: assigned to her (`reopen`).
async fn close_unmanaged_and_reopen(backend: Backend) {
    let app = app(backend).await;
    let admin_t = app.login("admin").await;
    let id = new_interaction(&app, "Never taken").await;
    let (status, view) = post(
        &app,
        &admin_t,
        &format!("/api/v1/interactions/{id}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "closed_unmanaged");

    // An agent who may not see it cannot reopen it: carol is not in support.
    let carol_t = app.login("carol").await;
    let (status, _) = post(
        &app,
        &carol_t,
        &format!("/api/v1/interactions/{id}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    let (alice_t, mut alice) = connect(&app, "alice").await;
    let (status, view) = post(
        &app,
        &admin_t,
        &format!("/api/v1/interactions/{id}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "open");
    assert_eq!(view["owner"], Value::Null);
    assert_eq!(view["reopened"], true);
    assert_eq!(view["unread"], true);
    assert_eq!(view["closed_at"], Value::Null);
    // Reopening an open interaction: 409.
    let (status, _) = post(
        &app,
        &admin_t,
        &format!("/api/v1/interactions/{id}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(take_next_offer(&mut alice).await, id);

    let (status, view) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{id}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "closed");
    let (status, view) = post(
        &app,
        &alice_t,
        &format!("/api/v1/interactions/{id}/reopen"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["owner"], "alice");
    assert_eq!(view["reopened"], true);
    let assigned = next_of(&mut alice, &["assigned"]).await;
    assert_eq!(assigned["interaction_id"], id);
    assert_eq!(assigned["via"], "reopen");
    // Reading it as its owner marks it read.
    let read = get_json(&app, &alice_t, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(read["unread"], false);
    assert_eq!(read["messages"], json!([]));
}

on_both_stores!(
    transfer_to_a_queue,
    transfer_to_an_agent,
    close_frees_capacity,
    supervisor_views,
    force_pause_resume_and_logout,
    the_waiting_list_is_served_by_priority_then_age,
    interactions_arriving_together_are_offered_in_order,
    a_mandatory_disposition_pauses_until_disposed,
    close_unmanaged_and_reopen,
);
