//! One network's calibration: statistics over the set, the three ranges per tensor, the Q/DQ
//! graph, the calibration cache; and the `calibrate` command's directory layout.
//!
//! A calibration set directory holds one folder per network and one folder per sample, with
//! the network's inputs as `.npy` files named after the graph inputs:
//! `SET/renderer/0003/mesh_image.npy`. (`moda-edge calibration make` writes that layout.)

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::cache::CalibrationCache;
use super::collect::{collect, Sample};
use super::plan::{plan, KeepRules};
use super::qdq;
use super::QuantError;
use crate::face::avatar::Avatar;
use crate::model::onnx::{self, pb::ModelProto};
use crate::model::Tensor;
use crate::util::npy;

/// How an activation's range is chosen for the Q/DQ graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Max,
    Percentile,
    Entropy,
}

/// Settings of one calibration.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// The range the Q/DQ graph uses.
    pub method: Method,
    /// The percentile of |x| of the `percentile` method (e.g. 99.99).
    pub percentile: f64,
    /// Layers kept in float.
    pub keep: KeepRules,
}

impl Default for CalibrateOptions {
    fn default() -> CalibrateOptions {
        CalibrateOptions {
            method: Method::Entropy,
            percentile: 99.99,
            keep: KeepRules::default(),
        }
    }
}

/// The ranges (amax) of one tensor under each method.
#[derive(Clone, Debug, Serialize)]
pub struct TensorRange {
    pub name: String,
    pub max: f32,
    pub percentile: f32,
    pub entropy: f32,
    /// The one the Q/DQ graph uses.
    pub chosen: f32,
}

/// The JSON report of one network.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    pub network: String,
    pub samples: usize,
    pub method: Method,
    pub percentile: f64,
    pub quantized_layers: usize,
    pub kept_in_float: Vec<String>,
    pub tensors: Vec<TensorRange>,
}

/// What one calibration produces.
pub struct Calibrated {
    pub report: NetworkReport,
    pub qdq: ModelProto,
    pub cache: CalibrationCache,
}

/// Calibrates `model` (named `network` in the report) over `samples`.
///
/// # Errors
/// [`QuantError`] from running the graph or writing the Q/DQ graph.
pub fn calibrate(
    network: &str,
    model: &ModelProto,
    samples: &[Sample],
    opts: &CalibrateOptions,
) -> Result<Calibrated, QuantError> {
    if samples.is_empty() {
        return Err(QuantError::Sample(format!("no samples for {network}")));
    }
    let plan = plan(model, &opts.keep);
    let names = plan.calibrated_tensors();
    let stats = collect(model, &names, samples)?;
    let tensors: Vec<TensorRange> = names
        .iter()
        .zip(&stats)
        .map(|(name, s)| {
            let (max, percentile, entropy) = (s.max(), s.percentile(opts.percentile), s.entropy());
            TensorRange {
                name: name.clone(),
                max,
                percentile,
                entropy,
                chosen: match opts.method {
                    Method::Max => max,
                    Method::Percentile => percentile,
                    Method::Entropy => entropy,
                },
            }
        })
        .collect();
    let chosen: HashMap<String, f32> = tensors.iter().map(|t| (t.name.clone(), t.chosen)).collect();
    let qdq = qdq::write(model, &plan, &chosen)?;
    let cache = CalibrationCache::new(
        tensors
            .iter()
            .map(|t| (t.name.clone(), qdq::scale_of(t.entropy)))
            .collect(),
    );
    let report = NetworkReport {
        network: network.to_string(),
        samples: samples.len(),
        method: opts.method,
        percentile: opts.percentile,
        quantized_layers: plan.layers.iter().filter(|l| !l.kept).count(),
        kept_in_float: plan.kept_nodes.clone(),
        tensors,
    };
    Ok(Calibrated { report, qdq, cache })
}

/// The samples of `network` in a calibration set directory, in name order.
///
/// # Errors
/// [`QuantError::File`] naming the folder or `.npy` file that is missing or unreadable.
pub fn read_set(set: &Path, network: &str) -> Result<Vec<Sample>, QuantError> {
    let dir = set.join(network);
    let file_err = |path: &Path, detail: String| QuantError::File {
        path: path.to_path_buf(),
        detail,
    };
    let mut folders: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| file_err(&dir, format!("cannot read the {network} samples ({e}); expected SET/{network}/<sample>/<input>.npy")))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut samples = Vec::new();
    for folder in folders {
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|e| file_err(&folder, e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .collect();
        files.sort();
        let mut sample = Vec::new();
        for f in files {
            let t = npy::read_finite(&f).map_err(|e| file_err(&f, e.to_string()))?;
            let name = f
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            sample.push((name, t));
        }
        samples.push(sample);
    }
    if samples.is_empty() {
        return Err(file_err(
            &dir,
            format!("no samples: expected SET/{network}/<sample>/<input>.npy"),
        ));
    }
    Ok(samples)
}

/// What `calibrate_dir` wrote for one network.
pub struct Written {
    pub network: String,
    pub samples: usize,
    pub tensors: usize,
    pub quantized_layers: usize,
}

/// Puts `avatar`'s own subject into every sample: its `template` (MODA, FaCo) and its
/// `reference` picture (renderer, at the sample's `mesh_image` size), so the ranges are those
/// of the person the engines will render.
///
/// # Errors
/// [`QuantError::Sample`] when the avatar's picture cannot be brought to a sample's size.
pub fn with_avatar(samples: &mut [Sample], avatar: &Avatar) -> Result<(), QuantError> {
    let template = Tensor::f32(
        vec![1, avatar.template.len()],
        avatar.template.iter().map(|&v| v as f32).collect(),
    );
    let canvas = avatar.config.canvas;
    for (k, sample) in samples.iter_mut().enumerate() {
        let size = sample
            .iter()
            .find(|(n, _)| n == "mesh_image")
            .map(|(_, t)| t.shape.clone());
        for (name, t) in sample.iter_mut() {
            if name == "template" {
                *t = template.clone();
            } else if name == "reference" {
                let Some(shape) = &size else { continue };
                let side = shape[3];
                let rgb = if side == canvas {
                    avatar.reference.clone()
                } else if side * 2 == canvas {
                    let mut small = vec![0u8; side * side * 3];
                    crate::draw::convert::shrink_2x(&avatar.reference, canvas, canvas, &mut small)
                        .map_err(|e| QuantError::Sample(e.to_string()))?;
                    small
                } else {
                    return Err(QuantError::Sample(format!(
                        "sample {k}: mesh_image is {side}² but the avatar's canvas is {canvas}²; expected {canvas} or {}",
                        canvas / 2
                    )));
                };
                let mut chw = vec![0f32; side * side * 3];
                crate::draw::convert::u8_hwc_to_unit_chw(&rgb, side, side, &mut chw)
                    .map_err(|e| QuantError::Sample(e.to_string()))?;
                *t = Tensor::f32(vec![1, 3, side, side], chw);
            }
        }
    }
    Ok(())
}

/// FaCo's samples from MODA (`moda_path`) run on every speech sample of `set`: its `lip` and
/// `eye` outputs with the sample's `template`, FaCo's three inputs. The runtime smooths MODA's
/// streams before FaCo, which narrows them a little; these unsmoothed ones bound them.
///
/// # Errors
/// The MODA model or a sample that does not load or run.
pub fn faco_samples_from_moda(moda_path: &Path, set: &Path) -> Result<Vec<Sample>, QuantError> {
    use crate::backend::tract::TractBackend;
    use crate::backend::{run_once, OnnxModel};
    let model = OnnxModel::load(moda_path).map_err(|e| QuantError::File {
        path: moda_path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let backend = TractBackend::default();
    let mut samples = Vec::new();
    for (i, sample) in read_set(set, "moda")?.into_iter().enumerate() {
        let outputs = run_once(&backend, &model, &sample).map_err(|e| {
            QuantError::Sample(format!("MODA on speech sample {i} (for FaCo): {e}"))
        })?;
        let mut faco = Vec::new();
        for name in ["lip", "eye"] {
            let t = outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| QuantError::Sample(format!("MODA has no output `{name}`")))?;
            faco.push((name.to_string(), t));
        }
        let template = sample
            .iter()
            .find(|(n, _)| n == "template")
            .map(|(_, t)| t.clone())
            .ok_or_else(|| QuantError::Sample(format!("speech sample {i} has no template")))?;
        faco.push(("template".to_string(), template));
        samples.push(faco);
    }
    Ok(samples)
}

/// `moda-edge calibrate`: for every `NAME.onnx` of `models` that has samples in `set`
/// (`moda`, `faco`, `renderer`; FaCo without samples of its own takes MODA's outputs on the
/// speech samples, [`faco_samples_from_moda`]), writes `NAME.int8.onnx`, `NAME.calib` and
/// `NAME.calibration.json` to `out`, and `NAME.fp16.onnx` (the float16 graph, for the FP16
/// fidelity check) where [`super::fp16::to_float16`] takes the graph.
///
/// # Errors
/// [`QuantError`] naming the file or tensor at fault.
pub fn calibrate_dir(
    models: &Path,
    set: &Path,
    avatar: Option<&Avatar>,
    out: &Path,
    opts: &CalibrateOptions,
) -> Result<Vec<Written>, QuantError> {
    let io = |path: &Path, e: std::io::Error| QuantError::File {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut written = Vec::new();
    for network in ["moda", "faco", "renderer"] {
        let model_path = models.join(format!("{network}.onnx"));
        let moda_path = models.join("moda.onnx");
        // FaCo reads what MODA writes: without samples of its own, it is calibrated on MODA's
        // outputs for the set's speech.
        let from_moda = network == "faco"
            && !set.join(network).is_dir()
            && set.join("moda").is_dir()
            && moda_path.exists();
        if !model_path.exists() || !(set.join(network).is_dir() || from_moda) {
            continue;
        }
        let bytes = std::fs::read(&model_path).map_err(|e| io(&model_path, e))?;
        let model = onnx::decode(&bytes).map_err(|e| QuantError::File {
            path: model_path.clone(),
            detail: format!("not an ONNX model ({e})"),
        })?;
        let mut samples = if from_moda {
            faco_samples_from_moda(&moda_path, set)?
        } else {
            read_set(set, network)?
        };
        if let Some(avatar) = avatar {
            with_avatar(&mut samples, avatar)?;
        }
        log::info!("calibrate {network}: {} samples", samples.len());
        let c = calibrate(network, &model, &samples, opts)?;
        let write = |name: String, data: Vec<u8>| {
            let p = out.join(name);
            std::fs::write(&p, data).map_err(|e| io(&p, e))
        };
        write(format!("{network}.int8.onnx"), onnx::encode(&c.qdq))?;
        write(format!("{network}.calib"), c.cache.to_text().into_bytes())?;
        // The float16 graph for the FP16 fidelity check, where the graph allows one.
        match super::fp16::to_float16(&model) {
            Ok(half) => write(format!("{network}.fp16.onnx"), onnx::encode(&half))?,
            Err(e) => log::info!("{network}: no float16 graph ({e})"),
        }
        let json =
            serde_json::to_vec_pretty(&c.report).map_err(|e| QuantError::Graph(e.to_string()))?;
        write(format!("{network}.calibration.json"), json)?;
        written.push(Written {
            network: network.to_string(),
            samples: samples.len(),
            tensors: c.report.tensors.len(),
            quantized_layers: c.report.quantized_layers,
        });
    }
    if written.is_empty() {
        return Err(QuantError::File {
            path: set.to_path_buf(),
            detail: format!(
                "no network to calibrate: expected SET/<moda|faco|renderer>/ folders matching {}/<network>.onnx",
                models.display()
            ),
        });
    }
    Ok(written)
}
