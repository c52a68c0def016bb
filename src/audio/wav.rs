//! WAV decoding to mono float32, with the scaling libsndfile (and so `librosa.load`) uses.
//!
//! | stored as | float value |
//! |---|---|
//! | 8-bit unsigned PCM | (x − 128) / 128 |
//! | 16-bit PCM | x / 32768 |
//! | 24-bit PCM | x / 8388608 |
//! | 32-bit PCM | x / 2147483648 (x rounded to float32 first, as libsndfile does) |
//! | 32-bit float | x |
//!
//! Several channels are mixed to mono by their mean in float32, as `librosa.to_mono` does.
//!
//! The container is read by our own RIFF parser ([`header`]): format code 1 (PCM),
//! 3 (IEEE float) and 0xFFFE (`WAVE_FORMAT_EXTENSIBLE` with one of those two sub-formats);
//! chunks other than `fmt ` and `data` are skipped, odd-sized chunks with their pad byte.
//! Before a sample is read, the header must pass the limits in [`super`]: a sample rate in
//! [`WAV_SAMPLE_RATES`], a channel count in [`WAV_CHANNELS`], a data chunk that the file really
//! holds and at most [`MAX_AUDIO_SECONDS`] of audio. A trailing partial frame is dropped (as
//! libsndfile does). Float samples must be finite and within ±[`MAX_FILE_SAMPLE_MAGNITUDE`]:
//! a file holding NaN, ±Inf or an absurd value is refused, naming the first bad sample.

mod header;

#[cfg(test)]
mod tests;

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use self::header::{Encoding, HeaderError};
use super::normalize::numpy_pairwise_sum_f32;
use super::{
    AudioError, MAX_AUDIO_SECONDS, MAX_FILE_SAMPLE_MAGNITUDE, WAV_CHANNELS, WAV_SAMPLE_RATES,
};

/// A decoded WAV file: mono samples at the file's own rate.
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    /// Mono float32 samples (channel mean), nominally in [-1, 1].
    pub samples: Vec<f32>,
    /// The file's sample rate in Hz.
    pub sample_rate: u32,
    /// How many channels the file had before mixing.
    pub channels: u16,
}

/// Reads and decodes a WAV file (see the module doc for the accepted encodings and limits).
///
/// # Errors
/// [`AudioError::Unreadable`] when the file cannot be opened or read,
/// [`AudioError::NotWav`] when it is not RIFF/WAVE or its chunks contradict the file size,
/// [`AudioError::Unsupported`] for other encodings, [`AudioError::OutOfRange`] for a sample
/// rate, channel count or duration outside the limits, [`AudioError::Truncated`] when the data
/// chunk is cut short, [`AudioError::BadSample`] for a non-finite or absurd float sample,
/// [`AudioError::Empty`] when it holds no samples.
pub fn read_wav(path: &Path) -> Result<WavAudio, AudioError> {
    let file = std::fs::File::open(path).map_err(|e| AudioError::Unreadable {
        path: path.into(),
        detail: e.to_string(),
    })?;
    decode_wav(BufReader::new(file), path)
}

/// Decodes WAV bytes from the current position of `reader` to its end; `path` is only used
/// in error messages.
///
/// # Errors
/// As [`read_wav`].
pub fn decode_wav<R: Read + Seek>(mut reader: R, path: &Path) -> Result<WavAudio, AudioError> {
    let io = |e: std::io::Error| AudioError::Unreadable {
        path: path.into(),
        detail: e.to_string(),
    };
    let start = reader.stream_position().map_err(io)?;
    let end = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let header = header::parse(&mut reader, end.saturating_sub(start)).map_err(|e| match e {
        HeaderError::Io(detail) => AudioError::Unreadable {
            path: path.into(),
            detail,
        },
        HeaderError::NotWav(detail) => AudioError::NotWav {
            path: path.into(),
            detail,
        },
        HeaderError::Unsupported(detail) => AudioError::Unsupported {
            path: path.into(),
            detail,
        },
        HeaderError::Truncated {
            declared,
            available,
        } => AudioError::Truncated {
            path: path.into(),
            declared,
            available,
        },
    })?;
    let out_of_range =
        |what: &'static str, found: String, expected: String| AudioError::OutOfRange {
            path: path.into(),
            what,
            found,
            expected,
        };
    if !WAV_CHANNELS.contains(&header.channels) {
        return Err(out_of_range(
            "the channel count",
            header.channels.to_string(),
            format!("{} to {}", WAV_CHANNELS.start(), WAV_CHANNELS.end()),
        ));
    }
    let rate = header.sample_rate;
    if !WAV_SAMPLE_RATES.contains(&rate) {
        return Err(out_of_range(
            "the sample rate",
            format!("{rate} Hz"),
            format!(
                "{} to {} Hz",
                WAV_SAMPLE_RATES.start(),
                WAV_SAMPLE_RATES.end()
            ),
        ));
    }
    if usize::from(header.declared_block_align) != header.block_align {
        return Err(AudioError::NotWav {
            path: path.into(),
            detail: format!(
                "the fmt chunk declares {} bytes per frame, expected {} for {} channels of {}",
                header.declared_block_align, header.block_align, header.channels, header.encoding
            ),
        });
    }
    // block_align is channels × sample size, at least 1 and at most 128 bytes.
    let frames = header.data_len / header.block_align as u64;
    if frames > u64::from(MAX_AUDIO_SECONDS) * u64::from(rate) {
        return Err(out_of_range(
            "the duration",
            format!("{:.1} s", frames as f64 / f64::from(rate)),
            format!("at most {MAX_AUDIO_SECONDS} s per file"),
        ));
    }
    if frames == 0 {
        return Err(AudioError::Empty { path: path.into() });
    }
    let samples = decode_frames(&mut reader, &header, frames, path)?;
    Ok(WavAudio {
        samples,
        sample_rate: rate,
        channels: header.channels,
    })
}

/// Frames read from the file at once.
const FRAMES_PER_READ: usize = 4096;

/// Reads `frames` frames from the start of the data chunk and mixes each to mono.
/// `frames` has been checked against the file size and [`MAX_AUDIO_SECONDS`].
fn decode_frames<R: Read>(
    reader: &mut R,
    header: &header::Header,
    frames: u64,
    path: &Path,
) -> Result<Vec<f32>, AudioError> {
    let channels = usize::from(header.channels);
    let frames_total = usize::try_from(frames).map_err(|_| AudioError::OutOfRange {
        path: path.into(),
        what: "the frame count",
        found: frames.to_string(),
        expected: "one that fits in memory".into(),
    })?;
    let mut mono = Vec::with_capacity(frames_total);
    let mut block = vec![0u8; FRAMES_PER_READ * header.block_align];
    let mut frame = [0f32; 32];
    let frame = &mut frame[..channels];
    let mut index: u64 = 0;
    while mono.len() < frames_total {
        let n = (frames_total - mono.len()).min(FRAMES_PER_READ);
        let bytes = &mut block[..n * header.block_align];
        reader
            .read_exact(bytes)
            .map_err(|e| AudioError::Unreadable {
                path: path.into(),
                detail: format!("reading the samples: {e}"),
            })?;
        for raw in bytes.chunks_exact(header.block_align) {
            for (c, (v, s)) in frame
                .iter_mut()
                .zip(raw.chunks_exact(raw.len() / channels))
                .enumerate()
            {
                *v = sample(header.encoding, s);
                // Integer samples are always within ±1; NaN fails `is_finite`.
                if !v.is_finite() || v.abs() > MAX_FILE_SAMPLE_MAGNITUDE {
                    return Err(AudioError::BadSample {
                        path: path.into(),
                        index,
                        channel: c as u16,
                        seconds: index as f64 / f64::from(header.sample_rate),
                        value: *v,
                    });
                }
            }
            mono.push(mix(frame));
            index += 1;
        }
    }
    Ok(mono)
}

/// One stored sample as float32 (the module doc's table). `raw` has the encoding's size.
#[inline]
fn sample(encoding: Encoding, raw: &[u8]) -> f32 {
    // A power of two: the product is exact, apart from the i32 → f32 rounding of
    // 32-bit samples, which libsndfile does too.
    const S8: f32 = 1.0 / 128.0;
    const S16: f32 = 1.0 / 32_768.0;
    const S24: f32 = 1.0 / 8_388_608.0;
    const S32: f32 = 1.0 / 2_147_483_648.0;
    match (encoding, raw) {
        (Encoding::Int { .. }, &[b]) => (i32::from(b) - 128) as f32 * S8,
        (Encoding::Int { .. }, &[b0, b1]) => f32::from(i16::from_le_bytes([b0, b1])) * S16,
        // Sign-extend the 24-bit value by placing it in the top bytes and shifting back.
        (Encoding::Int { .. }, &[b0, b1, b2]) => {
            (i32::from_le_bytes([0, b0, b1, b2]) >> 8) as f32 * S24
        }
        (Encoding::Int { .. }, &[b0, b1, b2, b3]) => {
            i32::from_le_bytes([b0, b1, b2, b3]) as f32 * S32
        }
        (Encoding::Float32, &[b0, b1, b2, b3]) => f32::from_le_bytes([b0, b1, b2, b3]),
        // The header parser only produces the sizes above.
        _ => f32::NAN,
    }
}

/// Mean over the channels of one frame, in float32 like `np.mean(y, axis=0)`: numpy's float32
/// sum, then the quotient rounded once to float32.
#[inline]
fn mix(frame: &[f32]) -> f32 {
    match frame {
        [only] => *only,
        _ => (f64::from(numpy_pairwise_sum_f32(frame)) / frame.len() as f64) as f32,
    }
}
