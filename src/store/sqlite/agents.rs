//! Agents and their sessions.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Millis, Name, SqliteStore, ms};
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
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
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
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
     RETURNING ",
    agent_cols!()
);

const UPDATE: &str = concat!(
    "UPDATE agents SET
         name = COALESCE(?2, name),
         email = CASE WHEN ?3 THEN ?4 ELSE email END,
         role = COALESCE(?5, role),
         capacity = COALESCE(?6, capacity),
         password_hash = COALESCE(?7, password_hash),
         updated_at = ?8
     WHERE id = ?1 AND deleted_at IS NULL
     RETURNING ",
    agent_cols!()
);

const BY_ID: &str = concat!(
    "SELECT ",
    agent_cols!(),
    " FROM agents WHERE id = ?1 AND deleted_at IS NULL"
);

const BY_USERNAME: &str = concat!(
    "SELECT ",
    agent_cols!(),
    " FROM agents WHERE username = ?1 AND deleted_at IS NULL"
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
     WHERE username = ?1 AND deleted_at IS NULL AND password_hash IS NOT NULL"
);

const SESSION: &str = "SELECT a.id, a.username, a.name, a.email, a.role, a.capacity,
            a.created_at, a.updated_at, s.expires_at
     FROM sessions s JOIN agents a ON a.id = s.agent_id
     WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2
       AND a.deleted_at IS NULL";

fn agent_row(row: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: AgentId(row.get("id")?),
        username: row.get("username")?,
        name: row.get("name")?,
        email: row.get("email")?,
        role: row.get::<_, Name<Role>>("role")?.0,
        capacity: row.get("capacity")?,
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
    })
}

impl SqliteStore {
    pub async fn upsert_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        let capacity = int(spec.capacity, "capacity")?;
        self.write(move |tx| {
            let agent = tx.prepare_cached(UPSERT)?.query_row(
                params![
                    spec.username,
                    spec.name,
                    spec.email,
                    spec.role.as_str(),
                    capacity,
                    spec.password_hash,
                    ms(common::now()),
                ],
                agent_row,
            )?;
            Ok(agent)
        })
        .await
    }

    pub async fn create_agent(&self, spec: AgentSpec) -> StoreResult<Agent> {
        let capacity = int(spec.capacity, "capacity")?;
        self.write(move |tx| {
            let agent = tx
                .prepare_cached(INSERT)?
                .query_row(
                    params![
                        spec.username,
                        spec.name,
                        spec.email,
                        spec.role.as_str(),
                        capacity,
                        spec.password_hash,
                        ms(common::now()),
                    ],
                    agent_row,
                )
                .map_err(StoreError::from)
                .map_err(taken(|| agent_taken(&spec.username)))?;
            Ok(agent)
        })
        .await
    }

    pub async fn update_agent(&self, id: AgentId, patch: AgentPatch) -> StoreResult<Agent> {
        let capacity = common::opt_int(patch.capacity, "capacity")?;
        self.write(move |tx| {
            tx.prepare_cached(UPDATE)?
                .query_row(
                    params![
                        id.0,
                        patch.name,
                        patch.email.is_some(),
                        patch.email.flatten(),
                        patch.role.map(Role::as_str),
                        capacity,
                        patch.password_hash,
                        ms(common::now()),
                    ],
                    agent_row,
                )
                .optional()?
                .ok_or(StoreError::NotFound("agent"))
        })
        .await
    }

    pub async fn delete_agent(&self, id: AgentId) -> StoreResult<()> {
        self.write(move |tx| {
            let now = ms(common::now());
            let deleted = tx
                .prepare_cached(
                    "UPDATE agents SET deleted_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![id.0, now])?;
            if deleted == 0 {
                return Err(StoreError::NotFound("agent"));
            }
            tx.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id.0, now])?;
            tx.prepare_cached("DELETE FROM queue_members WHERE agent_id = ?1")?
                .execute(params![id.0])?;
            Ok(())
        })
        .await
    }

    pub async fn agent(&self, id: AgentId) -> StoreResult<Agent> {
        self.read(move |conn| {
            conn.prepare_cached(BY_ID)?
                .query_row(params![id.0], agent_row)
                .optional()?
                .ok_or(StoreError::NotFound("agent"))
        })
        .await
    }

    pub async fn agent_by_username(&self, username: &str) -> StoreResult<Agent> {
        let username = username.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(BY_USERNAME)?
                .query_row(params![username], agent_row)
                .optional()?
                .ok_or(StoreError::NotFound("agent"))
        })
        .await
    }

    pub async fn list_agents(&self) -> StoreResult<Vec<Agent>> {
        self.read(|conn| {
            let agents = conn
                .prepare_cached(LIST)?
                .query_map([], agent_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(agents)
        })
        .await
    }

    pub async fn agent_credentials(&self, username: &str) -> StoreResult<(Agent, String)> {
        let username = username.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(CREDENTIALS)?
                .query_row(params![username], |row| {
                    Ok((agent_row(row)?, row.get("password_hash")?))
                })
                .optional()?
                .ok_or(StoreError::NotFound("agent"))
        })
        .await
    }

    // ---- sessions -----------------------------------------------------

    pub async fn create_session(
        &self,
        token_hash: &[u8],
        agent: AgentId,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let token_hash = token_hash.to_vec();
        let expires_at = common::millis(expires_at);
        self.write(move |tx| {
            let now = ms(common::now());
            let created = tx
                .prepare_cached(
                    "INSERT INTO sessions (token_hash, agent_id, created_at, expires_at, last_seen_at)
                     SELECT ?1, id, ?3, ?4, ?3 FROM agents WHERE id = ?2 AND deleted_at IS NULL",
                )?
                .execute(params![token_hash, agent.0, now, ms(expires_at)])?;
            if created == 0 {
                return Err(StoreError::NotFound("agent"));
            }
            Ok(())
        })
        .await
    }

    pub async fn session(&self, token_hash: &[u8], now: DateTime<Utc>) -> StoreResult<SessionInfo> {
        let token_hash = token_hash.to_vec();
        let now = common::millis(now);
        self.read(move |conn| {
            conn.prepare_cached(SESSION)?
                .query_row(params![token_hash, ms(now)], |row| {
                    Ok(SessionInfo {
                        agent: agent_row(row)?,
                        expires_at: row.get::<_, Millis>("expires_at")?.0,
                    })
                })
                .optional()?
                .ok_or(StoreError::NotFound("session"))
        })
        .await
    }

    pub async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        let token_hash = token_hash.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![token_hash, ms(common::now())])?;
            Ok(())
        })
        .await
    }

    pub async fn revoke_agent_sessions(&self, agent: AgentId) -> StoreResult<u64> {
        self.write(move |tx| {
            let revoked = tx
                .prepare_cached(
                    "UPDATE sessions SET revoked_at = ?2
                     WHERE agent_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                )?
                .execute(params![agent.0, ms(common::now())])?;
            Ok(revoked as u64)
        })
        .await
    }
}
