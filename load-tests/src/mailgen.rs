//! Realistic customer mail for load: what a support address receives.
//!
//! Each mail is built from its index and the run's seed, so a run can be
//! reproduced and no mail has to be held in memory before it is sent. The
//! mix (shares are of mails, not bytes):
//!
//! - 55 % plain text, UTF-8, 8bit;
//! - 30 % `multipart/alternative`, text and HTML (with the styles, tables
//!   and remote images that webmail clients produce, for the sanitiser);
//! - 10 % `multipart/mixed` with one base64 attachment (PDF, PNG or CSV);
//! - 5 % look like replies to a conversation mailroom has never seen
//!   (`Re:`, `In-Reply-To` and `References` to unknown Message-IDs): the
//!   thread look-up runs and misses, so they still open new interactions.
//!
//! Sizes run from 1 to 20 KB, most of them small (the square of a uniform
//! draw). Senders come from a pool of 2,000 customers, so contacts are both
//! created and found again. Every Message-ID is unique to the run and index.

use std::fmt::Write as _;

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const MIN_SIZE: usize = 1024;
const MAX_SIZE: usize = 20 * 1024;
const CUSTOMERS: u64 = 2_000;

const FIRST: &[&str] = &[
    "Jane", "Omar", "Zoë", "Lukas", "Mei", "Carlos", "Aoife", "Dmitri", "Fatima", "Søren", "Priya",
    "Jürgen", "Ana", "Kwame", "Élodie", "Tomasz",
];
const LAST: &[&str] = &[
    "Customer", "Haddad", "Müller", "Okafor", "Nakamura", "García", "O'Brien", "Ivanova", "Dubois",
    "Kowalski", "Rossi", "Nguyen", "Larsen", "Silva", "Brown", "Patel",
];
const SUBJECTS: &[&str] = &[
    "Order {n} has not arrived",
    "Refund for invoice {n}",
    "Cannot log in to my account",
    "Question about my subscription",
    "Wrong size delivered (order {n})",
    "Billing address change",
    "Damaged item – photos attached",
    "Cancel my plan, please",
    "Where is my parcel? Tracking {n}",
    "Invoice {n} charged twice",
    "Password reset mail never came",
    "Complaint about the courier",
];
const SENTENCES: &[&str] = &[
    "I ordered this more than two weeks ago and still have nothing.",
    "Could you please tell me what is going on with my order?",
    "The tracking page has shown the same status since Monday.",
    "I was charged twice, once on the 3rd and again on the 5th.",
    "Please refund the second payment to the same card.",
    "My customer number is in the signature below.",
    "I tried to reset my password but the mail never arrives.",
    "The box was crushed and the item inside is broken, see the photos.",
    "I would like to exchange it for the next size up.",
    "Thank you in advance for your help — it is rather urgent.",
    "Le colis n'est toujours pas arrivé, pouvez-vous vérifier ?",
    "Die Rechnung enthält einen Fehler bei der Mehrwertsteuer.",
    "El pedido llegó incompleto: faltan dos artículos.",
    "I have already called twice and was told someone would mail me.",
    "The amount was €49.90, not €59.90 as on the invoice.",
    "If this cannot be solved this week I will cancel my subscription.",
];

/// Builds the mails of one run, addressed to one mailbox.
pub struct MailGen {
    seed: u64,
    to: String,
    /// Whether subjects end with the mail's [`MailGen::subject_tag`].
    tagged: bool,
}

/// The kinds of mail in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Plain,
    Alternative,
    Attachment,
    Reply,
}

impl MailGen {
    pub fn new(to: &str) -> MailGen {
        MailGen {
            seed: rand::random(),
            to: to.to_string(),
            tagged: false,
        }
    }

    /// Like [`MailGen::new`], but every subject ends with a token unique to
    /// the run and the mail (` (ref rt-<seed>-<index>)`), so that whatever
    /// shows only the subject (an `offer` frame) names its mail.
    pub fn tagged(to: &str) -> MailGen {
        MailGen {
            tagged: true,
            ..MailGen::new(to)
        }
    }

    /// The token a tagged mail's subject ends with. Not `[KEY#n]`-shaped,
    /// which reply matching would read as a thread reference.
    pub fn subject_tag(&self, index: u64) -> String {
        format!("rt-{:016x}-{index}", self.seed)
    }

    /// The index of a mail of this run, from a subject holding its tag.
    pub fn index_of_subject(&self, subject: &str) -> Option<u64> {
        let prefix = format!("rt-{:016x}-", self.seed);
        let at = subject.find(&prefix)? + prefix.len();
        let digits: String = subject[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// The Message-ID (without angle brackets) of mail `index`.
    pub fn message_id(&self, index: u64) -> String {
        format!("load.{:016x}.{index}@customer.example.test", self.seed)
    }

    /// The index of a mail of this run, from its Message-ID (without angle
    /// brackets); `None` for any other mail.
    pub fn index_of(&self, message_id: &str) -> Option<u64> {
        let prefix = format!("load.{:016x}.", self.seed);
        message_id
            .strip_prefix(&prefix)?
            .strip_suffix("@customer.example.test")?
            .parse()
            .ok()
    }

    /// Mail `index` of the run, as whole RFC 5322 bytes (CRLF lines).
    pub fn mail(&self, index: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let shape = match rng.random_range(0..100) {
            0..55 => Shape::Plain,
            55..85 => Shape::Alternative,
            85..95 => Shape::Attachment,
            _ => Shape::Reply,
        };
        let u: f64 = rng.random();
        let target = MIN_SIZE + ((MAX_SIZE - MIN_SIZE) as f64 * u * u) as usize;

        let customer = rng.random_range(0..CUSTOMERS);
        let first = FIRST[(customer % FIRST.len() as u64) as usize];
        let last = LAST[((customer / FIRST.len() as u64) % LAST.len() as u64) as usize];
        let local: String = format!("{first}.{last}")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase();
        let from = format!("{local}{customer}@customer{}.example.test", customer % 7);
        let n = 100_000 + rng.random_range(0..900_000u32);
        let mut subject = SUBJECTS
            .choose(&mut rng)
            .unwrap_or(&SUBJECTS[0])
            .replace("{n}", &n.to_string());
        let mut headers = String::new();
        if shape == Shape::Reply {
            subject = format!("Re: {subject}");
            let parent = format!("<{:016x}@mail.customer.example.test>", rng.random::<u64>());
            let root = format!("<{:016x}@mail.customer.example.test>", rng.random::<u64>());
            let _ = write!(
                headers,
                "In-Reply-To: {parent}\r\nReferences: {root} {parent}\r\n"
            );
        }
        if self.tagged {
            subject = format!("{subject} (ref {})", self.subject_tag(index));
        }
        let date = chrono::Utc::now().to_rfc2822();
        let mut mail = format!(
            "Return-Path: <{from}>\r\nFrom: {} <{from}>\r\nTo: Support <{to}>\r\nSubject: {}\r\nDate: {date}\r\n\
             Message-ID: <{mid}>\r\n{headers}MIME-Version: 1.0\r\nX-Mailer: mailroom-load\r\n",
            display_name(first, last),
            encode_subject(&subject),
            to = self.to,
            mid = self.message_id(index),
        );

        let greeting = "Hello,\r\n\r\n";
        let signature =
            format!("\r\n\r\nKind regards,\r\n{first} {last}\r\nCustomer no. {customer}\r\n");
        match shape {
            Shape::Plain | Shape::Reply => {
                let room = target.saturating_sub(mail.len() + 120);
                let body = text(&mut rng, room.max(200));
                let _ = write!(
                    mail,
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{greeting}{body}{signature}"
                );
                if shape == Shape::Reply {
                    let _ = write!(
                        mail,
                        "\r\nOn Mon, 23 Nov 2026 09:12, Support wrote:\r\n> Thank you for contacting us.\r\n> We are looking into it.\r\n"
                    );
                }
            }
            Shape::Alternative => {
                // The text and the HTML say the same thing: ~40 % of the
                // room each, the rest is markup.
                let room = target.saturating_sub(mail.len() + 600);
                let body = text(&mut rng, (room * 2 / 5).max(200));
                let boundary = format!("alt-{:016x}", rng.random::<u64>());
                let html = html(&body);
                let _ = write!(
                    mail,
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                     --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{greeting}{body}{signature}\r\n\
                     --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n\
                     --{boundary}--\r\n"
                );
            }
            Shape::Attachment => {
                let boundary = format!("mix-{:016x}", rng.random::<u64>());
                let len = 300 + rng.random_range(0..600);
                let body = text(&mut rng, len);
                // base64 grows bytes by 4/3 (plus line ends).
                let room = target.saturating_sub(mail.len() + body.len() + 500);
                let raw_len = (room * 3 / 4).max(256);
                let (name, ctype, data) = attachment(&mut rng, raw_len);
                let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
                let _ = write!(
                    mail,
                    "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                     --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{greeting}{body}{signature}\r\n\
                     --{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n"
                );
                for line in encoded.as_bytes().chunks(76) {
                    mail.push_str(std::str::from_utf8(line).unwrap_or_default());
                    mail.push_str("\r\n");
                }
                let _ = write!(mail, "--{boundary}--\r\n");
            }
        }
        mail.into_bytes()
    }
}

/// `"O'Brien, Jane"` needs quoting; most names do not.
fn display_name(first: &str, last: &str) -> String {
    let name = format!("{first} {last}");
    if name.is_ascii() && !name.contains('\'') {
        name
    } else {
        // RFC 2047 B-encoding, as clients send non-ASCII names.
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
        )
    }
}

fn encode_subject(subject: &str) -> String {
    if subject.is_ascii() {
        subject.to_string()
    } else {
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(subject.as_bytes())
        )
    }
}

/// About `len` bytes of sentences in paragraphs, lines wrapped under 78.
fn text(rng: &mut StdRng, len: usize) -> String {
    let mut out = String::with_capacity(len + 100);
    let mut line = 0usize;
    while out.len() < len {
        let s = SENTENCES.choose(rng).unwrap_or(&SENTENCES[0]);
        if line + s.len() > 72 {
            out.push_str("\r\n");
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(s);
        line += s.len();
        if rng.random_range(0..6) == 0 {
            out.push_str("\r\n\r\n");
            line = 0;
        }
    }
    out
}

/// The HTML twin of a text body, shaped like webmail output.
fn html(text: &str) -> String {
    let mut out = String::from(
        "<html><head><meta charset=\"utf-8\"><style>p{margin:0 0 1em}.sig{color:#777}</style></head>\
         <body><div dir=\"ltr\"><p>Hello,</p>",
    );
    for para in text.split("\r\n\r\n") {
        let para = para
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace("\r\n", " ");
        let _ = write!(out, "<p>{para}</p>\r\n");
    }
    out.push_str(
        "<table class=\"sig\"><tr><td>Kind regards</td></tr></table>\
         <img src=\"https://tracker.example.test/open.gif\" width=\"1\" height=\"1\" onload=\"x()\">\
         </div></body></html>",
    );
    out
}

/// An attachment of about `len` bytes: a PDF-looking blob, a PNG-looking
/// blob, or a CSV export.
fn attachment(rng: &mut StdRng, len: usize) -> (&'static str, &'static str, Vec<u8>) {
    match rng.random_range(0..3) {
        0 => {
            let mut data = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
            data.extend((0..len).map(|_| rng.random::<u8>()));
            data.extend_from_slice(b"\n%%EOF\n");
            ("invoice.pdf", "application/pdf", data)
        }
        1 => {
            let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
            data.extend((0..len).map(|_| rng.random::<u8>()));
            ("photo.png", "image/png", data)
        }
        _ => {
            let mut data = String::from("date;order;amount;currency\n");
            while data.len() < len {
                let _ = writeln!(
                    data,
                    "2026-11-{:02};{};{}.{:02};EUR",
                    rng.random_range(1..29),
                    rng.random_range(100_000..999_999),
                    rng.random_range(1..500),
                    rng.random_range(0..100)
                );
            }
            ("statement.csv", "text/csv", data.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_parse_as_customer_mail_with_unique_ids_and_sizes_in_range() {
        let generator = MailGen::new("support@example.test");
        let mut ids = std::collections::HashSet::new();
        let (mut min, mut max, mut with_attachment, mut with_html) = (usize::MAX, 0, 0, 0);
        for i in 0..400 {
            let raw = generator.mail(i);
            let parsed = mailroom::mail::parse::parse(&raw).expect("parses");
            assert_eq!(parsed.message_id, Some(generator.message_id(i)));
            assert_eq!(generator.index_of(&generator.message_id(i)), Some(i));
            assert!(ids.insert(generator.message_id(i)));
            assert!(!parsed.subject.is_empty(), "mail {i} has a subject");
            assert!(!parsed.auto_reply && parsed.bounce.is_none(), "mail {i}");
            assert!(parsed.from.is_some(), "mail {i} has a sender");
            with_attachment += usize::from(!parsed.attachments.is_empty());
            with_html += usize::from(parsed.html.is_some());
            min = min.min(raw.len());
            max = max.max(raw.len());
        }
        assert_eq!(
            MailGen::new("x@example.test").index_of(&generator.message_id(3)),
            None
        );
        assert!(min >= 900, "smallest {min}");
        assert!(max <= MAX_SIZE + 2048, "largest {max}");
        assert!(
            (20..80).contains(&with_attachment),
            "{with_attachment} with attachments"
        );
        assert!((80..170).contains(&with_html), "{with_html} with HTML");
    }

    #[test]
    fn tagged_subjects_name_their_mail_and_survive_parsing() {
        let generator = MailGen::tagged("support@example.test");
        for i in [0, 7, 19, 1234] {
            let parsed = mailroom::mail::parse::parse(&generator.mail(i)).expect("parses");
            assert_eq!(
                generator.index_of_subject(&parsed.subject),
                Some(i),
                "{}",
                parsed.subject
            );
        }
        assert_eq!(generator.index_of_subject("Order 5 has not arrived"), None);
        let other = MailGen::tagged("support@example.test");
        assert_eq!(other.index_of_subject(&generator.subject_tag(3)), None);
        assert!(
            !String::from_utf8_lossy(&MailGen::new("x@example.test").mail(1)).contains("(ref rt-")
        );
    }
}
