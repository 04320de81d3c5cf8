//! Knowledge-base vectors on SQLite: one row per entry in `kb_embeddings`, the vector as
//! little-endian `f32` bytes. Writes queue on the store's write lock like every other.

use domain::{KbEntryId, TenantId};
use sqlx::{QueryBuilder, Row, Sqlite};
use store::{KbEntry, Page, StoreError, StoreResult, vector_from_bytes, vector_to_bytes};

use crate::SqliteStore;
use crate::rows::{db_err, now_ms, read_kb};

/// Ids bound in one `IN (...)` list, well under SQLite's limit on parameters.
const IDS_PER_QUERY: usize = 500;

pub(crate) async fn get_entries(
    store: &SqliteStore,
    tenant: TenantId,
    ids: &[KbEntryId],
) -> StoreResult<Vec<KbEntry>> {
    let mut ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.into_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut entries = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = ",
        );
        query.push_bind(tenant.into_uuid()).push(" AND id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        let rows = query
            .build()
            .fetch_all(store.pool())
            .await
            .map_err(db_err)?;
        for row in &rows {
            entries.push(read_kb(row)?);
        }
    }
    Ok(entries)
}

pub(crate) async fn put(
    store: &SqliteStore,
    tenant: TenantId,
    entry: &KbEntry,
    model: &str,
    content_hash: &[u8; 32],
    vector: &[f32],
) -> StoreResult<()> {
    if vector.is_empty() {
        return Err(StoreError::Database("an empty vector".into()));
    }
    let dims = i64::try_from(vector.len())
        .map_err(|_| StoreError::Database("a vector too long to store".into()))?;
    let (_writer, mut tx) = store.write_tx().await?;
    let done = sqlx::query(
        "INSERT INTO kb_embeddings (entry_id, tenant_id, model, dims, vector, content_hash, source_updated_at, updated_at) \
         SELECT id, tenant_id, ?, ?, ?, ?, ?, ? FROM kb_entries WHERE tenant_id = ? AND id = ? \
         ON CONFLICT (entry_id) DO UPDATE SET model = excluded.model, dims = excluded.dims, \
         vector = excluded.vector, content_hash = excluded.content_hash, \
         source_updated_at = excluded.source_updated_at, updated_at = excluded.updated_at",
    )
    .bind(model)
    .bind(dims)
    .bind(vector_to_bytes(vector))
    .bind(&content_hash[..])
    .bind(entry.updated_at.as_millisecond())
    .bind(now_ms())
    .bind(tenant.into_uuid())
    .bind(entry.id.into_uuid())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) async fn vectors(
    store: &SqliteStore,
    tenant: TenantId,
    model: &str,
) -> StoreResult<Vec<(KbEntryId, Vec<f32>)>> {
    let rows = sqlx::query(
        "SELECT entry_id, dims, vector FROM kb_embeddings WHERE tenant_id = ? AND model = ?",
    )
    .bind(tenant.into_uuid())
    .bind(model)
    .fetch_all(store.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("entry_id").map_err(db_err)?;
            let dims: i64 = row.try_get("dims").map_err(db_err)?;
            let bytes: Vec<u8> = row.try_get("vector").map_err(db_err)?;
            let vector = vector_from_bytes(&bytes)
                .filter(|v| i64::try_from(v.len()).is_ok_and(|n| n == dims))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("the vector of kb entry {id} is not {dims} long"))
                })?;
            Ok((KbEntryId::from_uuid(id), vector))
        })
        .collect()
}

pub(crate) async fn to_embed(
    store: &SqliteStore,
    tenant: TenantId,
    model: &str,
    page: Page,
) -> StoreResult<Vec<KbEntry>> {
    let rows = sqlx::query(
        "SELECT e.id, e.tenant_id, e.title, e.body, e.created_at, e.updated_at \
         FROM kb_entries e LEFT JOIN kb_embeddings k ON k.entry_id = e.id \
         WHERE e.tenant_id = ? AND (? IS NULL OR e.id < ?) \
           AND (k.entry_id IS NULL OR k.model <> ? OR k.source_updated_at <> e.updated_at) \
         ORDER BY e.id DESC LIMIT ?",
    )
    .bind(tenant.into_uuid())
    .bind(page.before)
    .bind(page.before)
    .bind(model)
    .bind(i64::from(page.limit.clamp(1, Page::MAX_LIMIT)))
    .fetch_all(store.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(read_kb).collect()
}
