//! Temporal Gaussian smoothing with the exact semantics of
//! `scipy.ndimage.gaussian_filter1d(x, sigma, axis=0)` (mode `'reflect'`, truncate 4) on
//! float32 data, as the official code applies it to the merged MODA streams and to FaCo's
//! non-semantic vertices.
//!
//! scipy's arithmetic, repeated here step by step:
//! * radius r = int(4σ + 0.5); weights w_k = exp(−0.5/σ² · k²) for k = −r..r, divided by
//!   their sum (numpy's pairwise float64 sum), all float64;
//! * the line is extended by half-sample symmetric reflection (`…c b a | a b c | c b a…`),
//!   repeated periodically when r exceeds the length (period 2n);
//! * each output is `x[i]·w₀ + Σ_{k=r..1} (x[i−k] + x[i+k])·w_k` in float64 (scipy's loop
//!   for symmetric kernels, outermost tap first), rounded once to float32.

use std::ops::Range;

/// The official smoothing strengths (`configs/feature/HDTF.yaml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothingSettings {
    /// Lip stream (T, 120).
    pub lip: f64,
    /// Eye stream (T, 180) (yaml key `refine`).
    pub eye: f64,
    /// Head columns 0–2 (rotation, degrees).
    pub head_rotation: f64,
    /// Head columns 3–5 (translation, pixels). Column 6 (scale) is never smoothed.
    pub head_translation: f64,
    /// Torso stream (T, 54).
    pub torso: f64,
    /// FaCo output, the non-semantic vertices (yaml key `others`).
    pub faco_others: f64,
}

impl Default for SmoothingSettings {
    fn default() -> Self {
        Self {
            lip: 1.5,
            eye: 2.0,
            head_rotation: 4.0,
            head_translation: 6.0,
            torso: 4.0,
            faco_others: 5.0,
        }
    }
}

/// Channel counts of the four MODA streams.
pub const LIP_CHANNELS: usize = 120;
pub const EYE_CHANNELS: usize = 180;
pub const HEAD_CHANNELS: usize = 7;
pub const TORSO_CHANNELS: usize = 54;

/// A buffer whose shape does not fit the smoothing call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmoothError {
    #[error(
        "{what} has {len} values, which is not a whole number of frames of {per_frame} values"
    )]
    Ragged {
        what: &'static str,
        len: usize,
        per_frame: usize,
    },
    #[error("{what}: index {index} is out of range; expected below {limit}")]
    OutOfRange {
        what: &'static str,
        index: usize,
        limit: usize,
    },
}

/// The normalized scipy Gaussian kernel for `sigma` (truncate 4): `2r + 1` float64 weights,
/// centre at index r. A `sigma` that is not positive and finite gives the identity kernel `[1]`
/// (scipy would return NaNs for σ = 0).
pub fn gaussian_weights(sigma: f64) -> Vec<f64> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return vec![1.0];
    }
    let radius = (4.0 * sigma + 0.5) as i64;
    let c = -0.5 / (sigma * sigma);
    let phi: Vec<f64> = (-radius..=radius)
        .map(|k| (c * (k * k) as f64).exp())
        .collect();
    let sum = crate::util::numpy_sum::pairwise_sum(&phi);
    phi.iter().map(|&p| p / sum).collect()
}

/// scipy's 'reflect' boundary: index `i` of the infinite half-sample symmetric, 2n-periodic
/// extension of a line of length `n` (n > 0).
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m < n {
        m
    } else {
        2 * n - 1 - m
    }
}

/// Reusable float64 line buffers for filtering strided lines.
struct LineFilter {
    weights: Vec<f64>,
    radius: usize,
    extended: Vec<f64>,
}

impl LineFilter {
    fn new(sigma: f64) -> Self {
        let weights = gaussian_weights(sigma);
        let radius = weights.len() / 2;
        Self {
            weights,
            radius,
            extended: Vec::new(),
        }
    }

    /// Filters the line `data[start + t·stride]`, t in 0..len, in place.
    fn apply(&mut self, data: &mut [f32], start: usize, stride: usize, len: usize) {
        if len == 0 || self.radius == 0 {
            return;
        }
        let r = self.radius as isize;
        self.extended.clear();
        self.extended.extend(
            (-r..len as isize + r).map(|i| f64::from(data[start + reflect(i, len) * stride])),
        );
        let w = &self.weights[self.radius..];
        for t in 0..len {
            let c = t + self.radius;
            let ext = &self.extended;
            let mut acc = ext[c] * w[0];
            for k in (1..=self.radius).rev() {
                acc += (ext[c - k] + ext[c + k]) * w[k];
            }
            data[start + t * stride] = acc as f32;
        }
    }
}

/// `gaussian_filter1d` of one contiguous float32 sequence.
pub fn gaussian_filter1d(x: &[f32], sigma: f64) -> Vec<f32> {
    let mut out = x.to_vec();
    LineFilter::new(sigma).apply(&mut out, 0, 1, x.len());
    out
}

/// Smooths the columns `cols` of a row-major `[T, channels]` float32 array along time, each
/// column independently; other columns are untouched.
///
/// # Errors
/// [`SmoothError`] when `data` is not a whole number of rows or `cols` exceeds `channels`.
pub fn smooth_columns(
    data: &mut [f32],
    channels: usize,
    cols: Range<usize>,
    sigma: f64,
) -> Result<(), SmoothError> {
    if channels == 0 || !data.len().is_multiple_of(channels) {
        return Err(SmoothError::Ragged {
            what: "sequence",
            len: data.len(),
            per_frame: channels,
        });
    }
    if cols.end > channels {
        return Err(SmoothError::OutOfRange {
            what: "column range",
            index: cols.end - 1,
            limit: channels,
        });
    }
    let frames = data.len() / channels;
    let mut filter = LineFilter::new(sigma);
    for c in cols {
        filter.apply(data, c, channels, frames);
    }
    Ok(())
}

/// The official smoothing of the four merged MODA streams (each row-major `[T, C]`): lip σ 1.5,
/// eye σ 2, head columns 0–2 σ 4 and 3–5 σ 6 (column 6, the scale, untouched), torso σ 4 with
/// the default settings.
///
/// # Errors
/// [`SmoothError::Ragged`] when a stream is not a whole number of frames.
pub fn smooth_moda_streams(
    settings: &SmoothingSettings,
    lip: &mut [f32],
    eye: &mut [f32],
    head: &mut [f32],
    torso: &mut [f32],
) -> Result<(), SmoothError> {
    smooth_columns(lip, LIP_CHANNELS, 0..LIP_CHANNELS, settings.lip)?;
    smooth_columns(eye, EYE_CHANNELS, 0..EYE_CHANNELS, settings.eye)?;
    smooth_columns(head, HEAD_CHANNELS, 0..3, settings.head_rotation)?;
    smooth_columns(head, HEAD_CHANNELS, 3..6, settings.head_translation)?;
    smooth_columns(torso, TORSO_CHANNELS, 0..TORSO_CHANNELS, settings.torso)
}

/// Smooths the listed vertices of a row-major `[T, V, 3]` mesh sequence along time (x, y and z
/// separately), as the official FaCo refinement does with the non-semantic vertex list and
/// σ 5. Repeated indices are smoothed once (the official fancy-index assignment writes the same
/// value twice); vertices not listed are untouched.
///
/// # Errors
/// [`SmoothError`] when `mesh` is not a whole number of `[V, 3]` frames or an index is ≥ V.
pub fn smooth_vertices(
    mesh: &mut [f32],
    vertices: usize,
    indices: &[usize],
    sigma: f64,
) -> Result<(), SmoothError> {
    let per_frame = vertices * 3;
    if per_frame == 0 || !mesh.len().is_multiple_of(per_frame) {
        return Err(SmoothError::Ragged {
            what: "mesh sequence",
            len: mesh.len(),
            per_frame,
        });
    }
    let mut seen = vec![false; vertices];
    for &v in indices {
        if v >= vertices {
            return Err(SmoothError::OutOfRange {
                what: "vertex index",
                index: v,
                limit: vertices,
            });
        }
        seen[v] = true;
    }
    let frames = mesh.len() / per_frame;
    let mut filter = LineFilter::new(sigma);
    for v in (0..vertices).filter(|&v| seen[v]) {
        for axis in 0..3 {
            filter.apply(mesh, v * 3 + axis, per_frame, frames);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_radius_and_normalization() {
        for (sigma, radius) in [
            (1.5, 6),
            (2.0, 8),
            (4.0, 16),
            (5.0, 20),
            (6.0, 24),
            (0.1, 0),
        ] {
            let w = gaussian_weights(sigma);
            assert_eq!(w.len(), 2 * radius + 1, "σ {sigma}");
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
            for k in 0..=radius {
                assert_eq!(w[radius - k], w[radius + k]);
                let ratio = w[radius + k] / w[radius];
                assert!((ratio - (-((k * k) as f64) / (2.0 * sigma * sigma)).exp()).abs() < 1e-14);
            }
        }
        assert_eq!(gaussian_weights(0.0), vec![1.0]);
    }

    #[test]
    fn reflect_is_half_sample_symmetric_and_periodic() {
        // a b c → index -1..-7 reads a b c c b a a, and 3..9 reads c b a a b c c.
        let left: Vec<usize> = (1..=7).map(|k| reflect(-k, 3)).collect();
        assert_eq!(left, vec![0, 1, 2, 2, 1, 0, 0]);
        let right: Vec<usize> = (3..10).map(|i| reflect(i, 3)).collect();
        assert_eq!(right, vec![2, 1, 0, 0, 1, 2, 2]);
        assert!((-30..30).all(|i| reflect(i, 1) == 0));
    }

    /// Direct evaluation: build the extension by literal mirroring (…rev, x, rev, x, rev…) and
    /// sum w_k · ext[i + k] in natural order.
    fn by_formula(x: &[f32], sigma: f64) -> Vec<f32> {
        let w = gaussian_weights(sigma);
        let r = w.len() / 2;
        let n = x.len();
        let copies = r / n + 2;
        let mut period: Vec<f64> = x.iter().rev().map(|&v| f64::from(v)).collect();
        period.extend(x.iter().map(|&v| f64::from(v)));
        let tiled: Vec<f64> = period
            .iter()
            .copied()
            .cycle()
            .take(2 * n * (2 * copies + 1))
            .collect();
        // tiled[j] holds original index reflect(j − n − 2n·copies).
        let origin = n + 2 * n * copies;
        (0..n)
            .map(|i| {
                (0..w.len())
                    .map(|j| w[j] * tiled[origin + i + j - r])
                    .sum::<f64>() as f32
            })
            .collect()
    }

    #[test]
    fn short_sequence_wraps_reflection() {
        // Length 3 with σ 2 (radius 8): the kernel reaches almost three periods out.
        let x = [1.0f32, 2.0, 4.0];
        let got = gaussian_filter1d(&x, 2.0);
        let want = by_formula(&x, 2.0);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // scipy 1.17.1: gaussian_filter1d(np.float32([1, 2, 4]), 2.0)
        assert_eq!(got, vec![2.1659975, 2.3332868, 2.5007157]);
        // A single frame stays itself whatever σ.
        assert_eq!(gaussian_filter1d(&[3.0], 6.0), vec![3.0]);
    }

    #[test]
    fn longer_sequence_matches_formula() {
        let x: Vec<f32> = (0..40).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        for sigma in [1.5, 4.0, 6.0, 25.0] {
            let got = gaussian_filter1d(&x, sigma);
            let want = by_formula(&x, sigma);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "σ {sigma}: {err}");
        }
    }

    #[test]
    fn columns_and_vertices_are_independent() {
        let frames = 20;
        let mut data: Vec<f32> = (0..frames * 7).map(|i| ((i * 13) % 7) as f32).collect();
        let orig = data.clone();
        smooth_columns(&mut data, 7, 3..6, 4.0).unwrap();
        for c in 0..7 {
            let col: Vec<f32> = (0..frames).map(|t| orig[t * 7 + c]).collect();
            let got: Vec<f32> = (0..frames).map(|t| data[t * 7 + c]).collect();
            let want = if (3..6).contains(&c) {
                gaussian_filter1d(&col, 4.0)
            } else {
                col
            };
            assert_eq!(got, want, "column {c}");
        }

        let v = 5;
        let mut mesh: Vec<f32> = (0..frames * v * 3)
            .map(|i| ((i * 29) % 17) as f32)
            .collect();
        let orig = mesh.clone();
        smooth_vertices(&mut mesh, v, &[3, 1, 3], 5.0).unwrap();
        for vi in 0..v {
            for a in 0..3 {
                let line: Vec<f32> = (0..frames).map(|t| orig[t * v * 3 + vi * 3 + a]).collect();
                let got: Vec<f32> = (0..frames).map(|t| mesh[t * v * 3 + vi * 3 + a]).collect();
                let want = if vi == 1 || vi == 3 {
                    gaussian_filter1d(&line, 5.0)
                } else {
                    line
                };
                assert_eq!(got, want, "vertex {vi} axis {a}");
            }
        }
    }

    #[test]
    fn shape_errors() {
        assert!(matches!(
            smooth_columns(&mut [0.0; 10], 3, 0..3, 1.0),
            Err(SmoothError::Ragged { .. })
        ));
        assert!(matches!(
            smooth_columns(&mut [0.0; 9], 3, 0..4, 1.0),
            Err(SmoothError::OutOfRange { .. })
        ));
        assert!(matches!(
            smooth_vertices(&mut [0.0; 30], 5, &[5], 1.0),
            Err(SmoothError::OutOfRange { index: 5, .. })
        ));
    }
}
