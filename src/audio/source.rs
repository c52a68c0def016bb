//! [`AudioSource`]: where live audio comes from, one trait for every device, and the
//! implementations that need no device: a WAV file played once, and a synthetic signal (sine
//! or silence). Device sources live beside them.
//!
//! A read hands out samples with the capture time of the first one ([`Captured`]) and says how
//! many were lost before them (an overrun, when the device's buffer filled up before the
//! reader came back). Errors say what to do ([`SourceErrorKind`]): try again later (a device
//! that is missing or unplugged), reopen the device (it failed mid-stream), or give up (a bad
//! file, a bad configuration).

use std::path::Path;

use super::{load_wav_16k, AudioError, SAMPLE_RATE};
use crate::clock::{FrameClock, Pts};

/// What one [`AudioSource::read`] delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Captured {
    /// Samples written to the front of the buffer; 0 (for a non-empty buffer) at the end of
    /// the stream.
    pub samples: usize,
    /// Capture time of the first of them, on the source's clock (monotonic time for devices,
    /// the position in the stream for files and test signals).
    pub timestamp: Pts,
    /// Samples lost just before these (an overrun), 0 normally.
    pub lost: u64,
}

/// What the caller should do about a [`SourceError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The device is not there now: keep running without it and try again later.
    Retry,
    /// The device failed mid-stream: close it and open it again.
    Reopen,
    /// Retrying will not help (a bad file or setting).
    Fatal,
}

/// Errors of audio sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] AudioError),
    #[error("audio source {name} is not available")]
    Unavailable {
        name: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("audio source {name} failed")]
    Failed {
        name: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("audio source {name}: {detail}")]
    Config { name: String, detail: String },
}

impl SourceError {
    pub fn kind(&self) -> SourceErrorKind {
        match self {
            SourceError::Unavailable { .. } => SourceErrorKind::Retry,
            SourceError::Failed { .. } => SourceErrorKind::Reopen,
            SourceError::File(_) | SourceError::Config { .. } => SourceErrorKind::Fatal,
        }
    }
}

/// A pull source of mono float32 samples at a fixed rate (a microphone, a WAV file, a test
/// signal). The live pipeline owns one on its capture thread.
pub trait AudioSource: Send {
    /// Fills the front of `out` with the next samples. A source that never ends fills `out`
    /// completely (waiting for the device as long as it takes); `samples == 0` with a
    /// non-empty `out` means the end of the stream. Does not allocate.
    ///
    /// # Errors
    /// A device or file error; [`SourceError::kind`] says whether to retry, reopen or stop.
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError>;

    /// Samples per second of what [`AudioSource::read`] returns.
    fn sample_rate(&self) -> u32;
}

/// The stream-position timestamp of sample `pos` at `rate`.
fn position(pos: usize, rate: u32) -> Pts {
    match FrameClock::new(30, rate) {
        Some(c) => c.sample_pts(Pts::ZERO, pos as u64),
        None => Pts::ZERO,
    }
}

/// A WAV file decoded up front (mono, 16 kHz) and handed out in order; ends after the last
/// sample.
#[derive(Debug, Clone)]
pub struct WavSource {
    samples: Vec<f32>,
    rate: u32,
    pos: usize,
}

impl WavSource {
    /// Decodes `path` to 16 kHz mono (see [`load_wav_16k`]).
    ///
    /// # Errors
    /// Any [`AudioError`] of reading or resampling the file.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        Ok(Self::from_samples(load_wav_16k(path)?, SAMPLE_RATE))
    }

    /// A source over samples already in memory at `rate` Hz.
    pub fn from_samples(samples: Vec<f32>, rate: u32) -> Self {
        Self {
            samples,
            rate,
            pos: 0,
        }
    }

    /// Samples not yet read.
    pub fn remaining(&self) -> usize {
        self.samples.len() - self.pos
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        let n = out.len().min(self.remaining());
        out[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        let timestamp = position(self.pos, self.rate);
        self.pos += n;
        Ok(Captured {
            samples: n,
            timestamp,
            lost: 0,
        })
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }
}

/// The signal a [`SyntheticSource`] produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Synthetic {
    /// All zeros.
    Silence,
    /// `amplitude · sin(2π · frequency · k / rate)` for absolute sample index `k`.
    Sine { frequency: f64, amplitude: f32 },
}

/// A test signal, endless or of a fixed length. The phase is computed from the absolute
/// sample index, so chunk sizes do not change the samples.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    signal: Synthetic,
    rate: u32,
    len: Option<usize>,
    pos: usize,
}

impl SyntheticSource {
    /// `len` samples of `signal` at `rate` Hz, or an endless stream when `len` is `None`.
    pub fn new(signal: Synthetic, rate: u32, len: Option<usize>) -> Self {
        Self {
            signal,
            rate,
            len,
            pos: 0,
        }
    }
}

impl AudioSource for SyntheticSource {
    fn read(&mut self, out: &mut [f32]) -> Result<Captured, SourceError> {
        let n = match self.len {
            Some(len) => out.len().min(len - self.pos),
            None => out.len(),
        };
        match self.signal {
            Synthetic::Silence => out[..n].fill(0.0),
            Synthetic::Sine {
                frequency,
                amplitude,
            } => {
                let step = std::f64::consts::TAU * frequency / f64::from(self.rate);
                for (i, v) in out[..n].iter_mut().enumerate() {
                    *v = amplitude * (step * (self.pos + i) as f64).sin() as f32;
                }
            }
        }
        let timestamp = position(self.pos, self.rate);
        self.pos += n;
        Ok(Captured {
            samples: n,
            timestamp,
            lost: 0,
        })
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(src: &mut dyn AudioSource, chunk: usize) -> Vec<f32> {
        let mut all = Vec::new();
        let mut buf = vec![0.0; chunk];
        loop {
            let before = all.len();
            let got = src.read(&mut buf).unwrap();
            if got.samples == 0 {
                return all;
            }
            let want = position(before, src.sample_rate());
            assert_eq!(
                got.timestamp, want,
                "sample {before} is stamped with its time"
            );
            assert_eq!(got.lost, 0);
            all.extend_from_slice(&buf[..got.samples]);
        }
    }

    #[test]
    fn wav_source_hands_out_all_samples_then_ends() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let mut src = WavSource::from_samples(x.clone(), 16_000);
        assert_eq!(src.sample_rate(), 16_000);
        assert_eq!(drain(&mut src, 333), x);
        assert_eq!(src.read(&mut [0.0; 4]).unwrap().samples, 0);
    }

    #[test]
    fn wav_source_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..100i16 {
            w.write_sample(i * 100).unwrap();
            w.write_sample(i * 100 + 2).unwrap();
        }
        w.finalize().unwrap();
        let mut src = WavSource::open(&path).unwrap();
        let got = drain(&mut src, 64);
        let want: Vec<f32> = (0..100)
            .map(|i| (f64::from(i * 200 + 2) / 32768.0 / 2.0) as f32)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn synthetic_sine_is_independent_of_chunking() {
        let sig = Synthetic::Sine {
            frequency: 440.0,
            amplitude: 0.5,
        };
        let a = drain(&mut SyntheticSource::new(sig, 16_000, Some(1000)), 7);
        let b = drain(&mut SyntheticSource::new(sig, 16_000, Some(1000)), 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, b);
        let k = 123;
        let want = 0.5 * (std::f64::consts::TAU * 440.0 * k as f64 / 16_000.0).sin() as f32;
        assert_eq!(a[k], want);
    }

    #[test]
    fn endless_silence_fills_every_buffer() {
        let mut src = SyntheticSource::new(Synthetic::Silence, 16_000, None);
        let mut buf = [1.0f32; 256];
        for _ in 0..10 {
            assert_eq!(src.read(&mut buf).unwrap().samples, 256);
        }
        assert!(buf.iter().all(|&v| v == 0.0));
    }
}
