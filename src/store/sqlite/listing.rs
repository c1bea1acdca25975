//! The interactions list: see `store/listing.rs` (the SQL is built there).

use rusqlite::ToSql;
use rusqlite::types::Value;

use super::SqliteStore;
use super::interactions::{interaction_cols, interaction_row};
use crate::store::StoreResult;
use crate::store::listing::{Arg, Dialect, ListFilter, ListPage, list_sql, page};

fn value(arg: Arg) -> Value {
    match arg {
        Arg::Int(i) => Value::Integer(i),
        Arg::Text(t) => Value::Text(t),
        Arg::Time(t) => Value::Integer(t.timestamp_millis()),
        Arg::Bool(b) => Value::Integer(i64::from(b)),
        // Lists are sent as JSON text for SQLite (see `list_sql`).
        Arg::Texts(list) => Value::Text(serde_json::Value::from(list).to_string()),
    }
}

impl SqliteStore {
    pub async fn list_interactions(&self, filter: ListFilter) -> StoreResult<ListPage> {
        let (tail, args) = list_sql(&filter, Dialect::Sqlite);
        let sql = format!(
            "SELECT {} FROM interactions i\n{tail}",
            interaction_cols!().replace("\n", " ")
        );
        let values: Vec<Value> = args.into_iter().map(value).collect();
        let limit = filter.limit;
        self.read(move |conn| {
            let params: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params.as_slice(), interaction_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page(rows, limit))
        })
        .await
    }
}
