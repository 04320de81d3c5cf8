//! Logical snapshots on PostgreSQL: export from one repeatable-read, read-only transaction;
//! restore in one transaction. Both run as the application role under row-level security:
//! tenant tables are read and written one tenant at a time, with `app.tenant_id` set for
//! that tenant.

use futures_util::StreamExt as _;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row as _, Transaction};
use store::snapshot::{Cell, ColumnKind, RestoreTarget, Row, TABLES, TableSpec, drive_restore};
use store::{RestoreCounts, SnapshotSink, SnapshotSource, StoreError, StoreResult};
use uuid::Uuid;

use crate::PgStore;
use crate::rows::db_err;

/// Rows inserted per statement on restore (one array per column, so no parameter limit).
const ROWS_PER_INSERT: usize = 1000;

pub(crate) async fn export(store: &PgStore, sink: &mut dyn SnapshotSink) -> StoreResult<()> {
    // One snapshot for the whole export, and no statement time limit: one table is one
    // streamed query, however large.
    let mut tx = store
        .pool
        .begin_with(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 0",
        )
        .await
        .map_err(db_err)?;
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    for table in TABLES {
        sink.table(table).await.map_err(StoreError::Snapshot)?;
        let select = select_sql(table);
        if table.tenant_scoped {
            // Row-level security shows one tenant at a time; the explicit filter keeps a role
            // that bypasses it (a superuser) from exporting every row once per tenant.
            for tenant in &tenants {
                set_tenant(&mut tx, *tenant).await?;
                stream_rows(&mut tx, table, &select, Some(*tenant), sink).await?;
            }
        } else {
            stream_rows(&mut tx, table, &select, None, sink).await?;
        }
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

fn select_sql(table: &TableSpec) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnKind::Int => format!("t.{0}::bigint AS {0}", c.name),
            ColumnKind::Json => format!("t.{0}::text AS {0}", c.name),
            _ => format!("t.{}", c.name),
        })
        .collect();
    let order: Vec<String> = table
        .order_by
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect();
    let (from, filter) = match (table.tenant_scoped, table.name) {
        // Messages are found through their conversations' (tenant_id, id) index: no index on
        // messages.tenant_id slows the hot insert path.
        (true, "messages") => (
            "messages t JOIN conversations c ON c.tenant_id = t.tenant_id AND c.id = t.conversation_id".to_owned(),
            " WHERE c.tenant_id = $1",
        ),
        (true, name) => (format!("{name} t"), " WHERE t.tenant_id = $1"),
        (false, name) => (format!("{name} t"), ""),
    };
    format!(
        "SELECT {} FROM {from}{filter} ORDER BY {}",
        columns.join(", "),
        order.join(", ")
    )
}

async fn set_tenant(tx: &mut Transaction<'static, Postgres>, tenant: Uuid) -> StoreResult<()> {
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn stream_rows(
    tx: &mut Transaction<'static, Postgres>,
    table: &'static TableSpec,
    select: &str,
    tenant: Option<Uuid>,
    sink: &mut dyn SnapshotSink,
) -> StoreResult<()> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(select));
    if let Some(tenant) = tenant {
        query = query.bind(tenant);
    }
    let mut rows = query.fetch(&mut **tx);
    while let Some(row) = rows.next().await {
        let row = row.map_err(db_err)?;
        sink.row(read_row(table, &row)?)
            .await
            .map_err(StoreError::Snapshot)?;
    }
    Ok(())
}

fn read_row(table: &TableSpec, row: &PgRow) -> StoreResult<Row> {
    let corrupt =
        |column: &str, e: sqlx::Error| StoreError::Corrupt(format!("{}.{column}: {e}", table.name));
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let cell = match column.kind {
                ColumnKind::Uuid => row
                    .try_get::<Option<Uuid>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Uuid),
                ColumnKind::Int => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Int),
                ColumnKind::Bool => row
                    .try_get::<Option<bool>, _>(i)
                    .map_err(|e| corrupt(column.name, e))?
                    .map(Cell::Bool),
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
    store: &PgStore,
    source: &mut dyn SnapshotSource,
    commit: bool,
) -> StoreResult<RestoreCounts> {
    let mut tx = store
        .pool
        .begin_with("BEGIN; SET LOCAL statement_timeout = 0")
        .await
        .map_err(db_err)?;
    refuse_if_not_empty(&mut tx).await?;
    let mut target = Target {
        tx,
        current_tenant: None,
        insert: None,
    };
    let counts = drive_restore(source, &mut target, ROWS_PER_INSERT).await?;
    let Target { tx, .. } = target;
    if commit {
        tx.commit().await.map_err(db_err)?;
    } else {
        tx.rollback().await.map_err(db_err)?;
    }
    Ok(counts)
}

struct Target {
    tx: Transaction<'static, Postgres>,
    /// The tenant `app.tenant_id` is set to in the transaction.
    current_tenant: Option<Uuid>,
    /// The INSERT of the table being restored, built once per table.
    insert: Option<(&'static str, String)>,
}

#[async_trait::async_trait]
impl RestoreTarget for Target {
    async fn insert(&mut self, table: &'static TableSpec, mut rows: Vec<Row>) -> StoreResult<()> {
        let Self {
            tx,
            current_tenant,
            insert,
        } = self;
        let insert = match insert {
            Some((name, sql)) if *name == table.name => sql,
            _ => &insert.insert((table.name, insert_sql(table))).1,
        };
        let Some(tc) = table.tenant_column().filter(|_| table.tenant_scoped) else {
            return insert_rows(tx, table, insert, &rows).await;
        };
        // Row-level security: each run of rows of one tenant goes in with that tenant set.
        // Within a batch, rows are grouped by tenant (no foreign key orders rows of one
        // table on PostgreSQL), so a snapshot with tenants interleaved stays fast.
        rows.sort_by_key(|r| r[tc].as_uuid());
        for run in rows.chunk_by(|a, b| a[tc] == b[tc]) {
            let tenant = run[0][tc].as_uuid().ok_or_else(|| {
                StoreError::Snapshot(format!("{}: a row has no tenant", table.name))
            })?;
            if *current_tenant != Some(tenant) {
                set_tenant(tx, tenant).await?;
                *current_tenant = Some(tenant);
            }
            insert_rows(tx, table, insert, run).await?;
        }
        Ok(())
    }
}

async fn refuse_if_not_empty(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    let (tenants, jobs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM jobs)")
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
    if tenants > 0 || jobs > 0 {
        return Err(StoreError::Conflict(format!(
            "the database is not empty ({tenants} tenants, {jobs} jobs): restore into an empty database"
        )));
    }
    Ok(())
}

/// `INSERT INTO t (a, b) SELECT c0, c1::jsonb FROM UNNEST($1::uuid[], $2::text[]) AS u(c0, c1)`.
fn insert_sql(table: &TableSpec) -> String {
    let mut arrays = Vec::new();
    let mut selects = Vec::new();
    let mut aliases = Vec::new();
    for (i, column) in table.columns.iter().enumerate() {
        let array = match column.kind {
            ColumnKind::Uuid => "uuid[]",
            ColumnKind::Int => "bigint[]",
            ColumnKind::Bool => "boolean[]",
            ColumnKind::Text | ColumnKind::Json => "text[]",
            ColumnKind::Bytes => "bytea[]",
        };
        arrays.push(format!("${}::{array}", i + 1));
        aliases.push(format!("c{i}"));
        selects.push(if column.kind == ColumnKind::Json {
            format!("c{i}::jsonb")
        } else {
            format!("c{i}")
        });
    }
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
        table.name,
        table.column_list(),
        selects.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )
}

async fn insert_rows(
    tx: &mut Transaction<'static, Postgres>,
    table: &TableSpec,
    sql: &str,
    rows: &[Row],
) -> StoreResult<()> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (i, column) in table.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| &r[i]);
        query = match column.kind {
            ColumnKind::Uuid => query.bind(cells.map(Cell::as_uuid).collect::<Vec<_>>()),
            ColumnKind::Int => query.bind(
                cells
                    .map(|c| match c {
                        Cell::Int(v) => Some(*v),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            ColumnKind::Bool => query.bind(
                cells
                    .map(|c| match c {
                        Cell::Bool(v) => Some(*v),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            ColumnKind::Text | ColumnKind::Json => query.bind(
                cells
                    .map(|c| match c {
                        Cell::Text(v) | Cell::Json(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            ColumnKind::Bytes => query.bind(
                cells
                    .map(|c| match c {
                        Cell::Bytes(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
        };
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::Snapshot(format!("{}: {}", table.name, db_err(e))))?;
    Ok(())
}

pub(crate) async fn schema_columns(store: &PgStore) -> StoreResult<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_generated = 'NEVER' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(db_err)
}
