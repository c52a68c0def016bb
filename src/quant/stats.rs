//! Range statistics of one tensor over a calibration set, and the three ways of choosing its
//! INT8 range from them: the largest magnitude seen (`max`), a percentile of the magnitudes, and
//! the threshold of least information loss (`entropy`, the method of TensorRT's
//! EntropyCalibration2).
//!
//! Collection takes two passes over the set, as TensorRT's calibrators do: the first finds the
//! largest magnitude `amax`, the second fills a histogram of |x| with [`BINS`] equal bins over
//! `[0, amax]`. Fixing the range before the histogram keeps every bin edge exact (no re-binning
//! when a later sample is larger).

/// Histogram bins, as TensorRT's entropy calibrator.
pub const BINS: usize = 2048;

/// Quantized levels on one side of zero for symmetric INT8 (scale = amax / 127).
pub const LEVELS: usize = 128;

/// Statistics of one tensor: the first pass's maximum magnitude, then the histogram of |x|.
#[derive(Clone, Debug)]
pub struct TensorStats {
    amax: f32,
    hist: Vec<u64>,
    count: u64,
}

impl Default for TensorStats {
    fn default() -> TensorStats {
        TensorStats::new()
    }
}

impl TensorStats {
    pub fn new() -> TensorStats {
        TensorStats {
            amax: 0.0,
            hist: vec![0; BINS],
            count: 0,
        }
    }

    /// First pass: widens the maximum magnitude with `data` (non-finite values are ignored).
    pub fn observe_max(&mut self, data: &[f32]) {
        for &x in data {
            let a = x.abs();
            if a.is_finite() && a > self.amax {
                self.amax = a;
            }
        }
    }

    /// Second pass: counts |x| of `data` into the histogram over `[0, amax]` (values beyond
    /// `amax`, which a deterministic second pass never sees, go to the last bin).
    pub fn observe_hist(&mut self, data: &[f32]) {
        if self.amax <= 0.0 {
            self.count += data.len() as u64;
            self.hist[0] += data.len() as u64;
            return;
        }
        let per_bin = BINS as f64 / self.amax as f64;
        for &x in data {
            let a = x.abs();
            if !a.is_finite() {
                continue;
            }
            let b = ((a as f64 * per_bin) as usize).min(BINS - 1);
            self.hist[b] += 1;
            self.count += 1;
        }
    }

    /// The largest magnitude seen.
    pub fn max(&self) -> f32 {
        self.amax
    }

    /// The histogram of |x| (valid after the second pass).
    pub fn histogram(&self) -> &[u64] {
        &self.hist
    }

    fn bin_width(&self) -> f64 {
        self.amax as f64 / BINS as f64
    }

    /// The magnitude below which `pct` percent of the values lie, at bin resolution (the upper
    /// edge of the bin where the cumulative count reaches `pct`).
    pub fn percentile(&self, pct: f64) -> f32 {
        if self.count == 0 || self.amax <= 0.0 {
            return self.amax;
        }
        let target = (pct / 100.0 * self.count as f64).ceil() as u64;
        let mut cum = 0u64;
        for (i, &c) in self.hist.iter().enumerate() {
            cum += c;
            if cum >= target {
                return ((i + 1) as f64 * self.bin_width()) as f32;
            }
        }
        self.amax
    }

    /// The threshold of least KL divergence between the histogram clipped at the threshold
    /// (reference P, the clipped mass added to its last bin) and the same bins merged into
    /// [`LEVELS`] levels and spread back evenly over the non-empty bins of each level
    /// (candidate Q). Thresholds are tried at every bin edge from [`LEVELS`] to [`BINS`]; the
    /// result is that edge's magnitude, as TensorRT's EntropyCalibration2 describes it.
    pub fn entropy(&self) -> f32 {
        if self.count == 0 || self.amax <= 0.0 {
            return self.amax;
        }
        let hist: Vec<f64> = self.hist.iter().map(|&c| c as f64).collect();
        // Suffix sums: the mass clipped at each threshold.
        let mut beyond = vec![0.0; BINS + 1];
        for i in (0..BINS).rev() {
            beyond[i] = beyond[i + 1] + hist[i];
        }
        let mut best = (f64::INFINITY, BINS);
        let mut p = vec![0.0; BINS];
        let mut q = vec![0.0; BINS];
        for i in LEVELS..=BINS {
            p[..i].copy_from_slice(&hist[..i]);
            p[i - 1] += beyond[i];
            // Merge bins [0, i) into LEVELS groups of (nearly) equal width.
            for level in 0..LEVELS {
                let start = level * i / LEVELS;
                let end = (level + 1) * i / LEVELS;
                let group = &hist[start..end];
                let total: f64 = group.iter().sum();
                let nonzero = group.iter().filter(|&&c| c > 0.0).count();
                for (j, &c) in group.iter().enumerate() {
                    q[start + j] = if c > 0.0 { total / nonzero as f64 } else { 0.0 };
                }
            }
            let kl = kl_divergence(&p[..i], &q[..i]);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        (best.1 as f64 * self.bin_width()) as f32
    }
}

/// KL(P‖Q) of two unnormalised distributions; a bin where P has mass and Q has none (the last
/// bin's clipped mass) is compared with a tiny Q instead of giving infinity.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    if sp <= 0.0 || sq <= 0.0 {
        return f64::INFINITY;
    }
    const EPS: f64 = 1e-12;
    p.iter()
        .zip(q)
        .filter(|(&pi, _)| pi > 0.0)
        .map(|(&pi, &qi)| {
            let pn = pi / sp;
            let qn = (qi / sq).max(EPS);
            pn * (pn / qn).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(data: &[f32]) -> TensorStats {
        let mut s = TensorStats::new();
        s.observe_max(data);
        s.observe_hist(data);
        s
    }

    #[test]
    fn max_is_the_largest_magnitude() {
        let s = stats(&[0.5, -3.0, 2.0, f32::NAN]);
        assert_eq!(s.max(), 3.0);
    }

    #[test]
    fn percentile_of_a_uniform_ramp() {
        let data: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        let s = stats(&data);
        let p = s.percentile(90.0);
        assert!((p - 0.9).abs() < 2.0 / BINS as f32, "{p}");
        assert_eq!(s.percentile(100.0), s.max());
    }

    #[test]
    fn entropy_clips_a_long_tail_and_keeps_a_uniform_range() {
        // A uniform distribution loses nothing by its full range: the threshold is the maximum.
        let uniform: Vec<f32> = (0..200_000).map(|i| i as f32 / 200_000.0).collect();
        let s = stats(&uniform);
        assert!(
            s.entropy() > 0.95 * s.max(),
            "{} vs {}",
            s.entropy(),
            s.max()
        );
        // A bulk near zero with one far outlier: the threshold ignores the outlier.
        let mut tail: Vec<f32> = (0..200_000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        tail.push(100.0);
        let s = stats(&tail);
        assert!(
            s.entropy() < 0.1 * s.max(),
            "{} vs {}",
            s.entropy(),
            s.max()
        );
        assert!(s.entropy() >= 0.9, "{}", s.entropy());
    }

    #[test]
    fn zero_tensor_has_zero_ranges() {
        let s = stats(&[0.0; 16]);
        assert_eq!((s.max(), s.percentile(99.9), s.entropy()), (0.0, 0.0, 0.0));
    }
}
