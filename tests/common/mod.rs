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

/// What a finished child process left: exit code, stdout and stderr as text.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with piped output and kills it after `secs` seconds, failing the test with what
/// it printed so far: a hang fails instead of hanging the suite.
pub fn run_with_timeout(mut cmd: std::process::Command, secs: u64) -> Finished {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {secs} s; stderr so far: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A RIFF/WAVE file from raw chunks, each padded to an even size as the format requires.
pub fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
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

/// A 16-byte `fmt ` chunk body: format code `tag` (1 PCM, 3 float), consistent byte rate and
/// block alignment.
pub fn fmt_chunk(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = u32::from(channels) * u32::from(bits) / 8;
    let mut f = Vec::new();
    f.extend(tag.to_le_bytes());
    f.extend(channels.to_le_bytes());
    f.extend(rate.to_le_bytes());
    f.extend(rate.wrapping_mul(align).to_le_bytes());
    f.extend((align as u16).to_le_bytes());
    f.extend(bits.to_le_bytes());
    f
}

/// Little-endian bytes of float32 samples.
pub fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of 16-bit samples.
pub fn i16_le(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// CRC-32 (IEEE, as PNG chunks use it), bitwise: test files only.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that is only a signature and an IHDR chunk (with a valid CRC) claiming the given
/// size, bit depth and colour type, then `rest` (further chunks, or nothing).
pub fn png_header(width: u32, height: u32, depth: u8, color: u8, rest: &[u8]) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([depth, color, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    out.extend(rest);
    out
}

/// Asserts the CLI failed as a user error should: exit code 1, exactly one stderr line that
/// starts with `error:` and contains each of `names`, no panic.
pub fn assert_one_line_error(f: &Finished, names: &[&str]) {
    let lines: Vec<&str> = f.stderr.lines().collect();
    assert_eq!(f.code, Some(1), "exit code; stderr: {}", f.stderr);
    assert_eq!(lines.len(), 1, "expected one stderr line: {:?}", f.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    for name in names {
        assert!(
            lines[0].contains(name),
            "does not name {name}: {}",
            lines[0]
        );
    }
}

/// One tensor of [`state_dict_pickle`]: the `_rebuild_tensor_v2` arguments torch writes.
pub struct TorchEntry<'a> {
    pub key: &'a str,
    pub storage_type: &'a str,
    pub storage_key: &'a str,
    pub storage_numel: u32,
    pub offset: u32,
    pub shape: &'a [u32],
    pub stride: &'a [u32],
}

/// The protocol-2 pickle `torch.save` writes for an `OrderedDict` state_dict.
pub fn state_dict_pickle(entries: &[TorchEntry]) -> Vec<u8> {
    fn ustr(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn ints(out: &mut Vec<u8>, v: &[u32]) {
        out.push(b'(');
        for &x in v {
            out.push(b'J');
            out.extend(x.to_le_bytes());
        }
        out.push(b't');
    }
    let mut p = vec![0x80, 2, b'c'];
    p.extend(b"collections\nOrderedDict\n");
    p.extend([b'q', 0, b')', b'R', b'q', 1, b'(']);
    for e in entries {
        ustr(&mut p, e.key);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        ustr(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", e.storage_type).as_bytes());
        ustr(&mut p, e.storage_key);
        ustr(&mut p, "cpu");
        p.push(b'J');
        p.extend(e.storage_numel.to_le_bytes());
        p.extend([b't', b'Q', b'J']);
        p.extend(e.offset.to_le_bytes());
        ints(&mut p, e.shape);
        ints(&mut p, e.stride);
        p.extend([0x89, b'h', 0, b')', b'R', b't', b'R']);
    }
    p.extend([b'u', b'.']);
    p
}

/// A zip archive of `records`, each stored or deflated.
pub fn torch_zip(records: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (name, data) in records {
        zip.start_file(*name, opts).expect("zip entry");
        zip.write_all(data).expect("zip data");
    }
    zip.finish().expect("zip finish").into_inner()
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
