//! Per-sender pacing, so one Twilio number never sends faster than its carrier rate.
//!
//! A long code sends about one segment per second; faster bursts are queued by Twilio and
//! then fail with 30022-style errors or get filtered by carriers. Every send reserves a slot
//! for its sender number first and sleeps until that slot. [`LocalPacer`] serves one process;
//! [`RedisPacer`] shares the slots between all replicas of the worker.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

/// Redis keys are `concierge:pace:{sender}`.
pub const KEY_PREFIX: &str = "concierge:pace:";

/// Bound on every Redis round trip, connecting included: pacing must not hold a send up for long.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Hands out send slots per sender.
#[async_trait::async_trait]
pub trait Pacer: Send + Sync + 'static {
    /// Reserve the next send slot for `sender` at least `interval` after the previous reservation;
    /// returns how long the caller must wait before sending (zero if free now).
    ///
    /// The slot is taken even if the caller then does not send: reservations are never handed back.
    async fn reserve(&self, sender: &str, interval: Duration) -> Result<Duration, PacingError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PacingError {
    /// The shared pacing store did not answer in time or failed; the caller decides whether
    /// to send unpaced or to retry later.
    #[error("pacing store unavailable: {0}")]
    Unavailable(String),
}

/// In-process pacing: right for a single worker, wrong for several replicas.
///
/// Uses tokio's clock, so tests with paused time drive it deterministically.
#[derive(Debug)]
pub struct LocalPacer {
    state: Mutex<LocalState>,
}

#[derive(Debug)]
struct LocalState {
    /// Per sender, the earliest instant the next reservation may have.
    next_free: HashMap<String, Instant>,
    /// Prune when the map reaches this size, then set it to twice what is left, so pruning
    /// costs O(1) amortised per call whatever the number of senders.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 64;

impl LocalPacer {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Mutex::new(LocalState {
                next_free: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    /// How many senders are remembered; entries whose slot has passed are dropped over time.
    #[must_use]
    pub fn tracked_senders(&self) -> usize {
        self.lock().next_free.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // The critical sections cannot leave the map inconsistent, so a poisoned lock is fine.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LocalPacer {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Pacer for LocalPacer {
    async fn reserve(&self, sender: &str, interval: Duration) -> Result<Duration, PacingError> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.next_free.len() >= state.prune_at {
            // An entry in the past behaves exactly like no entry.
            state.next_free.retain(|_, next| *next > now);
            state.prune_at = (state.next_free.len() * 2).max(MIN_PRUNE_AT);
        }
        let slot = match state.next_free.get(sender) {
            Some(next) if *next > now => *next,
            _ => now,
        };
        state.next_free.insert(sender.to_owned(), slot + interval);
        Ok(slot - now)
    }
}

/// Pacing shared by every replica through Redis.
///
/// One Lua script reads the sender's next free slot, takes `max(now, stored)`, stores that
/// plus the interval and returns the wait, atomically. `now` is the Redis server's `TIME`,
/// read inside the script, not the caller's clock: replicas whose clocks disagree would
/// otherwise space messages by the interval plus or minus their skew. (Redis 5+ replicates
/// script effects, so a non-deterministic `TIME` before a write is allowed.)
#[derive(Clone)]
pub struct RedisPacer {
    conn: ConnectionManager,
    script: redis::Script,
}

impl std::fmt::Debug for RedisPacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPacer").finish_non_exhaustive()
    }
}

/// KEYS[1] = pace key, ARGV[1] = interval in ms. Returns the wait in ms.
const RESERVE_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = now
local stored = tonumber(redis.call('GET', KEYS[1]))
if stored and stored > now then slot = stored end
local wait = slot - now
-- The key is useless once its slot has passed, so it expires then.
redis.call('SET', KEYS[1], slot + interval, 'PX', math.max(wait + interval, 1))
return wait
";

impl RedisPacer {
    /// Connects now, so a wrong URL fails at start-up rather than at the first send.
    ///
    /// # Errors
    /// [`PacingError::Unavailable`] if the URL is invalid or Redis does not answer within
    /// [`REDIS_TIMEOUT`].
    /// A round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<(), PacingError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| PacingError::Unavailable("Redis did not answer in time".into()))?
        .map(|_| ())
        .map_err(|e| PacingError::Unavailable(e.to_string()))
    }

    pub async fn connect(url: &str) -> Result<Self, PacingError> {
        let client = redis::Client::open(url)
            .map_err(|err| PacingError::Unavailable(format!("invalid Redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(
            REDIS_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| PacingError::Unavailable("connecting to Redis timed out".to_owned()))?
        .map_err(|err| PacingError::Unavailable(format!("connecting to Redis: {err}")))?;
        Ok(Self {
            conn,
            script: redis::Script::new(RESERVE_SCRIPT),
        })
    }
}

#[async_trait::async_trait]
impl Pacer for RedisPacer {
    async fn reserve(&self, sender: &str, interval: Duration) -> Result<Duration, PacingError> {
        let key = format!("{KEY_PREFIX}{sender}");
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX / 2);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(interval_ms);
        let started = std::time::Instant::now();
        let result =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await;
        metrics::histogram!("concierge_pacing_redis_seconds")
            .record(started.elapsed().as_secs_f64());
        let wait_ms = result
            .map_err(|_| PacingError::Unavailable("Redis did not answer in time".to_owned()))?
            .map_err(|err| PacingError::Unavailable(format!("Redis: {err}")))?;
        Ok(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn local_pacer_prunes_senders_whose_slot_has_passed() {
        let pacer = LocalPacer::new();
        let interval = Duration::from_secs(1);
        for i in 0..MIN_PRUNE_AT {
            pacer
                .reserve(&format!("s{i}"), interval)
                .await
                .expect("local");
        }
        assert_eq!(pacer.tracked_senders(), MIN_PRUNE_AT);
        tokio::time::advance(Duration::from_secs(2)).await;
        pacer.reserve("fresh", interval).await.expect("local");
        assert_eq!(pacer.tracked_senders(), 1);
    }
}
