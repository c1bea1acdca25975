//! Ingest on Postgres: the mails of a fetched batch in one transaction, in
//! UID order (the watermark and receipts it writes are in
//! [`super::bookkeeping`]).
//!
//! The rules are in `store/ingest.rs`; the SQLite twin runs the same steps
//! in the same order. Here several nodes may ingest at once (a takeover
//! while the old owner still runs, a mailbox resynced after a UIDVALIDITY
//! change), and the transactions run at READ COMMITTED, so nothing is
//! decided on a read alone:
//!
//! - the receipt and the message are inserted `ON CONFLICT DO NOTHING`: a
//!   concurrent insert of the same key waits for the other transaction and
//!   then sees its row, so exactly one ingest writes the mail;
//! - the thread a reply goes to is read `FOR UPDATE`, so that two replies to
//!   one closed thread cannot both create a thread 2: the second waits, then
//!   sees `continued_in` set and follows it;
//! - within a mail, blobs are inserted in SHA-256 order, the receipt first,
//!   and the watermark is moved last, once per transaction.
//!
//! # Why batches, and why pipelined
//!
//! Measured on the 2-core machine (docs/performance.md, "Ingest on
//! Postgres, faster"): a commit waits for the WAL's fsync, 2–4 ms on this
//! disk, and one mail was ~13 statements sent one after another (~0.1 ms
//! each on loopback). One transaction per mail capped an account at
//! ~370 mails/s whatever else was done. So [`PgStore::ingest_batch`] commits
//! up to a group of mails (the mailbox actor picks it) in one transaction,
//! with one fsync, and every mail's statements that do not depend on each
//! other's answers are sent together on the connection (tokio-postgres
//! pipelines the requests of futures polled together, and the server runs
//! them in the order sent), and a mail's last round goes out with the next
//! mail's first: in a batch, a new mail from a known sender costs 2 round
//! trips (a new sender 3), where it was ~13.
//!
//! Exactly-once is unchanged: the mails of a batch are written in UID order
//! by one transaction, each sees what the ones before it wrote (a reply to a
//! mail of the same batch finds it; a duplicate of it is one), and the
//! watermark is moved in the same transaction, to the last mail, so it never
//! passes a mail that is not committed. Any error rolls the whole batch back
//! (nothing of it is committed), and the mailbox then commits those mails
//! one per transaction ([`PgStore::ingest_mail`]), where a bad mail is
//! retried and quarantined on its own.
//!
//! Two transactions of one account only run together during a takeover's
//! overlap or a resync, and then each batch holds its rows longer: two
//! batches that need each other's rows in opposite orders are a deadlock
//! that Postgres detects and ends by failing one of them, which is rolled
//! back and redone as above. Nothing is lost or duplicated either way.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::try_join_all;
use tokio_postgres::types::Json;
use tokio_postgres::{Row, Statement};

use super::bookkeeping::{RECEIPT, RECEIPT_MESSAGE, advance, receipt_message, receipt_of};
use super::interactions::{interaction_cols, interaction_row};
use super::{PgStore, name};
use crate::domain::{AccountId, ContactId, Direction, InteractionStatus, MessageId, MessageKind};
use crate::mail::Mailbox;
use crate::store::common;
use crate::store::ingest::{
    BatchIngest, Blob, MAX_CHAIN, MBOX_TYPE, Prepared, Sender, continued_meanwhile, reference_list,
    refused, thread_file_name, vanished,
};
use crate::store::mbox::{self, MboxMessage};
use crate::store::{IngestMail, IngestOutcome, Interaction, StoreError, StoreResult};

// ---- SQL ------------------------------------------------------------------------
// The same statements as the SQLite twin, in Postgres' dialect; the comments
// there say why each is shaped as it is, and the ones here what differs.

const SAME_MAIL: &str = "SELECT id FROM messages
     WHERE account_id = $1 AND message_id_header = $2 AND content_hash = $3
       AND message_id_header IS NOT NULL AND content_hash IS NOT NULL";

const SAME_CONTENT: &str = "SELECT id FROM messages
     WHERE account_id = $1 AND content_hash = $2
       AND message_id_header IS NULL AND content_hash IS NOT NULL";

// The blob's id whether this inserts it or finds it stored (one round
// trip). A blob committed by a concurrent transaction while this one waited
// on its key is not in this statement's snapshot: no row, and `BLOB_ID`
// (a new statement, a new snapshot) finds it.
const BLOB_UPSERT: &str = "WITH ins AS (
         INSERT INTO blobs (sha256, size, data, created_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (sha256) DO NOTHING
         RETURNING id)
     SELECT id FROM ins
     UNION ALL
     SELECT id FROM blobs WHERE sha256 = $1
     LIMIT 1";

const BLOB_ID: &str = "SELECT id FROM blobs WHERE sha256 = $1";

const CONTACT_BY_EMAIL: &str = "SELECT ce.contact_id, c.merged_into
     FROM contact_emails ce JOIN contacts c ON c.id = ce.contact_id
     WHERE ce.email = $1";

const CONTACT_MERGED_INTO: &str = "SELECT merged_into FROM contacts WHERE id = $1";

const CONTACT_FILL: &str = "UPDATE contacts SET
         first_name = CASE WHEN COALESCE(first_name, '') = '' THEN $2 ELSE first_name END,
         last_name = CASE WHEN COALESCE(last_name, '') = '' THEN $3 ELSE last_name END,
         updated_at = $4
     WHERE id = $1
       AND ((COALESCE(first_name, '') = '' AND $2 <> '')
         OR (COALESCE(last_name, '') = '' AND $3 <> ''))";

// The contact and its address in one statement; `claimed` is false when
// another ingest took the address first (its transaction committed while
// this one waited on the key): the caller deletes the contact made here.
const CONTACT_CREATE: &str = "WITH c AS (
         INSERT INTO contacts (first_name, last_name, created_at, updated_at)
         VALUES ($2, $3, $4, $4) RETURNING id),
     e AS (
         INSERT INTO contact_emails (email, contact_id, created_at)
         SELECT $1::text, c.id, $4::timestamptz FROM c
         ON CONFLICT (email) DO NOTHING
         RETURNING contact_id)
     SELECT c.id, EXISTS (SELECT 1 FROM e) AS claimed FROM c";

const CONTACT_DELETE: &str = "DELETE FROM contacts WHERE id = $1";

const IN_ACCOUNT: &str = "SELECT id FROM interactions WHERE id = $1 AND account_id = $2";

// The first of the mail's references (newest first) that names a stored
// message, and that message's thread (its newest message if the id is
// reused): the same answer as one look-up per reference in order, in one
// round trip.
const BY_MESSAGE_IDS: &str = "SELECT m.interaction_id
     FROM unnest($2::text[]) WITH ORDINALITY AS r(message_id, n)
     CROSS JOIN LATERAL (
         SELECT interaction_id FROM messages
         WHERE account_id = $1 AND message_id_header = r.message_id
         ORDER BY id DESC LIMIT 1) m
     ORDER BY r.n
     LIMIT 1";

// FOR UPDATE: the thread is appended to, or continued, by this transaction;
// a concurrent ingest of a reply to it waits and then reads it as this one
// left it (with `continued_in` set, if this one created thread 2).
const IN_ACCOUNT_LOCKED: &str = concat!(
    "SELECT ",
    interaction_cols!(),
    " FROM interactions WHERE id = $1 AND account_id = $2 FOR UPDATE"
);

const MARK_BOUNCED: &str = "UPDATE messages SET delivery = 'failed', delivery_error = $3
     WHERE account_id = $1 AND message_id_header = $2 AND direction = 'out'
     RETURNING id, interaction_id";

const NEW_INTERACTION: &str = concat!(
    "INSERT INTO interactions (account_id, queue_id, subject, status, contact_id, priority,
         unread, unread_count, continues_id, version, enqueued_at, created_at, updated_at,
         last_message_direction, last_message_at, last_message_preview)
     VALUES ($1, $2, $3, 'open', $4, $5, true, $11, $6, 1, $7, $7, $7, $8, $9, $10)
     RETURNING ",
    interaction_cols!()
);

// A new thread and its first message in one statement (both inserts run;
// the foreign key is checked at the end of the statement). `message_row` is
// NULL when the message is stored already (a concurrent ingest of the same
// mail): the caller rolls back to its savepoint, which removes the
// interaction too.
const NEW_INTERACTION_WITH_MESSAGE: &str = concat!(
    "WITH i AS (
         INSERT INTO interactions (account_id, queue_id, subject, status, contact_id, priority,
             unread, unread_count, continues_id, version, enqueued_at, created_at, updated_at,
             last_message_direction, last_message_at, last_message_preview)
         VALUES ($1, $2, $3, 'open', $4, $5, true, $11, $6, 1, $7, $7, $7, $8, $9, $10)
         RETURNING ",
    interaction_cols!(),
    "),
     m AS (
         INSERT INTO messages (interaction_id, account_id, direction, kind,
             from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, text_body, html_body,
             message_id_header, in_reply_to, references_header, content_hash, raw_blob_id,
             created_at)
         SELECT i.id, $1::bigint, 'in', $12::text, $13::text, $14::text, $15::jsonb, $16::jsonb,
             $17::text, $3::text, $18::text, $19::text, $20::text, $21::text, $22::text,
             $23::bytea, $24::bigint, $7::timestamptz
         FROM i
         ON CONFLICT DO NOTHING
         RETURNING id)
     SELECT i.*, (SELECT id FROM m) AS message_row FROM i"
);

const NEW_MESSAGE: &str = "INSERT INTO messages (interaction_id, account_id, direction, kind,
         from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, text_body, html_body,
         message_id_header, in_reply_to, references_header, content_hash, raw_blob_id,
         created_at)
     VALUES ($1, $2, 'in', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
     ON CONFLICT DO NOTHING
     RETURNING id";

const NEW_ATTACHMENT: &str = "INSERT INTO attachments (message_row_id, blob_id, filename,
         content_type, size, content_id, is_inline, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const APPEND_MAIL: &str = concat!(
    "UPDATE interactions SET
         substatus = NULL, unread = true, unread_count = unread_count + 1, updated_at = $2,
         last_message_direction = 'in', last_message_at = $2, last_message_preview = $3,
         version = version + 1
     WHERE id = $1
     RETURNING ",
    interaction_cols!()
);

const APPEND_QUIET: &str = concat!(
    "UPDATE interactions SET version = version + 1 WHERE id = $1 RETURNING ",
    interaction_cols!()
);

const LINK_CONTINUED: &str = "UPDATE interactions SET continued_in_id = $2
     WHERE id = $1 AND continued_in_id IS NULL";

const THREAD_FOR_MBOX: &str = "SELECT m.direction, m.kind,
         COALESCE(m.from_addr, a.address) AS from_addr, COALESCE(m.from_name, ag.name) AS from_name,
         m.to_addrs, m.cc_addrs, m.subject, m.text_body, m.message_id_header, m.in_reply_to,
         m.references_header, m.created_at, b.data AS raw
     FROM messages m
     JOIN accounts a ON a.id = m.account_id
     LEFT JOIN agents ag ON ag.id = m.author_agent_id
     LEFT JOIN blobs b ON b.id = m.raw_blob_id
     WHERE m.interaction_id = $1
     ORDER BY m.created_at, m.id";

// ---- the store methods -------------------------------------------------------------

impl PgStore {
    /// One mail in its own transaction (a quarantine retry, and the mailbox's
    /// fallback when a batch failed).
    pub async fn ingest_mail(&self, mail: IngestMail) -> StoreResult<IngestOutcome> {
        // Hashing up to 40 MB is CPU work: not on the async threads, where it
        // would stall whoever shares them (invariant 5).
        let p = tokio::task::spawn_blocking(move || Prepared::new(mail))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcome = ingest(&tx, &p, common::now()).await.map_err(data_refused)?;
        if let Some(position) = p.position {
            advance(&tx, p.account, position, common::now()).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The mails of one account, in UID order, in one transaction: all are
    /// committed, with the watermark at the last one, or none is (see the
    /// module doc).
    pub async fn ingest_batch(&self, mails: &[IngestMail]) -> BatchIngest {
        match self.ingest_all(mails).await {
            Ok(committed) => BatchIngest {
                committed,
                failed: None,
            },
            Err(e) => BatchIngest {
                committed: Vec::new(),
                failed: Some(e),
            },
        }
    }

    async fn ingest_all(&self, mails: &[IngestMail]) -> StoreResult<Vec<IngestOutcome>> {
        let owned = mails.to_vec();
        let prepared =
            tokio::task::spawn_blocking(move || owned.into_iter().map(Prepared::new).collect())
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?;
        let prepared: Vec<Prepared> = prepared;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let outcomes = ingest_in_order(&tx, &prepared)
            .await
            .map_err(data_refused)?;
        // UID order: the last position is the highest. Every mail before it
        // is written by this transaction, so the watermark passes only
        // committed mail (invariant 1).
        if let Some(p) = prepared.iter().rev().find(|p| p.position.is_some())
            && let Some(position) = p.position
        {
            advance(&tx, p.account, position, common::now()).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Postgres refuses what it cannot store with SQLSTATE class 22 (data
/// exception: a NUL in text, a bad escape in json) or 23 (integrity; the
/// common ones are already `Conflict`/`Invalid`): such a mail is `Invalid`,
/// so that the mailbox quarantines it instead of retrying it forever.
pub(super) fn data_refused(err: StoreError) -> StoreError {
    if let StoreError::Postgres(e) = &err
        && let Some(code) = e.code()
        && (code.code().starts_with("22") || code.code().starts_with("23"))
    {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| format!("SQLSTATE {}", code.code()));
        return refused(&detail);
    }
    err
}

// ---- one mail ---------------------------------------------------------------------

/// Fewer futures than this are polled in order by `try_join_all`, so their
/// requests go out in order (futures-util's "small" join); more are sent one
/// after another.
const PIPELINE_MAX: usize = 30;

/// Run `futures` in the order given: pipelined on the connection when there
/// are few of them (all sent before any answer is awaited), else one by one.
async fn in_order<T, F>(futures: Vec<F>) -> StoreResult<Vec<T>>
where
    F: std::future::Future<Output = StoreResult<T>>,
{
    if futures.len() <= PIPELINE_MAX {
        return try_join_all(futures).await;
    }
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await?);
    }
    Ok(out)
}

/// What the first round trip of a mail found. Everything in it is sent
/// together (pipelined), in this order: the receipt (first, as the lock
/// order wants), the look-ups (dedupe, the sender's contact, the thread the
/// mail refers to), the savepoint, then the blobs in SHA-256 order. The
/// look-ups run before the savepoint because they write nothing; the blobs
/// after it, so that a duplicate undoes them.
struct FirstRound {
    /// The position was new (or the mail has none).
    receipt_new: bool,
    stored: Option<i64>,
    /// `(contact, merged_into)` of the sender's address.
    contact: Option<(i64, Option<i64>)>,
    /// The thread the references point at, in the order of precedence:
    /// our own Message-IDs, stored Message-IDs, the subject token.
    thread: Option<i64>,
    /// Blob ids by SHA-256; `None` until found.
    blobs: Vec<(Vec<u8>, Option<i64>)>,
}

async fn first_round(
    tx: &Transaction<'_>,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<FirstRound> {
    // Prepared before anything is sent (a no-op once cached on the
    // connection): a prepare inside the pipeline would be a round trip of
    // its own, and its statement would be sent out of order.
    let receipt_stmt = tx.prepare_cached(RECEIPT).await?;
    let stored_stmt = tx
        .prepare_cached(if p.message_id.is_some() {
            SAME_MAIL
        } else {
            SAME_CONTENT
        })
        .await?;
    let contact_stmt = tx.prepare_cached(CONTACT_BY_EMAIL).await?;
    let owned_stmt = tx.prepare_cached(IN_ACCOUNT).await?;
    let by_ids_stmt = tx.prepare_cached(BY_MESSAGE_IDS).await?;
    let blob_stmt = tx.prepare_cached(BLOB_UPSERT).await?;
    let blobs = p.blobs();

    let receipt = async {
        Ok::<_, StoreError>(match p.position {
            Some((v, u)) => {
                tx.execute(&receipt_stmt, &[&p.account.0, &v, &u, &now])
                    .await?
                    == 1
            }
            None => true,
        })
    };
    let stored = async {
        let row = match &p.message_id {
            Some(id) => {
                tx.query_opt(&stored_stmt, &[&p.account.0, id, &p.content_hash])
                    .await?
            }
            None => {
                tx.query_opt(&stored_stmt, &[&p.account.0, &p.content_hash])
                    .await?
            }
        };
        Ok::<_, StoreError>(row.map(|r| r.try_get::<_, i64>(0)).transpose()?)
    };
    let contact = async {
        let Some(sender) = &p.sender else {
            return Ok(None);
        };
        let row = tx.query_opt(&contact_stmt, &[&sender.email]).await?;
        Ok::<_, StoreError>(match row {
            Some(r) => Some((r.try_get::<_, i64>(0)?, r.try_get::<_, Option<i64>>(1)?)),
            None => None,
        })
    };
    let ours = in_order(
        p.refs
            .ours
            .iter()
            .chain(p.refs.subject_token.iter())
            .map(|id| {
                let stmt = &owned_stmt;
                async move {
                    let row = tx.query_opt(stmt, &[&id.0, &p.account.0]).await?;
                    Ok::<_, StoreError>(row.map(|r| r.try_get::<_, i64>(0)).transpose()?)
                }
            })
            .collect(),
    );
    let by_ids = async {
        if p.refs.message_ids.is_empty() {
            return Ok(None);
        }
        let row = tx
            .query_opt(&by_ids_stmt, &[&p.account.0, &p.refs.message_ids])
            .await?;
        Ok::<_, StoreError>(row.map(|r| r.try_get::<_, i64>(0)).transpose()?)
    };
    let savepoint = async { Ok::<_, StoreError>(tx.batch_execute("SAVEPOINT ingest_mail").await?) };
    let stored_blobs = in_order(
        blobs
            .iter()
            .map(|blob| {
                let stmt = &blob_stmt;
                async move {
                    let row = tx
                        .query_opt(stmt, &[&blob.sha256, &blob.size(), &blob.data, &now])
                        .await?;
                    Ok::<_, StoreError>(row.map(|r| r.try_get::<_, i64>(0)).transpose()?)
                }
            })
            .collect(),
    );
    // `biased`: polled in the order written, so the requests are sent in
    // that order (tokio's join otherwise rotates the first one polled).
    let (receipt_new, stored, contact, ours, by_ids, (), blob_ids) = tokio::try_join!(
        biased;
        receipt,
        stored,
        contact,
        ours,
        by_ids,
        savepoint,
        stored_blobs
    )?;
    let n_ours = p.refs.ours.len();
    let thread = ours[..n_ours]
        .iter()
        .flatten()
        .next()
        .copied()
        .or(by_ids)
        .or_else(|| ours[n_ours..].iter().flatten().next().copied());
    let blobs = blobs
        .iter()
        .zip(blob_ids)
        .map(|(b, id)| (b.sha256.clone(), id))
        .collect();
    Ok(FirstRound {
        receipt_new,
        stored,
        contact,
        thread,
        blobs,
    })
}

async fn rollback_mail(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute("ROLLBACK TO SAVEPOINT ingest_mail; RELEASE SAVEPOINT ingest_mail")
        .await?;
    Ok(())
}

/// One mail inside the caller's transaction; the caller moves the watermark.
async fn ingest(
    tx: &Transaction<'_>,
    p: &Prepared,
    now: DateTime<Utc>,
) -> StoreResult<IngestOutcome> {
    let first = first_round(tx, p, now).await?;
    let (outcome, last) = ingest_rest(tx, p, first, now).await?;
    if let Some(last) = last {
        last_round(tx, p, last, now).await?;
    }
    Ok(outcome)
}

/// The mails of a batch, in order. The last round of each mail (which
/// nothing of the next one depends on) is sent together with the next
/// mail's first round: the server runs them in the order sent, so the next
/// mail's look-ups still see everything the previous one wrote, and its
/// savepoint is set after the previous one's is released.
async fn ingest_in_order(
    tx: &Transaction<'_>,
    prepared: &[Prepared],
) -> StoreResult<Vec<IngestOutcome>> {
    let mut outcomes = Vec::with_capacity(prepared.len());
    let mut pending: Option<(&Prepared, LastRound)> = None;
    for p in prepared {
        let now = common::now();
        let first = match pending.take() {
            Some((previous, last)) => {
                // The previous mail's statements are prepared before the
                // pair is polled, so that they are sent first.
                prepare_last_round(tx).await?;
                let ((), first) = tokio::try_join!(
                    biased;
                    last_round(tx, previous, last, now),
                    first_round(tx, p, now)
                )?;
                first
            }
            None => first_round(tx, p, now).await?,
        };
        let (outcome, last) = ingest_rest(tx, p, first, now).await.map_err(data_refused)?;
        outcomes.push(outcome);
        pending = last.map(|last| (p, last));
    }
    if let Some((previous, last)) = pending {
        last_round(tx, previous, last, common::now()).await?;
    }
    Ok(outcomes)
}

/// What the last round of a new mail writes.
struct LastRound {
    message: i64,
    /// The attachments are still to be written.
    attachments: bool,
    blobs: HashMap<Vec<u8>, i64>,
}

async fn prepare_last_round(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.prepare_cached(NEW_ATTACHMENT).await?;
    tx.prepare_cached(RECEIPT_MESSAGE).await?;
    Ok(())
}

/// The attachments (if not written yet), the savepoint released, the
/// receipt pointed at the message: pipelined.
async fn last_round(
    tx: &Transaction<'_>,
    p: &Prepared,
    last: LastRound,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let LastRound {
        message,
        attachments,
        blobs,
    } = last;
    let attach = async {
        if attachments {
            insert_attachments(tx, p, message, &blobs, now).await?;
        }
        Ok::<_, StoreError>(())
    };
    let release =
        async { Ok::<_, StoreError>(tx.batch_execute("RELEASE SAVEPOINT ingest_mail").await?) };
    let receipt = async {
        if let Some(position) = p.position {
            receipt_message(tx, p.account, position, message).await?;
        }
        Ok::<_, StoreError>(())
    };
    let ((), (), ()) = tokio::try_join!(biased; attach, release, receipt)?;
    Ok(())
}

/// The mail after its first round; a new mail's last round is left to the
/// caller.
async fn ingest_rest(
    tx: &Transaction<'_>,
    p: &Prepared,
    first: FirstRound,
    now: DateTime<Utc>,
) -> StoreResult<(IngestOutcome, Option<LastRound>)> {
    if !first.receipt_new
        && let Some(position) = p.position
    {
        rollback_mail(tx).await?;
        let (message, _) = receipt_of(tx, p.account, position).await?;
        let outcome = IngestOutcome::Duplicate {
            message: message.map(MessageId),
        };
        return Ok((outcome, None));
    }
    if let Some(existing) = first.stored {
        rollback_mail(tx).await?;
        return Ok((duplicate(tx, p, existing).await?, None));
    }
    // Everything the mail writes from here on (and its blobs, written in the
    // first round) can be undone alone if its message turns out to be
    // stored already (see `store/ingest.rs`).
    let mut blobs = HashMap::with_capacity(first.blobs.len());
    for (sha256, id) in first.blobs {
        let id = match id {
            Some(id) => id,
            None => blob_id(tx, &sha256).await?,
        };
        blobs.insert(sha256, id);
    }
    match commit_new(tx, p, &blobs, first.contact, first.thread, now).await? {
        Some((outcome, message, attachments)) => {
            let last = LastRound {
                message,
                attachments,
                blobs,
            };
            Ok((outcome, Some(last)))
        }
        None => {
            rollback_mail(tx).await?;
            let existing = stored_duplicate(tx, p).await?.ok_or_else(vanished)?;
            Ok((duplicate(tx, p, existing).await?, None))
        }
    }
}

async fn duplicate(
    tx: &Transaction<'_>,
    p: &Prepared,
    existing: i64,
) -> StoreResult<IngestOutcome> {
    if let Some(position) = p.position {
        receipt_message(tx, p.account, position, existing).await?;
    }
    Ok(IngestOutcome::Duplicate {
        message: Some(MessageId(existing)),
    })
}

async fn stored_duplicate(tx: &Transaction<'_>, p: &Prepared) -> StoreResult<Option<i64>> {
    let row = match &p.message_id {
        Some(id) => {
            let stmt = tx.prepare_cached(SAME_MAIL).await?;
            tx.query_opt(&stmt, &[&p.account.0, id, &p.content_hash])
                .await?
        }
        None => {
            let stmt = tx.prepare_cached(SAME_CONTENT).await?;
            tx.query_opt(&stmt, &[&p.account.0, &p.content_hash])
                .await?
        }
    };
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// A sender's contact that exists already, whose empty names this mail may
/// fill: written in the round trip that follows the contact's look-up.
struct Fill<'a> {
    contact: i64,
    sender: &'a Sender,
}

async fn fill_contact(
    tx: &Transaction<'_>,
    fill: Option<Fill<'_>>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(Fill { contact, sender }) = fill else {
        return Ok(());
    };
    let stmt = tx.prepare_cached(CONTACT_FILL).await?;
    tx.execute(
        &stmt,
        &[&contact, &sender.first_name, &sender.last_name, &now],
    )
    .await?;
    Ok(())
}

/// `Some((outcome, message row, attachments still to write))`, or `None`
/// when the message is stored already (the caller rolls back).
async fn commit_new(
    tx: &Transaction<'_>,
    p: &Prepared,
    blobs: &HashMap<Vec<u8>, i64>,
    looked_up: Option<(i64, Option<i64>)>,
    matched: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<(IngestOutcome, i64, bool)>> {
    let (contact, fill) = upsert_contact(tx, p, looked_up, now).await?;

    if let Some(bounce) = &p.bounce
        && let Some(original) = &bounce.original
    {
        fill_contact(tx, fill, now).await?;
        let stmt = tx.prepare_cached(MARK_BOUNCED).await?;
        let rows = tx
            .query(&stmt, &[&p.account.0, original, &bounce.reason])
            .await?;
        let mut bounced = Vec::with_capacity(rows.len());
        for r in &rows {
            bounced.push((r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?));
        }
        if let Some(&(message_row, interaction)) = bounced.iter().max() {
            let Some(message) = insert_message(tx, p, interaction, blobs, now).await? else {
                return Ok(None);
            };
            let interaction = append(tx, p, interaction, now).await?;
            let outcome = IngestOutcome::Bounced {
                original: Some(MessageId(message_row)),
                interaction: Some(interaction),
            };
            return Ok(Some((outcome, message, false)));
        }
        return commit_thread(tx, p, blobs, contact, None, matched, now).await;
    }
    commit_thread(tx, p, blobs, contact, fill, matched, now).await
}

async fn commit_thread(
    tx: &Transaction<'_>,
    p: &Prepared,
    blobs: &HashMap<Vec<u8>, i64>,
    contact: Option<ContactId>,
    fill: Option<Fill<'_>>,
    matched: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<(IngestOutcome, i64, bool)>> {
    let Some(matched) = matched else {
        // A new thread: the contact's names (if any) and the thread with its
        // message, in one round trip; the attachments go with the next.
        let stmt = tx.prepare_cached(NEW_INTERACTION_WITH_MESSAGE).await?;
        // Cached before the pair is sent, so that the names go first.
        tx.prepare_cached(CONTACT_FILL).await?;
        let new = new_interaction_with_message(tx, &stmt, p, contact, blobs, now);
        let ((), row) = tokio::try_join!(biased; fill_contact(tx, fill, now), new)?;
        let Some(message) = row.try_get::<_, Option<i64>>("message_row")? else {
            return Ok(None);
        };
        let interaction = interaction_row(&row)?;
        let outcome = IngestOutcome::Created {
            interaction,
            message: MessageId(message),
            contact,
        };
        return Ok(Some((outcome, message, true)));
    };
    // A reply: the lock order of the one-mail transaction (the contact's
    // row, then the thread's) is kept by writing the names first.
    fill_contact(tx, fill, now).await?;
    match resolve_thread(tx, p, matched).await? {
        // An auto-reply to a closed thread (an out-of-office answering our
        // closing reply) is kept on it and opens nothing (module docs).
        thread if thread.status == InteractionStatus::Open || !p.counts() => {
            let Some(message) = insert_message(tx, p, thread.id.0, blobs, now).await? else {
                return Ok(None);
            };
            let interaction = append(tx, p, thread.id.0, now).await?;
            let outcome = IngestOutcome::Appended {
                interaction,
                message: MessageId(message),
            };
            Ok(Some((outcome, message, false)))
        }
        previous => {
            let contact = previous.contact.or(contact);
            let thread = new_interaction(tx, p, Some(&previous), contact, now).await?;
            let Some(message) = insert_message(tx, p, thread.id.0, blobs, now).await? else {
                return Ok(None);
            };
            let stmt = tx.prepare_cached(LINK_CONTINUED).await?;
            if tx.execute(&stmt, &[&previous.id.0, &thread.id.0]).await? != 1 {
                return Err(continued_meanwhile());
            }
            attach_thread(tx, p, &previous, message, now).await?;
            let outcome = IngestOutcome::Continued {
                interaction: thread,
                previous: previous.id,
                message: MessageId(message),
                contact,
            };
            Ok(Some((outcome, message, false)))
        }
    }
}

pub(super) async fn store_blob(
    tx: &Transaction<'_>,
    blob: &Blob,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let stmt = tx.prepare_cached(BLOB_UPSERT).await?;
    if let Some(row) = tx
        .query_opt(&stmt, &[&blob.sha256, &blob.size(), &blob.data, &now])
        .await?
    {
        return Ok(row.try_get(0)?);
    }
    blob_id(tx, &blob.sha256).await
}

/// A blob that `BLOB_UPSERT` did not see: committed by a concurrent
/// transaction while this one waited on its key.
async fn blob_id(tx: &Transaction<'_>, sha256: &[u8]) -> StoreResult<i64> {
    let stmt = tx.prepare_cached(BLOB_ID).await?;
    Ok(tx.query_one(&stmt, &[&sha256]).await?.try_get(0)?)
}

/// The sender's contact, created if its address is new. `looked_up` is what
/// the first round found for the address. Also returns the names to fill
/// in, for an existing contact and a mail that carried a display name: the
/// caller writes them in its next round trip.
async fn upsert_contact<'p>(
    tx: &Transaction<'_>,
    p: &'p Prepared,
    looked_up: Option<(i64, Option<i64>)>,
    now: DateTime<Utc>,
) -> StoreResult<(Option<ContactId>, Option<Fill<'p>>)> {
    let Some(sender) = &p.sender else {
        return Ok((None, None));
    };
    let existing = |found: i64| {
        let fill = sender.named.then_some(Fill {
            contact: found,
            sender,
        });
        Ok((Some(ContactId(found)), fill))
    };
    if let Some((id, merged)) = looked_up {
        return existing(follow_merged(tx, id, merged).await?);
    }
    for attempt in 0..2 {
        if attempt > 0
            && let Some(found) = contact_by_email(tx, &sender.email).await?
        {
            return existing(found);
        }
        let stmt = tx.prepare_cached(CONTACT_CREATE).await?;
        let row = tx
            .query_one(
                &stmt,
                &[&sender.email, &sender.first_name, &sender.last_name, &now],
            )
            .await?;
        let id: i64 = row.try_get(0)?;
        if row.try_get::<_, bool>(1)? {
            return Ok((Some(ContactId(id)), None));
        }
        // Another ingest created this sender's contact first: use theirs.
        let stmt = tx.prepare_cached(CONTACT_DELETE).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    match contact_by_email(tx, &sender.email).await? {
        Some(found) => existing(found),
        None => Err(StoreError::Conflict(
            "the sender's contact changed meanwhile".into(),
        )),
    }
}

async fn contact_by_email(tx: &Transaction<'_>, email: &str) -> StoreResult<Option<i64>> {
    let stmt = tx.prepare_cached(CONTACT_BY_EMAIL).await?;
    let Some(row) = tx.query_opt(&stmt, &[&email]).await? else {
        return Ok(None);
    };
    Ok(Some(
        follow_merged(tx, row.try_get(0)?, row.try_get(1)?).await?,
    ))
}

/// The contact a merged one lives on as (`merged` is its `merged_into`).
async fn follow_merged(
    tx: &Transaction<'_>,
    mut id: i64,
    mut merged: Option<i64>,
) -> StoreResult<i64> {
    for _ in 0..MAX_CHAIN {
        let Some(next) = merged else {
            break;
        };
        id = next;
        let stmt = tx.prepare_cached(CONTACT_MERGED_INTO).await?;
        merged = tx.query_one(&stmt, &[&id]).await?.try_get(0)?;
    }
    Ok(id)
}

/// The newest thread of the conversation `matched` belongs to, locked.
async fn resolve_thread(
    tx: &Transaction<'_>,
    p: &Prepared,
    matched: i64,
) -> StoreResult<Interaction> {
    let mut thread = locked_in_account(tx, matched, p.account).await?;
    for _ in 0..MAX_CHAIN {
        let Some(next) = thread.continued_in else {
            break;
        };
        thread = locked_in_account(tx, next.0, p.account).await?;
    }
    Ok(thread)
}

async fn locked_in_account(
    tx: &Transaction<'_>,
    id: i64,
    account: AccountId,
) -> StoreResult<Interaction> {
    let stmt = tx.prepare_cached(IN_ACCOUNT_LOCKED).await?;
    let row = tx
        .query_opt(&stmt, &[&id, &account.0])
        .await?
        .ok_or(StoreError::NotFound("interaction"))?;
    interaction_row(&row)
}

async fn new_interaction(
    tx: &Transaction<'_>,
    p: &Prepared,
    previous: Option<&Interaction>,
    contact: Option<ContactId>,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let queue = previous.map_or(p.queue, |t| t.queue);
    let priority = previous.map_or(0, |t| t.priority);
    let last_direction = p.preview.as_ref().map(|_| Direction::In.as_str());
    let last_at = p.preview.as_ref().map(|_| now);
    let stmt = tx.prepare_cached(NEW_INTERACTION).await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &p.account.0,
                &queue.0,
                &p.subject,
                &contact.map(|c| c.0),
                &priority,
                &previous.map(|t| t.id.0),
                &now,
                &last_direction,
                &last_at,
                &p.preview,
                &i32::from(p.counts()),
            ],
        )
        .await?;
    interaction_row(&row)
}

/// Sends `NEW_INTERACTION_WITH_MESSAGE` (prepared by the caller, so that
/// it can be pipelined behind another statement).
async fn new_interaction_with_message(
    tx: &Transaction<'_>,
    stmt: &Statement,
    p: &Prepared,
    contact: Option<ContactId>,
    blobs: &HashMap<Vec<u8>, i64>,
    now: DateTime<Utc>,
) -> StoreResult<Row> {
    let last_direction = p.preview.as_ref().map(|_| Direction::In.as_str());
    let last_at = p.preview.as_ref().map(|_| now);
    let raw_blob = blobs.get(p.raw.sha256.as_slice()).copied();
    Ok(tx
        .query_one(
            stmt,
            &[
                &p.account.0,
                &p.queue.0,
                &p.subject,
                &contact.map(|c| c.0),
                &0_i32,
                &Option::<i64>::None,
                &now,
                &last_direction,
                &last_at,
                &p.preview,
                &i32::from(p.counts()),
                &p.kind.as_str(),
                &p.from.as_ref().map(|f| &f.address),
                &p.from.as_ref().and_then(|f| f.name.as_ref()),
                &Json(&p.to),
                &Json(&p.cc),
                &p.reply_to,
                &p.text,
                &p.html,
                &p.message_id,
                &p.in_reply_to,
                &p.references,
                &p.content_hash,
                &raw_blob,
            ],
        )
        .await?)
}

async fn insert_message(
    tx: &Transaction<'_>,
    p: &Prepared,
    interaction: i64,
    blobs: &HashMap<Vec<u8>, i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let raw_blob = blobs.get(p.raw.sha256.as_slice()).copied();
    let stmt = tx.prepare_cached(NEW_MESSAGE).await?;
    let inserted = tx
        .query_opt(
            &stmt,
            &[
                &interaction,
                &p.account.0,
                &p.kind.as_str(),
                &p.from.as_ref().map(|f| &f.address),
                &p.from.as_ref().and_then(|f| f.name.as_ref()),
                &Json(&p.to),
                &Json(&p.cc),
                &p.reply_to,
                &p.subject,
                &p.text,
                &p.html,
                &p.message_id,
                &p.in_reply_to,
                &p.references,
                &p.content_hash,
                &raw_blob,
                &now,
            ],
        )
        .await?;
    let Some(row) = inserted else {
        return Ok(None);
    };
    let message: i64 = row.try_get(0)?;
    insert_attachments(tx, p, message, blobs, now).await?;
    Ok(Some(message))
}

/// The mail's attachments, pipelined (their order does not matter: no key).
async fn insert_attachments(
    tx: &Transaction<'_>,
    p: &Prepared,
    message: i64,
    blobs: &HashMap<Vec<u8>, i64>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if p.attachments.is_empty() {
        return Ok(());
    }
    let stmt = tx.prepare_cached(NEW_ATTACHMENT).await?;
    let mut inserts = Vec::with_capacity(p.attachments.len());
    for a in &p.attachments {
        let blob = blobs
            .get(a.blob.sha256.as_slice())
            .copied()
            .ok_or_else(|| StoreError::Invalid("an attachment's blob was not stored".into()))?;
        let stmt = &stmt;
        inserts.push(async move {
            tx.execute(
                stmt,
                &[
                    &message,
                    &blob,
                    &a.filename,
                    &a.content_type,
                    &a.blob.size(),
                    &a.content_id,
                    &a.inline,
                    &now,
                ],
            )
            .await?;
            Ok::<_, StoreError>(())
        });
    }
    in_order(inserts).await?;
    Ok(())
}

async fn append(
    tx: &Transaction<'_>,
    p: &Prepared,
    interaction: i64,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let row = match &p.preview {
        Some(preview) if p.counts() => {
            let stmt = tx.prepare_cached(APPEND_MAIL).await?;
            tx.query_one(&stmt, &[&interaction, &now, preview]).await?
        }
        _ => {
            let stmt = tx.prepare_cached(APPEND_QUIET).await?;
            tx.query_one(&stmt, &[&interaction]).await?
        }
    };
    interaction_row(&row)
}

async fn attach_thread(
    tx: &Transaction<'_>,
    p: &Prepared,
    previous: &Interaction,
    message: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let stmt = tx.prepare_cached(THREAD_FOR_MBOX).await?;
    let rows = tx.query(&stmt, &[&previous.id.0]).await?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let from_addr: Option<String> = r.try_get("from_addr")?;
        let from_name: Option<String> = r.try_get("from_name")?;
        messages.push(MboxMessage {
            raw: r.try_get("raw")?,
            direction: name(r, "direction")?,
            kind: name::<MessageKind>(r, "kind")?,
            from: from_addr.map(|address| Mailbox {
                name: from_name,
                address,
            }),
            to: r.try_get::<_, Json<Vec<Mailbox>>>("to_addrs")?.0,
            cc: r.try_get::<_, Json<Vec<Mailbox>>>("cc_addrs")?.0,
            subject: r.try_get("subject")?,
            text: r.try_get("text_body")?,
            message_id: r.try_get("message_id_header")?,
            in_reply_to: r.try_get("in_reply_to")?,
            references: reference_list(r.try_get("references_header")?),
            created_at: r.try_get("created_at")?,
        });
    }
    let file = Blob::new(mbox::render(&messages));
    let blob = store_blob(tx, &file, now).await?;
    let stmt = tx.prepare_cached(NEW_ATTACHMENT).await?;
    tx.execute(
        &stmt,
        &[
            &message,
            &blob,
            &thread_file_name(&p.account_key, previous.id),
            &MBOX_TYPE,
            &file.size(),
            &Option::<String>::None,
            &false,
            &now,
        ],
    )
    .await?;
    Ok(())
}
