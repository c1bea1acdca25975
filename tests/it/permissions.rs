//! Who may do what (docs/permissions.md), as a matrix: every interaction
//! endpoint of issue #5, called by the owner, an agent of the same queue,
//! an agent of another queue, a supervisor and an admin, each on a fresh
//! interaction owned by the owner. Allowed calls must succeed (2xx);
//! refused ones must be exactly 403. Both stores.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Backend, Options, TestApp, spawn_app};

fn config() -> String {
    "[[agents]]\nusername = \"carol\"\npassword = \"pw-carol\"\nname = \"Carol\"\nrole = \"agent\"\ncapacity = 100\n\
     [[agents]]\nusername = \"owner\"\npassword = \"pw-owner\"\nname = \"Owner\"\nrole = \"agent\"\ncapacity = 100\n\
     [[queues]]\nname = \"support\"\nagents = [\"owner\", \"bob\"]\n\
     [[queues]]\nname = \"billing\"\nagents = [\"carol\"]\n\
     [[accounts]]\nkey = \"SERV\"\naddress = \"serv@example.test\"\nqueue = \"support\"\n\
     imap = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n\
     smtp = { host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }\n"
        .to_string()
}

/// A customer mail, ingested, owned by `owner`; closed if asked. Returns
/// the interaction id and its message id.
async fn fixture(app: &TestApp, closed: bool) -> (String, String) {
    let store = &app.app.state.store;
    let account = store.account_by_key("SERV").await.unwrap();
    let raw = format!(
        "From: Pat Doe <pat@customer.test>\r\nTo: <serv@example.test>\r\nSubject: Matrix\r\n\
         Date: Thu, 13 Mar 2025 15:00:00 +0100\r\nMessage-ID: <{}@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n",
        crate::support::app::rand_suffix()
    )
    .into_bytes();
    let parsed = mailroom::mail::parse::parse(&raw).unwrap();
    let outcome = store
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
        .unwrap();
    let mailroom::store::IngestOutcome::Created {
        interaction,
        message,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let owner = store.agent_by_username("owner").await.unwrap().id;
    let owned = match store
        .claim(interaction.id, owner, interaction.version)
        .await
        .unwrap()
    {
        mailroom::store::ClaimOutcome::Won(i) => i,
        lost => panic!("{lost:?}"),
    };
    if closed {
        store
            .close_interaction(owned.id, mailroom::domain::InteractionStatus::Closed, None)
            .await
            .unwrap();
    }
    (interaction.id.to_string(), message.to_string())
}

struct Case {
    name: &'static str,
    method: Method,
    /// `{i}` is the interaction, `{m}` its message.
    path: &'static str,
    body: Option<Value>,
    /// On a closed interaction (reopen).
    closed: bool,
    /// Who may: of owner, bob (same queue), carol (other queue), sup, admin.
    allowed: &'static [&'static str],
}

const READERS: &[&str] = &["owner", "bob", "sup", "admin"];
const WORKERS: &[&str] = &["owner", "admin"];
const MANAGERS: &[&str] = &["owner", "sup", "admin"];

fn cases() -> Vec<Case> {
    let case = |name, method, path, body: Option<Value>, allowed| Case {
        name,
        method,
        path,
        body,
        closed: false,
        allowed,
    };
    vec![
        case(
            "read",
            Method::GET,
            "/api/v1/interactions/{i}",
            None,
            READERS,
        ),
        case(
            "transcript",
            Method::GET,
            "/api/v1/interactions/{i}/transcript.pdf",
            None,
            READERS,
        ),
        case(
            "raw message",
            Method::GET,
            "/api/v1/messages/{m}/raw",
            None,
            READERS,
        ),
        case(
            "canned answers",
            Method::GET,
            "/api/v1/interactions/{i}/canned-answers",
            None,
            READERS,
        ),
        case(
            "reply",
            Method::POST,
            "/api/v1/interactions/{i}/messages",
            Some(json!({"mode": "reply", "text": "Thanks."})),
            WORKERS,
        ),
        case(
            "draft",
            Method::PUT,
            "/api/v1/interactions/{i}/draft",
            Some(json!({"mode": "reply", "text": "Draft."})),
            WORKERS,
        ),
        case(
            "note",
            Method::POST,
            "/api/v1/interactions/{i}/notes",
            Some(json!({"text": "Internal."})),
            MANAGERS,
        ),
        case(
            "tags",
            Method::PUT,
            "/api/v1/interactions/{i}/tags",
            Some(json!({"tags": []})),
            WORKERS,
        ),
        case(
            "substatus",
            Method::PUT,
            "/api/v1/interactions/{i}/substatus",
            Some(json!({"substatus": "Pending"})),
            WORKERS,
        ),
        case(
            "unread",
            Method::POST,
            "/api/v1/interactions/{i}/unread",
            Some(json!({})),
            WORKERS,
        ),
        case(
            "transfer",
            Method::POST,
            "/api/v1/interactions/{i}/transfer",
            Some(json!({"queue": "billing"})),
            MANAGERS,
        ),
        case(
            "close",
            Method::POST,
            "/api/v1/interactions/{i}/close",
            Some(json!({})),
            MANAGERS,
        ),
        Case {
            name: "reopen",
            method: Method::POST,
            path: "/api/v1/interactions/{i}/reopen",
            body: Some(json!({})),
            closed: true,
            allowed: READERS,
        },
    ]
}

async fn matrix(backend: Backend) {
    let app = spawn_app(Options {
        backend,
        extra: config(),
        ..Options::default()
    })
    .await;
    let actors = ["owner", "bob", "carol", "sup", "admin"];
    let mut tokens = Vec::new();
    for a in actors {
        tokens.push(app.login(a).await);
    }
    let mut failures: Vec<String> = Vec::new();
    for case in cases() {
        // Nobody without a token.
        let (i, m) = fixture(&app, case.closed).await;
        let path = case.path.replace("{i}", &i).replace("{m}", &m);
        let mut req = app.http.request(case.method.clone(), app.url(&path));
        if let Some(b) = &case.body {
            req = req.json(b);
        }
        let status = req.send().await.unwrap().status().as_u16();
        if status != 401 {
            failures.push(format!(
                "{}: without a token → {status}, not 401",
                case.name
            ));
        }
        for (actor, token) in actors.iter().zip(&tokens) {
            let (i, m) = fixture(&app, case.closed).await;
            let path = case.path.replace("{i}", &i).replace("{m}", &m);
            let mut req = app
                .http
                .request(case.method.clone(), app.url(&path))
                .bearer_auth(token);
            if let Some(b) = &case.body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let allowed = case.allowed.contains(actor);
            let ok = if allowed {
                (200..300).contains(&status)
            } else {
                status == 403
            };
            if !ok {
                let body = res.text().await.unwrap_or_default();
                failures.push(format!(
                    "{} by {actor}: {status} (expected {}) {}",
                    case.name,
                    if allowed { "2xx" } else { "403" },
                    body.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_endpoint_by_every_role() {
    matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_endpoint_by_every_role() {
    matrix(Backend::Postgres).await;
}
