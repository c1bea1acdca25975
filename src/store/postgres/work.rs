//! Working an interaction: see `store/work.rs`.

use deadpool_postgres::GenericClient;

use super::PgStore;
use super::interactions::{interaction_cols, interaction_row};
use crate::domain::InteractionId;
use crate::store::{Interaction, StoreError, StoreResult};

const MARK_READ: &str = concat!(
    "UPDATE interactions SET unread = false, unread_count = 0 WHERE id = $1 RETURNING ",
    interaction_cols!()
);

impl PgStore {
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(MARK_READ).await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("interaction"))?;
        interaction_row(&row)
    }
}
