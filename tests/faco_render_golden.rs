//! FaCo-Net and renderer conformance: official checkpoints → ONNX graphs → tract, compared with
//! the outputs of the official code (`reference/golden/{faco,render_small}`).

mod common;

use common::golden;
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{Backend, OnnxModel, Prepared, Session};
use moda_edge::model::onnx::Graph;
use moda_edge::model::spec::{random_checkpoint, validate};
use moda_edge::model::{faco, renderer, Checkpoint, Preset};

/// Tolerances: float32 with a different summation order (golden README, "Suggested comparison
/// tolerances").
const FACO_TOL: f32 = 1e-4;
const RENDER_TOL: f32 = 1e-3;

/// Reads a golden checkpoint with the official-format reader.
fn load(rel: &str) -> Checkpoint {
    moda_edge::model::load_checkpoint(&golden(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// Reads a golden `.npy` as float32 data and its shape.
fn npy_f32(rel: &str) -> (Vec<usize>, Vec<f32>) {
    let t = moda_edge::util::npy::read(&golden(rel)).unwrap_or_else(|e| panic!("{e}"));
    (t.shape.clone(), t.to_f32_vec())
}

/// Maximum absolute difference of two equally long slices.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `graph` once on tract with the given named inputs; returns the outputs.
fn run(graph: Graph, inputs: &[(&str, Vec<usize>, &[f32])]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model = OnnxModel::from_proto("test".into(), graph.into_model("test", &[]));
    let shapes: Vec<(&str, Vec<usize>)> = inputs.iter().map(|(n, s, _)| (*n, s.clone())).collect();
    let prepared = TractBackend::default()
        .prepare(&model, &shapes)
        .expect("prepare");
    let mut session = prepared.session().expect("session");
    for (i, spec) in prepared.inputs().to_vec().iter().enumerate() {
        let (_, _, data) = inputs
            .iter()
            .find(|(n, _, _)| *n == spec.name)
            .expect("input given");
        session.input_mut(i).copy_from_slice(data);
    }
    session.run().expect("run");
    prepared
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, o)| (o.shape.clone(), session.output(i).to_vec()))
        .collect()
}

/// keys.tsv as (key, shape, dtype) rows in file order.
fn keys_tsv(rel: &str) -> Vec<(String, Vec<usize>, String)> {
    let text = std::fs::read_to_string(golden(rel)).expect("keys.tsv");
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let inner = cols[1].trim_matches(|c| c == '[' || c == ']');
            let shape = inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            (cols[0].to_string(), shape, cols[2].to_string())
        })
        .collect()
}

fn assert_specs_match(specs: &[moda_edge::model::spec::ParamSpec], rel: &str) {
    let expected = keys_tsv(rel);
    let got: Vec<(String, Vec<usize>, String)> = specs
        .iter()
        .map(|s| (s.key.clone(), s.shape.clone(), s.dtype.to_string()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{rel}: entry count");
    // Exact key order too (the official state_dict registration order).
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "{rel}");
    }
}

#[test]
fn faco_matches_official_output() {
    let ck = load("faco/checkpoint.pkl");
    let h = faco::Hparams::infer(&ck).expect("infer");
    assert_eq!(h, faco::Hparams::preset(Preset::Release));
    let specs = faco::specs(&h);
    assert_specs_match(&specs, "faco/keys.tsv");
    validate(&ck, &specs, "FaCo").expect("validate");

    let (lip_s, lip) = npy_f32("faco/input_lip.npy");
    let (eye_s, eye) = npy_f32("faco/input_eye.npy");
    let (ref_s, tmpl) = npy_f32("faco/input_ref.npy");
    let (out_s, want) = npy_f32("faco/out_vertices.npy");
    let out = run(
        faco::build(&ck, &h),
        &[
            ("lip", lip_s, &lip),
            ("eye", eye_s, &eye),
            ("template", ref_s, &tmpl),
        ],
    );
    assert_eq!(out[0].0, out_s);
    let err = max_abs_diff(&out[0].1, &want);
    eprintln!("FaCo max abs error vs golden: {err:e}");
    assert!(err <= FACO_TOL, "FaCo max abs error {err}");
}

#[test]
fn renderer_matches_official_output() {
    let ck = load("render_small/checkpoint.pkl");
    let h = renderer::Hparams::infer(&ck).expect("infer");
    assert_eq!(
        h,
        renderer::Hparams {
            ngf: 4,
            num_downs: 8,
            size: renderer::Size::Normal,
            input_nc: 19
        }
    );
    let specs = renderer::specs(&h);
    assert_specs_match(&specs, "render_small/keys.tsv");
    validate(&ck, &specs, "renderer").expect("validate");

    let (mesh_s, mesh) = npy_f32("render_small/input_mesh.npy");
    let (ex_s, example) = npy_f32("render_small/input_example.npy");
    let (pe_s, pe) = npy_f32("render_small/input_pe.npy");
    assert_eq!(pe_s, vec![1, 13, 1, 1]);
    let (out_s, want) = npy_f32("render_small/out_image.npy");
    let out = run(
        renderer::build(&ck, &h),
        &[
            ("mesh_image", mesh_s, &mesh),
            ("reference", ex_s, &example),
            ("time_code", vec![1, 13], &pe),
        ],
    );
    assert_eq!(out[0].0, out_s);
    let err = max_abs_diff(&out[0].1, &want);
    eprintln!("renderer max abs error vs golden: {err:e}");
    assert!(err <= RENDER_TOL, "renderer max abs error {err}");
}

#[test]
fn tiny_random_checkpoints_build_and_run() {
    let h = faco::Hparams::preset(Preset::Tiny);
    let ck = random_checkpoint(&faco::specs(&h), 11, "faco tiny");
    let f = 5;
    let lip = vec![0.1; f * 120];
    let eye = vec![-0.2; f * 180];
    let tmpl: Vec<f32> = (0..1434).map(|i| (i % 512) as f32).collect();
    let out = run(
        faco::build(&ck, &h),
        &[
            ("lip", vec![1, f, 120], &lip),
            ("eye", vec![1, f, 180], &eye),
            ("template", vec![1, 1434], &tmpl),
        ],
    );
    assert_eq!(out[0].0, vec![1, f, 1434]);
    assert!(out[0].1.iter().all(|x| x.is_finite()));

    let h = renderer::Hparams::preset(Preset::Tiny);
    let ck = random_checkpoint(&renderer::specs(&h), 12, "renderer tiny");
    let (hh, ww) = (256, 512);
    let img: Vec<f32> = (0..3 * hh * ww)
        .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
        .collect();
    let code = [0.5f32; 13];
    let out = run(
        renderer::build(&ck, &h),
        &[
            ("mesh_image", vec![1, 3, hh, ww], &img),
            ("reference", vec![1, 3, hh, ww], &img),
            ("time_code", vec![1, 13], &code),
        ],
    );
    assert_eq!(out[0].0, vec![1, 3, hh, ww]);
    assert!(out[0].1.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
}
