//! Contract: what downloads and canned answers read and write — where an
//! attachment belongs, a message's stored source, the agents behind each
//! message, and canned answers' CRUD.

use mailroom::domain::MessageKind;
use mailroom::store::{CannedAnswerSpec, NewNote, NewUpload};

use super::ingest::{Mail, created, ingest, serv};
use super::*;

const WITH_FILE: &[u8] = b"From: Bob <bob@customer.test>\r\n\
    To: serv@example.test\r\n\
    Subject: Invoice\r\n\
    Message-ID: <dl-place@customer.test>\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
    \r\n\
    --b1\r\n\
    Content-Type: text/plain\r\n\
    \r\n\
    See attached.\r\n\
    --b1\r\n\
    Content-Type: application/pdf\r\n\
    Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
    Content-Transfer-Encoding: base64\r\n\
    \r\n\
    JVBERi0xLjQK\r\n\
    --b1--\r\n";

pub(super) async fn attachment_place_names_message_interaction_and_uploader(store: &Store) {
    let account = serv(store).await;
    let (interaction, message, _) = created(ingest(store, &account, WITH_FILE, 1).await);
    let stored = store.messages(interaction.id).await.unwrap();
    let file = stored[0].attachments[0].clone();
    let place = store.attachment_place(file.id).await.unwrap();
    assert_eq!(place.meta, file);
    assert_eq!(place.message, Some(message));
    assert_eq!(place.interaction, Some(interaction.id));
    assert_eq!(place.uploaded_by, None);

    let alice = agent(store, "alice").await;
    let upload = store
        .store_upload(NewUpload {
            agent: alice.id,
            filename: "draft.txt".into(),
            content_type: "text/plain".into(),
            data: b"hello".to_vec(),
        })
        .await
        .unwrap();
    let place = store.attachment_place(upload.id).await.unwrap();
    assert_eq!((place.message, place.interaction), (None, None));
    assert_eq!(place.uploaded_by, Some(alice.id));
    assert_eq!(place.meta.filename, "draft.txt");
    assert_eq!(place.meta.size, 5);

    assert_not_found(
        store
            .attachment_place(mailroom::domain::AttachmentId(999_999))
            .await,
        "attachment",
    );
}

pub(super) async fn message_source_is_the_stored_raw(store: &Store) {
    let account = serv(store).await;
    let raw = Mail::new("dl-src", "Source", "Body text.").raw();
    let (interaction, message, _) = created(ingest(store, &account, &raw, 1).await);
    let source = store.message_source(message).await.unwrap();
    assert_eq!(source.interaction, interaction.id);
    assert_eq!(source.raw.as_deref(), Some(raw.as_slice()));
    assert_eq!(
        store.message_interaction(message).await.unwrap(),
        interaction.id
    );

    let alice = agent(store, "alice").await;
    let note = store
        .add_note(NewNote {
            interaction: interaction.id,
            author: alice.id,
            for_agent: None,
            text: "internal".into(),
            attachments: Vec::new(),
        })
        .await
        .unwrap();
    let source = store.message_source(note.id).await.unwrap();
    assert_eq!(source.interaction, interaction.id);
    assert_eq!(source.raw, None);

    assert_not_found(
        store
            .message_source(mailroom::domain::MessageId(999_999))
            .await,
        "message",
    );
    assert_not_found(
        store
            .message_interaction(mailroom::domain::MessageId(999_999))
            .await,
        "message",
    );
}

pub(super) async fn message_agents_follow_the_messages(store: &Store) {
    let account = serv(store).await;
    let raw = Mail::new("dl-agents", "Agents", "Hello.").raw();
    let (interaction, mail, _) = created(ingest(store, &account, &raw, 1).await);
    let alice = agent(store, "alice").await;
    let sup = agent(store, "sup").await;
    for (author, for_agent) in [(alice.id, None), (sup.id, Some(alice.id))] {
        store
            .add_note(NewNote {
                interaction: interaction.id,
                author,
                for_agent,
                text: "note".into(),
                attachments: Vec::new(),
            })
            .await
            .unwrap();
    }
    let messages = store.messages(interaction.id).await.unwrap();
    let agents = store.message_agents(interaction.id).await.unwrap();
    assert_eq!(
        agents.iter().map(|a| a.message).collect::<Vec<_>>(),
        messages.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    assert_eq!(agents[0].message, mail);
    assert_eq!((agents[0].author, agents[0].for_agent), (None, None));
    assert_eq!(messages[1].kind, MessageKind::Note);
    assert_eq!(
        (agents[1].author, agents[1].for_agent),
        (Some(alice.id), None)
    );
    assert_eq!(messages[2].kind, MessageKind::SupervisorNote);
    assert_eq!(
        (agents[2].author, agents[2].for_agent),
        (Some(sup.id), Some(alice.id))
    );
    assert_not_found(
        store.message_agents(InteractionId(999_999)).await,
        "interaction",
    );
}

fn canned(title: &str, text: &str, html: Option<&str>) -> CannedAnswerSpec {
    CannedAnswerSpec {
        title: title.into(),
        text: text.into(),
        html: html.map(str::to_string),
    }
}

pub(super) async fn canned_answers_are_created_listed_updated_and_deleted(store: &Store) {
    let before = now_ms();
    let hello = store
        .create_canned_answer(canned(
            "  hello ",
            "Hi {{contact.first_name}}",
            Some("<p>Hi</p>"),
        ))
        .await
        .unwrap();
    assert_eq!(hello.title, "hello");
    assert_eq!(hello.text, "Hi {{contact.first_name}}");
    assert_eq!(hello.html.as_deref(), Some("<p>Hi</p>"));
    assert!(hello.created_at >= before);
    assert_eq!(hello.created_at, hello.updated_at);
    let bye = store
        .create_canned_answer(canned("Bye", "Bye", None))
        .await
        .unwrap();
    assert_ne!(hello.id, bye.id);
    assert_eq!(store.canned_answer(hello.id).await.unwrap(), hello);

    // By title, bytewise: uppercase first.
    let titles: Vec<String> = store
        .list_canned_answers()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.title)
        .collect();
    assert_eq!(titles, ["Bye", "hello"]);

    let updated = store
        .update_canned_answer(bye.id, canned("Bye", "Goodbye", Some("<b>Goodbye</b>")))
        .await
        .unwrap();
    assert_eq!(updated.text, "Goodbye");
    assert_eq!(updated.html.as_deref(), Some("<b>Goodbye</b>"));
    assert_eq!(updated.created_at, bye.created_at);
    assert!(updated.updated_at >= bye.updated_at);
    assert_eq!(store.canned_answer(bye.id).await.unwrap(), updated);

    assert_invalid(
        store.create_canned_answer(canned(" ", "x", None)).await,
        "title",
    );
    assert_invalid(
        store
            .update_canned_answer(bye.id, canned("", "x", None))
            .await,
        "title",
    );
    assert_not_found(
        store
            .update_canned_answer(999_999, canned("t", "x", None))
            .await,
        "canned answer",
    );

    store.delete_canned_answer(hello.id).await.unwrap();
    assert_not_found(store.canned_answer(hello.id).await, "canned answer");
    assert_not_found(store.delete_canned_answer(hello.id).await, "canned answer");
    assert_eq!(store.list_canned_answers().await.unwrap(), [updated]);
}
