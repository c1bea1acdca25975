//! The pure half of ingest on a realistic mix: parse (MIME, charsets,
//! HTML sanitising, bounce and auto-reply detection, content hash) plus
//! reply matching, over every hand-written fixture (Gmail, Outlook,
//! Thunderbird, Apple Mail, charsets, DSNs, hostile HTML…) and the corpus of
//! real-world and malformed mail.
//!
//! `cargo bench --bench ingest` prints mails/s (`mix`) and bytes/s
//! (`mix_bytes`), and the same for the HTML-heavy client shapes alone.
//!
//! The `sanitise` group separates the HTML sanitiser (ammonia) from the
//! parse: `sanitise/html` runs `sanitize_html` alone over every `text/html`
//! part of the same mix (as mail-parser decodes them), `sanitise/html_to_text`
//! the text derived from the sanitised HTML. Parse without sanitising is
//! `ingest/mix` minus those two (per mail, the mix holds fewer HTML parts
//! than mails).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::domain::threading::{MessageIdSigner, reply_refs};
use mailroom::mail::parse::{html_to_text, parse, sanitize_html};

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
    sanitise(c, &mix);
}

/// Every `text/html` part of `mails`, decoded (charset, transfer encoding)
/// by mail-parser as `parse` sees them before sanitising.
fn html_parts(mails: &[Vec<u8>]) -> Vec<String> {
    let parser = mail_parser::MessageParser::default();
    let mut out = Vec::new();
    for raw in mails {
        let Some(msg) = parser.parse(raw.as_slice()) else {
            continue;
        };
        for part in msg.parts.iter().filter(|p| p.is_text_html()) {
            if let Some(html) = part.text_contents() {
                out.push(html.to_string());
            }
        }
    }
    out
}

fn sanitise(c: &mut Criterion, mix: &[Vec<u8>]) {
    let html = html_parts(mix);
    assert!(!html.is_empty(), "the fixtures hold HTML parts");
    let clean: Vec<String> = html.iter().map(|h| sanitize_html(h)).collect();
    let mut group = c.benchmark_group("sanitise");
    group.throughput(Throughput::Elements(html.len() as u64));
    group.bench_function("html", |b| {
        b.iter(|| {
            html.iter()
                .map(|h| sanitize_html(black_box(h)).len())
                .sum::<usize>()
        })
    });
    group.bench_function("html_to_text", |b| {
        b.iter(|| {
            clean
                .iter()
                .map(|h| html_to_text(black_box(h)).len())
                .sum::<usize>()
        })
    });
    let bytes: usize = html.iter().map(String::len).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("html_bytes", |b| {
        b.iter(|| {
            html.iter()
                .map(|h| sanitize_html(black_box(h)).len())
                .sum::<usize>()
        })
    });
    group.finish();
    println!(
        "sanitise: {} HTML parts ({bytes} bytes) in the {} mails of the mix",
        html.len(),
        mix.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
