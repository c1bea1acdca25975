//! Contract: ingest (invariants 1 and 8): one transaction per mail,
//! idempotent on the IMAP position and on Message-ID + content, contacts,
//! attachments, hostile input and concurrent ingests. Threading (DESIGN.md
//! "Threads") is in `threading.rs`, quarantine, the watermark and server
//! secrets in `bookkeeping.rs`; both share the harness and fixtures here.
//!
//! Mails are written here as raw RFC 5322 bytes and go through the real
//! parser (`mail::parse::parse`) and reply matching (`reply_refs`), as the
//! mailbox actor does.
//!
//! A few tests need state that no store method sets yet (the sub-status and
//! `unread = false` come with #5's API): they take a [`Backdoor`] that writes
//! those columns directly.

use std::sync::Arc;

use mailroom::domain::threading::{MessageIdSigner, reply_refs};
use mailroom::domain::{AttachmentId, ContactId, Direction, InteractionId, MessageId, MessageKind};
use mailroom::mail::Mailbox;
use mailroom::mail::parse::parse;
use mailroom::store::{IngestMail, IngestOutcome, QuarantineMail, StoredMessage, Watermark};
use tokio_postgres::NoTls;

use super::*;

// ---- harness ------------------------------------------------------------------------

/// Writes columns behind the store's back, for state that a later issue's
/// methods will set (sub-status, read/unread).
pub(super) struct Backdoor {
    url: String,
}

impl Backdoor {
    pub(super) async fn exec(&self, sql: &str) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).expect("open the test database");
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .expect("busy timeout");
            conn.execute_batch(sql).expect("backdoor SQL");
        } else {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client.batch_execute(sql).await.expect("backdoor SQL");
        }
    }

    /// A sub-status, and read: what an agent leaves before the customer replies.
    pub(super) async fn pending_and_read(&self, id: InteractionId) {
        self.exec(&format!(
            "UPDATE interactions SET substatus = 'Pending', unread = {}, unread_count = 0 \
             WHERE id = {id}",
            if self.url.starts_with("sqlite") {
                "0"
            } else {
                "false"
            }
        ))
        .await;
    }
}

async fn with_backdoor(url: String, db: TestDb) -> (Store, Backdoor, TestDb) {
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, Backdoor { url }, db)
}

pub(super) async fn sqlite_with_backdoor() -> (Store, Backdoor, TestDb) {
    let (url, db) = TestDb::sqlite_url();
    with_backdoor(url, db).await
}

pub(super) async fn postgres_with_backdoor() -> (Store, Backdoor, TestDb) {
    let (url, db) = TestDb::postgres_url().await;
    with_backdoor(url, db).await
}

// ---- fixtures --------------------------------------------------------------------

pub(super) const DOMAIN: &str = "example.test";

pub(super) fn signer() -> MessageIdSigner {
    MessageIdSigner::new(&[7u8; 32]).expect("a 32-byte key")
}

/// The queue `support` and the account `SERV` routed to it.
pub(super) async fn serv(store: &Store) -> Account {
    store
        .upsert_queue(queue_spec("support", &[]))
        .await
        .expect("queue");
    store
        .upsert_account(account_spec("SERV", "support"))
        .await
        .expect("account SERV")
}

/// A second account on the same queue.
pub(super) async fn sale(store: &Store) -> Account {
    store
        .upsert_account(account_spec("SALE", "support"))
        .await
        .expect("account SALE")
}

/// A mail as a customer's client writes it (CRLF; nothing starts with `From `).
#[derive(Clone)]
pub(super) struct Mail {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) subject: String,
    pub(super) message_id: Option<String>,
    pub(super) date: String,
    pub(super) in_reply_to: Option<String>,
    pub(super) references: Option<String>,
    pub(super) extra: Vec<String>,
    pub(super) body: String,
}

impl Mail {
    pub(super) fn new(id: &str, subject: &str, body: &str) -> Mail {
        Mail {
            from: "Jane Doe <Jane.Doe@Customer.test>".into(),
            to: "Support <serv@example.test>".into(),
            subject: subject.into(),
            message_id: Some(format!("{id}@customer.test")),
            date: "Thu, 13 Mar 2025 15:00:00 +0100".into(),
            in_reply_to: None,
            references: None,
            extra: Vec::new(),
            body: body.into(),
        }
    }

    pub(super) fn replying_to(mut self, id: &str) -> Mail {
        self.in_reply_to = Some(id.into());
        self
    }

    pub(super) fn referencing(mut self, ids: &[&str]) -> Mail {
        self.references = Some(ids.join(" "));
        self
    }

    pub(super) fn with(mut self, header: &str) -> Mail {
        self.extra.push(header.into());
        self
    }

    pub(super) fn raw(&self) -> Vec<u8> {
        let mut head = Vec::new();
        head.extend(self.extra.iter().cloned());
        head.push(format!("From: {}", self.from));
        head.push(format!("To: {}", self.to));
        head.push(format!("Subject: {}", self.subject));
        head.push(format!("Date: {}", self.date));
        if let Some(id) = &self.message_id {
            head.push(format!("Message-ID: <{id}>"));
        }
        if let Some(id) = &self.in_reply_to {
            head.push(format!("In-Reply-To: <{id}>"));
        }
        if let Some(ids) = &self.references {
            let ids: Vec<String> = ids.split(' ').map(|i| format!("<{i}>")).collect();
            head.push(format!("References: {}", ids.join(" ")));
        }
        head.push("MIME-Version: 1.0".into());
        head.push("Content-Type: text/plain; charset=utf-8".into());
        format!(
            "{}\r\n\r\n{}\r\n",
            head.join("\r\n"),
            self.body.replace('\n', "\r\n")
        )
        .into_bytes()
    }
}

pub(super) fn request(account: &Account, raw: &[u8], position: Option<(u32, u32)>) -> IngestMail {
    let parsed = parse(raw).expect("the test mail parses");
    let refs = reply_refs(&parsed, &signer(), &account.key);
    IngestMail {
        account: account.id,
        account_key: account.key.clone(),
        queue: account.queue_id,
        position,
        internal_date: None,
        raw: raw.to_vec(),
        parsed,
        refs,
    }
}

pub(super) async fn ingest(
    store: &Store,
    account: &Account,
    raw: &[u8],
    uid: u32,
) -> IngestOutcome {
    store
        .ingest_mail(request(account, raw, Some((1, uid))))
        .await
        .unwrap_or_else(|e| panic!("ingest uid {uid}: {e}"))
}

#[track_caller]
pub(super) fn created(outcome: IngestOutcome) -> (Interaction, MessageId, Option<ContactId>) {
    match outcome {
        IngestOutcome::Created {
            interaction,
            message,
            contact,
        } => (interaction, message, contact),
        other => panic!("expected Created, got {other:?}"),
    }
}

#[track_caller]
pub(super) fn appended(outcome: IngestOutcome) -> (Interaction, MessageId) {
    match outcome {
        IngestOutcome::Appended {
            interaction,
            message,
        } => (interaction, message),
        other => panic!("expected Appended, got {other:?}"),
    }
}

pub(super) async fn only_message(store: &Store, id: InteractionId) -> StoredMessage {
    let mut messages = store.messages(id).await.expect("messages");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    messages.remove(0)
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- a new mail ------------------------------------------------------------------

pub(super) async fn a_new_mail_creates_an_open_unread_interaction_and_its_contact(store: &Store) {
    let account = serv(store).await;
    let before = now_ms();
    let mail = Mail::new("first", "Printer on fire", "It  burns.\n\nPlease help!");
    let (interaction, message, contact) = created(ingest(store, &account, &mail.raw(), 7).await);

    assert_eq!(interaction.account, account.id);
    assert_eq!(interaction.queue, account.queue_id);
    assert_eq!(interaction.subject, "Printer on fire");
    assert_eq!(interaction.status, InteractionStatus::Open);
    assert_eq!((interaction.owner, interaction.first_agent), (None, None));
    assert!(interaction.unread);
    assert_eq!(interaction.unread_count, 1);
    assert_eq!(interaction.priority, 0);
    assert_eq!(interaction.version, 1);
    assert_eq!(
        (interaction.continues, interaction.continued_in),
        (None, None)
    );
    assert!(!interaction.reopened);
    let last = interaction.last_message.clone().expect("a last message");
    assert_eq!(last.direction, Direction::In);
    assert_eq!(last.preview, "It burns. Please help!");
    assert!(last.at >= before);
    assert_eq!(
        store.interaction(interaction.id).await.unwrap(),
        interaction
    );

    let contact = store.contact(contact.expect("a contact")).await.unwrap();
    assert_eq!(interaction.contact, Some(contact.id));
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Jane", "Doe")
    );
    assert_eq!(contact.emails, ["jane.doe@customer.test"]);

    let stored = only_message(store, interaction.id).await;
    assert_eq!(stored.id, message);
    assert_eq!(stored.interaction, interaction.id);
    assert_eq!(
        (stored.direction, stored.kind),
        (Direction::In, MessageKind::Mail)
    );
    assert_eq!(
        stored.from,
        Some(Mailbox {
            name: Some("Jane Doe".into()),
            address: "Jane.Doe@customer.test".into()
        })
    );
    assert_eq!(stored.to.len(), 1);
    assert_eq!(stored.to[0].address, "serv@example.test");
    assert_eq!(stored.subject, "Printer on fire");
    assert_eq!(
        stored.text.as_deref().map(str::trim_end),
        Some("It  burns.\n\nPlease help!")
    );
    assert_eq!(stored.message_id.as_deref(), Some("first@customer.test"));
    assert_eq!((stored.delivery, stored.delivery_error), (None, None));
    assert!(stored.attachments.is_empty());
    assert_eq!(stored.created_at, last.at);

    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(Watermark {
            uid_validity: 1,
            last_uid: 7
        })
    );
    assert_eq!(
        store.interactions_of_account(account.id).await.unwrap(),
        [interaction]
    );
}

pub(super) async fn attachments_are_stored_with_their_metadata(store: &Store) {
    let account = serv(store).await;
    let raw = b"From: Bob <bob@customer.test>\r\n\
        To: serv@example.test\r\n\
        Subject: Invoice\r\n\
        Message-ID: <att@customer.test>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: multipart/related; boundary=\"b2\"\r\n\
        \r\n\
        --b2\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        \r\n\
        <p>See <img src=\"cid:logo@x\"> and the PDF.</p>\r\n\
        --b2\r\n\
        Content-Type: image/png\r\n\
        Content-ID: <logo@x>\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        iVBORw0KGgo=\r\n\
        --b2--\r\n\
        --b1\r\n\
        Content-Type: application/pdf; name=\"invoice.pdf\"\r\n\
        Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        JVBERi0xLjQK\r\n\
        --b1--\r\n";
    let (interaction, _, _) = created(ingest(store, &account, raw, 1).await);
    let message = only_message(store, interaction.id).await;
    assert!(
        message
            .html
            .as_deref()
            .unwrap_or_default()
            .contains("cid:logo@x")
    );
    let mut files = message.attachments.clone();
    files.sort_by(|a, b| a.filename.cmp(&b.filename));
    assert_eq!(files.len(), 2, "{files:#?}");
    let pdf = files.iter().find(|a| a.filename == "invoice.pdf").unwrap();
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.size, 9);
    assert!(!pdf.inline);
    let logo = files
        .iter()
        .find(|a| a.content_type == "image/png")
        .unwrap();
    assert_eq!(logo.content_id.as_deref(), Some("logo@x"));
    assert!(logo.inline);
    let (meta, bytes) = store.attachment(pdf.id).await.unwrap();
    assert_eq!(&meta, pdf);
    assert_eq!(bytes, b"%PDF-1.4\n");
    assert_not_found(store.attachment(AttachmentId(999_999)).await, "attachment");
}

// ---- idempotence ----------------------------------------------------------------

pub(super) async fn the_same_position_twice_is_a_duplicate(store: &Store) {
    let account = serv(store).await;
    let raw = Mail::new("twice", "Hello", "Hi").raw();
    let (interaction, message, _) = created(ingest(store, &account, &raw, 5).await);
    assert_eq!(
        ingest(store, &account, &raw, 5).await,
        IngestOutcome::Duplicate {
            message: Some(message)
        }
    );
    // Even with other bytes: the position alone decides.
    let other = Mail::new("other", "Other", "Other").raw();
    assert_eq!(
        ingest(store, &account, &other, 5).await,
        IngestOutcome::Duplicate {
            message: Some(message)
        }
    );
    assert_eq!(
        store.interactions_of_account(account.id).await.unwrap(),
        [store.interaction(interaction.id).await.unwrap()]
    );
    assert_eq!(store.messages(interaction.id).await.unwrap().len(), 1);
}

pub(super) async fn a_redelivered_mail_at_another_uid_is_a_duplicate(store: &Store) {
    let account = serv(store).await;
    let mail = Mail::new("again", "Hello", "Hi there");
    let (interaction, message, _) = created(ingest(store, &account, &mail.raw(), 1).await);
    let redelivered = mail
        .clone()
        .with("Received: from mx2.customer.test by mx.example.test; Thu, 13 Mar 2025 15:01:00");
    assert_eq!(
        ingest(store, &account, &redelivered.raw(), 2).await,
        IngestOutcome::Duplicate {
            message: Some(message)
        }
    );
    // The watermark moved past the duplicate.
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(Watermark {
            uid_validity: 1,
            last_uid: 2
        })
    );
    // A retry without a position (from quarantine) is recognised too.
    assert_eq!(
        store
            .ingest_mail(request(&account, &mail.raw(), None))
            .await
            .unwrap(),
        IngestOutcome::Duplicate {
            message: Some(message)
        }
    );
    assert_eq!(
        store
            .interactions_of_account(account.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.messages(interaction.id).await.unwrap().len(), 1);
}

pub(super) async fn a_reused_message_id_with_other_content_is_kept(store: &Store) {
    let account = serv(store).await;
    let first = Mail::new("reused", "Hello", "First text");
    let second = Mail::new("reused", "Hello", "Another text");
    let (one, _, _) = created(ingest(store, &account, &first.raw(), 1).await);
    let (two, _, _) = created(ingest(store, &account, &second.raw(), 2).await);
    assert_ne!(one.id, two.id);
    assert_eq!(
        store
            .interactions_of_account(account.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub(super) async fn without_a_message_id_the_content_hash_dedupes(store: &Store) {
    let account = serv(store).await;
    let mut mail = Mail::new("unused", "No id", "Same body");
    mail.message_id = None;
    let (interaction, message, _) = created(ingest(store, &account, &mail.raw(), 1).await);
    assert_eq!(
        ingest(store, &account, &mail.with("Received: by relay").raw(), 2).await,
        IngestOutcome::Duplicate {
            message: Some(message)
        }
    );
    let mut other = Mail::new("unused", "No id", "Another body");
    other.message_id = None;
    let (second, _, _) = created(ingest(store, &account, &other.raw(), 3).await);
    assert_ne!(second.id, interaction.id);
    assert_eq!(
        store
            .interactions_of_account(account.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

// ---- contacts -----------------------------------------------------------------------

pub(super) async fn contacts_are_found_by_address_and_names_only_fill_gaps(store: &Store) {
    let account = serv(store).await;
    let mut bare = Mail::new("c1", "One", "1");
    bare.from = "sam@Customer.test".into();
    let (_, _, first) = created(ingest(store, &account, &bare.raw(), 1).await);
    let first = first.expect("contact");
    let contact = store.contact(first).await.unwrap();
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("sam", "")
    );

    let mut named = Mail::new("c2", "Two", "2");
    named.from = "Sam Smith <SAM@customer.test>".into();
    let (_, _, second) = created(ingest(store, &account, &named.raw(), 2).await);
    assert_eq!(second, Some(first));
    let contact = store.contact(first).await.unwrap();
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("sam", "Smith"),
        "an empty name is filled, a present one is kept"
    );

    let mut renamed = Mail::new("c3", "Three", "3");
    renamed.from = "Samuel Other <sam@customer.test>".into();
    created(ingest(store, &account, &renamed.raw(), 3).await);
    let contact = store.contact(first).await.unwrap();
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("sam", "Smith")
    );
    assert_eq!(contact.emails, ["sam@customer.test"]);
    assert_not_found(store.contact(ContactId(999_999)).await, "contact");
}

// ---- hostile input ---------------------------------------------------------------------

/// Every fixture and corpus mail (charsets, broken MIME, 8-bit headers, …)
/// and a mail full of NUL bytes is ingested, or, if it does not parse,
/// quarantined: none makes the store fail (Postgres refuses NUL in text).
pub(super) async fn every_fixture_and_corpus_mail_is_stored(store: &Store) {
    let account = serv(store).await;
    let mut mails = crate::corpus::mails_under(&crate::corpus::fixtures_dir());
    mails.push((
        "inline NUL".into(),
        b"From: A\0B <a\0@x.test>\r\nTo: serv@example.test\r\nSubject: s\0ub\r\n\
          Message-ID: <i\0d@x>\r\nIn-Reply-To: <r\0@x>\r\n\r\nbo\0dy\r\n"
            .to_vec(),
    ));
    mails.push((
        "encoded NUL".into(),
        b"From: =?utf-8?B?QQBC?= <b@x.test>\r\nSubject: =?utf-8?Q?a=00b?=\r\n\
          Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
          aGkAdGhlcmUA\r\n"
            .to_vec(),
    ));
    assert!(mails.len() > 100);
    let (mut ingested, mut quarantined) = (0, 0);
    for (uid, (path, raw)) in (1u32..).zip(&mails) {
        match parse(raw) {
            Ok(_) => {
                store
                    .ingest_mail(request(&account, raw, Some((1, uid))))
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                ingested += 1;
            }
            Err(e) => {
                store
                    .quarantine_mail(QuarantineMail {
                        account: account.id,
                        position: Some((1, uid)),
                        raw: raw.clone(),
                        reason: e.to_string(),
                        attempts: 1,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                quarantined += 1;
            }
        }
    }
    assert_eq!(ingested + quarantined, mails.len());
    let mark = store.watermark(account.id).await.unwrap().unwrap();
    assert_eq!(mark.last_uid as usize, mails.len());
    for interaction in store.interactions_of_account(account.id).await.unwrap() {
        for message in store.messages(interaction.id).await.unwrap() {
            assert!(!message.subject.contains('\0'));
            assert!(!message.text.unwrap_or_default().contains('\0'));
        }
    }
}

// ---- concurrency -------------------------------------------------------------------

/// Ingest each request from its own task, all released at once.
pub(super) async fn race(store: &Store, requests: Vec<IngestMail>) -> Vec<IngestOutcome> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for request in requests {
        let (store, start) = (store.clone(), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            store.ingest_mail(request).await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.expect("ingest task").expect("ingest"));
    }
    outcomes
}

fn count_created(outcomes: &[IngestOutcome]) -> (usize, usize) {
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, IngestOutcome::Created { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, IngestOutcome::Duplicate { message: Some(_) }))
        .count();
    (created, duplicates)
}

pub(super) async fn twenty_concurrent_ingests_of_one_position_create_one_interaction(
    store: &Store,
) {
    const TASKS: usize = 20;
    let account = serv(store).await;
    // Warm up: every pool connection opened and its statements prepared, so
    // that the race below really meets in the database.
    let warm: Vec<IngestMail> = (0..TASKS as u32)
        .map(|n| {
            request(
                &account,
                &Mail::new(&format!("warm{n}"), "w", &format!("{n}")).raw(),
                Some((1, n + 1)),
            )
        })
        .collect();
    race(store, warm).await;

    let raw = Mail::new("race", "Race", "Same mail").raw();
    let outcomes = race(store, vec![request(&account, &raw, Some((1, 100))); TASKS]).await;
    assert_eq!(count_created(&outcomes), (1, TASKS - 1), "{outcomes:#?}");
    let interactions = store.interactions_of_account(account.id).await.unwrap();
    let raced: Vec<&Interaction> = interactions
        .iter()
        .filter(|i| i.subject == "Race")
        .collect();
    assert_eq!(raced.len(), 1);
    assert_eq!(store.messages(raced[0].id).await.unwrap().len(), 1);
}

pub(super) async fn twenty_concurrent_ingests_of_one_mail_at_many_positions_create_one_interaction(
    store: &Store,
) {
    const TASKS: u32 = 20;
    let account = serv(store).await;
    let raw = Mail::new("spread", "Spread", "Same mail everywhere").raw();
    let requests = (0..TASKS)
        .map(|n| request(&account, &raw, Some((1, 100 + n))))
        .collect();
    let outcomes = race(store, requests).await;
    assert_eq!(
        count_created(&outcomes),
        (1, TASKS as usize - 1),
        "{outcomes:#?}"
    );
    let interactions = store.interactions_of_account(account.id).await.unwrap();
    assert_eq!(interactions.len(), 1);
    assert_eq!(store.messages(interactions[0].id).await.unwrap().len(), 1);
    assert_eq!(
        store.watermark(account.id).await.unwrap(),
        Some(Watermark {
            uid_validity: 1,
            last_uid: 100 + TASKS - 1
        })
    );
    // One contact, however many raced to create it.
    let contact = store
        .contact(interactions[0].contact.unwrap())
        .await
        .unwrap();
    assert_eq!(contact.emails, ["jane.doe@customer.test"]);
}
