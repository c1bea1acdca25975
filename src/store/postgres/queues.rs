//! Queues and their members.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Object, Transaction};
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::{PgStore, name, opt_unsigned, unsigned};
use crate::domain::QueueId;
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
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
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
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
     RETURNING id";

const UPDATE: &str = "UPDATE queues SET
         name = $2, strategy = $3, offer_timeout_secs = $4, sticky_secs = $5,
         retry_backoff_secs = $6, max_simultaneous_offers = $7,
         auto_pause_after_missed = $8, disposition_required = $9, updated_at = $10
     WHERE id = $1 AND deleted_at IS NULL
     RETURNING id";

const BY_ID: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE id = $1 AND deleted_at IS NULL"
);

const BY_NAME: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE name = $1 AND deleted_at IS NULL"
);

const LIST: &str = concat!(
    "SELECT ",
    queue_cols!(),
    " FROM queues WHERE deleted_at IS NULL ORDER BY name"
);

const MEMBERS: &str = "SELECT a.username FROM queue_members m JOIN agents a ON a.id = m.agent_id
     WHERE m.queue_id = $1 AND a.deleted_at IS NULL
     ORDER BY a.username";

const ALL_MEMBERS: &str = "SELECT m.queue_id, a.username
     FROM queue_members m
     JOIN agents a ON a.id = m.agent_id
     JOIN queues q ON q.id = m.queue_id
     WHERE a.deleted_at IS NULL AND q.deleted_at IS NULL
     ORDER BY a.username";

/// A queue row, without its members (`agents` is empty).
fn queue_row(row: &Row) -> StoreResult<Queue> {
    Ok(Queue {
        id: QueueId(row.try_get("id")?),
        name: row.try_get("name")?,
        strategy: name(row, "strategy")?,
        offer_timeout_secs: unsigned(row, "offer_timeout_secs")?,
        sticky_secs: unsigned(row, "sticky_secs")?,
        retry_backoff_secs: unsigned(row, "retry_backoff_secs")?,
        max_simultaneous_offers: opt_unsigned(row, "max_simultaneous_offers")?,
        auto_pause_after_missed: opt_unsigned(row, "auto_pause_after_missed")?,
        disposition_required: row.try_get("disposition_required")?,
        agents: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
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
async fn load<C: GenericClient>(
    client: &C,
    sql: &str,
    key: &(dyn ToSql + Sync),
) -> StoreResult<Queue> {
    let stmt = client.prepare_cached(sql).await?;
    let row = client
        .query_opt(&stmt, &[key])
        .await?
        .ok_or(StoreError::NotFound("queue"))?;
    let mut queue = queue_row(&row)?;
    let stmt = client.prepare_cached(MEMBERS).await?;
    queue.agents = client
        .query(&stmt, &[&queue.id.0])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(queue)
}

/// Replace a queue's members. Every name must be an active agent (checked in
/// sorted order, so the first unknown name reported is the same on both
/// backends); otherwise `Invalid`, and the caller's transaction rolls back.
async fn set_members(tx: &Transaction<'_>, queue: i64, agents: &[String]) -> StoreResult<()> {
    // FOR SHARE holds each member's row until commit: a concurrent
    // delete_agent (which updates that row, then removes the agent from every
    // queue) waits for us, so it cannot miss the membership we are adding.
    let find = tx
        .prepare_cached(
            "SELECT id FROM agents WHERE username = $1 AND deleted_at IS NULL FOR SHARE",
        )
        .await?;
    let mut ids = Vec::with_capacity(agents.len());
    for username in member_names(agents) {
        let row = tx
            .query_opt(&find, &[&username])
            .await?
            .ok_or_else(|| common::unknown_member(&username))?;
        ids.push(row.try_get::<_, i64>(0)?);
    }
    let clear = tx
        .prepare_cached("DELETE FROM queue_members WHERE queue_id = $1")
        .await?;
    tx.execute(&clear, &[&queue]).await?;
    let insert = tx
        .prepare_cached("INSERT INTO queue_members (queue_id, agent_id) VALUES ($1, $2)")
        .await?;
    for id in ids {
        tx.execute(&insert, &[&queue, &id]).await?;
    }
    Ok(())
}

/// A read-only transaction with one snapshot for all its statements, so that
/// a queue and its members are read as of the same moment.
async fn snapshot(client: &mut Object) -> StoreResult<Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

impl PgStore {
    pub async fn upsert_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(UPSERT).await?;
        let id: i64 = tx
            .query_one(
                &stmt,
                &[
                    &spec.name,
                    &spec.strategy.as_str(),
                    &s.offer_timeout_secs,
                    &s.sticky_secs,
                    &s.retry_backoff_secs,
                    &s.max_simultaneous_offers,
                    &s.auto_pause_after_missed,
                    &spec.disposition_required,
                    &common::now(),
                ],
            )
            .await?
            .try_get(0)?;
        set_members(&tx, id, &spec.agents).await?;
        let queue = load(&tx, BY_ID, &id).await?;
        tx.commit().await?;
        Ok(queue)
    }

    pub async fn create_queue(&self, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(INSERT).await?;
        let id: i64 = tx
            .query_one(
                &stmt,
                &[
                    &spec.name,
                    &spec.strategy.as_str(),
                    &s.offer_timeout_secs,
                    &s.sticky_secs,
                    &s.retry_backoff_secs,
                    &s.max_simultaneous_offers,
                    &s.auto_pause_after_missed,
                    &spec.disposition_required,
                    &common::now(),
                ],
            )
            .await
            .map_err(StoreError::from)
            .map_err(taken(|| queue_taken(&spec.name)))?
            .try_get(0)?;
        set_members(&tx, id, &spec.agents).await?;
        let queue = load(&tx, BY_ID, &id).await?;
        tx.commit().await?;
        Ok(queue)
    }

    pub async fn update_queue(&self, id: QueueId, spec: QueueSpec) -> StoreResult<Queue> {
        let s = Settings::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(UPDATE).await?;
        let id: i64 = tx
            .query_opt(
                &stmt,
                &[
                    &id.0,
                    &spec.name,
                    &spec.strategy.as_str(),
                    &s.offer_timeout_secs,
                    &s.sticky_secs,
                    &s.retry_backoff_secs,
                    &s.max_simultaneous_offers,
                    &s.auto_pause_after_missed,
                    &spec.disposition_required,
                    &common::now(),
                ],
            )
            .await
            .map_err(StoreError::from)
            .map_err(taken(|| queue_taken(&spec.name)))?
            .ok_or(StoreError::NotFound("queue"))?
            .try_get(0)?;
        set_members(&tx, id, &spec.agents).await?;
        let queue = load(&tx, BY_ID, &id).await?;
        tx.commit().await?;
        Ok(queue)
    }

    pub async fn delete_queue(&self, id: QueueId) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // FOR UPDATE, against an account being pointed at this queue while we
        // check: writers of accounts take FOR SHARE on the queue they route
        // to, so they either commit before this lock (and the check below
        // sees them) or wait and then find the queue deleted.
        let stmt = tx
            .prepare_cached(
                "SELECT name FROM queues WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            )
            .await?;
        let name: String = tx
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("queue"))?
            .try_get(0)?;
        let stmt = tx
            .prepare_cached(
                "SELECT key FROM accounts WHERE queue_id = $1 AND deleted_at IS NULL ORDER BY key",
            )
            .await?;
        let routed = tx
            .query(&stmt, &[&id.0])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<Vec<String>, _>>()?;
        if !routed.is_empty() {
            return Err(common::queue_in_use(&name, &routed));
        }
        let stmt = tx
            .prepare_cached("UPDATE queues SET deleted_at = $2, updated_at = $2 WHERE id = $1")
            .await?;
        tx.execute(&stmt, &[&id.0, &common::now()]).await?;
        let stmt = tx
            .prepare_cached("DELETE FROM queue_members WHERE queue_id = $1")
            .await?;
        tx.execute(&stmt, &[&id.0]).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn queue(&self, id: QueueId) -> StoreResult<Queue> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let queue = load(&tx, BY_ID, &id.0).await?;
        tx.commit().await?;
        Ok(queue)
    }

    pub async fn queue_by_name(&self, name: &str) -> StoreResult<Queue> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let queue = load(&tx, BY_NAME, &name).await?;
        tx.commit().await?;
        Ok(queue)
    }

    pub async fn list_queues(&self) -> StoreResult<Vec<Queue>> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await?;
        let stmt = tx.prepare_cached(LIST).await?;
        let mut queues = tx
            .query(&stmt, &[])
            .await?
            .iter()
            .map(queue_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let stmt = tx.prepare_cached(ALL_MEMBERS).await?;
        let mut members: HashMap<i64, Vec<String>> = HashMap::new();
        for row in tx.query(&stmt, &[]).await? {
            members
                .entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        tx.commit().await?;
        for queue in &mut queues {
            queue.agents = members.remove(&queue.id.0).unwrap_or_default();
        }
        Ok(queues)
    }
}
