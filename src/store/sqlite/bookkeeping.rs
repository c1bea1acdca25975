//! The bookkeeping of a mailbox on SQLite: the UID watermark, the receipts
//! that make ingest idempotent on (account, uidvalidity, uid), quarantine,
//! and server secrets. `ingest.rs` commits the mails themselves and uses the
//! watermark and receipt helpers here inside its transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::ingest::{store_blob, too_big};
use super::{Millis, SqliteStore, blocking, ms};
use crate::domain::AccountId;
use crate::store::common::{self, stored};
use crate::store::ingest::{PreparedQuarantine, already_ingested, clean, new_secret};
use crate::store::{QuarantineEntry, QuarantineMail, StoreError, StoreResult, Watermark};

// ---- SQL ------------------------------------------------------------------------

const WATERMARK: &str = "SELECT uidvalidity, last_uid FROM mailbox_state WHERE account_id = ?1";

// One statement, so that the rule holds without reading first: within one
// uidvalidity the watermark only moves forward (an older mail committed
// late, or a first sync's skip, never takes it back); a new uidvalidity
// replaces it, since the old UIDs mean nothing any more. (SET expressions
// see the row as it was, so the order of the two assignments is irrelevant.)
const ADVANCE: &str = "INSERT INTO mailbox_state (account_id, uidvalidity, last_uid, updated_at)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (account_id) DO UPDATE SET
         last_uid = CASE WHEN mailbox_state.uidvalidity = excluded.uidvalidity
                         THEN max(mailbox_state.last_uid, excluded.last_uid)
                         ELSE excluded.last_uid END,
         uidvalidity = excluded.uidvalidity,
         updated_at = excluded.updated_at";

// The receipt comes first: when it exists, the position was ingested (or
// quarantined) before and nothing else is written. DO NOTHING, not an
// error, so the caller learns "duplicate" without a failed statement.
const RECEIPT: &str = "INSERT INTO mail_receipts (account_id, uidvalidity, uid, received_at)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (account_id, uidvalidity, uid) DO NOTHING";

const RECEIPT_OF: &str = "SELECT message_row_id, quarantine_id FROM mail_receipts
     WHERE account_id = ?1 AND uidvalidity = ?2 AND uid = ?3";

const RECEIPT_MESSAGE: &str = "UPDATE mail_receipts SET message_row_id = ?4
     WHERE account_id = ?1 AND uidvalidity = ?2 AND uid = ?3";

const RECEIPT_QUARANTINE: &str = "UPDATE mail_receipts SET quarantine_id = ?4
     WHERE account_id = ?1 AND uidvalidity = ?2 AND uid = ?3";

const QUARANTINE_INSERT: &str = "INSERT INTO quarantine (account_id, uidvalidity, uid, blob_id,
         reason, attempts, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id";

const QUARANTINE_LIST: &str = "SELECT q.id, a.key, q.uidvalidity, q.uid, b.size, q.reason,
         q.attempts, q.created_at
     FROM quarantine q
     JOIN accounts a ON a.id = q.account_id
     JOIN blobs b ON b.id = q.blob_id
     WHERE q.account_id = ?1 AND q.resolved_at IS NULL
     ORDER BY q.created_at DESC, q.id DESC";

const QUARANTINE_RAW: &str = "SELECT b.data FROM quarantine q JOIN blobs b ON b.id = q.blob_id
     WHERE q.id = ?1 AND q.account_id = ?2";

const QUARANTINE_RESOLVE: &str = "UPDATE quarantine SET resolved_at = COALESCE(resolved_at, ?3)
     WHERE id = ?1 AND account_id = ?2";

// Every node inserts its own random value; the first one written wins and
// every node reads that one back.
const SECRET_INSERT: &str = "INSERT INTO server_secrets (name, value, created_at)
     VALUES (?1, ?2, ?3)
     ON CONFLICT (name) DO NOTHING";

const SECRET: &str = "SELECT value FROM server_secrets WHERE name = ?1";

// ---- the store methods -------------------------------------------------------------

impl SqliteStore {
    pub async fn watermark(&self, account: AccountId) -> StoreResult<Option<Watermark>> {
        self.read(move |conn| {
            let row = conn
                .prepare_cached(WATERMARK)?
                .query_row([account.0], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            row.map(|(v, u)| {
                Ok(Watermark {
                    uid_validity: stored(v, "uidvalidity")?,
                    last_uid: stored(u, "last_uid")?,
                })
            })
            .transpose()
        })
        .await
    }

    pub async fn set_watermark(&self, account: AccountId, mark: Watermark) -> StoreResult<()> {
        self.write(move |tx| {
            let position = (i64::from(mark.uid_validity), i64::from(mark.last_uid));
            advance(tx, account, position, common::now())
        })
        .await
    }

    pub async fn quarantine_mail(&self, mail: QuarantineMail) -> StoreResult<i64> {
        let q = blocking(move || PreparedQuarantine::new(mail)).await?;
        self.write(move |tx| quarantine(tx, &q, common::now()).map_err(too_big))
            .await
    }

    pub async fn list_quarantine(&self, account: AccountId) -> StoreResult<Vec<QuarantineEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(QUARANTINE_LIST)?;
            let rows = stmt.query_map([account.0], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Millis>(7)?,
                ))
            })?;
            let mut entries = Vec::new();
            for row in rows {
                let (id, account, v, u, size, reason, attempts, at) = row?;
                entries.push(QuarantineEntry {
                    id,
                    account,
                    uid_validity: v.map(|v| stored(v, "uidvalidity")).transpose()?,
                    uid: u.map(|u| stored(u, "uid")).transpose()?,
                    size: stored(size, "size")?,
                    reason,
                    attempts: stored(attempts, "attempts")?,
                    created_at: at.0,
                });
            }
            Ok(entries)
        })
        .await
    }

    pub async fn quarantine_raw(&self, account: AccountId, id: i64) -> StoreResult<Vec<u8>> {
        self.read(move |conn| {
            conn.prepare_cached(QUARANTINE_RAW)?
                .query_row(params![id, account.0], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("quarantined mail"))
        })
        .await
    }

    pub async fn resolve_quarantine(&self, account: AccountId, id: i64) -> StoreResult<()> {
        self.write(move |tx| {
            let changed = tx.prepare_cached(QUARANTINE_RESOLVE)?.execute(params![
                id,
                account.0,
                ms(common::now())
            ])?;
            if changed == 0 {
                return Err(StoreError::NotFound("quarantined mail"));
            }
            Ok(())
        })
        .await
    }

    pub async fn server_secret(&self, name: &str) -> StoreResult<Vec<u8>> {
        let name = clean(name);
        self.write(move |tx| {
            tx.prepare_cached(SECRET_INSERT)?.execute(params![
                name,
                new_secret(),
                ms(common::now())
            ])?;
            Ok(tx
                .prepare_cached(SECRET)?
                .query_row([&name], |r| r.get(0))?)
        })
        .await
    }
}

// ---- helpers ----------------------------------------------------------------------

pub(super) fn advance(
    tx: &Connection,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.prepare_cached(ADVANCE)?
        .execute(params![account.0, uidvalidity, uid, ms(now)])?;
    Ok(())
}

pub(super) fn receipt_of(
    tx: &Connection,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
) -> StoreResult<(Option<i64>, Option<i64>)> {
    Ok(tx
        .prepare_cached(RECEIPT_OF)?
        .query_row(params![account.0, uidvalidity, uid], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
}

fn set_receipt(
    tx: &Connection,
    sql: &str,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    id: i64,
) -> StoreResult<()> {
    tx.prepare_cached(sql)?
        .execute(params![account.0, uidvalidity, uid, id])?;
    Ok(())
}

fn quarantine(tx: &Connection, q: &PreparedQuarantine, now: DateTime<Utc>) -> StoreResult<i64> {
    if let Some(position) = q.position
        && !insert_receipt(tx, q.account, position, now)?
    {
        match receipt_of(tx, q.account, position)? {
            (_, Some(quarantined)) => {
                advance(tx, q.account, position, now)?;
                return Ok(quarantined);
            }
            (Some(_), None) => return Err(already_ingested()),
            (None, None) => {}
        }
    }
    let blob = store_blob(tx, &q.raw, now)?;
    let id: i64 = tx.prepare_cached(QUARANTINE_INSERT)?.query_row(
        params![
            q.account.0,
            q.position.map(|p| p.0),
            q.position.map(|p| p.1),
            blob,
            q.reason,
            q.attempts,
            ms(now),
        ],
        |r| r.get(0),
    )?;
    if let Some(position) = q.position {
        set_receipt(tx, RECEIPT_QUARANTINE, q.account, position, id)?;
        advance(tx, q.account, position, now)?;
    }
    Ok(id)
}

/// Record the position; `false` if it was recorded before (by an ingest or
/// a quarantine), in which case nothing else may be written for it.
pub(super) fn insert_receipt(
    tx: &Connection,
    account: AccountId,
    (uidvalidity, uid): (i64, i64),
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(tx
        .prepare_cached(RECEIPT)?
        .execute(params![account.0, uidvalidity, uid, ms(now)])?
        == 1)
}

/// Point the position's receipt at the message it became (or duplicates).
pub(super) fn receipt_message(
    tx: &Connection,
    account: AccountId,
    position: (i64, i64),
    message: i64,
) -> StoreResult<()> {
    set_receipt(tx, RECEIPT_MESSAGE, account, position, message)
}
