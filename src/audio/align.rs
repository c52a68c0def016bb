//! Keeping a device's samples on the clock: which 16 kHz index each captured chunk gets.
//!
//! The capture stream promises that sample `n` was captured at `t0 + n/16000` on the service
//! clock. A device delivers chunks stamped with the capture time `t` of their first sample,
//! but its crystal runs a little fast or slow (±100 ppm is common: 1.6 samples per second at
//! 16 kHz, 5760 per hour), it loses samples in an xrun, and it may vanish and come back. For
//! every chunk the [`Aligner`] compares where the chunk would land if appended (`next`, the
//! index of the next sample) with where its timestamp says it belongs (`(t − t0)·16000`):
//!
//! - `e = next − (t − t0)·16000` is smoothed over about [`TAU_S`] seconds (timestamps jitter
//!   by scheduling when the device gives none of its own);
//! - when the smoothed error exceeds [`DEADBAND`] samples one sample is dropped (the device is
//!   fast, we are ahead) or repeated (slow), at most one per [`MIN_FIX_SPACING`] samples (one
//!   per 1000: up to 1000 ppm is followed; 100 ppm needs one per 10 000);
//! - an error larger than the gap threshold (an xrun, a reconnection, a stalled thread) is
//!   fixed at once: silence fills a gap, samples that would overlap are skipped.
//!
//! The aligner only does arithmetic; the capture thread applies its [`Plan`] to the samples.

use crate::clock::Pts;

/// Smoothing time constant of the alignment error.
pub const TAU_S: f64 = 2.0;
/// Smoothed error (in samples) beyond which single samples are inserted or dropped.
pub const DEADBAND: f64 = 2.0;
/// At least this many samples between two single-sample corrections.
pub const MIN_FIX_SPACING: u64 = 1000;
/// Smallest error (in samples) fixed at once rather than by single samples: 20 ms.
pub const MIN_GAP: f64 = 320.0;

const RATE: f64 = 16_000.0;

/// A single-sample correction applied at the end of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    None,
    /// Repeat the chunk's last sample once.
    Insert,
    /// Leave out the chunk's last sample.
    Drop,
}

/// How to place one chunk of `len` samples: `pad` zeros first, then the chunk without its
/// first `skip` samples, with `fix` at its end. The first sample written has index `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub first: u64,
    pub pad: u64,
    pub skip: usize,
    pub fix: Fix,
}

impl Plan {
    /// Samples this plan writes for a chunk of `len`.
    pub fn written(&self, len: usize) -> u64 {
        let body = (len - self.skip) as u64;
        let body = match self.fix {
            Fix::None => body,
            Fix::Insert => body + 1,
            Fix::Drop => body.saturating_sub(1),
        };
        self.pad + body
    }
}

/// Counters of what the aligner did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlignStats {
    pub inserted: u64,
    pub dropped: u64,
    /// Silence samples written to fill gaps.
    pub filled: u64,
    /// Device samples skipped because they would have overlapped.
    pub skipped: u64,
}

/// Places chunks on the 16 kHz index; see the module documentation.
#[derive(Clone, Debug)]
pub struct Aligner {
    t0: Option<Pts>,
    next: u64,
    err: f64,
    since_fix: u64,
    resync: bool,
    gap: f64,
    stats: AlignStats,
}

impl Default for Aligner {
    fn default() -> Self {
        Aligner::new()
    }
}

impl Aligner {
    pub fn new() -> Aligner {
        Aligner {
            t0: None,
            next: 0,
            err: 0.0,
            since_fix: 0,
            resync: true,
            gap: MIN_GAP,
            stats: AlignStats::default(),
        }
    }

    /// Sets `t0` (sample 0 is silence captured at `t0`) when nothing set it yet: for a stream
    /// that starts without its device.
    pub fn start_at(&mut self, t0: Pts) {
        self.t0.get_or_insert(t0);
    }

    /// Capture time of sample 0, once known.
    pub fn t0(&self) -> Option<Pts> {
        self.t0
    }

    /// Index of the next sample.
    #[cfg(test)]
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn stats(&self) -> AlignStats {
        self.stats
    }

    /// Errors up to `samples` (at least [`MIN_GAP`]) are corrected by single samples; larger
    /// ones at once. Set it to a couple of device periods: timestamps taken from the clock can
    /// be off by a period.
    pub fn set_gap(&mut self, samples: f64) {
        self.gap = samples.max(MIN_GAP);
    }

    /// The next chunk is placed exactly where its timestamp says (after a reconnection or an
    /// xrun), not smoothed.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// The (signed) index the timestamp `t` corresponds to.
    fn expected(&self, t: Pts, t0: Pts) -> f64 {
        (t.nanos() as f64 - t0.nanos() as f64) * RATE / 1e9
    }

    /// Places a chunk of `len` samples whose first one was captured at `t`, and advances the
    /// stream by what the plan writes.
    pub fn place(&mut self, len: usize, t: Pts) -> Plan {
        let t0 = *self.t0.get_or_insert(t);
        let e = self.next as f64 - self.expected(t, t0);
        let mut plan = Plan {
            first: self.next,
            pad: 0,
            skip: 0,
            fix: Fix::None,
        };
        if self.resync || e.abs() > self.gap {
            self.err = 0.0;
            let whole = e.round();
            if whole < 0.0 {
                plan.pad = (-whole) as u64;
            } else if whole > 0.0 {
                plan.skip = (whole as usize).min(len);
            }
            // Stay in resync mode until the overlap is used up.
            self.resync = whole > len as f64;
            self.stats.filled += plan.pad;
            self.stats.skipped += plan.skip as u64;
        } else {
            let alpha = (len as f64 / RATE / TAU_S).min(1.0);
            self.err += alpha * (e - self.err);
            let spaced = self.since_fix + len as u64 >= MIN_FIX_SPACING;
            if spaced && len > 0 {
                if self.err > DEADBAND {
                    plan.fix = Fix::Drop;
                    self.err -= 1.0;
                    self.stats.dropped += 1;
                } else if self.err < -DEADBAND {
                    plan.fix = Fix::Insert;
                    self.err += 1.0;
                    self.stats.inserted += 1;
                }
            }
        }
        let written = plan.written(len);
        self.next += written;
        self.since_fix = match plan.fix {
            Fix::None => self.since_fix + written,
            Fix::Insert | Fix::Drop => 0,
        };
        plan
    }

    /// Silence to write now so that the stream reaches `due` samples (the samples whose time
    /// has passed, minus a margin): `(first, count)`. Sets `t0 = now` when nothing set it yet.
    pub fn silence_until(&mut self, now: Pts, margin: u64) -> (u64, u64) {
        let t0 = *self.t0.get_or_insert(now);
        let due = self.expected(now, t0).floor().max(0.0) as u64;
        let target = due.saturating_sub(margin);
        let first = self.next;
        let n = target.saturating_sub(first);
        self.next += n;
        if n > 0 {
            self.since_fix = 0;
        }
        (first, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> Pts {
        Pts::from_nanos((seconds * 1e9).round() as u64)
    }

    #[test]
    fn chunks_on_time_are_appended_unchanged() {
        let mut a = Aligner::new();
        for k in 0..1000u64 {
            let p = a.place(256, at(10.0 + k as f64 * 256.0 / 16_000.0));
            assert_eq!(
                p,
                Plan {
                    first: k * 256,
                    pad: 0,
                    skip: 0,
                    fix: Fix::None
                }
            );
        }
        assert_eq!(a.t0(), Some(at(10.0)));
        assert_eq!(a.stats(), AlignStats::default());
    }

    /// A device whose clock runs `ppm` fast (positive) or slow, for `seconds`: returns the
    /// final alignment error in samples and the stats.
    fn simulate(ppm: f64, seconds: f64, jitter_samples: f64) -> (f64, AlignStats, u64) {
        let mut a = Aligner::new();
        let chunk = 256usize;
        let device_rate = RATE * (1.0 + ppm * 1e-6);
        let chunks = (seconds * device_rate / chunk as f64) as u64;
        let mut worst = 0.0f64;
        let mut last_fix_at: Option<u64> = None;
        let mut min_spacing = u64::MAX;
        // A deterministic jitter pattern (no RNG needed).
        let mut j = 0x1234_5678u64;
        for k in 0..chunks {
            j = j
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((j >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * jitter_samples;
            let t = 1.0 + (k as f64 * chunk as f64 + noise) / device_rate;
            let p = a.place(chunk, at(t));
            if p.fix != Fix::None {
                if let Some(prev) = last_fix_at {
                    min_spacing = min_spacing.min(p.first - prev);
                }
                last_fix_at = Some(p.first);
            }
            // True error after the warm-up: the index against the chunk's true capture time
            // (noise-free), counted from the t0 the aligner chose (the first chunk's stamp).
            if t > 60.0 {
                let t0 = a.t0().unwrap().nanos() as f64 * 1e-9;
                let exact = (1.0 + k as f64 * chunk as f64 / device_rate - t0) * RATE;
                worst = worst.max((p.first as f64 - exact).abs());
            }
        }
        (worst, a.stats(), min_spacing)
    }

    #[test]
    fn a_device_100_ppm_fast_stays_aligned_for_an_hour() {
        let (worst, stats, spacing) = simulate(100.0, 3600.0, 0.0);
        // 100 ppm over an hour is 5760 samples; every one of them is dropped, none inserted.
        assert!((5750..=5770).contains(&stats.dropped), "{stats:?}");
        assert_eq!(stats.inserted, 0);
        assert_eq!((stats.filled, stats.skipped), (0, 0));
        assert!(worst < 2.0 * DEADBAND + 16.0, "worst error {worst} samples");
        assert!(spacing >= MIN_FIX_SPACING, "fixes {spacing} samples apart");
    }

    #[test]
    fn a_slow_device_with_jittery_timestamps_stays_aligned() {
        // Timestamps off by up to ±40 samples (±2.5 ms), as when they come from the clock.
        let (worst, stats, spacing) = simulate(-100.0, 600.0, 40.0);
        // 960 samples to insert, give or take the first chunk's timestamp error (t0).
        let net = stats.inserted as i64 - stats.dropped as i64;
        assert!((960 - 45..=960 + 45).contains(&net), "{stats:?}");
        assert!(worst < 12.0, "worst error {worst} samples {stats:?}");
        assert!(spacing >= MIN_FIX_SPACING);
    }

    #[test]
    fn a_gap_is_filled_with_silence_and_an_overlap_skipped() {
        let mut a = Aligner::new();
        a.place(160, at(0.0));
        a.place(160, at(0.01));
        // 100 ms lost in an xrun: the next chunk starts 1600 samples later than appended.
        let p = a.place(160, at(0.12));
        assert_eq!((p.first, p.pad, p.skip), (320, 1600, 0));
        assert_eq!(a.next(), 320 + 1600 + 160);
        // A chunk stamped 50 ms too early overlaps what was written: skip that much.
        let p = a.place(1000, at(0.13 - 0.05));
        assert_eq!((p.pad, p.skip), (0, 800));
        assert_eq!(a.next(), 2080 + 200);
        assert_eq!(a.stats().filled, 1600);
        assert_eq!(a.stats().skipped, 800);
    }

    #[test]
    fn silence_keeps_time_while_the_device_is_away_and_resync_places_its_return() {
        let mut a = Aligner::new();
        assert_eq!(a.silence_until(at(5.0), 0), (0, 0));
        assert_eq!(a.t0(), Some(at(5.0)));
        assert_eq!(a.silence_until(at(5.5), 160), (0, 8000 - 160));
        assert_eq!(a.silence_until(at(5.5), 160), (7840, 0));
        a.resync();
        // The device comes back with a chunk captured at 5.49 s: index 7840 exactly.
        let p = a.place(256, at(5.49));
        assert_eq!((p.first, p.pad, p.skip), (7840, 0, 0));
        // The next chunk comes 100 ms after the end of that one: 1600 samples of silence.
        a.resync();
        let p = a.place(256, at(5.49 + 256.0 / 16_000.0 + 0.1));
        assert_eq!(p.pad, 1600);
    }
}
