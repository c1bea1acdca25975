//! Routing: offers and their outcomes, the accept that claims, the waiting
//! list for recovery, and what routing reads about agents and queues.
//!
//! Every write here is one `BEGIN IMMEDIATE` transaction on the single writer
//! connection, so each of them sees and changes the database alone: the
//! conditions in the `WHERE` clauses are what decide, and nothing decided in
//! Rust can be overtaken by another writer in between.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::interactions::{interaction_cols, interaction_row};
use super::{Millis, Name, SqliteStore, ms};
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

/// Whether new offers may be made: the interaction is open and unowned.
/// ... and still in the queue making the offer (a transfer may have moved it).
const OFFERABLE: &str =
    "SELECT owner_id IS NULL AND status = 'open' AND queue_id = ?2 FROM interactions WHERE id = ?1";

// The partial unique index `offers_live` allows one live offer per agent and
// interaction; an agent who already holds one is skipped (no row returned).
const INSERT_OFFER: &str = concat!(
    "INSERT INTO offers (interaction_id, queue_id, agent_id, status, offered_at, expires_at)
     VALUES (?1, ?2, ?3, 'offered', ?4, ?5)
     ON CONFLICT (interaction_id, agent_id) WHERE status = 'offered' DO NOTHING
     RETURNING ",
    offer_cols!()
);

const DECIDE: &str = concat!(
    "UPDATE offers SET status = ?2, reason = ?3, decided_at = ?4
     WHERE id = ?1 AND status = 'offered'
     RETURNING ",
    offer_cols!()
);

const OFFER_BY_ID: &str = concat!("SELECT ", offer_cols!(), " FROM offers WHERE id = ?1");

// The claim of invariant 2, without the version: an accept is for whatever
// state the interaction is in now, as long as nobody owns it and it is open.
const CLAIM: &str = concat!(
    "UPDATE interactions SET
         owner_id = ?2,
         first_agent_id = COALESCE(first_agent_id, ?2),
         version = version + 1,
         updated_at = ?3
     WHERE id = ?1 AND owner_id IS NULL AND status = 'open'
     RETURNING ",
    interaction_cols!()
);

const ACCEPTED: &str = "UPDATE offers SET status = 'accepted', decided_at = ?2
     WHERE id = ?1 AND status = 'offered'";

const RESCIND_TAKEN: &str = concat!(
    "UPDATE offers SET status = 'rescinded', reason = 'taken', decided_at = ?3
     WHERE interaction_id = ?1 AND status = 'offered' AND id <> ?2
     RETURNING ",
    offer_cols!()
);

const CANCEL_LIVE: &str =
    "UPDATE offers SET status = 'rescinded', reason = 'cancelled', decided_at = ?1
     WHERE status = 'offered'";

const WAITING: &str =
    "SELECT id, version, priority, COALESCE(enqueued_at, created_at) AS enqueued_at,
         contact_id
     FROM interactions
     WHERE queue_id = ?1 AND status = 'open' AND owner_id IS NULL
     ORDER BY priority DESC, COALESCE(enqueued_at, created_at), id";

const OWNED_OPEN: &str = "SELECT owner_id, count(*) FROM interactions
     WHERE status = 'open' AND owner_id IS NOT NULL
     GROUP BY owner_id";

const LAST_AGENT: &str = "SELECT COALESCE(owner_id, first_agent_id) FROM interactions
     WHERE contact_id = ?1 AND id <> ?2 AND COALESCE(owner_id, first_agent_id) IS NOT NULL
     ORDER BY updated_at DESC, id DESC
     LIMIT 1";

const CURRENT: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = ?1"
);

const QUEUE_EXISTS: &str = "SELECT 1 FROM queues WHERE id = ?1 AND deleted_at IS NULL";

const CAPACITY: &str = "SELECT capacity FROM agents WHERE id = ?1 AND deleted_at IS NULL";

const OWNED_BY: &str = "SELECT count(*) FROM interactions WHERE owner_id = ?1 AND status = 'open'";

const TO_QUEUE: &str = concat!(
    "UPDATE interactions SET owner_id = NULL, queue_id = ?2, unread = 1, enqueued_at = ?3,
         updated_at = ?3, version = version + 1
     WHERE id = ?1
     RETURNING ",
    interaction_cols!()
);

const TO_AGENT: &str = concat!(
    "UPDATE interactions SET owner_id = ?2, first_agent_id = COALESCE(first_agent_id, ?2),
         unread = 1, updated_at = ?3, version = version + 1
     WHERE id = ?1
     RETURNING ",
    interaction_cols!()
);

const REOPEN: &str = concat!(
    "UPDATE interactions SET status = 'open', closed_at = NULL, disposition = NULL,
         reopened = 1, unread = 1, owner_id = ?2, first_agent_id = COALESCE(first_agent_id, ?2),
         enqueued_at = ?3, updated_at = ?3, version = version + 1
     WHERE id = ?1
     RETURNING ",
    interaction_cols!()
);

const RESCIND_ALL: &str = concat!(
    "UPDATE offers SET status = 'rescinded', reason = ?3, decided_at = ?2
     WHERE interaction_id = ?1 AND status = 'offered'
     RETURNING ",
    offer_cols!()
);

const SET_RR: &str = "UPDATE queues SET rr_last_agent_id = ?2 WHERE id = ?1 AND deleted_at IS NULL";

const GET_RR: &str = "SELECT rr_last_agent_id FROM queues WHERE id = ?1 AND deleted_at IS NULL";

fn offer_row(row: &Row<'_>) -> rusqlite::Result<OfferRow> {
    Ok(OfferRow {
        id: OfferId(row.get("id")?),
        interaction: InteractionId(row.get("interaction_id")?),
        queue: QueueId(row.get("queue_id")?),
        agent: AgentId(row.get("agent_id")?),
        status: row.get::<_, Name<OfferStatus>>("status")?.0,
        reason: row
            .get::<_, Option<Name<RescindReason>>>("reason")?
            .map(|r| r.0),
        offered_at: row.get::<_, Millis>("offered_at")?.0,
        expires_at: row.get::<_, Millis>("expires_at")?.0,
        decided_at: row.get::<_, Option<Millis>>("decided_at")?.map(|t| t.0),
    })
}

/// The accept, inside the writer's transaction (see [`SqliteStore::accept_offer`]).
fn accept(tx: &Transaction<'_>, offer: OfferId, agent: AgentId) -> StoreResult<AcceptOutcome> {
    let now = common::now();
    let Some(row) = tx
        .prepare_cached(OFFER_BY_ID)?
        .query_row([offer.0], offer_row)
        .optional()?
    else {
        return Ok(AcceptOutcome::Gone);
    };
    if row.status != OfferStatus::Offered || row.agent != agent {
        return Ok(AcceptOutcome::Gone);
    }
    let Some(interaction) = tx
        .prepare_cached(CLAIM)?
        .query_row(
            params![row.interaction.0, agent.0, ms(now)],
            interaction_row,
        )
        .optional()?
    else {
        // Taken or closed: the offer stays live; the caller rescinds it.
        return Ok(AcceptOutcome::Gone);
    };
    tx.prepare_cached(ACCEPTED)?
        .execute(params![offer.0, ms(now)])?;
    let rescinded = tx
        .prepare_cached(RESCIND_TAKEN)?
        .query_map(params![row.interaction.0, offer.0, ms(now)], offer_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(AcceptOutcome::Won {
        interaction,
        rescinded: by_id(rescinded),
    })
}

/// The transfer, inside the writer's transaction (see [`Store::transfer`]).
fn transfer(
    tx: &Transaction<'_>,
    id: InteractionId,
    expected_version: i64,
    target: TransferTarget,
) -> StoreResult<TransferOutcome> {
    let now = ms(common::now());
    let current = tx
        .prepare_cached(CURRENT)?
        .query_row([id.0], interaction_row)
        .optional()?
        .ok_or(StoreError::NotFound("interaction"))?;
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
            tx.prepare_cached(QUEUE_EXISTS)?
                .query_row([queue.0], |_| Ok(()))
                .optional()?
                .ok_or(StoreError::NotFound("queue"))?;
            tx.prepare_cached(TO_QUEUE)?
                .query_row(params![id.0, queue.0, now], interaction_row)?
        }
        TransferTarget::Agent(agent) => {
            if current.owner == Some(agent) {
                return Err(StoreError::Invalid(
                    "the interaction is already theirs".into(),
                ));
            }
            if !has_room(tx, agent)? {
                return Ok(TransferOutcome::OverCapacity);
            }
            tx.prepare_cached(TO_AGENT)?
                .query_row(params![id.0, agent.0, now], interaction_row)?
        }
    };
    Ok(TransferOutcome::Moved {
        interaction: moved,
        previous_owner: current.owner,
        previous_queue: current.queue,
        rescinded: rescind_live(tx, id, reason)?,
    })
}

/// The reopen, inside the writer's transaction (see [`Store::reopen`]).
fn reopen(
    tx: &Transaction<'_>,
    id: InteractionId,
    expected_version: i64,
    to: Option<AgentId>,
) -> StoreResult<ReopenOutcome> {
    let current = tx
        .prepare_cached(CURRENT)?
        .query_row([id.0], interaction_row)
        .optional()?
        .ok_or(StoreError::NotFound("interaction"))?;
    if current.version != expected_version || current.status == InteractionStatus::Open {
        return Ok(ReopenOutcome::Changed(current));
    }
    if let Some(agent) = to
        && !has_room(tx, agent)?
    {
        return Ok(ReopenOutcome::OverCapacity);
    }
    Ok(ReopenOutcome::Reopened(
        tx.prepare_cached(REOPEN)?.query_row(
            params![id.0, to.map(|a| a.0), ms(common::now())],
            interaction_row,
        )?,
    ))
}

/// Whether an agent owns fewer open interactions than their capacity.
fn has_room(tx: &Transaction<'_>, agent: AgentId) -> StoreResult<bool> {
    let capacity: i64 = tx
        .prepare_cached(CAPACITY)?
        .query_row([agent.0], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound("agent"))?;
    let owned: i64 = tx
        .prepare_cached(OWNED_BY)?
        .query_row([agent.0], |r| r.get(0))?;
    Ok(owned < capacity)
}

/// Rescind every live offer of an interaction that leaves its queue
/// (transfer, close), inside the caller's transaction.
pub(super) fn rescind_live(
    tx: &Transaction<'_>,
    id: InteractionId,
    reason: RescindReason,
) -> StoreResult<Vec<OfferRow>> {
    let rows = tx
        .prepare_cached(RESCIND_ALL)?
        .query_map(params![id.0, ms(common::now()), reason.as_str()], offer_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(by_id(rows))
}

/// Offers in the order they were made.
fn by_id(mut rows: Vec<OfferRow>) -> Vec<OfferRow> {
    rows.sort_by_key(|r| r.id);
    rows
}

impl SqliteStore {
    pub async fn create_offers(
        &self,
        interaction: InteractionId,
        queue: QueueId,
        agents: &[AgentId],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<Vec<OfferRow>> {
        let agents = agents.to_vec();
        let expires_at = common::millis(expires_at);
        self.write(move |tx| {
            // An offer for an interaction that is already taken (or closed)
            // would be a zombie: nobody could accept it. Checked in the same
            // write transaction as the inserts, so an accept cannot slip in
            // between (the Postgres twin locks the row for the same reason).
            let offerable: bool = tx
                .prepare_cached(OFFERABLE)?
                .query_row([interaction.0, queue.0], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("interaction"))?;
            if !offerable {
                return Ok(Vec::new());
            }
            let now = ms(common::now());
            let mut insert = tx.prepare_cached(INSERT_OFFER)?;
            let mut rows = Vec::with_capacity(agents.len());
            for agent in agents {
                if let Some(row) = insert
                    .query_row(
                        params![interaction.0, queue.0, agent.0, now, ms(expires_at)],
                        offer_row,
                    )
                    .optional()?
                {
                    rows.push(row);
                }
            }
            Ok(rows)
        })
        .await
    }

    pub async fn decide_offer(
        &self,
        offer: OfferId,
        status: OfferStatus,
        reason: Option<RescindReason>,
    ) -> StoreResult<Option<OfferRow>> {
        decidable(status)?;
        self.write(move |tx| {
            let row = tx
                .prepare_cached(DECIDE)?
                .query_row(
                    params![
                        offer.0,
                        status.as_str(),
                        reason.map(RescindReason::as_str),
                        ms(common::now())
                    ],
                    offer_row,
                )
                .optional()?;
            Ok(row)
        })
        .await
    }

    /// Exactly one winner (invariant 2): the claim is the conditional
    /// `UPDATE … WHERE owner_id IS NULL AND status = 'open'`, and it runs on
    /// the single writer connection inside `BEGIN IMMEDIATE`, so accepts from
    /// any number of agents and tasks (and processes: the write lock is the
    /// file's) are applied one after the other. The first finds the
    /// interaction unowned and wins; every later one finds its offer
    /// rescinded, or the interaction owned, and changes nothing.
    pub async fn accept_offer(&self, offer: OfferId, agent: AgentId) -> StoreResult<AcceptOutcome> {
        self.write(move |tx| accept(tx, offer, agent)).await
    }

    pub async fn waiting_interactions(
        &self,
        queue: QueueId,
    ) -> StoreResult<Vec<WaitingInteraction>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(WAITING)?
                .query_map([queue.0], |row| {
                    Ok(WaitingInteraction {
                        id: InteractionId(row.get("id")?),
                        version: row.get("version")?,
                        priority: row.get("priority")?,
                        enqueued_at: row.get::<_, Millis>("enqueued_at")?.0,
                        contact: row.get::<_, Option<i64>>("contact_id")?.map(ContactId),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn cancel_live_offers(&self) -> StoreResult<u64> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(CANCEL_LIVE)?
                .execute([ms(common::now())])?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn owned_open_counts(&self) -> StoreResult<HashMap<AgentId, u32>> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(OWNED_OPEN)?
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(agent, n)| Ok((AgentId(agent), common::stored(n, "count")?)))
                .collect()
        })
        .await
    }

    pub async fn last_agent_of_contact(
        &self,
        contact: ContactId,
        except: InteractionId,
    ) -> StoreResult<Option<AgentId>> {
        self.read(move |conn| {
            let agent = conn
                .prepare_cached(LAST_AGENT)?
                .query_row(params![contact.0, except.0], |r| r.get::<_, i64>(0))
                .optional()?;
            Ok(agent.map(AgentId))
        })
        .await
    }

    pub async fn transfer(
        &self,
        id: InteractionId,
        expected_version: i64,
        target: TransferTarget,
    ) -> StoreResult<TransferOutcome> {
        self.write(move |tx| transfer(tx, id, expected_version, target))
            .await
    }

    pub async fn reopen(
        &self,
        id: InteractionId,
        expected_version: i64,
        to: Option<AgentId>,
    ) -> StoreResult<ReopenOutcome> {
        self.write(move |tx| reopen(tx, id, expected_version, to))
            .await
    }

    pub async fn set_round_robin_last(&self, queue: QueueId, agent: AgentId) -> StoreResult<()> {
        self.write(move |tx| {
            match tx
                .prepare_cached(SET_RR)?
                .execute(params![queue.0, agent.0])?
            {
                0 => Err(StoreError::NotFound("queue")),
                _ => Ok(()),
            }
        })
        .await
    }

    pub async fn round_robin_last(&self, queue: QueueId) -> StoreResult<Option<AgentId>> {
        self.read(move |conn| {
            let last = conn
                .prepare_cached(GET_RR)?
                .query_row([queue.0], |r| r.get::<_, Option<i64>>(0))
                .optional()?
                .ok_or(StoreError::NotFound("queue"))?;
            Ok(last.map(AgentId))
        })
        .await
    }
}
