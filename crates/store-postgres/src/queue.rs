//! The durable job queue on PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` so many workers
//! in many processes never take the same job, times from the database clock so replicas
//! with skewed clocks agree, and wake-ups through `LISTEN concierge_jobs` (the trigger in
//! the migration notifies when a job becomes claimable).

use std::time::Duration;

use async_trait::async_trait;
use domain::{JobId, TenantId};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};
use store::{ClaimedJob, DeadJob, JobQueue, Lease, NewJob, QueueStats, StoreResult};

use crate::PgStore;
use crate::rows::db_err;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn attempt(lease: &Lease) -> i32 {
    i32::try_from(lease.attempt).unwrap_or(i32::MAX)
}

fn read_claimed(r: &PgRow, holder: &str) -> StoreResult<ClaimedJob> {
    let attempts: i32 = r.try_get("attempts").map_err(db_err)?;
    let max: i32 = r.try_get("max_attempts").map_err(db_err)?;
    let tenant: Option<uuid::Uuid> = r.try_get("tenant_id").map_err(db_err)?;
    Ok(ClaimedJob {
        id: JobId::from_uuid(r.try_get("id").map_err(db_err)?),
        kind: r.try_get("kind").map_err(db_err)?,
        tenant_id: tenant.map(TenantId::from_uuid),
        payload: r.try_get("payload").map_err(db_err)?,
        max_attempts: u32::try_from(max).unwrap_or(1),
        lease: Lease {
            holder: holder.to_owned(),
            attempt: u32::try_from(attempts).unwrap_or(0),
        },
        created_at: store::timestamp_from_ms(r.try_get("created_at").map_err(db_err)?),
    })
}

/// Enqueues `job` through `executor` (the pool, or a transaction so the job commits with the
/// write that causes it); returns its id and whether it was created (false: idempotency hit).
pub(crate) async fn enqueue_with(
    executor: impl sqlx::PgExecutor<'_>,
    job: &NewJob,
) -> StoreResult<(JobId, bool)> {
    let id = JobId::new();
    let row = sqlx::query(
        "WITH ins AS ( \
           INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at, max_attempts, created_at, updated_at) \
           VALUES ($1, $2, $3, $4, $5, 'queued', COALESCE($6, concierge_now_ms()), $7, concierge_now_ms(), concierge_now_ms()) \
           ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id) \
         SELECT id, true AS created FROM ins \
         UNION ALL SELECT id, false FROM jobs WHERE idempotency_key = $5 AND NOT EXISTS (SELECT 1 FROM ins)",
    )
    .bind(id.into_uuid())
    .bind(job.tenant_id.map(TenantId::into_uuid))
    .bind(job.kind.as_str())
    .bind(&job.payload)
    .bind(job.idempotency_key.as_deref())
    .bind(job.run_at.map(jiff::Timestamp::as_millisecond))
    .bind(i32::try_from(job.max_attempts.max(1)).unwrap_or(i32::MAX))
    .fetch_one(executor)
    .await
    .map_err(db_err)?;
    let id: uuid::Uuid = row.try_get("id").map_err(db_err)?;
    let created: bool = row.try_get("created").map_err(db_err)?;
    Ok((JobId::from_uuid(id), created))
}

/// Completes (deletes) a job inside `executor`'s transaction if `lease` still holds it: the
/// check `complete` makes. False when the lease no longer holds the job.
pub(crate) async fn complete_with(
    executor: impl sqlx::PgExecutor<'_>,
    job: JobId,
    lease: &Lease,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id = $1 AND status = 'running' AND locked_by = $2 AND attempts = $3",
    )
    .bind(job.into_uuid())
    .bind(&lease.holder)
    .bind(attempt(lease))
    .execute(executor)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

impl PgStore {
    /// Starts (once per process) the task that turns notifications into local wake-ups. It
    /// reconnects on its own; while it is down, workers still poll on their timeout.
    async fn ensure_listener(&self) {
        let pool = self.pool.clone();
        let wake = self.wake.clone();
        self.listener
            .get_or_init(|| async move {
                tokio::spawn(async move {
                    loop {
                        match PgListener::connect_with(&pool).await {
                            Ok(mut listener) => match listener.listen("concierge_jobs").await {
                                Ok(()) => loop {
                                    // recv() reconnects by itself; after a gap, wake everyone once.
                                    match listener.recv().await {
                                        Ok(_) => wake.notify_waiters(),
                                        Err(e) => {
                                            tracing::warn!(error = %e, "job listener lost its connection");
                                            wake.notify_waiters();
                                            break;
                                        }
                                    }
                                },
                                Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                            },
                            Err(e) => tracing::warn!(error = %e, "job listener could not connect"),
                        }
                        if pool.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            })
            .await;
    }
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<(JobId, bool)> {
        enqueue_with(&self.pool, &job).await
    }

    async fn claim(
        &self,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let rows = sqlx::query(
            "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = concierge_now_ms() + $2, \
                 attempts = attempts + 1, updated_at = concierge_now_ms() \
             WHERE id IN ( \
                 SELECT id FROM jobs \
                 WHERE (status = 'queued' AND run_at <= concierge_now_ms()) \
                    OR (status = 'running' AND locked_until < concierge_now_ms()) \
                 ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, kind, tenant_id, payload, attempts, max_attempts, created_at",
        )
        .bind(holder)
        .bind(millis(lease))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| read_claimed(r, holder)).collect()
    }

    async fn complete(&self, job: JobId, lease: &Lease) -> StoreResult<bool> {
        complete_with(&self.pool, job, lease).await
    }

    async fn retry_later(
        &self,
        job: JobId,
        lease: &Lease,
        delay: Duration,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = concierge_now_ms() + $1, locked_by = NULL, locked_until = NULL, \
                 last_error = $2, updated_at = concierge_now_ms() \
             WHERE id = $3 AND status = 'running' AND locked_by = $4 AND attempts = $5",
        )
        .bind(millis(delay))
        .bind(truncate(error))
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempt(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn postpone(&self, job: JobId, lease: &Lease, delay: Duration) -> StoreResult<bool> {
        self.give_back(job, lease, delay).await
    }

    async fn dead_letter(&self, job: JobId, lease: &Lease, error: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'dead', locked_by = NULL, locked_until = NULL, last_error = $1, updated_at = concierge_now_ms() \
             WHERE id = $2 AND status = 'running' AND locked_by = $3 AND attempts = $4",
        )
        .bind(truncate(error))
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempt(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, job: JobId, lease: &Lease) -> StoreResult<bool> {
        self.give_back(job, lease, Duration::ZERO).await
    }

    async fn extend_lease(&self, job: JobId, lease: &Lease, by: Duration) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = concierge_now_ms() + $1, updated_at = concierge_now_ms() \
             WHERE id = $2 AND status = 'running' AND locked_by = $3 AND attempts = $4",
        )
        .bind(millis(by))
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempt(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn stats(&self) -> StoreResult<QueueStats> {
        let row = sqlx::query(
            "SELECT \
               COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
               COUNT(*) FILTER (WHERE status = 'running') AS running, \
               COUNT(*) FILTER (WHERE status = 'dead') AS dead, \
               concierge_now_ms() - MIN(run_at) FILTER (WHERE status = 'queued' AND run_at <= concierge_now_ms()) AS oldest_age \
             FROM jobs",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let count = |c: &str| -> StoreResult<u64> {
            let v: i64 = row.try_get(c).map_err(db_err)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let age: Option<i64> = row.try_get("oldest_age").map_err(db_err)?;
        Ok(QueueStats {
            queued: count("queued")?,
            running: count("running")?,
            dead: count("dead")?,
            oldest_due_age: Duration::from_millis(
                age.and_then(|a| u64::try_from(a).ok()).unwrap_or(0),
            ),
        })
    }

    async fn dead_jobs(&self, limit: u32) -> StoreResult<Vec<DeadJob>> {
        let rows = sqlx::query("SELECT id, kind, attempts, last_error FROM jobs WHERE status = 'dead' ORDER BY updated_at DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get("attempts").map_err(db_err)?;
                Ok(DeadJob {
                    id: JobId::from_uuid(r.try_get("id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    last_error: r.try_get("last_error").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.ensure_listener().await;
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }
}

fn truncate(error: &str) -> &str {
    match error.char_indices().nth(2000) {
        Some((i, _)) => &error[..i],
        None => error,
    }
}

impl PgStore {
    /// Queues a held job again after `delay` without spending the attempt its claim counted
    /// (`release` and `postpone`).
    async fn give_back(&self, job: JobId, lease: &Lease, delay: Duration) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = concierge_now_ms() + $1, locked_by = NULL, locked_until = NULL, \
                 attempts = GREATEST(attempts - 1, 0), updated_at = concierge_now_ms() \
             WHERE id = $2 AND status = 'running' AND locked_by = $3 AND attempts = $4",
        )
        .bind(millis(delay))
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempt(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}
