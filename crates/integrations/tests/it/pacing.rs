//! Pacers: the local one with paused time, the Redis one against a real Redis.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use integrations::pacing::{KEY_PREFIX, LocalPacer, Pacer, PacingError, RedisPacer};

/// Redis tests need this server; they fail (never skip) when it is not running.
const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Milliseconds of slack for time passing between calls in the Redis tests.
const SLACK_MS: u128 = 150;

async fn redis_pacer() -> RedisPacer {
    RedisPacer::connect(REDIS_URL).await.unwrap_or_else(|err| {
        panic!("these tests need Redis at {REDIS_URL} (start redis-server): {err}")
    })
}

/// A sender no other test (or earlier run) uses.
fn unique_sender() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("+1555{:016x}", hasher.finish())
}

fn assert_about(actual: Duration, expected_ms: u128) {
    let ms = actual.as_millis();
    assert!(
        ms <= expected_ms && ms + SLACK_MS >= expected_ms,
        "waited {ms} ms, expected about {expected_ms} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn local_pacer_spaces_reservations_per_sender() {
    let pacer = LocalPacer::new();
    let second = Duration::from_secs(1);
    assert_eq!(
        pacer.reserve("+15550000001", second).await.expect("local"),
        Duration::ZERO
    );
    assert_eq!(
        pacer.reserve("+15550000001", second).await.expect("local"),
        second
    );
    assert_eq!(
        pacer.reserve("+15550000001", second).await.expect("local"),
        2 * second
    );
    // Another sender has its own slots.
    assert_eq!(
        pacer.reserve("+15550000002", second).await.expect("local"),
        Duration::ZERO
    );
    // Time passing eats into the wait: the next slot is at 3 s.
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        pacer.reserve("+15550000001", second).await.expect("local"),
        Duration::from_millis(1500)
    );
    // Once every slot has passed the sender is free again.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        pacer.reserve("+15550000001", second).await.expect("local"),
        Duration::ZERO
    );
}

#[tokio::test]
async fn redis_pacer_spaces_two_reservations_by_the_interval() {
    let pacer = redis_pacer().await;
    let sender = unique_sender();
    let interval = Duration::from_millis(1000);
    assert_eq!(
        pacer.reserve(&sender, interval).await.expect("redis"),
        Duration::ZERO
    );
    assert_about(pacer.reserve(&sender, interval).await.expect("redis"), 1000);
    assert_about(pacer.reserve(&sender, interval).await.expect("redis"), 2000);
    // Another sender is free now.
    assert_eq!(
        pacer
            .reserve(&unique_sender(), interval)
            .await
            .expect("redis"),
        Duration::ZERO
    );
}

#[tokio::test]
async fn two_replicas_share_the_spacing_through_redis() {
    let replica_a = redis_pacer().await;
    let replica_b = redis_pacer().await;
    let sender = unique_sender();
    let interval = Duration::from_millis(800);
    assert_eq!(
        replica_a.reserve(&sender, interval).await.expect("redis"),
        Duration::ZERO
    );
    assert_about(
        replica_b.reserve(&sender, interval).await.expect("redis"),
        800,
    );
    assert_about(
        replica_a.reserve(&sender, interval).await.expect("redis"),
        1600,
    );
}

#[tokio::test]
async fn concurrent_reservations_from_two_replicas_get_distinct_slots() {
    let replicas = [redis_pacer().await, redis_pacer().await];
    let sender = unique_sender();
    let interval = Duration::from_millis(1000);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let pacer = replicas[i % 2].clone();
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            pacer.reserve(&sender, interval).await
        }));
    }
    let mut waits = Vec::new();
    for task in tasks {
        waits.push(task.await.expect("task").expect("redis"));
    }
    waits.sort_unstable();
    // The script is atomic: each reservation lands one interval after another, none shared.
    for (i, wait) in waits.iter().enumerate() {
        assert_about(*wait, 1000 * i as u128);
    }
}

#[tokio::test]
async fn the_redis_key_expires_once_its_slot_has_passed() {
    let pacer = redis_pacer().await;
    let sender = unique_sender();
    pacer
        .reserve(&sender, Duration::from_millis(700))
        .await
        .expect("redis");
    let client = redis::Client::open(REDIS_URL).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let key = format!("{KEY_PREFIX}{sender}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!((1..=700).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test]
async fn an_unreachable_redis_fails_quickly() {
    let started = Instant::now();
    let err = RedisPacer::connect("redis://127.0.0.1:1")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, PacingError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_redis_that_never_answers_times_out() {
    // Accepts connections and then says nothing, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let err = RedisPacer::connect(&format!("redis://{addr}"))
        .await
        .expect_err("no answer");
    let elapsed = started.elapsed();
    hold.abort();
    assert!(matches!(err, PacingError::Unavailable(_)), "{err:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}
