//! Unit tests of the pieces of `parse`; whole mails are tested against the
//! fixtures and the corpus in `tests/it/corpus.rs`.

use super::*;

#[test]
fn content_hash_is_the_documented_construction() {
    let raw = b"Received: x\r\nFrom: A <a@x.test>\r\nSubject:  Hi\r\n there \r\nDate: d\r\n\r\nbody\r\nline\r\n\r\n";
    let msg = MessageParser::default().parse(&raw[..]).unwrap();
    let got = content_hash(
        raw,
        msg.headers(),
        msg.root_part().raw_body_offset() as usize,
    );

    let mut h = Sha256::new();
    h.update(b"mailroom.content-hash.v1\n");
    // From, Date, Subject: in that order, whatever the order in the mail.
    for v in [&b"A <a@x.test>"[..], b"d", b"Hi there"] {
        h.update([1u8]);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    h.update(b"body\nline");
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(got, want);
}

#[test]
fn content_hash_tells_absent_from_empty_headers() {
    let a = parse(b"From: a@x.test\r\nSubject:\r\n\r\nbody").unwrap();
    let b = parse(b"From: a@x.test\r\n\r\nbody").unwrap();
    assert_ne!(a.content_hash, b.content_hash);
}

#[test]
fn attachment_names_are_sanitised() {
    assert_eq!(safe_filename("../../etc/passwd").as_deref(), Some("passwd"));
    assert_eq!(
        safe_filename("C:\\Users\\x\\report.pdf").as_deref(),
        Some("report.pdf")
    );
    assert_eq!(safe_filename("a\u{0}b\r\n.txt").as_deref(), Some("ab.txt"));
    assert_eq!(safe_filename(".."), None);
    assert_eq!(safe_filename("  "), None);
    assert_eq!(
        safe_filename(&"x".repeat(500)).map(|s| s.chars().count()),
        Some(200)
    );
    assert_eq!(extension_for("image/jpeg"), "jpg");
    assert_eq!(extension_for("application/x-unknown"), "bin");
}

#[test]
fn a_made_up_name_is_given_to_unnamed_parts() {
    let raw = "From: a@x.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
               --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
               --b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
               --b--\r\n";
    let m = parse(raw.as_bytes()).unwrap();
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].filename, "attachment-1.png");
    assert_eq!(m.attachments[0].content_type, "image/png");
}

#[test]
fn impossible_dates_are_none_and_zones_are_applied() {
    let d = |s: &str| {
        parse(format!("Date: {s}\r\nFrom: a@x.test\r\n\r\nx").as_bytes())
            .unwrap()
            .date
    };
    assert_eq!(
        d("Tue, 4 Mar 2025 18:14:47 +0100").map(|t| t.to_rfc3339()),
        Some("2025-03-04T17:14:47+00:00".to_string())
    );
    assert_eq!(
        d("Tue, 4 Mar 2025 18:14:47 -0330").map(|t| t.to_rfc3339()),
        Some("2025-03-04T21:44:47+00:00".to_string())
    );
    assert_eq!(d("Mon, 30 Feb 2025 10:00:00 +0000"), None);
    assert_eq!(d("yesterday"), None);
}

#[test]
fn field_names_are_printable_ascii_without_colon() {
    assert!(is_field_name("X-Loop"));
    assert!(!is_field_name(""));
    assert!(!is_field_name("bad name"));
    assert!(!is_field_name("ümlaut"));
}

#[test]
fn addresses_keep_their_local_part_and_lower_case_their_domain() {
    let m = parse(b"From: \"Jane\" <Jane.Doe@Example.TEST>\r\nTo: a@X.test, B <b@Y.TEST>\r\n\r\nx")
        .unwrap();
    let from = m.from.unwrap();
    assert_eq!(from.address, "Jane.Doe@example.test");
    assert_eq!(from.name.as_deref(), Some("Jane"));
    let to: Vec<&str> = m.to.iter().map(|t| t.address.as_str()).collect();
    assert_eq!(to, ["a@x.test", "b@y.test"]);
}

#[test]
fn ids_are_deduplicated_in_order() {
    let m =
        parse(b"From: a@x.test\r\nReferences: <a@x> <b@x> <a@x>\r\nIn-Reply-To: <b@x>\r\n\r\nx")
            .unwrap();
    assert_eq!(m.references, ["a@x", "b@x"]);
    assert_eq!(m.in_reply_to, ["b@x"]);
}

#[test]
fn html_only_mail_gets_a_text_rendering() {
    let raw = "From: a@x.test\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
               <p>Hello <b>there</b></p><p>Line&nbsp;two<br>three</p><script>x()</script>";
    let m = parse(raw.as_bytes()).unwrap();
    assert_eq!(m.text, "Hello there\n\nLine two\nthree");
    assert!(m.html.unwrap().contains("<b>there</b>"));
}

#[test]
fn body_lines_without_a_blank_line_before_them_are_kept() {
    // CPython sample msg_35.
    let raw = b"From: aperson@dom.ain\nTo: bperson@dom.ain\nSubject: here's something interesting\ncounter to RFC 5322, there's no separating newline here\n";
    let m = parse(raw).unwrap();
    assert_eq!(m.subject, "here's something interesting");
    assert_eq!(
        m.text,
        "counter to RFC 5322, there's no separating newline here"
    );
    // An ordinary folded header is not mistaken for body.
    let m = parse(b"Subject: a\r\n b\r\nFrom: x@y.test\r\n\r\nbody").unwrap();
    assert_eq!((m.subject.as_str(), m.text.as_str()), ("a b", "body"));
}
