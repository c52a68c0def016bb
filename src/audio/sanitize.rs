//! Repair of live audio, which cannot be refused the way a file can: a microphone or a raw
//! PCM stream that delivers NaN, ±Inf or a wild value must not stall or blank the pipeline.

/// The magnitude live samples are clamped to: full scale. A capture device never delivers more,
/// so a larger value is a fault, and clipping it keeps the rest of the window usable.
pub const LIVE_SAMPLE_BOUND: f32 = 1.0;

/// What [`sanitize`] changed in one buffer, for the caller to log and count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// NaN or ±Inf samples, set to 0.
    pub non_finite: usize,
    /// Finite samples beyond ±[`LIVE_SAMPLE_BOUND`], clamped to it.
    pub clipped: usize,
}

impl Repaired {
    /// Whether anything was changed.
    pub fn any(&self) -> bool {
        self.non_finite + self.clipped > 0
    }
}

/// Makes live samples safe in place: NaN and ±Inf become 0, finite values beyond
/// ±[`LIVE_SAMPLE_BOUND`] are clamped to it; every other sample is left bit for bit. Pure and
/// allocation-free, for the capture thread to call on each buffer and log the counts
/// (rate-limited). Files are refused instead (see [`super::read_wav`]).
pub fn sanitize(samples: &mut [f32]) -> Repaired {
    let mut r = Repaired::default();
    for v in samples {
        if !v.is_finite() {
            *v = 0.0;
            r.non_finite += 1;
        } else if v.abs() > LIVE_SAMPLE_BOUND {
            *v = v.clamp(-LIVE_SAMPLE_BOUND, LIVE_SAMPLE_BOUND);
            r.clipped += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_and_counts_each_kind() {
        let mut x = [
            0.5,
            f32::NAN,
            -1.0,
            f32::INFINITY,
            1.5,
            -1e30,
            f32::NEG_INFINITY,
            -0.0,
        ];
        let r = sanitize(&mut x);
        assert_eq!(
            r,
            Repaired {
                non_finite: 3,
                clipped: 2
            }
        );
        assert!(r.any());
        assert_eq!(x, [0.5, 0.0, -1.0, 0.0, 1.0, -1.0, 0.0, -0.0]);
        assert!(x[7].is_sign_negative(), "untouched samples keep their bits");
    }

    #[test]
    fn clean_input_is_unchanged() {
        let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
        let before = x.clone();
        assert!(!sanitize(&mut x).any());
        assert_eq!(x, before);
        assert_eq!(sanitize(&mut []), Repaired::default());
    }
}
