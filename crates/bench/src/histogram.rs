//! A fixed-size log-linear latency histogram (HdrHistogram-like), in microseconds.
//!
//! Values from 0 to 255 µs get one bucket each (exact). Above that, every power of two is cut
//! into 128 equal buckets, so a bucket is at most 1/128 (0.78 %) of its lower bound wide and
//! the midpoint we report is within 0.4 % of any value recorded in it. Values are clamped to
//! [`MAX_MICROS`] (60 s); the exact minimum, maximum, sum and count are kept alongside.
//! Recording is O(1) and allocation-free; each worker owns one and they are merged at the end.

use std::time::Duration;

/// Sub-buckets per power of two, as a number of bits (2^7 = 128).
const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Values below this are recorded exactly, one bucket per microsecond.
const LINEAR_LIMIT: u64 = 2 * SUB_COUNT;
/// The largest value tracked (60 s); larger values are recorded as this.
pub const MAX_MICROS: u64 = 60_000_000;
/// Highest set bit of `MAX_MICROS` (2^25 <= 60e6 < 2^26).
const MAX_BIT: u32 = u64::BITS - 1 - MAX_MICROS.leading_zeros();
/// `LINEAR_LIMIT` buckets, then `SUB_COUNT` for each octave from 2^8 to 2^MAX_BIT.
const BUCKETS: usize = (LINEAR_LIMIT + (MAX_BIT as u64 - SUB_BITS as u64) * SUB_COUNT) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    #[must_use]
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one latency, rounded down to whole microseconds.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros);
    }

    pub fn record_micros(&mut self, micros: u64) {
        let v = micros.min(MAX_MICROS);
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest recorded value in µs (exact), 0 when empty.
    #[must_use]
    pub fn min(&self) -> u64 {
        if self.count == 0 { 0 } else { self.min }
    }

    /// Largest recorded value in µs (exact, after clamping to 60 s), 0 when empty.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean in µs, 0 when empty.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // a latency sum fits f64's mantissa for any real run
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at percentile `p` (0..=100) in µs: the smallest recorded value such that at
    /// least `p` % of the values are less than or equal to it, to within the bucket precision.
    /// 0 when empty.
    #[must_use]
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let p = p.clamp(0.0, 100.0);
        // Rank of the wanted value, 1-based: ceil(p% of count), at least 1. The tolerance
        // keeps 99.9 % of 1000 at 999 despite 0.999 * 1000 rounding up to 999.0000000000001.
        let exact = (p / 100.0) * self.count as f64;
        let rank = (exact * (1.0 - 1e-12)).ceil().max(1.0) as u64;
        let rank = rank.min(self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds(i);
                let mid = low + (high - low) / 2;
                // Never report outside what was actually recorded.
                return mid.clamp(self.min(), self.max);
            }
        }
        self.max
    }
}

/// Bucket index of a value already clamped to `MAX_MICROS`.
fn index(v: u64) -> usize {
    if v < LINEAR_LIMIT {
        return v as usize;
    }
    let bit = u64::BITS - 1 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = bit - SUB_BITS;
    let sub = (v >> shift) - SUB_COUNT; // 0..SUB_COUNT
    let octave = u64::from(bit - SUB_BITS - 1);
    (LINEAR_LIMIT + octave * SUB_COUNT + sub) as usize
}

/// Inclusive lowest and highest value of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR_LIMIT {
        return (i, i);
    }
    let octave = (i - LINEAR_LIMIT) / SUB_COUNT;
    let sub = (i - LINEAR_LIMIT) % SUB_COUNT;
    let shift = octave + 1;
    let low = (SUB_COUNT + sub) << shift;
    (low, low + (1 << shift) - 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

    use super::*;

    fn within(actual: u64, expected: u64, rel: f64) -> bool {
        let diff = actual.abs_diff(expected) as f64;
        diff <= (expected as f64 * rel).max(1.0)
    }

    #[test]
    fn buckets_cover_the_range_contiguously() {
        let mut prev_high = None;
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert!(low <= high);
            if let Some(p) = prev_high {
                assert_eq!(low, p + 1, "bucket {i} is not contiguous");
            }
            prev_high = Some(high);
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            // Relative width is at most 1/128 of the lower bound.
            assert!((high - low) as f64 <= (low as f64 / 128.0).max(0.0) + 0.5);
        }
        assert!(prev_high.unwrap() >= MAX_MICROS);
        assert!(index(MAX_MICROS) < BUCKETS);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record_micros(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_on_a_uniform_millisecond_range_are_within_one_percent() {
        // 1 ms .. 100 ms in 10 µs steps.
        let mut h = Histogram::new();
        let values: Vec<u64> = (100..=10_000).map(|i| i * 10).collect();
        for &v in &values {
            h.record_micros(v);
        }
        let n = values.len();
        for p in [50.0, 90.0, 95.0, 99.0, 99.9] {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            let expected = values[rank - 1];
            let got = h.percentile(p);
            assert!(
                within(got, expected, 0.01),
                "p{p}: got {got}, want {expected}"
            );
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.min(), 1_000);
    }

    #[test]
    fn percentiles_on_a_skewed_distribution() {
        // 990 fast requests at 2 ms, 9 at 250 ms, 1 at 3 s.
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(Duration::from_millis(2));
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(250));
        }
        h.record(Duration::from_secs(3));
        assert!(within(h.percentile(50.0), 2_000, 0.01));
        assert!(within(h.percentile(99.0), 2_000, 0.01));
        assert!(within(h.percentile(99.5), 250_000, 0.01));
        assert!(within(h.percentile(99.9), 250_000, 0.01));
        assert_eq!(h.percentile(100.0), 3_000_000);
        assert_eq!(h.max(), 3_000_000);
    }

    #[test]
    fn every_single_value_round_trips_within_precision() {
        let mut v = 1u64;
        while v <= MAX_MICROS {
            let mut h = Histogram::new();
            h.record_micros(v);
            h.record_micros(v);
            // With min == max the clamp makes it exact; check the raw bucket instead.
            let (low, high) = bounds(index(v));
            let mid = low + (high - low) / 2;
            assert!(within(mid, v, 0.005), "{v} -> bucket mid {mid}");
            assert_eq!(h.percentile(50.0), v);
            v = v * 3 / 2 + 1;
        }
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 1..=50 {
            a.record_micros(v * 1000);
        }
        for v in 51..=100 {
            b.record_micros(v * 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.min(), 1000);
        assert_eq!(a.max(), 100_000);
        assert!(within(a.percentile(50.0), 50_000, 0.01));
        assert!(within(a.percentile(99.0), 99_000, 0.01));
    }

    #[test]
    fn huge_values_are_clamped_and_empty_is_zero() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(99.0), 0);
        assert_eq!(h.min(), 0);
        assert!(h.mean().abs() < f64::EPSILON);
        h.record(Duration::from_secs(3600));
        assert_eq!(h.max(), MAX_MICROS);
        assert_eq!(h.percentile(50.0), MAX_MICROS);
    }
}
