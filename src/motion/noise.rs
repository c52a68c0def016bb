//! The VAE noise ε the MODA graph takes as its `noise` input: 128 values per frame.
//!
//! MODA's long-term branch samples its latent as z = ε·exp(½·logvar) + μ at inference too, so
//! the runtime owns the randomness: ε of absolute frame k is drawn from a generator seeded by
//! (seed, k) alone, so a frame gets the same noise in every window it falls in (offline windows
//! overlap by 10 s, live windows by their history), and `zero` gives the deterministic z = μ.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Width of the VAE noise per frame.
pub const NOISE_DIM: usize = 128;

/// Where the VAE noise comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    /// ε = 0 (z = μ): deterministic, as the golden e2e run.
    Zero,
    /// ε for absolute frame k drawn from a generator seeded by (seed, k).
    Seeded(u64),
}

impl Noise {
    /// Fills `out` (F × 128) with the noise of frames `first..first + F`. Frames before the
    /// stream start (negative, in a live window's history) have noise of their own as well.
    pub fn fill(self, first: i64, out: &mut [f32]) {
        match self {
            Noise::Zero => out.fill(0.0),
            Noise::Seeded(seed) => {
                for (i, row) in out.chunks_exact_mut(NOISE_DIM).enumerate() {
                    let k = first.wrapping_add(i as i64) as u64;
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        seed ^ k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    for x in row.iter_mut() {
                        *x = StandardNormal.sample(&mut rng);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_of_a_frame_does_not_depend_on_its_window() {
        let mut a = vec![0f32; 600 * NOISE_DIM];
        let mut b = vec![0f32; 600 * NOISE_DIM];
        Noise::Seeded(5).fill(0, &mut a);
        Noise::Seeded(5).fill(300, &mut b);
        assert_eq!(&a[300 * NOISE_DIM..], &b[..300 * NOISE_DIM]);
        assert_ne!(&a[..NOISE_DIM], &b[..NOISE_DIM]);
        let mut c = vec![0f32; NOISE_DIM];
        Noise::Seeded(6).fill(0, &mut c);
        assert_ne!(&a[..NOISE_DIM], &c[..]);
        let mut d = vec![0f32; 3 * NOISE_DIM];
        Noise::Seeded(5).fill(-2, &mut d);
        assert_eq!(
            &d[2 * NOISE_DIM..],
            &a[..NOISE_DIM],
            "frame 0 from a window at -2"
        );
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "standard normal: mean {mean}, var {var}"
        );
        let mut z = vec![1f32; NOISE_DIM];
        Noise::Zero.fill(7, &mut z);
        assert!(z.iter().all(|&x| x == 0.0));
    }
}
