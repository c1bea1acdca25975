//! mailroom under test, started in this process on a fresh store, and what
//! the harness reads from it: account status and `/metrics` over HTTP (the
//! surface an operator has), the store directly where counting over HTTP
//! would cost more than the thing measured.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use mailroom::config::Settings;
use mailroom::domain::AccountId;
use mailroom::mail::imap::{AuthMethod, ImapConfig};
use mailroom::secret::Secret;
use mailroom::startup::{RunningApp, spawn_in_thread};
use mailroom::store::Store;
use serde_json::{Value, json};
use tokio::time::Instant;

/// The key of the one account the harness configures.
pub const ACCOUNT: &str = "LOAD";
const ADMIN: &str = "loadadmin";

/// Agents for the account's queue `load`, and how the queue routes to them
/// (the routing scenarios; ingest runs with a queue and no agents).
#[derive(Clone, Debug)]
pub struct Team {
    /// Usernames, provisioned from the config with [`Team::password`].
    pub agents: Vec<String>,
    pub strategy: mailroom::domain::Strategy,
    /// Open interactions each agent may own: the scenarios set it high so
    /// nobody fills up however long the run.
    pub capacity: u32,
    pub offer_timeout_secs: u32,
    /// The agents' password (its hash is computed once and given to all of
    /// them, so provisioning hashes nothing).
    pub password: String,
}

/// Where the store lives: `sqlite` (a file in a temporary directory, removed
/// afterwards) or a URL given as is.
#[derive(Clone, Debug)]
pub enum StoreArg {
    TempSqlite,
    Url(String),
}

impl std::str::FromStr for StoreArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sqlite" {
            Ok(StoreArg::TempSqlite)
        } else if s.starts_with("sqlite:")
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://")
        {
            Ok(StoreArg::Url(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is neither `sqlite` (a temporary file) nor a store URL (postgres://…, sqlite://PATH)"
            ))
        }
    }
}

/// The loopback services (scripts/services.sh), from its env file; a
/// variable already set in the environment wins over the file.
#[derive(Clone, Debug)]
pub struct Services {
    pub imap_host: String,
    pub imap_port: u16,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub mail_domain: String,
    pub mail_password: String,
}

impl Services {
    pub fn load(env_file: &Path) -> anyhow::Result<Services> {
        let mut vars: HashMap<String, String> = HashMap::new();
        match std::fs::read_to_string(env_file) {
            Ok(text) => {
                for line in text.lines() {
                    let line = line.trim();
                    if line.starts_with('#') {
                        continue;
                    }
                    if let Some((k, v)) = line.split_once('=') {
                        vars.insert(k.trim().to_string(), v.trim().to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", env_file.display())),
        }
        let get = |name: &str| -> anyhow::Result<String> {
            std::env::var(name)
                .ok()
                .or_else(|| vars.get(name).cloned())
                .with_context(|| {
                    format!(
                        "{name} is not set and not in {}; run `scripts/services.sh start`",
                        env_file.display()
                    )
                })
        };
        let (imap_host, imap_port) = host_port(&get("MAILROOM_TEST_IMAP_ADDR")?)?;
        let (smtp_host, smtp_port) = host_port(&get("MAILROOM_TEST_SMTP_ADDR")?)?;
        Ok(Services {
            imap_host,
            imap_port,
            smtp_host,
            smtp_port,
            mail_domain: get("MAILROOM_TEST_MAIL_DOMAIN")?,
            mail_password: get("MAILROOM_TEST_MAIL_PASSWORD")?,
        })
    }

    /// A mailbox nobody else uses: Dovecot lets any address of the domain
    /// log in with the shared password, so nothing needs creating.
    pub fn fresh_mailbox(&self, prefix: &str) -> String {
        format!(
            "{prefix}{:016x}@{}",
            rand::random::<u64>(),
            self.mail_domain
        )
    }

    /// An IMAP login to `mailbox` (for the harness's own appends).
    pub fn imap(&self, mailbox: &str) -> ImapConfig {
        ImapConfig {
            host: self.imap_host.clone(),
            port: self.imap_port,
            tls: mailroom::domain::TlsMode::None,
            username: mailbox.to_string(),
            password: Secret::new(self.mail_password.clone()),
            folder: "INBOX".into(),
            accept_invalid_certs: false,
            auth: AuthMethod::Login,
        }
    }
}

fn host_port(addr: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("`{addr}` is not host:port"))?;
    Ok((
        host.to_string(),
        port.parse()
            .with_context(|| format!("`{addr}` has no valid port"))?,
    ))
}

/// A running mailroom with one account, [`ACCOUNT`], on `mailbox`.
pub struct Mailroom {
    pub app: RunningApp,
    pub account: AccountId,
    pub backend: &'static str,
    http: reqwest::Client,
    token: String,
    // Dropped after `app` (fields drop in order): the SQLite file must
    // outlive the app that has it open.
    _dir: Option<tempfile::TempDir>,
}

impl Mailroom {
    /// Start the app on `store` with the account on `mailbox`. With
    /// `import_since`, the account's first sync imports the mail already in
    /// the mailbox from that time on (the default is: only mail that
    /// arrives after the account is added).
    pub async fn start(
        store: &StoreArg,
        services: &Services,
        mailbox: &str,
        import_since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Mailroom> {
        Self::start_with(store, services, mailbox, import_since, None).await
    }

    /// [`Mailroom::start`], with `team` as the members of the queue.
    pub async fn start_with(
        store: &StoreArg,
        services: &Services,
        mailbox: &str,
        import_since: Option<DateTime<Utc>>,
        team: Option<&Team>,
    ) -> anyhow::Result<Mailroom> {
        let (url, dir) = match store {
            StoreArg::TempSqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("mailroom-load-")
                    .tempdir()
                    .context("creating a temporary directory for SQLite")?;
                let url = format!("sqlite://{}/mailroom.db", dir.path().display());
                (url, Some(dir))
            }
            StoreArg::Url(url) => {
                refuse_used_store(url).await?;
                (url.clone(), None)
            }
        };
        let admin_pw = format!("{:032x}", rand::random::<u128>());
        let team_toml = match team {
            Some(team) => {
                let pw = team.password.clone();
                // argon2 is deliberately slow: off this runtime's workers.
                let hash = tokio::task::spawn_blocking(move || mailroom::auth::hash_password(&pw))
                    .await
                    .context("the hashing thread panicked")?
                    .map_err(|e| anyhow::anyhow!("hashing the agents' password: {e}"))?;
                team_toml(team, &hash)
            }
            None => "[[queues]]\nname = \"load\"\n".to_string(),
        };
        let settings = Settings::from_toml(&config_toml(
            &url,
            services,
            mailbox,
            &admin_pw,
            import_since,
            &team_toml,
        ))
        .map_err(|e| anyhow::anyhow!("the generated config is invalid: {e}"))?;
        // Building migrates the store and hashes the admin's password
        // (argon2, deliberately slow): keep it off this runtime's workers.
        let app = tokio::task::spawn_blocking(move || spawn_in_thread(settings))
            .await
            .context("the app's start thread panicked")?
            .map_err(|e| anyhow::anyhow!("mailroom did not start: {e}"))?;
        let backend = app.state.store.backend();
        let account = app
            .state
            .store
            .account_by_key(ACCOUNT)
            .await
            .map_err(|e| anyhow::anyhow!("the account {ACCOUNT} was not provisioned: {e}"))?
            .id;
        let http = reqwest::Client::new();
        let res = http
            .post(app.url("/api/v1/login"))
            .json(&json!({ "username": ADMIN, "password": admin_pw }))
            .send()
            .await
            .context("POST /api/v1/login")?;
        if !res.status().is_success() {
            bail!("login as {ADMIN} answered {}", res.status());
        }
        let body: Value = res.json().await.context("login answer")?;
        let token = body["token"]
            .as_str()
            .context("the login answer has no token")?
            .to_string();
        Ok(Mailroom {
            app,
            account,
            backend,
            http,
            token,
            _dir: dir,
        })
    }

    pub fn store(&self) -> &Store {
        &self.app.state.store
    }

    /// Set `TCP_NODELAY` on the server's side of every connection accepted
    /// on the app's port so far, and return how many sockets were changed.
    ///
    /// An experiment, not the product: actix-web leaves Nagle's algorithm on
    /// unless told otherwise, and mailroom does not tell it (yet), so a small
    /// frame written while the previous one is unacknowledged waits for the
    /// client's delayed ACK (up to 40 ms on Linux). The app runs in this
    /// process, so its sockets are ours to adjust: this shows what the
    /// figures would be with the option set. Linux only (`/proc`).
    pub fn set_server_nodelay(&self) -> usize {
        use std::os::fd::{FromRawFd as _, IntoRawFd as _};
        let port = self.app.addr.port();
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        let mut changed = 0;
        for entry in fds.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: `fd` is an open socket of this process (listed just
            // now; the app's connections stay open while the harness holds
            // their clients). The TcpStream only borrows it: `into_raw_fd`
            // hands it back without closing it. setsockopt on a socket that
            // another thread uses is safe; on one that is not TCP it fails,
            // and that is ignored.
            let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
            let accepted_here =
                stream.local_addr().is_ok_and(|a| a.port() == port) && stream.peer_addr().is_ok();
            if accepted_here && stream.set_nodelay(true).is_ok() {
                changed += 1;
            }
            let _ = stream.into_raw_fd();
        }
        changed
    }

    /// `POST /api/v1/login` as `username`: its bearer token.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(self.app.url("/api/v1/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .context("POST /api/v1/login")?;
        if !res.status().is_success() {
            bail!("login as {username} answered {}", res.status());
        }
        let body: Value = res.json().await.context("login answer")?;
        Ok(body["token"]
            .as_str()
            .context("the login answer has no token")?
            .to_string())
    }

    /// `GET /api/v1/accounts/LOAD/status` → its `mailbox` object.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(self.app.url(&format!("/api/v1/accounts/{ACCOUNT}/status")))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("GET account status")?;
        if !res.status().is_success() {
            bail!("GET account status answered {}", res.status());
        }
        let body: Value = res.json().await.context("account status")?;
        Ok(body["mailbox"].clone())
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let res = self
            .http
            .get(self.app.url("/metrics"))
            .send()
            .await
            .context("GET /metrics")?;
        if !res.status().is_success() {
            bail!("GET /metrics answered {}", res.status());
        }
        res.text().await.context("/metrics body")
    }

    /// Wait until the mailbox waits in IDLE (status `idle: true`), polling
    /// every `every`.
    pub async fn wait_idle(&self, within: Duration, every: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status().await?;
            if status["idle"] == true {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the mailbox is not in IDLE after {within:?}: {status}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The last UID the account has committed (or skipped), 0 before the
    /// first sync. One indexed row: cheap enough to poll.
    pub async fn watermark(&self) -> anyhow::Result<u32> {
        let mark = self
            .store()
            .watermark(self.account)
            .await
            .map_err(|e| anyhow::anyhow!("reading the watermark: {e}"))?;
        Ok(mark.map_or(0, |w| w.last_uid))
    }

    /// How many interactions the account has. Reads them all: call it at the
    /// end of a run, not in a polling loop.
    pub async fn interactions(&self) -> anyhow::Result<usize> {
        Ok(self
            .store()
            .interactions_of_account(self.account)
            .await
            .map_err(|e| anyhow::anyhow!("listing interactions: {e}"))?
            .len())
    }

    /// Stop the app gracefully (its thread is joined off this runtime).
    pub async fn stop(self) -> anyhow::Result<()> {
        let Mailroom { app, _dir, .. } = self;
        tokio::task::spawn_blocking(move || app.stop())
            .await
            .context("stopping the app")?;
        drop(_dir);
        Ok(())
    }
}

/// The harness counts interactions and watermarks of account [`ACCOUNT`] as
/// its own: a store that already has some would skew every figure (and a
/// stale watermark would skip mail). Checked before the app starts, since
/// in backlog mode it starts ingesting at once.
async fn refuse_used_store(url: &str) -> anyhow::Result<()> {
    let redacted = mailroom::secret::redact_url(url);
    let store = Store::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {redacted}: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate {redacted}: {e}"))?;
    if let Ok(account) = store.account_by_key(ACCOUNT).await {
        let existing = store
            .interactions_of_account(account.id)
            .await
            .map_err(|e| anyhow::anyhow!("listing interactions: {e}"))?
            .len();
        let mark = store
            .watermark(account.id)
            .await
            .map_err(|e| anyhow::anyhow!("reading the watermark: {e}"))?;
        if existing > 0 || mark.is_some() {
            bail!(
                "{redacted} was used before (account {ACCOUNT} has {existing} interactions): give an empty database (see load-tests/README.md)"
            );
        }
    }
    Ok(())
}

fn config_toml(
    store_url: &str,
    s: &Services,
    mailbox: &str,
    admin_pw: &str,
    import_since: Option<DateTime<Utc>>,
    queue_and_agents: &str,
) -> String {
    let prefix = format!("mailroom_load_{:08x}", rand::random::<u32>());
    let import_since = import_since.map_or(String::new(), |t| {
        format!(
            "import_since = \"{}\"\n",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    });
    let pw = &s.mail_password;
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[presence]
url = "memory://"
prefix = "{prefix}"
[bootstrap]
admin_password_file = ""

[[agents]]
username = "{ADMIN}"
password = "{admin_pw}"
name = "Load admin"
role = "admin"

{queue_and_agents}
[[accounts]]
key = "{ACCOUNT}"
address = "{mailbox}"
queue = "load"
{import_since}imap = {{ host = "{ih}", port = {ip}, tls = "none", username = "{mailbox}", password = "{pw}" }}
smtp = {{ host = "{sh}", port = {sp}, tls = "none", username = "{mailbox}", password = "{pw}" }}
"#,
        ih = s.imap_host,
        ip = s.imap_port,
        sh = s.smtp_host,
        sp = s.smtp_port,
    )
}

/// The agents and the queue `load` they are members of. No sticky agent
/// (the scenarios' senders repeat, and stickiness would turn ring_all into
/// one agent at a time).
fn team_toml(team: &Team, hash: &str) -> String {
    let mut toml = String::new();
    for name in &team.agents {
        toml.push_str(&format!(
            "[[agents]]\nusername = \"{name}\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\ncapacity = {}\n\n",
            team.capacity
        ));
    }
    let members: Vec<String> = team.agents.iter().map(|a| format!("\"{a}\"")).collect();
    toml.push_str(&format!(
        "[[queues]]\nname = \"load\"\nstrategy = \"{}\"\noffer_timeout_secs = {}\nsticky_secs = 0\nagents = [{}]\n",
        team.strategy,
        team.offer_timeout_secs,
        members.join(", ")
    ));
    toml
}

/// CPU seconds (user + system) this process has used: mailroom and the
/// harness together, as they share it. Linux only; `None` elsewhere.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its `)`.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we run on.
    Some((utime + stime) / 100.0)
}

/// Peak resident memory of this process, in MiB (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The 1-minute load average (Linux only): the machine is shared, and a
/// figure taken while something else ran must say so.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
