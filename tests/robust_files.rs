//! Hostile `.npy`, PNG and avatar bundle files through the library: each bad file is one error
//! naming the file and what was expected, refused before anything is sized from its numbers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::png_header;
use moda_edge::face::avatar::{read_png_rgb, write_bundle, Avatar, AvatarConfig, AvatarError};
use moda_edge::face::pose::CANON_CENTER;
use moda_edge::model::{Tensor, TensorData};
use moda_edge::util::npy::{self, NpyError};

fn npy_with_header(dict: &str, body: &[u8]) -> Vec<u8> {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((dict.len() as u16).to_le_bytes());
    b.extend(dict.as_bytes());
    b.extend(body);
    b
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn npy_of_an_unsupported_dtype_names_it_and_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    for (descr, size) in [
        ("<f2", 2),
        ("<i4", 4),
        (">f8", 8),
        ("<c16", 16),
        ("<U4", 16),
    ] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (3,), }}");
        let path = write(
            dir.path(),
            "half.npy",
            &npy_with_header(&dict, &vec![0; 3 * size]),
        );
        let err = npy::read(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NpyError::Unsupported { .. }), "{msg}");
        assert!(
            msg.contains("half.npy")
                && msg.contains(&format!("dtype {descr}"))
                && msg.contains("float32 (<f4)")
                && !msg.contains("not a NumPy"),
            "{msg}"
        );
    }
}

#[test]
fn npy_shapes_beyond_the_file_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for (shape, expect) in [
        ("(100000, 100000, 100000)", "expected 8000000000000000"),
        ("(4294967296, 4294967296)", "too large"),
        ("(3037000500, 3037000500)", "too large"),
        (
            "(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)",
            "expected 10461394944000",
        ),
    ] {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
        let path = write(dir.path(), "big.npy", &npy_with_header(&dict, &[0; 64]));
        let t0 = Instant::now();
        let err = npy::read(&path).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2));
        let msg = err.to_string();
        assert!(
            msg.contains("big.npy") && msg.contains(expect),
            "{shape}: {msg}"
        );
    }
}

#[test]
fn npy_with_nan_is_refused_by_the_checked_reader_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![1.0f64; 478 * 3];
    v[12 * 3 + 2] = f64::NAN;
    let path = dir.path().join("template.npy");
    npy::write(
        &path,
        &Tensor {
            shape: vec![478, 3],
            data: TensorData::F64(v),
        },
    )
    .unwrap();
    assert!(npy::read(&path).is_ok(), "the plain reader keeps the value");
    let msg = npy::read_finite(&path).unwrap_err().to_string();
    assert!(
        msg.contains("template.npy") && msg.contains("[12, 2]") && msg.contains("NaN"),
        "{msg}"
    );
    let path = dir.path().join("x.npy");
    npy::write(
        &path,
        &Tensor::f32(vec![2, 2], vec![0.0, 0.0, 0.0, f32::NEG_INFINITY]),
    )
    .unwrap();
    let msg = npy::read_finite(&path).unwrap_err().to_string();
    assert!(msg.contains("[1, 1]") && msg.contains("-inf"), "{msg}");
}

#[test]
fn png_headers_are_checked_before_pixels_are_allocated() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h, depth, color, expect) in [
        (100_000u32, 100_000u32, 8u8, 2u8, "100000×100000"),
        (u32::MAX >> 1, u32::MAX >> 1, 8, 6, "2147483647×2147483647"),
        (511, 512, 8, 2, "511×512"),
        (512, 512, 16, 2, "16-bit Rgb"),
        (512, 512, 8, 0, "8-bit Grayscale"),
        (512, 512, 8, 3, "8-bit Indexed"),
    ] {
        let path = write(
            dir.path(),
            "reference.png",
            &png_header(w, h, depth, color, &[]),
        );
        let t0 = Instant::now();
        let err = read_png_rgb(&path, 512, 512).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2));
        let msg = err.to_string();
        assert!(
            msg.contains("reference.png") && msg.contains(expect) && msg.contains("512×512"),
            "{msg}"
        );
    }
    // The right size and type, but no pixel data.
    let path = write(
        dir.path(),
        "reference.png",
        &png_header(512, 512, 8, 2, &[]),
    );
    let msg = read_png_rgb(&path, 512, 512).unwrap_err().to_string();
    assert!(
        msg.contains("reference.png") && msg.contains("damaged"),
        "{msg}"
    );
    let path = write(dir.path(), "photo.png", b"\xff\xd8\xff\xe0 a JPEG");
    let msg = read_png_rgb(&path, 512, 512).unwrap_err().to_string();
    assert!(
        msg.contains("photo.png") && msg.contains("not a readable PNG"),
        "{msg}"
    );
}

/// A valid bundle made here: a flat face around the canonical centre, a grey reference, a
/// placeholder renderer file (loading checks only that it exists).
fn bundle(dir: &Path) -> AvatarConfig {
    let config = AvatarConfig {
        name: "robust".into(),
        canvas: 512,
        renderer_size: 256,
        face_centre: CANON_CENTER,
        style: "moda".into(),
    };
    let template: Vec<[f64; 3]> = (0..478)
        .map(|i| {
            [
                200.0 + (i % 23) as f64 * 5.0,
                180.0 + (i / 23) as f64 * 5.0,
                128.0,
            ]
        })
        .collect();
    let shoulders: Vec<[f64; 3]> = (0..18)
        .map(|i| [100.0 + i as f64 * 18.0, 480.0, 128.0])
        .collect();
    let headmotion = [0.0, 0.0, 0.0, 256.0, 256.0, 0.0, 1.0];
    write_bundle(
        dir,
        &config,
        &template,
        &shoulders,
        &headmotion,
        &vec![128u8; 512 * 512 * 3],
        b"placeholder",
    )
    .unwrap();
    config
}

fn load_err(dir: &Path) -> String {
    let err = Avatar::load(dir).expect_err("a damaged bundle");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn nan_and_inf_in_avatar_arrays_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bundle(dir);
    assert!(Avatar::load(dir).is_ok());
    for (file, shape, bad_at, bad) in [
        ("template.npy", vec![478, 3], 100, f64::NAN),
        ("shoulders.npy", vec![18, 3], 5, f64::INFINITY),
        ("headmotion.npy", vec![7], 2, f64::NEG_INFINITY),
        ("headmotion.npy", vec![7], 6, f64::NAN),
    ] {
        bundle(dir);
        let path = dir.join(file);
        let mut t = npy::read(&path).unwrap();
        if let TensorData::F64(v) = &mut t.data {
            v[bad_at] = bad;
        }
        assert_eq!(t.shape, shape);
        npy::write(&path, &t).unwrap();
        let msg = load_err(dir);
        assert!(msg.contains(file) && msg.contains("finite"), "{msg}");
    }
    bundle(dir);
    npy::write(
        &dir.join("headmotion.npy"),
        &Tensor {
            shape: vec![7],
            data: TensorData::F64(vec![0.0, 0.0, 0.0, 256.0, 256.0, 0.0, 0.0]),
        },
    )
    .unwrap();
    let msg = load_err(dir);
    assert!(
        msg.contains("headmotion.npy") && msg.contains("head scale"),
        "{msg}"
    );
}

#[test]
fn avatar_toml_values_are_validated_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = "name = \"robust\"\ncanvas = 512\nrenderer_size = 256\nstyle = \"moda\"\n";
    for (extra, expect) in [
        ("face_centre = [nan, 235.0, 128.0]", "face_centre"),
        (
            "face_centre = [256.0, inf, 128.0]",
            "expected finite values within 0 to 512",
        ),
        ("face_centre = [1e9, 235.0, 128.0]", "1000000000"),
        ("face_centre = [-1.0, 235.0, 128.0]", "-1"),
        (
            "face_centre = [256.0, 235.0]",
            "face_centre has 2 values, expected 3 numbers",
        ),
        ("face_centre = [256.0, 235.0, 128.0, 1.0]", "has 4 values"),
        ("face_centre = \"middle\"", "line 5"),
        (
            "face_centre = [256, 235, 128]\nextra = 1",
            "unknown field `extra`",
        ),
        ("face_centre = [", "line 6: invalid array"),
    ] {
        bundle(dir);
        std::fs::write(dir.join("avatar.toml"), format!("{base}{extra}\n")).unwrap();
        let msg = load_err(dir);
        assert!(
            msg.contains("avatar.toml") && msg.contains(expect) && !msg.contains("tuple of size"),
            "{extra}: {msg}"
        );
    }
    bundle(dir);
    std::fs::write(
        dir.join("avatar.toml"),
        base.replace("\"robust\"", "\"  \""),
    )
    .unwrap();
    assert!(load_err(dir).contains("name is empty"));
    bundle(dir);
    std::fs::write(
        dir.join("avatar.toml"),
        base.replace("renderer_size = 256", "renderer_size = 1e3"),
    )
    .unwrap();
    let msg = load_err(dir);
    assert!(
        msg.contains("line 3") && msg.contains("whole number"),
        "{msg}"
    );
}

#[test]
fn the_face_centre_is_what_the_pose_step_subtracts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bundle(dir);
    let official = Avatar::load(dir).unwrap().repr();
    assert_eq!(official.centre, CANON_CENTER);
    let text = std::fs::read_to_string(dir.join("avatar.toml")).unwrap();
    let moved = text.replace(
        "face_centre = [256.0, 235.0, 128.0]",
        "face_centre = [246.0, 215.0, 128.0]",
    );
    assert_ne!(moved, text, "avatar.toml as written: {text}");
    std::fs::write(dir.join("avatar.toml"), moved).unwrap();
    let shifted = Avatar::load(dir).unwrap().repr();
    let (mut a, mut sa) = (vec![[0.0; 2]; 478], vec![[0.0; 2]; 18]);
    let (mut b, mut sb) = (a.clone(), sa.clone());
    official.rest_pixels(&mut a, &mut sa);
    shifted.rest_pixels(&mut b, &mut sb);
    // Identity rotation and scale 1: a centre 10 px left and 20 px up moves every point by
    // (+10, +20).
    for (p, q) in a.iter().zip(&b).chain(sa.iter().zip(&sb)) {
        assert!((q[0] - p[0] - 10.0).abs() < 1e-9 && (q[1] - p[1] - 20.0).abs() < 1e-9);
    }
}

#[test]
fn a_reference_png_of_another_size_is_refused_from_its_header() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bundle(dir);
    std::fs::write(
        dir.join("reference.png"),
        png_header(100_000, 100_000, 8, 2, &[]),
    )
    .unwrap();
    let t0 = Instant::now();
    let err = Avatar::load(dir).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, AvatarError::Image { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("reference.png") && msg.contains("100000×100000"),
        "{msg}"
    );
}

/// Found by fuzzing (fuzz/regressions/npy): a dtype or key holding a newline made the error
/// span several lines.
#[test]
fn text_quoted_from_a_npy_header_stays_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for dict in [
        "{'descr': '|\nb1', 'fortran_order': False, 'shape': (4,), }",
        "{'descr': '<f4', 'sha\npe': (4,), 'fortran_order': False, }",
    ] {
        let path = write(dir.path(), "nl.npy", &npy_with_header(dict, &[0; 16]));
        let msg = npy::read(&path).unwrap_err().to_string();
        assert!(
            !msg.contains('\n') && msg.contains("\\n") && msg.contains("nl.npy"),
            "{msg}"
        );
    }
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/npy"))
        .unwrap()
    {
        let path = f.unwrap().path();
        let msg = npy::read(&path).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{}: {msg}", path.display());
    }
}
