//! Contacts: see `store/contacts.rs`.

use deadpool_postgres::{GenericClient, Transaction};

use super::PgStore;
use crate::domain::ContactId;
use crate::store::common;
use crate::store::contacts::ContactSpec;
use crate::store::{Contact, StoreError, StoreResult};

const ACTIVE: &str =
    "SELECT id, COALESCE(first_name, '') AS first_name, COALESCE(last_name, '') AS last_name
     FROM contacts WHERE id = $1 AND merged_into IS NULL";

const EMAILS: &str = "SELECT email FROM contact_emails WHERE contact_id = $1 ORDER BY email";

// The address row is locked: two contacts cannot take one address at once.
const OWNER_OF: &str = "SELECT contact_id FROM contact_emails WHERE email = $1 FOR UPDATE";

const INSERT: &str = "INSERT INTO contacts (first_name, last_name, created_at, updated_at)
     VALUES ($1, $2, $3, $3) RETURNING id";

const INSERT_EMAIL: &str =
    "INSERT INTO contact_emails (email, contact_id, created_at) VALUES ($1, $2, $3)";

const DROP_EMAIL: &str = "DELETE FROM contact_emails WHERE contact_id = $1 AND email = $2";

const RENAME: &str =
    "UPDATE contacts SET first_name = $2, last_name = $3, updated_at = $4 WHERE id = $1";

const MOVE_INTERACTIONS: &str = "UPDATE interactions SET contact_id = $1 WHERE contact_id = $2";
const MOVE_EMAILS: &str = "UPDATE contact_emails SET contact_id = $1 WHERE contact_id = $2";
const FILL_NAMES: &str = "UPDATE contacts SET
         first_name = COALESCE(NULLIF(first_name, ''), (SELECT first_name FROM contacts WHERE id = $2)),
         last_name = COALESCE(NULLIF(last_name, ''), (SELECT last_name FROM contacts WHERE id = $2)),
         updated_at = $3
     WHERE id = $1";
const POINT: &str =
    "UPDATE contacts SET merged_into = $1, updated_at = $3 WHERE id = $2 OR merged_into = $2";

// Both contacts locked in id order (no deadlock between two merges).
const LOCK_TWO: &str = "SELECT id FROM contacts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE";

const ORDER: &str =
    " ORDER BY lower(COALESCE(c.last_name, '')), lower(COALESCE(c.first_name, '')), c.id LIMIT $3";
const SEARCH_ALL: &str = "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL AND $1::text IS NOT NULL AND $2::text IS NOT NULL";
const SEARCH_EMAIL: &str =
    "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL AND $2::text IS NOT NULL
       AND c.id IN (SELECT contact_id FROM contact_emails WHERE left(email, length($1)) = $1)";
const SEARCH_WORDS: &str = "SELECT c.id FROM contacts c WHERE c.merged_into IS NULL
       AND (c.id IN (SELECT contact_id FROM contact_emails WHERE left(email, length($1)) = $1)
            OR c.search @@ to_tsquery('simple', regexp_replace(mailroom_search_text($2), ' ', ':* & ', 'g') || ':*'))";

async fn load<C: GenericClient>(client: &C, id: ContactId) -> StoreResult<Contact> {
    let stmt = client.prepare_cached(ACTIVE).await?;
    let row = client
        .query_opt(&stmt, &[&id.0])
        .await?
        .ok_or(StoreError::NotFound("contact"))?;
    let stmt = client.prepare_cached(EMAILS).await?;
    let emails = client
        .query(&stmt, &[&id.0])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Contact {
        id: ContactId(row.try_get("id")?),
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        emails,
    })
}

async fn claim_emails(tx: &Transaction<'_>, id: ContactId, emails: &[String]) -> StoreResult<()> {
    let now = common::now();
    for e in emails {
        let stmt = tx.prepare_cached(OWNER_OF).await?;
        let owner: Option<i64> = tx
            .query_opt(&stmt, &[e])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        match owner {
            Some(o) if o == id.0 => {}
            Some(o) => {
                return Err(StoreError::Conflict(format!(
                    "`{e}` belongs to contact {o}; merge the contacts instead"
                )));
            }
            None => {
                let stmt = tx.prepare_cached(INSERT_EMAIL).await?;
                tx.execute(&stmt, &[e, &id.0, &now]).await?;
            }
        }
    }
    Ok(())
}

const CURRENT: &str = "SELECT COALESCE(merged_into, id) FROM contacts WHERE id = $1";

const IN_USE: &str = "SELECT count(*) FROM interactions WHERE contact_id = $1";
const DELETE_EMAILS: &str = "DELETE FROM contact_emails WHERE contact_id = $1";
// Contacts merged into this one earlier keep pointing at a row: they go too.
const DELETE: &str = "DELETE FROM contacts WHERE id = $1 OR merged_into = $1";
const LOCK_ONE: &str = "SELECT id FROM contacts WHERE id = $1 FOR UPDATE";

impl PgStore {
    pub async fn delete_contact(&self, id: ContactId) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(LOCK_ONE).await?;
        tx.query(&stmt, &[&id.0]).await?;
        load(&tx, id).await?;
        let stmt = tx.prepare_cached(IN_USE).await?;
        let used: i64 = tx.query_one(&stmt, &[&id.0]).await?.try_get(0)?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "the contact has {used} interaction(s); merge it into another instead"
            )));
        }
        for sql in [DELETE_EMAILS, DELETE] {
            let stmt = tx.prepare_cached(sql).await?;
            tx.execute(&stmt, &[&id.0]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn current_contact(&self, id: ContactId) -> StoreResult<Contact> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CURRENT).await?;
        let now: i64 = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("contact"))?
            .try_get(0)?;
        load(&client, ContactId(now)).await
    }

    pub async fn search_contacts(
        &self,
        q: String,
        words: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<Contact>> {
        let client = self.client().await?;
        let base = match (q.is_empty(), words.is_empty()) {
            (true, _) => SEARCH_ALL,
            (false, true) => SEARCH_EMAIL,
            (false, false) => SEARCH_WORDS,
        };
        let sql = format!("{base}{ORDER}");
        let stmt = client.prepare_cached(&sql).await?;
        let ids = client
            .query(&stmt, &[&q, &words.join(" "), &i64::from(limit)])
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(load(&client, ContactId(id)).await?);
        }
        Ok(out)
    }

    pub async fn create_contact(&self, spec: ContactSpec) -> StoreResult<Contact> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(INSERT).await?;
        let id: i64 = tx
            .query_one(&stmt, &[&spec.first_name, &spec.last_name, &common::now()])
            .await?
            .try_get(0)?;
        claim_emails(&tx, ContactId(id), &spec.emails).await?;
        let contact = load(&tx, ContactId(id)).await?;
        tx.commit().await?;
        Ok(contact)
    }

    pub async fn update_contact(&self, id: ContactId, spec: ContactSpec) -> StoreResult<Contact> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = load(&tx, id).await?;
        let stmt = tx.prepare_cached(RENAME).await?;
        tx.execute(
            &stmt,
            &[&id.0, &spec.first_name, &spec.last_name, &common::now()],
        )
        .await?;
        for old in before.emails.iter().filter(|e| !spec.emails.contains(e)) {
            let stmt = tx.prepare_cached(DROP_EMAIL).await?;
            tx.execute(&stmt, &[&id.0, old]).await?;
        }
        claim_emails(&tx, id, &spec.emails).await?;
        let contact = load(&tx, id).await?;
        tx.commit().await?;
        Ok(contact)
    }

    pub async fn merge_contacts(&self, into: ContactId, from: ContactId) -> StoreResult<Contact> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx.prepare_cached(LOCK_TWO).await?;
        tx.query(&stmt, &[&into.0, &from.0]).await?;
        load(&tx, into).await?;
        load(&tx, from).await?;
        let now = common::now();
        for sql in [MOVE_INTERACTIONS, MOVE_EMAILS] {
            let stmt = tx.prepare_cached(sql).await?;
            tx.execute(&stmt, &[&into.0, &from.0]).await?;
        }
        for sql in [FILL_NAMES, POINT] {
            let stmt = tx.prepare_cached(sql).await?;
            tx.execute(&stmt, &[&into.0, &from.0, &now]).await?;
        }
        let contact = load(&tx, into).await?;
        tx.commit().await?;
        Ok(contact)
    }
}
