//! The bookkeeping of a mailbox on Postgres: the UID watermark, the receipts
//! that make ingest idempotent on (account, uidvalidity, uid), quarantine,
//! and server secrets. `ingest.rs` commits the mails themselves and uses the
//! watermark and receipt helpers here inside its transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::PgStore;
use super::ingest::{data_refused, store_blob};
use crate::domain::AccountId;
use crate::store::common::{self, stored};
use crate::store::ingest::{PreparedQuarantine, already_ingested, clean, new_secret};
use crate::store::{QuarantineEntry, QuarantineMail, StoreError, StoreResult, Watermark};

// ---- SQL ------------------------------------------------------------------------

const WATERMARK: &str = "SELECT uidvalidity, last_uid FROM mailbox_state WHERE account_id = $1";

// Never backwards within one uidvalidity; a new uidvalidity replaces it.
// One statement: the row lock of the upsert orders concurrent writers.
const ADVANCE: &str = "INSERT INTO mailbox_state (account_id, uidvalidity, last_uid, updated_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (account_id) DO UPDATE SET
         last_uid = CASE WHEN mailbox_state.uidvalidity = excluded.uidvalidity
                         THEN GREATEST(mailbox_state.last_uid, excluded.last_uid)
                         ELSE excluded.last_uid END,
         uidvalidity = excluded.uidvalidity,
         updated_at = excluded.updated_at";

// A concurrent ingest of the same position waits here until the first
// commits (then DO NOTHING: a duplicate) or rolls back (then this one
// inserts): exactly one of them goes on.
pub(super) const RECEIPT: &str =
    "INSERT INTO mail_receipts (account_id, uidvalidity, uid, received_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (account_id, uidvalidity, uid) DO NOTHING";

const RECEIPT_OF: &str = "SELECT message_row_id, quarantine_id FROM mail_receipts
     WHERE account_id = $1 AND uidvalidity = $2 AND uid = $3";

pub(super) const RECEIPT_MESSAGE: &str = "UPDATE mail_receipts SET message_row_id = $4
     WHERE account_id = $1 AND uidvalidity = $2 AND uid = $3";

const RECEIPT_QUARANTINE: &str = "UPDATE mail_receipts SET quarantine_id = $4
     WHERE account_id = $1 AND uidvalidity = $2 AND uid = $3";

const QUARANTINE_INSERT: &str = "INSERT INTO quarantine (account_id, uidvalidity, uid, blob_id,
         reason, attempts, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

const QUARANTINE_LIST: &str = "SELECT q.id, a.key, q.uidvalidity, q.uid, b.size, q.reason,
         q.attempts, q.created_at
     FROM quarantine q
     JOIN accounts a ON a.id = q.account_id
     JOIN blobs b ON b.id = q.blob_id
     WHERE q.account_id = $1 AND q.resolved_at IS NULL
     ORDER BY q.created_at DESC, q.id DESC";

const QUARANTINE_RAW: &str = "SELECT b.data FROM quarantine q JOIN blobs b ON b.id = q.blob_id
     WHERE q.id = $1 AND q.account_id = $2";

const QUARANTINE_RESOLVE: &str = "UPDATE quarantine SET resolved_at = COALESCE(resolved_at, $3)
     WHERE id = $1 AND account_id = $2";

// Every node inserts its own random value; the first one committed wins (a
// concurrent insert waits for it, then does nothing) and all read it back.
const SECRET_INSERT: &str = "INSERT INTO server_secrets (name, value, created_at)
     VALUES ($1, $2, $3)
     ON CONFLICT (name) DO NOTHING";

const SECRET: &str = "SELECT value FROM server_secrets WHERE name = $1";

// ---- the store methods -------------------------------------------------------------

impl PgStore {
    pub async fn watermark(&self, account: AccountId) -> StoreResult<Option<Watermark>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(WATERMARK).await?;
        let Some(row) = client.query_opt(&stmt, &[&account.0]).await? else {
            return Ok(None);
        };
        Ok(Some(Watermark {
            uid_validity: stored(row.try_get(0)?, "uidvalidity")?,
            last_uid: stored(row.try_get(1)?, "last_uid")?,
        }))
    }

    pub async fn set_watermark(&self, account: AccountId, mark: Watermark) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(ADVANCE).await?;
        let (v, u) = (i64::from(mark.uid_validity), i64::from(mark.last_uid));
        client
            .execute(&stmt, &[&account.0, &v, &u, &common::now()])
            .await?;
        Ok(())
    }

    pub async fn quarantine_mail(&self, mail: QuarantineMail) -> StoreResult<i64> {
        let q = tokio::task::spawn_blocking(move || PreparedQuarantine::new(mail))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = quarantine(&tx, &q, common::now())
            .await
            .map_err(data_refused)?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn list_quarantine(&self, account: AccountId) -> StoreResult<Vec<QuarantineEntry>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(QUARANTINE_LIST).await?;
        let rows = client.query(&stmt, &[&account.0]).await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineEntry {
                    id: r.try_get(0)?,
                    account: r.try_get(1)?,
                    uid_validity: r
                        .try_get::<_, Option<i64>>(2)?
                        .map(|v| stored(v, "uidvalidity"))
                        .transpose()?,
                    uid: r
                        .try_get::<_, Option<i64>>(3)?
                        .map(|u| stored(u, "uid"))
                        .transpose()?,
                    size: stored(r.try_get(4)?, "size")?,
                    reason: r.try_get(5)?,
                    attempts: stored(i64::from(r.try_get::<_, i32>(6)?), "attempts")?,
                    created_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    pub async fn quarantine_raw(&self, account: AccountId, id: i64) -> StoreResult<Vec<u8>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(QUARANTINE_RAW).await?;
        let row = client
            .query_opt(&stmt, &[&id, &account.0])
            .await?
            .ok_or(StoreError::NotFound("quarantined mail"))?;
        Ok(row.try_get(0)?)
    }

    pub async fn resolve_quarantine(&self, account: AccountId, id: i64) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(QUARANTINE_RESOLVE).await?;
        let changed = client
            .execute(&stmt, &[&id, &account.0, &common::now()])
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound("quarantined mail"));
        }
        Ok(())
    }

    pub async fn server_secret(&self, name: &str) -> StoreResult<Vec<u8>> {
        let name = clean(name);
        let client = self.client().await?;
        let insert = client.prepare_cached(SECRET_INSERT).await?;
        client
            .execute(&insert, &[&name, &new_secret(), &common::now()])
            .await?;
        let select = client.prepare_cached(SECRET).await?;
        Ok(client.query_one(&select, &[&name]).await?.try_get(0)?)
    }
}

// ---- helpers ----------------------------------------------------------------------

pub(super) async fn advance(
    tx: &Transaction<'_>,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let stmt = tx.prepare_cached(ADVANCE).await?;
    tx.execute(&stmt, &[&account.0, &uidvalidity, &uid, &now])
        .await?;
    Ok(())
}

pub(super) async fn receipt_of(
    tx: &Transaction<'_>,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
) -> StoreResult<(Option<i64>, Option<i64>)> {
    let stmt = tx.prepare_cached(RECEIPT_OF).await?;
    let row = tx
        .query_one(&stmt, &[&account.0, &uidvalidity, &uid])
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

async fn set_receipt(
    tx: &Transaction<'_>,
    sql: &str,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    id: i64,
) -> StoreResult<()> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.execute(&stmt, &[&account.0, &uidvalidity, &uid, &id])
        .await?;
    Ok(())
}

async fn quarantine(
    tx: &Transaction<'_>,
    q: &PreparedQuarantine,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    if let Some(position) = q.position
        && !insert_receipt(tx, q.account, position, now).await?
    {
        match receipt_of(tx, q.account, position).await? {
            (_, Some(quarantined)) => {
                advance(tx, q.account, position, now).await?;
                return Ok(quarantined);
            }
            (Some(_), None) => return Err(already_ingested()),
            (None, None) => {}
        }
    }
    let blob = store_blob(tx, &q.raw, now).await?;
    let stmt = tx.prepare_cached(QUARANTINE_INSERT).await?;
    let id: i64 = tx
        .query_one(
            &stmt,
            &[
                &q.account.0,
                &q.position.map(|p| p.0),
                &q.position.map(|p| p.1),
                &blob,
                &q.reason,
                &q.attempts,
                &now,
            ],
        )
        .await?
        .try_get(0)?;
    if let Some(position) = q.position {
        set_receipt(tx, RECEIPT_QUARANTINE, q.account, position, id).await?;
        advance(tx, q.account, position, now).await?;
    }
    Ok(id)
}

/// Record the position; `false` if it was recorded before (by an ingest or
/// a quarantine), in which case nothing else may be written for it.
pub(super) async fn insert_receipt(
    tx: &Transaction<'_>,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let stmt = tx.prepare_cached(RECEIPT).await?;
    Ok(tx
        .execute(&stmt, &[&account.0, &uidvalidity, &uid, &now])
        .await?
        == 1)
}

/// Point the position's receipt at the message it became (or duplicates).
pub(super) async fn receipt_message(
    tx: &Transaction<'_>,
    account: AccountId,
    position: (i64, i64),
    message: i64,
) -> StoreResult<()> {
    set_receipt(tx, RECEIPT_MESSAGE, account, position, message).await
}
