//! Contract: uploads and the outbox (issue #5, invariant 4). An outgoing
//! mail, its attachments and its outbox row are committed together or not
//! at all; an upload belongs to its uploader and to one message; a claim is
//! a lease only one sender gets; every outcome lands on the message too.

use std::sync::Arc;

use chrono::Duration;
use mailroom::domain::{AgentId, Delivery, Direction, InteractionStatus, MessageKind};
use mailroom::mail::Mailbox;
use mailroom::store::{
    AttachmentMeta, BuildMail, NewUpload, OutboxOutcome, OutgoingFiles, OutgoingMail,
    OutgoingThread,
};

use super::*;

fn mb(address: &str) -> Mailbox {
    Mailbox {
        name: None,
        address: address.into(),
    }
}

/// A mail built the way compose builds it: the Message-ID names the interaction.
fn mail_for(author: AgentId, tag: &str) -> BuildMail {
    let tag = tag.to_string();
    Box::new(move |i: &Interaction| {
        Ok(OutgoingMail {
            author,
            from: mb("serv@example.test"),
            to: vec![Mailbox {
                name: Some("Jane Doe".into()),
                address: "jane@customer.test".into(),
            }],
            cc: vec![mb("cc@customer.test")],
            bcc: vec![mb("hidden@customer.test"), mb("JANE@customer.test")],
            subject: format!("Re: [SERV#{}] {tag}", i.id),
            text: format!("text of {tag}"),
            html: Some(format!("<p>html of {tag}</p>")),
            message_id: format!("mr.serv.{}.{tag}@example.test", i.id),
            in_reply_to: Some("orig@customer.test".into()),
            references: vec!["root@customer.test".into(), "orig@customer.test".into()],
            raw: format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n").into_bytes(),
        })
    })
}

async fn upload(store: &Store, agent: AgentId, name: &str, data: &[u8]) -> AttachmentMeta {
    store
        .store_upload(NewUpload {
            agent,
            filename: name.into(),
            content_type: "text/plain".into(),
            data: data.to_vec(),
        })
        .await
        .expect("upload")
}

/// An interaction owned by `owner`.
async fn owned(store: &Store, owner: &Agent) -> Interaction {
    let i = interaction(store).await;
    match store.claim(i.id, owner.id, i.version).await.expect("claim") {
        ClaimOutcome::Won(i) => i,
        ClaimOutcome::Lost(_) => panic!("claim lost"),
    }
}

fn reply_on(i: &Interaction, owner: &Agent) -> OutgoingThread {
    OutgoingThread::Existing {
        interaction: i.id,
        owner: Some(owner.id),
    }
}

pub(super) async fn uploads_belong_to_their_uploader_until_used(store: &Store) {
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let meta = upload(store, alice.id, "notes.txt", b"hello").await;
    assert_eq!(meta.filename, "notes.txt");
    assert_eq!(meta.size, 5);
    let (again, data) = store.upload(meta.id, alice.id).await.expect("own upload");
    assert_eq!((again, data), (meta.clone(), b"hello".to_vec()));
    assert_not_found(store.upload(meta.id, bob.id).await, "upload");

    // The same bytes twice are one blob, two uploads.
    let twin = upload(store, alice.id, "copy.txt", b"hello").await;
    assert_ne!(twin.id, meta.id);

    let i = owned(store, &alice).await;
    store
        .enqueue_mail(
            reply_on(&i, &alice),
            OutgoingFiles {
                uploads: vec![meta.id],
                carried: vec![],
            },
            mail_for(alice.id, "one"),
        )
        .await
        .expect("enqueue");
    // Used: no longer an upload anyone can attach again.
    assert_not_found(store.upload(meta.id, alice.id).await, "upload");
    let before = store.messages(i.id).await.unwrap().len();
    assert_conflict(
        store
            .enqueue_mail(
                reply_on(&i, &alice),
                OutgoingFiles {
                    uploads: vec![twin.id, meta.id],
                    carried: vec![],
                },
                mail_for(alice.id, "two"),
            )
            .await,
        "not an unused upload",
    );
    // Nothing of the refused mail was committed, not even its first upload's link.
    assert_eq!(store.messages(i.id).await.unwrap().len(), before);
    assert!(store.upload(twin.id, alice.id).await.is_ok());
    // Someone else's upload cannot be used either.
    assert_conflict(
        store
            .enqueue_mail(
                reply_on(&i, &alice),
                OutgoingFiles {
                    uploads: vec![upload(store, bob.id, "b.txt", b"bob").await.id],
                    carried: vec![],
                },
                mail_for(alice.id, "three"),
            )
            .await,
        "not an unused upload",
    );
}

pub(super) async fn enqueue_commits_the_message_its_files_and_its_outbox_row(store: &Store) {
    let alice = agent(store, "alice").await;
    let i = owned(store, &alice).await;
    let file = upload(store, alice.id, "a.txt", b"attached").await;
    let done = store
        .enqueue_mail(
            reply_on(&i, &alice),
            OutgoingFiles {
                uploads: vec![file.id],
                carried: vec![],
            },
            mail_for(alice.id, "first"),
        )
        .await
        .expect("enqueue");
    assert_eq!(done.interaction.id, i.id);
    let last = done.interaction.last_message.clone().expect("last message");
    assert_eq!(last.direction, Direction::Out);
    assert_eq!(last.preview, "text of first");

    let messages = store.messages(i.id).await.unwrap();
    let m = messages
        .iter()
        .find(|m| m.id == done.message)
        .expect("stored");
    assert_eq!(m.direction, Direction::Out);
    assert_eq!(m.kind, MessageKind::Mail);
    assert_eq!(m.delivery, Some(Delivery::Queued));
    assert_eq!(m.from, Some(mb("serv@example.test")));
    assert_eq!(m.to[0].name.as_deref(), Some("Jane Doe"));
    assert_eq!(m.cc, vec![mb("cc@customer.test")]);
    assert_eq!(m.bcc.len(), 2);
    assert_eq!(m.subject, format!("Re: [SERV#{}] first", i.id));
    assert_eq!(m.text.as_deref(), Some("text of first"));
    assert_eq!(m.html.as_deref(), Some("<p>html of first</p>"));
    assert_eq!(
        m.message_id,
        Some(format!("mr.serv.{}.first@example.test", i.id))
    );
    assert_eq!(m.in_reply_to.as_deref(), Some("orig@customer.test"));
    assert_eq!(m.references, ["root@customer.test", "orig@customer.test"]);
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].id, file.id);

    let entry = store.outbox_entry(done.message).await.expect("outbox row");
    assert_eq!(entry.id, done.outbox);
    assert_eq!(entry.status, Delivery::Queued);
    assert_eq!(entry.attempts, 0);
    assert!(entry.next_attempt_at <= now_ms());
    assert_eq!(
        store
            .due_outbox(i.account, now_ms() + Duration::seconds(1), 10)
            .await
            .unwrap(),
        vec![done.outbox]
    );

    // A forward carries the attachment: a new row on the new message, the
    // same bytes.
    let fwd = store
        .enqueue_mail(
            reply_on(&i, &alice),
            OutgoingFiles {
                uploads: vec![],
                carried: vec![file.id],
            },
            mail_for(alice.id, "fwd"),
        )
        .await
        .expect("forward");
    let messages = store.messages(i.id).await.unwrap();
    let f = messages.iter().find(|m| m.id == fwd.message).unwrap();
    assert_eq!(f.attachments.len(), 1);
    assert_ne!(f.attachments[0].id, file.id);
    assert_eq!(f.attachments[0].filename, "a.txt");
    let (_, bytes) = store.attachment(f.attachments[0].id).await.unwrap();
    assert_eq!(bytes, b"attached");
    // A failing builder commits nothing.
    let failing: BuildMail = Box::new(|_| Err(StoreError::Invalid("cannot build".into())));
    assert_invalid(
        store
            .enqueue_mail(reply_on(&i, &alice), OutgoingFiles::default(), failing)
            .await,
        "cannot build",
    );
    assert_eq!(store.messages(i.id).await.unwrap().len(), 2);
}

pub(super) async fn enqueue_needs_an_open_interaction_still_owned_by_the_author(store: &Store) {
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let i = owned(store, &alice).await;
    assert_conflict(
        store
            .enqueue_mail(
                reply_on(&i, &bob),
                OutgoingFiles::default(),
                mail_for(bob.id, "x"),
            )
            .await,
        "no longer yours",
    );
    // Without an owner guard (an admin), any open interaction will do.
    store
        .enqueue_mail(
            OutgoingThread::Existing {
                interaction: i.id,
                owner: None,
            },
            OutgoingFiles::default(),
            mail_for(bob.id, "admin"),
        )
        .await
        .expect("admin sends");
    store
        .close_interaction(i.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_conflict(
        store
            .enqueue_mail(
                reply_on(&i, &alice),
                OutgoingFiles::default(),
                mail_for(alice.id, "y"),
            )
            .await,
        "closed",
    );
    assert_not_found(
        store
            .enqueue_mail(
                OutgoingThread::Existing {
                    interaction: mailroom::domain::InteractionId(999_999),
                    owner: None,
                },
                OutgoingFiles::default(),
                mail_for(alice.id, "z"),
            )
            .await,
        "interaction",
    );
}

pub(super) async fn new_mail_starts_an_owned_interaction_with_the_recipients_contact(
    store: &Store,
) {
    let alice = agent(store, "alice").await;
    let first = interaction(store).await;
    let account = store.account_by_key("SERV").await.unwrap();
    let new = |subject: &str| OutgoingThread::New {
        account: account.id,
        queue: account.queue_id,
        owner: alice.id,
        subject: subject.into(),
        contact: Some(Mailbox {
            name: Some("Jane Doe".into()),
            address: "Jane@Customer.test".into(),
        }),
    };
    let done = store
        .enqueue_mail(
            new("Your order"),
            OutgoingFiles::default(),
            mail_for(alice.id, "new"),
        )
        .await
        .expect("new mail");
    let i = &done.interaction;
    assert_ne!(i.id, first.id);
    assert_eq!(i.subject, "Your order");
    assert_eq!(i.status, InteractionStatus::Open);
    assert_eq!(i.owner, Some(alice.id));
    assert_eq!(i.first_agent, Some(alice.id));
    assert!(!i.unread);
    assert_eq!(
        i.last_message.as_ref().map(|l| l.direction),
        Some(Direction::Out)
    );
    let contact = store.contact(i.contact.expect("a contact")).await.unwrap();
    assert_eq!(contact.emails, ["jane@customer.test"]);
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Jane", "Doe")
    );
    let messages = store.messages(i.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].message_id,
        Some(format!("mr.serv.{}.new@example.test", i.id))
    );
    // It counts against the owner's capacity like any owned interaction.
    let counts = store.owned_open_counts().await.unwrap();
    assert_eq!(counts.get(&alice.id).copied(), Some(1));
    // A second mail to the same address finds the same contact.
    let again = store
        .enqueue_mail(
            new("Another"),
            OutgoingFiles::default(),
            mail_for(alice.id, "again"),
        )
        .await
        .unwrap();
    assert_eq!(again.interaction.contact, i.contact);
}

pub(super) async fn a_claim_is_a_lease_that_one_sender_gets(store: &Store) {
    let alice = agent(store, "alice").await;
    let i = owned(store, &alice).await;
    let done = store
        .enqueue_mail(
            reply_on(&i, &alice),
            OutgoingFiles::default(),
            mail_for(alice.id, "m"),
        )
        .await
        .unwrap();
    let now = now_ms() + Duration::seconds(1);
    let lease = now + Duration::minutes(2);
    let job = store
        .claim_outbox(done.outbox, now, lease)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(job.message, done.message);
    assert_eq!(job.interaction, i.id);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.from, "serv@example.test");
    // To, Cc and Bcc, each address once.
    assert_eq!(
        job.recipients,
        [
            "jane@customer.test",
            "cc@customer.test",
            "hidden@customer.test"
        ]
    );
    assert_eq!(
        job.message_id,
        Some(format!("mr.serv.{}.m@example.test", i.id))
    );
    assert_eq!(job.raw, b"Subject: m\r\n\r\nbody of m\r\n");
    // Leased: not due, not claimable, until the lease runs out.
    assert!(
        store
            .claim_outbox(done.outbox, now, lease)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .due_outbox(i.account, now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_outbox_due(i.account).await.unwrap(), Some(lease));
    let later = lease + Duration::seconds(1);
    assert_eq!(
        store.due_outbox(i.account, later, 10).await.unwrap(),
        vec![done.outbox]
    );
    let again = store
        .claim_outbox(done.outbox, later, later + Duration::minutes(2))
        .await
        .unwrap()
        .expect("claimed after the lease");
    assert_eq!(again.attempts, 2);
}

pub(super) async fn outcomes_land_on_the_outbox_row_and_the_message(store: &Store) {
    let alice = agent(store, "alice").await;
    let i = owned(store, &alice).await;
    let mut ids = Vec::new();
    for tag in ["sent", "failed", "retry"] {
        let done = store
            .enqueue_mail(
                reply_on(&i, &alice),
                OutgoingFiles::default(),
                mail_for(alice.id, tag),
            )
            .await
            .unwrap();
        let now = now_ms() + Duration::seconds(1);
        store
            .claim_outbox(done.outbox, now, now + Duration::minutes(2))
            .await
            .unwrap()
            .expect("claimed");
        ids.push(done);
    }
    let sent = store
        .finish_outbox(ids[0].outbox, OutboxOutcome::Sent)
        .await
        .unwrap();
    assert_eq!(sent.delivery, Delivery::Sent);
    assert_eq!(sent.message, ids[0].message);
    assert_eq!(sent.interaction.id, i.id);
    let failed = store
        .finish_outbox(
            ids[1].outbox,
            OutboxOutcome::Failed {
                error: "550 5.1.1 no such user".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.delivery, Delivery::Failed);
    let retry_at = now_ms() + Duration::minutes(5);
    store
        .finish_outbox(
            ids[2].outbox,
            OutboxOutcome::Retry {
                at: retry_at,
                error: "421 try later".into(),
            },
        )
        .await
        .unwrap();
    let messages = store.messages(i.id).await.unwrap();
    let of = |id| messages.iter().find(|m| m.id == id).unwrap();
    assert_eq!(of(ids[0].message).delivery, Some(Delivery::Sent));
    assert_eq!(of(ids[0].message).delivery_error, None);
    assert_eq!(of(ids[1].message).delivery, Some(Delivery::Failed));
    assert_eq!(
        of(ids[1].message).delivery_error.as_deref(),
        Some("550 5.1.1 no such user")
    );
    assert_eq!(of(ids[2].message).delivery, Some(Delivery::Queued));
    assert_eq!(
        of(ids[2].message).delivery_error.as_deref(),
        Some("421 try later")
    );
    let entry = store.outbox_entry(ids[2].message).await.unwrap();
    assert_eq!((entry.status, entry.attempts), (Delivery::Queued, 1));
    assert_eq!(entry.next_attempt_at, retry_at);
    assert_eq!(entry.last_error.as_deref(), Some("421 try later"));
    assert_eq!(
        store.outbox_entry(ids[0].message).await.unwrap().status,
        Delivery::Sent
    );
    // Finished rows are finished: a second outcome is a conflict.
    assert_conflict(
        store
            .finish_outbox(ids[0].outbox, OutboxOutcome::Sent)
            .await,
        "not queued",
    );
    // The server is back: the waiting mail is due now.
    assert!(
        store
            .due_outbox(i.account, now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.expedite_outbox(i.account, now_ms()).await.unwrap(), 1);
    assert_eq!(
        store
            .due_outbox(i.account, now_ms() + Duration::seconds(1), 10)
            .await
            .unwrap(),
        vec![ids[2].outbox]
    );
    // An account's outbox is its own.
    let other = store
        .upsert_account(account_spec("SALE", "support"))
        .await
        .unwrap();
    assert!(
        store
            .due_outbox(other.id, now_ms() + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.next_outbox_due(other.id).await.unwrap(), None);
}

pub(super) async fn twenty_concurrent_claims_of_one_row_have_one_winner(store: &Store) {
    let alice = agent(store, "alice").await;
    let i = owned(store, &alice).await;
    let done = store
        .enqueue_mail(
            reply_on(&i, &alice),
            OutgoingFiles::default(),
            mail_for(alice.id, "race"),
        )
        .await
        .unwrap();
    let store = Arc::new(store.clone());
    let now = now_ms() + Duration::seconds(1);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_outbox(done.outbox, now, now + Duration::minutes(2))
                    .await
                    .expect("claim")
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.outbox_entry(done.message).await.unwrap().attempts, 1);
}
