//! The load engine: N concurrent workers, closed loop or open loop on a fixed schedule.
//!
//! * Closed loop (no rate): each worker sends its next request as soon as the previous one
//!   completes. Latency is measured from the send.
//! * Open loop (`rate`): request `i` is scheduled at `t0 + i / rate`, whatever happened
//!   before. Any free worker takes the next ticket; if its time has not come, the worker waits
//!   for it and the clock starts when the request is actually sent (so our own 1 ms timer
//!   granularity is not charged to the server). If its time has already passed, every worker
//!   was busy: the request is late because the server is slow, and latency is measured from
//!   the scheduled time, the way the message's sender would see it (no coordinated omission).
//!
//! Requests started during the warm-up are sent but not measured. The run stops after the
//! measured duration or after N measured requests. With a duration, requests still in flight
//! at the end complete and count in the latency figures (a slow tail is not hidden), while
//! throughput counts only completions within the window, so one straggler does not stretch it.
//! Ctrl-C stops the run early; what was measured so far is still reported.

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stats::{Outcome, Stats};

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// Measure for this long after the warm-up.
    Duration(Duration),
    /// Measure this many requests after the warm-up.
    Requests(u64),
}

/// How to drive the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub concurrency: usize,
    pub warmup: Duration,
    pub stop: Stop,
    /// Requests per second for an open loop; `None` for a closed loop.
    pub rate: Option<f64>,
}

/// One kind of request. Each worker owns a `Worker` state (a conversation, for instance).
pub trait Scenario: Send + Sync + 'static {
    type Worker: Send + 'static;

    /// The state of worker `index` (0-based), created before the run starts.
    fn worker(&self, index: usize) -> Self::Worker;

    /// Sends one request and reads the whole response. `seq` is unique within the run
    /// (warm-up included) and increases in sending order.
    fn call(&self, worker: &mut Self::Worker, seq: u64) -> impl Future<Output = Outcome> + Send;
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub stats: Stats,
    /// The measurement window throughput is computed over: the duration asked for (cut short
    /// by Ctrl-C), or from the end of the warm-up to the last completion for N requests.
    pub window: Duration,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
}

struct Shared {
    rate: Option<f64>,
    /// Start of the schedule (open loop) and of the warm-up.
    t0: Instant,
    /// Requests started (closed loop) or scheduled (open loop) from here on are measured.
    measure_start: Instant,
    /// Duration mode: nothing is started or scheduled at or after this.
    end: Option<Instant>,
    /// Open loop: the first measured ticket.
    first_measured: u64,
    /// Requests mode: how many measured requests to send.
    limit: Option<u64>,
    /// Open loop: next ticket of the schedule. Closed loop: next measured request.
    tickets: AtomicU64,
    /// Sequence number handed to the scenario.
    seq: AtomicU64,
    /// Set by Ctrl-C: start nothing more.
    interrupted_at: OnceLock<Instant>,
}

impl Shared {
    fn new(plan: &Plan, t0: Instant) -> Self {
        let (measure_start, first_measured) = match plan.rate {
            None => (t0 + plan.warmup, 0),
            Some(rate) => {
                let first = ticket_count(plan.warmup, rate);
                (t0 + schedule_offset(first, rate), first)
            }
        };
        let (end, limit) = match plan.stop {
            Stop::Duration(d) => (Some(measure_start + d), None),
            Stop::Requests(n) => (None, Some(n)),
        };
        Self {
            rate: plan.rate,
            t0,
            measure_start,
            end,
            first_measured,
            limit,
            tickets: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            interrupted_at: OnceLock::new(),
        }
    }

    fn stopped(&self) -> bool {
        self.interrupted_at.get().is_some()
    }

    /// Whether a completion at `at` falls within the throughput window.
    fn in_window(&self, at: Instant) -> bool {
        self.end.is_none_or(|end| at <= end)
            && self.interrupted_at.get().is_none_or(|stop| at <= *stop)
    }
}

/// How many tickets fall within `span` at `rate` per second (rounded up).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn ticket_count(span: Duration, rate: f64) -> u64 {
    (span.as_secs_f64() * rate).ceil() as u64
}

/// When ticket `i` is due, relative to the start of the schedule.
#[allow(clippy::cast_precision_loss)]
fn schedule_offset(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// Runs `scenario` according to `plan` and returns the merged tallies.
///
/// # Errors
/// When a worker task panicked.
pub async fn run<S: Scenario>(scenario: Arc<S>, plan: Plan) -> anyhow::Result<RunResult> {
    let workers: Vec<S::Worker> = (0..plan.concurrency).map(|i| scenario.worker(i)).collect();
    let shared = Arc::new(Shared::new(&plan, Instant::now()));

    let interrupt = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing requests in flight");
                let _ = shared.interrupted_at.set(Instant::now());
            }
        })
    };

    let handles: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            tokio::spawn(worker_loop(
                Arc::clone(&scenario),
                worker,
                Arc::clone(&shared),
            ))
        })
        .collect();

    let mut stats = Stats::default();
    for handle in handles {
        stats.merge(handle.await?);
    }
    interrupt.abort();

    let last_end = stats.last_end.unwrap_or(shared.measure_start);
    let window_end = match (shared.end, shared.interrupted_at.get()) {
        (Some(end), Some(stop)) => end.min(*stop),
        (Some(end), None) => end,
        (None, Some(stop)) => last_end.min(*stop),
        (None, None) => last_end,
    };
    Ok(RunResult {
        stats,
        window: window_end.saturating_duration_since(shared.measure_start),
        interrupted: shared.stopped(),
    })
}

async fn worker_loop<S: Scenario>(
    scenario: Arc<S>,
    mut worker: S::Worker,
    shared: Arc<Shared>,
) -> Stats {
    let mut stats = Stats::default();
    loop {
        if shared.stopped() {
            break;
        }
        let (measured, clock_start) = match shared.rate {
            None => {
                let now = Instant::now();
                if shared.end.is_some_and(|end| now >= end) {
                    break;
                }
                let measured = now >= shared.measure_start;
                if measured
                    && let Some(limit) = shared.limit
                    && shared.tickets.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    break;
                }
                (measured, now)
            }
            Some(rate) => {
                let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
                let due = shared.t0 + schedule_offset(ticket, rate);
                if let Some(limit) = shared.limit {
                    if ticket >= shared.first_measured + limit {
                        break;
                    }
                } else if shared.end.is_some_and(|end| due >= end) {
                    break;
                }
                let measured = ticket >= shared.first_measured;
                if Instant::now() < due {
                    tokio::time::sleep_until(due.into()).await;
                    (measured, Instant::now())
                } else {
                    if measured {
                        stats.late_sends += 1;
                    }
                    (measured, due)
                }
            }
        };
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let outcome = scenario.call(&mut worker, seq).await;
        let end = Instant::now();
        if measured {
            let latency = end.saturating_duration_since(clock_start);
            stats.record(&outcome, latency, end, shared.in_window(end));
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    /// Answers after a fixed delay and remembers the sequence numbers it saw.
    struct Fake {
        delay: Duration,
        seen: Mutex<Vec<u64>>,
    }

    impl Scenario for Fake {
        type Worker = usize;

        fn worker(&self, index: usize) -> usize {
            index
        }

        async fn call(&self, _worker: &mut usize, seq: u64) -> Outcome {
            self.seen.lock().unwrap().push(seq);
            tokio::time::sleep(self.delay).await;
            if seq % 10 == 9 {
                Outcome::status(500, b"boom")
            } else {
                Outcome::Ok
            }
        }
    }

    fn fake(delay_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            seen: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test]
    async fn closed_loop_measures_exactly_n_requests_after_warmup() {
        let scenario = fake(2);
        let plan = Plan {
            concurrency: 4,
            warmup: Duration::from_millis(30),
            stop: Stop::Requests(100),
            rate: None,
        };
        let result = run(Arc::clone(&scenario), plan).await.unwrap();
        assert_eq!(result.stats.requests(), 100);
        // Warm-up requests were sent too, with unique sequence numbers.
        let mut seen = scenario.seen.lock().unwrap().clone();
        assert!(seen.len() > 100);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as u64, *seen.last().unwrap() + 1);
        assert!(result.stats.latency.min() >= 2_000);
        assert!(!result.interrupted);
    }

    #[tokio::test]
    async fn open_loop_follows_the_schedule() {
        let scenario = fake(1);
        let plan = Plan {
            concurrency: 8,
            warmup: Duration::from_millis(50),
            stop: Stop::Duration(Duration::from_millis(400)),
            rate: Some(500.0),
        };
        let result = run(Arc::clone(&scenario), plan).await.unwrap();
        // 500/s for 0.4 s: 200 measured requests, give or take the boundary.
        let n = result.stats.requests();
        assert!((199..=201).contains(&n), "{n}");
        assert_eq!(result.window, Duration::from_millis(400));
        assert!(result.stats.window_requests <= n);
        assert!(result.stats.window_requests >= n - 8, "{n}");
        // Every 10th sequence number fails; warm-up requests are not counted.
        assert!(result.stats.status_5xx >= 15 && result.stats.status_5xx <= 25);
    }

    #[tokio::test]
    async fn open_loop_charges_queueing_delay_to_latency() {
        // One worker, 20 ms per request, scheduled every 5 ms: the backlog grows and the
        // latency of later requests includes their wait.
        let scenario = fake(20);
        let plan = Plan {
            concurrency: 1,
            warmup: Duration::ZERO,
            stop: Stop::Requests(10),
            rate: Some(200.0),
        };
        let result = run(scenario, plan).await.unwrap();
        assert_eq!(result.stats.requests(), 10);
        assert!(result.stats.late_sends >= 8);
        // The 10th request was due at 45 ms and completed at about 200 ms.
        assert!(
            result.stats.latency.max() >= 140_000,
            "{}",
            result.stats.latency.max()
        );
    }
}
