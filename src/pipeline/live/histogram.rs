//! Frame latency percentiles without keeping the samples: a fixed set of buckets, log-linear
//! like HdrHistogram's, counted with atomics so that the output thread records and the status
//! thread reads without a lock and without allocating.
//!
//! Latencies are counted in microseconds. Below 128 µs every microsecond has its own bucket;
//! above, each power of two `[2^e, 2^(e+1))` is cut into 64 equal buckets, so a bucket is at
//! most 1/64 (1.6 %) of its values wide: at a 400 ms latency, 6.25 ms (4.1 ms wide buckets at
//! 262..524 ms). Powers up to 2^27 µs (268 s) have buckets; longer latencies fall into the last
//! one, and the maximum is kept exactly besides.
//!
//! A percentile is the value of rank ⌈q·n⌉ of the sorted samples (nearest rank); the histogram
//! reports the middle of the bucket that sample is in (never above the exact maximum), so it
//! is off by at most half a bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this have a bucket each.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// log2 of [`LINEAR`].
const FIRST_EXP: u32 = 7;
/// The highest power of two with buckets of its own: values up to `2^(LAST_EXP + 1) − 1` µs.
const LAST_EXP: u32 = 27;
/// Latencies are clamped to 2^44 µs (203 days), so that the sum for the mean cannot overflow
/// before 2^20 such latencies.
pub const MAX_LATENCY_US: u64 = 1 << 44;
/// The bucket of every latency from `2^(LAST_EXP + 1)` µs on; it reports the exact maximum.
const OVERFLOW: usize = (LINEAR + (LAST_EXP - FIRST_EXP + 1) as u64 * SUB) as usize;
/// Number of buckets.
pub const BUCKETS: usize = OVERFLOW + 1;

/// The bucket of a value in µs.
fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    if exp > LAST_EXP {
        return OVERFLOW;
    }
    let shift = exp - (FIRST_EXP - 1);
    let sub = (us >> shift) - SUB; // 0..64
    (LINEAR + u64::from(exp - FIRST_EXP) * SUB + sub) as usize
}

/// The smallest and largest value in µs of bucket `index`.
fn bounds(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < LINEAR {
        return (i, i);
    }
    if index >= OVERFLOW {
        return (1 << (LAST_EXP + 1), u64::MAX);
    }
    let j = i - LINEAR;
    let exp = FIRST_EXP as u64 + j / SUB;
    let shift = exp - (FIRST_EXP as u64 - 1);
    let sub = SUB + j % SUB;
    (sub << shift, ((sub + 1) << shift) - 1)
}

/// Latencies recorded from one thread (or several) and summarized from another.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    max_us: AtomicU64,
    sum_us: AtomicU64,
}

/// Percentiles of the latencies recorded since the last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of latencies recorded.
    pub count: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// The largest latency, exact.
    pub max: Duration,
    pub mean: Duration,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram (allocates its buckets, about 12 KiB, once).
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one latency (at most [`MAX_LATENCY_US`]). Lock-free, allocates nothing.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .min(MAX_LATENCY_US);
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Number of latencies recorded since the last reset.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The latency of rank ⌈q·n⌉ (see the module doc), `None` when nothing was recorded.
    /// `q` is clamped to [0, 1].
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts = self.snapshot();
        let max = self.max_us.load(Ordering::Relaxed);
        quantile_of(&counts, max, q).map(Duration::from_micros)
    }

    /// Count, median, 99th percentile, maximum and mean. Reads every bucket once into a copy
    /// on the stack (no allocation); while another thread records, the summary may be off by
    /// the latencies recorded meanwhile.
    pub fn summary(&self) -> LatencySummary {
        let counts = self.snapshot();
        let count: u64 = counts.iter().sum();
        let max = self.max_us.load(Ordering::Relaxed);
        let at = |q| Duration::from_micros(quantile_of(&counts, max, q).unwrap_or(0));
        LatencySummary {
            count,
            p50: at(0.5),
            p99: at(0.99),
            max: Duration::from_micros(if count == 0 { 0 } else { max }),
            mean: Duration::from_micros(
                self.sum_us
                    .load(Ordering::Relaxed)
                    .checked_div(count)
                    .unwrap_or(0),
            ),
        }
    }

    /// The bucket counts now, on the stack (no allocation).
    fn snapshot(&self) -> [u64; BUCKETS] {
        let mut counts = [0; BUCKETS];
        for (to, from) in counts.iter_mut().zip(self.counts.iter()) {
            *to = from.load(Ordering::Relaxed);
        }
        counts
    }

    /// Forgets everything recorded (e.g. after each status report, for percentiles per
    /// interval). Latencies recorded during the reset may be partly kept.
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }
}

/// The middle of the bucket holding the sample of rank ⌈q·n⌉, at most `max`; `max` for the
/// overflow bucket.
fn quantile_of(counts: &[u64], max: u64, q: f64) -> Option<u64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            if i == OVERFLOW {
                return Some(max);
            }
            let (low, high) = bounds(i);
            return Some((low + (high - low) / 2).min(max));
        }
    }
    Some(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut next = 0;
        for i in 0..OVERFLOW {
            let (low, high) = bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            assert_eq!(bucket(low), i);
            assert_eq!(bucket(high), i);
            if low >= LINEAR {
                assert!((high - low + 1) * SUB <= low, "bucket {i} wider than 1/64");
            }
            next = high + 1;
        }
        assert_eq!(next, 1 << (LAST_EXP + 1));
        assert_eq!(bounds(OVERFLOW).0, next);
        assert_eq!(bucket(next), OVERFLOW);
        assert_eq!(bucket(u64::MAX), OVERFLOW);
        assert_eq!(bucket(MAX_LATENCY_US), OVERFLOW);
    }

    /// The nearest-rank percentile of sorted values.
    fn reference(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_match_a_sorted_reference_within_a_bucket() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for trial in 0..40 {
            let h = LatencyHistogram::new();
            let n = rng.random_range(1..5000);
            // Latencies around a budget, with a tail and a few outliers.
            let mut values: Vec<u64> = (0..n)
                .map(|_| match rng.random_range(0..20) {
                    0 => rng.random_range(0..200),
                    1 => rng.random_range(0..5_000_000_000u64),
                    _ => 400_000 + rng.random_range(0..30_000) * (1 + trial % 3),
                })
                .collect();
            for &v in &values {
                h.record(Duration::from_micros(v));
            }
            values.sort_unstable();
            let summary = h.summary();
            assert_eq!(summary.count, n);
            assert_eq!(summary.max, Duration::from_micros(*values.last().unwrap()));
            let mean = values.iter().sum::<u64>() / n;
            assert_eq!(summary.mean, Duration::from_micros(mean));
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let want = reference(&values, q);
                let got = h.quantile(q).unwrap().as_micros() as u64;
                if want < 1 << (LAST_EXP + 1) {
                    assert_eq!(bucket(got), bucket(want), "q {q}: {got} vs {want}");
                    let (low, high) = bounds(bucket(want));
                    assert!(got.abs_diff(want) <= high - low, "q {q}: {got} vs {want}");
                } else {
                    // Beyond the last power: the overflow bucket reports the exact maximum.
                    assert_eq!(got, *values.last().unwrap());
                }
            }
            assert_eq!(summary.p50, h.quantile(0.5).unwrap());
            assert_eq!(summary.p99, h.quantile(0.99).unwrap());
        }
    }

    #[test]
    fn small_latencies_are_exact_and_reset_forgets() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary(), LatencySummary::default());
        for us in [3, 1, 2, 100, 5] {
            h.record(Duration::from_micros(us));
        }
        // Sorted: 1 2 3 5 100.
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(3)));
        assert_eq!(h.quantile(0.99), Some(Duration::from_micros(100)));
        assert_eq!(h.quantile(0.0), Some(Duration::from_micros(1)));
        h.record(Duration::MAX);
        assert_eq!(h.summary().max, Duration::from_micros(MAX_LATENCY_US));
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.summary().max, Duration::ZERO);
    }

    #[test]
    fn recording_from_several_threads_counts_every_latency() {
        let h = std::sync::Arc::new(LatencyHistogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record(Duration::from_micros(t * 100_000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.summary();
        assert_eq!(s.count, 40_000);
        assert_eq!(s.max, Duration::from_micros(309_999));
    }
}
