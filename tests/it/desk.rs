//! The desk over HTTP (issue #5): drafts, notes, tags, sub-status and
//! unread, with the owner's WebSocket hearing of each change, and who may
//! do which. Every test runs on both stores; the sub-status test also runs
//! real mail through Postfix and Dovecot.

use std::time::Duration;

use futures_util::StreamExt;
use mailroom::store::{ClaimOutcome, IngestMail, IngestOutcome, NewInteraction};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{Backend, Options, TestApp, Ws, next_frame, spawn_app};
use crate::support::mail::{fresh_address, smtp_send};
use crate::support::on_both_stores;

/// A queue `support` (alice, bob, sup) fed by `SERV` (marking unread
/// allowed) and `NOUN` (not allowed). The mail servers are never reached
/// (port 1): interactions are made in the store.
fn config() -> String {
    "[[queues]]\nname = \"support\"\nstrategy = \"ring_all\"\nagents = [\"alice\", \"bob\", \"sup\"]\n\
     [[accounts]]\nkey = \"SERV\"\naddress = \"support@example.test\"\nqueue = \"support\"\n\
     imap = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
     smtp = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
     [[accounts]]\nkey = \"NOUN\"\naddress = \"nounread@example.test\"\nqueue = \"support\"\nallow_mark_unread = false\n\
     imap = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
     smtp = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n"
        .to_string()
}

async fn app(backend: Backend) -> TestApp {
    spawn_app(Options {
        backend,
        extra: config(),
        ..Options::default()
    })
    .await
}

/// A new interaction of `account`, owned by `owner` (claimed in the store,
/// as an accepted offer would), or waiting with no owner.
async fn interaction(app: &TestApp, account: &str, subject: &str, owner: Option<&str>) -> String {
    let store = &app.app.state.store;
    let account = store.account_by_key(account).await.unwrap();
    let i = store
        .create_interaction(NewInteraction {
            account: account.id,
            queue: account.queue_id,
            subject: subject.into(),
            contact: None,
            priority: 0,
        })
        .await
        .unwrap();
    if let Some(owner) = owner {
        let agent = store.agent_by_username(owner).await.unwrap();
        assert!(matches!(
            store.claim(i.id, agent.id, i.version).await.unwrap(),
            ClaimOutcome::Won(_)
        ));
    }
    i.id.to_string()
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

async fn delete(app: &TestApp, token: &str, path: &str) -> u16 {
    app.http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn next_of(ws: &mut Ws, types: &[&str]) -> Value {
    loop {
        let f = next_frame(ws).await;
        if types.contains(&f["type"].as_str().unwrap_or_default()) {
            return f;
        }
    }
}

/// No frame of these types within `wait` (only for what must NOT happen).
async fn none_of(ws: &mut Ws, types: &[&str], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                assert!(
                    !types.contains(&f["type"].as_str().unwrap_or_default()),
                    "unexpected {f}"
                );
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

/// A multipart body with one file part.
fn multipart(filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("mailroomdesk{:016x}", rand::random::<u64>());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &TestApp, token: &str, filename: &str, data: &[u8]) -> String {
    let (content_type, body) = multipart(filename, data);
    let res = app
        .http
        .post(app.url("/api/v1/attachments"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "upload");
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

// ---- drafts -------------------------------------------------------------------------

/// The draft rules end to end: private (others get 404), owner-only saves,
/// idempotent autosave, `base` conflicts, 409 with owner and time without
/// `replace`, replace wins, "my drafts" with display names, deleted on close.
async fn drafts(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let admin = app.login("admin").await;
    let sup = app.login("sup").await;
    let id = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let path = format!("/api/v1/interactions/{id}/draft");

    let (status, body) = get(&app, &alice, &path).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let draft = json!({
        "mode": "reply_all",
        "to": ["Jane Doe <jane@customer.test>", "joe@customer.test"],
        "cc": ["\"Doe, Carl\" <carl@customer.test>"],
        "subject": "Re: Printer",
        "text": "Dear Jane",
        "html": "<p>Dear <b>Jane</b></p><script>alert(1)</script><img src=x onerror=alert(2)>",
        "attachments": [],
    });
    let (status, first) = call(&app, Method::PUT, &alice, &path, draft.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["owner"], "alice");
    assert_eq!(first["interaction_id"], id);
    assert_eq!(first["mode"], "reply_all");
    assert_eq!(first["to"], draft["to"]);
    assert_eq!(first["cc"], draft["cc"]);
    assert_eq!(first["bcc"], json!([]));
    assert_eq!(first["message"], Value::Null);
    let html = first["html"].as_str().unwrap();
    assert!(html.contains("<b>Jane</b>"), "{html}");
    assert!(
        !html.contains("script") && !html.contains("onerror"),
        "{html}"
    );
    let (status, got) = get(&app, &alice, &path).await;
    assert_eq!((status, &got), (200, &first));

    // Autosave of the same body: the same draft, a later updated_at; even
    // with an old base (a retry whose first answer was lost).
    let (status, second) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("{path}?base=2020-01-01T00:00:00Z"),
        draft.clone(),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    for field in ["to", "cc", "subject", "text", "html", "created_at", "mode"] {
        assert_eq!(second[field], first[field], "{field}");
    }
    assert!(second["updated_at"].as_str() > first["updated_at"].as_str());

    // Other content based on the first save (a second tab saved since): 409.
    let mut edited = draft.clone();
    edited["text"] = json!("Dear Jane, sorry");
    let base = |v: &Value| {
        format!(
            "{path}?base={}",
            v["updated_at"].as_str().unwrap().replace('+', "%2B")
        )
    };
    let (status, body) = call(&app, Method::PUT, &alice, &base(&first), edited.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "draft_changed");
    assert_eq!(body["draft"]["owner"], "alice");
    assert_eq!(body["draft"]["updated_at"], second["updated_at"]);
    let (status, third) = call(&app, Method::PUT, &alice, &base(&second), edited.clone()).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["text"], "Dear Jane, sorry");
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("{path}?base=yesterday"),
        edited.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (status, body) = call(&app, Method::PUT, &alice, &path, json!({"mode": "shout"})).await;
    assert_eq!(status, 400, "{body}");

    // Others: bob (may read it) sees no draft and cannot delete it; saving
    // is the owner's work (bob, sup: 403).
    assert_eq!(get(&app, &bob, &path).await.0, 404);
    assert_eq!(get(&app, &sup, &path).await.0, 404);
    assert_eq!(delete(&app, &bob, &path).await, 404);
    for token in [&bob, &sup] {
        let (status, body) = call(&app, Method::PUT, token, &path, draft.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
    }

    // An admin may work it, but not over alice's draft without replace: 409
    // naming alice and the time of her draft.
    let (status, body) = call(&app, Method::PUT, &admin, &path, json!({"text": "mine"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "draft_exists");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("alice"),
        "{body}"
    );
    assert_eq!(body["draft"]["owner"], "alice");
    assert_eq!(body["draft"]["owner_name"], "alice Test");
    assert_eq!(body["draft"]["updated_at"], third["updated_at"]);
    let (status, replaced) = call(
        &app,
        Method::PUT,
        &admin,
        &format!("{path}?replace=true"),
        json!({"text": "mine"}),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(
        (replaced["owner"].as_str(), replaced["mode"].as_str()),
        (Some("admin"), Some("reply"))
    );
    assert_eq!(get(&app, &alice, &path).await.0, 404);
    let (status, body) = call(&app, Method::PUT, &alice, &path, draft.clone()).await;
    assert_eq!(
        (status, body["draft"]["owner"].as_str()),
        (409, Some("admin")),
        "{body}"
    );
    assert_eq!(delete(&app, &alice, &path).await, 404);
    assert_eq!(delete(&app, &admin, &path).await, 204);
    assert_eq!(delete(&app, &admin, &path).await, 404);
    assert_eq!(
        call(&app, Method::PUT, &alice, &path, draft.clone())
            .await
            .0,
        200
    );

    // My drafts: KEY - TO, else KEY - SUBJECT, else KEY - Untitled.
    let second_id = interaction(&app, "SERV", "Invoice", Some("alice")).await;
    let third_id = interaction(&app, "NOUN", "Other", Some("alice")).await;
    let (status, _) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/interactions/{second_id}/draft"),
        json!({"subject": "Re: Invoice 42", "to": [" "]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/interactions/{third_id}/draft"),
        json!({"mode": "forward"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, list) = get(&app, &alice, "/api/v1/drafts").await;
    assert_eq!(status, 200);
    let shown: Vec<(&str, &str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["interaction_id"].as_str().unwrap(),
                d["account"].as_str().unwrap(),
                d["display_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (third_id.as_str(), "NOUN", "NOUN - Untitled"),
            (second_id.as_str(), "SERV", "SERV - Re: Invoice 42"),
            (id.as_str(), "SERV", "SERV - jane@customer.test"),
        ]
    );
    assert_eq!(list["items"][2]["text"], "Dear Jane");
    let (_, list) = get(&app, &bob, "/api/v1/drafts").await;
    assert_eq!(list["items"], json!([]));

    // Closing deletes the draft; a closed interaction takes none.
    let (status, _) = call(
        &app,
        Method::POST,
        &alice,
        &format!("/api/v1/interactions/{id}/close"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&app, &alice, &path).await.0, 404);
    let (_, list) = get(&app, &alice, "/api/v1/drafts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (status, body) = call(&app, Method::PUT, &alice, &path, draft.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // Unknown interaction: 404; bad attachment: 400.
    assert_eq!(
        call(
            &app,
            Method::PUT,
            &alice,
            "/api/v1/interactions/999999/draft",
            draft.clone()
        )
        .await
        .0,
        404
    );
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/interactions/{second_id}/draft"),
        json!({"attachments": ["999999"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A message that is not a mail of this interaction: 400.
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &format!("/api/v1/interactions/{second_id}/draft"),
        json!({"message": "999999"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

// ---- notes ---------------------------------------------------------------------------

/// Notes: `note` from the owner or a supervisor, `supervisor_note` only
/// from supervisors (403 for an agent); never the last message, never
/// unread; the owner's socket hears each; attachments are the author's
/// uploads.
async fn notes(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let sup = app.login("sup").await;
    let (mut alice_ws, _) = app.ws(&alice).await;
    let (mut bob_ws, _) = app.ws(&bob).await;
    let id = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let path = format!("/api/v1/interactions/{id}/notes");

    let (status, note) = call(
        &app,
        Method::POST,
        &sup,
        &path,
        json!({"text": "Check the warranty"}),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(
        (note["kind"].as_str(), note["direction"].as_str()),
        (Some("note"), Some("out"))
    );
    assert_eq!(
        (note["author"].as_str(), note["text"].as_str()),
        (Some("sup"), Some("Check the warranty"))
    );
    assert_eq!(
        (note["delivery"].clone(), note["from"].clone()),
        (Value::Null, Value::Null)
    );
    let added = next_of(&mut alice_ws, &["message_added"]).await;
    assert_eq!(added["interaction_id"], id);
    assert_eq!(added["message"]["id"], note["id"]);

    let (status, for_agent) = call(
        &app,
        Method::POST,
        &sup,
        &path,
        json!({"text": "Offer a refund", "for_agent": true}),
    )
    .await;
    assert_eq!(status, 201, "{for_agent}");
    assert_eq!(for_agent["kind"], "supervisor_note");
    let added = next_of(&mut alice_ws, &["message_added"]).await;
    assert_eq!(added["message"]["kind"], "supervisor_note");

    // An agent may note their own interaction, but not "for the agent".
    let (status, body) = call(
        &app,
        Method::POST,
        &alice,
        &path,
        json!({"text": "x", "for_agent": true}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, own) = call(
        &app,
        Method::POST,
        &alice,
        &path,
        json!({"text": "Called back"}),
    )
    .await;
    assert_eq!((status, own["kind"].as_str()), (201, Some("note")));
    next_of(&mut alice_ws, &["message_added"]).await;
    // Not the owner: 403, and bob's socket hears nothing of alice's notes.
    let (status, _) = call(&app, Method::POST, &bob, &path, json!({"text": "me too"})).await;
    assert_eq!(status, 403);
    none_of(&mut bob_ws, &["message_added"], Duration::from_millis(300)).await;
    // Nothing to say: 400. Unknown field: 400.
    assert_eq!(
        call(&app, Method::POST, &alice, &path, json!({"text": "  "}))
            .await
            .0,
        400
    );
    assert_eq!(
        call(&app, Method::POST, &alice, &path, json!({"txt": "x"}))
            .await
            .0,
        400
    );

    // A note with an upload; the same upload again, or someone else's: 400.
    let file = upload(&app, &alice, "photo.txt", b"a photo").await;
    let theirs = upload(&app, &bob, "bob.txt", b"bob's").await;
    let (status, with) = call(
        &app,
        Method::POST,
        &alice,
        &path,
        json!({"text": "See photo", "attachments": [file]}),
    )
    .await;
    assert_eq!(status, 201, "{with}");
    assert_eq!(with["attachments"][0]["id"], file.as_str());
    assert_eq!(with["attachments"][0]["filename"], "photo.txt");
    for again in [&file, &theirs] {
        let (status, body) = call(
            &app,
            Method::POST,
            &alice,
            &path,
            json!({"attachments": [again]}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }

    // The thread: four notes, none the last message, still read.
    let (status, thread) = get(&app, &alice, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["note", "supervisor_note", "note", "note"]);
    assert_eq!(thread["last_message"], Value::Null);
    assert_eq!(thread["unread"], false);

    // "For the agent" needs an agent: 409 on a waiting interaction; a plain
    // supervisor note there is fine.
    let waiting = interaction(&app, "SERV", "Waiting", None).await;
    let wpath = format!("/api/v1/interactions/{waiting}/notes");
    assert_eq!(
        call(
            &app,
            Method::POST,
            &sup,
            &wpath,
            json!({"text": "x", "for_agent": true})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(&app, Method::POST, &sup, &wpath, json!({"text": "x"}))
            .await
            .0,
        201
    );
}

// ---- tags ------------------------------------------------------------------------------

async fn tags(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let sup = app.login("sup").await;
    let admin = app.login("admin").await;
    let (mut alice_ws, _) = app.ws(&alice).await;
    let id = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let path = format!("/api/v1/interactions/{id}/tags");

    let (status, list) = get(&app, &alice, "/api/v1/tags").await;
    assert_eq!((status, list), (200, json!([])));
    assert_eq!(
        call(
            &app,
            Method::POST,
            &alice,
            "/api/v1/tags",
            json!({"name": "VIP"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            &sup,
            "/api/v1/tags",
            json!({"name": "VIP"})
        )
        .await
        .0,
        403
    );
    for name in ["VIP", "Needs callback"] {
        let (status, tag) = call(
            &app,
            Method::POST,
            &admin,
            "/api/v1/tags",
            json!({"name": name}),
        )
        .await;
        assert_eq!((status, tag["name"].as_str()), (201, Some(name)));
    }
    assert_eq!(
        call(
            &app,
            Method::POST,
            &admin,
            "/api/v1/tags",
            json!({"name": " VIP "})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            &admin,
            "/api/v1/tags",
            json!({"name": ""})
        )
        .await
        .0,
        400
    );
    let (_, list) = get(&app, &bob, "/api/v1/tags").await;
    assert_eq!(names(&list), ["Needs callback", "VIP"]);

    // Unknown tags: 400 listing them and the valid ones; nothing changes.
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"tags": ["VIP", "Gold", "Gold"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(body["unknown"], json!(["Gold"]));
    assert_eq!(body["valid"], json!(["Needs callback", "VIP"]));

    let (status, view) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"tags": ["VIP", "Needs callback"]}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["tags"], json!(["Needs callback", "VIP"]));
    let updated = next_of(&mut alice_ws, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["tags"], view["tags"]);
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(thread["tags"], view["tags"]);

    // Work is the owner's: bob and sup 403; an admin may, and alice hears it.
    for token in [&bob, &sup] {
        assert_eq!(
            call(&app, Method::PUT, token, &path, json!({"tags": []}))
                .await
                .0,
            403
        );
    }
    let (status, view) = call(&app, Method::PUT, &admin, &path, json!({"tags": ["VIP"]})).await;
    assert_eq!((status, view["tags"].clone()), (200, json!(["VIP"])));
    let updated = next_of(&mut alice_ws, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["tags"], json!(["VIP"]));

    // Deleting a tag takes it off interactions.
    assert_eq!(delete(&app, &alice, "/api/v1/tags/VIP").await, 403);
    assert_eq!(delete(&app, &admin, "/api/v1/tags/VIP").await, 204);
    assert_eq!(delete(&app, &admin, "/api/v1/tags/VIP").await, 404);
    assert_eq!(
        delete(&app, &admin, "/api/v1/tags/Needs%20callback").await,
        204
    );
    let (_, thread) = get(&app, &alice, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(thread["tags"], json!([]));
    assert_eq!(
        call(&app, Method::PUT, &alice, &path, json!({})).await.0,
        400
    );

    // The OpenAPI document lists every desk endpoint.
    let doc: Value = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (p, methods) in [
        (
            "/api/v1/interactions/{id}/draft",
            &["get", "put", "delete"][..],
        ),
        ("/api/v1/drafts", &["get"]),
        ("/api/v1/interactions/{id}/notes", &["post"]),
        ("/api/v1/tags", &["get", "post"]),
        ("/api/v1/tags/{name}", &["delete"]),
        ("/api/v1/interactions/{id}/tags", &["put"]),
        ("/api/v1/substatuses", &["get", "post"]),
        ("/api/v1/substatuses/{name}", &["delete"]),
        ("/api/v1/interactions/{id}/substatus", &["put"]),
        ("/api/v1/interactions/{id}/unread", &["post"]),
    ] {
        for m in methods {
            assert!(
                doc["paths"][p][m].is_object(),
                "{m} {p} missing from the OpenAPI document"
            );
        }
    }
}

// ---- sub-status ---------------------------------------------------------------------------

/// One mail for `SERV` as ingest hands it to the store, replying to the
/// interaction by its subject token.
async fn customer_mail(app: &TestApp, id: &str, n: u32, extra: &str) -> IngestMail {
    let account = app.app.state.store.account_by_key("SERV").await.unwrap();
    let raw = format!(
        "From: Jane <jane@customer.test>\r\nTo: support@example.test\r\nSubject: Re: [SERV#{id}] Printer\r\n\
         Message-ID: <desk-{n}-{id}@customer.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n{extra}\
         Content-Type: text/plain\r\n\r\nreply {n}\r\n"
    )
    .into_bytes();
    let parsed = mailroom::mail::parse::parse(&raw).unwrap();
    let refs = mailroom::domain::threading::reply_refs(&parsed, &app.app.state.signer, "SERV");
    IngestMail {
        account: account.id,
        account_key: "SERV".into(),
        queue: account.queue_id,
        position: None,
        internal_date: None,
        raw,
        parsed,
        refs,
    }
}

async fn substatus(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let sup = app.login("sup").await;
    let admin = app.login("admin").await;
    let (mut alice_ws, _) = app.ws(&alice).await;
    let id = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let path = format!("/api/v1/interactions/{id}/substatus");

    let (status, list) = get(&app, &alice, "/api/v1/substatuses").await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["Pending"]);
    assert_eq!(list[0]["built_in"], true);
    assert_eq!(
        call(
            &app,
            Method::POST,
            &alice,
            "/api/v1/substatuses",
            json!({"name": "On hold"})
        )
        .await
        .0,
        403
    );
    let (status, s) = call(
        &app,
        Method::POST,
        &admin,
        "/api/v1/substatuses",
        json!({"name": "On hold"}),
    )
    .await;
    assert_eq!((status, s["built_in"].clone()), (201, json!(false)));
    let (status, body) = delete_with_body(&app, &admin, "/api/v1/substatuses/Pending").await;
    assert_eq!(status, 409, "{body}");

    let (status, view) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "Pending"}),
    )
    .await;
    assert_eq!(
        (status, view["substatus"].as_str()),
        (200, Some("Pending")),
        "{view}"
    );
    let updated = next_of(&mut alice_ws, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["substatus"], "Pending");
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "Lunch"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("On hold, Pending"),
        "{body}"
    );
    assert_eq!(
        call(&app, Method::PUT, &alice, &path, json!({})).await.0,
        400
    );
    for token in [&bob, &sup] {
        assert_eq!(
            call(&app, Method::PUT, token, &path, json!({"substatus": null}))
                .await
                .0,
            403
        );
    }
    let (status, view) = call(&app, Method::PUT, &alice, &path, json!({"substatus": null})).await;
    assert_eq!((status, view["substatus"].clone()), (200, Value::Null));
    let (status, _) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "On hold"}),
    )
    .await;
    assert_eq!(status, 200);

    // An auto-reply leaves it; the customer's reply clears it.
    let store = &app.app.state.store;
    let auto = customer_mail(&app, &id, 1, "Auto-Submitted: auto-replied\r\n").await;
    assert!(matches!(
        store.ingest_mail(auto).await.unwrap(),
        IngestOutcome::Appended { .. }
    ));
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(thread["substatus"], "On hold");
    let reply = customer_mail(&app, &id, 2, "").await;
    assert!(matches!(
        store.ingest_mail(reply).await.unwrap(),
        IngestOutcome::Appended { .. }
    ));
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(thread["substatus"], Value::Null);

    // Deleting a sub-status clears it; a closed interaction takes none.
    call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "On hold"}),
    )
    .await;
    assert_eq!(
        delete(&app, &admin, "/api/v1/substatuses/On%20hold").await,
        204
    );
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{id}")).await;
    assert_eq!(thread["substatus"], Value::Null);
    call(
        &app,
        Method::POST,
        &alice,
        &format!("/api/v1/interactions/{id}/close"),
        json!({}),
    )
    .await;
    let (status, body) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "Pending"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

async fn delete_with_body(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app
        .http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

// ---- unread ------------------------------------------------------------------------------

async fn unread(backend: Backend) {
    let app = app(backend).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let sup = app.login("sup").await;
    let admin = app.login("admin").await;
    let (mut alice_ws, _) = app.ws(&alice).await;
    let serv = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let noun = interaction(&app, "NOUN", "Other", Some("alice")).await;
    let path = |id: &str| format!("/api/v1/interactions/{id}/unread");

    let (status, view) = call(&app, Method::POST, &alice, &path(&serv), json!({})).await;
    assert_eq!(
        (status, view["unread"].clone()),
        (200, json!(true)),
        "{view}"
    );
    let updated = next_of(&mut alice_ws, &["interaction_updated"]).await;
    assert_eq!(updated["interaction"]["unread"], true);
    // Someone else reading it leaves it unread; the owner opening it reads it.
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{serv}")).await;
    assert_eq!(thread["unread"], true);
    let (_, thread) = get(&app, &alice, &format!("/api/v1/interactions/{serv}")).await;
    assert_eq!(thread["unread"], false);

    // The account forbids it: 403, for the owner and an admin alike.
    for token in [&alice, &admin] {
        let (status, body) = call(&app, Method::POST, token, &path(&noun), json!({})).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("NOUN"),
            "{body}"
        );
    }
    let (_, thread) = get(&app, &bob, &format!("/api/v1/interactions/{noun}")).await;
    assert_eq!(thread["unread"], false);
    // Not the owner: 403.
    for token in [&bob, &sup] {
        assert_eq!(
            call(&app, Method::POST, token, &path(&serv), json!({}))
                .await
                .0,
            403
        );
    }
    assert_eq!(
        call(&app, Method::POST, &alice, &path("999999"), json!({}))
            .await
            .0,
        404
    );
}

// ---- who may do what -----------------------------------------------------------------------

/// Every endpoint of this module for an agent who may not even read the
/// interaction (not a member of its queue): 403 on the interaction's
/// endpoints; admin lists need the admin role.
async fn strangers_are_refused_everywhere(backend: Backend) {
    let app = spawn_app(Options {
        backend,
        extra: format!(
            "{}[[agents]]\nusername = \"carol\"\npassword = \"pw-carol\"\nname = \"Carol\"\nrole = \"agent\"\ncapacity = 3\n",
            config()
        ),
        ..Options::default()
    })
    .await;
    let carol = app.login("carol").await;
    let id = interaction(&app, "SERV", "Printer", Some("alice")).await;
    let i = format!("/api/v1/interactions/{id}");
    for (method, path, body) in [
        (Method::GET, format!("{i}/draft"), Value::Null),
        (Method::PUT, format!("{i}/draft"), json!({})),
        (Method::DELETE, format!("{i}/draft"), Value::Null),
        (Method::POST, format!("{i}/notes"), json!({"text": "x"})),
        (Method::PUT, format!("{i}/tags"), json!({"tags": []})),
        (
            Method::PUT,
            format!("{i}/substatus"),
            json!({"substatus": null}),
        ),
        (Method::POST, format!("{i}/unread"), json!({})),
        (
            Method::POST,
            "/api/v1/tags".to_string(),
            json!({"name": "x"}),
        ),
        (Method::DELETE, "/api/v1/tags/x".to_string(), Value::Null),
        (
            Method::POST,
            "/api/v1/substatuses".to_string(),
            json!({"name": "x"}),
        ),
        (
            Method::DELETE,
            "/api/v1/substatuses/x".to_string(),
            Value::Null,
        ),
    ] {
        let (status, body) = call(&app, method.clone(), &carol, &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // Without a token: 401.
    let res = app
        .http
        .get(app.url("/api/v1/drafts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

// ---- real mail -------------------------------------------------------------------------------

/// Through Postfix and Dovecot: the customer writes, alice owns the thread
/// and sets `Pending`; an out-of-office reply leaves it, the customer's
/// reply clears it (and alice's socket hears both messages).
async fn a_real_customer_reply_clears_the_substatus(backend: Backend) {
    use crate::ingest::{app_with_account, mail, wait_interactions, wait_messages};
    let mailbox = fresh_address("desk");
    let customer = fresh_address("jane");
    let app = app_with_account(backend, &mailbox, "").await;
    let alice = app.login("alice").await;
    let first_id = format!("desk1.{:016x}@customer.example.test", rand::random::<u64>());
    smtp_send(
        &customer,
        &[&mailbox],
        &mail(
            &customer,
            &mailbox,
            "Broken printer",
            &first_id,
            "",
            "It is broken",
        ),
    )
    .await;
    let thread = wait_interactions(&app, 1).await.remove(0);
    let store = &app.app.state.store;
    let owner = store.agent_by_username("alice").await.unwrap();
    let current = store.interaction(thread.id).await.unwrap();
    assert!(matches!(
        store
            .claim(thread.id, owner.id, current.version)
            .await
            .unwrap(),
        ClaimOutcome::Won(_)
    ));
    let (mut alice_ws, _) = app.ws(&alice).await;
    let path = format!("/api/v1/interactions/{}/substatus", thread.id);
    let (status, view) = call(
        &app,
        Method::PUT,
        &alice,
        &path,
        json!({"substatus": "Pending"}),
    )
    .await;
    assert_eq!(
        (status, view["substatus"].as_str()),
        (200, Some("Pending")),
        "{view}"
    );

    let ooo = mail(
        &customer,
        &mailbox,
        "Out of office: Broken printer",
        &format!("ooo.{first_id}"),
        &format!("In-Reply-To: <{first_id}>\r\nAuto-Submitted: auto-replied\r\n"),
        "I am away",
    );
    smtp_send(&customer, &[&mailbox], &ooo).await;
    let messages = wait_messages(&app, &thread, 2).await;
    assert_eq!(messages[1].kind, mailroom::domain::MessageKind::AutoReply);
    let (_, now) = get(&app, &alice, &format!("/api/v1/interactions/{}", thread.id)).await;
    assert_eq!(now["substatus"], "Pending");

    let reply = mail(
        &customer,
        &mailbox,
        "Re: Broken printer",
        &format!("re.{first_id}"),
        &format!("In-Reply-To: <{first_id}>\r\n"),
        "Still broken",
    );
    smtp_send(&customer, &[&mailbox], &reply).await;
    wait_messages(&app, &thread, 3).await;
    let (_, now) = get(&app, &alice, &format!("/api/v1/interactions/{}", thread.id)).await;
    assert_eq!(now["substatus"], Value::Null);
    assert_eq!(now["last_message"]["preview"], "Still broken");
    // Both reached alice's socket as message_added.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let f = next_of(&mut alice_ws, &["message_added"]).await;
        kinds.push(f["message"]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["auto_reply", "mail"]);
}

on_both_stores!(
    drafts,
    notes,
    tags,
    substatus,
    unread,
    strangers_are_refused_everywhere,
    a_real_customer_reply_clears_the_substatus,
);
