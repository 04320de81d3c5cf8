//! Logical snapshots on SQLite: export from one read transaction, restore in one write
//! transaction.

use futures_util::StreamExt as _;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, Sqlite, Transaction};
use store::snapshot::{Cell, ColumnKind, RestoreTarget, Row, TABLES, TableSpec, drive_restore};
use store::{RestoreCounts, SnapshotSink, SnapshotSource, StoreError, StoreResult};
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::db_err;

/// Rows inserted per statement on restore (SQLite allows 32,766 bound values).
const ROWS_PER_INSERT: usize = 200;

pub(crate) async fn export(store: &SqliteStore, sink: &mut dyn SnapshotSink) -> StoreResult<()> {
    // A deferred transaction: its first read fixes the snapshot (WAL), writers carry on.
    let mut tx = store.pool.begin().await.map_err(db_err)?;
    for table in TABLES {
        sink.table(table).await.map_err(StoreError::Snapshot)?;
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            table.column_list(),
            table.name,
            table.order_by
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        while let Some(row) = rows.next().await {
            let row = row.map_err(db_err)?;
            sink.row(read_row(table, &row)?)
                .await
                .map_err(StoreError::Snapshot)?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

fn read_row(table: &TableSpec, row: &SqliteRow) -> StoreResult<Row> {
    let corrupt =
        |column: &str, e: sqlx::Error| StoreError::Corrupt(format!("{}.{column}: {e}", table.name));
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let cell = match column.kind {
                ColumnKind::Uuid => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(|bytes| {
                        Uuid::from_slice(&bytes).map(Cell::Uuid).map_err(|_| {
                            StoreError::Corrupt(format!(
                                "{}.{}: not a 16-byte id",
                                table.name, column.name
                            ))
                        })
                    })
                    .transpose()?,
                ColumnKind::Int => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Int),
                ColumnKind::Bool => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(|v| Cell::Bool(v != 0)),
                ColumnKind::Text => row
                    .try_get::<Option<String>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Text),
                ColumnKind::Bytes => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Bytes),
                ColumnKind::Json => row
                    .try_get::<Option<String>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Json),
            };
            Ok(cell.unwrap_or(Cell::Null))
        })
        .collect()
}

pub(crate) async fn restore(
    store: &SqliteStore,
    source: &mut dyn SnapshotSource,
    commit: bool,
) -> StoreResult<RestoreCounts> {
    let (_guard, mut tx) = store.write_tx().await?;
    refuse_if_not_empty(&mut tx).await?;
    // Foreign keys are checked at commit: a reply may sort before the message it answers
    // (clocks of two hosts), and SQLite has keys PostgreSQL does not (in_reply_to).
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut target = Target(tx);
    let counts = drive_restore(source, &mut target, ROWS_PER_INSERT).await?;
    let Target(mut tx) = target;
    // The deferred keys, checked now so that a dry run finds what a commit would refuse.
    let broken = sqlx::query("SELECT \"table\", parent FROM pragma_foreign_key_check LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if let Some(row) = broken {
        let table: String = row.try_get(0).map_err(db_err)?;
        let parent: String = row.try_get(1).map_err(db_err)?;
        return Err(StoreError::Snapshot(format!(
            "{table}: a row refers to a missing {parent} row"
        )));
    }
    if commit {
        tx.commit().await.map_err(db_err)?;
    } else {
        tx.rollback().await.map_err(db_err)?;
    }
    Ok(counts)
}

async fn refuse_if_not_empty(tx: &mut Transaction<'static, Sqlite>) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM tenants) AS tenants, (SELECT count(*) FROM jobs) AS jobs",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    let tenants: i64 = row.try_get("tenants").map_err(db_err)?;
    let jobs: i64 = row.try_get("jobs").map_err(db_err)?;
    if tenants > 0 || jobs > 0 {
        return Err(StoreError::Conflict(format!(
            "the database is not empty ({tenants} tenants, {jobs} jobs): restore into an empty database"
        )));
    }
    Ok(())
}

struct Target(Transaction<'static, Sqlite>);

#[async_trait::async_trait]
impl RestoreTarget for Target {
    async fn insert(&mut self, table: &'static TableSpec, rows: Vec<Row>) -> StoreResult<()> {
        insert(&mut self.0, table, &rows).await
    }
}

async fn insert(
    tx: &mut Transaction<'static, Sqlite>,
    table: &TableSpec,
    rows: &[Row],
) -> StoreResult<()> {
    let one = format!("({})", vec!["?"; table.columns.len()].join(", "));
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        table.name,
        table.column_list(),
        vec![one.as_str(); rows.len()].join(", ")
    );
    // Table and column names come from the static `TABLES`; values are bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for cell in row {
            query = match cell {
                Cell::Null => query.bind(None::<i64>),
                Cell::Uuid(u) => query.bind(u.as_bytes().as_slice()),
                Cell::Int(v) => query.bind(*v),
                Cell::Bool(v) => query.bind(i64::from(*v)),
                Cell::Text(v) | Cell::Json(v) => query.bind(v.as_str()),
                Cell::Bytes(v) => query.bind(v.as_slice()),
            };
        }
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::Snapshot(format!("{}: {}", table.name, db_err(e))))?;
    Ok(())
}

pub(crate) async fn schema_columns(store: &SqliteStore) -> StoreResult<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c FROM sqlite_schema m, pragma_table_xinfo(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND p.hidden = 0 ORDER BY m.name, p.cid",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("t").map_err(db_err)?,
                r.try_get("c").map_err(db_err)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_orders_by_one_of_its_columns() {
        for table in store::snapshot::TABLES {
            assert!(
                table
                    .order_by
                    .split(", ")
                    .all(|c| table.column(c).is_some()),
                "{} orders by {}",
                table.name,
                table.order_by
            );
        }
    }
}
