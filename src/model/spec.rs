//! The parameter list of a network variant: every state_dict key with its shape, dtype and how
//! to initialise it. Import checks a checkpoint against it (strictly: missing, unexpected,
//! wrong shape or dtype is an error, never silently kept random weights as the official loader
//! does); `models init` fills it with seeded random values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::checkpoint::{shape_string, Checkpoint, CheckpointError};
use super::tensor::{DType, Tensor, TensorData};

/// How `models init` fills a parameter.
#[derive(Clone, Debug)]
pub enum Init {
    /// Linear or conv weight: uniform in ±1/sqrt(fan_in), scaled by `gain`.
    Weight { fan_in: usize, gain: f32 },
    /// Bias: normal, standard deviation 0.05.
    Bias,
    /// Norm scale: uniform in 0.8..1.2.
    NormScale,
    /// Norm shift and BatchNorm running mean: normal, standard deviation 0.1.
    NormShift,
    /// BatchNorm running variance: uniform in 0.5..1.5.
    RunningVar,
    /// Weight-norm magnitude `g`: the norm of the direction, times uniform 0.5..1.5.
    WeightNormG,
    /// A buffer whose value is fixed by the architecture (masks, sinusoid tables, counters).
    Fixed(Tensor),
}

/// One expected state_dict entry.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub key: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub init: Init,
}

impl ParamSpec {
    pub fn new(key: impl Into<String>, shape: &[usize], init: Init) -> ParamSpec {
        let dtype = match &init {
            Init::Fixed(t) => t.dtype(),
            _ => DType::F32,
        };
        ParamSpec {
            key: key.into(),
            shape: shape.to_vec(),
            dtype,
            init,
        }
    }
}

/// Checks `ckpt` against `specs`: every spec key present with its shape and dtype, and no
/// other key.
///
/// # Errors
/// The first problem found, in spec order (missing / shape / dtype), then unexpected keys.
pub fn validate(
    ckpt: &Checkpoint,
    specs: &[ParamSpec],
    kind: &'static str,
) -> Result<(), CheckpointError> {
    let path = || ckpt.path.clone();
    for spec in specs {
        let Some(t) = ckpt.tensors.get(&spec.key) else {
            return Err(CheckpointError::MissingKey {
                path: path(),
                key: spec.key.clone(),
                shape: shape_string(&spec.shape),
                dtype: spec.dtype,
            });
        };
        if t.shape != spec.shape {
            return Err(CheckpointError::ShapeMismatch {
                path: path(),
                key: spec.key.clone(),
                expected: shape_string(&spec.shape),
                found: shape_string(&t.shape),
            });
        }
        if t.dtype() != spec.dtype {
            return Err(CheckpointError::DTypeMismatch {
                path: path(),
                key: spec.key.clone(),
                expected: spec.dtype,
                found: t.dtype(),
            });
        }
    }
    let known: std::collections::HashSet<&str> = specs.iter().map(|s| s.key.as_str()).collect();
    if let Some((key, t)) = ckpt
        .tensors
        .iter()
        .find(|(k, _)| !known.contains(k.as_str()))
    {
        return Err(CheckpointError::UnexpectedKey {
            path: path(),
            key: key.clone(),
            shape: shape_string(&t.shape),
            kind,
        });
    }
    Ok(())
}

/// Fills `specs` with seeded random values into a checkpoint held in memory.
///
/// Weight-norm magnitudes are derived from the matching `…weight_v` direction, so their spec
/// must come after it.
pub fn random_checkpoint(specs: &[ParamSpec], seed: u64, label: &str) -> Checkpoint {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for spec in specs {
        let n: usize = spec.shape.iter().product();
        let tensor = match &spec.init {
            Init::Fixed(t) => t.clone(),
            Init::Weight { fan_in, gain } => {
                let bound = gain / (*fan_in as f32).sqrt();
                let dist = Uniform::new_inclusive(-bound, bound).expect("finite bound");
                Tensor::f32(
                    spec.shape.clone(),
                    (0..n).map(|_| dist.sample(&mut rng)).collect(),
                )
            }
            Init::Bias => normal(&mut rng, &spec.shape, 0.0, 0.05),
            Init::NormScale => uniform(&mut rng, &spec.shape, 0.8, 1.2),
            Init::NormShift => normal(&mut rng, &spec.shape, 0.0, 0.1),
            Init::RunningVar => uniform(&mut rng, &spec.shape, 0.5, 1.5),
            Init::WeightNormG => {
                let v_key = spec
                    .key
                    .replace("weight_g", "weight_v")
                    .replace("original0", "original1");
                let v = tensors
                    .get(&v_key)
                    .and_then(Tensor::as_f32)
                    .expect("weight_v precedes weight_g");
                let norms = weight_norm_dim2(v, &tensors[&v_key].shape);
                let data = norms
                    .iter()
                    .map(|&x| x * rng.random_range(0.5f32..1.5))
                    .collect();
                Tensor::f32(spec.shape.clone(), data)
            }
        };
        tensors.insert(spec.key.clone(), tensor);
    }
    Checkpoint {
        path: PathBuf::from(format!("<{label} seed {seed}>")),
        sha256: String::new(),
        tensors,
    }
}

/// ‖v‖ over dims 0 and 1 for each position of dim 2 (`torch.nn.utils.weight_norm(dim=2)`).
pub fn weight_norm_dim2(v: &[f32], shape: &[usize]) -> Vec<f32> {
    let (a, b, k) = (shape[0], shape[1], shape[2]);
    let mut acc = vec![0f64; k];
    for i in 0..a * b {
        for (t, s) in acc.iter_mut().enumerate() {
            let x = v[i * k + t] as f64;
            *s += x * x;
        }
    }
    acc.into_iter().map(|s| s.sqrt() as f32).collect()
}

fn normal(rng: &mut ChaCha8Rng, shape: &[usize], mean: f32, std: f32) -> Tensor {
    let dist = Normal::new(mean, std).expect("finite std");
    let n = shape.iter().product();
    Tensor::f32(shape.to_vec(), (0..n).map(|_| dist.sample(rng)).collect())
}

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(lo..hi)).collect(),
    )
}

/// An int64 scalar buffer such as BatchNorm's `num_batches_tracked`.
pub fn counter() -> Init {
    Init::Fixed(Tensor {
        shape: vec![],
        data: TensorData::I64(vec![0]),
    })
}
