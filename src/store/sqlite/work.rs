//! Working an interaction: see `store/work.rs`.

use rusqlite::OptionalExtension;

use super::SqliteStore;
use super::interactions::{interaction_cols, interaction_row};
use crate::domain::InteractionId;
use crate::store::{Interaction, StoreError, StoreResult};

const MARK_READ: &str = concat!(
    "UPDATE interactions SET unread = 0, unread_count = 0 WHERE id = ?1 RETURNING ",
    interaction_cols!()
);

impl SqliteStore {
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        self.write(move |tx| {
            tx.prepare_cached(MARK_READ)?
                .query_row([id.0], interaction_row)
                .optional()?
                .ok_or(StoreError::NotFound("interaction"))
        })
        .await
    }
}
