//! Provisioning: the agents, queues and accounts named in the config are
//! upserted on every start (agents first, since queues name them, then
//! queues, since accounts name them). Entities created through the admin API
//! and absent from the config are left alone.

use std::path::Path;

use futures_util::{StreamExt, TryStreamExt, stream};
use tracing::{info, warn};

use crate::auth::{self, AuthError};
use crate::config::{AgentConfig, Settings};
use crate::domain::Role;
use crate::store::{AgentSpec, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("agents[{index}] ({username}): {source}")]
    Agent {
        index: usize,
        username: String,
        source: StoreError,
    },
    #[error("queues[{index}] ({name}): {source}")]
    Queue {
        index: usize,
        name: String,
        source: StoreError,
    },
    #[error("accounts[{index}] ({key}): {source}")]
    Account {
        index: usize,
        key: String,
        source: StoreError,
    },
    #[error("password hashing: {0}")]
    Hash(#[from] AuthError),
    #[error("bootstrap admin: {0}")]
    Bootstrap(String),
}

/// Turn a configured agent into what the store writes, hashing a plain
/// password (on the blocking pool: argon2 is slow by design).
pub async fn agent_spec(cfg: AgentConfig) -> Result<AgentSpec, AuthError> {
    let password_hash = match (cfg.password, cfg.password_hash) {
        (Some(p), _) => Some(auth::hash_password_blocking(p).await?),
        (None, Some(h)) => Some(h),
        (None, None) => None,
    };
    Ok(AgentSpec {
        username: cfg.username,
        name: cfg.name,
        email: cfg.email.map(|e| e.to_string()),
        role: cfg.role,
        capacity: cfg.capacity,
        password_hash,
    })
}

pub async fn provision(store: &Store, settings: &Settings) -> Result<(), ProvisionError> {
    // Hash with bounded parallelism: each argon2 hash takes ~19 MiB and tens
    // of ms, so a few at a time use the cores without exhausting memory.
    let specs: Vec<AgentSpec> = stream::iter(settings.agents.iter().cloned().map(agent_spec))
        .buffered(4)
        .try_collect()
        .await?;
    for (index, spec) in specs.into_iter().enumerate() {
        let username = spec.username.clone();
        store
            .upsert_agent(spec)
            .await
            .map_err(|source| ProvisionError::Agent {
                index,
                username,
                source,
            })?;
    }
    for (index, spec) in settings.queues.iter().enumerate() {
        store
            .upsert_queue(spec.clone())
            .await
            .map_err(|source| ProvisionError::Queue {
                index,
                name: spec.name.clone(),
                source,
            })?;
    }
    for (index, spec) in settings.accounts.iter().enumerate() {
        store
            .upsert_account(spec.clone())
            .await
            .map_err(|source| ProvisionError::Account {
                index,
                key: spec.key.clone(),
                source,
            })?;
    }
    if !(settings.agents.is_empty() && settings.queues.is_empty() && settings.accounts.is_empty()) {
        info!(
            agents = settings.agents.len(),
            queues = settings.queues.len(),
            accounts = settings.accounts.len(),
            "provisioned from the config"
        );
    }
    if let Some(path) = &settings.bootstrap.admin_password_file {
        bootstrap_admin(store, path).await?;
    }
    Ok(())
}

/// A fresh install has no one who can log in. When no admin exists, create
/// `admin` with a random password written to a private file, and say where
/// (never the password itself) in the log.
async fn bootstrap_admin(store: &Store, path: &Path) -> Result<(), ProvisionError> {
    let agents = store
        .list_agents()
        .await
        .map_err(|e| ProvisionError::Bootstrap(e.to_string()))?;
    if agents.iter().any(|a| a.role == Role::Admin) {
        return Ok(());
    }
    let password = auth::random_password();
    let hash = auth::hash_password_blocking(password.clone()).await?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| ProvisionError::Bootstrap(format!("{}: {e}", dir.display())))?;
    }
    write_private(path, &format!("{}\n", password.expose()))
        .map_err(|e| ProvisionError::Bootstrap(format!("{}: {e}", path.display())))?;
    store
        .upsert_agent(AgentSpec {
            username: "admin".into(),
            name: "Administrator".into(),
            email: None,
            role: Role::Admin,
            capacity: 5,
            password_hash: Some(hash),
        })
        .await
        .map_err(|e| ProvisionError::Bootstrap(e.to_string()))?;
    warn!(file = %path.display(), "no admin existed: created user `admin`; its password is in the file");
    Ok(())
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())
}
