//! The durable queue: idempotency, leases, backoff, dead letters, reclaim.

use std::time::Duration;

use domain::jobs::JobKind;
use store::{JobQueue, NewJob, Stores};

use crate::conformance;

conformance!(
    enqueue_is_idempotent_and_claims_are_exclusive,
    retries_persist_their_backoff_and_dead_letter,
    expired_leases_are_reclaimed_and_old_holders_are_refused,
    release_gives_the_job_back_without_counting,
    postponed_jobs_wait_without_spending_an_attempt,
    scheduled_jobs_wait_for_their_time,
);

fn job(key: Option<&str>) -> NewJob {
    NewJob {
        kind: JobKind::SendSms,
        tenant_id: None,
        payload: serde_json::json!({ "n": 1 }),
        idempotency_key: key.map(str::to_owned),
        run_at: None,
        max_attempts: 3,
    }
}

async fn enqueue_is_idempotent_and_claims_are_exclusive(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    let (a, created) = q.enqueue(job(Some("k1"))).await.unwrap();
    assert!(created);
    let (b, created) = q.enqueue(job(Some("k1"))).await.unwrap();
    assert!(!created);
    assert_eq!(a, b);
    q.enqueue(job(None)).await.unwrap();
    q.enqueue(job(None)).await.unwrap();
    assert_eq!(q.stats().await.unwrap().queued, 3);

    let w1 = q.claim("w1", 2, Duration::from_secs(30)).await.unwrap();
    let w2 = q.claim("w2", 5, Duration::from_secs(30)).await.unwrap();
    assert_eq!(w1.len(), 2);
    assert_eq!(w2.len(), 1);
    assert!(w1.iter().all(|j| !w2.iter().any(|k| k.id == j.id)));
    assert_eq!(w1[0].lease.attempt, 1);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 3));
    for j in w1.iter().chain(&w2) {
        assert!(q.complete(j.id, &j.lease).await.unwrap());
        assert!(
            !q.complete(j.id, &j.lease).await.unwrap(),
            "completion happens once"
        );
    }
    assert_eq!(q.stats().await.unwrap(), store::QueueStats::default());
    // After completion, the key is free again.
    assert!(q.enqueue(job(Some("k1"))).await.unwrap().1);
}

async fn retries_persist_their_backoff_and_dead_letter(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    q.enqueue(job(None)).await.unwrap();
    let j = q
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert!(
        q.retry_later(j.id, &j.lease, Duration::from_secs(3600), "boom")
            .await
            .unwrap()
    );
    // The backoff is in the row: nothing is due, whoever asks.
    assert!(
        q.claim("other", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.queued, 1);
    assert_eq!(stats.oldest_due_age, Duration::ZERO);

    q.enqueue(job(None)).await.unwrap();
    let j = q
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert!(
        q.retry_later(j.id, &j.lease, Duration::ZERO, "again")
            .await
            .unwrap()
    );
    let j = q
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(j.lease.attempt, 2);
    assert!(q.dead_letter(j.id, &j.lease, "gave up").await.unwrap());
    let dead = q.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("gave up"));
    assert_eq!(q.stats().await.unwrap().dead, 1);
    assert!(
        q.claim("w", 5, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn expired_leases_are_reclaimed_and_old_holders_are_refused(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    q.enqueue(job(None)).await.unwrap();
    let dead_worker = q
        .claim("w-dead", 1, Duration::from_millis(1))
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = q
        .claim("w-live", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(taken.id, dead_worker.id);
    assert_eq!(taken.lease.attempt, 2);
    // The first holder wakes up late: every write it tries is refused.
    assert!(
        !q.complete(dead_worker.id, &dead_worker.lease)
            .await
            .unwrap()
    );
    assert!(
        !q.retry_later(dead_worker.id, &dead_worker.lease, Duration::ZERO, "x")
            .await
            .unwrap()
    );
    assert!(
        !q.extend_lease(dead_worker.id, &dead_worker.lease, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        q.extend_lease(taken.id, &taken.lease, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(q.complete(taken.id, &taken.lease).await.unwrap());
}

async fn release_gives_the_job_back_without_counting(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    q.enqueue(job(None)).await.unwrap();
    let j = q
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert!(q.release(j.id, &j.lease).await.unwrap());
    let again = q
        .claim("w2", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.id, j.id);
    assert_eq!(again.lease.attempt, 1, "a released attempt is not counted");
}

async fn postponed_jobs_wait_without_spending_an_attempt(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    q.enqueue(job(None)).await.unwrap();
    // Postponed more times than the job has attempts: still alive, still first attempt.
    for _ in 0..5 {
        let j = q
            .claim("w", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(j.lease.attempt, 1);
        assert!(q.postpone(j.id, &j.lease, Duration::ZERO).await.unwrap());
        // A stale holder cannot postpone it again.
        assert!(!q.postpone(j.id, &j.lease, Duration::ZERO).await.unwrap());
    }
    let j = q
        .claim("w", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert!(
        q.postpone(j.id, &j.lease, Duration::from_secs(3600))
            .await
            .unwrap()
    );
    assert!(
        q.claim("w", 1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "a postponed job waits for its time"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.dead), (1, 0));
}

async fn scheduled_jobs_wait_for_their_time(s: &Stores) {
    let q: &dyn JobQueue = &*s.queue;
    let mut later = job(None);
    later.run_at = Some(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600));
    q.enqueue(later).await.unwrap();
    let mut soon = job(None);
    soon.run_at = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5));
    q.enqueue(soon).await.unwrap();
    let claimed = q.claim("w", 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (1, 1));
}
