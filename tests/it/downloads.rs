//! Downloads and canned answers (issue #5, parts 10 and 11) over HTTP, on
//! both stores: attachment headers (type, disposition, the inline rule,
//! nosniff, hostile names), the download permission per role, `.eml` with
//! and without attachments (read back with mail-parser), zips, the PDF
//! transcript (read back with poppler's `pdftotext` and `pdfinfo`), and
//! canned answers (CRUD, rendering, who may).
//!
//! Mail enters through the store's real ingest (`mail::parse` and
//! `Store::ingest_mail`, as the mailbox actor commits it); notes and uploads
//! through the store's `add_note` and `store_upload`.

use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mailroom::domain::{AttachmentId, InteractionId, MessageId};
use mailroom::store::{IngestMail, IngestOutcome, NewNote, NewUpload};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Backend, Options, TestApp, spawn_app};
use crate::support::on_both_stores;

/// One queue `support` (alice only; bob belongs to no queue) and the
/// account `SERV`, whose servers are never reached (port 1).
fn config(extra: &str) -> String {
    format!(
        "[[queues]]\nname = \"support\"\nstrategy = \"ring_all\"\noffer_timeout_secs = 30\nsticky_secs = 0\nagents = [\"alice\"]\n\
         [[accounts]]\nkey = \"SERV\"\naddress = \"serv@example.test\"\nqueue = \"support\"\n\
         imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
         smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n{extra}"
    )
}

async fn app_with(backend: Backend, extra: &str) -> TestApp {
    spawn_app(Options {
        backend,
        extra: config(extra),
        ..Options::default()
    })
    .await
}

/// A 1×1 PNG.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// A customer mail: text (Cyrillic and Greek) and HTML, two files both
/// named `a.pdf`, a PNG, and an HTML file whose encoded name carries CR LF.
fn customer_mail(tag: &str) -> Vec<u8> {
    format!(
        "From: Ivan Petrov <ivan.petrov@customer.test>\r\n\
         To: Support <serv@example.test>\r\n\
         Subject: Order 42 missing parcel\r\n\
         Message-ID: <{tag}@customer.test>\r\n\
         Date: Thu, 13 Mar 2025 15:00:00 +0100\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
         \r\n\
         --outer\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
         \r\n\
         --alt\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Здравствуйте, мой заказ не пришёл.\r\n\
         Καλημέρα, η παραγγελία μου δεν έφτασε.\r\n\
         --alt\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         <p>Здравствуйте, мой заказ не пришёл.</p>\r\n\
         --alt--\r\n\
         --outer\r\n\
         Content-Type: application/pdf; name=\"a.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         JVBERi0xLjQKJSBmaXJzdAo=\r\n\
         --outer\r\n\
         Content-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         JVBERi0xLjQKJSBzZWNvbmQK\r\n\
         --outer\r\n\
         Content-Type: image/png\r\n\
         Content-Disposition: attachment; filename=\"pixel.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {PIXEL_PNG}\r\n\
         --outer\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Disposition: attachment; filename=\"=?utf-8?q?evil=0D=0AX-Injected=3A_1.html?=\"\r\n\
         \r\n\
         <script>alert(1)</script>\r\n\
         --outer--\r\n"
    )
    .into_bytes()
}

static UID: AtomicU32 = AtomicU32::new(1);

/// Commit a mail to `SERV` as the mailbox actor does; its interaction and message.
async fn ingest(app: &TestApp, raw: &[u8]) -> (InteractionId, MessageId) {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let parsed = mailroom::mail::parse::parse(raw).expect("the test mail parses");
    let refs =
        mailroom::domain::threading::reply_refs(&parsed, &app.app.state.signer, &account.key);
    let outcome = store
        .ingest_mail(IngestMail {
            account: account.id,
            account_key: account.key.clone(),
            queue: account.queue_id,
            position: Some((1, UID.fetch_add(1, Ordering::Relaxed))),
            internal_date: None,
            raw: raw.to_vec(),
            parsed,
            refs,
        })
        .await
        .expect("ingest");
    match outcome {
        IngestOutcome::Created {
            interaction,
            message,
            ..
        } => (interaction.id, message),
        other => panic!("expected a new interaction, got {other:?}"),
    }
}

/// The attachments of a message: (id, filename, content_type).
async fn attachments_of(
    app: &TestApp,
    i: InteractionId,
    m: MessageId,
) -> Vec<(AttachmentId, String, String)> {
    app.app
        .state
        .store
        .messages(i)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == m)
        .expect("the message")
        .attachments
        .into_iter()
        .map(|a| (a.id, a.filename, a.content_type))
        .collect()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
        .unwrap_or_default()
}

async fn status_of(app: &TestApp, token: &str, path: &str) -> u16 {
    app.get(token, path).await.status().as_u16()
}

// ---- tests -------------------------------------------------------------------------

async fn attachments_download_with_safe_headers(backend: Backend) {
    let app = app_with(backend, "").await;
    let (i, m) = ingest(&app, &customer_mail("dl-headers")).await;
    let files = attachments_of(&app, i, m).await;
    assert_eq!(files.len(), 4, "{files:?}");
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;

    // A PDF: its type, always an attachment, nosniff.
    let (pdf, _, _) = &files[0];
    let res = app
        .get(&alice, &format!("/api/v1/attachments/{pdf}?inline=true"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "application/pdf");
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"a.pdf\"; filename*=UTF-8''a.pdf"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"%PDF-1.4\n% first\n");

    // The PNG may be previewed inline; without ?inline it is an attachment.
    let (png, _, _) = &files[2];
    let res = app
        .get(&alice, &format!("/api/v1/attachments/{png}?inline=true"))
        .await;
    assert_eq!(header(&res, "content-type"), "image/png");
    assert!(header(&res, "content-disposition").starts_with("inline; filename=\"pixel.png\""));
    let res = app.get(&alice, &format!("/api/v1/attachments/{png}")).await;
    assert!(header(&res, "content-disposition").starts_with("attachment;"));

    // HTML is never inline, and its hostile name adds no header.
    let (html, name, ctype) = &files[3];
    assert_eq!(ctype, "text/html");
    let res = app
        .get(&alice, &format!("/api/v1/attachments/{html}?inline=true"))
        .await;
    assert_eq!(res.status(), 200);
    let disposition = header(&res, "content-disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        res.headers().get("x-injected").is_none(),
        "stored name {name:?}"
    );
    assert!(!disposition.contains(['\r', '\n']));
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    // Someone who may not read the interaction: 403; unknown or malformed ids: 404.
    assert_eq!(
        status_of(&app, &bob, &format!("/api/v1/attachments/{pdf}")).await,
        403
    );
    assert_eq!(
        status_of(&app, &alice, "/api/v1/attachments/999999").await,
        404
    );
    assert_eq!(status_of(&app, &alice, "/api/v1/attachments/x1").await, 404);

    // An upload not yet used: its uploader's alone, whatever its name.
    let store = &app.app.state.store;
    let alice_id = store.agent_by_username("alice").await.unwrap().id;
    let upload = store
        .store_upload(NewUpload {
            agent: alice_id,
            filename: "evil\r\nX-Injected: 1\".html".into(),
            content_type: "text/html\r\nX-Injected: 2".into(),
            data: b"<b>hi</b>".to_vec(),
        })
        .await
        .expect("upload");
    let res = app
        .get(&alice, &format!("/api/v1/attachments/{}", upload.id))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-injected").is_none());
    let disposition = header(&res, "content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"evil"),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''evil%20%20X-Injected%3A%201%22.html"),
        "{disposition}"
    );
    assert_eq!(header(&res, "content-type"), "application/octet-stream");
    let sup = app.login("sup").await;
    assert_eq!(
        status_of(&app, &sup, &format!("/api/v1/attachments/{}", upload.id)).await,
        404
    );
}

async fn downloading_attachments_is_a_role_permission(backend: Backend) {
    let app = app_with(
        backend,
        "[permissions]\ndownload_attachments = [\"supervisor\", \"admin\"]\n",
    )
    .await;
    let (i, m) = ingest(&app, &customer_mail("dl-perm")).await;
    let files = attachments_of(&app, i, m).await;
    let alice = app.login("alice").await;
    let sup = app.login("sup").await;
    let pdf = files[0].0;

    let res = app.get(&alice, &format!("/api/v1/attachments/{pdf}")).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    for path in [
        format!("/api/v1/messages/{m}/attachments.zip"),
        format!("/api/v1/interactions/{i}/attachments.zip"),
        format!("/api/v1/messages/{m}/raw"),
        format!("/api/v1/interactions/{i}/transcript.pdf?attachments=true"),
    ] {
        assert_eq!(status_of(&app, &alice, &path).await, 403, "{path}");
    }
    // What holds no attachment bytes stays open to her.
    for path in [
        format!("/api/v1/messages/{m}/raw?attachments=false"),
        format!("/api/v1/interactions/{i}/transcript.pdf"),
    ] {
        assert_eq!(status_of(&app, &alice, &path).await, 200, "{path}");
    }
    assert_eq!(
        status_of(&app, &sup, &format!("/api/v1/attachments/{pdf}")).await,
        200
    );
}

async fn eml_with_and_without_attachments(backend: Backend) {
    let app = app_with(backend, "").await;
    let raw = customer_mail("dl-eml");
    let (i, m) = ingest(&app, &raw).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;

    let res = app.get(&alice, &format!("/api/v1/messages/{m}/raw")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "message/rfc822");
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"Order 42 missing parcel.eml\"; filename*=UTF-8''Order%2042%20missing%20parcel.eml"
    );
    let full = res.bytes().await.unwrap().to_vec();
    assert_eq!(full, raw, "the stored source, byte for byte");
    let parsed = mail_parser::MessageParser::default().parse(&full).unwrap();
    assert_eq!(parsed.attachment_count(), 4);

    let res = app
        .get(
            &alice,
            &format!("/api/v1/messages/{m}/raw?attachments=false"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let bare = res.bytes().await.unwrap().to_vec();
    let parsed = mail_parser::MessageParser::default().parse(&bare).unwrap();
    assert_eq!(parsed.attachment_count(), 0);
    assert_eq!(parsed.subject(), Some("Order 42 missing parcel"));
    assert_eq!(parsed.message_id(), Some("dl-eml@customer.test"));
    assert!(parsed.body_text(0).unwrap().contains("Καλημέρα"));
    assert!(parsed.body_html(0).unwrap().contains("Здравствуйте"));
    assert!(bare.len() < full.len());

    assert_eq!(
        status_of(&app, &bob, &format!("/api/v1/messages/{m}/raw")).await,
        403
    );
    assert_eq!(
        status_of(&app, &alice, "/api/v1/messages/999999/raw").await,
        404
    );

    // Outgoing mail stored without its source is rebuilt from its fields.
    let store = &app.app.state.store;
    let out = store
        .insert_outgoing_message(
            i,
            mailroom::store::NewOutgoing {
                message_id_header: "dl-out@example.test".into(),
                to: vec![mailroom::mail::Mailbox {
                    name: Some("Ivan Petrov".into()),
                    address: "ivan.petrov@customer.test".into(),
                }],
                subject: "Re: Order 42 missing parcel".into(),
                text: "Здравствуйте, Иван! It ships today.".into(),
            },
        )
        .await
        .expect("outgoing message");
    let res = app
        .get(&alice, &format!("/api/v1/messages/{out}/raw"))
        .await;
    assert_eq!(res.status(), 200);
    let rebuilt = res.bytes().await.unwrap().to_vec();
    let parsed = mail_parser::MessageParser::default()
        .parse(&rebuilt)
        .unwrap();
    assert_eq!(parsed.subject(), Some("Re: Order 42 missing parcel"));
    assert_eq!(parsed.message_id(), Some("dl-out@example.test"));
    assert_eq!(
        parsed
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address()),
        Some("serv@example.test")
    );
    assert_eq!(
        parsed
            .to()
            .and_then(|t| t.first())
            .and_then(|a| a.address()),
        Some("ivan.petrov@customer.test")
    );
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("Здравствуйте, Иван! It ships today.")
    );
    assert_eq!(parsed.attachment_count(), 0);

    // Notes are never mail.
    let alice_id = store.agent_by_username("alice").await.unwrap().id;
    let note = store
        .add_note(NewNote {
            interaction: i,
            author: alice_id,
            for_agent: None,
            text: "internal".into(),
            attachments: Vec::new(),
        })
        .await
        .expect("note");
    let res = app
        .get(&alice, &format!("/api/v1/messages/{}/raw", note.id))
        .await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("notes"));
}

/// A reply sent through compose (its MIME is stored with the outbox row):
/// the `.eml` is that MIME, and without attachments the file is cut out.
async fn eml_of_a_sent_reply(backend: Backend) {
    let app = app_with(backend, "").await;
    let (i, _) = ingest(&app, &customer_mail("dl-reply")).await;
    let store = &app.app.state.store;
    let alice_id = store.agent_by_username("alice").await.unwrap().id;
    let version = store.interaction(i).await.unwrap().version;
    assert!(matches!(
        store.claim(i, alice_id, version).await.unwrap(),
        mailroom::store::ClaimOutcome::Won(_)
    ));
    let upload = store
        .store_upload(NewUpload {
            agent: alice_id,
            filename: "label.pdf".into(),
            content_type: "application/pdf".into(),
            data: b"%PDF-1.4\n% label\n".to_vec(),
        })
        .await
        .unwrap();
    let alice = app.login("alice").await;
    let res = app
        .send_json(
            Method::POST,
            &alice,
            &format!("/api/v1/interactions/{i}/messages"),
            json!({"mode": "reply", "text": "Здравствуйте! The label is attached.", "attachments": [upload.id]}),
        )
        .await;
    assert_eq!(res.status().as_u16() / 100, 2, "{:?}", res.text().await);
    let sent: Value = res.json().await.unwrap();
    let m = sent["id"].as_str().unwrap().to_string();

    let full = app
        .get(&alice, &format!("/api/v1/messages/{m}/raw"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let parsed = mail_parser::MessageParser::default().parse(&full).unwrap();
    assert_eq!(parsed.attachment_count(), 1);
    assert_eq!(parsed.subject(), sent["subject"].as_str());
    assert!(
        parsed
            .subject()
            .unwrap()
            .contains("Order 42 missing parcel")
    );
    let bare = app
        .get(
            &alice,
            &format!("/api/v1/messages/{m}/raw?attachments=false"),
        )
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let parsed = mail_parser::MessageParser::default().parse(&bare).unwrap();
    assert_eq!(parsed.attachment_count(), 0);
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("The label is attached.")
    );
    assert_eq!(
        parsed.in_reply_to().as_text(),
        Some("dl-reply@customer.test")
    );
}

/// The whole road: a mail sent through Postfix, delivered to Dovecot, read
/// by the account's mailbox over IMAP; its downloads are what arrived.
async fn a_mail_through_postfix_and_dovecot_downloads_as_delivered(backend: Backend) {
    let mailbox = crate::support::mail::fresh_address("dl");
    let app = crate::ingest::app_with_account(backend, &mailbox, "").await;
    let sent = customer_mail("dl-e2e");
    crate::support::mail::smtp_send("ivan.petrov@customer.test", &[&mailbox], &sent).await;
    let interaction = crate::ingest::wait_interactions(&app, 1).await.remove(0);
    let messages = crate::ingest::wait_messages(&app, &interaction, 1).await;
    let m = messages[0].id;
    let alice = app.login("alice").await;

    let full = app
        .get(&alice, &format!("/api/v1/messages/{m}/raw"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    // Postfix added its trace header; the customer's bytes follow unchanged.
    assert!(full.starts_with(b"Return-Path:") || full.windows(9).any(|w| w == b"Received:"));
    let body_at = sent.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        full.ends_with(&sent[body_at..]),
        "the body arrives byte for byte"
    );
    let parsed = mail_parser::MessageParser::default().parse(&full).unwrap();
    assert_eq!(parsed.attachment_count(), 4);

    let bare = app
        .get(
            &alice,
            &format!("/api/v1/messages/{m}/raw?attachments=false"),
        )
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let parsed = mail_parser::MessageParser::default().parse(&bare).unwrap();
    assert_eq!(parsed.attachment_count(), 0);
    assert!(
        parsed.header("Received").is_some(),
        "trace headers are kept"
    );
    assert!(parsed.body_text(0).unwrap().contains("Καλημέρα"));

    let pdf = messages[0].attachments[0].id;
    let res = app.get(&alice, &format!("/api/v1/attachments/{pdf}")).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"%PDF-1.4\n% first\n");
    let res = app
        .get(
            &alice,
            &format!("/api/v1/interactions/{}/transcript.pdf", interaction.id),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = poppler("pdftotext", &res.bytes().await.unwrap());
    assert!(
        text.contains("Здравствуйте, мой заказ не пришёл."),
        "{text}"
    );
}

fn zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    (0..archive.len())
        .map(|n| {
            let mut f = archive.by_index(n).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

async fn zips_of_a_message_and_of_an_interaction(backend: Backend) {
    let app = app_with(backend, "").await;
    let (i, m) = ingest(&app, &customer_mail("dl-zip")).await;
    let alice = app.login("alice").await;

    let res = app
        .get(&alice, &format!("/api/v1/messages/{m}/attachments.zip"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "application/zip");
    assert!(header(&res, "content-disposition").contains(&format!("message-{m}-attachments.zip")));
    let entries = zip_entries(&res.bytes().await.unwrap());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(&names[..3], ["a.pdf", "a (2).pdf", "pixel.png"]);
    assert!(!names[3].contains(['/', '\\', '\r', '\n']), "{names:?}");
    assert_eq!(entries[0].1, b"%PDF-1.4\n% first\n");
    assert_eq!(entries[1].1, b"%PDF-1.4\n% second\n");

    // The interaction's zip also has a note's file, under a unique name.
    let store = &app.app.state.store;
    let alice_id = store.agent_by_username("alice").await.unwrap().id;
    let upload = store
        .store_upload(NewUpload {
            agent: alice_id,
            filename: "A.PDF".into(),
            content_type: "application/pdf".into(),
            data: b"%PDF-1.4\n% note\n".to_vec(),
        })
        .await
        .unwrap();
    store
        .add_note(NewNote {
            interaction: i,
            author: alice_id,
            for_agent: None,
            text: "see file".into(),
            attachments: vec![upload.id],
        })
        .await
        .unwrap();
    let res = app
        .get(&alice, &format!("/api/v1/interactions/{i}/attachments.zip"))
        .await;
    assert_eq!(res.status(), 200);
    let entries = zip_entries(&res.bytes().await.unwrap());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names[4], "A (3).PDF");
    assert_eq!(entries[4].1, b"%PDF-1.4\n% note\n");

    // A message without attachments has no zip.
    let (_, plain) = ingest(
        &app,
        b"From: x@customer.test\r\nTo: serv@example.test\r\nSubject: plain\r\nMessage-ID: <dl-plain@customer.test>\r\n\r\nhello\r\n",
    )
    .await;
    assert_eq!(
        status_of(
            &app,
            &alice,
            &format!("/api/v1/messages/{plain}/attachments.zip")
        )
        .await,
        404
    );
    let bob = app.login("bob").await;
    assert_eq!(
        status_of(
            &app,
            &bob,
            &format!("/api/v1/interactions/{i}/attachments.zip")
        )
        .await,
        403
    );
}

/// `pdftotext` and `pdfinfo` come with poppler-utils (scripts/services.sh
/// installs them); without them this test cannot judge the PDF, so it fails
/// saying so rather than passing blind.
fn poppler(tool: &str, pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pdf");
    std::fs::write(&path, pdf).unwrap();
    let mut cmd = Command::new(tool);
    cmd.arg(&path);
    if tool == "pdftotext" {
        cmd.arg("-");
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{tool} (poppler-utils) is needed to check the PDF: {e}; run scripts/services.sh")
    });
    assert!(
        out.status.success(),
        "{tool} refused the PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn pages(pdf: &[u8]) -> u32 {
    poppler("pdfinfo", pdf)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo gives the page count")
}

async fn the_transcript_is_a_readable_pdf(backend: Backend) {
    let app = app_with(backend, "").await;
    let (i, _) = ingest(&app, &customer_mail("dl-pdf")).await;
    let store = &app.app.state.store;
    let alice_id = store.agent_by_username("alice").await.unwrap().id;
    let sup_id = store.agent_by_username("sup").await.unwrap().id;
    store
        .add_note(NewNote {
            interaction: i,
            author: alice_id,
            for_agent: None,
            text: "Customer is a VIP, ship today.".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    store
        .add_note(NewNote {
            interaction: i,
            author: sup_id,
            for_agent: Some(alice_id),
            text: "Please call him back.".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    let alice = app.login("alice").await;

    let res = app
        .get(&alice, &format!("/api/v1/interactions/{i}/transcript.pdf"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "application/pdf");
    assert!(header(&res, "content-disposition").starts_with("attachment;"));
    let pdf = res.bytes().await.unwrap().to_vec();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = poppler("pdftotext", &pdf);
    for expected in [
        "Order 42 missing parcel",
        "SERV",
        "support",
        "Ivan Petrov",
        "Здравствуйте, мой заказ не пришёл.",
        "Καλημέρα, η παραγγελία μου δεν έφτασε.",
        "INTERNAL NOTE",
        "Customer is a VIP, ship today.",
        "note for the agent alice Test (alice)",
        "Please call him back.",
        "a.pdf (application/pdf",
        "pixel.png (image/png",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let listed = pages(&pdf);

    // With attachments, the PNG is appended as a page of its own.
    let res = app
        .get(
            &alice,
            &format!("/api/v1/interactions/{i}/transcript.pdf?attachments=true"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let with_images = res.bytes().await.unwrap().to_vec();
    assert_eq!(pages(&with_images), listed + 1);
    assert!(poppler("pdftotext", &with_images).contains("attachment: pixel.png"));

    let bob = app.login("bob").await;
    assert_eq!(
        status_of(
            &app,
            &bob,
            &format!("/api/v1/interactions/{i}/transcript.pdf")
        )
        .await,
        403
    );
    assert_eq!(
        status_of(&app, &alice, "/api/v1/interactions/999999/transcript.pdf").await,
        404
    );
}

async fn canned_answers_crud_rendering_and_authorization(backend: Backend) {
    let app = app_with(backend, "").await;
    let (i, _) = ingest(&app, &customer_mail("dl-canned")).await;
    let admin = app.login("admin").await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;

    let body = json!({
        "title": "Greeting",
        "text": "Hi {{contact.first_name}} {{ contact.last_name }}, {{agent.first_name}} ({{agent.name}}) here about #{{interaction.id}} \"{{interaction.subject}}\" on {{account.key}}; {{contact.email}}. {{unknown.thing}}",
        "html": "<p>Hi {{contact.first_name}}</p><script>alert(1)</script>"
    });
    let res = app
        .send_json(Method::POST, &alice, "/api/v1/canned-answers", body.clone())
        .await;
    assert_eq!(res.status(), 403, "agents may not write");
    let res = app
        .send_json(Method::POST, &admin, "/api/v1/canned-answers", body)
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["id"]
        .as_str()
        .expect("an opaque string id")
        .to_string();
    assert_eq!(created["title"], "Greeting");
    let html = created["html"].as_str().unwrap();
    assert!(
        html.contains("{{contact.first_name}}") && !html.contains("script"),
        "{html}"
    );

    let bad = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/canned-answers",
            json!({"title": " ", "text": "x"}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let bad = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/canned-answers",
            json!({"title": "t", "txt": "x"}),
        )
        .await;
    assert_eq!(bad.status(), 400);

    // Everyone lists them as written; only admins change them.
    let list: Value = app
        .get(&alice, "/api/v1/canned-answers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let res = app
        .send_json(
            Method::PUT,
            &alice,
            &format!("/api/v1/canned-answers/{id}"),
            json!({"title": "x", "text": "y"}),
        )
        .await;
    assert_eq!(res.status(), 403);
    let second = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/canned-answers",
            json!({"title": "Bye", "text": "Bye {{contact.first_name}}", "html": "<p>Bye <b>{{agent.name}}</b></p>"}),
        )
        .await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    let second_id = second["id"].as_str().unwrap().to_string();
    let res = app
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/canned-answers/{second_id}"),
            json!({"title": "Bye", "text": "Bye {{contact.first_name}}!", "html": "<p>Bye <b>{{agent.name}}</b> &amp; co</p>"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let one: Value = app
        .get(&alice, &format!("/api/v1/canned-answers/{second_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["text"], "Bye {{contact.first_name}}!");

    // Rendered for the interaction, for the caller.
    let res = app
        .get(&alice, &format!("/api/v1/interactions/{i}/canned-answers"))
        .await;
    assert_eq!(res.status(), 200);
    let rendered: Value = res.json().await.unwrap();
    let rendered = rendered.as_array().unwrap();
    assert_eq!(rendered.len(), 2);
    assert_eq!(rendered[0]["title"], "Bye", "by title");
    assert_eq!(rendered[0]["text"], "Bye Ivan!");
    assert_eq!(rendered[0]["html"], "<p>Bye <b>alice Test</b> &amp; co</p>");
    assert_eq!(
        rendered[1]["text"],
        format!(
            "Hi Ivan Petrov, alice (alice Test) here about #{i} \"Order 42 missing parcel\" on SERV; ivan.petrov@customer.test. {{{{unknown.thing}}}}"
        )
    );
    assert_eq!(rendered[1]["html"], "<p>Hi Ivan</p>");
    assert_eq!(
        status_of(
            &app,
            &bob,
            &format!("/api/v1/interactions/{i}/canned-answers")
        )
        .await,
        403
    );

    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            &format!("/api/v1/canned-answers/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        status_of(&app, &admin, &format!("/api/v1/canned-answers/{id}")).await,
        404
    );
    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            &format!("/api/v1/canned-answers/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        status_of(&app, &admin, "/api/v1/canned-answers/abc").await,
        404
    );
}

on_both_stores!(
    attachments_download_with_safe_headers,
    downloading_attachments_is_a_role_permission,
    eml_with_and_without_attachments,
    eml_of_a_sent_reply,
    a_mail_through_postfix_and_dovecot_downloads_as_delivered,
    zips_of_a_message_and_of_an_interaction,
    the_transcript_is_a_readable_pdf,
    canned_answers_crud_rendering_and_authorization,
);

/// The permission names roles; anything else refuses to start, with the key.
#[test]
fn an_unknown_role_in_download_attachments_is_a_config_error() {
    let err = mailroom::config::Settings::from_toml(
        "[permissions]\ndownload_attachments = [\"agent\", \"boss\"]\n",
    )
    .expect_err("an unknown role is refused");
    assert!(
        err.issues
            .iter()
            .any(|i| i.key == "permissions.download_attachments" && i.message.contains("boss")),
        "{err}"
    );
    let ok = mailroom::config::Settings::from_toml("[permissions]\ndownload_attachments = []\n")
        .expect("nobody may download");
    assert!(ok.permissions.download_attachments.is_empty());
    let default = mailroom::config::Settings::from_toml("").expect("defaults");
    assert_eq!(default.permissions.download_attachments.len(), 3);
}
