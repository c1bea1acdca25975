//! The disposition tree: see `store/dispositions.rs`.

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, ms};
use crate::domain::DispositionId;
use crate::store::common;
use crate::store::{Disposition, StoreError, StoreResult};

// Parents before children (by level), siblings by name.
const LIST: &str = "SELECT id, parent_id, name, level FROM dispositions ORDER BY level, name, id";

const LEVEL_OF: &str = "SELECT level FROM dispositions WHERE id = ?1";

const INSERT: &str = "INSERT INTO dispositions (parent_id, name, level, created_at)
     VALUES (?1, ?2, ?3, ?4)
     RETURNING id, parent_id, name, level";

const DELETE: &str = "DELETE FROM dispositions WHERE id = ?1";

fn row(r: &Row<'_>) -> rusqlite::Result<Disposition> {
    Ok(Disposition {
        id: DispositionId(r.get("id")?),
        parent: r.get::<_, Option<i64>>("parent_id")?.map(DispositionId),
        name: r.get("name")?,
        level: r.get("level")?,
    })
}

impl SqliteStore {
    pub async fn list_dispositions(&self) -> StoreResult<Vec<Disposition>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(LIST)?
                .query_map([], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub async fn create_disposition(
        &self,
        name: String,
        parent: Option<DispositionId>,
    ) -> StoreResult<Disposition> {
        self.write(move |tx| {
            let level: i64 = match parent {
                None => 1,
                Some(p) => {
                    let above: i64 = tx
                        .prepare_cached(LEVEL_OF)?
                        .query_row([p.0], |r| r.get(0))
                        .optional()?
                        .ok_or(StoreError::NotFound("parent disposition"))?;
                    above + 1
                }
            };
            if level > 3 {
                return Err(StoreError::Invalid(
                    "dispositions have at most 3 levels".into(),
                ));
            }
            Ok(tx.prepare_cached(INSERT)?.query_row(
                params![parent.map(|p| p.0), name, level, ms(common::now())],
                row,
            )?)
        })
        .await
    }

    pub async fn delete_disposition(&self, id: DispositionId) -> StoreResult<()> {
        self.write(move |tx| {
            // Children go with their parent (ON DELETE CASCADE needs the
            // pragma, which the store turns on for every connection).
            match tx.prepare_cached(DELETE)?.execute([id.0])? {
                0 => Err(StoreError::NotFound("disposition")),
                _ => Ok(()),
            }
        })
        .await
    }
}
