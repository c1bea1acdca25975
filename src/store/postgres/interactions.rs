//! Interactions and the exactly-one-owner claim.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Name, PgStore, name, unsigned};
use crate::domain::{AccountId, AgentId, ContactId, Direction, InteractionId, QueueId};
use crate::store::common;
use crate::store::{
    ClaimOutcome, Interaction, LastMessage, NewInteraction, StoreError, StoreResult,
};

/// The columns [`interaction_row`] reads.
macro_rules! interaction_cols {
    () => {
        "id, account_id, queue_id, subject, status, substatus, owner_id, first_agent_id,
         contact_id, priority, unread, unread_count, reopened, disposition, continues_id,
         continued_in_id,
         version, created_at, updated_at, closed_at,
         last_message_direction, last_message_at, last_message_preview"
    };
}
pub(super) use interaction_cols;

const INSERT: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, contact_id, priority,
         version, enqueued_at, created_at, updated_at)
     VALUES ($1, $2, $3, 'open', $4, $5, 1, $6, $6, $6)
     RETURNING ",
    interaction_cols!()
);

pub(super) const BY_ID: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = $1"
);

// Invariant 2 in one statement. Under READ COMMITTED, concurrent UPDATEs of
// one row queue on its row lock; each waiter then re-checks the WHERE clause
// against the row as the previous winner committed it, finds an owner (and a
// new version), and changes nothing. So exactly one claim returns a row,
// whatever the number of tasks, connections or nodes. Nothing is read first
// and decided in Rust, and no lock is held across a round trip.
const CLAIM: &str = concat!(
    "UPDATE interactions SET
         owner_id = $2,
         first_agent_id = COALESCE(first_agent_id, $2),
         version = version + 1,
         updated_at = $4
     WHERE id = $1 AND owner_id IS NULL AND status = 'open' AND version = $3
     RETURNING ",
    interaction_cols!()
);

pub(super) fn interaction_row(row: &Row) -> StoreResult<Interaction> {
    Ok(Interaction {
        id: InteractionId(row.try_get("id")?),
        account: AccountId(row.try_get("account_id")?),
        queue: QueueId(row.try_get("queue_id")?),
        subject: row.try_get("subject")?,
        status: name(row, "status")?,
        substatus: row.try_get("substatus")?,
        owner: row.try_get::<_, Option<i64>>("owner_id")?.map(AgentId),
        first_agent: row
            .try_get::<_, Option<i64>>("first_agent_id")?
            .map(AgentId),
        contact: row.try_get::<_, Option<i64>>("contact_id")?.map(ContactId),
        priority: row.try_get("priority")?,
        unread: row.try_get("unread")?,
        unread_count: unsigned(row, "unread_count")?,
        reopened: row.try_get("reopened")?,
        disposition: row
            .try_get::<_, Option<tokio_postgres::types::Json<Vec<String>>>>("disposition")?
            .map(|d| d.0),
        continues: row
            .try_get::<_, Option<i64>>("continues_id")?
            .map(InteractionId),
        continued_in: row
            .try_get::<_, Option<i64>>("continued_in_id")?
            .map(InteractionId),
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        closed_at: row.try_get("closed_at")?,
        last_message: match (
            row.try_get::<_, Option<Name<Direction>>>("last_message_direction")?,
            row.try_get::<_, Option<DateTime<Utc>>>("last_message_at")?,
        ) {
            (Some(direction), Some(at)) => Some(LastMessage {
                direction: direction.0,
                at,
                preview: row
                    .try_get::<_, Option<String>>("last_message_preview")?
                    .unwrap_or_default(),
            }),
            _ => None,
        },
    })
}

pub(super) async fn load<C: GenericClient>(client: &C, id: i64) -> StoreResult<Interaction> {
    let stmt = client.prepare_cached(BY_ID).await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    interaction_row(&row)
}

impl PgStore {
    pub async fn create_interaction(&self, new: NewInteraction) -> StoreResult<Interaction> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(INSERT).await?;
        let row = client
            .query_one(
                &stmt,
                &[
                    &new.account.0,
                    &new.queue.0,
                    &new.subject,
                    &new.contact.map(|c| c.0),
                    &new.priority,
                    &common::now(),
                ],
            )
            .await?;
        interaction_row(&row)
    }

    pub async fn interaction(&self, id: InteractionId) -> StoreResult<Interaction> {
        let client = self.client().await?;
        load(&client, id.0).await
    }

    pub async fn claim(
        &self,
        id: InteractionId,
        agent: AgentId,
        expected_version: i64,
    ) -> StoreResult<ClaimOutcome> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CLAIM).await?;
        let won = client
            .query_opt(&stmt, &[&id.0, &agent.0, &expected_version, &common::now()])
            .await?;
        match won {
            Some(row) => Ok(ClaimOutcome::Won(interaction_row(&row)?)),
            // Only a report of who won: the decision was the UPDATE's.
            None => load(&client, id.0).await.map(ClaimOutcome::Lost),
        }
    }
}
