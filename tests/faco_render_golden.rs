//! FaCo-Net and renderer import: the golden checkpoints give the official hyper-parameters and
//! state_dict layout, and random `tiny` checkpoints build and run. (The outputs against the
//! official ones: tests/conformance.rs.)

mod common;

use common::golden;
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{run_once, OnnxModel};
use moda_edge::model::onnx::Graph;
use moda_edge::model::spec::{random_checkpoint, validate};
use moda_edge::model::{faco, renderer, Checkpoint, Preset, Tensor};

/// Reads a golden checkpoint with the official-format reader.
fn load(rel: &str) -> Checkpoint {
    moda_edge::model::load_checkpoint(&golden(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `graph` once on tract with the given named inputs; returns the outputs.
fn run(graph: Graph, inputs: &[(&str, Vec<usize>, &[f32])]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model = OnnxModel::from_proto("test", &graph.into_model("test", &[]));
    let inputs: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(n, s, d)| (n.to_string(), Tensor::f32(s.clone(), d.to_vec())))
        .collect();
    run_once(&TractBackend::default(), &model, &inputs)
        .expect("tract runs")
        .into_iter()
        .map(|(_, t)| {
            let data = t.to_f32_vec();
            (t.shape, data)
        })
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
fn faco_checkpoint_imports_with_the_official_layout() {
    let ck = load("faco/checkpoint.pkl");
    let h = faco::Hparams::infer(&ck).expect("infer");
    assert_eq!(h, faco::Hparams::preset(Preset::Release));
    let specs = faco::specs(&h);
    assert_specs_match(&specs, "faco/keys.tsv");
    validate(&ck, &specs, "FaCo").expect("validate");
}

#[test]
fn renderer_checkpoint_imports_with_the_official_layout() {
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
