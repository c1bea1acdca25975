//! Contacts over HTTP: create, edit, search, merge, and the journey. Every
//! test on both stores.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Backend, Options, TestApp, spawn_app};
use crate::support::on_both_stores;

fn config() -> String {
    let account = |key: &str, queue: &str| {
        format!(
            "[[accounts]]\nkey = \"{key}\"\naddress = \"{}@example.test\"\nqueue = \"{queue}\"\n\
             imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
             smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n",
            key.to_lowercase()
        )
    };
    format!(
        "[[agents]]\nusername = \"carol\"\npassword = \"pw-carol\"\nname = \"Carol\"\nrole = \"agent\"\ncapacity = 10\n\
         [[queues]]\nname = \"support\"\nagents = [\"alice\", \"bob\"]\n\
         [[queues]]\nname = \"billing\"\nagents = [\"carol\"]\n{}{}",
        account("SERV", "support"),
        account("BILL", "billing")
    )
}

async fn app(backend: Backend) -> TestApp {
    spawn_app(Options {
        backend,
        extra: config(),
        ..Options::default()
    })
    .await
}

/// A customer's mail ingested as the mailbox would; returns the contact id.
async fn mail(app: &TestApp, from: &str, subject: &str) -> String {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let raw = format!(
        "From: {from}\r\nTo: <serv@example.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 13 Mar 2025 15:00:00 +0100\r\nMessage-ID: <{}@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n",
        crate::support::app::rand_suffix()
    )
    .into_bytes();
    let parsed = mailroom::mail::parse::parse(&raw).unwrap();
    match store
        .ingest_mail(mailroom::store::IngestMail {
            account: account.id,
            account_key: account.key.clone(),
            queue: account.queue_id,
            position: None,
            internal_date: None,
            raw,
            parsed,
            refs: mailroom::domain::threading::ReplyRefs::default(),
        })
        .await
        .unwrap()
    {
        mailroom::store::IngestOutcome::Created {
            contact: Some(c), ..
        } => c.to_string(),
        other => panic!("{other:?}"),
    }
}

async fn call(app: &TestApp, method: Method, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app.send_json(method, token, path, body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app.get(token, path).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["first_name"].as_str().unwrap(),
                c["last_name"].as_str().unwrap()
            )
        })
        .collect()
}

async fn create_edit_and_search(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let (status, body) = call(
        &app,
        Method::POST,
        &alice,
        "/api/v1/contacts",
        json!({"first_name": " Ana ", "last_name": "Ibáñez", "emails": ["Ana@Example.COM", "ana@example.com", "ana.i@work.example"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["first_name"], "Ana");
    assert_eq!(
        body["emails"],
        json!(["ana.i@work.example", "ana@example.com"])
    );
    let ana = body["id"].as_str().unwrap().to_string();
    // Bad input: every problem at once.
    let (status, body) = call(
        &app,
        Method::POST,
        &alice,
        "/api/v1/contacts",
        json!({"emails": ["not an address", "x@"]}),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not an address") && message.contains("x@"),
        "{message}"
    );
    let (status, _) = call(
        &app,
        Method::POST,
        &alice,
        "/api/v1/contacts",
        json!({"emails": []}),
    )
    .await;
    assert_eq!(status, 400);
    // An address of another contact: 409.
    let (status, body) = call(
        &app,
        Method::POST,
        &alice,
        "/api/v1/contacts",
        json!({"first_name": "Other", "emails": ["ana@example.com"]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    mail(&app, "Bruno Díaz <bruno@shop.example>", "Hi").await;
    // Search: name words (accents folded, prefixes), an address's start.
    let (_, found) = get(&app, &alice, "/api/v1/contacts?q=ibanez").await;
    assert_eq!(names(&found), ["Ana Ibáñez"]);
    let (_, found) = get(&app, &alice, "/api/v1/contacts?q=bru%20di").await;
    assert_eq!(names(&found), ["Bruno Díaz"]);
    let (_, found) = get(&app, &alice, "/api/v1/contacts?q=ana.i%40work").await;
    assert_eq!(names(&found), ["Ana Ibáñez"]);
    let (_, found) = get(&app, &alice, "/api/v1/contacts").await;
    assert_eq!(found.as_array().unwrap().len(), 2);
    let (_, found) = get(&app, &alice, "/api/v1/contacts?q=%27%20OR%201%3D1").await;
    assert!(found.as_array().unwrap().is_empty());

    // Edit: names and the set of addresses replaced.
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/contacts/{ana}"),
        json!({"first_name": "Ana María", "last_name": "Ibáñez", "emails": ["ana@example.com", "ana@new.example"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["emails"],
        json!(["ana@example.com", "ana@new.example"])
    );
    let (_, body) = get(&app, &alice, &format!("/api/v1/contacts/{ana}")).await;
    assert_eq!(body["first_name"], "Ana María");
    let (status, _) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/contacts/{ana}"),
        json!({"emails": ["bruno@shop.example"]}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = get(&app, &alice, "/api/v1/contacts/999999").await;
    assert_eq!(status, 404);

    // Delete: supervisors, and only a contact without interactions.
    let (status, _) = call(
        &app,
        Method::DELETE,
        &alice,
        &format!("/api/v1/contacts/{ana}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let sup = app.login("sup").await;
    let (_, found) = get(&app, &sup, "/api/v1/contacts?q=bruno").await;
    let bruno = found[0]["id"].as_str().unwrap().to_string();
    let (status, body) = call(
        &app,
        Method::DELETE,
        &sup,
        &format!("/api/v1/contacts/{bruno}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        &app,
        Method::DELETE,
        &sup,
        &format!("/api/v1/contacts/{ana}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(&app, &sup, &format!("/api/v1/contacts/{ana}")).await;
    assert_eq!(status, 404);
    // Its addresses are free again.
    let (status, _) = call(
        &app,
        Method::POST,
        &sup,
        "/api/v1/contacts",
        json!({"emails": ["ana@example.com"]}),
    )
    .await;
    assert_eq!(status, 201);
}

/// Two contacts turn out to be one person: merging moves the interactions
/// and addresses; the journey shows them all; later mail from the merged
/// address files under the kept contact.
async fn merge_and_journey(backend: Backend) {
    let app = app(backend).await;
    let kept = mail(&app, "Lee Chan <lee@home.example>", "First").await;
    let gone = mail(&app, "L. Chan <lee.chan@work.example>", "Second").await;
    let alice = app.login("alice").await;
    let (status, _) = call(
        &app,
        Method::POST,
        &alice,
        &format!("/api/v1/contacts/{kept}/merge"),
        json!({"from": gone}),
    )
    .await;
    assert_eq!(status, 403, "agents may not merge");
    let sup = app.login("sup").await;
    let (status, _) = call(
        &app,
        Method::POST,
        &sup,
        &format!("/api/v1/contacts/{kept}/merge"),
        json!({"from": kept}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call(
        &app,
        Method::POST,
        &sup,
        &format!("/api/v1/contacts/{kept}/merge"),
        json!({"from": gone}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["emails"],
        json!(["lee.chan@work.example", "lee@home.example"])
    );
    assert_eq!(body["first_name"], "Lee");
    let (status, body) = get(&app, &sup, &format!("/api/v1/contacts/{gone}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["id"], kept,
        "a merged contact answers as the one it joined"
    );
    let (_, all) = get(&app, &sup, "/api/v1/contacts").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "merged contacts are not listed"
    );

    let third = mail(&app, "Lee <lee.chan@work.example>", "Third").await;
    assert_eq!(
        third, kept,
        "later mail from the merged address files under the kept contact"
    );

    let (status, journey) = get(
        &app,
        &sup,
        &format!("/api/v1/contacts/{kept}/journey?channel=email"),
    )
    .await;
    assert_eq!(status, 200, "{journey}");
    let mut subjects: Vec<&str> = journey["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["First", "Second", "Third"]);
    // Agents see the journey through their rights: alice (support) all,
    // carol (billing) none.
    let (_, journey) = get(&app, &alice, &format!("/api/v1/contacts/{kept}/journey")).await;
    assert_eq!(journey["items"].as_array().unwrap().len(), 3);
    let carol = app.login("carol").await;
    let (_, journey) = get(&app, &carol, &format!("/api/v1/contacts/{kept}/journey")).await;
    assert!(journey["items"].as_array().unwrap().is_empty());
    // Filters and errors.
    let (_, journey) = get(
        &app,
        &sup,
        &format!("/api/v1/contacts/{kept}/journey?from=2999-01-01T00:00:00Z"),
    )
    .await;
    assert!(journey["items"].as_array().unwrap().is_empty());
    let (status, body) = get(
        &app,
        &sup,
        &format!("/api/v1/contacts/{kept}/journey?channel=sms"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("email"));
    let (_, page) = get(
        &app,
        &sup,
        &format!("/api/v1/contacts/{kept}/journey?limit=2"),
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());
}

on_both_stores!(create_edit_and_search, merge_and_journey);
