//! Streaming sample-rate conversion for live audio: a polyphase windowed-sinc filter that takes
//! input in pieces of any size and never allocates after construction.
//!
//! The offline path ([`super::resample`]) converts whole files with rubato's FFT resampler; a
//! live stream needs small pieces, a short delay and an exact sample-to-time mapping, so it has
//! its own filter. For rates `from → to` reduced to `M → L` (`L = to/g`, `M = from/g`), output
//! sample `m` is the input signal evaluated at input position `p = m·M/L` (exactly: output `m`
//! describes the instant `m / to` seconds after input sample 0, with no delay in the mapping).
//! It is computed from the `2·half` inputs around `p` with a Kaiser-windowed sinc whose cut-off is
//! 0.9 of the lower Nyquist frequency (`half` = 24 zero crossings of that sinc); each phase is
//! normalized to unit DC gain. The output for position `p` is ready once input `⌊p⌋ + half` has
//! arrived, so the latency is `half` input samples (48 kHz → 16 kHz: 80 samples, 1.7 ms).
//!
//! With many distinct phases (`L` > 1024, rates that share few factors with the target) the
//! fractional position is rounded to the nearest of 1024 phases (at most 1/2048 of an input
//! sample off). Equal rates pass samples through unchanged.

/// Most phases kept in the coefficient table.
const MAX_PHASES: u64 = 1024;
/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: f64 = 24.0;
/// Cut-off as a fraction of the lower Nyquist frequency.
const ROLLOFF: f64 = 0.9;
/// Kaiser window shape (about 80 dB stop-band attenuation).
const KAISER_BETA: f64 = 8.0;

/// The zeroth-order modified Bessel function of the first kind (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A streaming resampler from `from` Hz to `to` Hz; see the module documentation.
#[derive(Debug, Clone)]
pub struct StreamResampler {
    from: u32,
    to: u32,
    /// Output step in input samples is `m / l`.
    l: u64,
    m: u64,
    half: usize,
    taps: usize,
    /// Phases in the table minus one (the table has `phases + 1` rows, the last one being the
    /// first shifted by one input sample).
    phases: u64,
    coeffs: Vec<f32>,
    /// Input history: `buf[pos]` is the first tap of the next output.
    buf: Vec<f32>,
    len: usize,
    pos: usize,
    /// Fractional input position of the next output, in units of `1/l`.
    frac: u64,
    /// Most input samples taken into `buf` at once.
    max_chunk: usize,
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz that takes input in pieces of up to `max_chunk`
    /// samples at a time internally (longer inputs are split). `None` when a rate is 0.
    pub fn new(from: u32, to: u32, max_chunk: usize) -> Option<StreamResampler> {
        if from == 0 || to == 0 {
            return None;
        }
        let g = gcd(u64::from(from), u64::from(to));
        let (l, m) = (u64::from(to) / g, u64::from(from) / g);
        let max_chunk = max_chunk.max(1);
        if l == m {
            return Some(StreamResampler {
                from,
                to,
                l,
                m,
                half: 0,
                taps: 0,
                phases: 0,
                coeffs: Vec::new(),
                buf: Vec::new(),
                len: 0,
                pos: 0,
                frac: 0,
                max_chunk,
            });
        }
        // Cut-off in cycles per input sample, relative to the input Nyquist frequency.
        let cutoff = ROLLOFF * (l as f64 / m as f64).min(1.0);
        let half = (ZERO_CROSSINGS / cutoff).ceil() as usize;
        let taps = 2 * half;
        let phases = l.min(MAX_PHASES);
        let mut coeffs = vec![0.0f32; (phases as usize + 1) * taps];
        for (phase, row) in coeffs.chunks_exact_mut(taps).enumerate() {
            let frac = phase as f64 / phases as f64;
            let mut row64 = vec![0.0f64; taps];
            for (j, c) in row64.iter_mut().enumerate() {
                // Offset of tap j from the output position, in input samples.
                let x = j as f64 - half as f64 + 1.0 - frac;
                let r = x / half as f64;
                if r.abs() >= 1.0 {
                    continue;
                }
                let arg = std::f64::consts::PI * cutoff * x;
                let sinc = if arg.abs() < 1e-12 {
                    1.0
                } else {
                    arg.sin() / arg
                };
                let window = bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / bessel_i0(KAISER_BETA);
                *c = sinc * window;
            }
            let sum: f64 = row64.iter().sum();
            for (c, v) in row.iter_mut().zip(&row64) {
                *c = (v / sum) as f32;
            }
        }
        let mut r = StreamResampler {
            from,
            to,
            l,
            m,
            half,
            taps,
            phases,
            coeffs,
            buf: vec![0.0; taps + max_chunk],
            len: 0,
            pos: 0,
            frac: 0,
            max_chunk,
        };
        r.reset();
        Some(r)
    }

    /// Forgets all input: the next input sample is sample 0 again (output 0 describes it).
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        // Inputs -(half-1)..=-1 are zeros, so the first output's first tap is buf[0].
        self.len = self.half.saturating_sub(1);
        self.pos = 0;
        self.frac = 0;
    }

    pub fn from_rate(&self) -> u32 {
        self.from
    }

    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Whether samples pass through unchanged (equal rates).
    pub fn is_identity(&self) -> bool {
        self.taps == 0
    }

    /// Latency in input samples: an output is ready this many inputs after its position.
    pub fn delay_input_samples(&self) -> usize {
        self.half
    }

    /// The input position (in input samples since the last reset) that output `index`
    /// describes.
    pub fn input_position(&self, index: u64) -> f64 {
        (u128::from(index) * u128::from(self.m)) as f64 / self.l as f64
    }

    /// An upper bound of the outputs one call with `n` inputs produces.
    pub fn max_output(&self, n: usize) -> usize {
        ((n as u64 + 1) * self.l).div_ceil(self.m) as usize + 1
    }

    /// Feeds `input` and writes every output that is now complete to the front of `out`,
    /// returning how many. Does not allocate.
    ///
    /// # Panics
    /// When `out` is shorter than [`StreamResampler::max_output`]`(input.len())`.
    pub fn process(&mut self, input: &[f32], out: &mut [f32]) -> usize {
        assert!(
            out.len() >= self.max_output(input.len()),
            "resampler output buffer too small"
        );
        if self.is_identity() {
            out[..input.len()].copy_from_slice(input);
            return input.len();
        }
        let mut produced = 0;
        for piece in input.chunks(self.max_chunk) {
            self.buf[self.len..self.len + piece.len()].copy_from_slice(piece);
            self.len += piece.len();
            while self.pos + self.taps <= self.len {
                let phase = (self.frac * self.phases + self.l / 2) / self.l;
                let row = &self.coeffs[phase as usize * self.taps..][..self.taps];
                let window = &self.buf[self.pos..self.pos + self.taps];
                out[produced] = row.iter().zip(window).map(|(c, x)| c * x).sum();
                produced += 1;
                self.frac += self.m;
                self.pos += (self.frac / self.l) as usize;
                self.frac %= self.l;
            }
            // Keep what the next outputs need at the front of the buffer.
            let keep_from = self.pos.min(self.len);
            self.buf.copy_within(keep_from..self.len, 0);
            self.len -= keep_from;
            self.pos -= keep_from;
        }
        produced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(r: &mut StreamResampler, x: &[f32], piece: usize) -> Vec<f32> {
        let mut all = Vec::new();
        let mut out = vec![0.0; r.max_output(piece)];
        for p in x.chunks(piece) {
            let n = r.process(p, &mut out);
            all.extend_from_slice(&out[..n]);
        }
        all
    }

    fn sine(rate: u32, freq: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5)
            .collect()
    }

    /// Max error of `y` against the ideal sine at the output rate, skipping the filter's
    /// start-up and the not-yet-complete tail.
    fn max_error(y: &[f32], to: u32, freq: f64, skip: usize) -> f32 {
        y.iter()
            .enumerate()
            .skip(skip)
            .map(|(i, v)| {
                let want =
                    (std::f64::consts::TAU * freq * i as f64 / f64::from(to)).sin() as f32 * 0.5;
                (v - want).abs()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut r = StreamResampler::new(16_000, 16_000, 64).unwrap();
        assert!(r.is_identity());
        let x: Vec<f32> = (0..300).map(|i| i as f32).collect();
        assert_eq!(run(&mut r, &x, 7), x);
    }

    #[test]
    fn common_rates_keep_a_tone_in_place() {
        for (from, piece) in [
            (48_000, 480),
            (44_100, 441),
            (8_000, 100),
            (22_050, 17),
            (11_025, 1000),
        ] {
            let mut r = StreamResampler::new(from, 16_000, 512).unwrap();
            let n = from as usize; // one second
            let x = sine(from, 1000.0, n);
            let y = run(&mut r, &x, piece);
            // Every output whose window lies in the input is there, no more.
            let complete =
                ((n - r.delay_input_samples()) as u64 * 16_000).div_ceil(u64::from(from));
            assert!(
                (y.len() as i64 - complete as i64).abs() <= 1,
                "{from}: {} outputs, {complete} expected",
                y.len()
            );
            let err = max_error(&y, 16_000, 1000.0, 200);
            assert!(err < 2e-3, "{from} Hz: max error {err}");
        }
    }

    #[test]
    fn piece_size_does_not_change_the_output() {
        let x = sine(44_100, 440.0, 20_000);
        let mut a = StreamResampler::new(44_100, 16_000, 64).unwrap();
        let mut b = StreamResampler::new(44_100, 16_000, 4096).unwrap();
        let ya = run(&mut a, &x, 1);
        let yb = run(&mut b, &x, 3000);
        let n = ya.len().min(yb.len());
        assert!(n > 7000);
        assert_eq!(ya[..n], yb[..n]);
    }

    #[test]
    fn content_above_the_target_nyquist_is_removed() {
        // 12 kHz at 48 kHz would alias to 4 kHz at 16 kHz without the low-pass.
        let mut r = StreamResampler::new(48_000, 16_000, 480).unwrap();
        let x = sine(48_000, 12_000.0, 48_000);
        let y = run(&mut r, &x, 480);
        let peak = y[200..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak < 1e-3, "alias peak {peak}");
    }

    #[test]
    fn many_phases_are_rounded_finely() {
        // 44 101 and 16 000 share no factor: 16 000 phases, rounded to 1024.
        let mut r = StreamResampler::new(44_101, 16_000, 1024).unwrap();
        let x = sine(44_101, 1000.0, 44_101);
        let y = run(&mut r, &x, 1000);
        let err = max_error(&y, 16_000, 1000.0, 200);
        assert!(err < 3e-3, "max error {err}");
        assert!((r.input_position(16_000) - 44_101.0).abs() < 1e-9);
        assert!(StreamResampler::new(0, 16_000, 1).is_none());
    }

    #[test]
    fn reset_starts_over() {
        let mut r = StreamResampler::new(48_000, 16_000, 256).unwrap();
        let x = sine(48_000, 300.0, 4800);
        let a = run(&mut r, &x, 256);
        r.reset();
        let b = run(&mut r, &x, 256);
        assert_eq!(a, b);
    }
}
