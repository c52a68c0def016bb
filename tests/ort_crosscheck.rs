//! The ONNX files we write are standard ONNX, not tract-only: ONNX Runtime runs the same files
//! on the golden inputs and agrees with tract within 1e-4.

mod common;

use std::path::Path;
use std::process::Command;

use common::{golden, golden_meta, golden_npy, max_abs_diff, python};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{run_once, OnnxModel};
use moda_edge::model::import::{import, ImportOptions, Network};
use moda_edge::model::{onnx, Tensor};
use moda_edge::util::npy;

/// Agreement required between the runtimes on every output. Measured: FaCo 6.1e-6, renderer
/// 1.5e-5, MODA 2.1e-5 (mel) and 2.0e-5 (wav2vec); MODA needed the subject encoder's centred,
/// chunked first layer (`nn::linear_centred`) to get there from 1.1e-4.
const TOL: f64 = 1e-4;

fn crosscheck(network: Network, folder: &str, opts: ImportOptions, inputs: Vec<(&str, Tensor)>) {
    let tol = TOL;
    let dir = tempfile::tempdir().unwrap();
    let proto = import(network, &golden(&format!("{folder}/checkpoint.pkl")), &opts).unwrap();
    let model_path = dir.path().join("model.onnx");
    std::fs::write(&model_path, onnx::encode(&proto)).unwrap();

    let inputs: Vec<(String, Tensor)> = inputs
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let model = OnnxModel::load(&model_path).unwrap();
    let tract_out = run_once(&TractBackend::default(), &model, &inputs).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_run.py");
    let out_dir = dir.path().join("ort");
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .arg(&model_path)
        .arg("--output-dir")
        .arg(&out_dir);
    for (name, t) in &inputs {
        let p = dir.path().join(format!("in_{name}.npy"));
        npy::write(&p, t).unwrap();
        cmd.arg("--input").arg(format!("{name}={}", p.display()));
    }
    let status = cmd
        .status()
        .expect("python with onnxruntime runs (bash scripts/setup.sh)");
    assert!(status.success(), "ONNX Runtime failed on {folder}");

    assert!(!tract_out.is_empty());
    for (name, t) in &tract_out {
        let ort = npy::read(&out_dir.join(format!("{name}.npy"))).unwrap();
        let err = max_abs_diff(t, &ort);
        eprintln!("{folder} {name}: tract vs onnxruntime max abs {err:.3e}");
        assert!(
            err <= tol,
            "{folder} {name}: tract and ONNX Runtime differ by {err} (bound {tol})"
        );
    }
}

#[test]
fn moda_mel_runs_the_same_on_onnx_runtime() {
    crosscheck(
        Network::Moda,
        "moda_mel",
        ImportOptions::default(),
        vec![
            ("mel", golden_npy("moda_mel/input_mel.npy")),
            ("template", golden_npy("moda_mel/input_subject.npy")),
            ("noise", golden_npy("moda_mel/noise_eps.npy")),
        ],
    );
}

#[test]
fn moda_wav2vec_runs_the_same_on_onnx_runtime() {
    let heads = golden_meta("moda_w2v_tiny")["wav2vec2_config"]["num_attention_heads"].as_u64();
    let opts = ImportOptions {
        wav2vec_heads: Some(heads.expect("heads in meta.json") as usize),
        wav2vec_strides: None,
    };
    crosscheck(
        Network::Moda,
        "moda_w2v_tiny",
        opts,
        vec![
            ("waveform", golden_npy("moda_w2v_tiny/input_waveform.npy")),
            ("template", golden_npy("moda_w2v_tiny/input_subject.npy")),
            ("noise", golden_npy("moda_w2v_tiny/noise_eps.npy")),
        ],
    );
}

#[test]
fn faco_runs_the_same_on_onnx_runtime() {
    crosscheck(
        Network::Faco,
        "faco",
        ImportOptions::default(),
        vec![
            ("lip", golden_npy("faco/input_lip.npy")),
            ("eye", golden_npy("faco/input_eye.npy")),
            ("template", golden_npy("faco/input_ref.npy")),
        ],
    );
}

#[test]
fn renderer_runs_the_same_on_onnx_runtime() {
    let pe = golden_npy("render_small/input_pe.npy");
    let time_code = Tensor::f32(vec![1, 13], pe.to_f32_vec());
    crosscheck(
        Network::Renderer,
        "render_small",
        ImportOptions::default(),
        vec![
            ("mesh_image", golden_npy("render_small/input_mesh.npy")),
            ("reference", golden_npy("render_small/input_example.npy")),
            ("time_code", time_code),
        ],
    );
}
