//! The disposition tree: see `store/dispositions.rs`.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use crate::domain::DispositionId;
use crate::store::common;
use crate::store::{Disposition, StoreError, StoreResult};

// Parents before children (by level), siblings by name (the column is
// COLLATE "C": bytewise, as SQLite).
const LIST: &str = "SELECT id, parent_id, name, level FROM dispositions
     ORDER BY level, name, id";

const LEVEL_OF: &str = "SELECT level FROM dispositions WHERE id = $1";

const INSERT: &str = "INSERT INTO dispositions (parent_id, name, level, created_at)
     VALUES ($1, $2, $3, $4)
     RETURNING id, parent_id, name, level";

const DELETE: &str = "DELETE FROM dispositions WHERE id = $1";

fn row(r: &Row) -> StoreResult<Disposition> {
    Ok(Disposition {
        id: DispositionId(r.try_get("id")?),
        parent: r.try_get::<_, Option<i64>>("parent_id")?.map(DispositionId),
        name: r.try_get("name")?,
        level: common::stored(i64::from(r.try_get::<_, i32>("level")?), "level")?,
    })
}

impl PgStore {
    pub async fn list_dispositions(&self) -> StoreResult<Vec<Disposition>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(LIST).await?;
        client.query(&stmt, &[]).await?.iter().map(row).collect()
    }

    pub async fn create_disposition(
        &self,
        name: String,
        parent: Option<DispositionId>,
    ) -> StoreResult<Disposition> {
        let client = self.client().await?;
        let level: i32 = match parent {
            None => 1,
            Some(p) => {
                let stmt = client.prepare_cached(LEVEL_OF).await?;
                let above: i32 = client
                    .query_opt(&stmt, &[&p.0])
                    .await?
                    .ok_or(StoreError::NotFound("parent disposition"))?
                    .try_get(0)?;
                above + 1
            }
        };
        if level > 3 {
            return Err(StoreError::Invalid(
                "dispositions have at most 3 levels".into(),
            ));
        }
        let stmt = client.prepare_cached(INSERT).await?;
        let r = client
            .query_one(
                &stmt,
                &[&parent.map(|p| p.0), &name, &level, &common::now()],
            )
            .await?;
        row(&r)
    }

    pub async fn delete_disposition(&self, id: DispositionId) -> StoreResult<()> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(DELETE).await?;
        match client.execute(&stmt, &[&id.0]).await? {
            0 => Err(StoreError::NotFound("disposition")),
            _ => Ok(()),
        }
    }
}
