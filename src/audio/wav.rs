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

use std::io::Read;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavReader};

use super::normalize::numpy_pairwise_sum_f32;
use super::AudioError;

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

/// Reads and decodes a WAV file (see the module doc for the accepted encodings).
///
/// # Errors
/// [`AudioError::Unreadable`] when the file cannot be opened or its data is cut short,
/// [`AudioError::NotWav`] when it is not RIFF/WAVE, [`AudioError::Unsupported`] for other
/// encodings, [`AudioError::Empty`] when it holds no samples.
pub fn read_wav(path: &Path) -> Result<WavAudio, AudioError> {
    let file = std::fs::File::open(path).map_err(|e| AudioError::Unreadable {
        path: path.into(),
        detail: e.to_string(),
    })?;
    decode_wav(std::io::BufReader::new(file), path)
}

/// Decodes WAV bytes from any reader; `path` is only used in error messages.
///
/// # Errors
/// As [`read_wav`].
pub fn decode_wav<R: Read>(reader: R, path: &Path) -> Result<WavAudio, AudioError> {
    let mut reader = WavReader::new(reader).map_err(|e| header_error(e, path))?;
    let spec = reader.spec();
    let channels = spec.channels;
    if channels == 0 {
        return Err(AudioError::NotWav {
            path: path.into(),
            detail: "the header declares 0 channels".into(),
        });
    }
    if spec.sample_rate == 0 {
        return Err(AudioError::NotWav {
            path: path.into(),
            detail: "the header declares a 0 Hz sample rate".into(),
        });
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => collect(reader.samples::<f32>(), path)?,
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // A power of two: the product is exact, apart from the i32 → f32 rounding of
            // 32-bit samples, which libsndfile does too.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let ints: Vec<i32> = collect(reader.samples::<i32>(), path)?;
            ints.into_iter().map(|x| x as f32 * scale).collect()
        }
        (format, bits) => {
            let kind = if format == SampleFormat::Float {
                "float"
            } else {
                "integer PCM"
            };
            return Err(AudioError::Unsupported {
                path: path.into(),
                detail: format!("{bits}-bit {kind}"),
            });
        }
    };
    if interleaved.is_empty() {
        return Err(AudioError::Empty { path: path.into() });
    }
    let samples = mix_to_mono(&interleaved, usize::from(channels));
    Ok(WavAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels,
    })
}

/// Mean over the channels of interleaved frames, in float32 like `np.mean(y, axis=0)`:
/// numpy's float32 sum, then the quotient rounded once to float32. A trailing partial frame
/// is dropped.
fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| (f64::from(numpy_pairwise_sum_f32(frame)) / channels as f64) as f32)
        .collect()
}

fn collect<T, I>(samples: I, path: &Path) -> Result<Vec<T>, AudioError>
where
    I: Iterator<Item = hound::Result<T>>,
{
    samples
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| sample_error(e, path))
}

/// A read that ran out of bytes: hound reports it as `ErrorKind::Other` ("Failed to read
/// enough bytes."), the standard library as `UnexpectedEof`.
fn is_short_read(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
    )
}

/// Maps an error from opening the header.
fn header_error(e: hound::Error, path: &Path) -> AudioError {
    let path: PathBuf = path.into();
    match e {
        hound::Error::IoError(io) if is_short_read(&io) => AudioError::NotWav {
            path,
            detail: "the file ends inside the header".into(),
        },
        hound::Error::IoError(io) => AudioError::Unreadable {
            path,
            detail: io.to_string(),
        },
        hound::Error::FormatError(what) => AudioError::NotWav {
            path,
            detail: what.into(),
        },
        hound::Error::Unsupported => AudioError::Unsupported {
            path,
            detail: "a format code hound cannot decode".into(),
        },
        other => AudioError::NotWav {
            path,
            detail: other.to_string(),
        },
    }
}

/// Maps an error while reading the sample data.
fn sample_error(e: hound::Error, path: &Path) -> AudioError {
    let path: PathBuf = path.into();
    match e {
        hound::Error::IoError(io) if is_short_read(&io) => AudioError::Unreadable {
            path,
            detail: "the sample data is shorter than the header declares".into(),
        },
        hound::Error::IoError(io) => AudioError::Unreadable {
            path,
            detail: io.to_string(),
        },
        hound::Error::Unsupported | hound::Error::TooWide | hound::Error::InvalidSampleFormat => {
            AudioError::Unsupported {
                path,
                detail: e.to_string(),
            }
        }
        other => AudioError::Unreadable {
            path,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::{WavSpec, WavWriter};
    use std::io::Cursor;

    fn encode<S: hound::Sample + Copy>(spec: WavSpec, samples: &[S]) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        let mut w = WavWriter::new(&mut bytes, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        bytes.into_inner()
    }

    fn spec(channels: u16, bits: u16, format: SampleFormat) -> WavSpec {
        WavSpec {
            channels,
            sample_rate: 22_050,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    fn decode(bytes: &[u8]) -> Result<WavAudio, AudioError> {
        decode_wav(Cursor::new(bytes), Path::new("test.wav"))
    }

    #[test]
    fn int16_scaled_by_32768() {
        let a = decode(&encode(
            spec(1, 16, SampleFormat::Int),
            &[-32768i16, -1, 0, 1, 16384, 32767],
        ))
        .unwrap();
        assert_eq!(
            a.samples,
            vec![
                -1.0,
                -1.0 / 32768.0,
                0.0,
                1.0 / 32768.0,
                0.5,
                32767.0 / 32768.0
            ]
        );
        assert_eq!((a.sample_rate, a.channels), (22_050, 1));
    }

    #[test]
    fn int8_is_unsigned_offset_128() {
        // hound takes signed values and stores them as unsigned bytes x + 128.
        let a = decode(&encode(
            spec(1, 8, SampleFormat::Int),
            &[-128i8, 0, 64, 127],
        ))
        .unwrap();
        assert_eq!(a.samples, vec![-1.0, 0.0, 0.5, 127.0 / 128.0]);
    }

    #[test]
    fn int24_and_int32_scaling() {
        let a = decode(&encode(
            spec(1, 24, SampleFormat::Int),
            &[-8_388_608i32, 4_194_304, 8_388_607],
        ))
        .unwrap();
        assert_eq!(a.samples, vec![-1.0, 0.5, 8_388_607.0 / 8_388_608.0]);
        let b = decode(&encode(
            spec(1, 32, SampleFormat::Int),
            &[i32::MIN, 1 << 30, i32::MAX],
        ))
        .unwrap();
        // i32::MAX rounds to 2^31 in float32 first, exactly like libsndfile.
        assert_eq!(b.samples, vec![-1.0, 0.5, 1.0]);
    }

    #[test]
    fn float32_passes_through() {
        let a = decode(&encode(
            spec(1, 32, SampleFormat::Float),
            &[0.25f32, -0.75, 1.5],
        ))
        .unwrap();
        assert_eq!(a.samples, vec![0.25, -0.75, 1.5]);
    }

    #[test]
    fn channels_mixed_by_mean() {
        let a = decode(&encode(
            spec(2, 16, SampleFormat::Int),
            &[16384i16, 0, -16384, -16384],
        ))
        .unwrap();
        assert_eq!(a.samples, vec![0.25, -0.5]);
        assert_eq!(a.channels, 2);
        let b = decode(&encode(
            spec(3, 32, SampleFormat::Float),
            &[0.1f32, 0.2, 0.3],
        ))
        .unwrap();
        assert_eq!(
            b.samples,
            vec![(f64::from(0.1f32 + 0.2f32 + 0.3f32) / 3.0) as f32]
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        let err = decode(&encode::<i16>(spec(1, 16, SampleFormat::Int), &[])).unwrap_err();
        assert!(matches!(err, AudioError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("test.wav"));
    }

    #[test]
    fn not_a_wav_is_an_error() {
        let err = decode(b"ID3\x04 this is an mp3, not a wav file at all").unwrap_err();
        assert!(matches!(err, AudioError::NotWav { .. }), "{err}");
        let err = decode(b"RIF").unwrap_err();
        assert!(matches!(err, AudioError::NotWav { .. }), "{err}");
    }

    #[test]
    fn truncated_data_is_unreadable() {
        let mut bytes = encode(spec(1, 16, SampleFormat::Int), &[1i16; 100]);
        bytes.truncate(bytes.len() - 51);
        let err = decode(&bytes).unwrap_err();
        assert!(matches!(err, AudioError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn unsupported_depth_is_an_error() {
        let mut bytes = encode(spec(1, 32, SampleFormat::Float), &[0.5f32; 4]);
        // Patch the format chunk to claim 64-bit float (bits_per_sample at offset 34,
        // block_align at 32, byte rate at 28).
        bytes[34] = 64;
        bytes[32] = 8;
        bytes[28..32].copy_from_slice(&(22_050u32 * 8).to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                AudioError::Unsupported { .. } | AudioError::NotWav { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_wav(Path::new("/nonexistent/dir/x.wav")).unwrap_err();
        assert!(matches!(err, AudioError::Unreadable { .. }));
        assert!(err.to_string().contains("/nonexistent/dir/x.wav"));
    }
}
