//! Interactions and the exactly-one-owner claim.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Millis, Name, SqliteStore, ms};
use crate::domain::{
    AccountId, AgentId, ContactId, Direction, InteractionId, InteractionStatus, QueueId,
};
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
     VALUES (?1, ?2, ?3, 'open', ?4, ?5, 1, ?6, ?6, ?6)
     RETURNING ",
    interaction_cols!()
);

pub(super) const BY_ID: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = ?1"
);

// Invariant 2 in one statement. SQLite runs one writer at a time, and the
// WHERE clause is evaluated inside that write, so of any number of claims on
// one interaction exactly one finds it unowned at the expected version;
// every other one changes nothing. Nothing is read first and decided in Rust,
// so the rule holds however the callers race (the Postgres twin is the same
// statement, where row locking gives the same guarantee across nodes).
const CLAIM: &str = concat!(
    "UPDATE interactions SET
         owner_id = ?2,
         first_agent_id = COALESCE(first_agent_id, ?2),
         version = version + 1,
         updated_at = ?4
     WHERE id = ?1 AND owner_id IS NULL AND status = 'open' AND version = ?3
     RETURNING ",
    interaction_cols!()
);

pub(super) fn interaction_row(row: &Row<'_>) -> rusqlite::Result<Interaction> {
    Ok(Interaction {
        id: InteractionId(row.get("id")?),
        account: AccountId(row.get("account_id")?),
        queue: QueueId(row.get("queue_id")?),
        subject: row.get("subject")?,
        status: row.get::<_, Name<InteractionStatus>>("status")?.0,
        substatus: row.get("substatus")?,
        owner: row.get::<_, Option<i64>>("owner_id")?.map(AgentId),
        first_agent: row.get::<_, Option<i64>>("first_agent_id")?.map(AgentId),
        contact: row.get::<_, Option<i64>>("contact_id")?.map(ContactId),
        priority: row.get("priority")?,
        unread: row.get("unread")?,
        unread_count: row.get("unread_count")?,
        reopened: row.get("reopened")?,
        disposition: row
            .get::<_, Option<String>>("disposition")?
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        continues: row
            .get::<_, Option<i64>>("continues_id")?
            .map(InteractionId),
        continued_in: row
            .get::<_, Option<i64>>("continued_in_id")?
            .map(InteractionId),
        version: row.get("version")?,
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
        closed_at: row.get::<_, Option<Millis>>("closed_at")?.map(|t| t.0),
        last_message: match (
            row.get::<_, Option<Name<Direction>>>("last_message_direction")?,
            row.get::<_, Option<Millis>>("last_message_at")?,
        ) {
            (Some(direction), Some(at)) => Some(LastMessage {
                direction: direction.0,
                at: at.0,
                preview: row
                    .get::<_, Option<String>>("last_message_preview")?
                    .unwrap_or_default(),
            }),
            _ => None,
        },
    })
}

pub(super) fn load(conn: &Connection, id: i64) -> StoreResult<Interaction> {
    conn.prepare_cached(BY_ID)?
        .query_row([id], interaction_row)
        .optional()?
        .ok_or(StoreError::NotFound("interaction"))
}

impl SqliteStore {
    pub async fn create_interaction(&self, new: NewInteraction) -> StoreResult<Interaction> {
        self.write(move |tx| {
            let interaction = tx.prepare_cached(INSERT)?.query_row(
                params![
                    new.account.0,
                    new.queue.0,
                    new.subject,
                    new.contact.map(|c| c.0),
                    new.priority,
                    ms(common::now()),
                ],
                interaction_row,
            )?;
            Ok(interaction)
        })
        .await
    }

    pub async fn interaction(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.read(move |conn| load(conn, id.0)).await
    }

    pub async fn claim(
        &self,
        id: InteractionId,
        agent: AgentId,
        expected_version: i64,
    ) -> StoreResult<ClaimOutcome> {
        self.write(move |tx| {
            let won = tx
                .prepare_cached(CLAIM)?
                .query_row(
                    params![id.0, agent.0, expected_version, ms(common::now())],
                    interaction_row,
                )
                .optional()?;
            match won {
                Some(interaction) => Ok(ClaimOutcome::Won(interaction)),
                // Reading the loser's view in the same transaction is only a
                // report: the decision was the UPDATE's.
                None => load(tx, id.0).map(ClaimOutcome::Lost),
            }
        })
        .await
    }
}
