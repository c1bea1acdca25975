//! The pure half of ingest on a realistic mix: parse (MIME, charsets,
//! HTML sanitising, bounce and auto-reply detection, content hash) plus
//! reply matching, over every hand-written fixture (Gmail, Outlook,
//! Thunderbird, Apple Mail, charsets, DSNs, hostile HTML…) and the corpus of
//! real-world and malformed mail.
//!
//! `cargo bench --bench ingest` prints mails/s (`mix`) and bytes/s
//! (`mix_bytes`), and the same for the HTML-heavy client shapes alone.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::domain::threading::{MessageIdSigner, reply_refs};
use mailroom::mail::parse::parse;

fn mails_under(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            mails_under(&path, out);
        } else if (name.ends_with(".eml") || name.ends_with(".txt")) && !name.starts_with("LICENSE")
        {
            out.push(std::fs::read(&path).unwrap());
        }
    }
}

fn ingest_one(raw: &[u8], signer: &MessageIdSigner) -> usize {
    match parse(raw) {
        Ok(mail) => {
            let refs = reply_refs(&mail, signer, "SERV");
            mail.text.len() + refs.message_ids.len()
        }
        Err(_) => 0,
    }
}

fn bench(c: &mut Criterion) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut mix = Vec::new();
    mails_under(&fixtures.join("mail"), &mut mix);
    mails_under(&fixtures.join("corpus"), &mut mix);
    let mut clients = Vec::new();
    for name in [
        "gmail_reply.eml",
        "outlook_reply.eml",
        "thunderbird.eml",
        "apple_mail.eml",
        "nested_related_alternative.eml",
    ] {
        clients.push(std::fs::read(fixtures.join("mail").join(name)).unwrap());
    }
    let signer = MessageIdSigner::new(b"mailroom-fixture-secret-0123456789abcdef").unwrap();

    let mut group = c.benchmark_group("ingest");
    for (label, set) in [("mix", &mix), ("clients", &clients)] {
        let bytes: usize = set.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(set.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                set.iter()
                    .map(|raw| ingest_one(black_box(raw), &signer))
                    .sum::<usize>()
            })
        });
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("{label}_bytes"), |b| {
            b.iter(|| {
                set.iter()
                    .map(|raw| ingest_one(black_box(raw), &signer))
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
