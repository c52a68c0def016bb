//! One golden-file conformance suite for every backend: each official-format checkpoint of the
//! golden set is imported, prepared on the backend under test and run on the recorded inputs,
//! and every output is compared with what the official PyTorch code produced.
//!
//! | case | inputs | outputs | bound (max abs) |
//! |---|---|---|---|
//! | `moda_mel` | `input_mel`, `input_subject`, `noise_eps` (and zero noise) | `out_*` (and `out_zero_noise_*`) | [`MODA_BOUND`] |
//! | `moda_w2v_tiny` | `input_waveform`, `input_subject`, `noise_eps` (and zero noise) | as above | [`MODA_BOUND`] |
//! | `faco` | `input_lip`, `input_eye`, `input_ref` | `out_vertices` | [`FACO_BOUND`] |
//! | `render_small` | `input_mesh`, `input_example`, `input_pe` | `out_image` | [`RENDERER_BOUND`] |
//!
//! The bounds are those the golden set recommends for float32 arithmetic with another summation
//! order: its float32 outputs differ from a float64 evaluation of the same network by up to
//! about 6e-5 for MODA (values of order 1), a few 1e-6 for FaCo and 2e-4 for the renderer at
//! 512², so a faithful float32 implementation agrees within 1e-4, 1e-4 and 1e-3. A missing
//! noise input shows as about 0.1, a wrong layer as 1e-2 or more.
//!
//! The suite is generic over [`Backend`]: the tract backend runs it in `tests/conformance.rs`,
//! natively and under qemu; every other backend runs the same function.

use std::path::{Path, PathBuf};

use super::{Backend, BackendError, OnnxModel, PrepareOptions, Prepared, Session};
use crate::model::import::{import, ImportOptions, Network};
use crate::model::{CheckpointError, Tensor};
use crate::util::npy;

/// MODA outputs (lip, eye, head, torso, mu, logvar).
pub const MODA_BOUND: f64 = 1e-4;
/// FaCo-Net's mesh residual.
pub const FACO_BOUND: f64 = 1e-4;
/// The renderer's image in [-1, 1].
pub const RENDERER_BOUND: f64 = 1e-3;

/// One compared output.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Golden folder and variant, e.g. `moda_mel (zero noise)`.
    pub case: String,
    /// Output tensor name.
    pub output: String,
    pub max_abs: f64,
    pub bound: f64,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.max_abs <= self.bound
    }
}

/// Why the suite could not run (a failed comparison is a [`Comparison`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("golden file {} is missing", path.display())]
    Missing { path: PathBuf },
    #[error(transparent)]
    Npy(#[from] npy::NpyError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("golden {case}: {detail}")]
    Golden { case: String, detail: String },
}

struct Golden {
    dir: PathBuf,
    case: &'static str,
}

impl Golden {
    fn file(&self, name: &str) -> Result<PathBuf, ConformanceError> {
        let path = self.dir.join(self.case).join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ConformanceError::Missing { path })
        }
    }

    fn npy(&self, name: &str) -> Result<Tensor, ConformanceError> {
        let t = npy::read(&self.file(name)?)?;
        Ok(Tensor::f32(t.shape.clone(), t.to_f32_vec()))
    }

    fn bad(&self, detail: String) -> ConformanceError {
        ConformanceError::Golden {
            case: self.case.into(),
            detail,
        }
    }
}

/// Runs every golden case on `backend`; `golden` is the `golden/` folder of the reference set.
/// `progress` hears one line per case.
///
/// # Errors
/// A missing or unreadable golden file, a checkpoint that does not import, or a backend that
/// cannot prepare or run a graph.
pub fn conformance<B: Backend>(
    backend: &B,
    golden: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Comparison>, ConformanceError> {
    let mut out = Vec::new();
    for (case, audio, file) in [
        ("moda_mel", "mel", "input_mel.npy"),
        ("moda_w2v_tiny", "waveform", "input_waveform.npy"),
    ] {
        progress(case);
        let g = Golden {
            dir: golden.into(),
            case,
        };
        out.extend(moda_case(backend, &g, audio, file)?);
    }
    progress("faco");
    let g = Golden {
        dir: golden.into(),
        case: "faco",
    };
    let model = load_model(&g, Network::Faco, ImportOptions::default())?;
    let inputs = [
        ("lip", g.npy("input_lip.npy")?),
        ("eye", g.npy("input_eye.npy")?),
        ("template", g.npy("input_ref.npy")?),
    ];
    let outs = run(backend, &model, &inputs)?;
    out.push(compare(
        &g,
        "faco",
        &outs,
        "mesh",
        "out_vertices.npy",
        FACO_BOUND,
    )?);

    progress("render_small");
    let g = Golden {
        dir: golden.into(),
        case: "render_small",
    };
    let model = load_model(&g, Network::Renderer, ImportOptions::default())?;
    let pe = g.npy("input_pe.npy")?;
    if pe.len() != 13 {
        return Err(g.bad(format!("input_pe.npy has {} values, expected 13", pe.len())));
    }
    let inputs = [
        ("mesh_image", g.npy("input_mesh.npy")?),
        ("reference", g.npy("input_example.npy")?),
        ("time_code", Tensor::f32(vec![1, 13], pe.to_f32_vec())),
    ];
    let outs = run(backend, &model, &inputs)?;
    out.push(compare(
        &g,
        "render_small",
        &outs,
        "image",
        "out_image.npy",
        RENDERER_BOUND,
    )?);
    Ok(out)
}

fn moda_case<B: Backend>(
    backend: &B,
    g: &Golden,
    audio: &str,
    audio_file: &str,
) -> Result<Vec<Comparison>, ConformanceError> {
    let opts = ImportOptions {
        wav2vec_heads: wav2vec_heads(g)?,
        wav2vec_strides: None,
    };
    let model = load_model(g, Network::Moda, opts)?;
    let noise = g.npy("noise_eps.npy")?;
    let zero = Tensor::f32(noise.shape.clone(), vec![0.0; noise.len()]);
    let mut out = Vec::new();
    for (noise, prefix, label) in [
        (noise, "out_", g.case.to_string()),
        (zero, "out_zero_noise_", format!("{} (zero noise)", g.case)),
    ] {
        let inputs = [
            (audio, g.npy(audio_file)?),
            ("template", g.npy("input_subject.npy")?),
            ("noise", noise),
        ];
        let outs = run(backend, &model, &inputs)?;
        for name in ["lip", "eye", "head", "torso", "mu", "logvar"] {
            let file = format!("{prefix}{name}.npy");
            // mu and logvar do not depend on the noise: there is no zero-noise file for them.
            if prefix == "out_zero_noise_" && matches!(name, "mu" | "logvar") {
                continue;
            }
            out.push(compare(g, &label, &outs, name, &file, MODA_BOUND)?);
        }
    }
    Ok(out)
}

/// Head count of a tiny wav2vec encoder (not recoverable from its checkpoint) from `meta.json`.
fn wav2vec_heads(g: &Golden) -> Result<Option<usize>, ConformanceError> {
    let Ok(path) = g.file("meta.json") else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| g.bad(format!("cannot read meta.json ({e})")))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| g.bad(format!("meta.json is not JSON ({e})")))?;
    Ok(meta["wav2vec2_config"]["num_attention_heads"]
        .as_u64()
        .map(|h| h as usize))
}

fn load_model(
    g: &Golden,
    network: Network,
    opts: ImportOptions,
) -> Result<OnnxModel, ConformanceError> {
    let proto = import(network, &g.file("checkpoint.pkl")?, &opts)?;
    Ok(OnnxModel::from_proto(
        format!("{} ({})", g.case, network.name()),
        &proto,
    ))
}

/// Prepares `model` for the inputs' shapes, runs it once and returns the float32 outputs.
fn run<B: Backend>(
    backend: &B,
    model: &OnnxModel,
    inputs: &[(&str, Tensor)],
) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
    let shapes: Vec<(&str, Vec<usize>)> =
        inputs.iter().map(|(n, t)| (*n, t.shape.clone())).collect();
    let prepared = backend.prepare(model, &PrepareOptions::shapes(&shapes))?;
    let mut session = prepared.session()?;
    for (name, t) in inputs {
        let i = prepared.input_index(name)?;
        session.input(i)?.copy_from_f32(&t.to_f32_vec());
    }
    session.run()?;
    prepared
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut v = vec![0f32; d.len()];
            session.output(i)?.copy_to_f32(&mut v);
            Ok((d.name.clone(), v))
        })
        .collect()
}

fn compare(
    g: &Golden,
    case: &str,
    outs: &[(String, Vec<f32>)],
    name: &str,
    file: &str,
    bound: f64,
) -> Result<Comparison, ConformanceError> {
    let want = g.npy(file)?;
    let got = outs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| g.bad(format!("the graph has no output `{name}`")))?;
    let want = want.as_f32().unwrap_or_default();
    if got.len() != want.len() {
        return Err(g.bad(format!(
            "output `{name}` has {} values, {file} {}",
            got.len(),
            want.len()
        )));
    }
    let max_abs = got
        .iter()
        .zip(want)
        // A NaN anywhere counts as an infinite error (f64::max would skip it).
        .map(|(a, b)| f64::from((a - b).abs()))
        .map(|d| if d.is_nan() { f64::INFINITY } else { d })
        .fold(0.0, f64::max);
    Ok(Comparison {
        case: case.into(),
        output: name.into(),
        max_abs,
        bound,
    })
}
