//! The maths of streaming motion: the sliding-window geometry, running waveform normalization,
//! seam blending and Gaussian smoothing that looks at most `lookahead` frames ahead.
//!
//! MODA is non-causal within a window, so live audio is cut into windows of
//! `H` history + `K` chunk + `L` lookahead frames (a fixed shape, so an engine can be static).
//! A window starting at frame `s` runs once the audio of its last frame has arrived and yields
//! frames `[s + H, s + H + K)`; the next window starts at `s + K`. Its first `H` frames give
//! the network context, its last `L` frames are a look into the future that the smoothing uses
//! and that the next window predicts again (the two predictions are cross-faded at the seam).
//!
//! ```text
//! window s:      |---- H history ----|== K emitted ==|-- L lookahead --|
//! window s + K:              |---- H history ----|== K emitted ==|-- L lookahead --|
//! ```
//!
//! Latency contributed: a frame can be emitted only after the `K − 1` frames after it in its
//! chunk and the `L` lookahead frames have been heard, so at most `(K + L)` frames of audio.

use std::ops::Range;

use super::smooth::gaussian_weights;

/// The live window, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamWindow {
    /// Frames of context before the chunk.
    pub history: usize,
    /// Frames emitted per run.
    pub chunk: usize,
    /// Frames of future after the chunk.
    pub lookahead: usize,
}

impl Default for StreamWindow {
    /// 3 s of history, chunks of 5 frames (a MODA run every 167 ms), 5 frames of lookahead.
    fn default() -> Self {
        StreamWindow {
            history: 90,
            chunk: 5,
            lookahead: 5,
        }
    }
}

impl StreamWindow {
    /// Frames in one window.
    pub fn frames(&self) -> usize {
        self.history + self.chunk + self.lookahead
    }

    /// Checks the geometry: a chunk of at least one frame, a window of at least two frames
    /// (MODA's interpolation needs two) and at most 600 (MODA's positional tables).
    ///
    /// # Errors
    /// A sentence naming the value that does not fit.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk == 0 {
            return Err("motion.chunk_frames must be at least 1".into());
        }
        if !(2..=600).contains(&self.frames()) {
            return Err(format!(
                "history + chunk + lookahead = {} frames; a MODA window holds 2 to 600 frames",
                self.frames()
            ));
        }
        Ok(())
    }
}

/// Running mean and variance of the waveform, forgetting with a time constant, for the live
/// replacement of the whole-file normalization `(x − mean) / sqrt(var + 1e-7)`.
///
/// The denominator never falls below `floor`: in silence or a quiet room the signal stays
/// small instead of being amplified to speech-sized input.
#[derive(Clone, Debug)]
pub struct RunningNorm {
    /// Forgetting factor per sample, `exp(−1 / (τ · rate))`.
    decay: f64,
    floor: f32,
    weight: f64,
    mean: f64,
    /// Weighted sum of squared deviations (West's update).
    m2: f64,
}

impl RunningNorm {
    /// Statistics over roughly the last `tau_samples` samples, with a denominator floor.
    pub fn new(tau_samples: f64, floor: f32) -> RunningNorm {
        RunningNorm {
            decay: (-1.0 / tau_samples.max(1.0)).exp(),
            floor,
            weight: 0.0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// Takes in new samples.
    pub fn update(&mut self, samples: &[f32]) {
        for &x in samples {
            let x = f64::from(x);
            self.weight = self.weight * self.decay + 1.0;
            self.m2 *= self.decay;
            let delta = x - self.mean;
            self.mean += delta / self.weight;
            self.m2 += delta * (x - self.mean);
        }
    }

    /// The current (mean, denominator).
    pub fn stats(&self) -> (f32, f32) {
        if self.weight == 0.0 {
            return (0.0, self.floor.max(1.0));
        }
        let var = (self.m2 / self.weight).max(0.0);
        let denom = ((var + 1e-7).sqrt() as f32).max(self.floor);
        (self.mean as f32, denom)
    }

    /// Normalizes `src` into `dst` with the current statistics.
    pub fn apply(&self, src: &[f32], dst: &mut [f32]) {
        let (mean, denom) = self.stats();
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s - mean) / denom;
        }
    }
}

/// Cross-fades the first frames of a new prediction into the previous window's prediction of
/// the same frames: frame `j` of `blend` takes `(j + 1) / (blend + 1)` of the new value.
/// `new` and `old` are row-major `frames × channels`; only the first `min(old frames, new
/// frames)` rows are blended.
pub fn blend_seam(new: &mut [f32], old: &[f32], channels: usize) {
    let rows = (new.len().min(old.len())) / channels;
    for (j, (n, o)) in new
        .chunks_exact_mut(channels)
        .zip(old.chunks_exact(channels))
        .enumerate()
    {
        let a = (j + 1) as f32 / (rows + 1) as f32;
        for (x, &y) in n.iter_mut().zip(o) {
            *x = a * *x + (1.0 - a) * y;
        }
    }
}

/// Gaussian smoothing of a stream of `channels`-wide frames that sees the past through a
/// history of the frames it already smoothed (their unsmoothed values) and the future only as
/// far as the frames given with each chunk. Where the kernel reaches past what is known (the
/// stream start, the end of the lookahead) the weights that remain are renormalized.
///
/// Columns are smoothed in groups, each with its own σ (scipy's kernel, truncate 4); columns in
/// no group pass through. Preallocated: [`CausalSmoother::process`] does not allocate.
#[derive(Clone, Debug)]
pub struct CausalSmoother {
    channels: usize,
    groups: Vec<(Vec<usize>, Vec<f64>)>,
    /// Unsmoothed past frames, oldest first, at most `capacity` of them.
    history: Vec<f32>,
    capacity: usize,
    /// Past, chunk and future frames side by side for one call.
    line: Vec<f32>,
}

impl CausalSmoother {
    /// A smoother for `channels`-wide frames; `groups` lists (columns, σ).
    pub fn new(channels: usize, groups: Vec<(Vec<usize>, f64)>) -> CausalSmoother {
        let groups: Vec<(Vec<usize>, Vec<f64>)> = groups
            .into_iter()
            .map(|(cols, sigma)| (cols, gaussian_weights(sigma)))
            .collect();
        let capacity = groups.iter().map(|(_, w)| w.len() / 2).max().unwrap_or(0);
        CausalSmoother {
            channels,
            groups,
            history: Vec::with_capacity(capacity * channels),
            capacity,
            line: Vec::new(),
        }
    }

    /// Columns `range` as a group.
    pub fn columns(range: Range<usize>) -> Vec<usize> {
        range.collect()
    }

    /// Frames of past the smoother keeps (the widest kernel's radius).
    pub fn radius(&self) -> usize {
        self.capacity
    }

    /// Forgets the past (a new stream).
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// Smooths `chunk` (K frames) into `out`, seeing `future` (frames after the chunk) and the
    /// history; then appends the chunk's unsmoothed frames to the history.
    ///
    /// # Panics
    /// When a buffer is not a whole number of frames or `out` is not as long as `chunk`.
    pub fn process(&mut self, chunk: &[f32], future: &[f32], out: &mut [f32]) {
        self.process_with_future(chunk, future, out, &mut []);
    }

    /// As [`CausalSmoother::process`], and also smooths the first `out_future.len()` values of
    /// `future` (with the kernel truncated where the future ends) into `out_future`.
    ///
    /// # Panics
    /// As [`CausalSmoother::process`]; also when `out_future` is longer than `future`.
    pub fn process_with_future(
        &mut self,
        chunk: &[f32],
        future: &[f32],
        out: &mut [f32],
        out_future: &mut [f32],
    ) {
        let c = self.channels;
        assert!(chunk.len().is_multiple_of(c) && future.len().is_multiple_of(c));
        assert_eq!(out.len(), chunk.len());
        assert!(out_future.len() <= future.len() && out_future.len().is_multiple_of(c));
        let past = self.history.len() / c;
        let k = chunk.len() / c;
        let total = past + k + future.len() / c;
        self.line.clear();
        self.line.extend_from_slice(&self.history);
        self.line.extend_from_slice(chunk);
        self.line.extend_from_slice(future);
        out.copy_from_slice(chunk);
        out_future.copy_from_slice(&future[..out_future.len()]);
        let rows = k + out_future.len() / c;
        for (cols, w) in &self.groups {
            let r = w.len() / 2;
            for i in 0..rows {
                let t = past + i;
                let lo = t.saturating_sub(r);
                let hi = (t + r).min(total - 1);
                let taps = &w[lo + r - t..=hi + r - t];
                let wsum: f64 = taps.iter().sum();
                let dst = if i < k {
                    &mut out[i * c..(i + 1) * c]
                } else {
                    &mut out_future[(i - k) * c..(i - k + 1) * c]
                };
                for &col in cols {
                    let mut acc = 0.0f64;
                    for (j, wj) in (lo..=hi).zip(taps) {
                        acc += f64::from(self.line[j * c + col]) * wj;
                    }
                    dst[col] = (acc / wsum) as f32;
                }
            }
        }
        // Keep the last `capacity` unsmoothed frames of the past and the chunk.
        let keep = (past + k).min(self.capacity);
        let start = (past + k - keep) * c;
        self.history.clear();
        self.history
            .extend_from_slice(&self.line[start..start + keep * c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::gaussian_filter1d;

    #[test]
    fn window_geometry_is_checked() {
        assert!(StreamWindow::default().validate().is_ok());
        assert_eq!(StreamWindow::default().frames(), 100);
        let w = StreamWindow {
            history: 0,
            chunk: 0,
            lookahead: 5,
        };
        assert!(w.validate().unwrap_err().contains("chunk_frames"));
        let w = StreamWindow {
            history: 590,
            chunk: 10,
            lookahead: 1,
        };
        assert!(w.validate().unwrap_err().contains("601 frames"));
    }

    #[test]
    fn running_norm_matches_whole_file_statistics_and_floors_silence() {
        let x: Vec<f32> = (0..16_000)
            .map(|i| 0.3 * (i as f32 * 0.05).sin() + 0.1)
            .collect();
        let mut norm = RunningNorm::new(1e12, 1e-3);
        norm.update(&x);
        let (mean, denom) = norm.stats();
        let whole = crate::audio::normalize(&x);
        let mut ours = vec![0.0; x.len()];
        norm.apply(&x, &mut ours);
        let err = whole
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3, "{err} (mean {mean}, denom {denom})");

        let mut quiet = RunningNorm::new(16_000.0, 0.02);
        quiet.update(&vec![1e-4; 32_000]);
        quiet.update(&[-1e-4; 100]);
        let (_, d) = quiet.stats();
        assert_eq!(d, 0.02, "the floor holds in a quiet room");
    }

    #[test]
    fn forgetting_follows_the_recent_signal() {
        let mut norm = RunningNorm::new(1_000.0, 1e-6);
        norm.update(&vec![5.0; 20_000]);
        norm.update(&vec![-1.0; 20_000]);
        let (mean, _) = norm.stats();
        assert!((mean + 1.0).abs() < 1e-3, "{mean}");
    }

    #[test]
    fn blend_fades_from_old_to_new() {
        let mut new = vec![1.0f32; 6];
        blend_seam(&mut new, &[0.0; 4], 2);
        assert_eq!(new, [1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]);
    }

    /// With enough future and past, chunked smoothing equals whole-sequence smoothing away from
    /// the ends (where scipy reflects and the stream renormalizes).
    #[test]
    fn chunked_smoothing_equals_whole_sequence_inside() {
        let n = 200;
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) * 0.01).collect();
        let sigma = 2.0;
        let whole = gaussian_filter1d(&x, sigma);
        let mut s = CausalSmoother::new(1, vec![(vec![0], sigma)]);
        assert_eq!(s.radius(), 8);
        let (k, l) = (7, 8);
        let mut out = vec![0.0; n];
        let mut t = 0;
        while t < n {
            let end = (t + k).min(n);
            let fut = &x[end..(end + l).min(n)];
            s.process(&x[t..end], fut, &mut out[t..end]);
            t = end;
        }
        for i in 8..n - 8 {
            assert!(
                (out[i] - whole[i]).abs() < 1e-6,
                "{i}: {} {}",
                out[i],
                whole[i]
            );
        }
    }

    #[test]
    fn short_lookahead_truncates_and_renormalizes() {
        let mut s = CausalSmoother::new(2, vec![(vec![1], 2.0)]);
        let chunk = [1.0, 4.0, 2.0, 4.0];
        let mut out = [0.0; 4];
        s.process(&chunk, &[], &mut out);
        assert_eq!(out[0], 1.0, "column 0 is in no group");
        assert_eq!(out[2], 2.0);
        assert!((out[1] - 4.0).abs() < 1e-6 && (out[3] - 4.0).abs() < 1e-6);
    }
}
