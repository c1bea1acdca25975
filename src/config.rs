//! Settings: parsed once, at start, into typed values.
//!
//! Layers, later wins: the embedded `config/default.toml`, then `--config
//! FILE`, then `MAILROOM__SECTION__KEY` environment variables. The merged tree
//! is then read key by key, so that **every** problem is reported together,
//! each with the key that is wrong (`agents[2].role: …`), and the process
//! refuses to start. Unknown keys are errors too: a typo must not silently
//! fall back to a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::{EmailAddress, Role, Strategy, TlsMode};
use crate::secret::{Secret, redact_url};
use crate::store::{AccountOptions, AccountSpec, ImapSettings, QueueSpec, SmtpSettings};

/// The embedded defaults (also the file a newcomer reads first).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// 15 MB: the attachment limit of the product.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 15 * 1024 * 1024;
/// 40 MB: larger mails go to quarantine.
pub const DEFAULT_MAX_MAIL_BYTES: u64 = 40 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub presence: PresenceSettings,
    pub node: NodeSettings,
    pub auth: AuthSettings,
    pub ws: WsSettings,
    pub log: LogSettings,
    pub bootstrap: BootstrapSettings,
    pub permissions: PermissionSettings,
    pub outbox: OutboxSettings,
    pub agents: Vec<AgentConfig>,
    pub queues: Vec<QueueSpec>,
    pub accounts: Vec<AccountSpec>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
}

/// The store URL may carry a password, so it is kept as a [`Secret`].
#[derive(Clone)]
pub struct StoreSettings {
    pub url: Secret,
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &redact_url(self.url.expose()))
            .finish()
    }
}

#[derive(Clone)]
pub struct PresenceSettings {
    pub url: Secret,
    pub prefix: String,
}

impl fmt::Debug for PresenceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceSettings")
            .field("url", &redact_url(self.url.expose()))
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's name; never empty after parsing.
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub token_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub heartbeat: Duration,
    pub deflate: bool,
    pub send_buffer: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// The outbox's retry schedule (`actors/sender.rs`): the first retry after
/// `retry_first`, each next one after twice the previous delay, at most
/// `retry_max` apart; a mail still not accepted `give_up_after` after it was
/// queued is `failed`. `poll` is how often a sender looks for due mail
/// besides being woken by a new one.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
    pub poll: Duration,
}

#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    pub admin_password_file: Option<PathBuf>,
}

/// Role permissions that an operator may narrow (docs/downloads.md).
#[derive(Debug, Clone)]
pub struct PermissionSettings {
    /// Roles that may download attachment bytes (single files, zips, `.eml`
    /// with attachments, PDF transcripts with attachments appended).
    pub download_attachments: Vec<Role>,
}

impl PermissionSettings {
    pub fn may_download_attachments(&self, role: Role) -> bool {
        self.download_attachments.contains(&role)
    }
}

/// An agent named in the config. Exactly one of `password` and
/// `password_hash` may be given (neither: the agent cannot log in until an
/// admin sets a password).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub username: String,
    pub password: Option<Secret>,
    pub password_hash: Option<String>,
    pub name: String,
    pub email: Option<EmailAddress>,
    pub role: Role,
    pub capacity: u32,
}

/// One wrong key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

/// Every problem found in the settings, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} error(s):", self.issues.len())?;
        for i in &self.issues {
            writeln!(f, "  {}: {}", i.key, i.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn single(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            issues: vec![ConfigIssue {
                key: key.to_string(),
                message: message.into(),
            }],
        }
    }
}

impl Settings {
    /// Load the layered settings: defaults, `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given (tests pass their own).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::single(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MAILROOM__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("MAILROOM")
                .prefix_separator("__")
                .separator("__")
                .source(Some(vars)),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        let tree: Value = merged
            .try_deserialize()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        Self::from_tree(&tree)
    }

    /// Settings from a TOML string layered over the defaults (no environment).
    pub fn from_toml(toml: &str) -> Result<Settings, ConfigError> {
        let merged = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        let tree: Value = merged
            .try_deserialize()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        Self::from_tree(&tree)
    }

    fn from_tree(tree: &Value) -> Result<Settings, ConfigError> {
        let mut r = Reader::default();
        let root = r.table(Some(tree), "");
        r.only(
            root,
            "",
            &[
                "http",
                "store",
                "presence",
                "node",
                "auth",
                "ws",
                "log",
                "bootstrap",
                "permissions",
                "outbox",
                "agents",
                "queues",
                "accounts",
            ],
        );

        let http = r.section(root, "http", &["listen"]);
        let listen = r.req::<SocketAddr>(http, "http", "listen");

        let store = r.section(root, "store", &["url"]);
        let store_url = r.req::<String>(store, "store", "url");
        if let Some(u) = &store_url
            && !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
        {
            r.issue(
                "store.url",
                format!(
                    "`{}` is neither sqlite://PATH nor postgres://…",
                    redact_url(u)
                ),
            );
        }

        let presence = r.section(root, "presence", &["url", "prefix"]);
        let presence_url = r.req::<String>(presence, "presence", "url");
        if let Some(u) = &presence_url
            && !(u.starts_with("memory:")
                || u.starts_with("redis://")
                || u.starts_with("rediss://"))
        {
            r.issue(
                "presence.url",
                format!("`{}` is neither memory:// nor redis://…", redact_url(u)),
            );
        }
        let prefix = r.req::<String>(presence, "presence", "prefix");

        let node = r.section(root, "node", &["id"]);
        let node_id = r
            .opt::<String>(node, "node", "id")
            .flatten()
            .filter(|s| !s.is_empty());

        let auth = r.section(root, "auth", &["token_ttl_hours"]);
        let ttl_hours = r.req::<u32>(auth, "auth", "token_ttl_hours");
        if ttl_hours == Some(0) {
            r.issue("auth.token_ttl_hours", "must be at least 1");
        }

        let ws = r.section(root, "ws", &["heartbeat_secs", "deflate", "send_buffer"]);
        let heartbeat = r.req::<u32>(ws, "ws", "heartbeat_secs");
        if heartbeat == Some(0) {
            r.issue("ws.heartbeat_secs", "must be at least 1");
        }
        let deflate = r.req::<bool>(ws, "ws", "deflate");
        if deflate == Some(true) {
            // Refuse rather than ignore: a setting that silently does nothing
            // misleads whoever sized their servers on it.
            r.issue("ws.deflate", "permessage-deflate is not available in this build (actix-ws does not implement it); set false");
        }
        let send_buffer = r.req::<u32>(ws, "ws", "send_buffer");
        if send_buffer == Some(0) {
            r.issue("ws.send_buffer", "must be at least 1");
        }

        let log = r.section(root, "log", &["format", "level"]);
        let format = r
            .req::<String>(log, "log", "format")
            .and_then(|f| match f.as_str() {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                other => {
                    r.issue(
                        "log.format",
                        format!("`{other}` is not valid (valid: text, json)"),
                    );
                    None
                }
            });
        let level = r.req::<String>(log, "log", "level");

        let bootstrap = r.section(root, "bootstrap", &["admin_password_file"]);
        let admin_file = r
            .opt::<String>(bootstrap, "bootstrap", "admin_password_file")
            .flatten()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);

        let permissions = r.section(root, "permissions", &["download_attachments"]);
        let download_roles = r
            .req::<Vec<String>>(permissions, "permissions", "download_attachments")
            .and_then(|names| {
                let mut roles = Vec::new();
                for name in names {
                    match Role::from_str(&name) {
                        Ok(role) => roles.push(role),
                        Err(e) => {
                            r.issue("permissions.download_attachments", e.to_string());
                            return None;
                        }
                    }
                }
                Some(roles)
            });

        let outbox = r.section(
            root,
            "outbox",
            &[
                "retry_first_secs",
                "retry_max_secs",
                "give_up_after_secs",
                "poll_secs",
            ],
        );
        let mut outbox_secs = |key: &str| {
            let v = r.req::<u32>(outbox, "outbox", key);
            if v == Some(0) {
                r.issue(format!("outbox.{key}"), "must be at least 1");
            }
            v.map(|s| Duration::from_secs(u64::from(s)))
        };
        let retry_first = outbox_secs("retry_first_secs");
        let retry_max = outbox_secs("retry_max_secs");
        let give_up_after = outbox_secs("give_up_after_secs");
        let outbox_poll = outbox_secs("poll_secs");

        let agents = r.list(root, "agents", Reader::agent);
        let queues = r.list(root, "queues", Reader::queue);
        let accounts = r.list(root, "accounts", Reader::account);
        r.unique(
            agents.iter().map(|a| a.username.to_lowercase()),
            "agents",
            "username",
        );
        r.unique(queues.iter().map(|q| q.name.clone()), "queues", "name");
        r.unique(accounts.iter().map(|a| a.key.clone()), "accounts", "key");

        if !r.issues.is_empty() {
            return Err(ConfigError { issues: r.issues });
        }
        // Every `None` below was reported as an issue above, so reaching this
        // point means each is present; `ok_or` keeps that honest without panics.
        let missing = || ConfigError::single("config", "internal: a checked key is missing");
        Ok(Settings {
            http: HttpSettings {
                listen: listen.ok_or_else(missing)?,
            },
            store: StoreSettings {
                url: Secret::new(store_url.ok_or_else(missing)?),
            },
            presence: PresenceSettings {
                url: Secret::new(presence_url.ok_or_else(missing)?),
                prefix: prefix.ok_or_else(missing)?,
            },
            node: NodeSettings {
                id: node_id.unwrap_or_else(default_node_id),
            },
            auth: AuthSettings {
                token_ttl: Duration::from_secs(u64::from(ttl_hours.ok_or_else(missing)?) * 3600),
            },
            ws: WsSettings {
                heartbeat: Duration::from_secs(u64::from(heartbeat.ok_or_else(missing)?)),
                deflate: deflate.ok_or_else(missing)?,
                send_buffer: send_buffer.ok_or_else(missing)? as usize,
            },
            log: LogSettings {
                format: format.ok_or_else(missing)?,
                level: level.ok_or_else(missing)?,
            },
            bootstrap: BootstrapSettings {
                admin_password_file: admin_file,
            },
            outbox: OutboxSettings {
                retry_first: retry_first.ok_or_else(missing)?,
                retry_max: retry_max.ok_or_else(missing)?,
                give_up_after: give_up_after.ok_or_else(missing)?,
                poll: outbox_poll.ok_or_else(missing)?,
            },
            permissions: PermissionSettings {
                download_attachments: download_roles.ok_or_else(missing)?,
            },
            agents,
            queues,
            accounts,
        })
    }
}

/// Read one `[[agents]]`-shaped table (also the admin API's body for a new agent).
pub fn parse_agent(v: &Value) -> Result<AgentConfig, ConfigError> {
    parse_item(v, Reader::agent)
}

/// Read one `[[queues]]`-shaped table (also the admin API's queue body).
pub fn parse_queue(v: &Value) -> Result<QueueSpec, ConfigError> {
    parse_item(v, Reader::queue)
}

/// Read one `[[accounts]]`-shaped table (also the admin API's account body).
pub fn parse_account(v: &Value) -> Result<AccountSpec, ConfigError> {
    parse_item(v, Reader::account)
}

fn parse_item<T>(
    v: &Value,
    item: fn(&mut Reader, &Map<String, Value>, &str) -> Option<T>,
) -> Result<T, ConfigError> {
    let mut r = Reader::default();
    let parsed = r.table(Some(v), "body").and_then(|t| item(&mut r, t, ""));
    match parsed {
        Some(t) if r.issues.is_empty() => Ok(t),
        _ => Err(ConfigError { issues: r.issues }),
    }
}

/// Provider presets for accounts (the guide's Gmail, Yahoo, Hotmail,
/// Office 365 and custom): host, port and TLS of IMAP and SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub imap: (&'static str, u16, TlsMode),
    pub smtp: (&'static str, u16, TlsMode),
}

impl Preset {
    pub const ALL: &'static [Preset] = &[
        Preset {
            name: "gmail",
            imap: ("imap.gmail.com", 993, TlsMode::Tls),
            smtp: ("smtp.gmail.com", 465, TlsMode::Tls),
        },
        Preset {
            name: "yahoo",
            imap: ("imap.mail.yahoo.com", 993, TlsMode::Tls),
            smtp: ("smtp.mail.yahoo.com", 465, TlsMode::Tls),
        },
        Preset {
            name: "hotmail",
            imap: ("outlook.office365.com", 993, TlsMode::Tls),
            smtp: ("smtp-mail.outlook.com", 587, TlsMode::Starttls),
        },
        Preset {
            name: "office365",
            imap: ("outlook.office365.com", 993, TlsMode::Tls),
            smtp: ("smtp.office365.com", 587, TlsMode::Starttls),
        },
    ];
    pub const NAMES: &'static [&'static str] =
        &["gmail", "yahoo", "hotmail", "office365", "custom"];

    /// The preset of that name; `custom` (and unknown names) have none.
    /// `custom` is accepted by the caller as "no preset".
    pub fn find(name: &str) -> Option<Preset> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}", std::process::id())
}

/// A value read from the merged tree. Lenient where the environment forces
/// it: variables are strings, so `"9000"` is a valid number and `"true"` a
/// valid bool.
trait FromConf: Sized {
    fn from_conf(v: &Value) -> Result<Self, String>;
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

impl FromConf for String {
    fn from_conf(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("expected a string, found {}", describe(other))),
        }
    }
}

impl FromConf for Secret {
    fn from_conf(v: &Value) -> Result<Self, String> {
        String::from_conf(v).map(Secret::new)
    }
}

macro_rules! conf_number {
    ($($t:ty),*) => {$(
        impl FromConf for $t {
            fn from_conf(v: &Value) -> Result<Self, String> {
                let n = match v {
                    Value::Number(n) => n.as_i64().ok_or_else(|| format!("expected a whole number, found {n}"))?,
                    Value::String(s) => s.trim().parse::<i64>().map_err(|_| format!("expected a whole number, found `{s}`"))?,
                    other => return Err(format!("expected a whole number, found {}", describe(other))),
                };
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range ({}..={})", <$t>::MIN, <$t>::MAX))
            }
        }
    )*};
}
conf_number!(u16, u32, u64, i32);

impl FromConf for bool {
    fn from_conf(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(format!("expected true or false, found {}", describe(other))),
        }
    }
}

impl FromConf for SocketAddr {
    fn from_conf(v: &Value) -> Result<Self, String> {
        let s = String::from_conf(v)?;
        s.parse()
            .map_err(|_| format!("`{s}` is not an IP:PORT address (e.g. 127.0.0.1:8080)"))
    }
}

impl FromConf for EmailAddress {
    fn from_conf(v: &Value) -> Result<Self, String> {
        EmailAddress::parse(&String::from_conf(v)?).map_err(|e| e.to_string())
    }
}

impl FromConf for DateTime<Utc> {
    fn from_conf(v: &Value) -> Result<Self, String> {
        let s = String::from_conf(v)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| format!("`{s}` is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"))
    }
}

macro_rules! conf_named {
    ($($t:ty),*) => {$(
        impl FromConf for $t {
            fn from_conf(v: &Value) -> Result<Self, String> {
                <$t>::from_str(&String::from_conf(v)?).map_err(|e| e.to_string())
            }
        }
    )*};
}
conf_named!(Role, Strategy, TlsMode);

impl FromConf for Vec<String> {
    fn from_conf(v: &Value) -> Result<Self, String> {
        match v {
            Value::Array(items) => items.iter().map(String::from_conf).collect(),
            // An environment variable can only carry a string: accept "a,b".
            Value::String(s) => Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()),
            other => Err(format!(
                "expected a list of strings, found {}",
                describe(other)
            )),
        }
    }
}

/// Walks the tree and collects issues instead of stopping at the first.
#[derive(Default)]
struct Reader {
    issues: Vec<ConfigIssue>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Reader {
    fn issue(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.into(),
            message: message.into(),
        });
    }

    fn table<'a>(&mut self, v: Option<&'a Value>, path: &str) -> Option<&'a Map<String, Value>> {
        match v {
            Some(Value::Object(m)) => Some(m),
            None => None,
            Some(other) => {
                self.issue(
                    if path.is_empty() { "config" } else { path },
                    format!("expected a table, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// Report keys of `obj` that are not in `allowed`.
    fn only(&mut self, obj: Option<&Map<String, Value>>, path: &str, allowed: &[&str]) {
        if let Some(obj) = obj {
            for k in obj.keys() {
                if !allowed.contains(&k.as_str()) {
                    self.issue(
                        join(path, k),
                        format!("unknown key (valid here: {})", allowed.join(", ")),
                    );
                }
            }
        }
    }

    fn section<'a>(
        &mut self,
        root: Option<&'a Map<String, Value>>,
        name: &str,
        allowed: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let t = self.table(root.and_then(|r| r.get(name)), name);
        self.only(t, name, allowed);
        t
    }

    /// An optional key: `None` = invalid (reported), `Some(None)` = absent.
    fn opt<T: FromConf>(
        &mut self,
        obj: Option<&Map<String, Value>>,
        path: &str,
        key: &str,
    ) -> Option<Option<T>> {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => Some(None),
            Some(v) => match T::from_conf(v) {
                Ok(t) => Some(Some(t)),
                Err(msg) => {
                    self.issue(join(path, key), msg);
                    None
                }
            },
        }
    }

    fn req<T: FromConf>(
        &mut self,
        obj: Option<&Map<String, Value>>,
        path: &str,
        key: &str,
    ) -> Option<T> {
        match self.opt(obj, path, key) {
            Some(Some(v)) => Some(v),
            Some(None) => {
                if obj.is_some() {
                    self.issue(join(path, key), "is required");
                }
                None
            }
            None => None,
        }
    }

    /// An optional key with a default.
    fn or<T: FromConf>(
        &mut self,
        obj: Option<&Map<String, Value>>,
        path: &str,
        key: &str,
        default: T,
    ) -> Option<T> {
        self.opt(obj, path, key).map(|v| v.unwrap_or(default))
    }

    /// A list of tables (`[[agents]]`), each read by `item`; invalid items are dropped
    /// (their issues are reported).
    fn list<T>(
        &mut self,
        root: Option<&Map<String, Value>>,
        name: &str,
        item: fn(&mut Reader, &Map<String, Value>, &str) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        match root.and_then(|r| r.get(name)) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    let path = format!("{name}[{i}]");
                    if let Some(t) = self.table(Some(v), &path)
                        && let Some(parsed) = item(self, t, &path)
                    {
                        out.push(parsed);
                    }
                }
            }
            Some(other) => self.issue(
                name,
                format!(
                    "expected a list of tables ([[{name}]]), found {}",
                    describe(other)
                ),
            ),
        }
        out
    }

    fn unique(&mut self, keys: impl Iterator<Item = String>, list: &str, field: &str) {
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            if !seen.insert(k.clone()) {
                self.issue(
                    format!("{list}.{field}"),
                    format!("`{k}` appears more than once"),
                );
            }
        }
    }

    fn agent(&mut self, t: &Map<String, Value>, path: &str) -> Option<AgentConfig> {
        let o = Some(t);
        self.only(
            o,
            path,
            &[
                "username",
                "password",
                "password_hash",
                "name",
                "email",
                "role",
                "capacity",
            ],
        );
        let username = self.req::<String>(o, path, "username");
        if let Some(u) = &username
            && (u.is_empty()
                || u.len() > 64
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)))
        {
            self.issue(
                join(path, "username"),
                format!("`{u}` must be 1–64 characters of letters, digits, . _ - @"),
            );
        }
        let password = self.opt::<Secret>(o, path, "password");
        let password_hash = self.opt::<String>(o, path, "password_hash");
        if let (Some(Some(_)), Some(Some(_))) = (&password, &password_hash) {
            self.issue(
                join(path, "password"),
                "give either password or password_hash, not both",
            );
        }
        if let Some(Some(h)) = &password_hash
            && let Err(e) = crate::auth::check_phc(h)
        {
            self.issue(join(path, "password_hash"), e);
        }
        let name = self.opt::<String>(o, path, "name");
        let email = self.opt::<EmailAddress>(o, path, "email");
        let role = self.or(o, path, "role", Role::Agent);
        let capacity = self.or(o, path, "capacity", 5u32);
        let username = username?;
        Some(AgentConfig {
            name: name?.unwrap_or_else(|| username.clone()),
            username,
            password: password?,
            password_hash: password_hash?,
            email: email?,
            role: role?,
            capacity: capacity?,
        })
    }

    fn queue(&mut self, t: &Map<String, Value>, path: &str) -> Option<QueueSpec> {
        let o = Some(t);
        self.only(
            o,
            path,
            &[
                "name",
                "strategy",
                "offer_timeout_secs",
                "sticky_secs",
                "retry_backoff_secs",
                "max_simultaneous_offers",
                "auto_pause_after_missed",
                "disposition_required",
                "agents",
            ],
        );
        let name = self.req::<String>(o, path, "name");
        if let Some(n) = &name
            && (n.is_empty() || n.len() > 64)
        {
            self.issue(join(path, "name"), "must be 1–64 characters");
        }
        let strategy = self.or(o, path, "strategy", Strategy::RingAll);
        let offer_timeout_secs = self.or(o, path, "offer_timeout_secs", 30u32);
        if offer_timeout_secs == Some(0) {
            self.issue(join(path, "offer_timeout_secs"), "must be at least 1");
        }
        let sticky_secs = self.or(o, path, "sticky_secs", 10u32);
        let retry_backoff_secs = self.or(o, path, "retry_backoff_secs", 5u32);
        let max_simultaneous_offers = self.opt::<u32>(o, path, "max_simultaneous_offers");
        let auto_pause_after_missed = self.opt::<u32>(o, path, "auto_pause_after_missed");
        let disposition_required = self.or(o, path, "disposition_required", false);
        let agents = self.or(o, path, "agents", Vec::<String>::new());
        Some(QueueSpec {
            name: name?,
            strategy: strategy?,
            offer_timeout_secs: offer_timeout_secs?,
            sticky_secs: sticky_secs?,
            retry_backoff_secs: retry_backoff_secs?,
            max_simultaneous_offers: max_simultaneous_offers?,
            auto_pause_after_missed: auto_pause_after_missed?,
            disposition_required: disposition_required?,
            agents: agents?,
        })
    }

    fn account(&mut self, t: &Map<String, Value>, path: &str) -> Option<AccountSpec> {
        let o = Some(t);
        self.only(
            o,
            path,
            &[
                "key",
                "address",
                "queue",
                "preset",
                "imap",
                "smtp",
                "import_since",
                "subject_token",
                "allow_mark_unread",
                "show_preview",
                "max_attachment_mb",
                "max_mail_mb",
                "signature",
            ],
        );
        let key = self
            .req::<String>(o, path, "key")
            .map(|k| k.to_ascii_uppercase());
        if let Some(k) = &key
            && (k.is_empty() || k.len() > 5 || !k.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            self.issue(
                join(path, "key"),
                format!("`{k}` must be 1–5 letters or digits (e.g. SERV)"),
            );
        }
        let address = self.req::<EmailAddress>(o, path, "address");
        let queue = self.req::<String>(o, path, "queue");
        let preset = match self.opt::<String>(o, path, "preset") {
            Some(Some(name)) => match Preset::find(&name) {
                Some(p) => Some(p),
                None if name.eq_ignore_ascii_case("custom") => None,
                None => {
                    self.issue(
                        join(path, "preset"),
                        format!(
                            "`{name}` is not a preset (valid: {})",
                            Preset::NAMES.join(", ")
                        ),
                    );
                    None
                }
            },
            _ => None,
        };
        // With a provider preset the tables may be omitted: the preset fills
        // in host, port and TLS, and the username defaults to the address.
        let empty = Map::new();
        let imap_path = join(path, "imap");
        let mut imap_t = self.table(t.get("imap"), &imap_path);
        if imap_t.is_none() && t.get("imap").is_none() {
            if preset.is_some() {
                imap_t = Some(&empty);
            } else {
                self.issue(&imap_path, "is required (or give a preset)");
            }
        }
        self.only(
            imap_t,
            &imap_path,
            &[
                "host",
                "port",
                "tls",
                "username",
                "password",
                "folder",
                "accept_invalid_certs",
                "poll_secs",
                "sent_folder",
            ],
        );
        let smtp_path = join(path, "smtp");
        let mut smtp_t = self.table(t.get("smtp"), &smtp_path);
        if smtp_t.is_none() && t.get("smtp").is_none() {
            if preset.is_some() {
                smtp_t = Some(&empty);
            } else {
                self.issue(&smtp_path, "is required (or give a preset)");
            }
        }
        self.only(
            smtp_t,
            &smtp_path,
            &[
                "host",
                "port",
                "tls",
                "username",
                "password",
                "accept_invalid_certs",
            ],
        );

        let default_user = address.as_ref().map(|a| a.to_string());
        let imap_host = match preset {
            Some(p) => self.or(imap_t, &imap_path, "host", p.imap.0.to_string()),
            None => self.req::<String>(imap_t, &imap_path, "host"),
        };
        let imap_tls = self.or(
            imap_t,
            &imap_path,
            "tls",
            preset.map_or(TlsMode::Tls, |p| p.imap.2),
        );
        let imap_port = self
            .opt::<u16>(imap_t, &imap_path, "port")
            .map(|p| p.or(preset.map(|p| p.imap.1)));
        let imap_user = match &default_user {
            Some(d) => self.or(imap_t, &imap_path, "username", d.clone()),
            None => self.req::<String>(imap_t, &imap_path, "username"),
        };
        let imap_pw = self.opt::<Secret>(imap_t, &imap_path, "password");
        let folder = self.or(imap_t, &imap_path, "folder", "INBOX".to_string());
        let imap_insecure = self.or(imap_t, &imap_path, "accept_invalid_certs", false);
        let poll_secs = self.or(imap_t, &imap_path, "poll_secs", 30u32);
        let sent_folder = self.opt::<String>(imap_t, &imap_path, "sent_folder");

        let smtp_host = match preset {
            Some(p) => self.or(smtp_t, &smtp_path, "host", p.smtp.0.to_string()),
            None => self.req::<String>(smtp_t, &smtp_path, "host"),
        };
        let smtp_tls = self.or(
            smtp_t,
            &smtp_path,
            "tls",
            preset.map_or(TlsMode::Starttls, |p| p.smtp.2),
        );
        let smtp_port = self
            .opt::<u16>(smtp_t, &smtp_path, "port")
            .map(|p| p.or(preset.map(|p| p.smtp.1)));
        let smtp_user = match &default_user {
            Some(d) => self.or(smtp_t, &smtp_path, "username", d.clone()),
            None => self.req::<String>(smtp_t, &smtp_path, "username"),
        };
        let smtp_pw = self.opt::<Secret>(smtp_t, &smtp_path, "password");
        let smtp_insecure = self.or(smtp_t, &smtp_path, "accept_invalid_certs", false);

        let import_since = self.opt::<DateTime<Utc>>(o, path, "import_since");
        let subject_token = self.or(o, path, "subject_token", true);
        let allow_mark_unread = self.or(o, path, "allow_mark_unread", true);
        let show_preview = self.or(o, path, "show_preview", true);
        let max_att = self.or(o, path, "max_attachment_mb", 15u64);
        let max_mail = self.or(o, path, "max_mail_mb", 40u64);
        let signature = self.opt::<String>(o, path, "signature");

        let imap_tls = imap_tls?;
        let smtp_tls = smtp_tls?;
        Some(AccountSpec {
            key: key?,
            address: address?.to_string(),
            queue: queue?,
            imap: ImapSettings {
                host: imap_host?,
                port: imap_port?.unwrap_or(match imap_tls {
                    TlsMode::Tls => 993,
                    _ => 143,
                }),
                tls: imap_tls,
                username: imap_user?,
                folder: folder?,
                accept_invalid_certs: imap_insecure?,
                poll_secs: poll_secs?,
                sent_folder: sent_folder?,
            },
            smtp: SmtpSettings {
                host: smtp_host?,
                port: smtp_port?.unwrap_or(match smtp_tls {
                    TlsMode::Tls => 465,
                    TlsMode::Starttls => 587,
                    TlsMode::None => 25,
                }),
                tls: smtp_tls,
                username: smtp_user?,
                accept_invalid_certs: smtp_insecure?,
            },
            imap_password: imap_pw?,
            smtp_password: smtp_pw?,
            import_since: import_since?,
            options: AccountOptions {
                subject_token: subject_token?,
                allow_mark_unread: allow_mark_unread?,
                show_preview: show_preview?,
                max_attachment_bytes: max_att? * 1024 * 1024,
                max_mail_bytes: max_mail? * 1024 * 1024,
                signature: signature?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_alone_are_valid() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.store.url.expose(), "sqlite://data/mailroom.db");
        assert_eq!(s.presence.url.expose(), "memory://");
        assert_eq!(s.ws.heartbeat, Duration::from_secs(15));
        assert!(!s.ws.deflate);
        assert!(s.agents.is_empty());
        assert!(!s.node.id.is_empty());
    }

    #[test]
    fn environment_overrides_the_defaults() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("MAILROOM__HTTP__LISTEN", "127.0.0.1:9000"),
                ("MAILROOM__WS__HEARTBEAT_SECS", "3"),
                ("MAILROOM__LOG__FORMAT", "json"),
                ("OTHER__HTTP__LISTEN", "nonsense"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.listen.port(), 9000);
        assert_eq!(s.ws.heartbeat, Duration::from_secs(3));
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let err = Settings::from_toml(
            r#"
            [http]
            listen = "not-an-address"
            [ws]
            heartbeat_secs = "soon"
            [log]
            format = "xml"
            [[agents]]
            username = "alice"
            role = "boss"
            capacity = -1
            [[queues]]
            name = "support"
            strategy = "beepall"
            [[accounts]]
            key = "TOOLONG"
            address = "nope"
            queue = "support"
            imap = { host = "127.0.0.1", username = "u", tls = "ssl" }
            "#,
        )
        .unwrap_err();
        let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
        for expected in [
            "http.listen",
            "ws.heartbeat_secs",
            "log.format",
            "agents[0].role",
            "agents[0].capacity",
            "queues[0].strategy",
            "accounts[0].key",
            "accounts[0].address",
            "accounts[0].imap.tls",
            "accounts[0].smtp",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        let text = err.to_string();
        assert!(text.contains("beepall"), "{text}");
        assert!(text.contains("ring_all"), "{text}");
    }

    #[test]
    fn presets_fill_in_servers_and_the_username() {
        let s = Settings::from_toml(
            r#"
            [[queues]]
            name = "support"
            [[accounts]]
            key = "GM"
            address = "help@example.test"
            queue = "support"
            preset = "gmail"
            imap = { password = "app-password" }
            [[accounts]]
            key = "O365"
            address = "desk@example.test"
            queue = "support"
            preset = "office365"
            "#,
        )
        .unwrap();
        let gm = &s.accounts[0];
        assert_eq!(
            (gm.imap.host.as_str(), gm.imap.port, gm.imap.tls),
            ("imap.gmail.com", 993, TlsMode::Tls)
        );
        assert_eq!(
            (gm.smtp.host.as_str(), gm.smtp.port),
            ("smtp.gmail.com", 465)
        );
        assert_eq!(gm.imap.username, "help@example.test");
        assert!(gm.imap_password.is_some());
        let o = &s.accounts[1];
        assert_eq!(
            (o.smtp.host.as_str(), o.smtp.port, o.smtp.tls),
            ("smtp.office365.com", 587, TlsMode::Starttls)
        );

        let err = Settings::from_toml(
            "[[accounts]]\nkey = \"X\"\naddress = \"x@example.test\"\nqueue = \"q\"\npreset = \"aol\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("gmail, yahoo, hotmail, office365, custom"),
            "{err}"
        );
        let err = Settings::from_toml(
            "[[accounts]]\nkey = \"X\"\naddress = \"x@example.test\"\nqueue = \"q\"\npreset = \"custom\"\n",
        )
        .unwrap_err();
        assert!(
            err.issues.iter().any(|i| i.key == "accounts[0].imap"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Settings::from_toml(
            "[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n[stroe]\nurl = \"x\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"http.lisen"), "{keys:?}");
        assert!(keys.contains(&"stroe"), "{keys:?}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug() {
        let s = Settings::from_toml(
            r#"
            [store]
            url = "postgres://mailroom:pgsecret@127.0.0.1/mailroom"
            [[agents]]
            username = "alice"
            password = "agentsecret"
            [[queues]]
            name = "support"
            [[accounts]]
            key = "serv"
            address = "support@example.test"
            queue = "support"
            imap = { host = "127.0.0.1", port = 10143, tls = "none", username = "support@example.test", password = "imapsecret" }
            smtp = { host = "127.0.0.1", port = 10025, tls = "none", username = "support@example.test", password = "smtpsecret" }
            "#,
        )
        .unwrap();
        let dbg = format!("{s:?}");
        for secret in ["pgsecret", "agentsecret", "imapsecret", "smtpsecret"] {
            assert!(!dbg.contains(secret), "{secret} leaked: {dbg}");
        }
        assert_eq!(s.accounts[0].key, "SERV");
        assert_eq!(s.agents[0].name, "alice");
        assert_eq!(s.queues[0].strategy, Strategy::RingAll);
    }
}
