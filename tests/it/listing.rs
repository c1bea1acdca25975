//! `GET /api/v1/interactions`: scopes, filters, read rights inside the
//! query, newest activity first, and the cursor. Every test on both stores.

use std::collections::HashSet;

use mailroom::domain::{AgentId, InteractionId, InteractionStatus};
use mailroom::store::{ClaimOutcome, Interaction, NewInteraction, Store};
use serde_json::{Value, json};

use crate::support::app::{Backend, Options, TestApp, spawn_app};
use crate::support::on_both_stores;

/// Queues `support` (alice, bob) and `billing` (carol), one account each.
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

async fn create(store: &Store, key: &str, subject: &str) -> Interaction {
    let account = store.account_by_key(key).await.unwrap();
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

async fn claim(store: &Store, i: &Interaction, agent: AgentId) -> Interaction {
    match store.claim(i.id, agent, i.version).await.unwrap() {
        ClaimOutcome::Won(i) => i,
        lost => panic!("{lost:?}"),
    }
}

async fn list(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    let res = app
        .get(token, &format!("/api/v1/interactions?{query}"))
        .await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The subjects of a successful page.
async fn subjects(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let (status, body) = list(app, token, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Agents see their own work by default, their queues' with `scope=all`,
/// and never another queue's; supervisors see everything.
async fn scopes_and_read_rights(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let alice = store.agent_by_username("alice").await.unwrap().id;
    let carol = store.agent_by_username("carol").await.unwrap().id;
    let mine = create(&store, "SERV", "alice's").await;
    claim(&store, &mine, alice).await;
    create(&store, "SERV", "waiting in support").await;
    let billing = create(&store, "BILL", "carol's").await;
    claim(&store, &billing, carol).await;
    create(&store, "BILL", "waiting in billing").await;

    let alice_t = app.login("alice").await;
    assert_eq!(subjects(&app, &alice_t, "").await, ["alice's"]);
    assert_eq!(
        sorted(subjects(&app, &alice_t, "scope=all").await),
        ["alice's", "waiting in support"]
    );
    assert_eq!(
        subjects(&app, &alice_t, "scope=unassigned").await,
        ["waiting in support"]
    );
    // bob: same queue, owns nothing.
    let bob_t = app.login("bob").await;
    assert!(subjects(&app, &bob_t, "").await.is_empty());
    assert_eq!(subjects(&app, &bob_t, "scope=all").await.len(), 2);
    // A filter cannot widen the rights: billing's account is not alice's.
    assert!(
        subjects(&app, &alice_t, "scope=all&account=BILL")
            .await
            .is_empty()
    );
    let sup_t = app.login("sup").await;
    assert_eq!(subjects(&app, &sup_t, "").await.len(), 4);
    assert_eq!(
        sorted(subjects(&app, &sup_t, "scope=unassigned").await),
        ["waiting in billing", "waiting in support"]
    );
    // An agent who handled an interaction keeps seeing it after it moved
    // away: carol's interaction transferred to support.
    let moved = store.interaction(billing.id).await.unwrap();
    store
        .transfer(
            moved.id,
            moved.version,
            mailroom::store::TransferTarget::Queue(
                store.queue_by_name("support").await.unwrap().id,
            ),
        )
        .await
        .unwrap();
    let carol_t = app.login("carol").await;
    assert!(
        subjects(&app, &carol_t, "scope=all")
            .await
            .contains(&"carol's".to_string())
    );
}

async fn filters(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let alice = store.agent_by_username("alice").await.unwrap().id;
    let a = create(&store, "SERV", "open unread").await;
    let b = create(&store, "SERV", "closed one").await;
    let b = claim(&store, &b, alice).await;
    store
        .close_interaction(b.id, InteractionStatus::Closed, None)
        .await
        .unwrap();
    let c = create(&store, "BILL", "never taken").await;
    store
        .close_interaction(c.id, InteractionStatus::ClosedUnmanaged, None)
        .await
        .unwrap();
    store.create_tag("vip").await.unwrap();
    store.create_tag("refund").await.unwrap();
    store
        .set_interaction_tags(a.id, vec!["vip".into()])
        .await
        .unwrap();
    let sup = app.login("sup").await;

    assert_eq!(subjects(&app, &sup, "status=open").await, ["open unread"]);
    assert_eq!(subjects(&app, &sup, "status=closed").await, ["closed one"]);
    assert_eq!(
        subjects(&app, &sup, "status=closed_unmanaged").await,
        ["never taken"]
    );
    assert_eq!(subjects(&app, &sup, "account=BILL").await, ["never taken"]);
    assert_eq!(subjects(&app, &sup, "queue=billing").await, ["never taken"]);
    assert_eq!(subjects(&app, &sup, "agent=alice").await, ["closed one"]);
    assert_eq!(
        subjects(&app, &sup, "tag=refund&tag=vip").await,
        ["open unread"]
    );
    assert!(subjects(&app, &sup, "tag=refund").await.is_empty());
    // A brand-new interaction is not unread until mail arrives in it.
    assert_eq!(subjects(&app, &sup, "unread=false").await.len(), 3);
    let future = "2999-01-01T00:00:00Z";
    assert!(
        subjects(&app, &sup, &format!("from={future}"))
            .await
            .is_empty()
    );
    assert_eq!(subjects(&app, &sup, &format!("to={future}")).await.len(), 3);
    // Each item has the list's fields.
    let (_, body) = list(&app, &sup, "status=open").await;
    let item = &body["items"][0];
    assert_eq!(item["account"], "SERV");
    assert_eq!(item["queue"], "support");
    assert_eq!(item["tags"], serde_json::json!(["vip"]));
    assert!(item["id"].is_string());

    // Hostile values are values: no match, no error.
    for hostile in [
        "x'%20OR%20'1'='1",
        "%25",
        "_",
        "%5C",
        "DROP%20TABLE%20interactions",
    ] {
        assert!(
            subjects(&app, &sup, &format!("account={hostile}&tag={hostile}"))
                .await
                .is_empty()
        );
    }
    // Bad parameters: one 400 naming each problem.
    let (status, body) = list(
        &app,
        &sup,
        "scope=everyone&status=gone&limit=0&from=yesterday&colour=red",
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    for part in ["scope", "status", "limit", "from", "colour"] {
        assert!(message.contains(part), "{message}");
    }
    let (status, _) = list(&app, &sup, "cursor=garbage").await;
    assert_eq!(status, 400);
}

/// Seven interactions, three per page: every one exactly once, newest
/// activity first, and a null cursor on the last page.
async fn pages_follow_the_cursor(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let mut made: Vec<InteractionId> = Vec::new();
    for n in 0..7 {
        made.push(create(&store, "SERV", &format!("n{n}")).await.id);
    }
    let sup = app.login("sup").await;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let (status, body) = list(&app, &sup, &query).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for item in body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
    // Newest first: created one after another, so ids descend.
    let expected: Vec<String> = made.iter().rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
}

/// A customer's mail, ingested as the mailbox would (this creates the
/// contact from the display name). Returns the interaction's id.
async fn mail(store: &Store, from: &str, subject: &str, body: &str) -> InteractionId {
    mail_to(store, "SERV", from, subject, body).await
}

async fn mail_to(store: &Store, key: &str, from: &str, subject: &str, body: &str) -> InteractionId {
    let account = store.account_by_key(key).await.unwrap();
    let raw = format!(
        "From: {from}\r\nTo: Support <serv@example.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 13 Mar 2025 15:00:00 +0100\r\nMessage-ID: <{}@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        crate::support::app::rand_suffix()
    )
    .into_bytes();
    let parsed = mailroom::mail::parse::parse(&raw).expect("the test mail parses");
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
        mailroom::store::IngestOutcome::Created { interaction, .. } => interaction.id,
        other => panic!("expected a new interaction, got {other:?}"),
    }
}

/// Search finds by id, by words of the subject or of any message (prefixes,
/// every word, accents and case folded), and by the contact's names or
/// email; and finds the same on both stores (this test runs on each, with
/// the same expectations).
async fn search(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let invoice = mail(
        &store,
        "José Álvarez <jose.alvarez@customer.test>",
        "Invoice 2025-117 is wrong",
        "The total on my invoice should be 1.299,00 EUR, not 1.399,00.",
    )
    .await;
    let crepes = mail(
        &store,
        "Zoë Müller <zoe@crepes.example>",
        "Crème brûlée order",
        "Where is the crème brûlée I ordered? Tracking: ZX-4411.",
    )
    .await;
    let plain = create(&store, "SERV", "Password reset").await;
    let sup = app.login("sup").await;
    let find = |q: &str| {
        let q = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
        let app = &app;
        let sup = sup.clone();
        async move {
            let (status, body) = list(app, &sup, &format!("scope=all&q={q}")).await;
            assert_eq!(status, 200, "{body}");
            let mut ids: Vec<String> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let ids = |list: &[InteractionId]| {
        let mut v: Vec<String> = list.iter().map(|i| i.to_string()).collect();
        v.sort();
        v
    };
    // The id, exactly (a number is also a word: texts with a word that
    // starts with it match too).
    assert!(
        find(&plain.id.to_string())
            .await
            .contains(&plain.id.to_string())
    );
    assert_eq!(find("117").await, ids(&[invoice]));
    // Subject words, any case, as prefixes; every word must match.
    assert_eq!(find("invoice").await, ids(&[invoice]));
    assert_eq!(find("INVO wrong").await, ids(&[invoice]));
    assert!(find("invoice brûlée").await.is_empty());
    assert_eq!(find("password").await, ids(&[plain.id]));
    // Message text; accents folded both ways.
    assert_eq!(find("creme brulee").await, ids(&[crepes]));
    assert_eq!(find("crème").await, ids(&[crepes]));
    assert_eq!(find("zx 4411").await, ids(&[crepes]));
    assert_eq!(find("1.299").await, ids(&[invoice]));
    // Contact names (accents folded) and email (a prefix).
    assert_eq!(find("alvarez").await, ids(&[invoice]));
    assert_eq!(find("Zoe Muller").await, ids(&[crepes]));
    assert_eq!(find("zoe@crepes.example").await, ids(&[crepes]));
    assert_eq!(find("jose.alv").await, ids(&[invoice]));
    // Nothing, and hostile input, find nothing and break nothing.
    assert!(find("nonexistentword").await.is_empty());
    for hostile in [
        "' OR 1=1 --",
        "\"*",
        "NEAR(a b)",
        "a & b | !c",
        "%",
        "_",
        "\\",
        ":*",
    ] {
        let found = find(hostile).await;
        assert!(found.len() <= 3, "{hostile}: {found:?}");
    }
    // Search combines with the other filters.
    let (status, body) = list(&app, &sup, "scope=all&q=invoice&status=closed").await;
    assert_eq!(status, 200);
    assert!(body["items"].as_array().unwrap().is_empty());
    // Agents search only what they may read.
    let carol = app.login("carol").await;
    let (_, body) = list(&app, &carol, "scope=all&q=invoice").await;
    assert!(body["items"].as_array().unwrap().is_empty());
}

/// Advanced search: each operator on its kind of field, all and any,
/// disabled conditions, literal matching of hostile values, errors that list
/// the valid choices, and the caller's read rights. The same expectations on
/// both stores.
async fn advanced_search(backend: Backend) {
    let app = app(backend).await;
    let store = app.app.state.store.clone();
    let alice = store.agent_by_username("alice").await.unwrap().id;
    let invoice = mail(
        &store,
        "José Álvarez <jose.alvarez@customer.test>",
        "Invoice 2025-117 is wrong",
        "The total should be 1.299,00 EUR.",
    )
    .await;
    let crepes = mail(
        &store,
        "Zoë Müller <zoe@crepes.example>",
        "Crème brûlée order",
        "Where is the crème brûlée?",
    )
    .await;
    let odd = create(&store, "SERV", "50% off_sale \\ 'quoted' SELECT").await;
    let sold = create(&store, "SERV", "Won deal").await;
    let sold = claim(&store, &sold, alice).await;
    store
        .close_interaction(
            sold.id,
            InteractionStatus::Closed,
            Some(vec!["Sales".into(), "Won".into()]),
        )
        .await
        .unwrap();
    store.create_tag("vip").await.unwrap();
    store
        .set_interaction_tags(invoice, vec!["vip".into()])
        .await
        .unwrap();
    let sup = app.login("sup").await;
    let search = |body: Value| {
        let app = &app;
        let sup = sup.clone();
        async move {
            let res = app
                .send_json(
                    reqwest::Method::POST,
                    &sup,
                    "/api/v1/interactions/search",
                    body,
                )
                .await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }
    };
    let found = |body: Value| {
        let search = &search;
        async move {
            let (status, out) = search(body.clone()).await;
            assert_eq!(status, 200, "{body} → {out}");
            let mut ids: Vec<String> = out["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let ids = |list: &[InteractionId]| {
        let mut v: Vec<String> = list.iter().map(|i| i.to_string()).collect();
        v.sort();
        v
    };
    let c = |field: &str, op: &str, value: Value| json!({"field": field, "op": op, "value": value});

    assert_eq!(
        found(json!({"match": "all", "conditions": [
            c("subject", "contains", json!("INVOICE")), c("unread", "equals", json!(true))]}))
        .await,
        ids(&[invoice])
    );
    assert_eq!(
        found(json!({"match": "any", "conditions": [
            c("tag", "in", json!(["vip"])), c("contact.email", "ends_with", json!("@crepes.example"))]}))
        .await,
        ids(&[invoice, crepes])
    );
    assert_eq!(
        found(json!({"conditions": [c("text", "not_contains", json!("brûlée"))]})).await,
        ids(&[invoice, odd.id, sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [c("text", "contains", json!("1.299"))]})).await,
        ids(&[invoice])
    );
    assert_eq!(
        found(json!({"conditions": [c("closed_at", "is_empty", json!(false))]})).await,
        ids(&[sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [c("status", "equals", json!("closed"))]})).await,
        ids(&[sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [c("disposition", "equals", json!("Sales / Won"))]})).await,
        ids(&[sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [
            c("owner", "equals", json!("alice")), c("first_agent", "equals", json!("alice"))]}))
        .await,
        ids(&[sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [c("owner", "not_equals", json!("alice"))]})).await,
        ids(&[invoice, crepes, odd.id]),
        "no owner is not alice"
    );
    assert_eq!(
        found(json!({"conditions": [c("id", "in", json!([odd.id.to_string(), sold.id.0]))]})).await,
        ids(&[odd.id, sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [c("id", "between", json!([invoice.0, crepes.0]))]})).await,
        ids(&[invoice, crepes])
    );
    assert_eq!(
        found(json!({"conditions": [c("last_message.direction", "equals", json!("in"))]})).await,
        ids(&[invoice, crepes])
    );
    assert_eq!(
        found(json!({"conditions": [c("contact.first_name", "starts_with", json!("Zo"))]})).await,
        ids(&[crepes])
    );
    assert_eq!(
        found(json!({"conditions": [
            c("contact.last_name", "is_empty", json!(true)), c("substatus", "is_empty", json!(true))]}))
        .await,
        ids(&[odd.id, sold.id])
    );
    assert_eq!(
        found(json!({"conditions": [
            c("created_at", "between", json!(["2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])),
            c("created_at", "gt", json!("2999-01-01T00:00:00Z"))]}))
        .await,
        Vec::<String>::new()
    );
    // A disabled condition is ignored.
    let mut off = c("subject", "contains", json!("nothing like this"));
    off["enabled"] = json!(false);
    assert_eq!(
        found(json!({"conditions": [off, c("account", "equals", json!("SERV"))]}))
            .await
            .len(),
        4
    );

    // Hostile values are matched literally.
    for (needle, expected) in [
        ("%", ids(&[odd.id])),
        ("_", ids(&[odd.id])),
        ("\\", ids(&[odd.id])),
        ("'quoted'", ids(&[odd.id])),
        ("' OR '1'='1", Vec::new()),
        ("SELECT", ids(&[odd.id])),
        ("DROP TABLE interactions; --", Vec::new()),
    ] {
        assert_eq!(
            found(json!({"conditions": [c("subject", "contains", json!(needle))]})).await,
            expected,
            "{needle}"
        );
    }
    let long = "x".repeat(10_000);
    assert!(
        found(json!({"conditions": [c("subject", "equals", json!(long))]}))
            .await
            .is_empty()
    );
    let (status, _) =
        search(json!({"conditions": [c("subject", "equals", json!("x".repeat(10_001)))]})).await;
    assert_eq!(status, 400);

    // Errors list the valid choices.
    let (status, body) = search(json!({"match": "most", "conditions": [
        c("colour", "equals", json!("red")), c("subject", "gt", json!("a")),
        c("unread", "equals", json!("yes"))]}))
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    for part in [
        "match",
        "colour",
        "contact.email",
        "conditions[1].op",
        "conditions[2].value",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // It searches what the caller may read, whatever else.
    let carol = app.login("carol").await;
    let res = app
        .send_json(
            reqwest::Method::POST,
            &carol,
            "/api/v1/interactions/search",
            json!({"conditions": [c("account", "equals", json!("SERV"))]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["items"].as_array().unwrap().is_empty());
}

/// Items show the last message's preview, unless the account turns
/// previews off.
async fn previews_follow_the_account(backend: Backend) {
    let app = spawn_app(Options {
        backend,
        extra: format!(
            "{}[[accounts]]\nkey = \"QUIET\"\naddress = \"quiet@example.test\"\nqueue = \"support\"\nshow_preview = false\n\
             imap = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n\
             smtp = {{ host = \"127.0.0.1\", port = 1, tls = \"none\", username = \"u\", password = \"p\" }}\n",
            config()
        ),
        ..Options::default()
    })
    .await;
    let store = app.app.state.store.clone();
    let loud = mail(
        &store,
        "A <a@customer.test>",
        "Loud",
        "Everyone may read this line.",
    )
    .await;
    let quiet = mail_to(
        &store,
        "QUIET",
        "B <b@customer.test>",
        "Quiet",
        "Keep this line private.",
    )
    .await;
    let sup = app.login("sup").await;
    let (_, body) = list(&app, &sup, "").await;
    let item = |id: InteractionId| {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.to_string())
            .cloned()
            .unwrap()
    };
    assert!(
        item(loud)["last_message"]["preview"]
            .as_str()
            .unwrap()
            .contains("Everyone may read")
    );
    assert_eq!(item(loud)["last_message"]["direction"], "in");
    assert_eq!(item(quiet)["last_message"]["preview"], "");
    assert_eq!(item(quiet)["new_in_conversation"], 0);
    let res = app
        .get(&sup, &format!("/api/v1/interactions/{quiet}"))
        .await;
    let one: Value = res.json().await.unwrap();
    assert_eq!(one["last_message"]["preview"], "");
}

on_both_stores!(
    scopes_and_read_rights,
    filters,
    pages_follow_the_cursor,
    search,
    advanced_search,
    previews_follow_the_account,
);
