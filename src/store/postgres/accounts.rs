//! Mail accounts: settings, write-only passwords, the queue they route to.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PgStore, name, unsigned};
use crate::domain::{AccountId, QueueId};
use crate::secret::Secret;
use crate::store::common::{self, account_taken, bigint, int, stored, taken};
use crate::store::{
    Account, AccountOptions, AccountSecrets, AccountSpec, ImapSettings, SmtpSettings, StoreError,
    StoreResult,
};

/// The columns [`account_row`] reads (`a` is accounts, `q` its queue).
macro_rules! account_cols {
    () => {
        "a.id, a.key, a.address, a.queue_id, q.name AS queue_name,
         a.imap_host, a.imap_port, a.imap_tls, a.imap_username, a.imap_folder,
         a.imap_accept_invalid_certs, a.imap_poll_secs, a.imap_sent_folder,
         a.smtp_host, a.smtp_port, a.smtp_tls, a.smtp_username, a.smtp_accept_invalid_certs,
         a.import_since, a.subject_token, a.allow_mark_unread, a.show_preview,
         a.max_attachment_bytes, a.max_mail_bytes, a.signature, a.created_at, a.updated_at"
    };
}

const BY_ID: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts a JOIN queues q ON q.id = a.queue_id
     WHERE a.id = $1 AND a.deleted_at IS NULL"
);

const BY_KEY: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts a JOIN queues q ON q.id = a.queue_id
     WHERE a.key = $1 AND a.deleted_at IS NULL"
);

const LIST: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts a JOIN queues q ON q.id = a.queue_id
     WHERE a.deleted_at IS NULL ORDER BY a.key"
);

// Parameters shared by INSERT and UPSERT: $1 key … $25 signature, $26 now.
// Passwords $8 and $17 are NULL when the spec keeps the stored ones.
const INSERT: &str = "INSERT INTO accounts (key, address, queue_id,
         imap_host, imap_port, imap_tls, imap_username, imap_password, imap_folder,
         imap_accept_invalid_certs, imap_poll_secs, imap_sent_folder,
         smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password, smtp_accept_invalid_certs,
         import_since, subject_token, allow_mark_unread, show_preview,
         max_attachment_bytes, max_mail_bytes, signature, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, ''), $9, $10, $11, $12,
         $13, $14, $15, $16, COALESCE($17, ''), $18, $19, $20, $21, $22, $23, $24, $25, $26, $26)
     RETURNING id";

/// Like INSERT, but an existing key (even a deleted one) is updated and
/// revived; `import_since` is never changed, so a restart never re-imports.
const UPSERT: &str = "INSERT INTO accounts (key, address, queue_id,
         imap_host, imap_port, imap_tls, imap_username, imap_password, imap_folder,
         imap_accept_invalid_certs, imap_poll_secs, imap_sent_folder,
         smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password, smtp_accept_invalid_certs,
         import_since, subject_token, allow_mark_unread, show_preview,
         max_attachment_bytes, max_mail_bytes, signature, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, ''), $9, $10, $11, $12,
         $13, $14, $15, $16, COALESCE($17, ''), $18, $19, $20, $21, $22, $23, $24, $25, $26, $26)
     ON CONFLICT (key) DO UPDATE SET
         address = excluded.address, queue_id = excluded.queue_id,
         imap_host = excluded.imap_host, imap_port = excluded.imap_port,
         imap_tls = excluded.imap_tls, imap_username = excluded.imap_username,
         imap_password = COALESCE($8, accounts.imap_password),
         imap_folder = excluded.imap_folder,
         imap_accept_invalid_certs = excluded.imap_accept_invalid_certs,
         imap_poll_secs = excluded.imap_poll_secs, imap_sent_folder = excluded.imap_sent_folder,
         smtp_host = excluded.smtp_host, smtp_port = excluded.smtp_port,
         smtp_tls = excluded.smtp_tls, smtp_username = excluded.smtp_username,
         smtp_password = COALESCE($17, accounts.smtp_password),
         smtp_accept_invalid_certs = excluded.smtp_accept_invalid_certs,
         subject_token = excluded.subject_token, allow_mark_unread = excluded.allow_mark_unread,
         show_preview = excluded.show_preview,
         max_attachment_bytes = excluded.max_attachment_bytes,
         max_mail_bytes = excluded.max_mail_bytes, signature = excluded.signature,
         updated_at = excluded.updated_at, deleted_at = NULL
     RETURNING id";

/// Same parameter numbers as INSERT, plus $27 the account's id; $1 (the key)
/// is not written, and a NULL $19 keeps `import_since`.
const UPDATE: &str = "UPDATE accounts SET
         address = $2, queue_id = $3,
         imap_host = $4, imap_port = $5, imap_tls = $6, imap_username = $7,
         imap_password = COALESCE($8, imap_password), imap_folder = $9,
         imap_accept_invalid_certs = $10, imap_poll_secs = $11, imap_sent_folder = $12,
         smtp_host = $13, smtp_port = $14, smtp_tls = $15, smtp_username = $16,
         smtp_password = COALESCE($17, smtp_password), smtp_accept_invalid_certs = $18,
         import_since = COALESCE($19, import_since),
         subject_token = $20, allow_mark_unread = $21, show_preview = $22,
         max_attachment_bytes = $23, max_mail_bytes = $24, signature = $25, updated_at = $26
     WHERE id = $27 AND key = $1 AND deleted_at IS NULL
     RETURNING id";

fn account_row(row: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId(row.try_get("id")?),
        key: row.try_get("key")?,
        address: row.try_get("address")?,
        queue: row.try_get("queue_name")?,
        queue_id: QueueId(row.try_get("queue_id")?),
        imap: ImapSettings {
            host: row.try_get("imap_host")?,
            port: unsigned(row, "imap_port")?,
            tls: name(row, "imap_tls")?,
            username: row.try_get("imap_username")?,
            folder: row.try_get("imap_folder")?,
            accept_invalid_certs: row.try_get("imap_accept_invalid_certs")?,
            poll_secs: unsigned(row, "imap_poll_secs")?,
            sent_folder: row.try_get("imap_sent_folder")?,
        },
        smtp: SmtpSettings {
            host: row.try_get("smtp_host")?,
            port: unsigned(row, "smtp_port")?,
            tls: name(row, "smtp_tls")?,
            username: row.try_get("smtp_username")?,
            accept_invalid_certs: row.try_get("smtp_accept_invalid_certs")?,
        },
        import_since: row.try_get("import_since")?,
        options: AccountOptions {
            subject_token: row.try_get("subject_token")?,
            allow_mark_unread: row.try_get("allow_mark_unread")?,
            show_preview: row.try_get("show_preview")?,
            max_attachment_bytes: stored(
                row.try_get("max_attachment_bytes")?,
                "max_attachment_bytes",
            )?,
            max_mail_bytes: stored(row.try_get("max_mail_bytes")?, "max_mail_bytes")?,
            signature: row.try_get("signature")?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A spec's numbers, checked to fit the columns before any work is done.
struct Numbers {
    imap_port: i32,
    imap_poll_secs: i32,
    smtp_port: i32,
    max_attachment_bytes: i64,
    max_mail_bytes: i64,
}

impl Numbers {
    fn of(spec: &AccountSpec) -> StoreResult<Numbers> {
        Ok(Numbers {
            imap_port: i32::from(spec.imap.port),
            imap_poll_secs: int(spec.imap.poll_secs, "imap poll_secs")?,
            smtp_port: i32::from(spec.smtp.port),
            max_attachment_bytes: bigint(
                spec.options.max_attachment_bytes,
                "max_attachment_bytes",
            )?,
            max_mail_bytes: bigint(spec.options.max_mail_bytes, "max_mail_bytes")?,
        })
    }
}

/// The id of the active queue named `name`, or `Invalid`.
async fn queue_id(tx: &Transaction<'_>, name: &str) -> StoreResult<i64> {
    // FOR SHARE holds the queue until commit, so that a concurrent
    // delete_queue (FOR UPDATE, then "is any account routed here?") cannot
    // slip between this check and our write.
    let stmt = tx
        .prepare_cached("SELECT id FROM queues WHERE name = $1 AND deleted_at IS NULL FOR SHARE")
        .await?;
    let row = tx
        .query_opt(&stmt, &[&name])
        .await?
        .ok_or_else(|| common::unknown_queue(name))?;
    Ok(row.try_get(0)?)
}

async fn load<C: GenericClient>(
    client: &C,
    sql: &str,
    key: &(dyn ToSql + Sync),
) -> StoreResult<Account> {
    let stmt = client.prepare_cached(sql).await?;
    let row = client
        .query_opt(&stmt, &[key])
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    account_row(&row)
}

/// Run `sql` (INSERT, UPSERT or UPDATE, each `RETURNING id`) with the
/// spec's values in the numbered places they share: `import_since` is $19,
/// and `id` (UPDATE only) is $27.
async fn write_spec(
    tx: &Transaction<'_>,
    sql: &str,
    spec: &AccountSpec,
    n: &Numbers,
    queue: i64,
    import_since: Option<DateTime<Utc>>,
    id: Option<i64>,
) -> StoreResult<Option<i64>> {
    let imap_password = spec.imap_password.as_ref().map(Secret::expose);
    let smtp_password = spec.smtp_password.as_ref().map(Secret::expose);
    let imap_tls = spec.imap.tls.as_str();
    let smtp_tls = spec.smtp.tls.as_str();
    let now = common::now();
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![
        &spec.key,
        &spec.address,
        &queue,
        &spec.imap.host,
        &n.imap_port,
        &imap_tls,
        &spec.imap.username,
        &imap_password,
        &spec.imap.folder,
        &spec.imap.accept_invalid_certs,
        &n.imap_poll_secs,
        &spec.imap.sent_folder,
        &spec.smtp.host,
        &n.smtp_port,
        &smtp_tls,
        &spec.smtp.username,
        &smtp_password,
        &spec.smtp.accept_invalid_certs,
        &import_since,
        &spec.options.subject_token,
        &spec.options.allow_mark_unread,
        &spec.options.show_preview,
        &n.max_attachment_bytes,
        &n.max_mail_bytes,
        &spec.options.signature,
        &now,
    ];
    if let Some(id) = &id {
        values.push(id);
    }
    let stmt = tx.prepare_cached(sql).await?;
    tx.query_opt(&stmt, &values)
        .await?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(StoreError::from)
}

impl PgStore {
    pub async fn upsert_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let queue = queue_id(&tx, &spec.queue).await?;
        let since = spec
            .import_since
            .map(common::millis)
            .unwrap_or_else(common::now);
        let id = write_spec(&tx, UPSERT, &spec, &n, queue, Some(since), None)
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        let account = load(&tx, BY_ID, &id).await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn create_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let queue = queue_id(&tx, &spec.queue).await?;
        let since = spec
            .import_since
            .map(common::millis)
            .unwrap_or_else(common::now);
        let id = write_spec(&tx, INSERT, &spec, &n, queue, Some(since), None)
            .await
            .map_err(taken(|| account_taken(&spec.key)))?
            .ok_or(StoreError::NotFound("account"))?;
        let account = load(&tx, BY_ID, &id).await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn update_account(&self, id: AccountId, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "SELECT key FROM accounts WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            )
            .await?;
        let stored_key: String = tx
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("account"))?
            .try_get(0)?;
        if stored_key != spec.key {
            return Err(common::key_is_fixed(&stored_key, &spec.key));
        }
        let queue = queue_id(&tx, &spec.queue).await?;
        let since = spec.import_since.map(common::millis);
        write_spec(&tx, UPDATE, &spec, &n, queue, since, Some(id.0))
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        let account = load(&tx, BY_ID, &id.0).await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE accounts SET deleted_at = $2, updated_at = $2
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .await?;
        if client.execute(&stmt, &[&id.0, &common::now()]).await? == 0 {
            return Err(StoreError::NotFound("account"));
        }
        Ok(())
    }

    pub async fn account(&self, id: AccountId) -> StoreResult<Account> {
        let client = self.client().await?;
        load(&client, BY_ID, &id.0).await
    }

    pub async fn account_by_key(&self, key: &str) -> StoreResult<Account> {
        let client = self.client().await?;
        load(&client, BY_KEY, &key).await
    }

    pub async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIST).await?;
        client
            .query(&stmt, &[])
            .await?
            .iter()
            .map(account_row)
            .collect()
    }

    pub async fn account_secrets(&self, id: AccountId) -> StoreResult<AccountSecrets> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT imap_password, smtp_password FROM accounts
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id.0])
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        Ok(AccountSecrets {
            imap_password: Secret::new(row.try_get::<_, String>(0)?),
            smtp_password: Secret::new(row.try_get::<_, String>(1)?),
        })
    }
}
