//! Working an interaction (issue #5): what its owner (and supervisors) do
//! with it besides sending mail — reading, drafts, notes, tags, sub-status,
//! unread. Each write is one transaction in the backend files
//! (`sqlite/work.rs`, `postgres/work.rs`).

use super::{Interaction, Store, StoreResult};
use crate::domain::InteractionId;

impl Store {
    /// The owner opened it: unread cleared (flag and count). Not a change of
    /// owner or status, so the version stays.
    pub async fn mark_read(&self, id: InteractionId) -> StoreResult<Interaction> {
        dispatch!(self.mark_read(id))
    }
}
