//! The durable job queue, kept in the primary database so a job is enqueued in the same
//! transaction as the write that causes it.
//!
//! Semantics shared by both backends: a claim leases a job to a holder until a deadline and
//! counts an attempt; completion, retry and release are accepted only from the lease that
//! holds the job (`Lease`), so a worker whose lease expired cannot clobber the new owner;
//! an expired lease makes the job claimable again (a dead worker's jobs are reclaimed);
//! retry delays are persisted as the job's next run time; after `max_attempts` a job is
//! dead-lettered and kept for inspection.

use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::JobKind;
use domain::{JobId, TenantId};
use jiff::Timestamp;

use crate::StoreResult;

#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: JobKind,
    pub tenant_id: Option<TenantId>,
    /// Ids only, never PII.
    pub payload: serde_json::Value,
    /// A second enqueue with the same key returns the existing job.
    pub idempotency_key: Option<String>,
    pub run_at: Option<Timestamp>,
    pub max_attempts: u32,
}

/// Proof of holding a job: the holder name and the attempt number it claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub attempt: u32,
}

#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: JobId,
    /// Raw kind, so an unknown kind (from a newer version) can be dead-lettered, not lost.
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    pub lease: Lease,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
    /// Age of the oldest job that is due and not running.
    pub oldest_due_age: Duration,
}

#[derive(Clone, Debug)]
pub struct DeadJob {
    pub id: JobId,
    pub kind: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues a job; returns its id and whether it was created (false: idempotency hit).
    async fn enqueue(&self, job: NewJob) -> StoreResult<(JobId, bool)>;

    /// Claims up to `limit` due jobs (or jobs whose lease expired) for `holder`.
    async fn claim(
        &self,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<ClaimedJob>>;

    /// Removes a finished job. False when the lease no longer holds it.
    async fn complete(&self, job: JobId, lease: &Lease) -> StoreResult<bool>;

    /// Schedules another attempt after `delay`, recording the error.
    async fn retry_later(
        &self,
        job: JobId,
        lease: &Lease,
        delay: Duration,
        error: &str,
    ) -> StoreResult<bool>;

    /// Puts the job back for later without spending an attempt: the job could not start
    /// (for instance, its sender is paced), which is not a failure.
    async fn postpone(&self, job: JobId, lease: &Lease, delay: Duration) -> StoreResult<bool>;

    /// Moves the job to the dead-letter state, recording the error.
    async fn dead_letter(&self, job: JobId, lease: &Lease, error: &str) -> StoreResult<bool>;

    /// Gives the job back without counting the attempt (shutdown, inline budget exceeded).
    async fn release(&self, job: JobId, lease: &Lease) -> StoreResult<bool>;

    /// Extends a lease for a long job.
    async fn extend_lease(&self, job: JobId, lease: &Lease, by: Duration) -> StoreResult<bool>;

    async fn stats(&self) -> StoreResult<QueueStats>;
    async fn dead_jobs(&self, limit: u32) -> StoreResult<Vec<DeadJob>>;

    /// Waits until a job may be available (a notification from any process on PostgreSQL,
    /// from this process on SQLite) or `timeout` passes.
    async fn wait_for_work(&self, timeout: Duration);
}
