//! The worker role: claims jobs from the durable queue, runs them with bounded concurrency
//! and a lease heartbeat, persists each outcome (done, retry with backoff, dead letter),
//! and on shutdown lets running jobs finish within a grace period, then releases the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::JobId;
use domain::jobs::{JobKind, RetryPolicy};
use messaging::{JobOutcome, Outbox};
use store::{ClaimedJob, JobQueue, Lease};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// How long a claim holds a job before another worker may take it; renewed while the
    /// job runs.
    pub lease: Duration,
    /// Longest sleep between claims when no notification arrives.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// Names this process in lease holders.
    pub node_id: String,
    pub shutdown_grace: Duration,
}

/// The queue operation a job's outcome comes to.
enum Disposition {
    Complete,
    RetryAfter(Duration, String),
    Postpone(Duration),
    DeadLetter { error: String, last_attempt: bool },
}

impl Disposition {
    /// The `outcome` label of `concierge_jobs_total`.
    const fn label(&self) -> &'static str {
        match self {
            Self::Complete => "done",
            Self::RetryAfter(..) => "retry",
            Self::Postpone(_) => "postponed",
            Self::DeadLetter { .. } => "dead",
        }
    }
}

/// Operator tasks the worker runs from the queue, provided by the binary (which owns their
/// configuration).
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync {
    /// Takes a backup; the error is recorded on the job.
    async fn backup(&self) -> Result<(), String>;
}

pub struct Runner {
    queue: Arc<dyn JobQueue>,
    outbox: Arc<Outbox>,
    maintenance: Option<Arc<dyn Maintenance>>,
    config: RunnerConfig,
}

type Running = Arc<Mutex<HashMap<JobId, Lease>>>;

impl Runner {
    pub fn new(queue: Arc<dyn JobQueue>, outbox: Arc<Outbox>, config: RunnerConfig) -> Self {
        Self {
            queue,
            outbox,
            maintenance: None,
            config,
        }
    }

    /// Lets this worker run maintenance jobs (backups).
    #[must_use]
    pub fn with_maintenance(mut self, maintenance: Arc<dyn Maintenance>) -> Self {
        self.maintenance = Some(maintenance);
        self
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        let running: Running = Arc::new(Mutex::new(HashMap::new()));
        let mut tasks = JoinSet::new();
        let holder = format!("worker:{}", this.config.node_id);
        tracing::info!(concurrency = this.config.concurrency, "worker started");

        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let limit = u32::try_from(free.min(16)).unwrap_or(16);
            let claimed = match this.queue.claim(&holder, limit, this.config.lease).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed");
                    tokio::select! {
                        () = tokio::time::sleep(this.config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    () = this.queue.wait_for_work(this.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for job in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                running
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(job.id, job.lease.clone());
                let this = this.clone();
                let running = running.clone();
                tasks.spawn(async move {
                    this.execute(&job).await;
                    running
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&job.id);
                    drop(permit);
                });
            }
        }

        // Shutdown: let running jobs finish, then give back what is left.
        let deadline = tokio::time::sleep(this.config.shutdown_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        let left: Vec<(JobId, Lease)> = running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        for (id, lease) in left {
            match this.queue.release(id, &lease).await {
                Ok(_) => tracing::info!(job = %id, "released unfinished job at shutdown"),
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "could not release job; its lease will expire");
                }
            }
        }
        tracing::info!("worker stopped");
    }

    async fn execute(&self, job: &ClaimedJob) {
        let started = Instant::now();
        let kind = JobKind::parse(&job.kind);
        let outcome = if job.lease.attempt > job.max_attempts {
            // Claimed again after its lease expired too many times: the job keeps killing
            // its worker or running past its lease.
            JobOutcome::Fatal("lease expired on every attempt".into())
        } else {
            match kind {
                Some(kind) => self.with_heartbeat(job, self.dispatch(kind, job)).await,
                None => JobOutcome::Fatal(format!("unknown job kind {:?}", job.kind)),
            }
        };
        let kind_label = kind.map_or("unknown", JobKind::as_str);
        metrics::histogram!("concierge_job_seconds", "kind" => kind_label)
            .record(started.elapsed().as_secs_f64());
        let disposition = self.disposition(job, outcome);
        metrics::counter!("concierge_jobs_total", "kind" => kind_label, "outcome" => disposition.label())
            .increment(1);
        if let Err(e) = self.persist(job, disposition).await {
            tracing::warn!(job = %job.id, error = %e, "could not record the job outcome; its lease will expire and it will run again");
        }
    }

    async fn dispatch(&self, kind: JobKind, job: &ClaimedJob) -> JobOutcome {
        match kind {
            JobKind::Turn => self.outbox.run_turn(job).await,
            JobKind::SendSms => self.outbox.send_sms(job).await,
            JobKind::Reminder => self.outbox.deliver_reminder(job).await,
            JobKind::NotifyStaff => self.outbox.notify_staff(job).await,
            JobKind::Backup => match &self.maintenance {
                Some(m) => match m.backup().await {
                    Ok(()) => JobOutcome::Done,
                    Err(e) => JobOutcome::Retry(e),
                },
                // Every worker shares one configuration, so none of them could run it.
                None => JobOutcome::Fatal("backups are not configured on this worker".into()),
            },
        }
    }

    /// Renews the lease at a third of its length while the job runs.
    async fn with_heartbeat(
        &self,
        job: &ClaimedJob,
        work: impl std::future::Future<Output = JobOutcome>,
    ) -> JobOutcome {
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        tokio::pin!(work);
        loop {
            tokio::select! {
                outcome = &mut work => return outcome,
                () = tokio::time::sleep(every) => {
                    if let Ok(false) = self.queue.extend_lease(job.id, &job.lease, self.config.lease).await {
                        tracing::warn!(job = %job.id, "lease lost while running");
                    }
                }
            }
        }
    }

    /// What happens to a job after it ran, decided once: the metric and the queue agree.
    fn disposition(&self, job: &ClaimedJob, outcome: JobOutcome) -> Disposition {
        match outcome {
            JobOutcome::Done => Disposition::Complete,
            JobOutcome::Retry(error) => match self
                .config
                .retry
                .next_delay(job.lease.attempt)
                .filter(|_| job.lease.attempt < job.max_attempts)
            {
                Some(delay) => Disposition::RetryAfter(delay, error),
                None => Disposition::DeadLetter {
                    error,
                    last_attempt: true,
                },
            },
            JobOutcome::Postpone(delay) => Disposition::Postpone(delay),
            JobOutcome::Fatal(error) => Disposition::DeadLetter {
                error,
                last_attempt: false,
            },
        }
    }

    async fn persist(
        &self,
        job: &ClaimedJob,
        disposition: Disposition,
    ) -> Result<(), store::StoreError> {
        match disposition {
            Disposition::Complete => {
                self.queue.complete(job.id, &job.lease).await?;
            }
            Disposition::RetryAfter(delay, error) => {
                tracing::info!(job = %job.id, kind = %job.kind, attempt = job.lease.attempt, delay_ms = delay.as_millis() as u64, error = %error, "job will be retried");
                self.queue
                    .retry_later(job.id, &job.lease, delay, &error)
                    .await?;
            }
            Disposition::Postpone(delay) => {
                self.queue.postpone(job.id, &job.lease, delay).await?;
            }
            Disposition::DeadLetter {
                error,
                last_attempt,
            } => {
                if last_attempt {
                    tracing::warn!(job = %job.id, kind = %job.kind, error = %error, "job dead-lettered after its last attempt");
                } else {
                    tracing::warn!(job = %job.id, kind = %job.kind, error = %error, "job dead-lettered");
                }
                self.queue.dead_letter(job.id, &job.lease, &error).await?;
            }
        }
        Ok(())
    }
}

/// Publishes queue depth and age as gauges until `shutdown`.
pub async fn monitor_queue(
    queue: Arc<dyn JobQueue>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match queue.stats().await {
            Ok(stats) => {
                #[allow(clippy::cast_precision_loss)]
                {
                    metrics::gauge!("concierge_queue_jobs", "state" => "queued")
                        .set(stats.queued as f64);
                    metrics::gauge!("concierge_queue_jobs", "state" => "running")
                        .set(stats.running as f64);
                    metrics::gauge!("concierge_queue_jobs", "state" => "dead")
                        .set(stats.dead as f64);
                }
                metrics::gauge!("concierge_queue_oldest_due_seconds")
                    .set(stats.oldest_due_age.as_secs_f64());
            }
            Err(e) => tracing::debug!(error = %e, "queue stats unavailable"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Enqueues `kind` once a day at `at` (UTC) until `shutdown`. Every worker process may run
/// this: the job of a given day has one idempotency key, so the queue holds one of them and
/// one worker runs it. Only future occurrences are enqueued, so a worker that starts after
/// the day's job ran does not run it again.
pub async fn schedule_daily(
    queue: Arc<dyn JobQueue>,
    kind: JobKind,
    at: jiff::civil::Time,
    max_attempts: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let now = jiff::Timestamp::now();
        let Some(next) = next_daily(now, at) else {
            tracing::error!("cannot compute the next scheduled time; scheduling stopped");
            return;
        };
        let key = format!(
            "{}:{}",
            kind.as_str(),
            next.to_zoned(jiff::tz::TimeZone::UTC).date()
        );
        let job = store::NewJob {
            kind,
            tenant_id: None,
            payload: serde_json::json!({}),
            idempotency_key: Some(key.clone()),
            run_at: Some(next),
            max_attempts,
        };
        match queue.enqueue(job).await {
            Ok((_, true)) => tracing::info!(job = %key, at = %next, "scheduled"),
            Ok((_, false)) => tracing::debug!(job = %key, "already scheduled by another worker"),
            Err(e) => {
                tracing::warn!(error = %e, "could not schedule {key}; trying again in a minute");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        }
        // Wake just after this occurrence, then schedule the following one.
        let wait = next.duration_since(now).unsigned_abs() + Duration::from_secs(1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The first `at` (UTC) strictly after `now`.
#[must_use]
pub fn next_daily(now: jiff::Timestamp, at: jiff::civil::Time) -> Option<jiff::Timestamp> {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    for date in [Some(today), today.tomorrow().ok()].into_iter().flatten() {
        let candidate = date
            .to_datetime(at)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp();
        if candidate > now {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::next_daily;
    use jiff::civil::time;

    #[test]
    fn next_daily_is_strictly_in_the_future() {
        let at = time(3, 0, 0, 0);
        let before: jiff::Timestamp = "2026-11-22T02:59:59Z".parse().unwrap();
        assert_eq!(
            next_daily(before, at).unwrap().to_string(),
            "2026-11-22T03:00:00Z"
        );
        let exactly: jiff::Timestamp = "2026-11-22T03:00:00Z".parse().unwrap();
        assert_eq!(
            next_daily(exactly, at).unwrap().to_string(),
            "2026-11-23T03:00:00Z"
        );
        let year_end: jiff::Timestamp = "2026-12-31T23:00:00Z".parse().unwrap();
        assert_eq!(
            next_daily(year_end, at).unwrap().to_string(),
            "2027-01-01T03:00:00Z"
        );
    }
}
