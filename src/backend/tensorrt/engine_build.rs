//! `moda-edge engine build`: an ONNX graph and a recipe (`engines/*.toml`, see
//! [`crate::backend::recipe`]) through the shim's builder into `DIR/NAME.engine` and its
//! sidecar, the file pair the runtime looks for ([`super::engine`]).
//!
//! ```text
//! recipe + --device-class  ─▶ precision, workspace     (--precision overrides)
//! ONNX inputs × recipe     ─▶ one optimization profile (fixed inputs: min = opt = max)
//! Q/DQ nodes in the graph  ─▶ explicit INT8; else --calib FILE ─▶ implicit INT8 from the cache
//! timing cache file        ─▶ read before, written back after (reused across builds)
//! builder                  ─▶ NAME.engine, NAME.engine.json (both written atomically)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::builder::{BuildProgress, BuildSpec, Builder, KeepIn, ProfileSpec};
use super::engine::{dims_x, sidecar_path, write_sidecar, InputShape, ProfileRange, Sidecar};
use super::platform::Platform;
use crate::backend::recipe::{BuildPrecision, DeviceClass, Recipe};
use crate::backend::OnnxModel;
use crate::model::contract::DeclaredDim;

/// Everything one `engine build` needs.
#[derive(Clone, Debug)]
pub struct BuildRequest<'a> {
    pub onnx: &'a Path,
    pub recipe: &'a Recipe,
    pub device_class: Option<DeviceClass>,
    /// Overrides the recipe's (device class's) precision.
    pub precision: Option<BuildPrecision>,
    /// A TensorRT INT8 calibration cache (`moda-edge calibrate`'s `*.calib`) for implicit INT8.
    pub calib: Option<&'a Path>,
    /// Read before the build when it exists, written after.
    pub timing_cache: Option<&'a Path>,
    pub out_dir: &'a Path,
    /// CUDA device ordinal (the GPU the engine is built for).
    pub device: usize,
}

/// What a build wrote.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub engine: PathBuf,
    pub sidecar_path: PathBuf,
    pub sidecar: Sidecar,
    /// The equivalent `trtexec` command line.
    pub trtexec: String,
    /// Bytes of timing cache read before the build (0: none, or no file yet).
    pub timing_cache_read: usize,
    pub seconds: f64,
}

/// Why a build failed; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Onnx(#[from] crate::model::contract::ShapeError),
    #[error("{recipe}: {message}")]
    Recipe { recipe: PathBuf, message: String },
    #[error("{0}")]
    Precision(String),
    #[error("engine build: {0}")]
    NoTensorRt(String),
    #[error("engine build of {onnx}: {message}")]
    Build { onnx: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether the graph holds QuantizeLinear/DequantizeLinear nodes (explicit quantization).
fn has_qdq(bytes: &[u8]) -> bool {
    crate::model::onnx::decode(bytes)
        .ok()
        .and_then(|m| m.graph)
        .is_some_and(|g| {
            g.node
                .iter()
                .any(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
        })
}

/// The recipe's profile per model input, in model order, checked against the declared dims.
fn profiles(model: &OnnxModel, recipe: &Recipe) -> Result<Vec<ProfileSpec>, BuildError> {
    let err = |message: String| BuildError::Recipe {
        recipe: recipe.path.clone(),
        message,
    };
    for p in &recipe.inputs {
        if !model.inputs.iter().any(|d| d.name == p.name) {
            return Err(err(format!(
                "[inputs.{}] is not an input of {} (it has {})",
                p.name,
                model.label,
                model.describe_inputs()
            )));
        }
    }
    model
        .inputs
        .iter()
        .map(|d| {
            let Some(p) = recipe.inputs.iter().find(|p| p.name == d.name) else {
                return Err(err(format!(
                    "no [inputs.{}]; {} has inputs {}",
                    d.name,
                    model.label,
                    model.describe_inputs()
                )));
            };
            let fits = |shape: &[usize]| {
                shape.len() == d.dims.len()
                    && shape.iter().zip(&d.dims).all(|(s, dim)| match dim {
                        DeclaredDim::Fixed(f) => s == f,
                        DeclaredDim::Sym(_) => true,
                    })
            };
            if !(fits(&p.min) && fits(&p.max)) {
                return Err(err(format!(
                    "[inputs.{}] ({}..{}) does not fit the graph's {}",
                    d.name,
                    dims_x(&p.min),
                    dims_x(&p.max),
                    crate::model::contract::dims_string(&d.dims)
                )));
            }
            Ok(ProfileSpec {
                input: d.name.clone(),
                min: p.min.clone(),
                opt: p.opt.clone(),
                max: p.max.clone(),
            })
        })
        .collect()
}

/// The `trtexec` line equivalent to a build.
fn trtexec_line(
    req: &BuildRequest<'_>,
    engine: &Path,
    profiles: &[ProfileSpec],
    spec: &BuildSpec,
    best: bool,
) -> String {
    let list = |pick: fn(&ProfileSpec) -> &Vec<usize>| {
        profiles
            .iter()
            .map(|p| format!("{}:{}", p.input, dims_x(pick(p))))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut line = format!(
        "trtexec --onnx={} --saveEngine={}",
        req.onnx.display(),
        engine.display()
    );
    if profiles.iter().all(|p| p.min == p.max) {
        line += &format!(" --shapes={}", list(|p| &p.opt));
    } else {
        line += &format!(
            " --minShapes={} --optShapes={} --maxShapes={}",
            list(|p| &p.min),
            list(|p| &p.opt),
            list(|p| &p.max)
        );
    }
    if best {
        line += " --best";
    } else {
        if spec.fp16 {
            line += " --fp16";
        }
        if spec.int8 {
            line += " --int8";
        }
    }
    if spec.strongly_typed {
        line += " --stronglyTyped";
    }
    if let Some(calib) = req.calib {
        line += &format!(" --calib={}", calib.display());
    }
    if spec.workspace_bytes > 0 {
        line += &format!(" --memPoolSize=workspace:{}M", spec.workspace_bytes >> 20);
    }
    if !spec.keep.is_empty() {
        let layers: Vec<String> = spec
            .keep
            .iter()
            .map(|(n, k)| {
                let t = match k {
                    KeepIn::Fp32 => "fp32",
                    KeepIn::Fp16 => "fp16",
                };
                format!("{n}:{t}")
            })
            .collect();
        line += &format!(
            " --precisionConstraints=obey --layerPrecisions={}",
            layers.join(",")
        );
    }
    if let Some(cache) = req.timing_cache {
        line += &format!(" --timingCacheFile={}", cache.display());
    }
    line
}

/// Builds the engine of `req.onnx` under `req.recipe` into `req.out_dir`.
///
/// # Errors
/// [`BuildError`]: the ONNX or recipe does not fit, INT8 without Q/DQ or a cache, TensorRT is
/// missing (naming the library), TensorRT refused the build, a file cannot be read or written.
pub fn build_engine(
    req: &BuildRequest<'_>,
    progress: &mut dyn FnMut(BuildProgress<'_>),
) -> Result<BuildReport, BuildError> {
    let model = OnnxModel::load(req.onnx)?;
    let recipe = req.recipe;
    let plan = recipe.plan(req.device_class);
    let precision = req.precision.unwrap_or(plan.precision);
    let profiles = profiles(&model, recipe)?;
    let qdq = has_qdq(model.bytes());
    let calibration_cache = match req.calib {
        Some(path) => std::fs::read(path).map_err(|source| BuildError::Read {
            path: path.into(),
            source,
        })?,
        None => Vec::new(),
    };
    let int8 = matches!(precision, BuildPrecision::Int8 | BuildPrecision::Best);
    if req.calib.is_some() && !int8 {
        return Err(BuildError::Precision(format!(
            "--calib is for INT8 builds, but the precision is {}; add --precision int8",
            precision.name()
        )));
    }
    if precision == BuildPrecision::Int8 && !qdq && req.calib.is_none() {
        return Err(BuildError::Precision(format!(
            "{} has no Q/DQ nodes and no --calib FILE was given: INT8 needs the `*.int8.onnx` \
             graph or the `*.calib` cache of `moda-edge calibrate`",
            req.onnx.display()
        )));
    }
    if recipe.strongly_typed && !qdq {
        return Err(BuildError::Recipe {
            recipe: recipe.path.clone(),
            message: format!(
                "strongly_typed = true is for Q/DQ graphs, and {} has no Q/DQ nodes",
                req.onnx.display()
            ),
        });
    }
    let keep = recipe
        .keep_fp32
        .iter()
        .map(|n| (n.clone(), KeepIn::Fp32))
        .chain(recipe.keep_fp16.iter().map(|n| (n.clone(), KeepIn::Fp16)))
        .collect();
    let timing_cache = match req.timing_cache {
        Some(path) if path.exists() => std::fs::read(path).map_err(|source| BuildError::Read {
            path: path.into(),
            source,
        })?,
        _ => Vec::new(),
    };
    let strongly = recipe.strongly_typed;
    let spec = BuildSpec {
        fp16: !strongly && precision != BuildPrecision::Fp32,
        int8: !strongly && int8,
        strongly_typed: strongly,
        workspace_bytes: plan.workspace_mib << 20,
        profiles: profiles.clone(),
        keep,
        timing_cache,
        calibration_cache,
    };
    let stem = req
        .onnx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let engine_path = req.out_dir.join(format!("{stem}.engine"));
    let trtexec = trtexec_line(
        req,
        &engine_path,
        &profiles,
        &spec,
        precision == BuildPrecision::Best,
    );

    let platform = Platform::open(req.device).map_err(BuildError::NoTensorRt)?;
    let mut builder = Builder::create().map_err(|e| BuildError::NoTensorRt(e.message))?;
    let started = Instant::now();
    let built = builder
        .build(model.bytes(), &spec, progress)
        .map_err(|e| BuildError::Build {
            onnx: req.onnx.into(),
            message: e.message,
        })?;
    let seconds = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(req.out_dir).map_err(|source| BuildError::Write {
        path: req.out_dir.into(),
        source,
    })?;
    crate::util::fsx::write_atomic(&engine_path, &built.engine).map_err(|source| {
        BuildError::Write {
            path: engine_path.clone(),
            source,
        }
    })?;
    if let Some(path) = req.timing_cache {
        crate::util::fsx::write_atomic(path, &built.timing_cache).map_err(|source| {
            BuildError::Write {
                path: path.into(),
                source,
            }
        })?;
    }
    let (major, minor) = platform.compute_capability();
    let sidecar = Sidecar {
        tensorrt_version: builder.version().into(),
        gpu_name: platform.gpu_name().into(),
        compute_capability: [major, minor],
        // `best` may run any layer in INT8: the engine counts as an INT8 one.
        precision: match precision {
            BuildPrecision::Fp32 => "fp32",
            BuildPrecision::Fp16 => "fp16",
            BuildPrecision::Int8 | BuildPrecision::Best => "int8",
        }
        .into(),
        input_shapes: profiles
            .iter()
            .map(|p| InputShape {
                name: p.input.clone(),
                shape: p.opt.clone(),
            })
            .collect(),
        onnx_sha256: model.sha256().into(),
        built_at_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        profiles: profiles
            .iter()
            .filter(|p| p.min != p.max)
            .map(|p| ProfileRange {
                name: p.input.clone(),
                min: p.min.clone(),
                max: p.max.clone(),
            })
            .collect(),
    };
    let sidecar_file = sidecar_path(&engine_path);
    write_sidecar(&sidecar_file, &sidecar).map_err(|e| BuildError::Build {
        onnx: req.onnx.into(),
        message: e.to_string(),
    })?;
    Ok(BuildReport {
        engine: engine_path,
        sidecar_path: sidecar_file,
        sidecar,
        trtexec,
        timing_cache_read: spec.timing_cache.len(),
        seconds,
    })
}
