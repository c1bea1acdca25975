//! Queues and their members.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Millis, Name, SqliteStore, ms};
use crate::domain::{QueueId, Strategy};
use crate::store::common::{self, int, member_names, opt_int, queue_taken, taken};
use crate::store::{Queue, QueueSpec, StoreError, StoreResult};

/// The columns [`queue_row`] reads.
macro_rules! queue_cols {
    () => {
        "id, name, strategy, offer_timeout_secs, sticky_secs, retry_backoff_secs,
         max_simultaneous_offers, auto_pause_after_missed, disposition_required,
         created_at, updated_at"
    };
}

const UPSERT: &str = "INSERT INTO queues (name, strategy, offer_timeout_secs, sticky_secs,
         retry_backoff_secs, max_simultaneous_offers, auto_pause_after_missed,
         disposition_required, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
     ON CONFLICT (name) DO UPDATE SET
         strategy = excluded.strategy,
         offer_timeout_secs = excluded.offer_timeout_secs,
         sticky_secs = excluded.sticky_secs,
         retry_backoff_secs = excluded.retry_backoff_secs,
         max_simultaneous_offers = excluded.max_simultaneous_offers,
         auto_pause_after_missed = excluded.auto_pause_after_missed,
         disposition_required = excluded.disposition_required,
         updated_at = excluded.updated_at,
         deleted_at = NULL
     RETURNING id";

const INSERT: &str = "INSERT INTO queues (name, strategy, offer_timeout_secs, sticky_secs,
         retry_backoff_secs, max_simultaneous_offers, auto_pause_after_missed,
         disposition_required, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
     RETURNING id";

const UPDATE: &str = "UPDATE queues SET
         name = ?2, strategy = ?3, offer_timeout_secs = ?4, sticky_secs = ?5,
         retry_backoff_secs = ?6, max_simultaneous_offers = ?7,
         auto_pause_after_missed = ?8, disposition_required = ?9, updated_at = ?10
     WHERE id = ?1 AND deleted_at IS NULL
     RETURNING id";

const BY_ID: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE id = ?1 AND deleted_at IS NULL"
);

const BY_NAME: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE name = ?1 AND deleted_at IS NULL"
);

const LIST: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE deleted_at IS NULL ORDER BY name"
);

const MEMBERS: &str = "SELECT a.username FROM queue_members m JOIN agents a ON a.id = m.agent_id
     WHERE m.queue_id = ?1 AND a.deleted_at IS NULL
     ORDER BY a.username";

const ALL_MEMBERS: &str = "SELECT m.queue_id, a.username
     FROM queue_members m
     JOIN agents a ON a.id = m.agent_id
     JOIN queues q ON q.id = m.queue_id
     WHERE a.deleted_at IS NULL AND q.deleted_at IS NULL
     ORDER BY a.username";

/// A queue row, without its members (`agents` is empty).
fn queue_row(row: &Row<'_>) -> rusqlite::Result<Queue> {
    Ok(Queue {
        id: QueueId(row.get("id")?),
        name: row.get("name")?,
        strategy: row.get::<_, Name<Strategy>>("strategy")?.0,
        offer_timeout_secs: row.get("offer_timeout_secs")?,
        sticky_secs: row.get("sticky_secs")?,
        retry_backoff_secs: row.get("retry_backoff_secs")?,
        max_simultaneous_offers: row.get("max_simultaneous_offers")?,
        auto_pause_after_missed: row.get("auto_pause_after_missed")?,
        disposition_required: row.get("disposition_required")?,
        agents: Vec::new(),
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
    })
}

/// A spec's numbers, checked to fit the columns before any work is done.
struct Settings {
    offer_timeout_secs: i32,
    sticky_secs: i32,
    retry_backoff_secs: i32,
    max_simultaneous_offers: Option<i32>,
    auto_pause_after_missed: Option<i32>,
}

impl Settings {
    fn of(spec: &QueueSpec) -> StoreResult<Settings> {
        Ok(Settings {
            offer_timeout_secs: int(spec.offer_timeout_secs, "offer_timeout_secs")?,
            sticky_secs: int(spec.sticky_secs, "sticky_secs")?,
            retry_backoff_secs: int(spec.retry_backoff_secs, "retry_backoff_secs")?,
            max_simultaneous_offers: opt_int(
                spec.max_simultaneous_offers,
                "max_simultaneous_offers",
            )?,
            auto_pause_after_missed: opt_int(
                spec.auto_pause_after_missed,
                "auto_pause_after_missed",
            )?,
        })
    }
}

/// Read one active queue with its members.
fn load(conn: &Connection, sql: &str, key: &dyn rusqlite::ToSql) -> StoreResult<Queue> {
    let mut queue = conn
        .prepare_cached(sql)?
        .query_row([key], queue_row)
        .optional()?
        .ok_or(StoreError::NotFound("queue"))?;
    queue.agents = conn
        .prepare_cached(MEMBERS)?
        .query_map([queue.id.0], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(queue)
}

/// Replace a queue's members. Every name must be an active agent (checked in
/// sorted order, so the first unknown name reported is the same on both
/// backends); otherwise `Invalid`, and the caller's transaction rolls back.
fn set_members(conn: &Connection, queue: i64, agents: &[String]) -> StoreResult<()> {
    let mut ids = Vec::with_capacity(agents.len());
    for username in member_names(agents) {
        let id: i64 = conn
            .prepare_cached("SELECT id FROM agents WHERE username = ?1 AND deleted_at IS NULL")?
            .query_row([&username], |row| row.get(0))
            .optional()?
            .ok_or_else(|| common::unknown_member(&username))?;
        ids.push(id);
    }
    conn.prepare_cached("DELETE FROM queue_members WHERE queue_id = ?1")?
        .execute([queue])?;
    let mut insert =
        conn.prepare_cached("INSERT INTO queue_members (queue_id, agent_id) VALUES (?1, ?2)")?;
    for id in ids {
        insert.execute([queue, id])?;
    }
    Ok(())
}

impl SqliteStore {
    pub async fn upsert_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        self.write(move |tx| {
            let id: i64 = tx.prepare_cached(UPSERT)?.query_row(
                params![
                    spec.name,
                    spec.strategy.as_str(),
                    s.offer_timeout_secs,
                    s.sticky_secs,
                    s.retry_backoff_secs,
                    s.max_simultaneous_offers,
                    s.auto_pause_after_missed,
                    spec.disposition_required,
                    ms(common::now()),
                ],
                |row| row.get(0),
            )?;
            set_members(tx, id, &spec.agents)?;
            load(tx, BY_ID, &id)
        })
        .await
    }

    pub async fn create_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        self.write(move |tx| {
            let id: i64 = tx
                .prepare_cached(INSERT)?
                .query_row(
                    params![
                        spec.name,
                        spec.strategy.as_str(),
                        s.offer_timeout_secs,
                        s.sticky_secs,
                        s.retry_backoff_secs,
                        s.max_simultaneous_offers,
                        s.auto_pause_after_missed,
                        spec.disposition_required,
                        ms(common::now()),
                    ],
                    |row| row.get(0),
                )
                .map_err(StoreError::from)
                .map_err(taken(|| queue_taken(&spec.name)))?;
            set_members(tx, id, &spec.agents)?;
            load(tx, BY_ID, &id)
        })
        .await
    }

    pub async fn update_queue(&self, id: QueueId, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        self.write(move |tx| {
            let found: Option<i64> = tx
                .prepare_cached(UPDATE)?
                .query_row(
                    params![
                        id.0,
                        spec.name,
                        spec.strategy.as_str(),
                        s.offer_timeout_secs,
                        s.sticky_secs,
                        s.retry_backoff_secs,
                        s.max_simultaneous_offers,
                        s.auto_pause_after_missed,
                        spec.disposition_required,
                        ms(common::now()),
                    ],
                    |row| row.get(0),
                )
                .optional()
                .map_err(StoreError::from)
                .map_err(taken(|| queue_taken(&spec.name)))?;
            let id = found.ok_or(StoreError::NotFound("queue"))?;
            set_members(tx, id, &spec.agents)?;
            load(tx, BY_ID, &id)
        })
        .await
    }

    pub async fn delete_queue(&self, id: QueueId) -> StoreResult<()> {
        self.write(move |tx| {
            let name: String = tx
                .prepare_cached("SELECT name FROM queues WHERE id = ?1 AND deleted_at IS NULL")?
                .query_row([id.0], |row| row.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("queue"))?;
            // The write transaction (BEGIN IMMEDIATE) keeps any account from
            // being pointed at this queue between this check and the delete.
            let routed: Vec<String> = tx
                .prepare_cached(
                    "SELECT key FROM accounts WHERE queue_id = ?1 AND deleted_at IS NULL ORDER BY key",
                )?
                .query_map([id.0], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !routed.is_empty() {
                return Err(common::queue_in_use(&name, &routed));
            }
            let now = ms(common::now());
            tx.prepare_cached("UPDATE queues SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1")?
                .execute(params![id.0, now])?;
            tx.prepare_cached("DELETE FROM queue_members WHERE queue_id = ?1")?
                .execute([id.0])?;
            Ok(())
        })
        .await
    }

    pub async fn queue(&self, id: QueueId) -> StoreResult<Queue> {
        self.read(move |conn| load(conn, BY_ID, &id.0)).await
    }

    pub async fn queue_by_name(&self, name: &str) -> StoreResult<Queue> {
        let name = name.to_owned();
        self.read(move |conn| load(conn, BY_NAME, &name)).await
    }

    pub async fn list_queues(&self) -> StoreResult<Vec<Queue>> {
        self.read(|conn| {
            let mut queues = conn
                .prepare_cached(LIST)?
                .query_map([], queue_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut members: HashMap<i64, Vec<String>> = HashMap::new();
            let mut stmt = conn.prepare_cached(ALL_MEMBERS)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                members.entry(row.get(0)?).or_default().push(row.get(1)?);
            }
            for queue in &mut queues {
                queue.agents = members.remove(&queue.id.0).unwrap_or_default();
            }
            Ok(queues)
        })
        .await
    }
}
