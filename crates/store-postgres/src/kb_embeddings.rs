//! Knowledge-base vectors on PostgreSQL: one row per entry in `kb_embeddings`, the vector as
//! little-endian `f32` bytes (the same bytes as on SQLite), under row-level security like
//! every tenant table.

use domain::{KbEntryId, TenantId};
use sqlx::Row;
use store::{KbEntry, Page, StoreError, StoreResult, vector_from_bytes, vector_to_bytes};

use crate::PgStore;
use crate::rows::{db_err, now_ms, read_kb};

pub(crate) async fn get_entries(
    store: &PgStore,
    tenant: TenantId,
    ids: &[KbEntryId],
) -> StoreResult<Vec<KbEntry>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.into_uuid()).collect();
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = $1 AND id = ANY($2)",
    )
    .bind(tenant.into_uuid())
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_kb).collect()
}

pub(crate) async fn put(
    store: &PgStore,
    tenant: TenantId,
    entry: &KbEntry,
    model: &str,
    content_hash: &[u8; 32],
    vector: &[f32],
) -> StoreResult<()> {
    if vector.is_empty() {
        return Err(StoreError::Database("an empty vector".into()));
    }
    let dims = i32::try_from(vector.len())
        .map_err(|_| StoreError::Database("a vector too long to store".into()))?;
    let mut tx = store.tenant_tx(tenant).await?;
    let done = sqlx::query(
        "INSERT INTO kb_embeddings (entry_id, tenant_id, model, dims, vector, content_hash, source_updated_at, updated_at) \
         SELECT id, tenant_id, $1, $2, $3, $4, $5, $6 FROM kb_entries WHERE tenant_id = $7 AND id = $8 \
         ON CONFLICT (entry_id) DO UPDATE SET model = EXCLUDED.model, dims = EXCLUDED.dims, \
         vector = EXCLUDED.vector, content_hash = EXCLUDED.content_hash, \
         source_updated_at = EXCLUDED.source_updated_at, updated_at = EXCLUDED.updated_at",
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
    store: &PgStore,
    tenant: TenantId,
    model: &str,
) -> StoreResult<Vec<(KbEntryId, Vec<f32>)>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT entry_id, dims, vector FROM kb_embeddings WHERE tenant_id = $1 AND model = $2",
    )
    .bind(tenant.into_uuid())
    .bind(model)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("entry_id").map_err(db_err)?;
            let dims: i32 = row.try_get("dims").map_err(db_err)?;
            let bytes: Vec<u8> = row.try_get("vector").map_err(db_err)?;
            let vector = vector_from_bytes(&bytes)
                .filter(|v| i32::try_from(v.len()).is_ok_and(|n| n == dims))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("the vector of kb entry {id} is not {dims} long"))
                })?;
            Ok((KbEntryId::from_uuid(id), vector))
        })
        .collect()
}

pub(crate) async fn to_embed(
    store: &PgStore,
    tenant: TenantId,
    model: &str,
    page: Page,
) -> StoreResult<Vec<KbEntry>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT e.id, e.tenant_id, e.title, e.body, e.created_at, e.updated_at \
         FROM kb_entries e LEFT JOIN kb_embeddings k ON k.entry_id = e.id \
         WHERE e.tenant_id = $1 AND ($2::uuid IS NULL OR e.id < $2) \
           AND (k.entry_id IS NULL OR k.model <> $3 OR k.source_updated_at <> e.updated_at) \
         ORDER BY e.id DESC LIMIT $4",
    )
    .bind(tenant.into_uuid())
    .bind(page.before)
    .bind(model)
    .bind(i64::from(page.limit.clamp(1, Page::MAX_LIMIT)))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_kb).collect()
}
