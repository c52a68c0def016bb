//! Sample-rate conversion to 16 kHz for whole files, with no delay and librosa's length.
//!
//! `librosa.load(sr=16000)` resamples with soxr and then fixes the length to
//! `ceil(n · (16000 / sr))` (float64), padding with zeros or trimming. We use rubato's
//! synchronous resampler ([`FftFixedInOut`]): a BlackmanHarris-windowed sinc low-pass of
//! `fft_size_in` taps applied by FFT, with the exact rational ratio `to/from`. Its filter is
//! centred on tap `fft_size_in / 2`, a delay of `fft_size_out / 2` output samples; we choose an
//! even number of base periods per FFT chunk so that this delay is a whole number of output
//! samples, then drop exactly those samples. Output sample `m` therefore estimates the input
//! at time `m / to` seconds, the same alignment as soxr's.
//!
//! A rate equal to the target returns the samples unchanged (bit for bit), as librosa does.

use rubato::{FftFixedInOut, Resampler};

use super::{AudioError, SAMPLE_RATE, WAV_SAMPLE_RATES};

/// The shortest filter (in input samples) we accept; longer filters give a sharper cut-off.
const MIN_FILTER_TAPS: usize = 1024;

/// Output length of [`resample`]: `ceil(n · (to / from))` computed in float64 exactly like
/// librosa (`int(np.ceil(n * (float(to) / from)))`). Equal rates keep the length.
pub fn resampled_len(n: usize, from: u32, to: u32) -> usize {
    if from == to {
        return n;
    }
    let ratio = f64::from(to) / f64::from(from);
    (n as f64 * ratio).ceil() as usize
}

/// Resamples mono float32 audio from `from` Hz to 16 kHz; see [`resample`].
///
/// # Errors
/// [`AudioError::Resample`] when `from` is outside [`WAV_SAMPLE_RATES`].
pub fn resample_to_16k(samples: &[f32], from: u32) -> Result<Vec<f32>, AudioError> {
    resample(samples, from, SAMPLE_RATE)
}

/// Resamples mono float32 audio from `from` Hz to `to` Hz with no delay; the result has
/// [`resampled_len`] samples. Computed in float64, returned as float32.
///
/// Both rates must lie in [`WAV_SAMPLE_RATES`]: the filter is as long as the input period
/// `from / gcd(from, to)`, so a rate of millions of Hz with no common factor would take
/// gigabytes and minutes.
///
/// # Errors
/// [`AudioError::Resample`] when a rate is outside [`WAV_SAMPLE_RATES`] or rubato rejects the
/// configuration.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    let fail = |detail: String| AudioError::Resample { from, to, detail };
    if !WAV_SAMPLE_RATES.contains(&from) || !WAV_SAMPLE_RATES.contains(&to) {
        return Err(fail(format!(
            "expected rates from {} to {} Hz",
            WAV_SAMPLE_RATES.start(),
            WAV_SAMPLE_RATES.end()
        )));
    }
    if from == to {
        return Ok(samples.to_vec());
    }
    let want = resampled_len(samples.len(), from, to);
    if want == 0 {
        return Ok(Vec::new());
    }
    let g = gcd(from, to) as usize;
    let base_in = from as usize / g;
    // An even number of base periods keeps the filter delay a whole number of output samples.
    let periods = MIN_FILTER_TAPS.div_ceil(base_in).max(1).next_multiple_of(2);
    let mut resampler = FftFixedInOut::<f64>::new(from as usize, to as usize, base_in * periods, 1)
        .map_err(|e| fail(e.to_string()))?;
    let chunk_in = resampler.input_frames_next();
    let chunk_out = resampler.output_frames_next();
    let delay = resampler.output_delay();
    if chunk_in != base_in * periods || delay * 2 != chunk_out {
        return Err(fail(format!(
            "unexpected resampler geometry: {chunk_in} in, {chunk_out} out, delay {delay} (expected {} in and an even output chunk)",
            base_in * periods
        )));
    }

    let mut input = vec![vec![0.0f64; chunk_in]];
    let mut output = vec![vec![0.0f64; chunk_out]];
    let mut result = Vec::with_capacity(want);
    let mut skip = delay;
    let mut pos = 0;
    while result.len() < want {
        let take = samples.len().saturating_sub(pos).min(chunk_in);
        for (dst, &src) in input[0].iter_mut().zip(&samples[pos..pos + take]) {
            *dst = f64::from(src);
        }
        input[0][take..].fill(0.0);
        pos += take;
        let (_, written) = resampler
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| fail(e.to_string()))?;
        let fresh = &output[0][..written];
        let drop = skip.min(fresh.len());
        skip -= drop;
        let room = want - result.len();
        result.extend(fresh[drop..].iter().take(room).map(|&v| v as f32));
    }
    Ok(result)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Max error against the analytic sine at 16 kHz, skipping `edge` samples at both ends.
    fn max_err_vs_analytic(y: &[f32], freq: f64, amp: f64, edge: usize) -> f64 {
        let ideal = sine(16_000, freq, amp, y.len());
        y[edge..y.len() - edge]
            .iter()
            .zip(&ideal[edge..])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn lengths_follow_librosa_ceil() {
        // Expected values from Python: math.ceil(n * (16000.0 / sr)).
        assert_eq!(resampled_len(44_100, 44_100, 16_000), 16_000);
        assert_eq!(resampled_len(48_000, 48_000, 16_000), 16_000);
        assert_eq!(resampled_len(1, 44_100, 16_000), 1);
        assert_eq!(resampled_len(66_157, 22_050, 16_000), 48_006);
        assert_eq!(resampled_len(12_345, 8_000, 16_000), 24_690);
        assert_eq!(resampled_len(100, 48_000, 16_000), 34);
        assert_eq!(resampled_len(1000, 44_100, 16_000), 363);
        assert_eq!(resampled_len(777, 16_000, 16_000), 777);
    }

    #[test]
    fn sixteen_khz_passes_through_bit_exactly() {
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let y = resample_to_16k(&x, 16_000).unwrap();
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn sine_44k1_has_no_delay() {
        // 2.5 s of a 1 kHz and a 3.7 kHz sine: a delay of even a tenth of an output sample
        // would give an error of about 2π·3700/16000·0.1·0.4 ≈ 0.06 on the second one.
        for (freq, amp) in [(1000.0, 0.5), (3700.0, 0.4)] {
            let x = sine(44_100, freq, amp, 110_250);
            let y = resample_to_16k(&x, 44_100).unwrap();
            assert_eq!(y.len(), 40_000);
            let err = max_err_vs_analytic(&y, freq, amp, 1000);
            eprintln!("44.1 kHz, {freq} Hz: max error {err:e}");
            assert!(err < 1e-5, "{freq} Hz: max error {err}");
        }
    }

    #[test]
    fn other_rates_have_no_delay() {
        for rate in [8_000u32, 22_050, 32_000, 48_000, 11_025, 44_056] {
            let n = rate as usize * 2;
            let x = sine(rate, 1234.5, 0.5, n);
            let y = resample_to_16k(&x, rate).unwrap();
            assert_eq!(y.len(), resampled_len(n, rate, 16_000));
            let err = max_err_vs_analytic(&y, 1234.5, 0.5, 1000);
            eprintln!("{rate} Hz: max error {err:e}");
            assert!(err < 1e-5, "{rate} Hz: max error {err}");
        }
    }

    #[test]
    fn content_above_target_nyquist_is_removed() {
        // 10 kHz cannot be represented at 16 kHz; it must not alias to 6 kHz.
        let x = sine(44_100, 10_000.0, 0.5, 44_100);
        let y = resample_to_16k(&x, 44_100).unwrap();
        let peak = y[1000..y.len() - 1000]
            .iter()
            .fold(0.0f32, |m, &v| m.max(v.abs()));
        assert!(peak < 1e-3, "aliased peak {peak}");
    }

    #[test]
    fn short_and_empty_inputs() {
        assert!(resample_to_16k(&[], 44_100).unwrap().is_empty());
        assert_eq!(resample_to_16k(&[0.5; 3], 44_100).unwrap().len(), 2);
        assert!(matches!(
            resample_to_16k(&[0.5], 0),
            Err(AudioError::Resample { .. })
        ));
    }
}
