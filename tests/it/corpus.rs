//! The pure half of ingest — `mail::parse` and reply matching — against
//! real-world and hand-written mail. No services needed.
//!
//! - every file of the corpus (`tests/fixtures/corpus`, a copy of
//!   `shared/corpus`) parses or gives a `ParseError`, never panics, and
//!   yields no NUL in any string;
//! - the fixtures of `tests/fixtures/mail` (see its README) check what
//!   ingest relies on: the shapes of Gmail, Outlook, Thunderbird and Apple
//!   Mail, charsets, RFC 2047, format=flowed, nested MIME with `cid:` images,
//!   auto-replies, bounces, broken MIME and hostile HTML.

use std::path::{Path, PathBuf};

use mailroom::domain::InteractionId;
use mailroom::domain::threading::{MessageIdSigner, reply_refs, split_display_name, subject_token};
use mailroom::mail::ParsedMail;
use mailroom::mail::parse::{ParseError, parse};

/// The secret the signed Message-IDs in the fixtures were made with.
pub const FIXTURE_SECRET: &[u8] = b"mailroom-fixture-secret-0123456789abcdef";

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every `.eml`/`.txt` mail under `dir`, sorted, with its path.
pub fn mails_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if (name.ends_with(".eml") || name.ends_with(".txt"))
                && !name.starts_with("LICENSE")
            {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn fixture(name: &str) -> ParsedMail {
    let path = fixtures_dir().join("mail").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn signer() -> MessageIdSigner {
    MessageIdSigner::new(FIXTURE_SECRET).unwrap()
}

/// Every string ingest stores is free of NUL (Postgres `text` refuses it).
pub fn assert_storable(m: &ParsedMail, what: &str) {
    let mut strings: Vec<&str> = vec![&m.subject, &m.text];
    strings.extend(m.message_id.as_deref());
    strings.extend(m.html.as_deref());
    strings.extend(m.in_reply_to.iter().map(String::as_str));
    strings.extend(m.references.iter().map(String::as_str));
    for mb in m.from.iter().chain(&m.reply_to).chain(&m.to).chain(&m.cc) {
        strings.push(&mb.address);
        strings.extend(mb.name.as_deref());
    }
    for a in &m.attachments {
        strings.push(&a.filename);
        strings.push(&a.content_type);
        strings.extend(a.content_id.as_deref());
        assert!(!a.filename.is_empty(), "{what}: empty attachment name");
    }
    if let Some(b) = &m.bounce {
        strings.push(&b.reason);
        strings.extend(b.original_message_id.as_deref());
    }
    for s in strings {
        assert!(!s.contains('\0'), "{what}: NUL in {s:?}");
    }
}

#[test]
fn every_corpus_file_parses_or_is_refused_without_a_panic() {
    let corpus = mails_under(&fixtures_dir().join("corpus"));
    assert!(corpus.len() >= 100, "only {} corpus files", corpus.len());
    let signer = signer();
    let mut refused = Vec::new();
    for (path, raw) in &corpus {
        let what = path
            .strip_prefix(fixtures_dir())
            .unwrap()
            .display()
            .to_string();
        match parse(raw) {
            Ok(m) => {
                assert_storable(&m, &what);
                assert_eq!(m.size, raw.len());
                let _ = reply_refs(&m, &signer, "SERV");
                for mb in m.from.iter() {
                    let _ = split_display_name(mb.name.as_deref(), &mb.address);
                }
            }
            Err(e) => {
                assert!(!matches!(e, ParseError::ParserPanicked(_)), "{what}: {e}");
                assert!(!e.to_string().is_empty());
                refused.push(format!("{what}: {e}"));
            }
        }
    }
    // Today mail-parser reads every file of the corpus; a refusal is not
    // wrong in itself, but a new one deserves a look.
    assert!(refused.is_empty(), "refused: {refused:#?}");
}

#[test]
fn every_fixture_parses_and_is_storable() {
    for (path, raw) in mails_under(&fixtures_dir().join("mail")) {
        let what = path.display().to_string();
        let m = parse(&raw).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_storable(&m, &what);
    }
}

// ---- clients ----

#[test]
fn gmail_reply_matches_our_signed_ids_newest_first() {
    let m = fixture("gmail_reply.eml");
    assert_eq!(m.subject, "Re: [SERV#42] My order has not arrived");
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.address, "maria.garcia.customer@gmail.test");
    assert_eq!(from.name.as_deref(), Some("Maria Garcia"));
    assert_eq!(
        m.message_id.as_deref(),
        Some("CAH7x5Q2=kLmN9pQrStUvWxYz0123456789abcdEF@mail.gmail.com")
    );
    assert_eq!(m.date.unwrap().to_rfc3339(), "2025-03-04T17:14:47+00:00");
    assert!(m.text.contains("It still hasn’t arrived."), "{}", m.text);
    assert!(m.text.contains("María"), "{}", m.text);
    let html = m.html.as_deref().unwrap();
    assert!(
        html.contains("gmail_quote") || html.contains("<blockquote"),
        "{html}"
    );
    assert!(m.attachments.is_empty());
    assert!(!m.auto_reply);
    assert_eq!(m.bounce, None);

    let refs = reply_refs(&m, &signer(), "SERV");
    assert_eq!(refs.ours, vec![InteractionId(42), InteractionId(41)]);
    assert_eq!(refs.message_ids.len(), 2);
    assert!(refs.message_ids[0].starts_with("mr.serv.42."));
    assert_eq!(refs.subject_token, Some(InteractionId(42)));
    // Scoped to the account: the same mail means nothing to SALES.
    assert!(reply_refs(&m, &signer(), "SALES").ours.is_empty());
}

#[test]
fn outlook_reply_decodes_windows_1252_and_last_first_names() {
    let m = fixture("outlook_reply.eml");
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.name.as_deref(), Some("Doe, Jane"));
    assert_eq!(
        split_display_name(from.name.as_deref(), &from.address),
        ("Jane".to_string(), "Doe".to_string())
    );
    assert!(
        m.text
            .contains("The invoice shows €50.00 but the order was €45.00 – could you check?"),
        "{}",
        m.text
    );
    let html = m.html.as_deref().unwrap();
    assert!(html.contains("€50.00"), "{html}");
    // Office's <style> block and <o:p> are gone; the words stay.
    assert!(
        !html.contains("<style") && !html.contains("font-face"),
        "{html}"
    );
    assert!(!html.contains("o:p"), "{html}");
    let refs = reply_refs(&m, &signer(), "SERV");
    assert_eq!(refs.ours, vec![InteractionId(42)]);
    assert_eq!(refs.subject_token, Some(InteractionId(42)));
}

#[test]
fn outlook_reply_without_references_falls_back_to_the_subject_token() {
    let m = fixture("outlook_references_stripped.eml");
    assert!(m.in_reply_to.is_empty() && m.references.is_empty());
    assert!(m.text.contains("Grüße aus München"), "{}", m.text);
    let refs = reply_refs(&m, &signer(), "SERV");
    assert!(refs.ours.is_empty());
    assert!(refs.message_ids.is_empty());
    assert_eq!(refs.subject_token, Some(InteractionId(42)));
}

#[test]
fn thunderbird_flowed_text_and_rfc2231_attachment_names() {
    let m = fixture("thunderbird.eml");
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("René Dupont")
    );
    assert!(
        m.text.contains(
            "I attach the receipt and a photo of the error display, which shows the code E07 when I switch it on."
        ),
        "{}",
        m.text
    );
    // The signature separator is not flowed into the next line.
    assert!(m.text.contains("-- \nRené Dupont"), "{:?}", m.text);
    assert_eq!(m.html, None);
    let names: Vec<(&str, &str, bool)> = m
        .attachments
        .iter()
        .map(|a| (a.filename.as_str(), a.content_type.as_str(), a.inline))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Quittung März 2025.pdf", "application/pdf", false),
            ("display.png", "image/png", false),
        ]
    );
    assert!(m.attachments[0].data.starts_with(b"%PDF-1.4"));
    assert_eq!(m.attachments[1].data.len(), 70);
}

#[test]
fn apple_mail_inline_image_is_kept_and_marked_inline() {
    let m = fixture("apple_mail.eml");
    assert!(m.text.contains("the lid arrived cracked"), "{}", m.text);
    let html = m.html.as_deref().unwrap();
    assert!(
        html.contains(r#"src="cid:F1E2D3C4-B5A6-4978-8695-A4B3C2D1E0F9""#),
        "{html}"
    );
    assert_eq!(m.attachments.len(), 1, "{:?}", m.attachments);
    let img = &m.attachments[0];
    assert_eq!(img.filename, "IMG_0042.png");
    assert_eq!(img.content_type, "image/png");
    assert_eq!(
        img.content_id.as_deref(),
        Some("F1E2D3C4-B5A6-4978-8695-A4B3C2D1E0F9")
    );
    assert!(img.inline);
    assert!(img.data.starts_with(b"\x89PNG"));
}

#[test]
fn nested_related_alternative_keeps_cid_and_separates_attachments() {
    let m = fixture("nested_related_alternative.eml");
    assert_eq!(m.text, "Our logo looks wrong in your newsletter.");
    let html = m.html.as_deref().unwrap();
    assert!(
        html.contains(r#"src="cid:logo.123@beispiel.test""#),
        "{html}"
    );
    assert!(html.contains("<b>logo</b>"), "{html}");
    let logo = m
        .attachments
        .iter()
        .find(|a| a.filename == "logo.png")
        .unwrap();
    assert!(logo.inline);
    assert_eq!(logo.content_id.as_deref(), Some("logo.123@beispiel.test"));
    let pdf = m
        .attachments
        .iter()
        .find(|a| a.filename == "brand-guide.pdf")
        .unwrap();
    assert!(!pdf.inline);
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(m.attachments.len(), 2);
}

// ---- charsets and encodings ----

#[test]
fn legacy_charsets_decode_in_subject_and_body() {
    for (file, subject, body) in [
        (
            "charset_windows1252.eml",
            "Café – 50 € bill",
            "Grüße – the café bill was 50 €.",
        ),
        (
            "charset_iso8859_2.eml",
            "Zażółć gęślą jaźń",
            "zamówienie nr 17 nie dotarło",
        ),
        (
            "charset_koi8r.eml",
            "Привет, мир",
            "Здравствуйте! Мой заказ не пришёл.",
        ),
        (
            "charset_iso2022jp.eml",
            "注文について",
            "注文した商品がまだ届いていません。",
        ),
        (
            "charset_gb2312.eml",
            "你好，世界",
            "您好，我的订单还没有到。",
        ),
    ] {
        let m = fixture(file);
        assert_eq!(m.subject, subject, "{file}");
        assert!(m.text.contains(body), "{file}: {:?}", m.text);
    }
}

#[test]
fn rfc2047_subject_joins_encoded_words_across_charsets_and_folds() {
    let m = fixture("rfc2047_subject.eml");
    assert_eq!(m.subject, "✓ Reclamation n° 12 à régler 😀 plain tail");
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("André Pirard")
    );
}

#[test]
fn format_flowed_with_delsp_and_quotes_is_unwrapped() {
    let m = fixture("format_flowed_delsp.eml");
    assert_eq!(
        m.text,
        "> You wrote that the parcel would arrive on Monday.\n\
         Still waiting. This line is long enough to be wrapped by the client and then joined again by us.\n\
         長い日本語の文です。"
    );
}

// ---- auto-replies and bounces ----

const PLAIN: &str = "From: a@customer.test\r\nTo: support@example.test\r\nSubject: hi\r\n\
                     Date: Mon, 10 Mar 2025 12:00:00 +0000\r\nMessage-ID: <p@customer.test>\r\n";

#[test]
fn every_auto_reply_header_kind_is_recognised() {
    assert!(fixture("auto_reply_exchange_oof.eml").auto_reply);
    for header in [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "Auto-Submitted: auto-notified; owner-email=\"x@y.test\"",
        "auto-submitted: AUTO-REPLIED",
        "X-Autoreply: yes",
        "X-Autorespond: vacation",
        "Precedence: bulk",
        "Precedence: junk",
        "Precedence: list",
        "Precedence: auto_reply",
        "Precedence:  Bulk ",
        "X-Loop: support@example.test",
    ] {
        let raw = format!("{header}\r\n{PLAIN}\r\nbody\r\n");
        assert!(parse(raw.as_bytes()).unwrap().auto_reply, "{header}");
    }
    for header in [
        "Auto-Submitted: no",
        "Auto-Submitted: No ",
        "Precedence: first-class",
        "X-Mailer: x",
    ] {
        let raw = format!("{header}\r\n{PLAIN}\r\nbody\r\n");
        assert!(!parse(raw.as_bytes()).unwrap().auto_reply, "{header}");
    }
    // A forwarded auto-reply inside a customer's mail is not an auto-reply.
    let raw = format!(
        "{PLAIN}Content-Type: message/rfc822\r\n\r\nAuto-Submitted: auto-replied\r\nSubject: x\r\n\r\nhi\r\n"
    );
    assert!(!parse(raw.as_bytes()).unwrap().auto_reply);
}

#[test]
fn cpython_dsn_msg_16_is_a_bounce_with_the_original_message_id() {
    let raw = std::fs::read(fixtures_dir().join("corpus/cpython-email/msg_16.txt")).unwrap();
    let m = parse(&raw).unwrap();
    let b = m.bounce.expect("msg_16 is a bounce");
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("002001c144a6$8752e060$56104586@oxy.edu")
    );
    assert!(
        b.reason.contains("recipient reached disk quota"),
        "{}",
        b.reason
    );
    assert!(
        b.reason.contains("jangel1@cougar.noc.ucla.edu"),
        "{}",
        b.reason
    );
    // It is also list mail (Precedence: bulk).
    assert!(m.auto_reply);
}

#[test]
fn postfix_dsn_names_our_outgoing_message_and_the_diagnostic() {
    let m = fixture("bounce_postfix.eml");
    let b = m.bounce.expect("a bounce");
    let id = b.original_message_id.unwrap();
    assert_eq!(
        signer().verify(&id),
        Some(("SERV".to_string(), InteractionId(57)))
    );
    assert!(
        b.reason.starts_with("nobody@customer.test: 550 5.1.1"),
        "{}",
        b.reason
    );
    assert!(
        b.reason.contains("User unknown in virtual mailbox table"),
        "{}",
        b.reason
    );
}

#[test]
fn a_delay_warning_is_not_a_bounce() {
    let m = fixture("dsn_delayed.eml");
    assert_eq!(m.bounce, None);
    assert!(m.auto_reply);
}

// ---- broken and hostile mail ----

#[test]
fn broken_mime_parses_with_what_can_be_read() {
    let m = fixture("truncated_mime.eml");
    assert!(
        m.text.contains("The start of a mail that was cut off."),
        "{}",
        m.text
    );

    let m = fixture("undeclared_8bit_headers.eml");
    assert!(
        m.subject.contains("ckfrage zur Bestellung"),
        "{}",
        m.subject
    );
    assert_eq!(m.from.as_ref().unwrap().address, "joerg@mail.test");

    let m = fixture("bad_base64.eml");
    assert_eq!(m.subject, "bad base64");

    let m = fixture("unknown_charset.eml");
    assert!(m.text.contains("plain ascii survives"), "{}", m.text);
    assert!(m.subject.contains("unknown charset"), "{}", m.subject);
}

#[test]
fn hostile_html_is_neutralised() {
    let m = fixture("hostile_html.eml");
    let html = m.html.as_deref().unwrap();
    for bad in [
        "<script",
        "document.cookie",
        "onload",
        "onerror",
        "onclick",
        "javascript:",
        "url(",
        "<iframe",
        "<object",
        "<form",
        "<input",
        "<svg",
        "<base",
        "<meta",
        "<link",
        "position",
        "background=",
        "data:text",
        "bg.png",
        "bg2.png",
        "table.png",
        "svg.png",
        "x.css",
    ] {
        assert!(!html.contains(bad), "{bad:?} survived in {html}");
    }
    // The tracking pixel is not loaded, but can be on request.
    assert!(!html.contains(r#" src="https://evil.test"#), "{html}");
    assert!(
        html.contains(r#"data-remote-src="https://evil.test/track.gif?id=42""#),
        "{html}"
    );
    // A plain https link stays, opening in a new tab without a referrer.
    assert!(
        html.contains(
            r#"<a href="https://evil.test/login" rel="noopener noreferrer" target="_blank">"#
        ) || (html.contains(r#"href="https://evil.test/login""#)
            && html.contains(r#"rel="noopener noreferrer""#)
            && html.contains(r#"target="_blank""#)),
        "{html}"
    );
    assert!(
        html.contains("styled") && html.contains("color:red"),
        "{html}"
    );
    assert!(!m.text.contains("document.location"), "{}", m.text);
    assert!(
        m.text.contains("Dear agent, click here or log in."),
        "{}",
        m.text
    );
}

// ---- missing headers, headerless input, content hash ----

#[test]
fn missing_message_id_from_and_date_still_parse() {
    let m = parse(b"Subject: only a subject\r\n\r\nbody\r\n").unwrap();
    assert_eq!(m.message_id, None);
    assert_eq!(m.from, None);
    assert_eq!(m.date, None);
    assert_eq!(m.subject, "only a subject");
    assert_eq!(m.text, "body");
}

#[test]
fn headerless_text_is_a_mail_and_binary_or_empty_is_refused() {
    let m = parse(b"just some words\nfrom a broken client\n").unwrap();
    assert_eq!(m.text, "just some words\nfrom a broken client");
    assert_eq!(m.subject, "");
    assert!(m.from.is_none());

    assert_eq!(parse(b""), Err(ParseError::Empty));
    assert_eq!(parse(b" \r\n\t "), Err(ParseError::Empty));
    let binary: Vec<u8> = (0u8..=255).cycle().take(4096).collect();
    assert!(matches!(parse(&binary), Err(ParseError::NotAMail { .. })));
    assert!(matches!(
        parse(b"\0\0\0\0\x01\x02"),
        Err(ParseError::NotAMail { .. })
    ));
}

#[test]
fn nul_bytes_never_reach_strings() {
    let raw = b"From: A\0B <a@x.test>\r\nSubject: s\0ub\r\nMessage-ID: <i\0d@x>\r\n\r\nbo\0dy\r\n";
    let m = parse(raw).unwrap();
    assert_storable(&m, "nul");
    assert_eq!(m.subject, "sub");
    assert_eq!(m.text, "body");
}

#[test]
fn content_hash_ignores_trace_headers_but_not_content() {
    let base = fixture_raw("gmail_reply.eml");
    let h = parse(&base).unwrap().content_hash;

    let mut redelivered = b"Received: from relay.test by mx.example.test; Tue, 4 Mar 2025 09:16:00 -0800\r\nX-Spam-Score: 0.1\r\n".to_vec();
    redelivered.extend_from_slice(&base);
    assert_eq!(parse(&redelivered).unwrap().content_hash, h);
    // Line endings re-written by a relay do not matter either.
    let lf: Vec<u8> = String::from_utf8(base.clone())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    assert_eq!(parse(&lf).unwrap().content_hash, h);

    let other_body = String::from_utf8(base.clone())
        .unwrap()
        .replace("1Z999AA10123456784", "1Z999AA10123456785");
    assert_ne!(parse(other_body.as_bytes()).unwrap().content_hash, h);
    let other_subject = String::from_utf8(base.clone())
        .unwrap()
        .replace("has not arrived", "has arrived");
    assert_ne!(parse(other_subject.as_bytes()).unwrap().content_hash, h);
    let other_date = String::from_utf8(base)
        .unwrap()
        .replace("18:14:47", "18:14:48");
    assert_ne!(parse(other_date.as_bytes()).unwrap().content_hash, h);

    // Without a Message-ID the hash is still there, and still content-bound.
    let a = parse(b"From: a@x.test\r\nSubject: s\r\n\r\none\r\n")
        .unwrap()
        .content_hash;
    let b = parse(b"From: a@x.test\r\nSubject: s\r\n\r\ntwo\r\n")
        .unwrap()
        .content_hash;
    assert_ne!(a, b);
}

fn fixture_raw(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("mail").join(name)).unwrap()
}

#[test]
fn subject_token_is_read_from_decoded_subjects() {
    let raw = "Subject: =?UTF-8?Q?Re=3A_=5BSERV=2342=5D_caf=C3=A9?=\r\nFrom: a@x.test\r\n\r\nx\r\n";
    let m = parse(raw.as_bytes()).unwrap();
    assert_eq!(m.subject, "Re: [SERV#42] café");
    assert_eq!(subject_token(&m.subject, "SERV"), Some(InteractionId(42)));
}
