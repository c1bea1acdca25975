//! `spawn_app`: the application on port 0 with its own store (a SQLite file
//! in a temp dir, or a fresh Postgres database dropped afterwards), in-process
//! presence unless asked otherwise, and four users:
//! `admin` (admin), `sup` (supervisor), `alice` and `bob` (agents), each with
//! the password `pw-<username>`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mailroom::config::Settings;
use mailroom::startup::{RunningApp, spawn_in_thread};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::db::TestDb;

pub const USERS: &[(&str, &str)] = &[
    ("admin", "admin"),
    ("sup", "supervisor"),
    ("alice", "agent"),
    ("bob", "agent"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub app: RunningApp,
    pub http: reqwest::Client,
    /// The settings it was started with (a restart reuses them, and so its store).
    settings: Settings,
    _db: TestDb,
}

pub struct Options {
    pub backend: Backend,
    pub heartbeat_secs: u32,
    pub presence_url: String,
    /// Extra TOML appended to the generated config.
    pub extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            heartbeat_secs: 15,
            presence_url: "memory://".into(),
            extra: String::new(),
        }
    }
}

pub fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// The settings of a test app, as TOML (also used by tests that run the binary).
pub fn config_toml(store_url: &str, opts: &Options) -> String {
    let mut toml = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{store_url}\"\n[presence]\nurl = \"{}\"\nprefix = \"mailroom_test_{}\"\n\
         [ws]\nheartbeat_secs = {}\n[bootstrap]\nadmin_password_file = \"\"\n[log]\nlevel = \"warn\"\n",
        opts.presence_url,
        rand_suffix(),
        opts.heartbeat_secs,
    );
    for (user, role) in USERS {
        toml.push_str(&format!(
            "[[agents]]\nusername = \"{user}\"\npassword = \"{}\"\nname = \"{user} Test\"\nrole = \"{role}\"\ncapacity = 3\n",
            password(user)
        ));
    }
    toml.push_str(&opts.extra);
    toml
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

pub async fn spawn_app(opts: Options) -> TestApp {
    let (store_url, db) = match opts.backend {
        Backend::Sqlite => TestDb::sqlite_url(),
        Backend::Postgres => TestDb::postgres_url().await,
    };
    let settings =
        Settings::from_toml(&config_toml(&store_url, &opts)).expect("test config is valid");
    TestApp {
        app: start(settings.clone()).await,
        http: reqwest::Client::new(),
        settings,
        _db: db,
    }
}

async fn start(settings: Settings) -> RunningApp {
    // Building binds, migrates and hashes passwords: keep it off this runtime.
    tokio::task::spawn_blocking(move || spawn_in_thread(settings))
        .await
        .expect("spawn thread")
        .expect("app starts")
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestApp {
    /// Stop the app (gracefully: sockets closed, drained) and start it again
    /// on the same store, as an operator's restart would. Sessions survive
    /// (they are in the store); sockets must be opened again.
    pub async fn restart(self) -> TestApp {
        let TestApp {
            app,
            http,
            settings,
            _db,
        } = self;
        tokio::task::spawn_blocking(move || app.stop())
            .await
            .expect("stop thread");
        TestApp {
            app: start(settings.clone()).await,
            http,
            settings,
            _db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Log in with the user's test password and return the token.
    pub async fn login(&self, user: &str) -> String {
        self.login_with(user, &password(user)).await
    }

    pub async fn login_with(&self, user: &str, pw: &str) -> String {
        let res = self
            .http
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": user, "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login {user}");
        let body: Value = res.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Open a WebSocket and return it after its `hello` (also returned).
    pub async fn ws(&self, token: &str) -> (Ws, Value) {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.app.ws_url(token))
            .await
            .expect("ws connects");
        let hello = next_frame(&mut ws).await;
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        (ws, hello)
    }

    /// Wait until `agent`'s presence (seen by a supervisor) has `status`.
    pub async fn wait_presence(&self, sup_token: &str, username: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let list: Value = self
                .get(sup_token, "/api/v1/presence")
                .await
                .json()
                .await
                .unwrap();
            let entry = list
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["agent"]["username"] == username)
                .cloned()
                .unwrap_or(Value::Null);
            if entry["presence"]["status"] == status {
                return entry;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{username} never became {status}: {entry}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The next text frame as JSON (pings are answered by tungstenite while we
/// read), within a deadline.
pub async fn next_frame(ws: &mut Ws) -> Value {
    let deadline = Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a frame within the deadline")
            .expect("socket open")
            .expect("frame ok");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("server frames are JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub async fn send_frame(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}
