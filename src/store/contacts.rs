//! Contacts (issue #6, part 4): customers, each with one or more email
//! addresses. Ingest creates them from senders; agents edit them; merging
//! two moves the interactions and addresses of one to the other and leaves
//! a pointer (`merged_into`) that lookups follow.

use super::{Contact, Store, StoreError, StoreResult};
use crate::domain::{ContactId, EmailAddress};

/// A contact to create, or the new state of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSpec {
    pub first_name: String,
    pub last_name: String,
    /// Lower-cased, deduplicated; at least one.
    pub emails: Vec<String>,
}

impl ContactSpec {
    /// Check and normalise: names trimmed (at most 200 characters),
    /// addresses valid, lower-cased, deduplicated, at least one.
    pub fn new(first_name: &str, last_name: &str, emails: &[String]) -> StoreResult<ContactSpec> {
        let mut errors = Vec::new();
        let (first, last) = (first_name.trim(), last_name.trim());
        if first.chars().count() > 200 || last.chars().count() > 200 {
            errors.push("names are at most 200 characters".to_string());
        }
        let mut clean = Vec::new();
        for e in emails {
            match EmailAddress::parse(e.trim()) {
                Ok(a) => clean.push(a.key()),
                Err(_) => errors.push(format!("`{e}` is not an email address")),
            }
        }
        clean.sort();
        clean.dedup();
        if clean.is_empty() && errors.is_empty() {
            errors.push("a contact needs at least one email address".into());
        }
        if errors.is_empty() {
            Ok(ContactSpec {
                first_name: first.to_string(),
                last_name: last.to_string(),
                emails: clean,
            })
        } else {
            Err(StoreError::Invalid(errors.join("; ")))
        }
    }
}

impl Store {
    /// Contacts whose every search word starts a word of their names, or
    /// whose address starts with `q` (all contacts when `q` is empty), by
    /// name; merged contacts are left out.
    pub async fn search_contacts(&self, q: &str, limit: u32) -> StoreResult<Vec<Contact>> {
        let words = super::listing::search_words(q);
        dispatch!(self.search_contacts(q.trim().to_lowercase(), words, limit.clamp(1, 500)))
    }

    /// A contact as it is now: a merged one is the contact it was merged
    /// into (merging re-points earlier merges, so this is one step).
    pub async fn current_contact(&self, id: ContactId) -> StoreResult<Contact> {
        dispatch!(self.current_contact(id))
    }

    /// A new contact; an address another contact has is a `Conflict`.
    pub async fn create_contact(&self, spec: ContactSpec) -> StoreResult<Contact> {
        dispatch!(self.create_contact(spec))
    }

    /// Replace a contact's names and addresses.
    pub async fn update_contact(&self, id: ContactId, spec: ContactSpec) -> StoreResult<Contact> {
        dispatch!(self.update_contact(id, spec))
    }

    /// Delete a contact that has no interactions (one that has is a
    /// `Conflict`: merge it instead, so history keeps a customer).
    pub async fn delete_contact(&self, id: ContactId) -> StoreResult<()> {
        dispatch!(self.delete_contact(id))
    }

    /// Merge `from` into `into`: `from`'s interactions and addresses move to
    /// `into` (which keeps its names, taking `from`'s where it has none), and
    /// `from` points to `into`. One transaction.
    pub async fn merge_contacts(&self, into: ContactId, from: ContactId) -> StoreResult<Contact> {
        if into == from {
            return Err(StoreError::Invalid(
                "a contact cannot be merged into itself".into(),
            ));
        }
        dispatch!(self.merge_contacts(into, from))
    }
}
