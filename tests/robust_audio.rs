//! Hostile and unusual WAV files through the library: every bad file is one error naming the
//! file and what was expected, found without decoding or allocating from its header's numbers;
//! valid files that other readers accept are read. Also the live-audio repair.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{f32_le, fmt_chunk, i16_le, riff};
use moda_edge::audio::{
    load_wav_16k, read_wav, resample_to_16k, sanitize, AudioError, Repaired, MAX_AUDIO_SECONDS,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Reads `bytes` as `name` and returns the error, checking that it came fast, names the file
/// and contains each of `expect`.
fn refused(name: &str, bytes: &[u8], expect: &[&str]) -> AudioError {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, bytes);
    let t0 = Instant::now();
    let err = load_wav_16k(&path).expect_err(name);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{name}: refused after {took:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(name), "{msg}");
    assert!(!msg.contains('\n') && !msg.contains("hound"), "{msg}");
    for e in expect {
        assert!(msg.contains(e), "{name}: expected {e:?} in {msg}");
    }
    err
}

#[test]
fn the_reviewers_sample_rates_are_refused_at_once() {
    // 244 bytes: a 44-byte header and 100 16-bit samples, as in the review.
    let data = i16_le(&[1000; 100]);
    for rate in [2_147_483_647u32, 99_999_989, 9_999_991, 1] {
        let bytes = riff(&[
            (b"fmt ", fmt_chunk(1, 1, rate, 16)),
            (b"data", data.clone()),
        ]);
        assert_eq!(bytes.len(), 244);
        let err = refused(
            "rate.wav",
            &bytes,
            &[&format!("{rate} Hz"), "expected 8000 to 192000 Hz"],
        );
        assert!(matches!(err, AudioError::OutOfRange { .. }));
    }
}

#[test]
fn rates_and_channels_at_and_beyond_the_limits() {
    for rate in [0u32, 4_000, 7_999, 192_001, 384_000, u32::MAX] {
        let bytes = riff(&[
            (b"fmt ", fmt_chunk(1, 1, rate, 16)),
            (b"data", i16_le(&[0; 4])),
        ]);
        refused("r.wav", &bytes, &["sample rate", "8000 to 192000"]);
    }
    for channels in [0u16, 33, 64, 1000] {
        let bytes = riff(&[
            (b"fmt ", fmt_chunk(1, channels, 16_000, 16)),
            (b"data", vec![0; 64]),
        ]);
        refused("c.wav", &bytes, &["channel count", "1 to 32"]);
    }
    // The edges are accepted: 8 kHz and 192 kHz mono, 32 channels.
    let dir = tempfile::tempdir().unwrap();
    for (rate, channels) in [(8_000u32, 1u16), (192_000, 1), (48_000, 32)] {
        let n = usize::from(channels) * 480;
        let bytes = riff(&[
            (b"fmt ", fmt_chunk(1, channels, rate, 16)),
            (b"data", i16_le(&vec![100; n])),
        ]);
        let a = read_wav(&write(dir.path(), "ok.wav", &bytes)).unwrap();
        assert_eq!(
            (a.sample_rate, a.channels, a.samples.len()),
            (rate, channels, 480)
        );
    }
}

#[test]
fn the_slowest_accepted_rate_resamples_quickly() {
    // 191,999 Hz shares no factor with 16 kHz: the longest filter any accepted file gets.
    let x: Vec<f32> = (0..191_999)
        .map(|i| ((i % 97) as f32 / 97.0) - 0.5)
        .collect();
    let t0 = Instant::now();
    let y = resample_to_16k(&x, 191_999).unwrap();
    let took = t0.elapsed();
    eprintln!("1 s at 191999 Hz resampled in {took:?}");
    assert_eq!(y.len(), 16_000);
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_duration_beyond_the_limit_is_refused_from_the_header() {
    // 8 kHz 8-bit mono: one byte a frame; the file really holds the bytes.
    let frames = MAX_AUDIO_SECONDS as usize * 8_000 + 8_000;
    let bytes = riff(&[
        (b"fmt ", fmt_chunk(1, 1, 8_000, 8)),
        (b"data", vec![128; frames]),
    ]);
    refused("long.wav", &bytes, &["601.0 s", "at most 600 s"]);
}

#[test]
fn declared_sizes_beyond_the_file_are_refused_before_allocating() {
    // A data chunk claiming 4 GiB in a 60-byte file.
    let mut bytes = riff(&[
        (b"fmt ", fmt_chunk(1, 2, 48_000, 16)),
        (b"data", vec![0; 16]),
    ]);
    let n = bytes.len();
    bytes[n - 20..n - 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = refused("huge.wav", &bytes, &["truncated", "4294967295 bytes"]);
    assert!(matches!(err, AudioError::Truncated { .. }));
    // A cut-off download: the data chunk is shorter than declared.
    let full = riff(&[
        (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
        (b"data", i16_le(&[5; 1000])),
    ]);
    refused(
        "cut.wav",
        &full[..full.len() - 999],
        &["2000 bytes", "1001"],
    );
    // A LIST chunk claiming more than the file holds.
    let mut bytes = riff(&[
        (b"LIST", vec![0; 8]),
        (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
        (b"data", i16_le(&[5; 4])),
    ]);
    bytes[16..20].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    refused("list.wav", &bytes, &["\"LIST\" chunk", "2147483647"]);
}

#[test]
fn odd_chunks_pad_bytes_and_extensible_headers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let samples = i16_le(&[8192, -8192, 16384]);
    let plain = riff(&[
        (b"fmt ", fmt_chunk(1, 1, 22_050, 16)),
        (b"data", samples.clone()),
    ]);
    // An odd LIST chunk with its pad byte, as ffprobe and Python's `wave` read it, and an odd
    // unknown chunk after the data.
    let odd = riff(&[
        (b"LIST", b"INFOISFT\x05\x00\x00\x00Lavf\x00".to_vec()),
        (b"fmt ", fmt_chunk(1, 1, 22_050, 16)),
        (b"fact", vec![3, 0, 0, 0]),
        (b"data", samples.clone()),
        (b"id3 ", vec![1, 2, 3]),
    ]);
    assert_eq!(odd.len() % 2, 0);
    let a = read_wav(&write(dir.path(), "plain.wav", &plain)).unwrap();
    let b = read_wav(&write(dir.path(), "odd.wav", &odd)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.samples, vec![0.25, -0.25, 0.5]);
}

#[test]
fn non_finite_and_absurd_float_samples_are_refused() {
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
        (1e30, "1e30"),
        (-1e30, "-1e30"),
        (64.001, "64.001"),
    ] {
        // Stereo at 32 kHz; the bad value is sample 16000 (0.500 s) of channel 0.
        let mut x = vec![0.1f32; 2 * 32_000];
        x[2 * 16_000] = bad;
        let bytes = riff(&[
            (b"fmt ", fmt_chunk(3, 2, 32_000, 32)),
            (b"data", f32_le(&x)),
        ]);
        let err = refused(
            "float.wav",
            &bytes,
            &["sample 16000", "channel 0", "0.500 s", shown, "within ±64"],
        );
        assert!(matches!(err, AudioError::BadSample { index: 16_000, .. }));
    }
    // ±64 itself is accepted: loud, but still a number the pipeline can normalise.
    let dir = tempfile::tempdir().unwrap();
    let bytes = riff(&[
        (b"fmt ", fmt_chunk(3, 1, 16_000, 32)),
        (b"data", f32_le(&[64.0, -64.0, 0.5])),
    ]);
    let a = read_wav(&write(dir.path(), "loud.wav", &bytes)).unwrap();
    assert_eq!(a.samples, vec![64.0, -64.0, 0.5]);
}

#[test]
fn foreign_and_damaged_files_are_named() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.wav", vec![], "ends inside the RIFF header"),
        (
            "mp3.wav",
            b"ID3\x04\x00\x00\x00\x00\x00\x00 mp3 frames".to_vec(),
            "not RIFF",
        ),
        (
            "avi.wav",
            riff(&[(b"fmt ", fmt_chunk(1, 1, 16_000, 16))])
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (8..12).contains(&i) {
                        b"AVI "[i - 8]
                    } else {
                        b
                    }
                })
                .collect(),
            "not WAVE",
        ),
        (
            "nodata.wav",
            riff(&[(b"fmt ", fmt_chunk(1, 1, 16_000, 16))]),
            "before a data chunk",
        ),
        (
            "nofmt.wav",
            riff(&[(b"data", vec![0; 8])]),
            "before the fmt chunk",
        ),
        (
            "alaw.wav",
            riff(&[(b"fmt ", fmt_chunk(6, 1, 8_000, 8)), (b"data", vec![0; 8])]),
            "A-law",
        ),
        (
            "f64.wav",
            riff(&[(b"fmt ", fmt_chunk(3, 1, 8_000, 64)), (b"data", vec![0; 8])]),
            "64-bit float",
        ),
        (
            "empty_data.wav",
            riff(&[(b"fmt ", fmt_chunk(1, 1, 8_000, 16)), (b"data", vec![])]),
            "no audio samples",
        ),
    ];
    for (name, bytes, expect) in cases {
        refused(name, &bytes, &[expect]);
    }
    let err = load_wav_16k(Path::new("/nonexistent/speech.wav")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/speech.wav"), "{err}");
}

#[test]
fn every_prefix_of_a_valid_file_is_an_error_or_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = riff(&[
        (b"LIST", vec![1; 7]),
        (b"fmt ", fmt_chunk(1, 2, 16_000, 24)),
        (b"data", vec![0x11; 6 * 20]),
    ]);
    let full = read_wav(&write(dir.path(), "full.wav", &bytes)).unwrap();
    assert_eq!(full.samples.len(), 20);
    for n in 0..bytes.len() {
        let path = write(dir.path(), "prefix.wav", &bytes[..n]);
        let err = read_wav(&path).expect_err("a prefix is incomplete");
        assert!(err.to_string().contains("prefix.wav"), "{n}: {err}");
    }
}

#[test]
fn live_samples_are_repaired_and_counted() {
    let mut buf = vec![0.25f32; 1600];
    buf[3] = f32::NAN;
    buf[4] = f32::INFINITY;
    buf[5] = 1e30;
    buf[6] = -2.0;
    buf[7] = -1.0;
    let r = sanitize(&mut buf);
    assert_eq!(
        r,
        Repaired {
            non_finite: 2,
            clipped: 2
        }
    );
    assert_eq!(&buf[2..9], &[0.25, 0.0, 0.0, 1.0, -1.0, -1.0, 0.25]);
    // A repaired buffer goes through the rest of the front end as numbers.
    let y = moda_edge::audio::normalize(&buf);
    assert!(y.iter().all(|v| v.is_finite()));
}
