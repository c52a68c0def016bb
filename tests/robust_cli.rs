//! The command line on bad input files: `moda-edge render` (WAV and avatar bundle) and
//! `moda-edge import` (checkpoints). Each must exit 1 with exactly one `error:` line naming the
//! file, print no panic, leave no output file, and finish within a timeout.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_one_line_error, f32_le, fmt_chunk, i16_le, moda_edge_command, png_header, riff,
    run_with_timeout,
};
use moda_edge::face::avatar::write_synthetic;
use moda_edge::model::import::{init, Network};
use moda_edge::model::{onnx, Preset};
use moda_edge::util::npy;

/// Seeded tiny networks and the synthetic demo avatar, made here.
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for network in [Network::Moda, Network::Faco, Network::Renderer] {
        let path = models.join(format!("{}.onnx", network.name()));
        std::fs::write(path, onnx::encode(&init(network, Preset::Tiny, 1))).unwrap();
    }
    let avatar = dir.join("avatar");
    write_synthetic(&models.join("renderer.onnx"), 256, &avatar).unwrap();
    (avatar, models)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `moda-edge render WAV --avatar A --models M -o OUT --seed 1` with a timeout.
fn render(wav: &Path, avatar: &Path, models: &Path, out: &Path) -> common::Finished {
    let mut cmd = moda_edge_command();
    cmd.arg("render")
        .arg(wav)
        .arg("--avatar")
        .arg(avatar)
        .arg("--models")
        .arg(models)
        .arg("-o")
        .arg(out)
        .args(["--seed", "1"]);
    run_with_timeout(cmd, 60)
}

#[test]
fn render_refuses_bad_wav_files_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (avatar, models) = fixture(tmp.path());
    let mut nan = vec![0.0f32; 16_000];
    nan[8_000] = f32::NAN;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "rate.wav",
            riff(&[
                (b"fmt ", fmt_chunk(1, 1, 2_147_483_647, 16)),
                (b"data", i16_le(&[0; 100])),
            ]),
            "2147483647 Hz",
        ),
        (
            "one_hz.wav",
            riff(&[
                (b"fmt ", fmt_chunk(1, 1, 1, 16)),
                (b"data", i16_le(&[0; 100])),
            ]),
            "8000 to 192000 Hz",
        ),
        (
            "nan.wav",
            riff(&[
                (b"fmt ", fmt_chunk(3, 1, 16_000, 32)),
                (b"data", f32_le(&nan)),
            ]),
            "sample 8000",
        ),
        (
            "cut.wav",
            riff(&[
                (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
                (b"data", i16_le(&[0; 100])),
            ])[..100]
                .to_vec(),
            "truncated",
        ),
        ("text.wav", b"hello, not audio".to_vec(), "not a valid WAV"),
    ];
    for (name, bytes, expect) in cases {
        let wav = tmp.path().join(name);
        std::fs::write(&wav, bytes).unwrap();
        let out = tmp.path().join(format!("{name}.y4m"));
        let f = render(&wav, &avatar, &models, &out);
        assert_one_line_error(&f, &[name, expect]);
        assert!(!out.exists(), "{name}: {} left behind", out.display());
    }
}

#[test]
fn render_refuses_damaged_avatar_bundles_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, models) = fixture(tmp.path());
    let wav = tmp.path().join("speech.wav");
    std::fs::write(
        &wav,
        riff(&[
            (b"fmt ", fmt_chunk(1, 1, 16_000, 16)),
            (b"data", i16_le(&[0; 1600])),
        ]),
    )
    .unwrap();
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "template.npy",
            |d| {
                let p = d.join("template.npy");
                let mut t = npy::read(&p).unwrap();
                if let moda_edge::model::TensorData::F64(v) = &mut t.data {
                    v[7] = f64::NAN;
                }
                npy::write(&p, &t).unwrap();
            },
            "[2, 1]",
        ),
        (
            "headmotion.npy",
            |d| {
                let p = d.join("headmotion.npy");
                let mut t = npy::read(&p).unwrap();
                if let moda_edge::model::TensorData::F64(v) = &mut t.data {
                    v[0] = f64::INFINITY;
                }
                npy::write(&p, &t).unwrap();
            },
            "inf",
        ),
        (
            "avatar.toml",
            |d| {
                let p = d.join("avatar.toml");
                let text = std::fs::read_to_string(&p).unwrap();
                let text = text
                    .lines()
                    .filter(|l| !l.starts_with("face_centre"))
                    .collect::<Vec<_>>()
                    .join("\n");
                std::fs::write(&p, format!("{text}\nface_centre = [nan, 235.0, 128.0]\n")).unwrap();
            },
            "face_centre",
        ),
        (
            "reference.png",
            |d| {
                std::fs::write(
                    d.join("reference.png"),
                    png_header(100_000, 100_000, 8, 2, &[]),
                )
                .unwrap()
            },
            "100000×100000",
        ),
        (
            "shoulders.npy",
            |d| {
                std::fs::write(d.join("shoulders.npy"), b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f2', 'fortran_order': False, 'shape': (18, 3), }    \n").unwrap()
            },
            "dtype <f2",
        ),
    ];
    for (i, (file, damage, expect)) in cases.into_iter().enumerate() {
        let avatar = tmp.path().join(format!("bad{i}"));
        copy_dir(&good, &avatar);
        damage(&avatar);
        let out = tmp.path().join(format!("bad{i}.y4m"));
        let f = render(&wav, &avatar, &models, &out);
        assert_one_line_error(&f, &[file, expect]);
        assert!(!out.exists());
    }
    // The undamaged bundle renders (the cases above fail on the damage, not the set-up).
    let out = tmp.path().join("good.y4m");
    let f = render(&wav, &good, &models, &out);
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    assert!(out.exists());
}

#[test]
fn import_refuses_hostile_checkpoints_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = {
        let n = 16u32 << 20;
        let pkl = common::state_dict_pickle(&[common::TorchEntry {
            key: "decoder.layers.2.bias",
            storage_type: "FloatStorage",
            storage_key: "0",
            storage_numel: n,
            offset: 0,
            shape: &[n],
            stride: &[1],
        }]);
        common::torch_zip(
            &[("FaCo/data.pkl", &pkl), ("FaCo/data/0", &vec![0; 64 << 20])],
            true,
        )
    };
    for (name, bytes, expect) in [
        ("FaCo.pkl", bomb, "4 × its size"),
        ("empty.pkl", Vec::new(), "the file is empty"),
        ("legacy.pkl", vec![0x80, 2, b'}', b'.'], "plain pickle"),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = tmp.path().join(format!("{name}.onnx"));
        let mut cmd = moda_edge_command();
        cmd.args(["import", "faco"]).arg(&path).arg("-o").arg(&out);
        let f = run_with_timeout(cmd, 60);
        assert_one_line_error(&f, &[name, expect]);
        assert!(!out.exists());
    }
}
