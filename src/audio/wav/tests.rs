use super::*;
use crate::audio::{WAV_CHANNELS, WAV_SAMPLE_RATES};
use hound::{SampleFormat, WavSpec, WavWriter};
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

/// A RIFF/WAVE file from raw chunks, each padded to an even size as the format requires.
fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    for (id, data) in chunks {
        body.extend_from_slice(*id);
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// A 16-byte `fmt ` body.
fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits / 8;
    let mut f = Vec::new();
    f.extend(tag.to_le_bytes());
    f.extend(channels.to_le_bytes());
    f.extend(rate.to_le_bytes());
    f.extend((rate * u32::from(align)).to_le_bytes());
    f.extend(align.to_le_bytes());
    f.extend(bits.to_le_bytes());
    f
}

/// A 40-byte `WAVE_FORMAT_EXTENSIBLE` body with sub-format `code`.
fn fmt_extensible(code: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let mut f = fmt(0xFFFE, channels, rate, bits);
    f.extend(22u16.to_le_bytes());
    f.extend(bits.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(code.to_le_bytes());
    f.extend(header::tests_guid_tail());
    f
}

fn i16_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
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
        &[-8_388_608i32, 4_194_304, 8_388_607, -1],
    ))
    .unwrap();
    assert_eq!(
        a.samples,
        vec![-1.0, 0.5, 8_388_607.0 / 8_388_608.0, -1.0 / 8_388_608.0]
    );
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
        &[0.25f32, -0.75, 1.5, 64.0, -64.0],
    ))
    .unwrap();
    assert_eq!(a.samples, vec![0.25, -0.75, 1.5, 64.0, -64.0]);
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
fn odd_sized_chunks_and_their_pad_byte_are_skipped() {
    // A LIST chunk of 5 bytes plus its pad byte before and an odd `junk` chunk after the
    // format, as ffprobe and Python's `wave` read them.
    let bytes = riff(&[
        (b"LIST", b"INFOx".to_vec()),
        (b"fmt ", fmt(1, 1, 16_000, 16)),
        (b"junk", vec![7; 3]),
        (b"data", i16_bytes(&[1000, -1000, 0])),
        (b"LIST", b"trailing".to_vec()),
    ]);
    let a = decode(&bytes).unwrap();
    assert_eq!(a.samples, vec![1000.0 / 32768.0, -1000.0 / 32768.0, 0.0]);
    assert_eq!(a.sample_rate, 16_000);
}

#[test]
fn a_missing_pad_byte_at_the_very_end_is_tolerated() {
    let mut bytes = riff(&[
        (b"fmt ", fmt(1, 1, 16_000, 8)),
        (b"data", vec![128, 192, 64]),
    ]);
    bytes.pop();
    assert_eq!(decode(&bytes).unwrap().samples, vec![0.0, 0.5, -0.5]);
}

#[test]
fn extensible_pcm_and_float_are_read() {
    let a = decode(&riff(&[
        (b"fmt ", fmt_extensible(1, 2, 48_000, 16)),
        (b"data", i16_bytes(&[16384, 16384, -32768, 0])),
    ]))
    .unwrap();
    assert_eq!(a.samples, vec![0.5, -0.5]);
    let b = decode(&riff(&[
        (b"fmt ", fmt_extensible(3, 1, 44_100, 32)),
        (b"data", f32_bytes(&[0.125, -0.5])),
    ]))
    .unwrap();
    assert_eq!(b.samples, vec![0.125, -0.5]);
    // A non-PCM sub-format (µ-law) is named.
    let err = decode(&riff(&[
        (b"fmt ", fmt_extensible(7, 1, 8_000, 8)),
        (b"data", vec![0; 4]),
    ]))
    .unwrap_err();
    assert!(matches!(err, AudioError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("µ-law"), "{err}");
}

#[test]
fn sample_rates_outside_the_range_are_refused_before_decoding() {
    for rate in [0, 1, 7_999, 192_001, 9_999_991, 99_999_989, 2_147_483_647] {
        let err = decode(&riff(&[
            (b"fmt ", fmt(1, 1, rate, 16)),
            (b"data", i16_bytes(&[0; 8])),
        ]))
        .unwrap_err();
        assert!(matches!(err, AudioError::OutOfRange { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("test.wav")
                && msg.contains(&format!("{rate} Hz"))
                && msg.contains("8000 to 192000 Hz"),
            "{msg}"
        );
    }
    for rate in [*WAV_SAMPLE_RATES.start(), *WAV_SAMPLE_RATES.end()] {
        let ok = decode(&riff(&[
            (b"fmt ", fmt(1, 1, rate, 16)),
            (b"data", i16_bytes(&[0; 8])),
        ]));
        assert_eq!(ok.unwrap().sample_rate, rate);
    }
}

#[test]
fn channel_counts_outside_the_range_are_refused() {
    for channels in [0u16, 33, 65_535] {
        let mut f = fmt(1, 1, 16_000, 16);
        f[2..4].copy_from_slice(&channels.to_le_bytes());
        f[12..14].copy_from_slice(&(channels.wrapping_mul(2)).to_le_bytes());
        let err = decode(&riff(&[(b"fmt ", f), (b"data", vec![0; 64])])).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, AudioError::OutOfRange { .. }) && msg.contains("1 to 32"),
            "{channels}: {msg}"
        );
    }
    let max = *WAV_CHANNELS.end();
    let a = decode(&riff(&[
        (b"fmt ", fmt(1, max, 16_000, 16)),
        (b"data", i16_bytes(&vec![3276; usize::from(max) * 2])),
    ]))
    .unwrap();
    assert_eq!(a.samples.len(), 2);
}

#[test]
fn a_duration_over_the_limit_is_refused_from_the_header() {
    // 8 kHz mono 8-bit: one byte per frame, so MAX_AUDIO_SECONDS · 8000 + 1 bytes is one
    // frame too many. The data are really there (the size check comes first).
    let frames = MAX_AUDIO_SECONDS as usize * 8_000 + 1;
    let bytes = riff(&[(b"fmt ", fmt(1, 1, 8_000, 8)), (b"data", vec![128; frames])]);
    let err = decode(&bytes).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AudioError::OutOfRange { .. }) && msg.contains("at most 600 s"),
        "{msg}"
    );
    let ok = riff(&[
        (b"fmt ", fmt(1, 1, 8_000, 8)),
        (b"data", vec![128; frames - 1]),
    ]);
    assert_eq!(decode(&ok).unwrap().samples.len(), frames - 1);
}

#[test]
fn a_data_chunk_larger_than_the_file_is_truncated() {
    let mut bytes = encode(spec(1, 16, SampleFormat::Int), &[1i16; 100]);
    bytes.truncate(bytes.len() - 51);
    let err = decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            AudioError::Truncated {
                declared: 200,
                available: 149,
                ..
            }
        ),
        "{err}"
    );
    // A header claiming 4 GiB of data in a tiny file allocates nothing.
    let mut bytes = riff(&[(b"fmt ", fmt(1, 2, 48_000, 16)), (b"data", vec![0; 8])]);
    let n = bytes.len();
    bytes[n - 12..n - 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = decode(&bytes).unwrap_err();
    assert!(matches!(err, AudioError::Truncated { .. }), "{err}");
}

#[test]
fn non_finite_and_absurd_float_samples_are_refused_with_their_position() {
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
        (1e30, "1e30"),
        (-64.5, "-64.5"),
    ] {
        let mut x = vec![0.0f32; 2 * 100];
        x[2 * 80 + 1] = bad; // frame 80, channel 1
        let err = decode(&riff(&[
            (b"fmt ", fmt(3, 2, 16_000, 32)),
            (b"data", f32_bytes(&x)),
        ]))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                AudioError::BadSample {
                    index: 80,
                    channel: 1,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("test.wav") && msg.contains("0.005 s") && msg.contains(shown),
            "{msg}"
        );
    }
}

#[test]
fn structural_damage_is_not_wav() {
    let good = riff(&[
        (b"fmt ", fmt(1, 1, 16_000, 16)),
        (b"data", i16_bytes(&[1, 2])),
    ]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("RIFF", b"RIF".to_vec()),
        (
            "not RIFF",
            b"ID3\x04 this is an mp3, not a wav file at all".to_vec(),
        ),
        ("WAVE", {
            let mut b = good.clone();
            b[8..12].copy_from_slice(b"AVI ");
            b
        }),
        (
            "before the fmt chunk",
            riff(&[(b"data", vec![0; 4]), (b"fmt ", fmt(1, 1, 16_000, 16))]),
        ),
        ("ends before a fmt", riff(&[(b"LIST", vec![0; 4])])),
        (
            "ends before a data",
            riff(&[(b"fmt ", fmt(1, 1, 16_000, 16))]),
        ),
        (
            "two fmt chunks",
            riff(&[
                (b"fmt ", fmt(1, 1, 16_000, 16)),
                (b"fmt ", fmt(1, 1, 16_000, 16)),
                (b"data", vec![0; 4]),
            ]),
        ),
        (
            "at least 16",
            riff(&[(b"fmt ", vec![1, 0, 1, 0]), (b"data", vec![0; 4])]),
        ),
        ("bytes per frame", {
            let mut f = fmt(1, 2, 16_000, 16);
            f[12] = 3;
            riff(&[(b"fmt ", f), (b"data", vec![0; 12])])
        }),
        ("LIST", {
            let mut b = riff(&[(b"LIST", vec![0; 4]), (b"fmt ", fmt(1, 1, 16_000, 16))]);
            b[16..20].copy_from_slice(&1000u32.to_le_bytes());
            b
        }),
    ];
    for (expect, bytes) in cases {
        let err = decode(&bytes).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, AudioError::NotWav { .. }) && msg.contains(expect),
            "{expect}: {msg}"
        );
        assert!(msg.contains("test.wav") && !msg.contains("hound"), "{msg}");
    }
}

#[test]
fn other_encodings_are_unsupported() {
    for (f, expect) in [
        (fmt(1, 1, 16_000, 12), "12-bit integer PCM"),
        (fmt(3, 1, 16_000, 64), "64-bit float"),
        (fmt(0x55, 1, 16_000, 16), "MPEG layer 3"),
        (fmt(2, 1, 16_000, 4), "ADPCM"),
    ] {
        let err = decode(&riff(&[(b"fmt ", f), (b"data", vec![0; 16])])).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, AudioError::Unsupported { .. }) && msg.contains(expect),
            "{msg}"
        );
    }
    let mut rf64 = riff(&[(b"fmt ", fmt(1, 1, 16_000, 16))]);
    rf64[..4].copy_from_slice(b"RF64");
    let err = decode(&rf64).unwrap_err();
    assert!(err.to_string().contains("RF64"), "{err}");
}

#[test]
fn empty_file_is_an_error() {
    let err = decode(&encode::<i16>(spec(1, 16, SampleFormat::Int), &[])).unwrap_err();
    assert!(matches!(err, AudioError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("test.wav"));
    // Less than one frame of a stereo file holds no sample either.
    let err = decode(&riff(&[
        (b"fmt ", fmt(1, 2, 16_000, 16)),
        (b"data", vec![0; 3]),
    ]))
    .unwrap_err();
    assert!(matches!(err, AudioError::Empty { .. }), "{err}");
}

#[test]
fn a_trailing_partial_frame_is_dropped() {
    let a = decode(&riff(&[
        (b"fmt ", fmt(1, 2, 16_000, 16)),
        (b"data", [i16_bytes(&[16384, 16384]), vec![1, 2]].concat()),
    ]))
    .unwrap();
    assert_eq!(a.samples, vec![0.5]);
}

#[test]
fn decoding_starts_at_the_reader_position() {
    let bytes = encode(spec(1, 16, SampleFormat::Int), &[16384i16]);
    let mut cursor = Cursor::new([vec![9u8; 5], bytes].concat());
    cursor.set_position(5);
    let a = decode_wav(cursor, Path::new("x.wav")).unwrap();
    assert_eq!(a.samples, vec![0.5]);
}

#[test]
fn missing_file_names_the_path() {
    let err = read_wav(Path::new("/nonexistent/dir/x.wav")).unwrap_err();
    assert!(matches!(err, AudioError::Unreadable { .. }));
    assert!(err.to_string().contains("/nonexistent/dir/x.wav"));
}
