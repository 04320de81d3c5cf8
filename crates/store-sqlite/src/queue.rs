//! The durable job queue on SQLite (one process: wake-ups through an in-process `Notify`).

use std::time::Duration;

use async_trait::async_trait;
use domain::{ConversationId, JobId, MessageId, TenantId};
use sqlx::{Row, Sqlite, Transaction};
use store::{ClaimedJob, DeadJob, JobQueue, Lease, NewJob, QueueStats, StoreError, StoreResult};

use crate::SqliteStore;
use crate::rows::{db_err, now_ms};

pub(crate) fn turn_payload(conversation: ConversationId, message: MessageId) -> String {
    serde_json::json!({ "conversation_id": conversation, "message_id": message }).to_string()
}

pub(crate) fn message_payload(message: MessageId) -> String {
    serde_json::json!({ "message_id": message }).to_string()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn attempts_i64(lease: &Lease) -> i64 {
    i64::from(lease.attempt)
}

/// Enqueues `job` in a write transaction (so it commits with the write that causes it);
/// returns its id and whether it was created (false: idempotency hit). The caller wakes
/// workers after committing.
pub(crate) async fn enqueue_in(
    tx: &mut Transaction<'static, Sqlite>,
    job: &NewJob,
    now: i64,
) -> StoreResult<(JobId, bool)> {
    let id = JobId::new();
    let run_at = job.run_at.map_or(now, jiff::Timestamp::as_millisecond);
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at, max_attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(id.into_uuid())
    .bind(job.tenant_id.map(TenantId::into_uuid))
    .bind(job.kind.as_str())
    .bind(job.payload.to_string())
    .bind(job.idempotency_key.as_deref())
    .bind(run_at)
    .bind(i64::from(job.max_attempts.max(1)))
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() == 1 {
        return Ok((id, true));
    }
    let existing: uuid::Uuid = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?")
        .bind(job.idempotency_key.as_deref())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok((JobId::from_uuid(existing), false))
}

/// Completes (deletes) a job if `lease` still holds it: the check `complete` makes, also run
/// inside the transaction of a write that finishes a job. False when the lease no longer
/// holds the job.
pub(crate) async fn complete_with(
    executor: impl sqlx::SqliteExecutor<'_>,
    job: JobId,
    lease: &Lease,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
    )
    .bind(job.into_uuid())
    .bind(&lease.holder)
    .bind(attempts_i64(lease))
    .execute(executor)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<(JobId, bool)> {
        let (_writer, mut tx) = self.write_tx().await?;
        let result = enqueue_in(&mut tx, &job, now_ms()).await?;
        tx.commit().await.map_err(db_err)?;
        if result.1 {
            self.wake.notify_waiters();
        }
        Ok(result)
    }

    async fn claim(
        &self,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let now = now_ms();
        let (_writer, mut tx) = self.write_tx().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET status = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM jobs WHERE (status = 'queued' AND run_at <= ?) OR (status = 'running' AND locked_until < ?) ORDER BY run_at, id LIMIT ?) \
             RETURNING id, kind, tenant_id, payload, attempts, max_attempts, created_at",
        )
        .bind(holder)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload").map_err(db_err)?;
                let attempts: i64 = r.try_get("attempts").map_err(db_err)?;
                let max: i64 = r.try_get("max_attempts").map_err(db_err)?;
                let tenant: Option<uuid::Uuid> = r.try_get("tenant_id").map_err(db_err)?;
                Ok(ClaimedJob {
                    id: JobId::from_uuid(r.try_get("id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    tenant_id: tenant.map(TenantId::from_uuid),
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(format!("job payload: {e}")))?,
                    max_attempts: u32::try_from(max).unwrap_or(1),
                    lease: Lease {
                        holder: holder.to_owned(),
                        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                    },
                    created_at: store::timestamp_from_ms(r.try_get("created_at").map_err(db_err)?),
                })
            })
            .collect()
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
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?, locked_by = NULL, locked_until = NULL, last_error = ?, updated_at = ? WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
        )
        .bind(now.saturating_add(millis(delay)))
        .bind(truncate(error))
        .bind(now)
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempts_i64(lease))
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
            "UPDATE jobs SET status = 'dead', locked_by = NULL, locked_until = NULL, last_error = ?, updated_at = ? WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
        )
        .bind(truncate(error))
        .bind(now_ms())
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempts_i64(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, job: JobId, lease: &Lease) -> StoreResult<bool> {
        self.give_back(job, lease, Duration::ZERO).await
    }

    async fn extend_lease(&self, job: JobId, lease: &Lease, by: Duration) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = ?, updated_at = ? WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
        )
        .bind(now.saturating_add(millis(by)))
        .bind(now)
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempts_i64(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn stats(&self) -> StoreResult<QueueStats> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(status = 'queued'), 0) AS queued, \
               COALESCE(SUM(status = 'running'), 0) AS running, \
               COALESCE(SUM(status = 'dead'), 0) AS dead, \
               MIN(CASE WHEN status = 'queued' AND run_at <= ? THEN run_at END) AS oldest \
             FROM jobs",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let count = |c: &str| -> StoreResult<u64> {
            let v: i64 = row.try_get(c).map_err(db_err)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest").map_err(db_err)?;
        Ok(QueueStats {
            queued: count("queued")?,
            running: count("running")?,
            dead: count("dead")?,
            oldest_due_age: oldest.map_or(Duration::ZERO, |t| {
                Duration::from_millis(u64::try_from(now.saturating_sub(t)).unwrap_or(0))
            }),
        })
    }

    async fn dead_jobs(&self, limit: u32) -> StoreResult<Vec<DeadJob>> {
        let rows = sqlx::query("SELECT id, kind, attempts, last_error FROM jobs WHERE status = 'dead' ORDER BY updated_at DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let attempts: i64 = r.try_get("attempts").map_err(db_err)?;
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
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }
}

/// Errors are stored for operators; keep them bounded.
pub(crate) fn truncate(error: &str) -> &str {
    match error.char_indices().nth(2000) {
        Some((i, _)) => &error[..i],
        None => error,
    }
}

impl SqliteStore {
    /// Queues a held job again after `delay` without spending the attempt its claim counted
    /// (`release` and `postpone`); wakes local workers when it is due at once.
    async fn give_back(&self, job: JobId, lease: &Lease, delay: Duration) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?, locked_by = NULL, locked_until = NULL, attempts = MAX(attempts - 1, 0), updated_at = ? WHERE id = ? AND status = 'running' AND locked_by = ? AND attempts = ?",
        )
        .bind(now.saturating_add(millis(delay)))
        .bind(now)
        .bind(job.into_uuid())
        .bind(&lease.holder)
        .bind(attempts_i64(lease))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let given = done.rows_affected() == 1;
        if given && delay.is_zero() {
            self.wake.notify_waiters();
        }
        Ok(given)
    }
}
