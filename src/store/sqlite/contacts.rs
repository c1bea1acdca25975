//! Contacts: see `store/contacts.rs`.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{SqliteStore, ms};
use crate::domain::ContactId;
use crate::store::common;
use crate::store::contacts::ContactSpec;
use crate::store::{Contact, StoreError, StoreResult};

const ACTIVE: &str = "SELECT id, COALESCE(first_name, ''), COALESCE(last_name, '')
     FROM contacts WHERE id = ?1 AND merged_into IS NULL";

const EMAILS: &str = "SELECT email FROM contact_emails WHERE contact_id = ?1 ORDER BY email";

const OWNER_OF: &str = "SELECT contact_id FROM contact_emails WHERE email = ?1";

const INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?3) RETURNING id";

const INSERT_EMAIL: &str =
    "INSERT INTO contact_emails (email, contact_id, created_at) VALUES (?1, ?2, ?3)";

const DROP_EMAIL: &str = "DELETE FROM contact_emails WHERE contact_id = ?1 AND email = ?2";

const RENAME: &str =
    "UPDATE contacts SET first_name = ?2, last_name = ?3, updated_at = ?4 WHERE id = ?1";

const MOVE_INTERACTIONS: &str = "UPDATE interactions SET contact_id = ?1 WHERE contact_id = ?2";
const MOVE_EMAILS: &str = "UPDATE contact_emails SET contact_id = ?1 WHERE contact_id = ?2";
const FILL_NAMES: &str = "UPDATE contacts SET
         first_name = COALESCE(NULLIF(first_name, ''), (SELECT first_name FROM contacts WHERE id = ?2)),
         last_name = COALESCE(NULLIF(last_name, ''), (SELECT last_name FROM contacts WHERE id = ?2)),
         updated_at = ?3
     WHERE id = ?1";
const POINT: &str =
    "UPDATE contacts SET merged_into = ?1, updated_at = ?3 WHERE id = ?2 OR merged_into = ?2";

const SEARCH_ALL: &str = "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL
     ORDER BY lower(COALESCE(c.last_name, '')), lower(COALESCE(c.first_name, '')), c.id LIMIT ?3";
const SEARCH_EMAIL: &str = "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL
       AND c.id IN (SELECT contact_id FROM contact_emails WHERE substr(email, 1, length(?1)) = ?1)
     ORDER BY lower(COALESCE(c.last_name, '')), lower(COALESCE(c.first_name, '')), c.id LIMIT ?3";
const SEARCH_WORDS: &str = "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL
       AND (c.id IN (SELECT contact_id FROM contact_emails WHERE substr(email, 1, length(?1)) = ?1)
            OR c.id IN (SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH ?2))
     ORDER BY lower(COALESCE(c.last_name, '')), lower(COALESCE(c.first_name, '')), c.id LIMIT ?3";

/// A live (not merged) contact with its addresses.
fn load(tx: &rusqlite::Connection, id: ContactId) -> StoreResult<Contact> {
    let (id, first_name, last_name): (i64, String, String) = tx
        .prepare_cached(ACTIVE)?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or(StoreError::NotFound("contact"))?;
    let emails = tx
        .prepare_cached(EMAILS)?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Contact {
        id: ContactId(id),
        first_name,
        last_name,
        emails,
    })
}

/// Every address must be free or already this contact's.
fn claim_emails(tx: &Transaction<'_>, id: ContactId, emails: &[String]) -> StoreResult<()> {
    let now = ms(common::now());
    for e in emails {
        let owner: Option<i64> = tx
            .prepare_cached(OWNER_OF)?
            .query_row([e], |r| r.get(0))
            .optional()?;
        match owner {
            Some(o) if o == id.0 => {}
            Some(o) => {
                return Err(StoreError::Conflict(format!(
                    "`{e}` belongs to contact {o}; merge the contacts instead"
                )));
            }
            None => {
                tx.prepare_cached(INSERT_EMAIL)?
                    .execute(params![e, id.0, now])?;
            }
        }
    }
    Ok(())
}

const CURRENT: &str = "SELECT COALESCE(merged_into, id) FROM contacts WHERE id = ?1";

const IN_USE: &str = "SELECT count(*) FROM interactions WHERE contact_id = ?1";
const DELETE_EMAILS: &str = "DELETE FROM contact_emails WHERE contact_id = ?1";
// Contacts merged into this one earlier keep pointing at a row: they go too.
const DELETE: &str = "DELETE FROM contacts WHERE id = ?1 OR merged_into = ?1";

impl SqliteStore {
    pub async fn delete_contact(&self, id: ContactId) -> StoreResult<()> {
        self.write(move |tx| {
            load(tx, id)?;
            let used: i64 = tx.prepare_cached(IN_USE)?.query_row([id.0], |r| r.get(0))?;
            if used > 0 {
                return Err(StoreError::Conflict(format!(
                    "the contact has {used} interaction(s); merge it into another instead"
                )));
            }
            tx.prepare_cached(DELETE_EMAILS)?.execute([id.0])?;
            tx.prepare_cached(DELETE)?.execute([id.0])?;
            Ok(())
        })
        .await
    }

    pub async fn current_contact(&self, id: ContactId) -> StoreResult<Contact> {
        self.read(move |conn| {
            let now: i64 = conn
                .prepare_cached(CURRENT)?
                .query_row([id.0], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("contact"))?;
            load(conn, ContactId(now))
        })
        .await
    }

    pub async fn search_contacts(
        &self,
        q: String,
        words: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<Contact>> {
        self.read(move |conn| {
            let fts = words
                .iter()
                .map(|w| format!("\"{w}\"*"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = match (q.is_empty(), words.is_empty()) {
                (true, _) => SEARCH_ALL,
                (false, true) => SEARCH_EMAIL,
                (false, false) => SEARCH_WORDS,
            };
            let ids = conn
                .prepare_cached(sql)?
                .query_map(params![q, fts, limit], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            ids.into_iter()
                .map(|id| load(conn, ContactId(id)))
                .collect()
        })
        .await
    }

    pub async fn create_contact(&self, spec: ContactSpec) -> StoreResult<Contact> {
        self.write(move |tx| {
            let now = ms(common::now());
            let id: i64 = tx
                .prepare_cached(INSERT)?
                .query_row(params![spec.first_name, spec.last_name, now], |r| r.get(0))?;
            claim_emails(tx, ContactId(id), &spec.emails)?;
            load(tx, ContactId(id))
        })
        .await
    }

    pub async fn update_contact(&self, id: ContactId, spec: ContactSpec) -> StoreResult<Contact> {
        self.write(move |tx| {
            let before = load(tx, id)?;
            tx.prepare_cached(RENAME)?.execute(params![
                id.0,
                spec.first_name,
                spec.last_name,
                ms(common::now())
            ])?;
            for old in before.emails.iter().filter(|e| !spec.emails.contains(e)) {
                tx.prepare_cached(DROP_EMAIL)?.execute(params![id.0, old])?;
            }
            claim_emails(tx, id, &spec.emails)?;
            load(tx, id)
        })
        .await
    }

    pub async fn merge_contacts(&self, into: ContactId, from: ContactId) -> StoreResult<Contact> {
        self.write(move |tx| {
            load(tx, into)?;
            load(tx, from)?;
            let now = ms(common::now());
            tx.prepare_cached(MOVE_INTERACTIONS)?
                .execute(params![into.0, from.0])?;
            tx.prepare_cached(MOVE_EMAILS)?
                .execute(params![into.0, from.0])?;
            tx.prepare_cached(FILL_NAMES)?
                .execute(params![into.0, from.0, now])?;
            tx.prepare_cached(POINT)?
                .execute(params![into.0, from.0, now])?;
            load(tx, into)
        })
        .await
    }
}
