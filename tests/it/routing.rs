//! Routing over real WebSockets: offers, reject fallthrough, taken-by-another,
//! timeouts, paused agents, dropped sockets, the 50-way accept race,
//! round_robin's fair share, capacity, a restart with a full waiting list,
//! and the sticky agent. Every test runs on both stores (`on_both_stores!`
//! at the end): `routing::sqlite::<test>` and `routing::postgres::<test>`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use mailroom::domain::ContactId;
use mailroom::domain::threading::ReplyRefs;
use mailroom::store::{IngestMail, IngestOutcome, NewInteraction};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{
    Backend, Options, TestApp, Ws, next_frame, rand_suffix, send_frame, spawn_app,
};

/// One queue `support` (fed by the account `SERV`, whose mailbox points
/// nowhere: tests hand interactions to the queue themselves). `sticky_secs`
/// 0 turns the sticky agent off.
fn queue_config(strategy: &str, timeout: u32, sticky_secs: u32, members: &[&str]) -> String {
    let agents: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[queues]]\nname = \"support\"\nstrategy = \"{strategy}\"\noffer_timeout_secs = {timeout}\nsticky_secs = {sticky_secs}\nretry_backoff_secs = 1\nagents = [{}]\n\
         [[accounts]]\nkey = \"SERV\"\naddress = \"support@example.test\"\nqueue = \"support\"\n\
         imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n",
        agents.join(", ")
    )
}

/// Extra agents (password `pw-<name>`), all with this capacity.
fn agents_config(names: &[&str], capacity: u32) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "[[agents]]\nusername = \"{n}\"\npassword = \"pw-{n}\"\nname = \"{n} Test\"\nrole = \"agent\"\ncapacity = {capacity}\n"
            )
        })
        .collect()
}

async fn app_with(backend: Backend, extra: String) -> TestApp {
    spawn_app(Options {
        backend,
        extra,
        ..Options::default()
    })
    .await
}

/// Create an open interaction in the store and hand it to its queue, as
/// ingest does.
async fn new_interaction(app: &TestApp, subject: &str) -> String {
    new_interaction_of(app, subject, None).await
}

/// The same, for a contact (sticky routing looks at the contact's history).
async fn new_interaction_of(app: &TestApp, subject: &str, contact: Option<ContactId>) -> String {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let i = store
        .create_interaction(NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: subject.into(),
            contact,
            priority: 0,
        })
        .await
        .unwrap();
    app.app.state.hub.routing().enqueue(account.queue_id, i.id);
    i.id.to_string()
}

/// Ingest a mail from a customer (which creates the contact; the store has
/// no other way to make one) and hand its new interaction to the queue, as
/// the mailbox does. Returns the interaction and the contact.
async fn mail_from_customer(app: &TestApp, subject: &str) -> (String, ContactId) {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let raw = format!(
        "From: Jane Doe <jane@customer.test>\r\nTo: Support <support@example.test>\r\n\
         Subject: {subject}\r\nDate: Thu, 13 Mar 2025 15:00:00 +0100\r\n\
         Message-ID: <{}@customer.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello again.\r\n",
        rand_suffix()
    )
    .into_bytes();
    let parsed = mailroom::mail::parse::parse(&raw).expect("the test mail parses");
    let outcome = store
        .ingest_mail(IngestMail {
            account: account.id,
            account_key: account.key.clone(),
            queue: account.queue_id,
            position: Some((1, 1)),
            internal_date: None,
            raw,
            parsed,
            refs: ReplyRefs::default(),
        })
        .await
        .unwrap();
    let IngestOutcome::Created {
        interaction,
        contact: Some(contact),
        ..
    } = outcome
    else {
        panic!("expected a new interaction with a contact, got {outcome:?}");
    };
    app.app
        .state
        .hub
        .routing()
        .enqueue(account.queue_id, interaction.id);
    (interaction.id.to_string(), contact)
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

async fn connect(app: &TestApp, user: &str) -> Ws {
    let token = app.login(user).await;
    app.ws(&token).await.0
}

/// Until routing counts each of `users` as available (online, not paused):
/// presence reaches the queues' directory asynchronously after `hello`, and
/// a test about who gets an offer must not start before it has.
async fn wait_available(app: &TestApp, users: &[&str]) {
    let routing = app.app.state.hub.routing();
    for user in users {
        let id = app
            .app
            .state
            .store
            .agent_by_username(user)
            .await
            .unwrap()
            .id;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !routing.directory.get(&id).is_some_and(|r| r.available) {
            assert!(
                Instant::now() < deadline,
                "{user} never became available to routing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Until the store shows `n` open interactions owned (by anyone).
async fn wait_owned(app: &TestApp, n: u32) -> HashMap<String, u32> {
    let store = &app.app.state.store;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.owned_open_counts().await.unwrap();
        let total: u32 = counts.values().sum();
        if total >= n {
            let mut by_name = HashMap::new();
            for (agent, count) in counts {
                by_name.insert(store.agent(agent).await.unwrap().username, count);
            }
            return by_name;
        }
        assert!(
            Instant::now() < deadline,
            "only {total} of {n} interactions were ever owned: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Accept an offer and wait for both the answer (`ok`) and the event
/// (`assigned`), which may come in either order. Returns the interaction id.
async fn accept(ws: &mut Ws, offer: &Value) -> String {
    send_frame(
        ws,
        json!({"type": "accept", "offer_id": offer["offer_id"], "req_id": "acc"}),
    )
    .await;
    let (f1, f2) = (
        next_of(ws, &["ok", "error", "assigned"]).await,
        next_of(ws, &["ok", "error", "assigned"]).await,
    );
    let (ok, assigned) = if f1["type"] == "assigned" {
        (f2, f1)
    } else {
        (f1, f2)
    };
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(ok["interaction_id"], offer["interaction_id"], "{ok}");
    assert_eq!(assigned["type"], "assigned", "{assigned}");
    assert_eq!(assigned["interaction_id"], offer["interaction_id"]);
    assert_eq!(assigned["via"], "accept");
    offer["interaction_id"].as_str().unwrap().to_string()
}

async fn reject(ws: &mut Ws, offer: &Value) {
    send_frame(
        ws,
        json!({"type": "reject", "offer_id": offer["offer_id"], "req_id": "rej"}),
    )
    .await;
    let ok = next_of(ws, &["ok", "error"]).await;
    assert_eq!(ok["type"], "ok", "{ok}");
}

/// What an agent who accepts every offer saw. Offers are keyed by offer id.
#[derive(Debug, Default)]
struct Tally {
    /// offer id → interaction id, for every offer received.
    offers: HashMap<String, String>,
    /// Interaction ids, in the order `assigned` came.
    assigned: Vec<String>,
    /// Offers whose accept was answered `ok`.
    won: HashSet<String>,
    /// Offers whose accept was answered `offer_gone`.
    gone: HashSet<String>,
    /// Offers rescinded as `taken`.
    taken: HashSet<String>,
    /// Any other error, rescind or assignment.
    unexpected: Vec<Value>,
}

/// Accept every offer at once, until told to `stop` and then every accept
/// has its answer and the socket has been quiet for a moment (the store
/// decides everything before the frames go out, so by then nothing more is
/// coming). Fails after a deadline instead of hanging.
async fn accept_every_offer(mut ws: Ws, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut unanswered: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last_frame = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "still busy at the deadline; unanswered accepts {unanswered:?}, {tally:?}"
        );
        let msg = match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Err(_) => {
                if stop.load(Ordering::SeqCst)
                    && unanswered.is_empty()
                    && last_frame.elapsed() >= Duration::from_millis(300)
                {
                    return tally;
                }
                continue;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        };
        last_frame = Instant::now();
        let f: Value = serde_json::from_str(&msg).unwrap();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match f["type"].as_str().unwrap_or_default() {
            "offer" => {
                let offer = text(&f["offer_id"]);
                let fresh = tally
                    .offers
                    .insert(offer.clone(), text(&f["interaction_id"]))
                    .is_none();
                assert!(fresh, "offer {offer} came twice");
                send_frame(
                    &mut ws,
                    json!({"type": "accept", "offer_id": f["offer_id"], "req_id": offer}),
                )
                .await;
                unanswered.insert(offer);
            }
            "ok" => {
                let offer = text(&f["req_id"]);
                assert!(unanswered.remove(&offer), "an answer to nothing: {f}");
                assert_eq!(f["interaction_id"], tally.offers[&offer].as_str(), "{f}");
                tally.won.insert(offer);
            }
            "error" => {
                let offer = text(&f["req_id"]);
                assert!(unanswered.remove(&offer), "an answer to nothing: {f}");
                if f["code"] == "offer_gone" {
                    tally.gone.insert(offer);
                } else {
                    tally.unexpected.push(f);
                }
            }
            "assigned" if f["via"] == "accept" => tally.assigned.push(text(&f["interaction_id"])),
            "offer_rescinded" if f["reason"] == "taken" => {
                tally.taken.insert(text(&f["offer_id"]));
            }
            "assigned" | "offer_rescinded" => tally.unexpected.push(f),
            _ => {}
        }
    }
}

/// Every offer row as id → (status, reason), read behind the store's back
/// (the store has no API listing offers; they are kept for reporting).
async fn offer_rows(app: &TestApp) -> HashMap<String, (String, Option<String>)> {
    let url = app.app.state.settings.store.url.expose().to_string();
    let sql = "SELECT id, status, reason FROM offers";
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(path).expect("open the test database");
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?.to_string(), (r.get(1)?, r.get(2)?)))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        })
        .await
        .unwrap()
    } else {
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to the test database");
        let conn = tokio::spawn(connection);
        let rows = client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0).to_string(), (r.get(1), r.get(2))))
            .collect();
        drop(client);
        let _ = conn.await;
        rows
    }
}

async fn ring_all_one_rejects_one_accepts_the_third_is_told_taken(backend: Backend) {
    let users = ["alice", "bob", "sup"];
    let app = app_with(backend, queue_config("ring_all", 30, 0, &users)).await;
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
    reject(&mut a, &oa).await;
    assert_eq!(accept(&mut b, &ob).await, id);
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

async fn a_timeout_passes_the_offer_to_the_next_agent(backend: Backend) {
    let app = app_with(
        backend,
        queue_config("round_robin", 1, 0, &["alice", "bob"]),
    )
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

async fn an_agent_who_lets_two_offers_expire_is_paused_for_missed_offers(backend: Backend) {
    let config = queue_config("ring_all", 1, 0, &["alice"]).replace(
        "retry_backoff_secs = 1\n",
        "retry_backoff_secs = 1\nauto_pause_after_missed = 2\n",
    );
    let app = app_with(backend, config).await;
    let mut a = connect(&app, "alice").await;
    new_interaction(&app, "Nobody home").await;
    // Two offers expire unanswered (the second after the retry backoff);
    // with the second, alice is paused, and her tabs hear why (the pause
    // and the rescind may come in either order).
    let offer = next_of(&mut a, &["offer"]).await;
    assert_eq!(offer["subject"], "Nobody home");
    let gone = next_of(&mut a, &["offer_rescinded", "presence"]).await;
    assert_eq!(gone["reason"], "timeout", "not paused after one: {gone}");
    let offer = next_of(&mut a, &["offer"]).await;
    assert_eq!(offer["subject"], "Nobody home");
    let (mut presence, mut gone) = (None, None);
    while presence.is_none() || gone.is_none() {
        let f = next_of(&mut a, &["offer_rescinded", "presence"]).await;
        match f["type"].as_str() {
            Some("presence") => presence = Some(f),
            _ => gone = Some(f),
        }
    }
    let (presence, gone) = (presence.unwrap(), gone.unwrap());
    assert_eq!(gone["reason"], "timeout", "{gone}");
    assert_eq!(presence["status"], "paused", "{presence}");
    assert_eq!(presence["reason"], "missed offers", "{presence}");
    // Paused, she is offered nothing more.
    none_of(&mut a, &["offer"], Duration::from_millis(2500)).await;
}

async fn paused_agents_get_nothing_and_a_dropped_socket_is_re_offered(backend: Backend) {
    let app = app_with(backend, queue_config("ring_all", 30, 0, &["alice", "bob"])).await;
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

async fn fifty_agents_accept_at_once_and_exactly_one_wins(backend: Backend) {
    let names: Vec<String> = (0..50).map(|i| format!("racer{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let app = app_with(backend, queue_config("ring_all", 30, 0, &["alice"])).await;
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

/// round_robin continues after the agent who received the previous offer:
/// 30 interactions over three agents who accept everything are 10 each.
async fn round_robin_gives_thirty_interactions_to_three_agents_ten_each(backend: Backend) {
    let members = ["rr1", "rr2", "rr3"];
    let app = app_with(
        backend,
        agents_config(&members, 100) + &queue_config("round_robin", 30, 0, &members),
    )
    .await;
    let mut sockets = Vec::new();
    for m in members {
        sockets.push(connect(&app, m).await);
    }
    // All three must be in the rotation before the first offer.
    wait_available(&app, &members).await;
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(accept_every_offer(ws, stop.clone())))
        .collect();
    let mut ids = HashSet::new();
    for n in 0..30 {
        ids.insert(new_interaction(&app, &format!("Ticket {n}")).await);
    }
    let owned = wait_owned(&app, 30).await;
    stop.store(true, Ordering::SeqCst);
    let mut all_assigned = Vec::new();
    for (name, agent) in members.iter().zip(agents) {
        let tally = agent.await.unwrap();
        assert!(tally.unexpected.is_empty(), "{name}: {tally:?}");
        assert!(
            tally.gone.is_empty() && tally.taken.is_empty(),
            "{name}: offers are one at a time, nobody loses: {tally:?}"
        );
        assert_eq!(tally.offers.len(), 10, "{name}: {tally:?}");
        assert_eq!(tally.won.len(), 10, "{name}: {tally:?}");
        assert_eq!(tally.assigned.len(), 10, "{name}: {tally:?}");
        all_assigned.extend(tally.assigned);
    }
    let assigned: HashSet<String> = all_assigned.iter().cloned().collect();
    assert_eq!(assigned.len(), 30, "assigned twice: {all_assigned:?}");
    assert_eq!(assigned, ids);
    let ten_each: HashMap<String, u32> = members.iter().map(|m| (m.to_string(), 10)).collect();
    assert_eq!(owned, ten_each, "the store's owners");
}

/// Capacity counts owned interactions (and offers out): an agent of
/// capacity 1 who owns one gets no offer until it is closed.
async fn capacity_one_withholds_the_second_offer_until_the_first_is_closed(backend: Backend) {
    let app = app_with(
        backend,
        agents_config(&["solo"], 1) + &queue_config("ring_all", 30, 0, &["solo"]),
    )
    .await;
    let token = app.login("solo").await;
    let mut ws = app.ws(&token).await.0;
    wait_available(&app, &["solo"]).await;
    let first = new_interaction(&app, "First").await;
    let offer = next_of(&mut ws, &["offer"]).await;
    assert_eq!(offer["interaction_id"], first);
    // The second arrives while the first's offer is out, then stays
    // waiting while solo owns the first.
    let second = new_interaction(&app, "Second").await;
    assert_eq!(accept(&mut ws, &offer).await, first);
    none_of(&mut ws, &["offer"], Duration::from_millis(1500)).await;
    let res = app
        .send_json(
            Method::POST,
            &token,
            &format!("/api/v1/interactions/{first}/close"),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["status"], "closed", "{view}");
    let offer = next_of(&mut ws, &["offer"]).await;
    assert_eq!(offer["interaction_id"], second);
    assert_eq!(offer["subject"], "Second");
}

/// A restart with 100 interactions waiting (their offers out to an agent
/// when it stops): the offers in flight are cancelled in the store, every
/// interaction is offered again, and two agents accepting everything at
/// once end up owning each exactly once.
async fn a_restart_re_offers_a_hundred_waiting_and_none_is_assigned_twice(backend: Backend) {
    const N: usize = 100;
    let agents = ["ra", "rb"];
    let app = app_with(
        backend,
        agents_config(&agents, N as u32) + &queue_config("ring_all", 30, 0, &agents),
    )
    .await;
    // Before the restart: ra holds an offer for each of the 100.
    let mut before = connect(&app, "ra").await;
    wait_available(&app, &["ra"]).await;
    let mut ids = HashSet::new();
    for n in 0..N {
        ids.insert(new_interaction(&app, &format!("Waiting {n}")).await);
    }
    let mut old_offers = HashSet::new();
    while old_offers.len() < N {
        let offer = next_of(&mut before, &["offer"]).await;
        old_offers.insert(offer["offer_id"].as_str().unwrap().to_string());
    }

    let app = app.restart().await;
    drop(before);
    // Nothing is left `offered`: the old offers were cancelled (at the
    // stop, or at the start), and nobody is connected to get new ones.
    let rows = offer_rows(&app).await;
    assert_eq!(rows.len(), N, "{rows:?}");
    for (id, row) in &rows {
        assert!(old_offers.contains(id), "offer {id} was not announced");
        assert_eq!(
            (row.0.as_str(), row.1.as_deref()),
            ("rescinded", Some("cancelled")),
            "offer {id}"
        );
    }
    assert!(
        app.app
            .state
            .store
            .owned_open_counts()
            .await
            .unwrap()
            .is_empty()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for a in agents {
        sockets.push(connect(&app, a).await);
    }
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(accept_every_offer(ws, stop.clone())))
        .collect();
    let owned = wait_owned(&app, N as u32).await;
    stop.store(true, Ordering::SeqCst);
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await.unwrap());
    }

    // The frames: each of the 100 assigned once, to one agent.
    let mut all_assigned: Vec<String> = Vec::new();
    for (name, tally) in agents.iter().zip(&tallies) {
        assert!(
            tally.unexpected.is_empty(),
            "{name}: {:?}",
            tally.unexpected
        );
        // Every offer is decided for this agent: won (and assigned), or
        // lost (taken, or offer_gone for the accept).
        for (offer, interaction) in &tally.offers {
            assert!(
                !old_offers.contains(offer),
                "{name} was offered an old offer"
            );
            if tally.won.contains(offer) {
                assert!(
                    tally.assigned.contains(interaction),
                    "{name} won {offer} without `assigned`"
                );
            } else {
                assert!(
                    tally.taken.contains(offer) || tally.gone.contains(offer),
                    "{name}'s offer {offer} for {interaction} was never decided"
                );
            }
        }
        assert_eq!(tally.won.len(), tally.assigned.len(), "{name}: {:?}", tally);
        all_assigned.extend(tally.assigned.iter().cloned());
    }
    let assigned: HashSet<String> = all_assigned.iter().cloned().collect();
    assert_eq!(
        assigned.len(),
        all_assigned.len(),
        "an interaction was assigned twice"
    );
    assert_eq!(assigned, ids);

    // The store: each owned by the agent who heard `assigned`.
    let store = &app.app.state.store;
    assert_eq!(owned.values().sum::<u32>(), N as u32, "{owned:?}");
    for (name, tally) in agents.iter().zip(&tallies) {
        let agent = store.agent_by_username(name).await.unwrap().id;
        assert_eq!(
            owned.get(*name).copied().unwrap_or(0) as usize,
            tally.assigned.len()
        );
        for id in &tally.assigned {
            let i = store.interaction(id.parse().unwrap()).await.unwrap();
            assert_eq!(i.owner, Some(agent), "interaction {id}");
        }
    }
    // And no offer is left live.
    let live: Vec<_> = offer_rows(&app)
        .await
        .into_iter()
        .filter(|(_, (status, _))| status == "offered")
        .collect();
    assert!(live.is_empty(), "{live:?}");
}

/// The sticky agent goes first and alone; a reject passes the interaction
/// to the strategy at once, and so does a sticky agent who is not eligible.
/// The window is long (30 s) so that every offer to another agent here can
/// only come from those rules, never from the window ending.
async fn sticky_agent_goes_first_alone_and_a_reject_or_a_pause_passes_it_on(backend: Backend) {
    let app = app_with(backend, queue_config("ring_all", 30, 30, &["alice", "bob"])).await;
    let mut a = connect(&app, "alice").await;
    let mut b = connect(&app, "bob").await;
    wait_available(&app, &["alice", "bob"]).await;

    // The contact's first interaction: no history, so both are offered; bob takes it.
    let (first, contact) = mail_from_customer(&app, "My order").await;
    let oa = next_of(&mut a, &["offer"]).await;
    let ob = next_of(&mut b, &["offer"]).await;
    assert_eq!(oa["interaction_id"], first);
    assert_eq!(ob["interaction_id"], first);
    assert_eq!(accept(&mut b, &ob).await, first);
    let taken = next_of(&mut a, &["offer_rescinded"]).await;
    assert_eq!(taken["offer_id"], oa["offer_id"]);
    assert_eq!(taken["reason"], "taken");

    // A new interaction of the contact: bob alone.
    let second = new_interaction_of(&app, "My order, again", Some(contact)).await;
    let ob = next_of(&mut b, &["offer"]).await;
    assert_eq!(ob["interaction_id"], second);
    none_of(&mut a, &["offer"], Duration::from_millis(1500)).await;
    // Bob rejects: the window still lasts, but he is out, so ring_all
    // offers it to the others.
    reject(&mut b, &ob).await;
    let oa = next_of(&mut a, &["offer"]).await;
    assert_eq!(oa["interaction_id"], second);
    assert_eq!(accept(&mut a, &oa).await, second);

    // Now alice is the contact's last agent. Paused, she is not eligible:
    // the third goes to bob at once.
    send_frame(
        &mut a,
        json!({"type": "set_presence", "status": "paused", "reason": "break"}),
    )
    .await;
    next_of(&mut a, &["presence"]).await;
    let alice = app
        .app
        .state
        .store
        .agent_by_username("alice")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .app
        .state
        .hub
        .routing()
        .directory
        .get(&alice.id)
        .is_some_and(|r| r.available)
    {
        assert!(Instant::now() < deadline, "alice never paused for routing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = new_interaction_of(&app, "My order, once more", Some(contact)).await;
    let ob = next_of(&mut b, &["offer"]).await;
    assert_eq!(ob["interaction_id"], third);
    none_of(&mut a, &["offer"], Duration::from_millis(300)).await;
}

/// The sticky window lasts `sticky_secs` from the enqueue; then the queue's
/// strategy takes over: ring_all adds the others while the sticky agent's
/// offer stays out.
async fn sticky_window_ends_and_the_strategy_takes_over(backend: Backend) {
    let app = app_with(backend, queue_config("ring_all", 30, 4, &["alice", "bob"])).await;
    let mut a = connect(&app, "alice").await;
    let mut b = connect(&app, "bob").await;
    wait_available(&app, &["alice", "bob"]).await;
    let (first, contact) = mail_from_customer(&app, "Where is my parcel").await;
    let ob = next_of(&mut b, &["offer"]).await;
    assert_eq!(ob["interaction_id"], first);
    assert_eq!(accept(&mut b, &ob).await, first);
    next_of(&mut a, &["offer_rescinded"]).await;

    let second = new_interaction_of(&app, "Still no parcel", Some(contact)).await;
    let ob = next_of(&mut b, &["offer"]).await;
    assert_eq!(ob["interaction_id"], second);
    none_of(&mut a, &["offer"], Duration::from_millis(1500)).await;
    // Bob says nothing; when the window ends alice is offered too.
    let oa = next_of(&mut a, &["offer"]).await;
    assert_eq!(oa["interaction_id"], second);
    // Bob's offer was still out: it is taken by alice's accept.
    assert_eq!(accept(&mut a, &oa).await, second);
    let taken = next_of(&mut b, &["offer_rescinded"]).await;
    assert_eq!(taken["offer_id"], ob["offer_id"]);
    assert_eq!(taken["reason"], "taken");
}

/// `#[tokio::test]` wrappers, one per store: `routing::sqlite::<test>` and
/// `routing::postgres::<test>`, each with the runtime flavor given.
macro_rules! on_both_stores {
    ($(#[$runtime:meta] $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[$runtime]
                async fn $test() {
                    super::$test(crate::support::app::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[$runtime]
                async fn $test() {
                    super::$test(crate::support::app::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_stores!(
    #[tokio::test]
    ring_all_one_rejects_one_accepts_the_third_is_told_taken,
    #[tokio::test]
    a_timeout_passes_the_offer_to_the_next_agent,
    #[tokio::test]
    an_agent_who_lets_two_offers_expire_is_paused_for_missed_offers,
    #[tokio::test]
    paused_agents_get_nothing_and_a_dropped_socket_is_re_offered,
    #[tokio::test]
    fifty_agents_accept_at_once_and_exactly_one_wins,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    round_robin_gives_thirty_interactions_to_three_agents_ten_each,
    #[tokio::test]
    capacity_one_withholds_the_second_offer_until_the_first_is_closed,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_restart_re_offers_a_hundred_waiting_and_none_is_assigned_twice,
    #[tokio::test]
    sticky_agent_goes_first_alone_and_a_reject_or_a_pause_passes_it_on,
    #[tokio::test]
    sticky_window_ends_and_the_strategy_takes_over,
);
