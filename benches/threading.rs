//! Thread matching (DESIGN.md, "Threads"): the pure half in
//! `domain::threading`, and the store's look-up of the thread an inbound
//! mail continues, against a store holding many interactions.
//!
//! Pure (`threading/…`):
//! - `verify/*`: checking one Message-ID against our signing key — one of
//!   ours (an HMAC-SHA256), one of ours altered (same work, refused), a
//!   foreign id (refused before any HMAC). `make`: signing a new one.
//! - `subject_token/*`: finding `[BNCH#123]` in a subject, or not.
//! - `reply_refs/*`: everything a parsed mail says about its thread
//!   (In-Reply-To + References deduplicated, each verified, the token):
//!   a new mail, a reply to one of ours with 5 references, a long thread
//!   with 30 foreign references.
//!
//! Store (`thread_lookup/<store>/…`), on a store prefilled with
//! `THREADS` interactions (10,000 under `cargo bench`; 50 under `cargo test`,
//! which runs each bench once), each opened by one ingested mail:
//! - `ingest_reply/{ours,references,subject_token}`: `Store::ingest_mail`
//!   of a reply matched by each rule in DESIGN.md's order (our signed
//!   Message-ID, a stored message's Message-ID, the subject token), i.e.
//!   the whole ingest transaction of a reply that is appended to its open
//!   thread (checked on every mail). The look-up is private to the store's
//!   ingest, so this is the real path that contains it.
//! - `ingest_new/{no_refs,unknown_refs_10}`: a new mail without references,
//!   and one whose 10 references match nothing (10 failed look-ups, then a
//!   new interaction): the difference is the cost of those look-ups.
//! - `sql_by_message_id`: the look-up query alone, `BY_MESSAGE_ID` as the
//!   store's ingest runs it (copied from `src/store/*/ingest.rs`; the bench
//!   checks it finds the thread ingest would), on a connection of its own.
//!
//! Only `ingest_mail` (or the query) is timed; building and parsing each
//! mail is not (`iter_custom`). SQLite: a temporary file. Postgres: a fresh
//! database on `MAILROOM_TEST_PG_URL`, dropped afterwards; without the
//! variable the group prints one line saying it was not run.
//!
//! Run: `cargo bench --bench threading`.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::domain::InteractionId;
use mailroom::domain::threading::{MessageIdSigner, ReplyRefs, reply_refs, subject_token};
use mailroom::mail::parse::parse;
use mailroom::store::{IngestMail, IngestOutcome};
use support::{ACCOUNT_KEY, Db, Fixture};
use tokio::runtime::Runtime;

const SECRET: &[u8] = b"mailroom-bench-secret-0123456789abcdef";
const DOMAIN: &str = "example.test";

/// The SQL of `BY_MESSAGE_ID` in `src/store/{sqlite,postgres}/ingest.rs`.
const BY_MESSAGE_ID_SQLITE: &str = "SELECT interaction_id FROM messages
     WHERE account_id = ?1 AND message_id_header = ?2
     ORDER BY id DESC LIMIT 1";
const BY_MESSAGE_ID_PG: &str = "SELECT interaction_id FROM messages
     WHERE account_id = $1 AND message_id_header = $2
     ORDER BY id DESC LIMIT 1";

struct Mail<'a> {
    n: u64,
    message_id: String,
    subject: &'a str,
    in_reply_to: Option<&'a str>,
    references: &'a [String],
}

/// A plain-text customer mail, unique by `n` (body and Message-ID), from
/// one of 2,000 customers.
fn raw(m: &Mail) -> Vec<u8> {
    let mut s = format!(
        "From: Customer {c} <customer{c}@customer.test>\r\nTo: support@{DOMAIN}\r\n\
         Subject: {}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}>\r\n",
        m.subject,
        m.message_id,
        c = m.n % 2000,
    );
    if let Some(id) = m.in_reply_to {
        s.push_str(&format!("In-Reply-To: <{id}>\r\n"));
    }
    if !m.references.is_empty() {
        let refs: Vec<String> = m.references.iter().map(|r| format!("<{r}>")).collect();
        s.push_str(&format!("References: {}\r\n", refs.join("\r\n ")));
    }
    s.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nmy order {n} has not arrived yet. Could you look into it?\r\n\r\n\
         Thanks,\r\nCustomer\r\n",
        n = m.n
    ));
    s.into_bytes()
}

fn pure(c: &mut Criterion) {
    let signer = MessageIdSigner::new(SECRET).expect("signer");
    let ours = signer.make(ACCOUNT_KEY, InteractionId(123_456), DOMAIN);
    // The same id with the last MAC digit changed: all the work, refused.
    let mut tampered = ours.clone();
    let at = tampered.find('@').unwrap() - 1;
    let last = if tampered.as_bytes()[at] == b'0' {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(at..at + 1, last);
    let foreign = "CAKx9f+3qWZ_7dGm8=Vh1pQ@mail.gmail.com".to_string();
    assert!(signer.verify(&ours).is_some() && signer.verify(&tampered).is_none());

    let mut g = c.benchmark_group("threading");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify/ours", |b| {
        b.iter(|| signer.verify(black_box(&ours)))
    });
    g.bench_function("verify/ours_tampered", |b| {
        b.iter(|| signer.verify(black_box(&tampered)))
    });
    g.bench_function("verify/foreign", |b| {
        b.iter(|| signer.verify(black_box(&foreign)))
    });
    g.bench_function("make", |b| {
        b.iter(|| signer.make(ACCOUNT_KEY, black_box(InteractionId(123_456)), DOMAIN))
    });

    for (name, subject) in [
        ("none", "Where is my order? It was due last Tuesday"),
        ("token", "Re: [BNCH#123456] Where is my order?"),
        (
            "token_spaced",
            "RE: AW: [ bnch # 123456 ] Where is my order?",
        ),
        (
            "other_brackets",
            "[EXT] [ticket 77] [SERV#9] Re: Where is my order?",
        ),
    ] {
        g.bench_function(format!("subject_token/{name}"), |b| {
            b.iter(|| subject_token(black_box(subject), ACCOUNT_KEY))
        });
    }

    let new_mail = parse(&raw(&Mail {
        n: 1,
        message_id: "new-1@customer.test".into(),
        subject: "Where is my order?",
        in_reply_to: None,
        references: &[],
    }))
    .expect("parse");
    let mut five: Vec<String> = (0..4).map(|i| format!("c{i}@customer.test")).collect();
    five.push(ours.clone());
    let reply_to_ours = parse(&raw(&Mail {
        n: 2,
        message_id: "reply-2@customer.test".into(),
        subject: "Re: [BNCH#123456] Where is my order?",
        in_reply_to: Some(&ours),
        references: &five,
    }))
    .expect("parse");
    let thirty: Vec<String> = (0..30).map(|i| format!("m{i}.x@lists.test")).collect();
    let long_thread = parse(&raw(&Mail {
        n: 3,
        message_id: "reply-3@customer.test".into(),
        subject: "Re: Re: Re: a long thread",
        in_reply_to: Some(&thirty[29]),
        references: &thirty,
    }))
    .expect("parse");
    assert_eq!(
        reply_refs(&reply_to_ours, &signer, ACCOUNT_KEY).ours,
        vec![InteractionId(123_456)]
    );
    for (name, mail) in [
        ("new_mail", &new_mail),
        ("reply_to_ours_5_refs", &reply_to_ours),
        ("foreign_30_refs", &long_thread),
    ] {
        g.bench_function(format!("reply_refs/{name}"), |b| {
            b.iter(|| reply_refs(black_box(mail), &signer, ACCOUNT_KEY))
        });
    }
    g.finish();
}

/// The prefilled store: each thread's interaction and its first mail's id.
struct Threads {
    f: Arc<Fixture>,
    threads: Vec<(InteractionId, String)>,
    signer: MessageIdSigner,
    /// The next IMAP UID (positions are unique per account).
    uid: AtomicU32,
}

impl Threads {
    fn ingest_request(&self, raw: Vec<u8>) -> IngestMail {
        let parsed = parse(&raw).expect("parse");
        let refs: ReplyRefs = reply_refs(&parsed, &self.signer, ACCOUNT_KEY);
        IngestMail {
            account: self.f.account,
            account_key: ACCOUNT_KEY.into(),
            queue: self.f.queue,
            position: Some((1, self.uid.fetch_add(1, Ordering::Relaxed))),
            internal_date: None,
            raw,
            parsed,
            refs,
        }
    }
}

async fn prefill(f: Arc<Fixture>, count: usize) -> Threads {
    let t = Arc::new(Threads {
        f,
        threads: Vec::new(),
        signer: MessageIdSigner::new(SECRET).expect("signer"),
        uid: AtomicU32::new(1),
    });
    // A few ingests at once (the Postgres pool has 16 connections; SQLite
    // serialises them anyway): the fill is setup, only its speed matters.
    let workers = 4;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for n in (w..count).step_by(workers) {
                    let message_id = format!("seed-{n}@customer.test");
                    let subject = format!("Order {n} has not arrived");
                    let raw = raw(&Mail {
                        n: n as u64,
                        message_id: message_id.clone(),
                        subject: &subject,
                        in_reply_to: None,
                        references: &[],
                    });
                    match t.f.store.ingest_mail(t.ingest_request(raw)).await {
                        Ok(IngestOutcome::Created { interaction, .. }) => {
                            out.push((interaction.id, message_id))
                        }
                        other => panic!("seed mail {n}: {other:?}"),
                    }
                }
                out
            })
        })
        .collect();
    let mut threads = Vec::with_capacity(count);
    for task in tasks {
        threads.extend(task.await.expect("fill task"));
    }
    let t = Arc::into_inner(t).expect("fill tasks are done");
    Threads { threads, ..t }
}

#[derive(Clone, Copy)]
enum Case {
    Ours,
    References,
    SubjectToken,
    NoRefs,
    UnknownRefs,
}

fn bench_store(c: &mut Criterion, label: &str, rt: &Runtime, url: &str, count: usize) {
    let f = Arc::new(rt.block_on(support::fixture(url, 1)));
    let started = Instant::now();
    let t = rt.block_on(prefill(f, count));
    println!(
        "thread_lookup/{label}: store prefilled with {count} interactions in {:.1?}",
        started.elapsed()
    );
    let next = AtomicU32::new(0);
    let mut g = c.benchmark_group(format!("thread_lookup/{label}"));
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, case) in [
        ("ingest_reply/ours", Case::Ours),
        ("ingest_reply/references", Case::References),
        ("ingest_reply/subject_token", Case::SubjectToken),
        ("ingest_new/no_refs", Case::NoRefs),
        ("ingest_new/unknown_refs_10", Case::UnknownRefs),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let (thread, seed_id) = &t.threads[n % t.threads.len()];
                        let ours = t.signer.make(ACCOUNT_KEY, *thread, DOMAIN);
                        let token = format!("Re: [{ACCOUNT_KEY}#{thread}] Order");
                        let unknown: Vec<String> = (0..10)
                            .map(|i| format!("gone-{n}-{i}@elsewhere.test"))
                            .collect();
                        let (subject, in_reply_to, references): (&str, _, &[String]) = match case {
                            Case::Ours => ("Re: Order", Some(ours.as_str()), &[]),
                            Case::References => ("Re: Order", Some(seed_id.as_str()), &[]),
                            Case::SubjectToken => (&token, None, &[]),
                            Case::NoRefs => ("A new question", None, &[]),
                            Case::UnknownRefs => ("Re: an old thread", None, &unknown),
                        };
                        let request = t.ingest_request(raw(&Mail {
                            n: 1_000_000 + n as u64,
                            message_id: format!("bench-{n}@customer.test"),
                            subject,
                            in_reply_to,
                            references,
                        }));
                        let t0 = Instant::now();
                        let outcome = t.f.store.ingest_mail(request).await.expect("ingest");
                        total += t0.elapsed();
                        match (case, outcome) {
                            (
                                Case::Ours | Case::References | Case::SubjectToken,
                                IngestOutcome::Appended { interaction, .. },
                            ) => assert_eq!(interaction.id, *thread),
                            (Case::NoRefs | Case::UnknownRefs, IngestOutcome::Created { .. }) => {}
                            (_, other) => panic!("{name}: unexpected {other:?}"),
                        }
                    }
                    total
                })
            })
        });
    }
    g.finish();
    sql_lookup(c, label, rt, url, &t);
}

/// The look-up query alone, on a connection of the bench's own.
fn sql_lookup(c: &mut Criterion, label: &str, rt: &Runtime, url: &str, t: &Threads) {
    let account = t.f.account.get();
    let mut g = c.benchmark_group(format!("thread_lookup/{label}"));
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut k = 0usize;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).expect("open the bench database");
        g.bench_function("sql_by_message_id", |b| {
            b.iter(|| {
                k += 7919;
                let (thread, id) = &t.threads[k % t.threads.len()];
                let found: i64 = conn
                    .prepare_cached(BY_MESSAGE_ID_SQLITE)
                    .expect("prepare")
                    .query_row(rusqlite::params![account, id], |r| r.get(0))
                    .expect("found");
                assert_eq!(found, thread.get());
            })
        });
    } else {
        let (client, stmt) = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            let stmt = client.prepare(BY_MESSAGE_ID_PG).await.expect("prepare");
            (client, stmt)
        });
        g.bench_function("sql_by_message_id", |b| {
            b.iter(|| {
                k += 7919;
                let (thread, id) = &t.threads[k % t.threads.len()];
                let row = rt
                    .block_on(client.query_one(&stmt, &[&account, id]))
                    .expect("found");
                assert_eq!(row.get::<_, i64>(0), thread.get());
            })
        });
    }
    g.finish();
}

fn store(c: &mut Criterion) {
    let count = if support::bench_mode() { 10_000 } else { 50 };
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    };
    {
        let rt = runtime();
        let (url, _db) = Db::sqlite();
        bench_store(c, "sqlite", &rt, &url, count);
    }
    match support::pg_admin_url() {
        Err(why) => support::skip_postgres("thread_lookup", &why),
        Ok(admin) => {
            let rt = runtime();
            let (url, db) = rt.block_on(Db::postgres(&admin));
            bench_store(c, "postgres", &rt, &url, count);
            drop(rt);
            drop(db);
        }
    }
}

criterion_group!(benches, pure, store);
criterion_main!(benches);
