//! The deployment a scenario runs against: either a mailroom started here in
//! its own process (so that its CPU and RSS are its own), on a fresh store,
//! with the accounts, queue and agents the scenario needs written into its
//! config; or a running deployment (`--target URL`), where the same things
//! are created through the admin API and deleted afterwards.

use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::app::Services;

/// How long the server may take to say it listens (10,000 agents are
/// upserted from the config at start).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Parallel admin-API requests when provisioning on a target.
const ADMIN_PARALLEL: usize = 8;

/// What the scenario needs provisioned.
#[derive(Clone, Debug)]
pub struct Plan {
    /// A short name unique to this run (`load-<run>-<n>` agents).
    pub run: String,
    pub agents: usize,
    /// Accounts (each its own fresh mailbox, so ingest is several actors).
    pub accounts: usize,
    pub strategy: String,
    pub offer_timeout_secs: u32,
    pub capacity: u32,
    pub heartbeat_secs: u32,
    pub store: StoreKind,
    pub presence_redis: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Where the server comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// This binary's hidden `__serve` (default) or a `mailroom` binary.
    Local {
        server_bin: Option<PathBuf>,
        keep: bool,
    },
    Target {
        url: String,
        admin_user: String,
        admin_password: String,
        server_pid: Option<u32>,
    },
}

/// One account: its key and the mailbox mail is injected into.
#[derive(Clone, Debug)]
pub struct Account {
    pub key: String,
    pub mailbox: String,
}

pub struct Deployment {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub accounts: Vec<Account>,
    pub queue: String,
    pub agents: Vec<String>,
    pub agent_password: String,
    /// A mailbox replies are addressed to (nobody reads it).
    pub sink: String,
    pub server_pid: Option<u32>,
    /// "sqlite", "postgres", or "target".
    pub store_label: String,
    /// A line or two for the report: how the server runs.
    pub notes: Vec<String>,
    kind: Kind,
}

enum Kind {
    Local {
        child: Child,
        log: PathBuf,
        // Held for its Drop: the SQLite file and the config live here.
        _dir: tempfile::TempDir,
        pg: Option<(String, String)>, // (admin URL, database) to drop
        keep: bool,
    },
    Target {
        agent_ids: Vec<String>,
        queue_id: Option<String>,
        account_keys: Vec<String>,
    },
}

/// Raise this process's open-files soft limit to the hard limit (children
/// inherit it): 10,000 agents are 10,000 sockets on each side.
pub fn raise_nofile() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return None;
            }
        }
        Some(lim.rlim_cur)
    }
}

/// An argon2id PHC string made with cheap parameters (1 MiB, 1 pass, 1
/// lane): the server verifies with the parameters embedded in the string,
/// so 10,000 logins cost milliseconds each instead of the default's tens.
/// A load-test shortcut, never a production setting.
pub fn cheap_hash(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let params = argon2::Params::new(1024, 1, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

/// The services env file exists and its ports answer; otherwise run
/// `scripts/services.sh start` (from the source tree, or the current dir).
pub fn ensure_services(env_file: &Path) -> anyhow::Result<()> {
    if services_answer(env_file) {
        return Ok(());
    }
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh"),
        PathBuf::from("scripts/services.sh"),
    ];
    let script = candidates.iter().find(|p| p.exists()).context(
        "the services are not up and scripts/services.sh was not found; run it yourself",
    )?;
    eprintln!("services are not up: running {} start …", script.display());
    let status = Command::new(script)
        .arg("start")
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() || !services_answer(env_file) {
        bail!("`{} start` did not bring the services up", script.display());
    }
    Ok(())
}

fn services_answer(env_file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(env_file) else {
        return false;
    };
    let mut addrs = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "MAILROOM_TEST_IMAP_ADDR" | "MAILROOM_TEST_SMTP_ADDR" => {
                addrs.push(v.trim().to_string())
            }
            "MAILROOM_TEST_PG_URL" | "MAILROOM_TEST_REDIS_URL" => {
                if let Ok(u) = url_host_port(v.trim()) {
                    addrs.push(u);
                }
            }
            _ => {}
        }
    }
    !addrs.is_empty()
        && addrs.iter().all(|a| {
            a.to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .is_some_and(|sa| {
                    std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)).is_ok()
                })
        })
}

/// `host:port` of a `scheme://[user@]host:port/…` URL.
fn url_host_port(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").context("no scheme")?.1;
    let authority = rest.split('/').next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Ok(hostport.to_string())
}

/// Refuse anything that is not loopback: every scenario targets this
/// machine only.
pub fn check_loopback(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .context("--target must be an http:// URL")?;
    if trimmed.starts_with("https://") {
        bail!("--target: only http:// on loopback is supported (no TLS on loopback)");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let hostport = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<IpAddr> = hostport
        .to_socket_addrs()
        .with_context(|| format!("--target: cannot resolve {authority}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() || !addrs.iter().all(IpAddr::is_loopback) {
        bail!("--target {url}: not a loopback address; every scenario targets loopback only");
    }
    Ok(format!("http://{authority}"))
}

impl Deployment {
    pub async fn start(
        source: &Source,
        plan: &Plan,
        services: &Services,
        pg_admin_url: Option<&str>,
        redis_url: Option<&str>,
        out: &Path,
    ) -> anyhow::Result<Deployment> {
        match source {
            Source::Local { server_bin, keep } => {
                start_local(
                    server_bin.as_deref(),
                    *keep,
                    plan,
                    services,
                    pg_admin_url,
                    redis_url,
                    out,
                )
                .await
            }
            Source::Target {
                url,
                admin_user,
                admin_password,
                server_pid,
            } => {
                provision_target(url, admin_user, admin_password, *server_pid, plan, services).await
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "ws://{}/ws?token={token}",
            self.base.trim_start_matches("http://")
        )
    }

    /// `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let res = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .context("GET /metrics")?;
        if !res.status().is_success() {
            bail!("GET /metrics answered {}", res.status());
        }
        res.text().await.context("/metrics body")
    }

    /// An admin GET under `/api/v1`, as JSON.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        if !res.status().is_success() {
            bail!("GET {path} answered {}", res.status());
        }
        res.json().await.with_context(|| format!("GET {path} body"))
    }

    /// Wait until every account's mailbox waits in IDLE, so that the first
    /// mail is announced as a live EXISTS.
    pub async fn wait_idle(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for account in &self.accounts {
            loop {
                let status = self
                    .admin_get(&format!("/accounts/{}/status", account.key))
                    .await;
                if let Ok(s) = &status
                    && s["mailbox"]["idle"] == true
                {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "account {}'s mailbox is not in IDLE after {within:?}: {status:?}",
                        account.key
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Warnings and errors in the server's log (local servers only).
    pub fn log_counts(&self) -> Option<(u64, u64)> {
        let Kind::Local { log, .. } = &self.kind else {
            return None;
        };
        let text = std::fs::read_to_string(log).ok()?;
        let warn = text.lines().filter(|l| l.contains(" WARN ")).count() as u64;
        let err = text.lines().filter(|l| l.contains(" ERROR ")).count() as u64;
        Some((warn, err))
    }

    /// Stop the local server (SIGTERM, then wait; SIGKILL after 30 s) and
    /// drop its Postgres database unless kept; or delete what was created
    /// on the target.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let empty = Kind::Target {
            agent_ids: Vec::new(),
            queue_id: None,
            account_keys: Vec::new(),
        };
        match std::mem::replace(&mut self.kind, empty) {
            Kind::Local {
                mut child,
                pg,
                keep,
                _dir,
                ..
            } => {
                let pid = child.id() as i32;
                // SAFETY: signalling our own child by its pid.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if keep {
                    let _ = _dir.keep();
                }
                if let Some((admin, db)) = pg {
                    if keep {
                        eprintln!("kept Postgres database {db}");
                    } else {
                        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                            .await
                            .context("connecting to Postgres to drop the run's database")?;
                        tokio::spawn(conn);
                        client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                            .await
                            .with_context(|| format!("dropping {db}"))?;
                    }
                }
                Ok(())
            }
            Kind::Target {
                agent_ids,
                queue_id,
                account_keys,
            } => {
                let mut failures = 0;
                for key in &account_keys {
                    failures += u32::from(!self.delete(&format!("/accounts/{key}")).await);
                }
                if let Some(q) = &queue_id {
                    failures += u32::from(!self.delete(&format!("/queues/{q}")).await);
                }
                for id in &agent_ids {
                    failures += u32::from(!self.delete(&format!("/agents/{id}")).await);
                }
                if failures > 0 {
                    bail!("{failures} of the run's agents, queue or accounts could not be deleted");
                }
                Ok(())
            }
        }
    }

    async fn delete(&self, path: &str) -> bool {
        self.http
            .delete(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

pub async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    let res = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .context("POST /api/v1/login")?;
    if !res.status().is_success() {
        bail!("login as {user} answered {}", res.status());
    }
    let body: Value = res.json().await.context("login answer")?;
    Ok(body["token"]
        .as_str()
        .context("the login answer has no token")?
        .to_string())
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    // Enough idle connections for the agents' replies and closes; loopback.
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

fn agent_names(plan: &Plan) -> Vec<String> {
    (0..plan.agents)
        .map(|n| format!("load-{}-{n}", plan.run))
        .collect()
}

fn account_keys(plan: &Plan) -> Vec<String> {
    // 1–5 letters or digits: `L` + 2 hex of the run + the index (≤ 99).
    let tag = &plan.run[..2.min(plan.run.len())];
    (0..plan.accounts)
        .map(|i| format!("L{tag}{i}").to_uppercase())
        .collect()
}

async fn start_local(
    server_bin: Option<&Path>,
    keep: bool,
    plan: &Plan,
    services: &Services,
    pg_admin_url: Option<&str>,
    redis_url: Option<&str>,
    out: &Path,
) -> anyhow::Result<Deployment> {
    let dir = tempfile::Builder::new()
        .prefix("mailroom-load-")
        .tempdir()
        .context("creating a temporary directory")?;
    let (store_url, pg) = match plan.store {
        StoreKind::Sqlite => (
            format!("sqlite://{}/mailroom.db", dir.path().display()),
            None,
        ),
        StoreKind::Postgres => {
            let admin = pg_admin_url
                .context("--store postgres needs MAILROOM_TEST_PG_URL (the services env file)")?;
            let db = format!("mailroom_load_{}", plan.run);
            let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
                .await
                .context("connecting to Postgres (MAILROOM_TEST_PG_URL)")?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .with_context(|| format!("creating database {db}"))?;
            let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
            (
                format!("{base}/{db}"),
                Some((admin.to_string(), db.to_string())),
            )
        }
    };
    let presence = match (plan.presence_redis, redis_url) {
        (false, _) => "memory://".to_string(),
        (true, Some(u)) => u.to_string(),
        (true, None) => bail!("--presence redis needs MAILROOM_TEST_REDIS_URL"),
    };
    let agent_password = format!("{:032x}", rand::random::<u128>());
    let admin_password = format!("{:032x}", rand::random::<u128>());
    let (agent_hash, admin_hash) = {
        let (a, b) = (agent_password.clone(), admin_password.clone());
        tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>((cheap_hash(&a)?, cheap_hash(&b)?))
        })
        .await??
    };
    let agents = agent_names(plan);
    let keys = account_keys(plan);
    let accounts: Vec<Account> = keys
        .iter()
        .map(|k| Account {
            key: k.clone(),
            mailbox: services.fresh_mailbox("load"),
        })
        .collect();
    let admin = format!("load-{}-admin", plan.run);
    let mut toml = format!(
        r#"[http]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[presence]
url = "{presence}"
prefix = "mailroom_load_{run}"
[ws]
heartbeat_secs = {hb}
[log]
level = "info"
format = "text"
[bootstrap]
admin_password_file = ""

[[agents]]
username = "{admin}"
password_hash = "{admin_hash}"
role = "admin"

"#,
        run = plan.run,
        hb = plan.heartbeat_secs,
    );
    for name in &agents {
        toml.push_str(&format!(
            "[[agents]]\nusername = \"{name}\"\npassword_hash = \"{agent_hash}\"\nrole = \"agent\"\ncapacity = {}\n\n",
            plan.capacity
        ));
    }
    let queue = format!("load-{}", plan.run);
    let members: Vec<String> = agents.iter().map(|a| format!("\"{a}\"")).collect();
    toml.push_str(&format!(
        "[[queues]]\nname = \"{queue}\"\nstrategy = \"{}\"\noffer_timeout_secs = {}\nsticky_secs = 0\nretry_backoff_secs = 1\nagents = [{}]\n\n",
        plan.strategy,
        plan.offer_timeout_secs,
        members.join(", ")
    ));
    let pw = &services.mail_password;
    for a in &accounts {
        toml.push_str(&format!(
            "[[accounts]]\nkey = \"{key}\"\naddress = \"{mb}\"\nqueue = \"{queue}\"\nimap = {{ host = \"{ih}\", port = {ip}, tls = \"none\", username = \"{mb}\", password = \"{pw}\" }}\nsmtp = {{ host = \"{sh}\", port = {sp}, tls = \"none\", username = \"{mb}\", password = \"{pw}\" }}\n\n",
            key = a.key,
            mb = a.mailbox,
            ih = services.imap_host,
            ip = services.imap_port,
            sh = services.smtp_host,
            sp = services.smtp_port,
        ));
    }
    let config = dir.path().join("mailroom.toml");
    std::fs::write(&config, toml).context("writing the server's config")?;
    let log = out.join("server.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match server_bin {
        Some(bin) => {
            let mut c = Command::new(bin);
            c.arg("serve");
            c
        }
        None => {
            let mut c = Command::new(std::env::current_exe().context("locating this binary")?);
            c.arg("__serve");
            c
        }
    };
    cmd.arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let mut child = cmd.spawn().context("starting the server process")?;
    let started = Instant::now();
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("listening on http://") {
            let rest = &text[at + "listening on http://".len()..];
            let addr: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            break addr;
        }
        if let Some(status) = child.try_wait()? {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            bail!(
                "the server exited ({status}) before listening; its log ({}):\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            bail!(
                "the server did not listen within {START_TIMEOUT:?} (log: {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let base = format!("http://{addr}");
    let http = http_client()?;
    let admin_token = match login(&http, &base, &admin, &admin_password).await {
        Ok(t) => t,
        Err(e) => {
            let _ = child.kill();
            return Err(e);
        }
    };
    let server_pid = Some(child.id());
    let how = match server_bin {
        Some(b) => format!("server: {} serve, its own process", b.display()),
        None => "server: this binary's `__serve` (what `mailroom serve` does), its own process"
            .to_string(),
    };
    Ok(Deployment {
        base,
        http,
        admin_token,
        accounts,
        queue,
        agents,
        agent_password,
        sink: services.fresh_mailbox("sink"),
        server_pid,
        store_label: match plan.store {
            StoreKind::Sqlite => "sqlite".into(),
            StoreKind::Postgres => "postgres".into(),
        },
        notes: vec![
            how,
            format!(
                "started in {:.1} s with {} agents provisioned from the config",
                started.elapsed().as_secs_f64(),
                plan.agents
            ),
        ],
        kind: Kind::Local {
            child,
            log,
            _dir: dir,
            pg,
            keep,
        },
    })
}

async fn provision_target(
    url: &str,
    admin_user: &str,
    admin_password: &str,
    server_pid: Option<u32>,
    plan: &Plan,
    services: &Services,
) -> anyhow::Result<Deployment> {
    let base = check_loopback(url)?;
    let http = http_client()?;
    let admin_token = login(&http, &base, admin_user, admin_password).await?;
    let agent_password = format!("{:032x}", rand::random::<u128>());
    let hash = {
        let p = agent_password.clone();
        tokio::task::spawn_blocking(move || cheap_hash(&p)).await??
    };
    let agents = agent_names(plan);
    let mut dep = Deployment {
        base,
        http,
        admin_token,
        accounts: Vec::new(),
        queue: format!("load-{}", plan.run),
        agents: agents.clone(),
        agent_password,
        sink: services.fresh_mailbox("sink"),
        server_pid,
        store_label: "target".into(),
        notes: vec![format!(
            "target: {url} (agents, queue and accounts created through the admin API, deleted afterwards)"
        )],
        kind: Kind::Target {
            agent_ids: Vec::new(),
            queue_id: None,
            account_keys: Vec::new(),
        },
    };
    // Create, and on any failure delete what was created so far.
    let result = provision_target_items(&mut dep, plan, services, &hash).await;
    if let Err(e) = result {
        let _ = dep.finish().await;
        return Err(e);
    }
    Ok(dep)
}

async fn post(dep: &Deployment, path: &str, body: &Value) -> anyhow::Result<Value> {
    let res = dep
        .http
        .post(dep.url(&format!("/api/v1{path}")))
        .bearer_auth(&dep.admin_token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("POST {path} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path} body"))
}

async fn provision_target_items(
    dep: &mut Deployment,
    plan: &Plan,
    services: &Services,
    hash: &str,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let results: Vec<anyhow::Result<String>> =
        futures_util::stream::iter(dep.agents.clone().into_iter().map(|name| {
            let dep = &*dep;
            async move {
                let body = json!({"username": name, "password_hash": hash, "role": "agent", "capacity": plan.capacity});
                let v = post(dep, "/agents", &body).await?;
                v["id"]
                    .as_str()
                    .map(str::to_string)
                    .context("the created agent has no id")
            }
        }))
        .buffer_unordered(ADMIN_PARALLEL)
        .collect()
        .await;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(id) => {
                if let Kind::Target { agent_ids, .. } = &mut dep.kind {
                    agent_ids.push(id);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let q = post(
        dep,
        "/queues",
        &json!({
            "name": dep.queue, "strategy": plan.strategy, "offer_timeout_secs": plan.offer_timeout_secs,
            "sticky_secs": 0, "retry_backoff_secs": 1, "agents": dep.agents,
        }),
    )
    .await?;
    if let Kind::Target { queue_id, .. } = &mut dep.kind {
        *queue_id = q["id"].as_str().map(str::to_string);
    }
    let pw = services.mail_password.clone();
    for key in account_keys(plan) {
        let mailbox = services.fresh_mailbox("load");
        post(
            dep,
            "/accounts",
            &json!({
                "key": key, "address": mailbox, "queue": dep.queue,
                "imap": {"host": services.imap_host, "port": services.imap_port, "tls": "none", "username": mailbox, "password": pw},
                "smtp": {"host": services.smtp_host, "port": services.smtp_port, "tls": "none", "username": mailbox, "password": pw},
            }),
        )
        .await?;
        if let Kind::Target { account_keys, .. } = &mut dep.kind {
            account_keys.push(key.clone());
        }
        dep.accounts.push(Account { key, mailbox });
    }
    Ok(())
}

/// `mailroom-load __serve --config FILE`: exactly what `mailroom serve`
/// does (settings, telemetry, build, serve until SIGTERM/SIGINT), in its own
/// process so the harness can measure it apart from itself.
pub fn serve(config: &Path) -> anyhow::Result<()> {
    let settings = mailroom::config::Settings::load(Some(config))
        .map_err(|e| anyhow::anyhow!("mailroom: {e}"))?;
    mailroom::telemetry::init(&settings.log);
    // spawn_in_thread runs App::build and run_until_stopped on an actix
    // System of its own thread (logging "listening on http://…"); this
    // thread only waits for the signal.
    let app = mailroom::startup::spawn_in_thread(settings)
        .map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(mailroom::startup::shutdown_signal());
    app.stop();
    Ok(())
}
