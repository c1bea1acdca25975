//! Reading what ingest (and later the outbox) wrote: an interaction's
//! messages with their attachments' metadata, an account's interactions,
//! contacts, and an attachment's bytes. The REST API (#5) and the mailbox's
//! announcements build on these.

use super::{AttachmentMeta, Contact, Interaction, Store, StoreResult, StoredMessage};
use crate::domain::{AccountId, AttachmentId, ContactId, InteractionId};

impl Store {
    /// The messages of an interaction, oldest first (by `created_at`, then
    /// id), each with its attachments' metadata. `NotFound` for an unknown
    /// interaction.
    pub async fn messages(&self, interaction: InteractionId) -> StoreResult<Vec<StoredMessage>> {
        dispatch!(self.messages(interaction))
    }

    /// Every interaction of an account, by id.
    pub async fn interactions_of_account(
        &self,
        account: AccountId,
    ) -> StoreResult<Vec<Interaction>> {
        dispatch!(self.interactions_of_account(account))
    }

    /// A contact with its addresses.
    pub async fn contact(&self, id: ContactId) -> StoreResult<Contact> {
        dispatch!(self.contact(id))
    }

    /// An attachment's description and bytes.
    pub async fn attachment(&self, id: AttachmentId) -> StoreResult<(AttachmentMeta, Vec<u8>)> {
        dispatch!(self.attachment(id))
    }
}
