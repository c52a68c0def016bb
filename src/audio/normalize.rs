//! Whole-file waveform normalization of the wav2vec2 feature extractor (`do_normalize`):
//! x' = (x − mean x) / sqrt(var x + 1e-7), population variance.
//!
//! The reference computes this with numpy in float32: `x.mean()` and `x.var()` reduce with
//! numpy's pairwise summation in float32, and every element-wise step rounds to float32. This
//! module repeats that arithmetic operation for operation ([`numpy_pairwise_sum_f32`]), so the
//! result is bit-identical to the reference (the golden `waveform_normalized.npy` matches with
//! a maximum error of 0). A float64 computation would differ by about 1e-6.

/// The epsilon added to the variance before the square root.
pub const NORM_EPS: f32 = 1e-7;

/// Sum of float32 values exactly as numpy's `np.add.reduce` computes it for a contiguous
/// float32 array: blocks of at most 128 elements are summed with eight interleaved
/// accumulators, longer runs are split in two halves (the first a multiple of 8 long) and the
/// halves' sums added. All arithmetic is float32.
pub fn numpy_pairwise_sum_f32(x: &[f32]) -> f32 {
    crate::util::numpy_sum::pairwise_sum(x)
}

/// numpy's float32 mean: the float32 sum divided by the count, rounded once to float32.
fn mean_f32(x: &[f32]) -> f32 {
    (f64::from(numpy_pairwise_sum_f32(x)) / x.len() as f64) as f32
}

/// Normalizes `x` in place to zero mean and unit variance (see the module doc). An empty
/// slice is left as it is; a constant signal becomes all zeros.
pub fn normalize_in_place(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let mean = mean_f32(x);
    // np.var: the squared deviations in float32, summed the same way, divided by n.
    let squares: Vec<f32> = x
        .iter()
        .map(|&v| {
            let d = v - mean;
            d * d
        })
        .collect();
    let var = mean_f32(&squares);
    let denom = (var + NORM_EPS).sqrt();
    for v in x.iter_mut() {
        *v = (*v - mean) / denom;
    }
}

/// Returns a normalized copy of `x` (see [`normalize_in_place`]).
pub fn normalize(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    normalize_in_place(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_small_and_blocked() {
        assert_eq!(numpy_pairwise_sum_f32(&[]), 0.0);
        assert_eq!(numpy_pairwise_sum_f32(&[1.0, 2.0, 3.0]), 6.0);
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(numpy_pairwise_sum_f32(&x), 499_500.0);
    }

    #[test]
    fn pairwise_order_matters_like_numpy() {
        // 1e8 then sixteen 1s: sequential float32 summation loses every 1 (the spacing at 1e8
        // is 8). The eight-way blocked sum keeps accumulators [1e8, 2, 2, 2, 2, 2, 2, 2]:
        // (1e8 + 2) + 4 rounds back to 1e8, + 8 gives 100000008, + the 17th 1 is lost.
        let mut x = vec![1.0f32; 17];
        x[0] = 1e8;
        let sequential = x.iter().fold(0.0f32, |a, &v| a + v);
        assert_eq!(sequential, 1e8);
        assert_eq!(numpy_pairwise_sum_f32(&x), 100_000_008.0);
    }

    #[test]
    fn normalized_has_zero_mean_unit_variance() {
        let x: Vec<f32> = (0..5000)
            .map(|i| (i as f32 * 0.01).sin() * 0.3 + 0.1)
            .collect();
        let y = normalize(&x);
        let n = y.len() as f64;
        let mean: f64 = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var: f64 = y
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 1e-5, "{mean}");
        assert!((var - 1.0).abs() < 1e-4, "{var}");
    }

    #[test]
    fn constant_signal_becomes_zero() {
        let y = normalize(&[0.5; 10]);
        assert!(y.iter().all(|&v| v == 0.0));
        assert!(normalize(&[]).is_empty());
    }
}
