//! Ingest end to end: mail sent through the real Postfix lands in the real
//! Dovecot, the account's mailbox actor picks it up over IMAP IDLE and
//! commits it. Each test has its own mailbox address and its own store.

use std::time::Duration;

use mailroom::domain::{AccountId, Direction, InteractionStatus, MessageKind};
use mailroom::store::{Interaction, Store};

use crate::support::app::{Backend, Options, TestApp, spawn_app};
use crate::support::mail::{fresh_address, mail_password, smtp_send};
use crate::support::services::service_var;

/// An app with one account `SERV` reading `mailbox` on the test Dovecot.
pub async fn app_with_account(backend: Backend, mailbox: &str, extra: &str) -> TestApp {
    let imap = service_var("MAILROOM_TEST_IMAP_ADDR");
    let (host, port) = imap.rsplit_once(':').expect("host:port");
    let smtp = service_var("MAILROOM_TEST_SMTP_ADDR");
    let (shost, sport) = smtp.rsplit_once(':').expect("host:port");
    let pw = mail_password();
    let config = format!(
        r#"
[[queues]]
name = "support"
agents = ["alice", "bob"]

[[accounts]]
key = "SERV"
address = "{mailbox}"
queue = "support"
imap = {{ host = "{host}", port = {port}, tls = "none", username = "{mailbox}", password = "{pw}" }}
smtp = {{ host = "{shost}", port = {sport}, tls = "none", username = "{mailbox}", password = "{pw}" }}
{extra}
"#
    );
    spawn_app(Options {
        backend,
        extra: config,
        ..Options::default()
    })
    .await
}

pub fn store(app: &TestApp) -> &Store {
    &app.app.state.store
}

pub async fn account_id(app: &TestApp) -> AccountId {
    store(app).account_by_key("SERV").await.expect("account").id
}

/// Wait until the account has `n` interactions, and return them.
pub async fn wait_interactions(app: &TestApp, n: usize) -> Vec<Interaction> {
    let account = account_id(app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = store(app)
            .interactions_of_account(account)
            .await
            .expect("list");
        if list.len() >= n {
            assert_eq!(list.len(), n, "more interactions than expected");
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} interactions arrived",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until an interaction has `n` messages.
pub async fn wait_messages(
    app: &TestApp,
    interaction: &Interaction,
    n: usize,
) -> Vec<mailroom::store::StoredMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = store(app).messages(interaction.id).await.expect("messages");
        if list.len() >= n {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} messages arrived",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small, ordinary mail.
pub fn mail(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    extra_headers: &str,
    body: &str,
) -> Vec<u8> {
    format!(
        "From: Jane Customer <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         {extra_headers}\r\n{body}\r\n"
    )
    .into_bytes()
}

fn id(tag: &str) -> String {
    format!("{tag}.{:016x}@customer.example.test", rand::random::<u64>())
}

async fn sent_mail_becomes_an_interaction_and_replies_join_it(backend: Backend) {
    let mailbox = fresh_address("support");
    let customer = fresh_address("jane");
    let app = app_with_account(backend, &mailbox, "").await;

    let first = id("first");
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(
            &customer,
            &mailbox,
            "Printer on fire",
            &first,
            "",
            "Help, it burns.",
        ),
    )
    .await;
    let list = wait_interactions(&app, 1).await;
    let thread = &list[0];
    assert_eq!(thread.subject, "Printer on fire");
    assert_eq!(thread.status, InteractionStatus::Open);
    assert!(thread.owner.is_none());
    assert!(thread.unread);
    let contact = store(&app)
        .contact(thread.contact.expect("contact"))
        .await
        .unwrap();
    assert_eq!(contact.first_name, "Jane");
    assert_eq!(contact.last_name, "Customer");
    assert_eq!(contact.emails, vec![customer.to_lowercase()]);

    // A reply by In-Reply-To, then one by References only (Outlook strips
    // In-Reply-To at times): both join the thread.
    let second = id("second");
    let reply = mail(
        &customer,
        &mailbox,
        "Re: Printer on fire",
        &second,
        &format!("In-Reply-To: <{first}>\r\n"),
        "Still burning.",
    );
    smtp_send(&customer, &[&mailbox], &reply).await;
    let third = id("third");
    let reply = mail(
        &customer,
        &mailbox,
        "RE: Printer on fire",
        &third,
        &format!("References: <{first}> <{second}>\r\n"),
        "Now smoking.",
    );
    smtp_send(&customer, &[&mailbox], &reply).await;
    let messages = wait_messages(&app, thread, 3).await;
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m.direction == Direction::In && m.kind == MessageKind::Mail)
    );
    assert!(
        messages[2]
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Now smoking")
    );
    // Still one interaction.
    wait_interactions(&app, 1).await;
    let status: serde_json::Value = app
        .get(&app.login("admin").await, "/api/v1/accounts/SERV/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["mailbox"]["connected"], true, "{status}");
    assert_eq!(status["mailbox"]["idle_supported"], true, "{status}");
    assert_eq!(status["mailbox"]["ingested"], 3, "{status}");
}

#[tokio::test]
async fn sqlite_sent_mail_becomes_an_interaction_and_replies_join_it() {
    sent_mail_becomes_an_interaction_and_replies_join_it(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_sent_mail_becomes_an_interaction_and_replies_join_it() {
    sent_mail_becomes_an_interaction_and_replies_join_it(Backend::Postgres).await;
}

#[tokio::test]
async fn a_reply_after_close_opens_thread_two_linked_both_ways() {
    let mailbox = fresh_address("support");
    let customer = fresh_address("joe");
    let app = app_with_account(Backend::Sqlite, &mailbox, "").await;
    let first = id("t1");
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(
            &customer,
            &mailbox,
            "Refund",
            &first,
            "",
            "Where is my refund?",
        ),
    )
    .await;
    let t1 = wait_interactions(&app, 1).await.remove(0);
    store(&app)
        .close_interaction(t1.id, InteractionStatus::Closed, None)
        .await
        .unwrap();

    let reply = mail(
        &customer,
        &mailbox,
        "Re: Refund",
        &id("t2"),
        &format!("In-Reply-To: <{first}>\r\n"),
        "Still nothing.",
    );
    smtp_send(&customer, &[&mailbox], &reply).await;
    let list = wait_interactions(&app, 2).await;
    let (t1, t2) = (&list[0], &list[1]);
    assert_eq!(t2.continues, Some(t1.id));
    assert_eq!(t1.continued_in, Some(t2.id));
    assert_eq!(t2.status, InteractionStatus::Open);
    // The list shows thread 1 with one new, unhandled thread after it.
    let admin = app.login("admin").await;
    let listed: serde_json::Value = app
        .get(&admin, "/api/v1/interactions?status=closed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], t1.id.to_string());
    assert_eq!(listed["items"][0]["new_in_conversation"], 1);
    assert_eq!(listed["items"][0]["continued_in"], t2.id.to_string());
    let messages = wait_messages(&app, t2, 1).await;
    let mbox = messages[0]
        .attachments
        .iter()
        .find(|a| a.content_type == "application/mbox")
        .expect("thread 1 attached as mbox");
    let (_, bytes) = store(&app).attachment(mbox.id).await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("From "), "{text}");
    assert!(text.contains("Where is my refund?"), "{text}");

    // Thread 1 is reopened (by an admin, through the API): it stays linked
    // to thread 2, and a later reply that names thread 1's message still
    // lands in thread 2, the newest thread of the conversation.
    let res = app
        .send_json(
            reqwest::Method::POST,
            &admin,
            &format!("/api/v1/interactions/{}/reopen", t1.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let reopened: serde_json::Value = res.json().await.unwrap();
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["reopened"], true);
    assert_eq!(reopened["continued_in"], t2.id.to_string());
    let later = mail(
        &customer,
        &mailbox,
        "Re: Refund",
        &id("t3"),
        &format!("References: <{first}>\r\n"),
        "Hello?",
    );
    smtp_send(&customer, &[&mailbox], &later).await;
    wait_messages(&app, t2, 2).await;
    wait_interactions(&app, 2).await;
    assert_eq!(store(&app).messages(t1.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn auto_replies_do_not_clear_state_and_bounces_are_recognised() {
    let mailbox = fresh_address("support");
    let customer = fresh_address("ann");
    let app = app_with_account(Backend::Sqlite, &mailbox, "").await;
    let first = id("a1");
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(
            &customer,
            &mailbox,
            "Order 42",
            &first,
            "",
            "Where is order 42?",
        ),
    )
    .await;
    let thread = wait_interactions(&app, 1).await.remove(0);

    let ooo = mail(
        &customer,
        &mailbox,
        "Out of office: Re: Order 42",
        &id("ooo"),
        &format!("In-Reply-To: <{first}>\r\nAuto-Submitted: auto-replied\r\n"),
        "I am away until Monday.",
    );
    smtp_send(&customer, &[&mailbox], &ooo).await;
    let messages = wait_messages(&app, &thread, 2).await;
    assert_eq!(messages[1].kind, MessageKind::AutoReply);
    let after = store(&app).interaction(thread.id).await.unwrap();
    let last = after.last_message.expect("last message");
    assert!(
        last.preview.contains("Where is order 42"),
        "an auto-reply is never the last message: {}",
        last.preview
    );

    // A DSN about a mail we never sent is not lost: it is kept as an auto-reply.
    let dsn = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus/cpython-email/msg_16.txt"
    ))
    .or_else(|_| {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpus/cpython-email/msg_16.txt"
        ))
    })
    .expect("the DSN fixture");
    smtp_send("mailer-daemon@example.test", &[&mailbox], &dsn).await;
    let list = wait_interactions(&app, 2).await;
    let bounce_messages = wait_messages(&app, &list[1], 1).await;
    assert_eq!(bounce_messages[0].kind, MessageKind::AutoReply);
}

#[tokio::test]
async fn an_account_added_through_the_api_starts_reading_at_once_and_stops_when_deleted() {
    use reqwest::Method;
    use serde_json::json;

    let app = spawn_app(Options {
        extra: "[[queues]]\nname = \"support\"\nagents = [\"alice\"]\n".into(),
        ..Options::default()
    })
    .await;
    let admin = app.login("admin").await;
    let mailbox = fresh_address("sales");
    let imap = service_var("MAILROOM_TEST_IMAP_ADDR");
    let (host, port) = imap.rsplit_once(':').unwrap();
    let body = json!({
        "key": "SALE", "address": mailbox, "queue": "support",
        "imap": {"host": host, "port": port.parse::<u16>().unwrap(), "tls": "none", "password": mail_password()},
        "smtp": {"host": host, "port": 10025, "tls": "none", "password": mail_password()}
    });
    let res = app
        .send_json(Method::POST, &admin, "/api/v1/accounts", body)
        .await;
    assert_eq!(res.status(), 201);
    let customer = fresh_address("c");
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(&customer, &mailbox, "New account works", &id("n"), "", "hi"),
    )
    .await;
    let account = store(&app).account_by_key("SALE").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store(&app)
        .interactions_of_account(account.id)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new account's mail never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status: serde_json::Value = app
        .get(&admin, "/api/v1/accounts/SALE/status")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["mailbox"]["connected"], true, "{status}");

    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            "/api/v1/accounts/SALE",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(res.status(), 204);
    // The mailbox is no longer running: status of a deleted account is 404.
    assert_eq!(
        app.get(&admin, "/api/v1/accounts/SALE/status")
            .await
            .status(),
        404
    );
    assert!(app.app.state.mailboxes.status(account.id).is_none());
}

/// The owner of an interaction hears a customer's reply at once: the whole
/// message as the API shows it (`message_added`), then the interaction, now
/// unread (`interaction_updated`).
#[tokio::test]
async fn the_owner_hears_a_reply_with_the_message_and_the_new_state() {
    use crate::support::app::next_frame;
    let mailbox = fresh_address("support");
    let customer = fresh_address("kim");
    let app = app_with_account(Backend::Sqlite, &mailbox, "").await;
    let token = app.login("alice").await;
    let (mut ws, _) = app.ws(&token).await;
    let first = id("k1");
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(&customer, &mailbox, "Delivery", &first, "", "Where is it?"),
    )
    .await;
    // alice takes the offer.
    let offer = loop {
        let f = next_frame(&mut ws).await;
        if f["type"] == "offer" {
            break f;
        }
    };
    // What the offer shows comes from the mail itself (the mailbox hands it
    // to the queue with the interaction).
    assert_eq!(offer["subject"], "Delivery", "{offer}");
    assert_eq!(
        offer["from"],
        format!("Jane Customer <{customer}>"),
        "{offer}"
    );
    assert_eq!(offer["preview"], "Where is it?", "{offer}");
    assert_eq!(offer["account"], "SERV", "{offer}");
    crate::support::app::send_frame(
        &mut ws,
        serde_json::json!({"type": "accept", "offer_id": offer["offer_id"]}),
    )
    .await;
    // The claim is committed once `assigned` arrives (persist, then
    // announce); asking before that raced the accept.
    loop {
        let f = next_frame(&mut ws).await;
        if f["type"] == "assigned" {
            break;
        }
    }
    // Opening it marks it read.
    let res = app
        .get(
            &token,
            &format!(
                "/api/v1/interactions/{}",
                offer["interaction_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(res.status(), 200);
    let opened: serde_json::Value = res.json().await.unwrap();
    assert_eq!(opened["unread"], false);
    assert_eq!(opened["owner"], "alice");
    assert_eq!(opened["messages"].as_array().unwrap().len(), 1);

    smtp_send(
        &customer,
        &[&mailbox],
        &mail(
            &customer,
            &mailbox,
            "Re: Delivery",
            &id("k2"),
            &format!("In-Reply-To: <{first}>\r\n"),
            "Still waiting.",
        ),
    )
    .await;
    let added = loop {
        let f = next_frame(&mut ws).await;
        if f["type"] == "message_added" {
            break f;
        }
    };
    assert_eq!(added["interaction_id"], offer["interaction_id"]);
    assert_eq!(added["message"]["direction"], "in");
    assert!(
        added["message"]["text"]
            .as_str()
            .unwrap()
            .contains("Still waiting."),
        "{added}"
    );
    let updated = loop {
        let f = next_frame(&mut ws).await;
        if f["type"] == "interaction_updated" {
            break f;
        }
    };
    assert_eq!(updated["interaction"]["id"], offer["interaction_id"]);
    assert_eq!(updated["interaction"]["unread"], true);
}
