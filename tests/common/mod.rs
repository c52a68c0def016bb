//! Helpers shared by the integration tests: where the reference data lives, golden arrays,
//! error measures. A missing golden file fails the test; nothing is skipped.
#![allow(dead_code)]

pub mod cli;

use std::path::{Path, PathBuf};

use moda_edge::model::Tensor;
use moda_edge::util::npy;

/// A command that starts the `moda-edge` binary built with the tests. Cross-built test
/// binaries run under qemu, so the CLI they start goes through the same runner, named by
/// `$MODA_TEST_EXE_WRAPPER`.
pub fn moda_edge_command() -> std::process::Command {
    let exe = env!("CARGO_BIN_EXE_moda-edge");
    match std::env::var_os("MODA_TEST_EXE_WRAPPER") {
        Some(wrapper) => {
            let mut c = std::process::Command::new(wrapper);
            c.arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    }
}

/// `../shared/reference` beside the checkout (or `$MODA_REFERENCE`).
pub fn reference_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MODA_REFERENCE") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [
        root.join("../shared/reference"),
        root.join("../../shared/reference"),
    ] {
        if candidate.join("golden").is_dir() {
            return candidate;
        }
    }
    panic!(
        "reference data not found: expected ../shared/reference beside {} (or set MODA_REFERENCE)",
        root.display()
    );
}

/// `reference/golden/<rel>`.
pub fn golden(rel: &str) -> PathBuf {
    let p = reference_dir().join("golden").join(rel);
    assert!(p.exists(), "golden file missing: {}", p.display());
    p
}

/// A golden `.npy` array.
pub fn golden_npy(rel: &str) -> Tensor {
    npy::read(&golden(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// A field of a golden folder's `meta.json`.
pub fn golden_meta(folder: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(golden(&format!("{folder}/meta.json")))
        .expect("meta.json readable");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

/// Max |a − b| over two equally shaped tensors (compared as float64).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape, "shapes differ");
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The Python interpreter that has onnxruntime (`$MODA_PYTHON`, else `.venv/bin/python3`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MODA_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        venv.exists(),
        "ONNX Runtime not set up: run `bash scripts/setup.sh` (creates .venv) or set MODA_PYTHON"
    );
    venv
}

/// `reference/golden/<variant>` (a folder that must exist).
pub fn golden_dir(variant: &str) -> PathBuf {
    let p = reference_dir().join("golden").join(variant);
    assert!(p.is_dir(), "golden folder missing: {}", p.display());
    p
}

/// `reference/<rel>` (a file that must exist).
pub fn reference_file(rel: &str) -> PathBuf {
    let p = reference_dir().join(rel);
    assert!(p.is_file(), "reference file missing: {}", p.display());
    p
}

/// The golden e2e render set-up in `dir`: an avatar bundle from `golden/e2e` with the
/// `render_small` renderer at 256², and a models directory with the golden MODA (wav2vec tiny,
/// 2 heads) and FaCo. Returns (avatar dir, models dir).
pub fn golden_render_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    use moda_edge::model::import::{import, ImportOptions, Network};
    let avatar_dir = dir.join("avatar");
    let e2e = golden("e2e/repr.npz").parent().unwrap().to_path_buf();
    moda_edge::face::avatar::import_official(
        &e2e,
        &golden("render_small/checkpoint.pkl"),
        256,
        &avatar_dir,
    )
    .unwrap();
    let models_dir = dir.join("models");
    std::fs::create_dir_all(&models_dir).unwrap();
    let opts = ImportOptions {
        wav2vec_heads: Some(2),
        wav2vec_strides: None,
    };
    let moda = import(
        Network::Moda,
        &golden("moda_w2v_tiny/checkpoint.pkl"),
        &opts,
    )
    .unwrap();
    std::fs::write(
        models_dir.join("moda.onnx"),
        moda_edge::model::onnx::encode(&moda),
    )
    .unwrap();
    let faco = import(
        Network::Faco,
        &golden("faco/checkpoint.pkl"),
        &ImportOptions::default(),
    )
    .unwrap();
    std::fs::write(
        models_dir.join("faco.onnx"),
        moda_edge::model::onnx::encode(&faco),
    )
    .unwrap();
    (avatar_dir, models_dir)
}

/// Runs `cmd` to completion and returns its output, killing it and failing the test if it is
/// still running after `seconds` (a hang fails instead of hanging the suite).
pub fn output_within(cmd: &mut std::process::Command, seconds: u64) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Seeded `tiny` moda.onnx, faco.onnx and renderer.onnx in `dir`.
pub fn write_tiny_models(dir: &Path) {
    use moda_edge::model::import::{init, Network};
    std::fs::create_dir_all(dir).unwrap();
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = dir.join(format!("{}.onnx", network.name()));
        let proto = init(network, moda_edge::model::Preset::Tiny, 1);
        std::fs::write(path, moda_edge::model::onnx::encode(&proto)).unwrap();
    }
}

/// `frames` sample frames of a vowel-like tone with a syllable envelope, 16-bit PCM at `rate`
/// with `channels` identical channels.
pub fn write_speechlike_wav(path: &Path, frames: usize, rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for k in 0..frames {
        let t = k as f64 / f64::from(rate);
        let envelope = (std::f64::consts::PI * 4.0 * t).sin().abs();
        let voice = (std::f64::consts::TAU * 140.0 * t).sin()
            + 0.5 * (std::f64::consts::TAU * 700.0 * t).sin();
        let s = (8_000.0 * envelope * voice) as i16;
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}
