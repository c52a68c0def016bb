//! Offline windowing of the official `generate_sequences`:
//! 20 s windows every 10 s over the whole normalized waveform, each run through MODANet with
//! its own frame count, then merged with a plain mean over the overlap.
//!
//! Numbers: 16 000 samples/s at 30 frames/s is 533.33… samples per frame; a full window of
//! 320 000 samples gives 600 frames, the 160 000-sample hop 300 frames. Every window after the
//! first has at least 160 000 samples (≥ 300 frames), so the overlap h = F₀ / 2 = 300 always
//! fits inside the next window.

use std::ops::Range;

/// Samples per window (20 s at 16 kHz).
pub const WINDOW_SAMPLES: usize = 320_000;
/// Hop between window starts (10 s at 16 kHz).
pub const STEP_SAMPLES: usize = 160_000;
/// Samples per video frame, `16000 / 30` in float64 as the official `av_rate`.
pub const AV_RATE: f64 = 16_000.0 / 30.0;

/// Frames MODANet produces for `samples` audio samples: `trunc(samples / (16000/30))` in
/// float64, exactly as the official code (not integer arithmetic: 16 000 → 29, not 30).
pub fn frame_count(samples: usize) -> usize {
    (samples as f64 / AV_RATE) as usize
}

/// The sample ranges of the official windows over `n_samples` samples: window `i` is
/// `[i·step, min(i·step + win, n))`; the loop stops after the first `i` with
/// `i·step + win > n`. So a waveform of exactly 320 000 samples gets a second, half-length
/// window, and a waveform shorter than one window gets one window.
pub fn windows(n_samples: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for i in 0.. {
        let start = i * STEP_SAMPLES;
        let end = start + WINDOW_SAMPLES;
        out.push(start..end.min(n_samples));
        if end > n_samples {
            break;
        }
    }
    out
}

/// Why window outputs cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("window {window} output has {len} values, which is not a whole number of frames of {channels} channels")]
    Ragged {
        window: usize,
        len: usize,
        channels: usize,
    },
    #[error("window {window} has {frames} frames but the merge overlap is {overlap} frames; expected at least the overlap (every window after the first has ≥ 300 frames)")]
    TooShort {
        window: usize,
        frames: usize,
        overlap: usize,
    },
    #[error("cannot merge outputs with 0 channels; expected at least one channel")]
    NoChannels,
}

/// Merges per-window outputs (each row-major `frames × channels`, window order) as the
/// official code does: h = F₀ / 2 frames (integer division) taken from window 0; for each later
/// window o, the last h merged frames become `(acc + o[..h]) / 2` (float32), then o's frames
/// after h are appended. One window is returned unchanged; in general the result has
/// `F₀ + Σ_{k≥1} (F_k − h)` frames.
///
/// # Errors
/// [`MergeError`] when an output is not a whole number of frames or a later window is shorter
/// than the overlap.
pub fn merge(outputs: &[Vec<f32>], channels: usize) -> Result<Vec<f32>, MergeError> {
    if channels == 0 {
        return Err(MergeError::NoChannels);
    }
    for (window, o) in outputs.iter().enumerate() {
        if !o.len().is_multiple_of(channels) {
            return Err(MergeError::Ragged {
                window,
                len: o.len(),
                channels,
            });
        }
    }
    let Some((first, rest)) = outputs.split_first() else {
        return Ok(Vec::new());
    };
    let h = first.len() / channels / 2;
    let overlap = h * channels;
    let total = first.len()
        + rest
            .iter()
            .map(|o| o.len().saturating_sub(overlap))
            .sum::<usize>();
    let mut acc = Vec::with_capacity(total);
    acc.extend_from_slice(first);
    for (k, o) in rest.iter().enumerate() {
        if o.len() < overlap {
            return Err(MergeError::TooShort {
                window: k + 1,
                frames: o.len() / channels,
                overlap: h,
            });
        }
        let tail = acc.len() - overlap;
        for (a, &b) in acc[tail..].iter_mut().zip(&o[..overlap]) {
            *a = (*a + b) / 2.0;
        }
        acc.extend_from_slice(&o[overlap..]);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_truncate_in_float64() {
        assert_eq!(frame_count(16_000), 29);
        assert_eq!(frame_count(240_000), 449);
        assert_eq!(frame_count(320_000), 600);
        assert_eq!(frame_count(160_000), 300);
        assert_eq!(frame_count(48_271), 90);
        assert_eq!(frame_count(111_449), 208);
        assert_eq!(frame_count(0), 0);
        assert_eq!(frame_count(533), 0);
        assert_eq!(frame_count(534), 1);
    }

    #[test]
    fn short_audio_is_one_window() {
        assert_eq!(windows(111_449), vec![0..111_449]);
        assert_eq!(windows(319_999), vec![0..319_999]);
    }

    #[test]
    fn exact_window_length_gets_a_second_window() {
        assert_eq!(windows(320_000), vec![0..320_000, 160_000..320_000]);
        assert_eq!(
            windows(480_000),
            vec![0..320_000, 160_000..480_000, 320_000..480_000]
        );
    }

    #[test]
    fn longer_audio_windows() {
        assert_eq!(windows(400_000), vec![0..320_000, 160_000..400_000]);
        assert_eq!(
            windows(480_001),
            vec![0..320_000, 160_000..480_000, 320_000..480_001]
        );
        for n in [320_001usize, 555_555, 1_000_000] {
            let w = windows(n);
            // Every later window has at least a hop of samples, and the last reaches the end.
            assert!(w[1..].iter().all(|r| r.len() >= STEP_SAMPLES), "{n}: {w:?}");
            assert_eq!(w.last().unwrap().end, n);
        }
    }

    /// A window output whose values encode (window, frame, channel), so the test can tell
    /// where every merged value came from.
    fn fake_output(window: usize, frames: usize, channels: usize) -> Vec<f32> {
        (0..frames * channels)
            .map(|i| (window * 1_000_000 + (i / channels) * 10 + i % channels) as f32)
            .collect()
    }

    /// The merge of §3 written by absolute frame index: frame t of the result lies at
    /// t − 300·k in window k (window k starts at absolute frame 300·k). Frames covered by two
    /// windows are the mean of both, everything else comes from the one window holding it.
    fn expected_by_frame_index(frames: &[usize], channels: usize) -> Vec<f32> {
        let h = frames[0] / 2;
        let last = frames.len() - 1;
        let total = h * last + frames[last];
        let mut out = Vec::new();
        for t in 0..total {
            for c in 0..channels {
                let holders: Vec<usize> = (0..frames.len())
                    .filter(|&k| t >= h * k && t - h * k < frames[k])
                    .collect();
                let vals: Vec<f32> = holders
                    .iter()
                    .map(|&k| fake_output(k, frames[k], channels)[(t - h * k) * channels + c])
                    .collect();
                out.push(match vals.as_slice() {
                    [a] => *a,
                    [a, b] => (a + b) / 2.0,
                    other => panic!("frame {t} held by {} windows", other.len()),
                });
            }
        }
        out
    }

    fn merged(n_samples: usize, channels: usize) -> (Vec<usize>, Vec<f32>) {
        let frames: Vec<usize> = windows(n_samples)
            .iter()
            .map(|r| frame_count(r.len()))
            .collect();
        let outs: Vec<Vec<f32>> = frames
            .iter()
            .enumerate()
            .map(|(k, &f)| fake_output(k, f, channels))
            .collect();
        (frames.clone(), merge(&outs, channels).unwrap())
    }

    #[test]
    fn merge_two_windows() {
        let (frames, got) = merged(400_000, 3);
        // 240 000 samples give 449 frames (449.99999999999994 truncated), so the merged
        // sequence has 749 frames although frame_count(400 000) is 750.
        assert_eq!(frames, vec![600, 449]);
        assert_eq!(got.len(), (300 + 449) * 3);
        assert_eq!(got, expected_by_frame_index(&frames, 3));
    }

    #[test]
    fn merge_three_windows() {
        let (frames, got) = merged(555_555, 2);
        assert_eq!(frames, vec![600, 600, 441]);
        assert_eq!(got.len(), (600 + 441) * 2);
        assert_eq!(got, expected_by_frame_index(&frames, 2));
    }

    #[test]
    fn merge_exact_boundary() {
        // 320 000 samples: windows of 600 and 300 frames; the second lies entirely in the
        // overlap, so the result is 600 frames whose last 300 are averages.
        let (frames, got) = merged(320_000, 1);
        assert_eq!(frames, vec![600, 300]);
        assert_eq!(got, expected_by_frame_index(&frames, 1));
        assert_eq!(got.len(), 600);
        assert_eq!(
            got[599],
            (599.0 * 10.0 + (1_000_000.0 + 299.0 * 10.0)) / 2.0
        );
    }

    #[test]
    fn merge_one_window_is_identity() {
        let o = fake_output(0, 208, 7);
        assert_eq!(merge(std::slice::from_ref(&o), 7).unwrap(), o);
        assert!(merge(&[], 7).unwrap().is_empty());
    }

    #[test]
    fn merge_rejects_bad_shapes() {
        assert_eq!(
            merge(&[vec![0.0; 10]], 3),
            Err(MergeError::Ragged {
                window: 0,
                len: 10,
                channels: 3
            })
        );
        assert!(matches!(
            merge(&[vec![0.0; 600], vec![0.0; 299]], 1),
            Err(MergeError::TooShort { window: 1, .. })
        ));
        assert_eq!(merge(&[vec![0.0; 6]], 0), Err(MergeError::NoChannels));
    }
}
