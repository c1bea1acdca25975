//! HTTP: health, readiness, metrics, OpenAPI, login and logout, bearer auth,
//! the error shape, and the admin API's role checks and write-only passwords.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{Backend, Options, spawn_app};

fn assert_error_shape(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn health_ready_metrics_and_openapi_are_public() {
    let app = spawn_app(Options::default()).await;
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let res = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["store"]["backend"], "sqlite");
    assert_eq!(body["presence"]["backend"], "memory");

    // Make at least one request show up, then read the metrics.
    let _ = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username":"x","password":"y"}))
        .send()
        .await
        .unwrap();
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mailroom_http_requests_total"), "{text}");
    assert!(text.contains("mailroom_logins_total"), "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("mailroom_"),
            "metric without the mailroom_ prefix: {line}"
        );
    }

    let res = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["paths"]["/api/v1/login"].is_object(), "{doc}");
    assert!(doc["paths"]["/api/v1/agents/{id}"].is_object());
    let res = app.http.get(app.url("/api/v1/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text().await.unwrap().contains("swagger"),
        "Swagger UI is served"
    );
}

#[tokio::test]
async fn login_succeeds_with_the_right_password_only() {
    let app = spawn_app(Options::default()).await;
    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username": "alice", "password": "pw-alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["token"].as_str().unwrap().len() >= 40);
    assert_eq!(body["agent"]["username"], "alice");
    assert_eq!(body["agent"]["role"], "agent");
    assert!(body["agent"]["id"].is_string(), "ids are strings: {body}");
    assert_eq!(body["agent"]["name"], "alice Test");

    for (user, pw) in [("alice", "wrong"), ("nobody", "pw-alice"), ("alice", "")] {
        let res = app
            .http
            .post(app.url("/api/v1/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{user}/{pw}");
        assert_error_shape(&res.json().await.unwrap(), "unauthorized");
    }

    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_error_shape(&res.json().await.unwrap(), "bad_request");
}

#[tokio::test]
async fn everything_else_needs_a_valid_token() {
    let app = spawn_app(Options::default()).await;
    for path in [
        "/api/v1/me",
        "/api/v1/agents",
        "/api/v1/presence",
        "/api/v1/queues",
        "/api/v1/accounts",
    ] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path} without a token");
        assert_error_shape(&res.json().await.unwrap(), "unauthorized");
        let res = app.get("not-a-real-token", path).await;
        assert_eq!(res.status(), 401, "{path} with a bad token");
    }

    let token = app.login("alice").await;
    let res = app.get(&token, "/api/v1/me").await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["presence"]["status"], "offline");
    assert!(me.get("password_hash").is_none());

    // Logout revokes exactly this token.
    let other = app.login("alice").await;
    let res = app
        .send_json(Method::POST, &token, "/api/v1/logout", json!({}))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&token, "/api/v1/me").await.status(), 401);
    assert_eq!(app.get(&other, "/api/v1/me").await.status(), 200);

    let res = app.get(&other, "/api/v1/no-such-thing").await;
    assert_eq!(res.status(), 404);
    assert_error_shape(&res.json().await.unwrap(), "not_found");
}

#[tokio::test]
async fn admin_endpoints_refuse_agents_and_supervisors() {
    let app = spawn_app(Options::default()).await;
    let alice = app.login("alice").await;
    let sup = app.login("sup").await;
    let admin = app.login("admin").await;
    let calls: Vec<(Method, &str, Value)> = vec![
        (Method::GET, "/api/v1/agents", Value::Null),
        (
            Method::POST,
            "/api/v1/agents",
            json!({"username": "carol", "password": "x"}),
        ),
        (Method::GET, "/api/v1/agents/1", Value::Null),
        (Method::PUT, "/api/v1/agents/1", json!({"capacity": 9})),
        (Method::DELETE, "/api/v1/agents/1", Value::Null),
        (Method::GET, "/api/v1/queues", Value::Null),
        (Method::POST, "/api/v1/queues", json!({"name": "q"})),
        (Method::GET, "/api/v1/queues/1", Value::Null),
        (Method::PUT, "/api/v1/queues/1", json!({"name": "q"})),
        (Method::DELETE, "/api/v1/queues/1", Value::Null),
        (Method::GET, "/api/v1/accounts", Value::Null),
        (Method::POST, "/api/v1/accounts", json!({})),
        (Method::GET, "/api/v1/accounts/SERV", Value::Null),
        (Method::PUT, "/api/v1/accounts/SERV", json!({})),
        (Method::DELETE, "/api/v1/accounts/SERV", Value::Null),
    ];
    for (method, path, body) in &calls {
        for token in [&alice, &sup] {
            let res = app
                .send_json(method.clone(), token, path, body.clone())
                .await;
            assert_eq!(res.status(), 403, "{method} {path}");
            assert_error_shape(&res.json().await.unwrap(), "forbidden");
        }
    }
    // Supervisors may see presence; agents may not.
    assert_eq!(app.get(&sup, "/api/v1/presence").await.status(), 200);
    assert_eq!(app.get(&alice, "/api/v1/presence").await.status(), 403);
    assert_eq!(app.get(&admin, "/api/v1/agents").await.status(), 200);
}

#[tokio::test]
async fn admin_crud_keeps_passwords_write_only() {
    let app = spawn_app(Options::default()).await;
    let admin = app.login("admin").await;

    // Agents.
    let res = app
        .send_json(Method::POST, &admin, "/api/v1/agents", json!({"username": "carol", "password": "pw-carol", "name": "Carol", "role": "agent", "capacity": 2}))
        .await;
    assert_eq!(res.status(), 201);
    let carol: Value = res.json().await.unwrap();
    let text = carol.to_string();
    assert!(
        !text.contains("pw-carol") && !text.contains("argon2") && carol.get("password").is_none(),
        "{text}"
    );
    let id = carol["id"].as_str().unwrap().to_string();
    assert!(app.login("carol").await.len() > 10);

    let res = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/agents",
            json!({"username": "carol", "password": "x"}),
        )
        .await;
    assert_eq!(res.status(), 409);

    let res = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/agents",
            json!({"username": "bad name!", "role": "boss", "capacity": "many"}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let msg = res.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    for key in ["username", "role", "capacity"] {
        assert!(msg.contains(key), "every wrong key is reported: {msg}");
    }

    let res = app
        .send_json(
            Method::PUT,
            &admin,
            &format!("/api/v1/agents/{id}"),
            json!({"capacity": 7, "password": "new-pw"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["capacity"], 7);
    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username":"carol","password":"new-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Queues.
    let res = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/queues",
            json!({"name": "sales", "strategy": "round_robin", "agents": ["alice", "carol"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let queue: Value = res.json().await.unwrap();
    assert_eq!(queue["agents"], json!(["alice", "carol"]));
    let qid = queue["id"].as_str().unwrap().to_string();
    let res = app
        .send_json(
            Method::POST,
            &admin,
            "/api/v1/queues",
            json!({"name": "bad", "strategy": "beepall"}),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("ring_all"));

    // Accounts: passwords go in, never come out.
    let account = json!({
        "key": "SALE", "address": "sales@example.test", "queue": "sales",
        "imap": {"host": "127.0.0.1", "port": 10143, "tls": "none", "username": "sales@example.test", "password": "imap-secret"},
        "smtp": {"host": "127.0.0.1", "port": 10025, "tls": "none", "username": "sales@example.test", "password": "smtp-secret"}
    });
    let res = app
        .send_json(Method::POST, &admin, "/api/v1/accounts", account.clone())
        .await;
    assert_eq!(res.status(), 201);
    for res in [
        app.get(&admin, "/api/v1/accounts/SALE").await,
        app.get(&admin, "/api/v1/accounts").await,
    ] {
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(text.contains("sales@example.test"), "{text}");
        assert!(
            !text.contains("imap-secret")
                && !text.contains("smtp-secret")
                && !text.contains("password"),
            "{text}"
        );
    }
    // The queue cannot go while the account routes to it.
    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            &format!("/api/v1/queues/{qid}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status(), 409);
    let res = app
        .send_json(Method::DELETE, &admin, "/api/v1/accounts/SALE", Value::Null)
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&admin, "/api/v1/accounts/SALE").await.status(), 404);
    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            &format!("/api/v1/queues/{qid}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status(), 204);

    // Deleting an agent ends their sessions.
    let carol_token = app.login_with("carol", "new-pw").await;
    let res = app
        .send_json(
            Method::DELETE,
            &admin,
            &format!("/api/v1/agents/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&carol_token, "/api/v1/me").await.status(), 401);
    assert_eq!(
        app.get(&admin, &format!("/api/v1/agents/{id}"))
            .await
            .status(),
        404
    );
    // Unknown and malformed ids are 404 with the error shape.
    for path in [
        "/api/v1/agents/999999",
        "/api/v1/agents/abc",
        "/api/v1/queues/0",
    ] {
        let res = app.get(&admin, path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_error_shape(&res.json().await.unwrap(), "not_found");
    }
}

#[tokio::test]
async fn provisioning_upserts_the_config_on_every_start() {
    let extra = r#"
[[queues]]
name = "support"
strategy = "round_robin"
agents = ["alice", "bob"]

[[accounts]]
key = "serv"
address = "support@example.test"
queue = "support"
imap = { host = "127.0.0.1", port = 10143, tls = "none", username = "support@example.test", password = "pw" }
smtp = { host = "127.0.0.1", port = 10025, tls = "none", username = "support@example.test", password = "pw" }
"#;
    let app = spawn_app(Options {
        extra: extra.into(),
        ..Options::default()
    })
    .await;
    let admin = app.login("admin").await;
    let agents: Value = app
        .get(&admin, "/api/v1/agents")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "alice", "bob", "sup"]);
    let queues: Value = app
        .get(&admin, "/api/v1/queues")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queues[0]["name"], "support");
    assert_eq!(queues[0]["strategy"], "round_robin");
    assert_eq!(queues[0]["agents"], json!(["alice", "bob"]));
    let account: Value = app
        .get(&admin, "/api/v1/accounts/SERV")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["queue"], "support");
    assert_eq!(account["imap"]["port"], 10143);
}

#[tokio::test]
async fn postgres_backend_serves_login_and_admin() {
    let app = spawn_app(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await;
    let body: Value = app
        .http
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["store"]["backend"], "postgres");
    let admin = app.login("admin").await;
    let agents: Value = app
        .get(&admin, "/api/v1/agents")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(agents.as_array().unwrap().len(), 4);
    let alice = app.login("alice").await;
    assert_eq!(app.get(&alice, "/api/v1/agents").await.status(), 403);
    let (_ws, hello) = app.ws(&alice).await;
    assert_eq!(hello["agent"]["username"], "alice");
}
