//! The store's claim — the exactly-one-owner rule (`Store::claim`, one
//! conditional UPDATE) — on SQLite and on Postgres.
//!
//! - `store_claim/<store>/uncontended`: one agent claims a fresh open
//!   interaction. Only the claim is timed; the interaction is created
//!   beforehand, untimed (`iter_custom`).
//! - `store_claim/<store>/contended/<N>`: N tasks, each for another agent,
//!   released together by a barrier, race to claim one fresh interaction
//!   with the same expected version. Timed: from the release until all N
//!   have their answer (one `Won`, N − 1 `Lost` with the winner's state —
//!   checked on every race). Elements/s = races per second.
//!
//! SQLite: a file in a temporary directory. Postgres: a fresh database
//! `mailroom_bench_<random>` on the server named by `MAILROOM_TEST_PG_URL`
//! (environment, else `/var/tmp/mailroom-services/env`), dropped at the end;
//! without that variable the Postgres group prints one line saying it was
//! not run, and why.
//!
//! Run: `cargo bench --bench store_claim`. Under `cargo test --all-targets`
//! criterion runs each bench once.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailroom::store::{ClaimOutcome, NewInteraction};
use support::{Db, Fixture};
use tokio::runtime::Runtime;
use tokio::sync::Barrier;

const RACERS: [usize; 3] = [2, 8, 32];

fn runtime() -> Runtime {
    // Two workers: the machine has two cores, and the racing tasks should
    // really run in parallel where they can, as actors on a node do.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn fresh(f: &Fixture) -> (mailroom::domain::InteractionId, i64) {
    let i = f
        .store
        .create_interaction(NewInteraction {
            account: f.account,
            queue: f.queue,
            subject: "bench".into(),
            contact: None,
            priority: 0,
        })
        .await
        .expect("create interaction");
    (i.id, i.version)
}

/// One race of `n` tasks for one fresh interaction; returns the time from
/// the barrier's release to the last answer.
async fn race(f: &Arc<Fixture>, n: usize) -> Duration {
    let (id, version) = fresh(f).await;
    let barrier = Arc::new(Barrier::new(n + 1));
    let tasks: Vec<_> = (0..n)
        .map(|k| {
            let (f, barrier) = (f.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                f.store
                    .claim(id, f.agents[k], version)
                    .await
                    .expect("claim")
            })
        })
        .collect();
    barrier.wait().await;
    let t0 = Instant::now();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            ClaimOutcome::Won(_) => won += 1,
            ClaimOutcome::Lost(i) => assert!(i.owner.is_some(), "a loser sees the owner"),
        }
    }
    let elapsed = t0.elapsed();
    assert_eq!(won, 1, "exactly one of {n} racers wins");
    elapsed
}

fn bench_store(c: &mut Criterion, label: &str, rt: &Runtime, f: Arc<Fixture>) {
    let mut g = c.benchmark_group(format!("store_claim/{label}"));
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("uncontended", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (id, version) = fresh(&f).await;
                    let t0 = Instant::now();
                    let out = f
                        .store
                        .claim(id, f.agents[0], version)
                        .await
                        .expect("claim");
                    total += t0.elapsed();
                    assert!(
                        matches!(out, ClaimOutcome::Won(_)),
                        "uncontended claim wins"
                    );
                }
                total
            })
        })
    });
    for n in RACERS {
        g.bench_with_input(BenchmarkId::new("contended", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += race(&f, n).await;
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

fn claims(c: &mut Criterion) {
    let max = *RACERS.iter().max().unwrap();
    {
        let rt = runtime();
        let (url, _db) = Db::sqlite();
        let f = Arc::new(rt.block_on(support::fixture(&url, max)));
        bench_store(c, "sqlite", &rt, f);
    }
    match support::pg_admin_url() {
        Err(why) => support::skip_postgres("store_claim", &why),
        Ok(admin) => {
            let rt = runtime();
            let (url, db) = rt.block_on(Db::postgres(&admin));
            let f = Arc::new(rt.block_on(support::fixture(&url, max)));
            bench_store(c, "postgres", &rt, f.clone());
            // The pool's connections go before the database is dropped.
            drop(f);
            drop(rt);
            drop(db);
        }
    }
}

criterion_group!(benches, claims);
criterion_main!(benches);
