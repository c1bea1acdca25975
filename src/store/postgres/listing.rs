//! The interactions list: see `store/listing.rs` (the SQL is built there).

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::PgStore;
use super::interactions::{interaction_cols, interaction_row};
use crate::store::StoreResult;
use crate::store::listing::{Arg, Dialect, ListFilter, ListPage, list_sql, page};

fn value(arg: Arg) -> Box<dyn ToSql + Sync + Send> {
    match arg {
        Arg::Int(i) => Box::new(i),
        Arg::Text(t) => Box::new(t),
        Arg::Time(t) => Box::new(t),
        Arg::Bool(b) => Box::new(b),
        Arg::Texts(list) => Box::new(list),
    }
}

impl PgStore {
    pub async fn list_interactions(&self, filter: ListFilter) -> StoreResult<ListPage> {
        let (tail, args) = list_sql(&filter, Dialect::Postgres);
        let sql = format!("SELECT {} FROM interactions i\n{tail}", interaction_cols!());
        let values: Vec<Box<dyn ToSql + Sync + Send>> = args.into_iter().map(value).collect();
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client.query(&stmt, &params).await?;
        let items = rows
            .iter()
            .map(interaction_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, filter.limit))
    }

    /// `EXPLAIN (ANALYZE, BUFFERS)` of the query [`Self::list_interactions`]
    /// runs for `filter`, as text.
    pub async fn explain_list(&self, filter: ListFilter) -> StoreResult<String> {
        let (tail, args) = list_sql(&filter, Dialect::Postgres);
        let sql = format!(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT {} FROM interactions i\n{tail}",
            interaction_cols!()
        );
        let values: Vec<Box<dyn ToSql + Sync + Send>> = args.into_iter().map(value).collect();
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let rows = client.query(&sql, &params).await?;
        let lines = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(lines.join("\n"))
    }
}
