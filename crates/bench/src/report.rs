//! The run summary, for people (aligned text) and for scripts (one JSON object).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::runner::{Plan, RunResult, Stop};

pub struct Report<'a> {
    /// `sms` or `chat`.
    pub scenario: &'static str,
    /// The URL requests were sent to.
    pub target: &'a str,
    pub plan: Plan,
    pub result: &'a RunResult,
}

/// Percentiles reported, with their JSON key.
const PERCENTILES: &[(&str, f64)] = &[
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p999", 99.9),
];

#[allow(clippy::cast_precision_loss)] // display only
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report<'_> {
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn error_rate(&self) -> f64 {
        let stats = &self.result.stats;
        if stats.requests() == 0 {
            0.0
        } else {
            stats.errors() as f64 / stats.requests() as f64
        }
    }

    /// Successful requests completed per second within the measurement window.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn throughput(&self) -> f64 {
        let secs = self.result.window.as_secs_f64();
        if secs > 0.0 {
            self.result.stats.window_ok as f64 / secs
        } else {
            0.0
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn requests_per_second(&self) -> f64 {
        let secs = self.result.window.as_secs_f64();
        if secs > 0.0 {
            self.result.stats.window_requests as f64 / secs
        } else {
            0.0
        }
    }

    #[must_use]
    pub fn json(&self) -> Value {
        let stats = &self.result.stats;
        let h = &stats.latency;
        let mut latency = serde_json::Map::new();
        latency.insert("min".into(), json!(ms(h.min())));
        latency.insert("mean".into(), json!(h.mean() / 1000.0));
        for (key, p) in PERCENTILES {
            latency.insert((*key).into(), json!(ms(h.percentile(*p))));
        }
        latency.insert("max".into(), json!(ms(h.max())));
        let (stop_duration, stop_requests) = match self.plan.stop {
            Stop::Duration(d) => (Some(d.as_secs_f64()), None),
            Stop::Requests(n) => (None, Some(n)),
        };
        json!({
            "scenario": self.scenario,
            "url": self.target,
            "mode": if self.plan.rate.is_some() { "open" } else { "closed" },
            "concurrency": self.plan.concurrency,
            "target_rate": self.plan.rate,
            "warmup_s": self.plan.warmup.as_secs_f64(),
            "planned_duration_s": stop_duration,
            "planned_requests": stop_requests,
            "duration_s": self.result.window.as_secs_f64(),
            "requests": stats.requests(),
            "ok": stats.ok,
            "throughput_rps": self.throughput(),
            "requests_per_s": self.requests_per_second(),
            "after_window": stats.requests() - stats.window_requests,
            "latency_ms": latency,
            "status": {
                "2xx": stats.status_2xx,
                "3xx": stats.status_3xx,
                "4xx": stats.status_4xx,
                "5xx": stats.status_5xx,
                "other": stats.status_other,
            },
            "bad_body": stats.bad_body,
            "transport_errors": stats.transport,
            "errors": stats.errors(),
            "error_rate": self.error_rate(),
            "late_sends": stats.late_sends,
            "interrupted": self.result.interrupted,
            "error_samples": stats.samples,
        })
    }

    #[must_use]
    pub fn human(&self) -> String {
        let stats = &self.result.stats;
        let h = &stats.latency;
        let unit = if self.scenario == "sms" {
            "msgs/s"
        } else {
            "turns/s"
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "concierge-loadgen {} -> {}",
            self.scenario, self.target
        );
        let mode = match self.plan.rate {
            None => format!("closed loop, {} workers", self.plan.concurrency),
            Some(rate) => format!(
                "open loop at {rate} req/s, up to {} in flight",
                self.plan.concurrency
            ),
        };
        let _ = writeln!(
            out,
            "  mode        {mode}, warm-up {:.1}s{}",
            self.plan.warmup.as_secs_f64(),
            if self.result.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  duration    {:.2} s",
            self.result.window.as_secs_f64()
        );
        let _ = write!(out, "  requests    {} ({} ok)", stats.requests(), stats.ok);
        let stragglers = stats.requests() - stats.window_requests;
        if stragglers > 0 {
            let _ = write!(out, ", {stragglers} completed after the window");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  throughput  {:.1} {unit}", self.throughput());
        let _ = write!(out, "  latency ms ");
        for (key, p) in PERCENTILES {
            let _ = write!(out, " {key} {:.2}", ms(h.percentile(*p)));
        }
        let _ = writeln!(out, "  max {:.2}", ms(h.max()));
        let _ = writeln!(
            out,
            "              min {:.2}  mean {:.2}",
            ms(h.min()),
            h.mean() / 1000.0
        );
        let _ = writeln!(
            out,
            "  errors      {} ({:.2} %): 4xx {}, 5xx {}, transport {}, bad body {}, 3xx/other {}",
            stats.errors(),
            self.error_rate() * 100.0,
            stats.status_4xx,
            stats.status_5xx,
            stats.transport,
            stats.bad_body,
            stats.status_3xx + stats.status_other
        );
        if self.plan.rate.is_some() {
            let _ = writeln!(
                out,
                "  late sends  {} (all workers busy when due; their wait counts as latency)",
                stats.late_sends
            );
        }
        for sample in &stats.samples {
            let _ = writeln!(out, "  e.g.        {sample}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use super::*;
    use crate::stats::{Outcome, Stats};

    #[test]
    fn figures_are_consistent() {
        let now = Instant::now();
        let mut stats = Stats::default();
        for i in 1..=99 {
            stats.record(&Outcome::Ok, Duration::from_millis(i), now, true);
        }
        stats.record(
            &Outcome::status(500, b"x"),
            Duration::from_millis(100),
            now,
            true,
        );
        // Completed after the window: in the latency figures, not in the throughput.
        stats.record(&Outcome::Ok, Duration::from_secs(5), now, false);
        let result = RunResult {
            stats,
            window: Duration::from_secs(2),
            interrupted: false,
        };
        let report = Report {
            scenario: "sms",
            target: "http://t/webhooks/twilio/sms",
            plan: Plan {
                concurrency: 4,
                warmup: Duration::ZERO,
                stop: Stop::Requests(100),
                rate: None,
            },
            result: &result,
        };
        let v = report.json();
        assert_eq!(v["requests"], 101);
        assert_eq!(v["ok"], 100);
        assert_eq!(v["after_window"], 1);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["status"]["5xx"], 1);
        assert!((v["throughput_rps"].as_f64().unwrap() - 49.5).abs() < 1e-9);
        assert!((v["error_rate"].as_f64().unwrap() - 1.0 / 101.0).abs() < 1e-9);
        let p99 = v["latency_ms"]["p99"].as_f64().unwrap();
        assert!((p99 - 100.0).abs() < 1.0, "{p99}");
        assert!((v["latency_ms"]["max"].as_f64().unwrap() - 5000.0).abs() < 1e-9);
        let text = report.human();
        assert!(text.contains("49.5 msgs/s"), "{text}");
        assert!(text.contains("HTTP 500: x"), "{text}");
    }
}
