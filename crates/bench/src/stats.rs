//! What one request ended as, and the per-worker tallies (latency histogram and counters).

use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// How many distinct error descriptions we keep to show the operator.
const MAX_SAMPLES: usize = 5;
/// How much of an error response body we keep in a sample.
const SNIPPET_CHARS: usize = 160;

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx and the body is what the endpoint should answer.
    Ok,
    /// 2xx but the body is not what the endpoint should answer.
    BadBody(String),
    /// A non-2xx status, with the start of the body.
    Status(u16, String),
    /// No response: connection refused or reset, timeout, unreadable body.
    Transport(String),
}

impl Outcome {
    /// A non-2xx outcome, keeping a short printable snippet of the body.
    #[must_use]
    pub fn status(status: u16, body: &[u8]) -> Self {
        Self::Status(status, snippet(body))
    }
}

/// The first characters of a body, on one line.
#[must_use]
pub fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Tallies of one worker (or, after merging, of the whole run).
#[derive(Debug, Default)]
pub struct Stats {
    /// Latency of every measured request, whatever its outcome.
    pub latency: Histogram,
    pub ok: u64,
    pub status_2xx: u64,
    pub bad_body: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// 1xx or out-of-range codes: should never happen.
    pub status_other: u64,
    pub transport: u64,
    /// Open loop only: requests whose scheduled time had passed before a worker was free.
    pub late_sends: u64,
    /// When the last measured request completed.
    pub last_end: Option<Instant>,
    /// Measured requests that completed within the measurement window (all of them when the
    /// run stops after N requests), and how many of those were [`Outcome::Ok`]. Throughput
    /// counts these; latency counts every measured request, stragglers included.
    pub window_requests: u64,
    pub window_ok: u64,
    /// Distinct error descriptions, at most `MAX_SAMPLES`.
    pub samples: Vec<String>,
}

impl Stats {
    /// Counts one measured request that completed at `end`, `in_window` or after it.
    pub fn record(&mut self, outcome: &Outcome, latency: Duration, end: Instant, in_window: bool) {
        self.latency.record(latency);
        self.last_end = Some(self.last_end.map_or(end, |e| e.max(end)));
        if in_window {
            self.window_requests += 1;
            if *outcome == Outcome::Ok {
                self.window_ok += 1;
            }
        }
        let sample = match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.status_2xx += 1;
                None
            }
            Outcome::BadBody(why) => {
                self.status_2xx += 1;
                self.bad_body += 1;
                Some(format!("2xx with unexpected body: {why}"))
            }
            Outcome::Status(code, body) => {
                match code {
                    300..=399 => self.status_3xx += 1,
                    400..=499 => self.status_4xx += 1,
                    500..=599 => self.status_5xx += 1,
                    _ => self.status_other += 1,
                }
                Some(format!("HTTP {code}: {body}"))
            }
            Outcome::Transport(why) => {
                self.transport += 1;
                Some(format!("transport: {why}"))
            }
        };
        if let Some(sample) = sample {
            self.add_sample(sample);
        }
    }

    fn add_sample(&mut self, sample: String) {
        if self.samples.len() < MAX_SAMPLES && !self.samples.contains(&sample) {
            self.samples.push(sample);
        }
    }

    pub fn merge(&mut self, other: Self) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        self.status_2xx += other.status_2xx;
        self.bad_body += other.bad_body;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.status_other += other.status_other;
        self.transport += other.transport;
        self.late_sends += other.late_sends;
        self.window_requests += other.window_requests;
        self.window_ok += other.window_ok;
        self.last_end = match (self.last_end, other.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for sample in other.samples {
            self.add_sample(sample);
        }
    }

    /// Every measured request.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.latency.count()
    }

    /// Requests that did not end [`Outcome::Ok`].
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.requests() - self.ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_class() {
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        let mut a = Stats::default();
        a.record(&Outcome::Ok, ms, now, true);
        a.record(&Outcome::Ok, ms, now, true);
        a.record(&Outcome::BadBody("not xml".into()), ms, now, true);
        a.record(&Outcome::status(403, b"bad\nsignature"), ms, now, true);
        let mut b = Stats::default();
        b.record(&Outcome::status(503, b""), ms, now, true);
        b.record(&Outcome::Transport("refused".into()), ms, now, true);
        b.record(&Outcome::status(403, b"bad\nsignature"), ms, now, false);
        a.merge(b);
        assert_eq!(a.requests(), 7);
        assert_eq!(a.ok, 2);
        assert_eq!(a.status_2xx, 3);
        assert_eq!(a.bad_body, 1);
        assert_eq!(a.status_4xx, 2);
        assert_eq!(a.status_5xx, 1);
        assert_eq!(a.transport, 1);
        assert_eq!(a.errors(), 5);
        assert_eq!(a.window_requests, 6);
        assert_eq!(a.window_ok, 2);
        assert_eq!(a.samples.len(), 4, "{:?}", a.samples);
        assert!(a.samples.contains(&"HTTP 403: bad signature".to_owned()));
    }
}
