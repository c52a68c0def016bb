//! Replays the fuzz corpus through the fuzz targets as ordinary tests: every seed in
//! `fuzz/seeds/<target>/` and every input a fuzzer found in `fuzz/regressions/<target>/`. The
//! targets (`fuzz/src/targets.rs`, included here by path) check what each parser must do on
//! any input: no panic, no abort, one-line errors that name the file.
//!
//! The seeds are written by this project's own writers (`cargo test --test robust_corpus --
//! --ignored write_seed_corpus`); no third-party file is in the corpus.

mod common;

#[allow(dead_code)]
#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn seeds_and_regressions_pass_every_target() {
    for (name, target) in targets::TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&data);
        }
    }
}

/// The seeds are valid files (the fuzzers start from inputs that reach the deep paths), except
/// the one PNG of another size than the target expects.
#[test]
fn seeds_are_valid_files() {
    use moda_edge::face::avatar::{decode_png_rgb, AvatarConfig};
    let seeds = |t: &str| files(&fuzz_dir().join("seeds").join(t));
    for p in seeds("wav") {
        moda_edge::audio::read_wav(&p).unwrap();
    }
    for p in seeds("npy") {
        moda_edge::util::npy::read_finite(&p).unwrap();
    }
    for p in seeds("png") {
        let bytes = std::fs::read(&p).unwrap();
        let ok = decode_png_rgb(std::io::Cursor::new(bytes), 32, 32);
        assert_eq!(ok.is_ok(), !p.ends_with("rgb_16x32.png"), "{}", p.display());
    }
    for p in seeds("avatar_toml") {
        AvatarConfig::from_toml(&std::fs::read_to_string(&p).unwrap()).unwrap();
    }
    for p in seeds("pickle") {
        moda_edge::model::pickle::parse(&std::fs::read(&p).unwrap()).unwrap();
    }
    let zips = fuzz_dir().join("seeds/torch_zip");
    let ck = moda_edge::model::load_checkpoint(&zips.join("checkpoint.pth")).unwrap();
    assert_eq!(ck.tensors.len(), 3);
    moda_edge::model::load_checkpoint(&zips.join("deflated.pth")).unwrap();
    let (h, w, rgb) = moda_edge::model::load_reference_image(&zips.join("reference.pth")).unwrap();
    assert_eq!((h, w), (2, 2));
    assert_eq!(rgb, (0..12).collect::<Vec<u8>>());
}

/// Regenerates `fuzz/seeds/`: small valid files of every kind, from the project's writers.
#[test]
#[ignore = "writes the committed seed corpus; run by hand"]
fn write_seed_corpus() {
    use common::{f32_le, fmt_chunk, i16_le, riff, state_dict_pickle, torch_zip, TorchEntry};
    use moda_edge::face::avatar::AvatarConfig;
    use moda_edge::model::{Tensor, TensorData};
    use moda_edge::util::npy;

    let root = fuzz_dir().join("seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };

    let tone: Vec<i16> = (0..48)
        .map(|i| ((i * 2731) % 20000 - 10000) as i16)
        .collect();
    put(
        "wav",
        "pcm16_mono.wav",
        &riff(&[
            (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
            (b"data", i16_le(&tone)),
        ]),
    );
    put(
        "wav",
        "pcm8_8k.wav",
        &riff(&[
            (b"fmt ", fmt_chunk(1, 1, 8_000, 8)),
            (b"data", (0..40).map(|i| (i * 6) as u8).collect()),
        ]),
    );
    put(
        "wav",
        "pcm24_stereo.wav",
        &riff(&[
            (b"fmt ", fmt_chunk(1, 2, 44_100, 24)),
            (b"data", (0..60).map(|i| (i * 37) as u8).collect()),
        ]),
    );
    put(
        "wav",
        "pcm32_48k.wav",
        &riff(&[
            (b"fmt ", fmt_chunk(1, 1, 48_000, 32)),
            (b"data", (0..64).map(|i| (i * 91) as u8).collect()),
        ]),
    );
    put(
        "wav",
        "float_22k.wav",
        &riff(&[
            (b"fmt ", fmt_chunk(3, 1, 22_050, 32)),
            (b"data", f32_le(&[0.5, -0.25, 0.125, 1.0, -1.0, 0.0])),
        ]),
    );
    let mut ext = fmt_chunk(0xFFFE, 2, 32_000, 16);
    ext.extend(22u16.to_le_bytes());
    ext.extend(16u16.to_le_bytes());
    ext.extend(3u32.to_le_bytes());
    ext.extend([
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
    ]);
    put(
        "wav",
        "extensible.wav",
        &riff(&[(b"fmt ", ext), (b"data", i16_le(&tone[..24]))]),
    );
    put(
        "wav",
        "odd_list.wav",
        &riff(&[
            (b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00".to_vec()),
            (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
            (b"junk", vec![1; 3]),
            (b"data", i16_le(&tone[..16])),
        ]),
    );

    let t = |shape: Vec<usize>, data: TensorData| npy::to_bytes(&Tensor { shape, data });
    put(
        "npy",
        "f32_2x3.npy",
        &t(
            vec![2, 3],
            TensorData::F32(vec![1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]),
        ),
    );
    put(
        "npy",
        "f64_7.npy",
        &t(
            vec![7],
            TensorData::F64(vec![0.0, 1.0, -2.0, 256.0, 256.0, 0.0, 1.0]),
        ),
    );
    put(
        "npy",
        "i64_scalar.npy",
        &t(vec![], TensorData::I64(vec![42])),
    );
    put(
        "npy",
        "u8_2x2x3.npy",
        &t(vec![2, 2, 3], TensorData::U8((0..12).collect())),
    );
    put(
        "npy",
        "bool_4.npy",
        &t(vec![4], TensorData::Bool(vec![true, false, false, true])),
    );
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }  \n";
    v2.extend((dict.len() as u32).to_le_bytes());
    v2.extend(dict.as_bytes());
    v2.extend(f32_le(&[1.0, 2.0]));
    put("npy", "v2_fortran_row.npy", &v2);

    let dir = tempfile::tempdir().unwrap();
    let rgb: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let p = dir.path().join("x.png");
    moda_edge::face::avatar::write_png_rgb(&p, 32, 32, &rgb).unwrap();
    put("png", "rgb_32.png", &std::fs::read(&p).unwrap());
    moda_edge::face::avatar::write_png_rgb(&p, 16, 32, &rgb[..16 * 32 * 3]).unwrap();
    put("png", "rgb_16x32.png", &std::fs::read(&p).unwrap());
    let mut rgba = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut rgba, 32, 32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        let px: Vec<u8> = (0..32 * 32 * 4).map(|i| (i * 3 % 256) as u8).collect();
        w.write_image_data(&px).unwrap();
    }
    put("png", "rgba_32.png", &rgba);

    let config = AvatarConfig {
        name: "seed".into(),
        canvas: 512,
        renderer_size: 256,
        face_centre: [256.0, 235.0, 128.0],
        style: "moda".into(),
    };
    put(
        "avatar_toml",
        "full.toml",
        toml::to_string(&config).unwrap().as_bytes(),
    );
    put(
        "avatar_toml",
        "minimal.toml",
        b"name = \"m\"\nrenderer_size = 512\n",
    );
    put(
        "avatar_toml",
        "centre.toml",
        b"name = \"c\"\nrenderer_size = 256\nface_centre = [250, 230.5, 1.28e2]\n",
    );

    let entries = [
        TorchEntry {
            key: "module.a.weight",
            storage_type: "FloatStorage",
            storage_key: "0",
            storage_numel: 8,
            offset: 0,
            shape: &[2, 3],
            stride: &[3, 1],
        },
        TorchEntry {
            key: "a.bias",
            storage_type: "FloatStorage",
            storage_key: "0",
            storage_numel: 8,
            offset: 6,
            shape: &[2],
            stride: &[1],
        },
        TorchEntry {
            key: "n",
            storage_type: "LongStorage",
            storage_key: "1",
            storage_numel: 1,
            offset: 0,
            shape: &[],
            stride: &[],
        },
    ];
    let pkl = state_dict_pickle(&entries);
    put("pickle", "state_dict.pkl", &pkl);
    let reference = reference_pickle();
    put("pickle", "reference.pkl", &reference);
    let ck = torch_zip(
        &[
            ("ck/data.pkl", &pkl),
            ("ck/byteorder", b"little"),
            (
                "ck/data/0",
                &f32_le(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, -2.0]),
            ),
            ("ck/data/1", &7i64.to_le_bytes()),
            ("ck/version", b"3\n"),
        ],
        false,
    );
    put("torch_zip", "checkpoint.pth", &ck);
    put(
        "torch_zip",
        "reference.pth",
        &torch_zip(
            &[
                ("reference/data.pkl", &reference),
                ("reference/version", b"3\n"),
            ],
            false,
        ),
    );
    put(
        "torch_zip",
        "deflated.pth",
        &torch_zip(
            &[
                ("ck/data.pkl", &pkl),
                ("ck/data/0", &[0; 32]),
                ("ck/data/1", &[0; 8]),
            ],
            true,
        ),
    );
}

/// `{'examples': [numpy uint8 array of shape (2, 2, 3)]}` pickled as numpy does (protocol 2),
/// the layout of the official `reference.pth`.
fn reference_pickle() -> Vec<u8> {
    fn ustr(p: &mut Vec<u8>, s: &str) {
        p.push(0x8c);
        p.push(s.len() as u8);
        p.extend(s.as_bytes());
    }
    let mut p = vec![0x80, 2, b'}'];
    ustr(&mut p, "examples");
    p.push(b']');
    p.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n");
    p.extend([b'K', 0, 0x85, b'C', 1, b'b', 0x87, b'R', b'(', b'K', 1]);
    p.extend([b'K', 2, b'K', 2, b'K', 3, 0x87]);
    p.extend(b"cnumpy\ndtype\n");
    ustr(&mut p, "u1");
    p.extend([0x89, 0x88, 0x87, b'R', b'(', b'K', 3]);
    ustr(&mut p, "|");
    p.extend([
        b'N', b'N', b'N', b'J', 0xff, 0xff, 0xff, 0xff, b'J', 0xff, 0xff, 0xff, 0xff,
    ]);
    p.extend([b'K', 0, b't', b'b', 0x89, b'C', 12]);
    p.extend(0..12u8);
    p.extend([b't', b'b', b'a', b's', b'.']);
    p
}
