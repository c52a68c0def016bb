//! Audio front end: WAV in → 16 kHz mono float32 → whole-file normalization, and the
//! [`AudioSource`] trait through which the live pipeline pulls timestamped samples.
//!
//! The offline path reproduces the official preprocessing, `librosa.load(path, sr=16000)`
//! followed by the wav2vec2 feature extractor's `do_normalize` over the whole file:
//!
//! ```text
//! read_wav ──▶ mono (channel mean) ──▶ resample_to_16k ──▶ normalize ──▶ MODA waveform [1, N]
//! ```
//!
//! [`load_wav_16k`] does the first three steps. For a file that is already 16 kHz the samples
//! pass through bit for bit, so the result equals librosa's exactly; other rates go through a
//! windowed-sinc resampler (rubato) instead of librosa's soxr. Measured against soxr_hq on
//! 44.1 kHz tones up to 6.9 kHz: 7e-5 max difference away from the first and last 200 output
//! samples (same alignment, no delay), 4e-3 at the edges; broadband content near 8 kHz differs
//! more, as the two low-pass transition bands differ.

mod normalize;
mod resample;
mod sanitize;
mod source;
mod wav;

use std::path::{Path, PathBuf};

pub use normalize::{normalize, normalize_in_place, numpy_pairwise_sum_f32, NORM_EPS};
pub use resample::{resample, resample_to_16k, resampled_len};
pub use sanitize::{sanitize, Repaired, LIVE_SAMPLE_BOUND};
pub use source::{
    AudioSource, Captured, SourceError, SourceErrorKind, Synthetic, SyntheticSource, WavSource,
};
pub use wav::{decode_wav, read_wav, WavAudio};

/// The sample rate every network input uses.
pub const SAMPLE_RATE: u32 = 16_000;

/// Sample rates a WAV file may have, in Hz: from telephone speech (8 kHz) to studio masters
/// (192 kHz). Outside this range a header is either damaged or absurd (a 1 Hz file turns a few
/// hundred bytes into minutes of video; a prime rate in the millions makes the resampler's
/// filter gigabytes long), so it is refused before any sample is read.
pub const WAV_SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// Channel counts a WAV file may have (mono to 32-channel interleaved recordings).
pub const WAV_CHANNELS: std::ops::RangeInclusive<u16> = 1..=32;

/// The longest recording one offline render takes, in seconds, checked from the header before
/// decoding. Ten minutes of speech: decoded at the highest rate this is at most 115 M mono
/// samples (460 MB), and the motion stage keeps about 6 KB per video frame in each of its
/// per-frame arrays (18,000 frames, about 100 MB each); an hour would take gigabytes.
pub const MAX_AUDIO_SECONDS: u32 = 600;

/// The largest magnitude a float sample of a WAV file may have (full scale is 1.0). Float
/// files may exceed full scale a little after processing; 64 (+36 dB) leaves room for that
/// while the whole-file normalisation's float32 sum of squares cannot overflow (64² × 9.6 M
/// samples of ten minutes at 16 kHz is 4e10, far below float32's 3e38). A file holding a
/// larger value, NaN or ±Inf is refused.
pub const MAX_FILE_SAMPLE_MAGNITUDE: f32 = 64.0;

/// Errors of the audio front end. Every variant names the file (or source) and what was
/// expected; none of them is worth retrying with the same input.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened or read (missing, permissions, truncated data).
    #[error("cannot read audio file {path}: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    /// The bytes are not a RIFF/WAVE file, or its chunks contradict each other or the file size.
    #[error(
        "{path} is not a valid WAV file ({detail}); expected a RIFF/WAVE file with PCM or float samples"
    )]
    NotWav { path: PathBuf, detail: String },
    /// A WAV encoding that is not PCM 8/16/24/32-bit integer or 32-bit float.
    #[error("{path} uses an unsupported WAV encoding ({detail}); expected PCM 8/16/24/32-bit integer or 32-bit float samples")]
    Unsupported { path: PathBuf, detail: String },
    /// A header value outside the documented limits ([`WAV_SAMPLE_RATES`], [`WAV_CHANNELS`],
    /// [`MAX_AUDIO_SECONDS`]).
    #[error("{path}: {what} is {found}; expected {expected}")]
    OutOfRange {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
    /// The data chunk declares more bytes than the file holds (a cut-off download or copy).
    #[error("{path} is truncated: its data chunk declares {declared} bytes but only {available} follow; expected the complete file")]
    Truncated {
        path: PathBuf,
        declared: u64,
        available: u64,
    },
    /// A float sample that is NaN, infinite or beyond ±[`MAX_FILE_SAMPLE_MAGNITUDE`]; the first
    /// one in the file (frame `index`, `seconds` into the recording).
    #[error("{path}: sample {index} of channel {channel} (at {seconds:.3} s) is {value:?}; expected finite samples within ±{MAX_FILE_SAMPLE_MAGNITUDE} (full scale is ±1)")]
    BadSample {
        path: PathBuf,
        index: u64,
        channel: u16,
        seconds: f64,
        value: f32,
    },
    /// A well-formed WAV file that holds no samples.
    #[error("{path} contains no audio samples; expected at least one sample")]
    Empty { path: PathBuf },
    /// A sample rate outside [`WAV_SAMPLE_RATES`] or one the resampler cannot handle.
    #[error("cannot resample {from} Hz audio to {to} Hz: {detail}")]
    Resample { from: u32, to: u32, detail: String },
}

/// Reads a WAV file and returns its mono samples at 16 kHz (`librosa.load(path, sr=16000)`):
/// channels averaged, then resampled when the file is not already 16 kHz.
///
/// # Errors
/// Any [`AudioError`] of [`read_wav`] or [`resample_to_16k`].
pub fn load_wav_16k(path: &Path) -> Result<Vec<f32>, AudioError> {
    let wav = read_wav(path)?;
    resample_to_16k(&wav.samples, wav.sample_rate)
}

// Live audio (the `moda-edged` service): source URIs, ALSA devices, raw PCM on a pipe, the
// capture thread with its ring, and delayed playback.
mod align;
mod alsa_capture;
mod alsa_pcm;
pub mod capture;
mod pipe;
pub mod playback;
mod ring;
mod stream_resample;
mod uri;

pub use alsa_capture::AlsaCapture;
pub use alsa_pcm::{decode_mono, encode_mono, AlsaSettings, SampleFormat};
pub use capture::{Capture, CaptureSettings, CaptureStats, ClockMode, Popped};
pub use pipe::{PipeRead, PipeSource};
pub use playback::{Playback, PlaybackSettings, Timing};
pub use stream_resample::StreamResampler;
pub use uri::{PcmEncoding, PipeFormat, PlaybackUri, SourceUri, UriError, SOURCE_FORMS};
