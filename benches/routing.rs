//! Routing decisions per second: the pure choice of who gets an offer
//! (`domain::routing::choose`), for each strategy, over queues of 10, 100
//! and 1,000 members with a realistic mix (some paused, some full, a few
//! exclusions and live offers).
//!
//! Run: `cargo bench --bench routing`. Criterion prints time per decision
//! and decisions/s (elements/s). Goal to chase: ≥ 1 M decisions/s.

use std::collections::HashSet;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailroom::domain::routing::{Candidate, Policy, Situation, choose};
use mailroom::domain::{AgentId, Strategy};

fn members(n: i64) -> Vec<Candidate> {
    (1..=n)
        .map(|i| Candidate {
            agent: AgentId(i),
            available: i % 7 != 0,
            owned: (i % 5) as u32,
            capacity: 4,
            idle_since_ms: (i * 7919) % 100_000,
        })
        .collect()
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing_choose");
    g.throughput(Throughput::Elements(1));
    for n in [10i64, 100, 1000] {
        let m = members(n);
        let excluded: HashSet<AgentId> = (1..=n).filter(|i| i % 11 == 0).map(AgentId).collect();
        let offered: HashSet<AgentId> = HashSet::new();
        let situation = Situation {
            excluded: Some(&excluded),
            offered: Some(&offered),
            sticky: None,
        };
        for strategy in Strategy::ALL {
            let policy = Policy {
                strategy: *strategy,
                max_simultaneous: None,
            };
            g.bench_with_input(BenchmarkId::new(strategy.as_str(), n), &m, |b, m| {
                b.iter(|| {
                    choose(
                        policy,
                        std::hint::black_box(m),
                        &situation,
                        Some(AgentId(n / 2)),
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
