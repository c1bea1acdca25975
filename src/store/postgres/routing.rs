//! Routing: offers and their outcomes, the accept that claims, the waiting
//! list for recovery, and what routing reads about agents and queues.
//!
//! Lock order, so that no two of these transactions can deadlock: the
//! interaction row first (the claim's `UPDATE`, or `create_offers`'
//! `FOR SHARE`), then offer rows, always in id order (`ORDER BY id FOR
//! UPDATE`), never the other way round.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::interactions::{interaction_cols, interaction_row};
use super::{PgStore, name};
use crate::domain::{
    AgentId, ContactId, InteractionId, InteractionStatus, OfferId, OfferStatus, QueueId,
    RescindReason,
};
use crate::store::common;
use crate::store::routing::decidable;
use crate::store::{
    AcceptOutcome, OfferRow, ReopenOutcome, StoreError, StoreResult, TransferOutcome,
    TransferTarget, WaitingInteraction,
};

/// The columns [`offer_row`] reads.
macro_rules! offer_cols {
    () => {
        "id, interaction_id, queue_id, agent_id, status, reason, offered_at, expires_at, decided_at"
    };
}

// FOR SHARE: an offer for an interaction that is already taken (or closed)
// would be a zombie that nobody can accept. The shared lock makes a
// concurrent claim (which takes the row's update lock) wait until these
// offers are committed, so the accept then rescinds them as well; and a
// claim that came first makes this wait, then read the owner it committed.
// It must also still be in the queue making the offer (a transfer may have
// moved it).
//
// One statement for all agents (ring_all may offer to hundreds at once). The
// partial unique index `offers_live` allows one live offer per agent and
// interaction; an agent who already holds one (or is listed twice) is
// skipped.
//
// And one statement for the check and the inserts: one round trip and an
// implicit transaction, where BEGIN, the check, the insert and COMMIT were
// four. The insert's `WHERE` reads `target`, so the row is locked FOR SHARE
// before any offer is written, and the lock is held to the commit. The last
// `SELECT` always yields a row: `found` 0 is an unknown interaction; offer
// columns all NULL is no offer made.
const CREATE_OFFERS: &str = concat!(
    "WITH target AS (
       SELECT owner_id IS NULL AND status = 'open' AND queue_id = $2 AS offerable
       FROM interactions WHERE id = $1 FOR SHARE
     ), made AS (
       INSERT INTO offers (interaction_id, queue_id, agent_id, status, offered_at, expires_at)
       SELECT $1::bigint, $2::bigint, agent, 'offered', $4::timestamptz, $5::timestamptz
       FROM unnest($3::bigint[]) WITH ORDINALITY AS wanted (agent, n)
       WHERE (SELECT offerable FROM target)
       ORDER BY n
       ON CONFLICT (interaction_id, agent_id) WHERE status = 'offered' DO NOTHING
       RETURNING ",
    offer_cols!(),
    "
     )
     SELECT (SELECT count(*) FROM target) AS found, made.*
     FROM (SELECT 1) AS one LEFT JOIN made ON true"
);

const DECIDE: &str = concat!(
    "UPDATE offers SET status = $2, reason = $3, decided_at = $4
     WHERE id = $1 AND status = 'offered'
     RETURNING ",
    offer_cols!()
);

// The claim of invariant 2, without the version: an accept is for whatever
// state the interaction is in now, as long as nobody owns it and it is open.
// It finds the interaction from the offer in the same statement (one round
// trip, where a read of the offer came first). The subquery is a plain read:
// an offer never changes interaction, and whether it is still live is
// checked again under its lock (`LOCK_LIVE`).
const CLAIM_BY_OFFER: &str = concat!(
    "UPDATE interactions SET
         owner_id = $2,
         first_agent_id = COALESCE(first_agent_id, $2),
         version = version + 1,
         updated_at = $3
     WHERE id = (SELECT interaction_id FROM offers
                 WHERE id = $1 AND agent_id = $2 AND status = 'offered')
       AND owner_id IS NULL AND status = 'open'
     RETURNING ",
    interaction_cols!()
);

// The interaction's live offers, locked in id order (see the lock order above).
const LOCK_LIVE: &str = "SELECT id, agent_id FROM offers
     WHERE interaction_id = $1 AND status = 'offered'
     ORDER BY id
     FOR UPDATE";

const ACCEPTED: &str = "UPDATE offers SET status = 'accepted', decided_at = $2
     WHERE id = $1 AND status = 'offered'";

const RESCIND_TAKEN: &str = concat!(
    "UPDATE offers SET status = 'rescinded', reason = 'taken', decided_at = $3
     WHERE interaction_id = $1 AND status = 'offered' AND id <> $2
     RETURNING ",
    offer_cols!()
);

// Locked in id order first, like every other multi-offer write.
const CANCEL_LIVE: &str =
    "UPDATE offers SET status = 'rescinded', reason = 'cancelled', decided_at = $1
     WHERE status = 'offered'
       AND id IN (SELECT id FROM offers WHERE status = 'offered' ORDER BY id FOR UPDATE)";

const WAITING: &str =
    "SELECT id, version, priority, COALESCE(enqueued_at, created_at) AS enqueued_at,
         contact_id
     FROM interactions
     WHERE queue_id = $1 AND status = 'open' AND owner_id IS NULL
     ORDER BY priority DESC, COALESCE(enqueued_at, created_at), id";

const OWNED_OPEN: &str = "SELECT owner_id, count(*) FROM interactions
     WHERE status = 'open' AND owner_id IS NOT NULL
     GROUP BY owner_id";

const LAST_AGENT: &str = "SELECT COALESCE(owner_id, first_agent_id) FROM interactions
     WHERE contact_id = $1 AND id <> $2 AND COALESCE(owner_id, first_agent_id) IS NOT NULL
     ORDER BY updated_at DESC, id DESC
     LIMIT 1";

// The interaction row first (lock order above).
const CURRENT: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = $1 FOR UPDATE"
);

const QUEUE_EXISTS: &str = "SELECT 1 FROM queues WHERE id = $1 AND deleted_at IS NULL";

// The agent row is locked so that two transfers to one agent count their
// open interactions one after the other (each statement of READ COMMITTED
// sees what the other committed once it holds the lock).
const CAPACITY: &str =
    "SELECT capacity FROM agents WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";

const OWNED_BY: &str = "SELECT count(*) FROM interactions WHERE owner_id = $1 AND status = 'open'";

const TO_QUEUE: &str = concat!(
    "UPDATE interactions SET owner_id = NULL, queue_id = $2, unread = true, enqueued_at = $3,
         updated_at = $3, version = version + 1
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const TO_AGENT: &str = concat!(
    "UPDATE interactions SET owner_id = $2, first_agent_id = COALESCE(first_agent_id, $2),
         unread = true, updated_at = $3, version = version + 1
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const REOPEN: &str = concat!(
    "UPDATE interactions SET status = 'open', closed_at = NULL, disposition = NULL,
         reopened = true, unread = true, owner_id = $2,
         first_agent_id = COALESCE(first_agent_id, $2),
         enqueued_at = $3, updated_at = $3, version = version + 1
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const RESCIND_ALL: &str = concat!(
    "UPDATE offers SET status = 'rescinded', reason = $3, decided_at = $2
     WHERE interaction_id = $1 AND status = 'offered'
       AND id IN (SELECT id FROM offers WHERE interaction_id = $1 AND status = 'offered'
                  ORDER BY id FOR UPDATE)
     RETURNING ",
    offer_cols!()
);

const SET_RR: &str = "UPDATE queues SET rr_last_agent_id = $2 WHERE id = $1 AND deleted_at IS NULL";

const GET_RR: &str = "SELECT rr_last_agent_id FROM queues WHERE id = $1 AND deleted_at IS NULL";

fn offer_row(row: &Row) -> StoreResult<OfferRow> {
    Ok(OfferRow {
        id: OfferId(row.try_get("id")?),
        interaction: InteractionId(row.try_get("interaction_id")?),
        queue: QueueId(row.try_get("queue_id")?),
        agent: AgentId(row.try_get("agent_id")?),
        status: name(row, "status")?,
        reason: row
            .try_get::<_, Option<super::Name<RescindReason>>>("reason")?
            .map(|r| r.0),
        offered_at: row.try_get("offered_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// Offers in the order they were made.
fn by_id<'a>(rows: impl IntoIterator<Item = &'a Row>) -> StoreResult<Vec<OfferRow>> {
    let mut offers = rows
        .into_iter()
        .map(offer_row)
        .collect::<StoreResult<Vec<_>>>()?;
    offers.sort_by_key(|r| r.id);
    Ok(offers)
}

/// The accept inside its transaction (see [`PgStore::accept_offer`]).
/// `None` is `Gone`: the caller rolls back, so nothing it did here stays.
async fn accept(
    tx: &Transaction<'_>,
    offer: OfferId,
    agent: AgentId,
) -> StoreResult<Option<AcceptOutcome>> {
    let now = common::now();
    let stmt = tx.prepare_cached(CLAIM_BY_OFFER).await?;
    let Some(claimed) = tx.query_opt(&stmt, &[&offer.0, &agent.0, &now]).await? else {
        // Not a live offer of this agent's, or the interaction is taken or
        // closed: the offer stays as it is; the caller rescinds it.
        return Ok(None);
    };
    let interaction = interaction_row(&claimed)?;
    let stmt = tx.prepare_cached(LOCK_LIVE).await?;
    let live = tx.query(&stmt, &[&interaction.id.0]).await?;
    let still_ours = live.iter().any(|r| {
        r.try_get::<_, i64>("id").ok() == Some(offer.0)
            && r.try_get::<_, i64>("agent_id").ok() == Some(agent.0)
    });
    if !still_ours {
        // Decided (expired, cancelled) between the first read and the lock:
        // the claim is rolled back with the rest.
        return Ok(None);
    }
    // Both offers' rows are locked already: the two updates go out together
    // (tokio-postgres pipelines futures polled together, in this order).
    let accepted = tx.prepare_cached(ACCEPTED).await?;
    let rescind = tx.prepare_cached(RESCIND_TAKEN).await?;
    let accepted_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&offer.0, &now];
    let rescind_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&interaction.id.0, &offer.0, &now];
    let (_, rescinded) = tokio::try_join!(
        biased;
        tx.execute(&accepted, &accepted_params),
        tx.query(&rescind, &rescind_params),
    )?;
    Ok(Some(AcceptOutcome::Won {
        interaction,
        rescinded: by_id(&rescinded)?,
    }))
}

/// The transfer inside its transaction (see [`Store::transfer`]). Anything
/// but `Moved` is rolled back by the caller.
async fn transfer(
    tx: &Transaction<'_>,
    id: InteractionId,
    expected_version: i64,
    target: TransferTarget,
) -> StoreResult<TransferOutcome> {
    let now = common::now();
    let stmt = tx.prepare_cached(CURRENT).await?;
    let current = tx
        .query_opt(&stmt, &[&id.0])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    let current = interaction_row(&current)?;
    if current.version != expected_version || current.status != InteractionStatus::Open {
        return Ok(TransferOutcome::Changed(current));
    }
    // Given straight to an agent, it was taken; back in a queue, the old
    // offers are cancelled (it will be offered anew).
    let reason = match target {
        TransferTarget::Queue(_) => RescindReason::Cancelled,
        TransferTarget::Agent(_) => RescindReason::Taken,
    };
    let moved = match target {
        TransferTarget::Queue(queue) => {
            let stmt = tx.prepare_cached(QUEUE_EXISTS).await?;
            tx.query_opt(&stmt, &[&queue.0])
                .await?
                .ok_or(StoreError::NotFound("queue"))?;
            let stmt = tx.prepare_cached(TO_QUEUE).await?;
            tx.query_one(&stmt, &[&id.0, &queue.0, &now]).await?
        }
        TransferTarget::Agent(agent) => {
            if current.owner == Some(agent) {
                return Err(StoreError::Invalid(
                    "the interaction is already theirs".into(),
                ));
            }
            if !has_room(tx, agent).await? {
                return Ok(TransferOutcome::OverCapacity);
            }
            let stmt = tx.prepare_cached(TO_AGENT).await?;
            tx.query_one(&stmt, &[&id.0, &agent.0, &now]).await?
        }
    };
    Ok(TransferOutcome::Moved {
        interaction: interaction_row(&moved)?,
        previous_owner: current.owner,
        previous_queue: current.queue,
        rescinded: rescind_live(tx, id, reason).await?,
    })
}

/// Whether an agent owns fewer open interactions than their capacity,
/// counted under a lock of their agent row (see `CAPACITY`).
async fn has_room(tx: &Transaction<'_>, agent: AgentId) -> StoreResult<bool> {
    let stmt = tx.prepare_cached(CAPACITY).await?;
    let capacity: i32 = tx
        .query_opt(&stmt, &[&agent.0])
        .await?
        .ok_or(StoreError::NotFound("agent"))?
        .try_get(0)?;
    let stmt = tx.prepare_cached(OWNED_BY).await?;
    let owned: i64 = tx.query_one(&stmt, &[&agent.0]).await?.try_get(0)?;
    Ok(owned < i64::from(capacity))
}

/// The reopen inside its transaction (see [`Store::reopen`]); anything but
/// `Reopened` is rolled back by the caller.
async fn reopen(
    tx: &Transaction<'_>,
    id: InteractionId,
    expected_version: i64,
    to: Option<AgentId>,
) -> StoreResult<ReopenOutcome> {
    let stmt = tx.prepare_cached(CURRENT).await?;
    let current = tx
        .query_opt(&stmt, &[&id.0])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    let current = interaction_row(&current)?;
    if current.version != expected_version || current.status == InteractionStatus::Open {
        return Ok(ReopenOutcome::Changed(current));
    }
    if let Some(agent) = to
        && !has_room(tx, agent).await?
    {
        return Ok(ReopenOutcome::OverCapacity);
    }
    let stmt = tx.prepare_cached(REOPEN).await?;
    let row = tx
        .query_one(&stmt, &[&id.0, &to.map(|a| a.0), &common::now()])
        .await?;
    Ok(ReopenOutcome::Reopened(interaction_row(&row)?))
}

/// Rescind (with `reason`) every live offer of an interaction that leaves its
/// queue (transfer, close), inside the caller's transaction, after the
/// interaction row was locked (lock order above).
pub(super) async fn rescind_live(
    tx: &Transaction<'_>,
    id: InteractionId,
    reason: RescindReason,
) -> StoreResult<Vec<OfferRow>> {
    let stmt = tx.prepare_cached(RESCIND_ALL).await?;
    let rows = tx
        .query(&stmt, &[&id.0, &common::now(), &reason.as_str()])
        .await?;
    by_id(&rows)
}

impl PgStore {
    pub async fn transfer(
        &self,
        id: InteractionId,
        expected_version: i64,
        target: TransferTarget,
    ) -> StoreResult<TransferOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = transfer(&tx, id, expected_version, target).await?;
        if matches!(outcome, TransferOutcome::Moved { .. }) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    pub async fn reopen(
        &self,
        id: InteractionId,
        expected_version: i64,
        to: Option<AgentId>,
    ) -> StoreResult<ReopenOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = reopen(&tx, id, expected_version, to).await?;
        if matches!(outcome, ReopenOutcome::Reopened(_)) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    pub async fn create_offers(
        &self,
        interaction: InteractionId,
        queue: QueueId,
        agents: &[AgentId],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Vec<OfferRow>> {
        let wanted: Vec<i64> = agents.iter().map(|a| a.0).collect();
        let expires_at = common::millis(expires_at);
        let client = self.client().await?;
        let stmt = client.prepare_cached(CREATE_OFFERS).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &interaction.0,
                    &queue.0,
                    &wanted,
                    &common::now(),
                    &expires_at,
                ],
            )
            .await?;
        if rows
            .first()
            .map(|r| r.try_get::<_, i64>("found"))
            .transpose()?
            .unwrap_or(0)
            == 0
        {
            return Err(StoreError::NotFound("interaction"));
        }
        let mut made = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<_, Option<i64>>("id")?.is_some() {
                made.push(row);
            }
        }
        by_id(made)
    }

    pub async fn decide_offer(
        &self,
        offer: OfferId,
        status: OfferStatus,
        reason: Option<RescindReason>,
    ) -> StoreResult<Option<OfferRow>> {
        decidable(status)?;
        let client = self.client().await?;
        let stmt = client.prepare_cached(DECIDE).await?;
        client
            .query_opt(
                &stmt,
                &[
                    &offer.0,
                    &status.as_str(),
                    &reason.map(RescindReason::as_str),
                    &common::now(),
                ],
            )
            .await?
            .as_ref()
            .map(offer_row)
            .transpose()
    }

    /// Exactly one winner (invariant 2), across agents, tasks and nodes: the
    /// claim is the conditional `UPDATE … WHERE owner_id IS NULL AND status =
    /// 'open'`. Under READ COMMITTED, concurrent claims of one interaction
    /// queue on its row lock; when the winner commits, each waiter re-checks
    /// the `WHERE` against the committed row, finds an owner and changes
    /// nothing. The winner's offer is then re-checked under its lock, so an
    /// offer that expired meanwhile cannot be accepted: the claim rolls back.
    pub async fn accept_offer(&self, offer: OfferId, agent: AgentId) -> StoreResult<AcceptOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        match accept(&tx, offer, agent).await? {
            Some(won) => {
                tx.commit().await?;
                Ok(won)
            }
            None => {
                tx.rollback().await?;
                Ok(AcceptOutcome::Gone)
            }
        }
    }

    pub async fn waiting_interactions(
        &self,
        queue: QueueId,
    ) -> StoreResult<Vec<WaitingInteraction>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(WAITING).await?;
        client
            .query(&stmt, &[&queue.0])
            .await?
            .iter()
            .map(|row| {
                Ok(WaitingInteraction {
                    id: InteractionId(row.try_get("id")?),
                    version: row.try_get("version")?,
                    priority: row.try_get("priority")?,
                    enqueued_at: row.try_get("enqueued_at")?,
                    contact: row.try_get::<_, Option<i64>>("contact_id")?.map(ContactId),
                })
            })
            .collect()
    }

    pub async fn cancel_live_offers(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CANCEL_LIVE).await?;
        Ok(client.execute(&stmt, &[&common::now()]).await?)
    }

    pub async fn owned_open_counts(&self) -> StoreResult<HashMap<AgentId, u32>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(OWNED_OPEN).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(|row| {
                let agent = AgentId(row.try_get(0)?);
                Ok((agent, common::stored(row.try_get::<_, i64>(1)?, "count")?))
            })
            .collect()
    }

    pub async fn last_agent_of_contact(
        &self,
        contact: ContactId,
        except: InteractionId,
    ) -> StoreResult<Option<AgentId>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LAST_AGENT).await?;
        let row = client.query_opt(&stmt, &[&contact.0, &except.0]).await?;
        Ok(row
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(AgentId))
    }

    pub async fn set_round_robin_last(&self, queue: QueueId, agent: AgentId) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(SET_RR).await?;
        match client.execute(&stmt, &[&queue.0, &agent.0]).await? {
            0 => Err(StoreError::NotFound("queue")),
            _ => Ok(()),
        }
    }

    pub async fn round_robin_last(&self, queue: QueueId) -> StoreResult<Option<AgentId>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(GET_RR).await?;
        let row = client
            .query_opt(&stmt, &[&queue.0])
            .await?
            .ok_or(StoreError::NotFound("queue"))?;
        Ok(row.try_get::<_, Option<i64>>(0)?.map(AgentId))
    }
}
