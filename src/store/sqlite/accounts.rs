//! Mail accounts: settings, write-only passwords, the queue they route to.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Millis, Name, SqliteStore, ms};
use crate::domain::{AccountId, QueueId, TlsMode};
use crate::secret::Secret;
use crate::store::common::{self, account_taken, bigint, int, taken};
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
     WHERE a.id = ?1 AND a.deleted_at IS NULL"
);

const BY_KEY: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts a JOIN queues q ON q.id = a.queue_id
     WHERE a.key = ?1 AND a.deleted_at IS NULL"
);

const LIST: &str = concat!(
    "SELECT ",
    account_cols!(),
    " FROM accounts a JOIN queues q ON q.id = a.queue_id
     WHERE a.deleted_at IS NULL ORDER BY a.key"
);

// Parameters shared by INSERT and UPSERT: ?1 key … ?25 signature, ?26 now.
// Passwords ?8 and ?17 are NULL when the spec keeps the stored ones.
const INSERT: &str = "INSERT INTO accounts (key, address, queue_id,
         imap_host, imap_port, imap_tls, imap_username, imap_password, imap_folder,
         imap_accept_invalid_certs, imap_poll_secs, imap_sent_folder,
         smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password, smtp_accept_invalid_certs,
         import_since, subject_token, allow_mark_unread, show_preview,
         max_attachment_bytes, max_mail_bytes, signature, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, ''), ?9, ?10, ?11, ?12,
         ?13, ?14, ?15, ?16, COALESCE(?17, ''), ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?26)
     RETURNING id";

/// Like INSERT, but an existing key (even a deleted one) is updated and
/// revived; `import_since` is never changed, so a restart never re-imports.
const UPSERT: &str = "INSERT INTO accounts (key, address, queue_id,
         imap_host, imap_port, imap_tls, imap_username, imap_password, imap_folder,
         imap_accept_invalid_certs, imap_poll_secs, imap_sent_folder,
         smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password, smtp_accept_invalid_certs,
         import_since, subject_token, allow_mark_unread, show_preview,
         max_attachment_bytes, max_mail_bytes, signature, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, ''), ?9, ?10, ?11, ?12,
         ?13, ?14, ?15, ?16, COALESCE(?17, ''), ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?26)
     ON CONFLICT (key) DO UPDATE SET
         address = excluded.address, queue_id = excluded.queue_id,
         imap_host = excluded.imap_host, imap_port = excluded.imap_port,
         imap_tls = excluded.imap_tls, imap_username = excluded.imap_username,
         imap_password = COALESCE(?8, accounts.imap_password),
         imap_folder = excluded.imap_folder,
         imap_accept_invalid_certs = excluded.imap_accept_invalid_certs,
         imap_poll_secs = excluded.imap_poll_secs, imap_sent_folder = excluded.imap_sent_folder,
         smtp_host = excluded.smtp_host, smtp_port = excluded.smtp_port,
         smtp_tls = excluded.smtp_tls, smtp_username = excluded.smtp_username,
         smtp_password = COALESCE(?17, accounts.smtp_password),
         smtp_accept_invalid_certs = excluded.smtp_accept_invalid_certs,
         subject_token = excluded.subject_token, allow_mark_unread = excluded.allow_mark_unread,
         show_preview = excluded.show_preview,
         max_attachment_bytes = excluded.max_attachment_bytes,
         max_mail_bytes = excluded.max_mail_bytes, signature = excluded.signature,
         updated_at = excluded.updated_at, deleted_at = NULL
     RETURNING id";

/// Same parameter numbers as INSERT, plus ?27 the account's id; ?1 (the key)
/// is not written, and a NULL ?19 keeps `import_since`.
const UPDATE: &str = "UPDATE accounts SET
         address = ?2, queue_id = ?3,
         imap_host = ?4, imap_port = ?5, imap_tls = ?6, imap_username = ?7,
         imap_password = COALESCE(?8, imap_password), imap_folder = ?9,
         imap_accept_invalid_certs = ?10, imap_poll_secs = ?11, imap_sent_folder = ?12,
         smtp_host = ?13, smtp_port = ?14, smtp_tls = ?15, smtp_username = ?16,
         smtp_password = COALESCE(?17, smtp_password), smtp_accept_invalid_certs = ?18,
         import_since = COALESCE(?19, import_since),
         subject_token = ?20, allow_mark_unread = ?21, show_preview = ?22,
         max_attachment_bytes = ?23, max_mail_bytes = ?24, signature = ?25, updated_at = ?26
     WHERE id = ?27 AND key = ?1 AND deleted_at IS NULL
     RETURNING id";

fn account_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: AccountId(row.get("id")?),
        key: row.get("key")?,
        address: row.get("address")?,
        queue: row.get("queue_name")?,
        queue_id: QueueId(row.get("queue_id")?),
        imap: ImapSettings {
            host: row.get("imap_host")?,
            port: row.get("imap_port")?,
            tls: row.get::<_, Name<TlsMode>>("imap_tls")?.0,
            username: row.get("imap_username")?,
            folder: row.get("imap_folder")?,
            accept_invalid_certs: row.get("imap_accept_invalid_certs")?,
            poll_secs: row.get("imap_poll_secs")?,
            sent_folder: row.get("imap_sent_folder")?,
        },
        smtp: SmtpSettings {
            host: row.get("smtp_host")?,
            port: row.get("smtp_port")?,
            tls: row.get::<_, Name<TlsMode>>("smtp_tls")?.0,
            username: row.get("smtp_username")?,
            accept_invalid_certs: row.get("smtp_accept_invalid_certs")?,
        },
        import_since: row.get::<_, Millis>("import_since")?.0,
        options: AccountOptions {
            subject_token: row.get("subject_token")?,
            allow_mark_unread: row.get("allow_mark_unread")?,
            show_preview: row.get("show_preview")?,
            max_attachment_bytes: unsigned(row, "max_attachment_bytes")?,
            max_mail_bytes: unsigned(row, "max_mail_bytes")?,
            signature: row.get("signature")?,
        },
        created_at: row.get::<_, Millis>("created_at")?.0,
        updated_at: row.get::<_, Millis>("updated_at")?.0,
    })
}

/// A byte size (a `bigint`, never negative by the schema's CHECK) as a `u64`.
fn unsigned(row: &Row<'_>, column: &str) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| {
        let index = row.as_ref().column_index(column).unwrap_or_default();
        rusqlite::Error::IntegralValueOutOfRange(index, value)
    })
}

/// A spec's numbers, checked to fit the columns before any work is done.
struct Numbers {
    imap_poll_secs: i32,
    max_attachment_bytes: i64,
    max_mail_bytes: i64,
}

impl Numbers {
    fn of(spec: &AccountSpec) -> StoreResult<Numbers> {
        Ok(Numbers {
            imap_poll_secs: int(spec.imap.poll_secs, "imap poll_secs")?,
            max_attachment_bytes: bigint(
                spec.options.max_attachment_bytes,
                "max_attachment_bytes",
            )?,
            max_mail_bytes: bigint(spec.options.max_mail_bytes, "max_mail_bytes")?,
        })
    }
}

/// The id of the active queue named `name`, or `Invalid`.
fn queue_id(conn: &Connection, name: &str) -> StoreResult<i64> {
    conn.prepare_cached("SELECT id FROM queues WHERE name = ?1 AND deleted_at IS NULL")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .ok_or_else(|| common::unknown_queue(name))
}

fn load(conn: &Connection, id: i64) -> StoreResult<Account> {
    conn.prepare_cached(BY_ID)?
        .query_row([id], account_row)
        .optional()?
        .ok_or(StoreError::NotFound("account"))
}

/// Run `sql` (INSERT, UPSERT or UPDATE, each `RETURNING id`) with the
/// spec's values in the numbered places they share: `import_since` is ?19,
/// and `id` (UPDATE only) is ?27.
fn write_spec(
    conn: &Connection,
    sql: &str,
    spec: &AccountSpec,
    n: &Numbers,
    queue: i64,
    import_since: Option<Millis>,
    id: Option<i64>,
) -> rusqlite::Result<Option<i64>> {
    let imap_password = spec.imap_password.as_ref().map(Secret::expose);
    let smtp_password = spec.smtp_password.as_ref().map(Secret::expose);
    let now = ms(common::now());
    let shared = params![
        spec.key,
        spec.address,
        queue,
        spec.imap.host,
        spec.imap.port,
        spec.imap.tls.as_str(),
        spec.imap.username,
        imap_password,
        spec.imap.folder,
        spec.imap.accept_invalid_certs,
        n.imap_poll_secs,
        spec.imap.sent_folder,
        spec.smtp.host,
        spec.smtp.port,
        spec.smtp.tls.as_str(),
        spec.smtp.username,
        smtp_password,
        spec.smtp.accept_invalid_certs,
        import_since,
        spec.options.subject_token,
        spec.options.allow_mark_unread,
        spec.options.show_preview,
        n.max_attachment_bytes,
        n.max_mail_bytes,
        spec.options.signature,
        now,
    ];
    let mut values = shared.to_vec();
    if let Some(id) = &id {
        values.push(id);
    }
    conn.prepare_cached(sql)?
        .query_row(values.as_slice(), |row| row.get(0))
        .optional()
}

impl SqliteStore {
    pub async fn upsert_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        self.write(move |tx| {
            let queue = queue_id(tx, &spec.queue)?;
            let since = ms(spec
                .import_since
                .map(common::millis)
                .unwrap_or_else(common::now));
            let id = write_spec(tx, UPSERT, &spec, &n, queue, Some(since), None)?
                .ok_or(StoreError::NotFound("account"))?;
            load(tx, id)
        })
        .await
    }

    pub async fn create_account(&self, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        self.write(move |tx| {
            let queue = queue_id(tx, &spec.queue)?;
            let since = ms(spec
                .import_since
                .map(common::millis)
                .unwrap_or_else(common::now));
            let id = write_spec(tx, INSERT, &spec, &n, queue, Some(since), None)
                .map_err(StoreError::from)
                .map_err(taken(|| account_taken(&spec.key)))?
                .ok_or(StoreError::NotFound("account"))?;
            load(tx, id)
        })
        .await
    }

    pub async fn update_account(&self, id: AccountId, spec: AccountSpec) -> StoreResult<Account> {
        let n = Numbers::of(&spec)?;
        self.write(move |tx| {
            let stored: String = tx
                .prepare_cached("SELECT key FROM accounts WHERE id = ?1 AND deleted_at IS NULL")?
                .query_row([id.0], |row| row.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("account"))?;
            if stored != spec.key {
                return Err(common::key_is_fixed(&stored, &spec.key));
            }
            let queue = queue_id(tx, &spec.queue)?;
            let since = spec.import_since.map(|t| ms(common::millis(t)));
            write_spec(tx, UPDATE, &spec, &n, queue, since, Some(id.0))?
                .ok_or(StoreError::NotFound("account"))?;
            load(tx, id.0)
        })
        .await
    }

    pub async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        self.write(move |tx| {
            let now = ms(common::now());
            let deleted = tx
                .prepare_cached(
                    "UPDATE accounts SET deleted_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![id.0, now])?;
            if deleted == 0 {
                return Err(StoreError::NotFound("account"));
            }
            Ok(())
        })
        .await
    }

    pub async fn account(&self, id: AccountId) -> StoreResult<Account> {
        self.read(move |conn| load(conn, id.0)).await
    }

    pub async fn account_by_key(&self, key: &str) -> StoreResult<Account> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(BY_KEY)?
                .query_row([key], account_row)
                .optional()?
                .ok_or(StoreError::NotFound("account"))
        })
        .await
    }

    pub async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|conn| {
            let accounts = conn
                .prepare_cached(LIST)?
                .query_map([], account_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(accounts)
        })
        .await
    }

    pub async fn account_secrets(&self, id: AccountId) -> StoreResult<AccountSecrets> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT imap_password, smtp_password FROM accounts
                 WHERE id = ?1 AND deleted_at IS NULL",
            )?
            .query_row([id.0], |row| {
                Ok(AccountSecrets {
                    imap_password: Secret::new(row.get::<_, String>(0)?),
                    smtp_password: Secret::new(row.get::<_, String>(1)?),
                })
            })
            .optional()?
            .ok_or(StoreError::NotFound("account"))
        })
        .await
    }
}
