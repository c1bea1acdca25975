//! Routing over real WebSockets: offers, reject fallthrough, taken-by-another,
//! timeouts, paused agents, dropped sockets, and the 50-way accept race.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Options, TestApp, Ws, next_frame, send_frame, spawn_app};

fn queue_config(strategy: &str, timeout: u32, members: &[&str]) -> String {
    let agents: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[queues]]\nname = \"support\"\nstrategy = \"{strategy}\"\noffer_timeout_secs = {timeout}\nsticky_secs = 0\nretry_backoff_secs = 1\nagents = [{}]\n\
         [[accounts]]\nkey = \"SERV\"\naddress = \"support@example.test\"\nqueue = \"support\"\n\
         imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n",
        agents.join(", ")
    )
}

/// Create an open interaction in the store and hand it to its queue, as
/// ingest does.
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

/// The next frame of one of `types`, skipping others.
async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    loop {
        let f = next_frame(ws).await;
        if types.contains(&f["type"].as_str().unwrap_or_default()) {
            return f;
        }
    }
}

/// No frame of these types arrives within `wait` (used only to check that
/// something does NOT happen; the positive cases all wait for events).
async fn none_of(ws: &mut Ws, types: &[&str], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
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

async fn connect(app: &TestApp, user: &str) -> Ws {
    let token = app.login(user).await;
    app.ws(&token).await.0
}

#[tokio::test]
async fn ring_all_one_rejects_one_accepts_the_third_is_told_taken() {
    let users = ["alice", "bob", "sup"];
    let app = spawn_app(Options {
        extra: queue_config("ring_all", 30, &users),
        ..Options::default()
    })
    .await;
    let mut a = connect(&app, "alice").await;
    let mut b = connect(&app, "bob").await;
    let mut s = connect(&app, "sup").await;
    let id = new_interaction(&app, "Printer on fire").await;
    let oa = next_of(&mut a, &["offer"]).await;
    let ob = next_of(&mut b, &["offer"]).await;
    let os = next_of(&mut s, &["offer"]).await;
    for o in [&oa, &ob, &os] {
        assert_eq!(o["interaction_id"], id);
        assert_eq!(o["queue"], "support");
        assert_eq!(o["account"], "SERV");
        assert_eq!(o["subject"], "Printer on fire");
        assert!(o["expires_at"].is_string());
    }
    send_frame(
        &mut a,
        json!({"type": "reject", "offer_id": oa["offer_id"], "req_id": "r"}),
    )
    .await;
    let ok = next_of(&mut a, &["ok", "error"]).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    send_frame(
        &mut b,
        json!({"type": "accept", "offer_id": ob["offer_id"], "req_id": "acc"}),
    )
    .await;
    // `ok` (the answer) and `assigned` (the event) may come in either order.
    let (f1, f2) = (
        next_of(&mut b, &["ok", "error", "assigned"]).await,
        next_of(&mut b, &["ok", "error", "assigned"]).await,
    );
    let (ok, assigned) = if f1["type"] == "assigned" {
        (f2, f1)
    } else {
        (f1, f2)
    };
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["interaction_id"], id);
    assert_eq!(assigned["interaction_id"], id);
    assert_eq!(assigned["via"], "accept");
    let taken = next_of(&mut s, &["offer_rescinded"]).await;
    assert_eq!(taken["reason"], "taken");
    assert_eq!(taken["offer_id"], os["offer_id"]);
    // The late accept is offer_gone.
    send_frame(
        &mut s,
        json!({"type": "accept", "offer_id": os["offer_id"], "req_id": 1}),
    )
    .await;
    let err = next_of(&mut s, &["error", "ok"]).await;
    assert_eq!(err["code"], "offer_gone", "{err}");
    // The store holds one owner.
    let i = app
        .app
        .state
        .store
        .interaction(id.parse().unwrap())
        .await
        .unwrap();
    let bob = app.app.state.store.agent_by_username("bob").await.unwrap();
    assert_eq!(i.owner, Some(bob.id));
}

#[tokio::test]
async fn a_timeout_passes_the_offer_to_the_next_agent() {
    let app = spawn_app(Options {
        extra: queue_config("round_robin", 1, &["alice", "bob"]),
        ..Options::default()
    })
    .await;
    let mut a = connect(&app, "alice").await;
    let mut b = connect(&app, "bob").await;
    new_interaction(&app, "Slow").await;
    // Whoever is offered first lets it expire; the other gets it next.
    let (first, second) = tokio::select! {
        f = next_of(&mut a, &["offer"]) => { let _ = f; (&mut a, &mut b) }
        f = next_of(&mut b, &["offer"]) => { let _ = f; (&mut b, &mut a) }
    };
    let gone = next_of(first, &["offer_rescinded"]).await;
    assert_eq!(gone["reason"], "timeout");
    let offer = next_of(second, &["offer"]).await;
    assert_eq!(offer["subject"], "Slow");
}

#[tokio::test]
async fn paused_agents_get_nothing_and_a_dropped_socket_is_re_offered() {
    let app = spawn_app(Options {
        extra: queue_config("ring_all", 30, &["alice", "bob"]),
        ..Options::default()
    })
    .await;
    let mut a = connect(&app, "alice").await;
    send_frame(
        &mut a,
        json!({"type": "set_presence", "status": "paused", "reason": "lunch"}),
    )
    .await;
    next_of(&mut a, &["presence"]).await;
    let b = connect(&app, "bob").await;
    new_interaction(&app, "For whoever").await;
    let mut b = b;
    let offer = next_of(&mut b, &["offer"]).await;
    assert_eq!(offer["subject"], "For whoever");
    none_of(&mut a, &["offer"], Duration::from_millis(300)).await;
    // Bob's socket drops mid-offer; alice comes back: she gets it.
    drop(b);
    send_frame(&mut a, json!({"type": "set_presence", "status": "online"})).await;
    let offer = next_of(&mut a, &["offer"]).await;
    assert_eq!(offer["subject"], "For whoever");
}

#[tokio::test]
async fn fifty_agents_accept_at_once_and_exactly_one_wins() {
    let names: Vec<String> = (0..50).map(|i| format!("racer{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let app = spawn_app(Options {
        extra: queue_config("ring_all", 30, &["alice"]),
        ..Options::default()
    })
    .await;
    let admin = app.login("admin").await;
    // Add the racers, then make them the queue's members (which restarts
    // the queue actor with the new members).
    for n in &names {
        let res = app
            .send_json(
                Method::POST,
                &admin,
                "/api/v1/agents",
                json!({"username": n, "password": format!("pw-{n}"), "capacity": 5}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }

    let res = app
        .send_json(
            Method::PUT,
            &admin,
            "/api/v1/queues/1",
            json!({"name": "support", "strategy": "ring_all", "agents": refs}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let mut sockets = Vec::new();
    for n in &refs {
        sockets.push(connect(&app, n).await);
    }
    let id = new_interaction(&app, "Race").await;
    let mut offers = Vec::new();
    for ws in sockets.iter_mut() {
        offers.push(next_of(ws, &["offer"]).await);
    }
    // Everyone accepts at once.
    let futures = sockets
        .into_iter()
        .zip(offers)
        .map(|(mut ws, offer)| async move {
            send_frame(
                &mut ws,
                json!({"type": "accept", "offer_id": offer["offer_id"], "req_id": "a"}),
            )
            .await;
            let mut outcome = String::new();
            // Each gets: ok + assigned (the winner), or error offer_gone /
            // offer_rescinded taken (the others; possibly both).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                let f = next_frame(&mut ws).await;
                match f["type"].as_str().unwrap() {
                    "assigned" => return "assigned".to_string(),
                    "error" if f["code"] == "offer_gone" => {
                        outcome = "gone".into();
                        return outcome;
                    }
                    "offer_rescinded" if f["reason"] == "taken" => outcome = "taken".into(),
                    _ => {}
                }
                if outcome == "taken" {
                    // Keep reading for the answer to the accept.
                    continue;
                }
            }
            outcome
        });
    let outcomes = futures_util::future::join_all(futures).await;
    let winners = outcomes.iter().filter(|o| *o == "assigned").count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| *o == "gone" || *o == "taken")
            .count(),
        49,
        "{outcomes:?}"
    );
    let i = app
        .app
        .state
        .store
        .interaction(id.parse().unwrap())
        .await
        .unwrap();
    assert!(i.owner.is_some());
}
