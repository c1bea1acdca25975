//! Foundation benchmarks: the per-frame and per-request costs every later
//! feature pays, measured on the real code paths.
//!
//! - `ws_frame/parse_*`: turning a client frame into a command (or an error).
//! - `ws_frame/serialise_*`: a server frame to wire text, with its `at` stamp.
//! - `store_sqlite/session_lookup`: the bearer-token check of every request.
//! - `store_sqlite/claim_uncontended`: one `claim` (create + conditional update).
//!
//! Run: `cargo bench --bench foundation`. Criterion prints the time per
//! iteration and the throughput (elements/s).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::auth;
use mailroom::domain::{OfferId, PresenceStatus, Role, Strategy};
use mailroom::http::ws::protocol::{ClientFrame, ServerFrame};
use mailroom::store::{AgentSpec, NewInteraction, QueueSpec, Store};

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_frame");
    g.throughput(Throughput::Elements(1));
    let accept = r#"{"type":"accept","offer_id":"123456","req_id":42}"#;
    g.bench_function("parse_accept", |b| {
        b.iter(|| ClientFrame::parse(std::hint::black_box(accept)))
    });
    let bad = r#"{"type":"dance","req_id":42}"#;
    g.bench_function("parse_unknown_type", |b| {
        b.iter(|| ClientFrame::parse(std::hint::black_box(bad)))
    });
    let presence = ServerFrame::Presence {
        status: PresenceStatus::Paused,
        reason: Some("lunch".into()),
    };
    g.bench_function("serialise_presence", |b| b.iter(|| presence.to_text()));
    let rescind = ServerFrame::OfferRescinded {
        offer_id: OfferId(99),
        interaction_id: mailroom::domain::InteractionId(7),
        reason: mailroom::domain::RescindReason::Taken,
    };
    g.bench_function("serialise_offer_rescinded", |b| {
        b.iter(|| rescind.to_text())
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (store, agent, queue, account) = rt.block_on(async {
        let store = Store::connect(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        let agent = store
            .upsert_agent(AgentSpec {
                username: "bench".into(),
                name: "Bench".into(),
                email: None,
                role: Role::Agent,
                capacity: 1_000_000,
                password_hash: None,
            })
            .await
            .expect("agent");
        let queue = store
            .upsert_queue(QueueSpec {
                name: "bench".into(),
                strategy: Strategy::RingAll,
                offer_timeout_secs: 30,
                sticky_secs: 0,
                retry_backoff_secs: 5,
                max_simultaneous_offers: None,
                auto_pause_after_missed: None,
                disposition_required: false,
                agents: vec!["bench".into()],
            })
            .await
            .expect("queue");
        let account = store
            .upsert_account(mailroom::config::parse_account(&serde_json::json!({
                "key": "BNCH", "address": "bench@example.test", "queue": "bench",
                "imap": {"host": "127.0.0.1", "port": 1, "tls": "none", "username": "u", "password": "p"},
                "smtp": {"host": "127.0.0.1", "port": 1, "tls": "none", "username": "u", "password": "p"}
            }))
            .expect("account spec"))
            .await
            .expect("account");
        (store, agent, queue, account)
    });
    let (_token, hash) = auth::new_token();
    rt.block_on(store.create_session(
        &hash,
        agent.id,
        chrono::Utc::now() + chrono::Duration::hours(1),
    ))
    .expect("session");

    let mut g = c.benchmark_group("store_sqlite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("session_lookup", |b| {
        b.iter(|| {
            rt.block_on(store.session(&hash, chrono::Utc::now()))
                .expect("session")
        })
    });
    g.bench_function("claim_uncontended", |b| {
        b.iter(|| {
            rt.block_on(async {
                let i = store
                    .create_interaction(NewInteraction {
                        account: account.id,
                        queue: queue.id,
                        subject: "bench".into(),
                        contact: None,
                        priority: 0,
                    })
                    .await
                    .expect("create");
                store.claim(i.id, agent.id, i.version).await.expect("claim")
            })
        })
    });
    g.finish();
}

criterion_group!(benches, frames, store);
criterion_main!(benches);
