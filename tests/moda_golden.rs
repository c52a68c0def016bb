//! MODANet import: the parameter specs equal the official state_dict listing, the fixed
//! buffers equal the stored ones, hyper-parameters are inferred from the golden checkpoints,
//! other checkpoints are refused, and a random `tiny` checkpoint runs. (The outputs against the
//! official ones: tests/conformance.rs.)

mod common;

use std::path::Path;

use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{run_once, OnnxModel};
use moda_edge::model::moda::{self, AudioHead, Hparams};
use moda_edge::model::spec::{random_checkpoint, validate};
use moda_edge::model::{Checkpoint, CheckpointError, DType, Preset, Tensor, TensorData};

fn load_golden(variant: &str) -> Checkpoint {
    let path = common::golden_dir(variant).join("checkpoint.pkl");
    moda_edge::model::load_checkpoint(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Head count of the tiny wav2vec encoder, from the golden meta.json.
fn golden_w2v_heads() -> usize {
    let path = common::golden_dir("moda_w2v_tiny").join("meta.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta: serde_json::Value = serde_json::from_str(&text).expect("meta.json is JSON");
    meta["wav2vec2_config"]["num_attention_heads"]
        .as_u64()
        .expect("num_attention_heads") as usize
}

fn hparams(variant: &str, ck: &Checkpoint) -> Hparams {
    let heads = (variant == "moda_w2v_tiny").then(golden_w2v_heads);
    Hparams::infer(ck, heads, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the MODA graph of `ck` on tract; returns the outputs by name with their shapes.
fn run(
    ck: &Checkpoint,
    h: &Hparams,
    inputs: &[(&str, &Tensor)],
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let model = OnnxModel::from_proto("moda", &moda::build(ck, h).into_model("moda", &[]));
    let inputs: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), Tensor::f32(t.shape.clone(), t.to_f32_vec())))
        .collect();
    run_once(&TractBackend::default(), &model, &inputs)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(name, t)| {
            let data = t.to_f32_vec();
            (name, t.shape, data)
        })
        .collect()
}

// The golden outputs themselves are compared by the backend-generic suite
// (`moda_edge::backend::conformance`, run in tests/conformance.rs).

/// `keys.tsv` rows: key, shape, dtype.
fn keys_tsv(variant: &str) -> Vec<(String, Vec<usize>, String)> {
    let path = common::golden_dir(variant).join("keys.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let dims = cols[1].trim_matches(['[', ']']);
            let shape = dims
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("dim"))
                .collect();
            (cols[0].to_string(), shape, cols[2].to_string())
        })
        .collect()
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::Bool => "bool",
        DType::U8 => "uint8",
    }
}

#[test]
fn specs_equal_official_key_listing() {
    for variant in ["moda_mel", "moda_w2v_tiny"] {
        let ck = load_golden(variant);
        let h = hparams(variant, &ck);
        let mut ours: Vec<(String, Vec<usize>, String)> = moda::specs(&h)
            .into_iter()
            .map(|s| (s.key, s.shape, dtype_name(s.dtype).to_string()))
            .collect();
        // specs list weight_g after weight_v (random init derives g from v); the file has g first.
        if let Some(i) = ours.iter().position(|s| s.0.ends_with("weight_v")) {
            ours.swap(i, i + 1);
        }
        let theirs = keys_tsv(variant);
        assert_eq!(ours.len(), theirs.len(), "{variant}: number of keys");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{variant}: spec differs from keys.tsv");
        }
    }
}

/// The architecture-fixed buffers (masks, sinusoid tables) that `models init` writes equal the
/// ones the official code stored. BatchNorm counters and the unused SpecAugment embedding carry
/// training state, not architecture, and are left out. The sinusoid tables agree to a few
/// float32 ulps (PyTorch's vectorised exp/sin are not correctly rounded; ours are).
#[test]
fn fixed_buffers_equal_stored_ones() {
    for variant in ["moda_mel", "moda_w2v_tiny"] {
        let ck = load_golden(variant);
        let h = hparams(variant, &ck);
        let mut checked = Vec::new();
        for spec in moda::specs(&h) {
            let moda_edge::model::spec::Init::Fixed(ours) = &spec.init else {
                continue;
            };
            if spec.key.ends_with("num_batches_tracked") || spec.key.ends_with("masked_spec_embed")
            {
                continue;
            }
            let stored = &ck.tensors[&spec.key];
            assert_eq!(ours.shape, stored.shape, "{}", spec.key);
            match (&ours.data, &stored.data) {
                (TensorData::F32(a), TensorData::F32(b)) => {
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        let same = x == y || (x - y).abs() <= 5e-6;
                        assert!(same, "{} [{i}]: ours {x}, stored {y}", spec.key);
                    }
                }
                (a, b) => assert_eq!(a, b, "{}", spec.key),
            }
            checked.push(spec.key);
        }
        assert_eq!(
            checked.len(),
            4,
            "{variant}: biased_mask, memory_mask and both tables: {checked:?}"
        );
    }
}

#[test]
fn hparams_of_golden_checkpoints() {
    let mel = load_golden("moda_mel");
    let h = hparams("moda_mel", &mel);
    assert_eq!(h.audio, AudioHead::Mel { layers: 4 });
    assert_eq!(
        (h.hidden, h.max_seq_len, h.period, h.body_layers, h.body_ffn),
        (128, 600, 30, 3, 128)
    );
    assert_eq!(
        (h.lip_dim, h.eye_dim, h.head_dim, h.torso_dim, h.vertice_dim),
        (120, 180, 7, 54, 1434)
    );
    let w2v = load_golden("moda_w2v_tiny");
    assert_eq!(
        hparams("moda_w2v_tiny", &w2v),
        Hparams::preset(Preset::Tiny)
    );
    // Without a head count the wav2vec2-base default (12) does not divide the tiny width 64.
    let err = Hparams::infer(&w2v, None, None).expect_err("12 heads do not divide 64");
    assert!(matches!(err, CheckpointError::BadHparams { .. }), "{err}");
}

#[test]
fn other_checkpoints_are_rejected_with_a_hint() {
    let fake = |key: &str| {
        let mut tensors = std::collections::BTreeMap::new();
        tensors.insert(key.to_string(), Tensor::f32(vec![2, 2], vec![0.0; 4]));
        Checkpoint {
            path: Path::new("x.pkl").into(),
            sha256: String::new(),
            tensors,
        }
    };
    for (key, hint) in [
        ("driven_m_encoder.layers.0.weight", "FaCo"),
        ("netG.model.model.0.weight", "renderer"),
    ] {
        let err = Hparams::infer(&fake(key), None, None).expect_err("not MODA");
        assert!(
            matches!(
                err,
                CheckpointError::WrongKind {
                    expected: "MODA",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(hint), "{err}");
    }
}

#[test]
fn random_tiny_checkpoint_builds_and_runs() {
    let h = Hparams::preset(Preset::Tiny);
    let specs = moda::specs(&h);
    let ck = random_checkpoint(&specs, 7, "moda tiny");
    validate(&ck, &specs, "MODA").expect("random checkpoint matches its specs");
    let n = 8000; // 0.5 s: 24 wav2vec steps
    let waveform = Tensor::f32(
        vec![1, n],
        (0..n).map(|i| (i as f32 * 0.05).sin()).collect(),
    );
    let template = Tensor::f32(
        vec![1, h.vertice_dim],
        (0..h.vertice_dim).map(|i| (i % 7) as f32 * 0.1).collect(),
    );
    // 15 frames is the official count for 8000 samples; 1 frame checks the F = 1 interpolation.
    for frames in [15, 1] {
        let noise = (0..frames * h.hidden)
            .map(|i| ((i % 5) as f32 - 2.0) * 0.3)
            .collect();
        let noise = Tensor::f32(vec![1, frames, h.hidden], noise);
        let outs = run(
            &ck,
            &h,
            &[
                ("waveform", &waveform),
                ("template", &template),
                ("noise", &noise),
            ],
        );
        let dims = [
            h.lip_dim,
            h.eye_dim,
            h.head_dim,
            h.torso_dim,
            h.hidden,
            h.hidden,
        ];
        for ((name, shape, data), d) in outs.iter().zip(dims) {
            assert_eq!(shape, &vec![1, frames, d], "{name}");
            assert!(
                data.iter().all(|x| x.is_finite()),
                "{name} has non-finite values (F = {frames})"
            );
        }
    }
}
