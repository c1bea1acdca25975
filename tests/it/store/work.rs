//! Contract: working an interaction (issue #5) — drafts, notes, tags,
//! sub-statuses, unread. The rules are those of `src/store/work.rs`.

use std::sync::Arc;

use mailroom::domain::{AttachmentId, Direction, MessageKind};
use mailroom::mail::Mailbox;
use mailroom::store::{
    DraftContent, DraftMode, DraftOutcome, DraftSave, NewNote, NewUpload, PENDING,
};

use super::*;

// ---- fixtures ---------------------------------------------------------------------

fn mailbox(address: &str) -> Mailbox {
    Mailbox {
        name: None,
        address: address.into(),
    }
}

fn content(to: &[&str], subject: &str, text: &str) -> DraftContent {
    DraftContent {
        mode: DraftMode::Reply,
        message: None,
        to: to.iter().map(|a| mailbox(a)).collect(),
        cc: Vec::new(),
        bcc: Vec::new(),
        subject: subject.into(),
        text: Some(text.into()),
        html: None,
        attachments: Vec::new(),
    }
}

const CHECK: DraftSave = DraftSave::Check { base: None };

#[track_caller]
fn saved(outcome: DraftOutcome) -> mailroom::store::Draft {
    match outcome {
        DraftOutcome::Saved(d) => d,
        other => panic!("expected Saved, got {other:?}"),
    }
}

/// Another interaction on the account of [`interaction`] (which must exist).
async fn another(store: &Store, subject: &str) -> Interaction {
    let account = store.account_by_key("SERV").await.unwrap();
    store
        .create_interaction(NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: subject.into(),
            contact: None,
            priority: 0,
        })
        .await
        .unwrap()
}

async fn upload(store: &Store, agent: &Agent, name: &str) -> AttachmentId {
    store
        .store_upload(NewUpload {
            agent: agent.id,
            filename: name.into(),
            content_type: "text/plain".into(),
            data: format!("contents of {name}").into_bytes(),
        })
        .await
        .expect("upload")
        .id
}

// ---- drafts -------------------------------------------------------------------------

/// One draft per interaction: another agent's save is refused (showing the
/// stored one) until they replace it; deleting is only for the owner.
pub(super) async fn a_draft_belongs_to_the_agent_who_saved_it(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    assert_not_found(store.draft(open.id).await, "draft");

    let mine = saved(
        store
            .save_draft(
                open.id,
                alice.id,
                content(&["jane@customer.test"], "Re: Hi", "Dear Jane"),
                CHECK,
            )
            .await
            .unwrap(),
    );
    assert_eq!(mine.agent, alice.id);
    assert_eq!(mine.interaction, open.id);
    assert_eq!(mine.created_at, mine.updated_at);
    assert_eq!(store.draft(open.id).await.unwrap(), mine);

    // bob may not overwrite it, with or without a base.
    let his = content(&["boss@customer.test"], "Re: Hi", "Bob's words");
    for save in [
        CHECK,
        DraftSave::Check {
            base: Some(mine.updated_at),
        },
    ] {
        match store
            .save_draft(open.id, bob.id, his.clone(), save)
            .await
            .unwrap()
        {
            DraftOutcome::OwnedByOther(d) => assert_eq!(d, mine),
            other => panic!("expected OwnedByOther, got {other:?}"),
        }
    }
    assert_eq!(store.draft(open.id).await.unwrap(), mine);
    assert_not_found(store.delete_draft(open.id, bob.id).await, "draft");

    // Replacing makes it bob's, a new draft.
    let replaced = saved(
        store
            .save_draft(open.id, bob.id, his.clone(), DraftSave::Replace)
            .await
            .unwrap(),
    );
    assert_eq!(replaced.agent, bob.id);
    assert_eq!(replaced.content, his);
    assert!(replaced.updated_at > mine.updated_at);
    assert_eq!(replaced.created_at, replaced.updated_at);
    assert_eq!(store.draft(open.id).await.unwrap(), replaced);

    // Now alice is the other one; deleting is bob's.
    assert!(matches!(
        store
            .save_draft(open.id, alice.id, mine.content.clone(), CHECK)
            .await
            .unwrap(),
        DraftOutcome::OwnedByOther(_)
    ));
    assert_not_found(store.delete_draft(open.id, alice.id).await, "draft");
    store.delete_draft(open.id, bob.id).await.unwrap();
    assert_not_found(store.draft(open.id).await, "draft");
    assert_not_found(store.delete_draft(open.id, bob.id).await, "draft");
    assert_not_found(
        store
            .save_draft(InteractionId(i64::MAX), alice.id, his, CHECK)
            .await,
        "interaction",
    );
}

/// Autosave: the same content saved twice is the same draft with a later
/// `updated_at`; other content with a stale base is refused; HTML is
/// sanitised; NUL characters are dropped.
pub(super) async fn a_draft_save_is_idempotent_and_checks_its_base(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let mut first = content(&["jane@customer.test"], "Re: Hi", "Dear Jane");
    first.html = Some("<p onclick=\"x()\">Dear <b>Jane</b></p><script>alert(1)</script>".into());
    first.cc = vec![Mailbox {
        name: Some("Carl\0".into()),
        address: "carl@customer.test".into(),
    }];
    let one = saved(
        store
            .save_draft(open.id, alice.id, first.clone(), CHECK)
            .await
            .unwrap(),
    );
    let html = one.content.html.clone().unwrap();
    assert!(html.contains("<b>Jane</b>"), "{html}");
    assert!(
        !html.contains("script") && !html.contains("onclick"),
        "{html}"
    );
    assert_eq!(one.content.cc[0].name.as_deref(), Some("Carl"));

    // The same again (a retried autosave, even naming an old base): saved,
    // same content, updated_at strictly later, created_at kept.
    let two = saved(
        store
            .save_draft(
                open.id,
                alice.id,
                first.clone(),
                DraftSave::Check {
                    base: Some(one.created_at - Duration::seconds(5)),
                },
            )
            .await
            .unwrap(),
    );
    assert_eq!(two.content, one.content);
    assert!(two.updated_at > one.updated_at);
    assert_eq!(two.created_at, one.created_at);
    assert_eq!(store.draft(open.id).await.unwrap(), two);

    // Other content based on `one` (another tab saved `two` since): refused.
    let edited = content(&["jane@customer.test"], "Re: Hi", "Dear Jane, sorry");
    match store
        .save_draft(
            open.id,
            alice.id,
            edited.clone(),
            DraftSave::Check {
                base: Some(one.updated_at),
            },
        )
        .await
        .unwrap()
    {
        DraftOutcome::Changed(d) => assert_eq!(d, two),
        other => panic!("expected Changed, got {other:?}"),
    }
    // Based on what is stored: saved. Without a base: saved.
    let three = saved(
        store
            .save_draft(
                open.id,
                alice.id,
                edited.clone(),
                DraftSave::Check {
                    base: Some(two.updated_at),
                },
            )
            .await
            .unwrap(),
    );
    assert_eq!(three.content, edited);
    let mut again = edited.clone();
    again.mode = DraftMode::Forward;
    again.bcc = vec![mailbox("audit@example.test")];
    let four = saved(
        store
            .save_draft(open.id, alice.id, again.clone(), CHECK)
            .await
            .unwrap(),
    );
    assert_eq!(store.draft(open.id).await.unwrap().content, again);
    assert!(four.updated_at > three.updated_at);
}

/// "My drafts": only the caller's, most recent first, named `KEY - TO`,
/// else `KEY - SUBJECT`, else `KEY - Untitled`.
pub(super) async fn drafts_of_lists_mine_with_display_names(store: &Store) {
    let first = interaction(store).await;
    let second = another(store, "Second").await;
    let third = another(store, "Third").await;
    let fourth = another(store, "Fourth").await;
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    for (i, c) in [
        (
            &first,
            content(&["jane@customer.test", "joe@customer.test"], "Re: Hi", "a"),
        ),
        (&second, content(&[], "Invoice 42", "b")),
        (&third, content(&[], "  ", "")),
    ] {
        saved(store.save_draft(i.id, alice.id, c, CHECK).await.unwrap());
    }
    saved(
        store
            .save_draft(
                fourth.id,
                bob.id,
                content(&["x@customer.test"], "", ""),
                CHECK,
            )
            .await
            .unwrap(),
    );
    let mine = store.drafts_of(alice.id).await.unwrap();
    let shown: Vec<(InteractionId, &str, &str)> = mine
        .iter()
        .map(|l| {
            (
                l.draft.interaction,
                l.account.as_str(),
                l.display_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (third.id, "SERV", "SERV - Untitled"),
            (second.id, "SERV", "SERV - Invoice 42"),
            (first.id, "SERV", "SERV - jane@customer.test"),
        ]
    );
    assert_eq!(mine[2].draft, store.draft(first.id).await.unwrap());
    assert_eq!(store.drafts_of(bob.id).await.unwrap().len(), 1);
    let carol = agent(store, "carol").await;
    assert!(store.drafts_of(carol.id).await.unwrap().is_empty());
}

/// Closing deletes the draft; a closed interaction takes no draft.
pub(super) async fn closing_deletes_the_draft_and_takes_no_new_one(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    saved(
        store
            .save_draft(
                open.id,
                alice.id,
                content(&["jane@customer.test"], "Re", "x"),
                CHECK,
            )
            .await
            .unwrap(),
    );
    store
        .close_interaction(open.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_not_found(store.draft(open.id).await, "draft");
    assert!(store.drafts_of(alice.id).await.unwrap().is_empty());
    assert_conflict(
        store
            .save_draft(
                open.id,
                alice.id,
                content(&[], "Re", "x"),
                DraftSave::Replace,
            )
            .await,
        "closed",
    );
}

/// A draft names the author's unused uploads or this interaction's files;
/// anyone else's upload is refused and nothing is saved.
pub(super) async fn draft_attachments_are_my_uploads(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let mine = upload(store, &alice, "mine.txt").await;
    let his = upload(store, &bob, "his.txt").await;
    let mut c = content(&["jane@customer.test"], "Re", "x");
    c.attachments = vec![mine, mine];
    let d = saved(
        store
            .save_draft(open.id, alice.id, c.clone(), CHECK)
            .await
            .unwrap(),
    );
    assert_eq!(d.content.attachments, vec![mine]);
    c.attachments = vec![mine, his];
    assert_invalid(
        store.save_draft(open.id, alice.id, c, CHECK).await,
        &his.to_string(),
    );
    assert_eq!(store.draft(open.id).await.unwrap(), d);
}

/// A reply or forward draft names the mail it answers: a mail of this
/// interaction, not a note, not another thread's mail.
pub(super) async fn a_draft_answers_a_mail_of_its_interaction(store: &Store) {
    let account = serv(store).await;
    let (first, mail, _) =
        created(ingest(store, &account, &Mail::new("d1", "Help", "Please").raw(), 1).await);
    let (other, elsewhere, _) =
        created(ingest(store, &account, &Mail::new("d2", "Other", "Hm").raw(), 2).await);
    assert_ne!(first.id, other.id);
    let alice = agent(store, "alice").await;
    let note = store
        .add_note(NewNote {
            interaction: first.id,
            author: alice.id,
            for_agent: None,
            text: "internal".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    let mut c = content(&["jane@customer.test"], "Re: Help", "x");
    c.message = Some(mail);
    let d = saved(
        store
            .save_draft(first.id, alice.id, c.clone(), CHECK)
            .await
            .unwrap(),
    );
    assert_eq!(d.content.message, Some(mail));
    assert_eq!(store.draft(first.id).await.unwrap(), d);
    for wrong in [elsewhere, note.id] {
        c.message = Some(wrong);
        assert_invalid(
            store.save_draft(first.id, alice.id, c.clone(), CHECK).await,
            &wrong.to_string(),
        );
    }
    assert_eq!(store.draft(first.id).await.unwrap(), d);
}

// ---- notes ----------------------------------------------------------------------------

/// Notes are stored as `note` / `supervisor_note` with the author, and
/// change nothing on the interaction: not unread, not the last message, not
/// its version or activity time.
pub(super) async fn notes_leave_the_interaction_as_it_is(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let sup = agent(store, "sup").await;
    let before = store.interaction(open.id).await.unwrap();

    let note = store
        .add_note(NewNote {
            interaction: open.id,
            author: alice.id,
            for_agent: None,
            text: "Called the customer\0 back".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(note.kind, MessageKind::Note);
    assert_eq!(note.direction, Direction::Out);
    assert_eq!(note.text.as_deref(), Some("Called the customer back"));
    assert_eq!((note.from.clone(), note.delivery), (None, None));
    assert!(note.to.is_empty() && note.attachments.is_empty());

    let for_alice = store
        .add_note(NewNote {
            interaction: open.id,
            author: sup.id,
            for_agent: Some(alice.id),
            text: "Offer a refund".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(for_alice.kind, MessageKind::SupervisorNote);

    assert_eq!(
        store.messages(open.id).await.unwrap(),
        vec![note, for_alice]
    );
    let after = store.interaction(open.id).await.unwrap();
    assert_eq!(after, before);
    assert!(!after.unread && after.last_message.is_none());
    assert_not_found(
        store
            .add_note(NewNote {
                interaction: InteractionId(i64::MAX),
                author: alice.id,
                for_agent: None,
                text: "x".into(),
                attachments: Vec::new(),
            })
            .await,
        "interaction",
    );
}

/// A note carries the author's unused uploads; an upload used already, or
/// someone else's, fails the whole note.
pub(super) async fn a_note_carries_the_authors_uploads(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let photo = upload(store, &alice, "photo.txt").await;
    let his = upload(store, &bob, "his.txt").await;
    let note = |attachments: Vec<AttachmentId>| NewNote {
        interaction: open.id,
        author: alice.id,
        for_agent: None,
        text: "See the photo".into(),
        attachments,
    };
    let with = store.add_note(note(vec![photo, photo])).await.unwrap();
    assert_eq!(
        with.attachments
            .iter()
            .map(|a| (a.id, a.filename.as_str(), a.size))
            .collect::<Vec<_>>(),
        vec![(photo, "photo.txt", "contents of photo.txt".len() as u64)]
    );
    assert_eq!(store.messages(open.id).await.unwrap(), vec![with.clone()]);
    let (_, bytes) = store.attachment(photo).await.unwrap();
    assert_eq!(bytes, b"contents of photo.txt");

    // Used already / someone else's: refused, nothing written.
    assert_invalid(store.add_note(note(vec![photo])).await, &photo.to_string());
    assert_invalid(store.add_note(note(vec![his])).await, &his.to_string());
    assert_eq!(store.messages(open.id).await.unwrap(), vec![with]);
}

// ---- tags -----------------------------------------------------------------------------

pub(super) async fn tags_come_from_the_admin_list(store: &Store) {
    let open = interaction(store).await;
    let other = another(store, "Other").await;
    assert!(store.tags().await.unwrap().is_empty());
    for name in ["VIP", "urgent", "Billing"] {
        let tag = store.create_tag(&format!(" {name} ")).await.unwrap();
        assert_eq!(tag.name, name);
    }
    assert_conflict(store.create_tag("VIP").await, "VIP");
    assert_invalid(store.create_tag("  ").await, "empty");
    assert_invalid(store.create_tag(&"x".repeat(65)).await, "64");
    let names: Vec<String> = store
        .tags()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["Billing", "VIP", "urgent"]);

    assert!(store.interaction_tags(open.id).await.unwrap().is_empty());
    match store
        .set_interaction_tags(open.id, vec!["VIP".into(), "nope".into(), "Nope2".into()])
        .await
    {
        Err(StoreError::Invalid(msg)) => {
            assert!(msg.contains("nope") && msg.contains("Nope2"), "{msg}");
            assert!(msg.contains("Billing, VIP, urgent"), "{msg}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(store.interaction_tags(open.id).await.unwrap().is_empty());

    let set = store
        .set_interaction_tags(
            open.id,
            vec!["urgent".into(), "VIP".into(), "urgent".into()],
        )
        .await
        .unwrap();
    assert_eq!(set, ["VIP", "urgent"]);
    assert_eq!(store.interaction_tags(open.id).await.unwrap(), set);
    store
        .set_interaction_tags(other.id, vec!["VIP".into()])
        .await
        .unwrap();
    let many = store
        .tags_of(&[open.id, other.id, InteractionId(i64::MAX)])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&open.id], ["VIP", "urgent"]);
    assert_eq!(many[&other.id], ["VIP"]);
    assert!(store.tags_of(&[]).await.unwrap().is_empty());
    // Replacing is replacing.
    store
        .set_interaction_tags(open.id, vec!["Billing".into()])
        .await
        .unwrap();
    assert_eq!(store.interaction_tags(open.id).await.unwrap(), ["Billing"]);
    // Deleting a tag takes it off every interaction.
    store.delete_tag("VIP").await.unwrap();
    assert!(store.interaction_tags(other.id).await.unwrap().is_empty());
    assert_not_found(store.delete_tag("VIP").await, "tag");
    store
        .set_interaction_tags(open.id, Vec::new())
        .await
        .unwrap();
    assert!(store.interaction_tags(open.id).await.unwrap().is_empty());
    assert_not_found(
        store.interaction_tags(InteractionId(i64::MAX)).await,
        "interaction",
    );
    assert_not_found(
        store
            .set_interaction_tags(InteractionId(i64::MAX), Vec::new())
            .await,
        "interaction",
    );
}

// ---- sub-statuses ---------------------------------------------------------------------------

pub(super) async fn substatuses_come_from_the_admin_list(store: &Store) {
    let open = interaction(store).await;
    let listed = store.substatuses().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].built_in),
        (PENDING, true)
    );
    let waiting = store.create_substatus("Waiting for parts").await.unwrap();
    assert!(!waiting.built_in);
    assert_conflict(store.create_substatus("Pending").await, "Pending");
    let names: Vec<String> = store
        .substatuses()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["Pending", "Waiting for parts"]);

    match store.set_substatus(open.id, Some("Lunch".into())).await {
        Err(StoreError::Invalid(msg)) => {
            assert!(
                msg.contains("Lunch") && msg.contains("Pending, Waiting for parts"),
                "{msg}"
            )
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let before = store.interaction(open.id).await.unwrap();
    let set = store
        .set_substatus(open.id, Some(PENDING.into()))
        .await
        .unwrap();
    assert_eq!(set.substatus.as_deref(), Some(PENDING));
    assert_eq!((set.version, set.unread), (before.version, before.unread));
    assert_eq!(store.interaction(open.id).await.unwrap(), set);
    assert_eq!(
        store.set_substatus(open.id, None).await.unwrap().substatus,
        None
    );

    // Deleting a sub-status clears it where set; Pending stays.
    store
        .set_substatus(open.id, Some("Waiting for parts".into()))
        .await
        .unwrap();
    store.delete_substatus("Waiting for parts").await.unwrap();
    assert_eq!(store.interaction(open.id).await.unwrap().substatus, None);
    assert_not_found(
        store.delete_substatus("Waiting for parts").await,
        "sub-status",
    );
    assert_conflict(store.delete_substatus(PENDING).await, "built in");
    assert_eq!(store.substatuses().await.unwrap().len(), 1);

    store
        .close_interaction(open.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    assert_conflict(
        store.set_substatus(open.id, Some(PENDING.into())).await,
        "closed",
    );
    assert_not_found(
        store.set_substatus(InteractionId(i64::MAX), None).await,
        "interaction",
    );
}

/// `set_substatus` then mail through ingest: a customer's reply clears it,
/// an auto-reply does not.
pub(super) async fn a_customer_reply_clears_the_substatus_an_auto_reply_does_not(store: &Store) {
    let account = serv(store).await;
    let (first, _, _) =
        created(ingest(store, &account, &Mail::new("s1", "Help", "Please").raw(), 1).await);
    store
        .set_substatus(first.id, Some(PENDING.into()))
        .await
        .unwrap();

    let auto = Mail::new("s2", "Out of office", "Away")
        .replying_to("s1@customer.test")
        .with("Auto-Submitted: auto-replied");
    let (after, _) = appended(ingest(store, &account, &auto.raw(), 2).await);
    assert_eq!(after.substatus.as_deref(), Some(PENDING));

    let reply = Mail::new("s3", "Re: Help", "More").replying_to("s1@customer.test");
    let (after, _) = appended(ingest(store, &account, &reply.raw(), 3).await);
    assert_eq!(after.substatus, None);
}

// ---- unread ---------------------------------------------------------------------------------

pub(super) async fn mark_unread_sets_the_flag_and_keeps_the_count(store: &Store) {
    let open = interaction(store).await;
    assert!(!open.unread);
    let unread = store.mark_unread(open.id).await.unwrap();
    assert!(unread.unread);
    assert_eq!((unread.unread_count, unread.version), (0, open.version));
    assert_eq!(store.interaction(open.id).await.unwrap(), unread);
    assert!(!store.mark_read(open.id).await.unwrap().unread);
    assert_not_found(
        store.mark_unread(InteractionId(i64::MAX)).await,
        "interaction",
    );
}

// ---- races ------------------------------------------------------------------------------------

/// Twenty saves by two agents at once on a fresh interaction: whoever saved
/// first owns the draft; all of their saves went through and every save of
/// the other was refused.
pub(super) async fn concurrent_draft_saves_leave_one_owner(store: &Store) {
    let open = interaction(store).await;
    let alice = agent(store, "alice").await;
    let bob = agent(store, "bob").await;
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            let who = if n % 2 == 0 { alice.id } else { bob.id };
            tokio::spawn(async move {
                let c = content(&["jane@customer.test"], "Re", &format!("save {n}"));
                (who, store.save_draft(open.id, who, c, CHECK).await.unwrap())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let owner = store.draft(open.id).await.unwrap().agent;
    for (who, outcome) in outcomes {
        match outcome {
            DraftOutcome::Saved(d) => assert_eq!((who, d.agent), (owner, owner)),
            DraftOutcome::OwnedByOther(d) => assert!(who != owner && d.agent == owner),
            DraftOutcome::Changed(d) => panic!("no base was given: {d:?}"),
        }
    }
}

/// Twenty tag sets at once: the result is one of them, never a mix.
pub(super) async fn concurrent_tag_sets_never_mix(store: &Store) {
    let open = interaction(store).await;
    for n in 0..20 {
        store.create_tag(&format!("t{n:02}")).await.unwrap();
    }
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .set_interaction_tags(open.id, vec![format!("t{n:02}")])
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.interaction_tags(open.id).await.unwrap().len(), 1);
}
