//! Fuzzing the pure half of ingest: `parse` + `reply_refs` + `subject_token`
//! (+ `split_display_name`) must never panic, and what they produce must be
//! storable (no NUL).
//!
//! The target (bolero) takes raw bytes two ways: as a mail of their own, and
//! as a recipe of mutations (byte flips, cuts, splices, MIME and RFC 2047
//! tokens) applied to a real mail from the fixtures and the corpus. Random
//! bytes alone rarely get past the header parser; mutated real mail reaches
//! the MIME, charset, DSN and HTML paths.
//!
//! - `cargo test` runs it for about a second (bolero's random engine; 64 KiB
//!   inputs).
//! - A long run on stable: `BOLERO_RANDOM_TEST_TIME_MS=3600000 cargo test
//!   --profile fuzz --test it fuzz -- --nocapture` (the `fuzz` profile of
//!   Cargo.toml: release speed with overflow checks and debug assertions). It
//!   prints the number of inputs tried.
//! - With libFuzzer and AddressSanitizer, also on stable (`cargo install
//!   cargo-bolero`; `--rustc-bootstrap` lets stable rustc take the `-Z`
//!   flags): copy the fixtures into a scratch corpus folder (libFuzzer writes
//!   into it), then `cargo bolero test --rustc-bootstrap -T 1200s -l 65536
//!   --corpus-dir /tmp/mail-corpus fuzz::parse_and_thread_match_never_panic`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use mailroom::domain::threading::{MessageIdSigner, reply_refs, split_display_name, subject_token};
use mailroom::mail::parse::{ParseError, parse};

use super::corpus::{FIXTURE_SECRET, assert_storable, fixtures_dir, mails_under};

static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let dir = fixtures_dir();
    let mut seeds: Vec<Vec<u8>> = mails_under(&dir.join("mail"))
        .into_iter()
        .chain(mails_under(&dir.join("corpus")))
        .map(|(_, bytes)| bytes)
        .collect();
    seeds.sort_by_key(Vec::len);
    seeds
});

static SIGNER: LazyLock<MessageIdSigner> =
    LazyLock::new(|| MessageIdSigner::new(FIXTURE_SECRET).unwrap());

/// Tokens that steer mutations into the interesting parts of the parsers.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"--",
    b"--b\r\n",
    b"--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: multipart/alternative; boundary=b\r\n",
    b"Content-Type: multipart/related; boundary=\"b\"; type=\"text/html\"\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
    b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nDiagnostic-Code: smtp; 550\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <",
    b"Content-Type: text/plain; charset=iso-2022-jp; format=flowed; delsp=yes\r\n",
    b"Content-Type: text/html; charset=gb2312\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2%82; filename*1=\"x\"\r\n",
    b"Content-ID: <a@b>\r\n",
    b"=?utf-8?b?",
    b"=?iso-8859-1?q?=E9_",
    b"=?x-unknown?Q?",
    b"?=",
    b"=\r\n",
    b"=E9",
    b"\0",
    b"\xff\xfe",
    b"\xe2\x82",
    b"\x1b$B",
    b"Subject: [SERV#",
    b"[ serv # 99999999999999999999 ]",
    b"In-Reply-To: <mr.serv.1.0123456789abcdef.00000000000000000000000000000000@x>\r\n",
    b"References: <a@b> <c@d>\r\n",
    b"From: \"Doe, Jane\" <",
    b"From: MAILER-DAEMON@x\r\n",
    b"Auto-Submitted: auto-replied\r\n",
    b"<img src=\"https://x/y\"><img src=\"cid:a@b\">",
    b"<style>a{b:url(",
    b"<script>",
    b"<pre>",
    b"<a href=\"javascript:",
    b"&#x0;&amp;&nbsp;",
    b"\"",
    b"<",
    b">",
    b":",
    b";",
];

/// Reads the fuzzer's bytes as a stream of choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let v = u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]);
        v as usize % n
    }

    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = self.below(max + 1).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// A real mail, mutated as `data` says.
fn mutated(data: &[u8]) -> Vec<u8> {
    let mut c = Choices(data);
    let seeds = &*SEEDS;
    let mut m = seeds[c.below(seeds.len())].clone();
    for _ in 0..1 + c.below(8) {
        let at = c.below(m.len() + 1);
        match c.below(7) {
            0 => {
                if let Some(b) = m.get_mut(at) {
                    *b ^= 1 << c.below(8);
                }
            }
            1 => m.truncate(at),
            2 => {
                let end = (at + c.below(256)).min(m.len());
                m.drain(at..end);
            }
            3 => {
                let end = (at + c.below(512)).min(m.len());
                let copy = m[at..end].to_vec();
                let to = c.below(m.len() + 1);
                m.splice(to..to, copy);
            }
            4 => {
                let token = TOKENS[c.below(TOKENS.len())];
                m.splice(at..at, token.iter().copied());
            }
            5 => {
                let raw = c.bytes(64).to_vec();
                m.splice(at..at, raw);
            }
            _ => {
                let other = &seeds[c.below(seeds.len())];
                let from = c.below(other.len() + 1);
                let end = (from + c.below(2048)).min(other.len());
                let cut = (at + c.below(2048)).min(m.len());
                m.splice(at..cut, other[from..end].iter().copied());
            }
        }
    }
    m
}

static RUNS: AtomicU64 = AtomicU64::new(0);
static PARSED: AtomicU64 = AtomicU64::new(0);

static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);

fn check(raw: &[u8]) {
    let runs = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    // Progress for long runs, so that a run cut short still tells its count.
    if runs.is_multiple_of(1_000_000) {
        eprintln!(
            "fuzz: {runs} inputs ({} parsed) after {:.0?}",
            PARSED.load(Ordering::Relaxed),
            START.elapsed()
        );
    }
    match parse(raw) {
        Ok(m) => {
            PARSED.fetch_add(1, Ordering::Relaxed);
            assert_storable(&m, "fuzz input");
            let refs = reply_refs(&m, &SIGNER, "SERV");
            assert!(refs.ours.len() <= refs.message_ids.len());
            let _ = subject_token(&m.subject, "SERV");
            for mb in m.from.iter().chain(&m.to) {
                let _ = split_display_name(mb.name.as_deref(), &mb.address);
            }
        }
        Err(ParseError::ParserPanicked(msg)) => panic!("the parser panicked: {msg}"),
        Err(_) => {}
    }
    // The subject helpers on arbitrary text, too.
    let text = String::from_utf8_lossy(&raw[..raw.len().min(512)]);
    let _ = subject_token(&text, "SERV");
    let _ = SIGNER.verify(&text);
}

#[test]
fn parse_and_thread_match_never_panic() {
    let start = *START;
    bolero::check!()
        .with_max_len(64 * 1024)
        .for_each(|data: &[u8]| {
            check(data);
            check(&mutated(data));
        });
    let (runs, parsed) = (RUNS.load(Ordering::Relaxed), PARSED.load(Ordering::Relaxed));
    eprintln!(
        "fuzz: {runs} inputs ({parsed} parsed as mail) in {:.1?}, 0 panics",
        start.elapsed()
    );
}
