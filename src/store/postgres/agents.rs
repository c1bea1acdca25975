//! Agents and their sessions.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{PgStore, name, unsigned};
use crate::domain::{AgentId, Role};
use crate::store::common::{self, agent_taken, int, taken};
use crate::store::{Agent, AgentPatch, AgentSpec, SessionInfo, StoreError, StoreResult};

/// The columns [`agent_row`] reads.
macro_rules! agent_cols {
    () => {
        "id, username, name, email, role, capacity, created_at, updated_at"
    };
}

const UPSERT: &str = concat!(
    "INSERT INTO agents (username, name, email, role, capacity, password_hash, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
     ON CONFLICT (username) DO UPDATE SET
         name = excluded.name,
         email = excluded.email,
         role = excluded.role,
         capacity = excluded.capacity,
         password_hash = COALESCE(excluded.password_hash, agents.password_hash),
         updated_at = excluded.updated_at,
         deleted_at = NULL
     RETURNING ",
    agent_cols!()
);

const INSERT: &str = concat!(
    "INSERT INTO agents (username, name, email, role, capacity, password_hash, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
     RETURNING ",
    agent_cols!()
);

const UPDATE: &str = concat!(
    "UPDATE agents SET
         name = COALESCE($2, name),
         email = CASE WHEN $3 THEN $4 ELSE email END,
         role = COALESCE($5, role),
         capacity = COALESCE($6, capacity),
         password_hash = COALESCE($7, password_hash),
         updated_at = $8
     WHERE id = $1 AND deleted_at IS NULL
     RETURNING ",
    agent_cols!()
);

const BY_ID: &str = concat!(
    "SELECT ",
    agent_cols!(),
    " FROM agents WHERE id = $1 AND deleted_at IS NULL"
);

const BY_USERNAME: &str = concat!(
    "SELECT ",
    agent_cols!(),
    " FROM agents WHERE username = $1 AND deleted_at IS NULL"
);

const LIST: &str = concat!(
    "SELECT ",
    agent_cols!(),
    " FROM agents WHERE deleted_at IS NULL ORDER BY username"
);

const CREDENTIALS: &str = concat!(
    "SELECT ",
    agent_cols!(),
    ", password_hash FROM agents
     WHERE username = $1 AND deleted_at IS NULL AND password_hash IS NOT NULL"
);

const SESSION: &str = "SELECT a.id, a.username, a.name, a.email, a.role, a.capacity,
            a.created_at, a.updated_at, s.expires_at
     FROM sessions s JOIN agents a ON a.id = s.agent_id
     WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2
       AND a.deleted_at IS NULL";

pub(super) fn agent_row(row: &Row) -> StoreResult<Agent> {
    Ok(Agent {
        id: AgentId(row.try_get("id")?),
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: name(row, "role")?,
        capacity: unsigned(row, "capacity")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PgStore {
    pub async fn upsert_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        let capacity = int(spec.capacity, "capacity")?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(UPSERT).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &spec.username,
                    &spec.name,
                    &spec.email,
                    &spec.role.as_str(),
                    &capacity,
                    &spec.password_hash,
                    &common::now(),
                ],
            )
            .await?;
        agent_row(&row)
    }

    pub async fn create_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        let capacity = int(spec.capacity, "capacity")?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(INSERT).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &spec.username,
                    &spec.name,
                    &spec.email,
                    &spec.role.as_str(),
                    &capacity,
                    &spec.password_hash,
                    &common::now(),
                ],
            )
            .await
            .map_err(StoreError::from)
            .map_err(taken(|| agent_taken(&spec.username)))?;
        agent_row(&row)
    }

    pub async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent> {
        let capacity = common::opt_int(patch.capacity, "capacity")?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(UPDATE).await?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &id.0,
                    &patch.name,
                    &patch.email.is_some(),
                    &patch.email.flatten(),
                    &patch.role.map(Role::as_str),
                    &capacity,
                    &patch.password_hash,
                    &common::now(),
                ],
            )
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        agent_row(&row)
    }

    pub async fn delete_agent(&self, id: AgentId) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = common::now();
        let stmt = tx
            .prepare_cached(
                "UPDATE agents SET deleted_at = $2, updated_at = $2
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .await?;
        if tx.execute(&stmt, &[&id.0, &now]).await? == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE sessions SET revoked_at = $2 WHERE agent_id = $1 AND revoked_at IS NULL",
            )
            .await?;
        tx.execute(&stmt, &[&id.0, &now]).await?;
        let stmt = tx
            .prepare_cached("DELETE FROM queue_members WHERE agent_id = $1")
            .await?;
        tx.execute(&stmt, &[&id.0]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn agent(&self, id: AgentId) -> StoreResult<Agent> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(BY_ID).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        agent_row(&row)
    }

    pub async fn agent_by_username(&self, username: &str) -> StoreResult<Agent> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(BY_USERNAME).await?;
        let row = client
            .query_opt(&stmt, &[&username])
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        agent_row(&row)
    }

    pub async fn list_agents(&self) -> StoreResult<Vec<Agent>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIST).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(agent_row)
            .collect()
    }

    pub async fn agent_credentials(&self, username: &str) -> StoreResult<(Agent, String)> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CREDENTIALS).await?;
        let row = client
            .query_opt(&stmt, &[&username])
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        Ok((agent_row(&row)?, row.try_get("password_hash")?))
    }

    // ---- sessions -----------------------------------------------------

    pub async fn create_session(
        &self,
        token_hash: &[u8],
        agent: AgentId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO sessions (token_hash, agent_id, created_at, expires_at, last_seen_at)
                 SELECT $1::bytea, id, $3::timestamptz, $4::timestamptz, $3::timestamptz
                 FROM agents WHERE id = $2 AND deleted_at IS NULL",
            )
            .await?;
        let created = client
            .execute(
                &stmt,
                &[
                    &token_hash,
                    &agent.0,
                    &common::now(),
                    &common::millis(expires_at),
                ],
            )
            .await?;
        if created == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        Ok(())
    }

    pub async fn session(&self, token_hash: &[u8], now: DateTime<Utc>) -> StoreResult<SessionInfo> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SESSION).await?;
        let row = client
            .query_opt(&stmt, &[&token_hash, &common::millis(now)])
            .await?
            .ok_or(StoreError::NotFound("session"))?;
        Ok(SessionInfo {
            agent: agent_row(&row)?,
            expires_at: row.try_get("expires_at")?,
        })
    }

    pub async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .await?;
        client
            .execute(&stmt, &[&token_hash, &common::now()])
            .await?;
        Ok(())
    }

    pub async fn revoke_agent_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE sessions SET revoked_at = $2
                 WHERE agent_id = $1 AND revoked_at IS NULL AND expires_at > $2",
            )
            .await?;
        Ok(client.execute(&stmt, &[&agent.0, &common::now()]).await?)
    }
}
