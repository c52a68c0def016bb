//! One function per parser; see `fuzz/src/lib.rs`. Shared with `tests/robust_corpus.rs`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use moda_edge::audio;
use moda_edge::face::avatar::{decode_png_rgb, AvatarConfig};
use moda_edge::model::pickle;
use moda_edge::util::npy;

/// A fuzz target: the bytes of one would-be file.
pub type Target = fn(&[u8]);

/// The file kinds, by the name of their target and corpus folder.
pub const TARGETS: [(&str, Target); 6] = [
    ("wav", wav),
    ("npy", npy_file),
    ("png", png),
    ("avatar_toml", avatar_toml),
    ("pickle", pickle),
    ("torch_zip", torch_zip),
];

/// An error message must be one line that names the file.
fn check_message(msg: &str, file: &str) {
    assert!(!msg.contains('\n'), "message on several lines: {msg:?}");
    assert!(msg.contains(file), "message does not name {file}: {msg}");
}

/// A scratch file of this process (the parsers that take a path read it).
fn scratch(name: &str) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("moda-fuzz-{}-{name}", std::process::id()))
}

/// WAV decoding. (Resampling is left out: planning rubato's filter for a rate like 191,999 Hz
/// takes tens of milliseconds, which would slow every run down; `tests/robust_audio.rs` times
/// the slowest accepted rate instead.)
pub fn wav(data: &[u8]) {
    match audio::decode_wav(Cursor::new(data), Path::new("fuzz.wav")) {
        Ok(a) => {
            assert!(!a.samples.is_empty());
            assert!(a.samples.len() <= data.len(), "more samples than bytes");
            assert!(audio::WAV_SAMPLE_RATES.contains(&a.sample_rate));
            assert!(audio::WAV_CHANNELS.contains(&a.channels));
            assert!(a
                .samples
                .iter()
                .all(|v| v.abs() <= audio::MAX_FILE_SAMPLE_MAGNITUDE));
        }
        Err(e) => {
            let msg = e.to_string();
            check_message(&msg, "fuzz.wav");
            // Nothing of a WAV file is quoted in our messages except escaped chunk ids.
            assert!(!msg.contains("hound"), "message names a crate: {msg}");
        }
    }
}

/// `.npy` from bytes and from a file (header-first reading) must agree.
pub fn npy_file(data: &[u8]) {
    let from_bytes = npy::parse(data);
    let path = scratch("fuzz.npy");
    std::fs::write(&path, data).expect("scratch file");
    let from_file = npy::read_finite(&path);
    match (&from_bytes, &from_file) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(a.len(), a.shape.iter().product::<usize>());
        }
        (Ok(a), Err(npy::NpyError::NonFinite { .. })) => assert!(npy::check_finite(a).is_err()),
        (Err(_), Err(e)) => check_message(&e.to_string(), "fuzz.npy"),
        (a, b) => panic!("bytes and file disagree: {a:?} vs {b:?}"),
    }
    let _ = std::fs::remove_file(&path);
}

/// The reference picture reader at a small expected size (32×32 keeps each run short; the
/// size is an argument, so the header checks are the same as at 512×512).
pub fn png(data: &[u8]) {
    match decode_png_rgb(Cursor::new(data), 32, 32) {
        Ok(rgb) => assert_eq!(rgb.len(), 32 * 32 * 3),
        Err(msg) => assert!(!msg.contains('\n'), "{msg:?}"),
    }
}

/// `avatar.toml`: parsed and validated.
pub fn avatar_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AvatarConfig::from_toml(text) {
        Ok(c) => {
            assert!(c
                .face_centre
                .iter()
                .all(|v| v.is_finite() && (0.0..=c.canvas as f64).contains(v)));
            assert!(!c.name.trim().is_empty());
        }
        Err(msg) => {
            assert!(!msg.contains('\n'), "{msg:?}");
            assert!(!msg.contains("tuple of size"), "{msg}");
        }
    }
}

/// The pickle VM alone, in memory.
pub fn pickle(data: &[u8]) {
    match pickle::parse(data) {
        Ok(v) => {
            let _ = v.describe();
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
}

/// A `torch.save` zip as a checkpoint and as a reference picture.
pub fn torch_zip(data: &[u8]) {
    let path = scratch("fuzz.pth");
    std::fs::write(&path, data).expect("scratch file");
    if let Err(e) = moda_edge::model::load_checkpoint(&path) {
        check_message(&e.to_string(), "fuzz.pth");
    }
    match moda_edge::model::load_reference_image(&path) {
        Ok((h, w, rgb)) => assert_eq!(rgb.len(), h * w * 3),
        Err(e) => check_message(&e.to_string(), "fuzz.pth"),
    }
    let _ = std::fs::remove_file(&path);
}
