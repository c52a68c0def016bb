//! Where a TensorRT engine is found and whether it fits, checked before TensorRT sees it.
//!
//! An engine sits next to the ONNX file it was built from, with a JSON sidecar that says what
//! it was built for:
//!
//! ```text
//! models/renderer.onnx
//! models/renderer.engine        serialized engine (trtexec --saveEngine, or the fake's)
//! models/renderer.engine.json   Sidecar: TensorRT version, GPU, precision, shapes, ONNX sha256
//! ```
//!
//! A missing engine, or one built by another TensorRT version, for another GPU, other input
//! shapes, another precision or another ONNX file, is refused with one line that says which,
//! and the `trtexec` command that builds the right one. The sidecar functions are public: the
//! engine-build tool writes the sidecar after building.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::{Precision, TensorDesc};

/// Where a backend looks for the engine of a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EngineLookup {
    /// Beside the ONNX file: the model's label is its path, `x.onnx` → `x.engine`.
    #[default]
    BesideOnnx,
    /// In this folder, named after the ONNX file's stem (or after the label of a graph built in
    /// memory, characters other than letters, digits, `-`, `_` and `.` replaced by `_`).
    Dir(PathBuf),
}

/// The files of one model's engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineFiles {
    /// The ONNX file the engine is built from (the model's label).
    pub onnx: PathBuf,
    pub engine: PathBuf,
    /// `<engine>.json`.
    pub sidecar: PathBuf,
}

impl EngineLookup {
    /// The engine files for the model labelled `label`.
    pub fn files(&self, label: &str) -> EngineFiles {
        let onnx = PathBuf::from(label);
        let engine = match self {
            EngineLookup::BesideOnnx => onnx.with_extension("engine"),
            EngineLookup::Dir(dir) => {
                let stem = onnx
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into());
                let safe: String = stem
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                dir.join(format!("{safe}.engine"))
            }
        };
        EngineFiles {
            sidecar: sidecar_path(&engine),
            onnx,
            engine,
        }
    }
}

/// `renderer.engine` → `renderer.engine.json`.
pub fn sidecar_path(engine: &Path) -> PathBuf {
    let mut name = engine.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// One input's shape, as the engine was built for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What an engine was built for (`<engine>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The TensorRT library that built it, `10.3.0`.
    pub tensorrt_version: String,
    /// The GPU it was built on, by name and compute capability (major, minor).
    pub gpu_name: String,
    pub compute_capability: [u32; 2],
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    /// Every input's shape, in model order.
    pub input_shapes: Vec<InputShape>,
    /// sha256 of the source ONNX file, lower-case hex.
    pub onnx_sha256: String,
    /// When it was built, in seconds since the Unix epoch.
    pub built_at_unix_s: u64,
    /// The inputs built with an optimization profile (`input_shapes` then holds their `opt`
    /// shapes): the engine accepts any shape from `min` to `max` for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<ProfileRange>,
}

/// The shapes an engine built with a profile accepts for one input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRange {
    pub name: String,
    pub min: Vec<usize>,
    pub max: Vec<usize>,
}

impl ProfileRange {
    /// Whether `shape` lies within the range, dimension by dimension.
    pub fn admits(&self, shape: &[usize]) -> bool {
        shape.len() == self.min.len()
            && self.max.len() == self.min.len()
            && shape
                .iter()
                .zip(self.min.iter().zip(&self.max))
                .all(|(s, (lo, hi))| lo <= s && s <= hi)
    }
}

/// What the engine must have been built for: this machine, this model, these shapes.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub tensorrt_version: &'a str,
    pub gpu_name: &'a str,
    pub compute_capability: (u32, u32),
    pub precision: Precision,
    /// Whether an engine of another precision is refused. `false` when nobody asked for one
    /// (the pipelines' default float32 request): the engine is used as it was built.
    pub exact_precision: bool,
    /// The inputs with their concrete shapes, in model order.
    pub inputs: &'a [TensorDesc],
    pub onnx_sha256: &'a str,
}

impl Sidecar {
    /// The sidecar of an engine just built for `target`.
    pub fn for_build(target: &Target<'_>, built_at: SystemTime) -> Sidecar {
        Sidecar {
            tensorrt_version: target.tensorrt_version.into(),
            gpu_name: target.gpu_name.into(),
            compute_capability: [target.compute_capability.0, target.compute_capability.1],
            precision: target.precision.name().into(),
            input_shapes: target
                .inputs
                .iter()
                .map(|d| InputShape {
                    name: d.name.clone(),
                    shape: d.shape.clone(),
                })
                .collect(),
            onnx_sha256: target.onnx_sha256.into(),
            built_at_unix_s: built_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            profiles: Vec::new(),
        }
    }
}

/// Why an engine cannot be used. Every message is one line ending with the command that
/// builds the right engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no TensorRT engine {engine} for {onnx}; build it: {command}")]
    Missing {
        engine: PathBuf,
        onnx: PathBuf,
        command: String,
    },
    #[error("{sidecar} is unreadable ({detail}); rebuild the engine: {command}")]
    BadSidecar {
        sidecar: PathBuf,
        detail: String,
        command: String,
    },
    #[error("{engine} was built by TensorRT {found}, this machine has TensorRT {expected}; rebuild it: {command}")]
    Version {
        engine: PathBuf,
        found: String,
        expected: String,
        command: String,
    },
    #[error("{engine} was built for GPU {found}, this machine has {expected}; rebuild it here: {command}")]
    Gpu {
        engine: PathBuf,
        found: String,
        expected: String,
        command: String,
    },
    #[error(
        "{engine} was built for input shapes {found}, expected {expected}; rebuild it: {command}"
    )]
    Shapes {
        engine: PathBuf,
        found: String,
        expected: String,
        command: String,
    },
    #[error(
        "{engine} was built for {found} precision, expected {expected}; rebuild it: {command}"
    )]
    Precision {
        engine: PathBuf,
        found: String,
        expected: String,
        command: String,
    },
    #[error("{engine} was built from another {onnx} (sha256 {found}, the file now has {expected}); rebuild it: {command}")]
    OnnxHash {
        engine: PathBuf,
        onnx: PathBuf,
        found: String,
        expected: String,
        command: String,
    },
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

/// Reads a sidecar.
///
/// # Errors
/// [`EngineError::Read`] for an unreadable file, [`EngineError::BadSidecar`] for one that is
/// not a sidecar (its `command` is empty: the caller knows the model).
pub fn read_sidecar(path: &Path) -> Result<Sidecar, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EngineError::BadSidecar {
        sidecar: path.into(),
        detail: e.to_string(),
        command: String::new(),
    })
}

/// Writes a sidecar (atomically: a reader sees the old file or the new one).
///
/// # Errors
/// [`EngineError::Write`].
pub fn write_sidecar(path: &Path, sidecar: &Sidecar) -> Result<(), EngineError> {
    let mut json = serde_json::to_string_pretty(sidecar).unwrap_or_default();
    json.push('\n');
    crate::util::fsx::write_atomic(path, json.as_bytes()).map_err(|source| EngineError::Write {
        path: path.into(),
        source,
    })
}

/// Input shapes as trtexec writes them: `mesh_image:1x3x256x256,time_code:1x13`.
fn shapes_arg<'a>(shapes: impl Iterator<Item = (&'a str, &'a [usize])>) -> String {
    let mut out = String::new();
    for (i, (name, shape)) in shapes.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push(':');
        for (k, d) in shape.iter().enumerate() {
            let sep = if k == 0 { "" } else { "x" };
            let _ = write!(out, "{sep}{d}");
        }
    }
    out
}

/// `1x3x256x256`.
pub fn dims_x(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(ToString::to_string).collect();
    parts.join("x")
}

/// The `trtexec` line that builds the engine `files` needs for `target`.
pub fn trtexec_command(files: &EngineFiles, target: &Target<'_>) -> String {
    let shapes = shapes_arg(
        target
            .inputs
            .iter()
            .map(|d| (d.name.as_str(), d.shape.as_slice())),
    );
    let precision = match target.precision {
        Precision::Fp32 => "",
        Precision::Fp16 => " --fp16",
        Precision::Int8 => " --int8",
    };
    format!(
        "trtexec --onnx={} --saveEngine={} --shapes={shapes}{precision}",
        files.onnx.display(),
        files.engine.display()
    )
}

/// Checks that `files.engine` exists and that its sidecar fits `target`. Returns `None` when
/// there is no sidecar (an engine built by hand with trtexec): the caller then relies on the
/// IO check and TensorRT's own checks and says so in the log.
///
/// # Errors
/// The first mismatch, in the order: missing engine, unreadable sidecar, TensorRT version,
/// GPU, input shapes, precision, ONNX hash.
pub fn check(files: &EngineFiles, target: &Target<'_>) -> Result<Option<Sidecar>, EngineError> {
    let command = || trtexec_command(files, target);
    let engine = || files.engine.clone();
    if !files.engine.is_file() {
        return Err(EngineError::Missing {
            engine: engine(),
            onnx: files.onnx.clone(),
            command: command(),
        });
    }
    if !files.sidecar.exists() {
        return Ok(None);
    }
    let sidecar = read_sidecar(&files.sidecar).map_err(|e| match e {
        EngineError::BadSidecar {
            sidecar, detail, ..
        } => EngineError::BadSidecar {
            sidecar,
            detail,
            command: command(),
        },
        EngineError::Read { path, source } => EngineError::BadSidecar {
            sidecar: path,
            detail: source.to_string(),
            command: command(),
        },
        other => other,
    })?;
    if sidecar.tensorrt_version != target.tensorrt_version {
        return Err(EngineError::Version {
            engine: engine(),
            found: sidecar.tensorrt_version,
            expected: target.tensorrt_version.into(),
            command: command(),
        });
    }
    let cc = target.compute_capability;
    if sidecar.gpu_name != target.gpu_name || sidecar.compute_capability != [cc.0, cc.1] {
        let [major, minor] = sidecar.compute_capability;
        return Err(EngineError::Gpu {
            engine: engine(),
            found: format!("{} (compute {major}.{minor})", sidecar.gpu_name),
            expected: format!("{} (compute {}.{})", target.gpu_name, cc.0, cc.1),
            command: command(),
        });
    }
    // An input built with a profile takes any shape within it (the context sets the concrete
    // one); the others must be exactly as built.
    let same_shapes = sidecar.input_shapes.len() == target.inputs.len()
        && sidecar
            .input_shapes
            .iter()
            .zip(target.inputs)
            .all(|(s, d)| {
                s.name == d.name
                    && match sidecar.profiles.iter().find(|p| p.name == d.name) {
                        Some(range) => range.admits(&d.shape),
                        None => s.shape == d.shape,
                    }
            });
    if !same_shapes {
        let found = sidecar
            .input_shapes
            .iter()
            .map(
                |s| match sidecar.profiles.iter().find(|p| p.name == s.name) {
                    Some(r) => format!("{}:{}..{}", s.name, dims_x(&r.min), dims_x(&r.max)),
                    None => format!("{}:{}", s.name, dims_x(&s.shape)),
                },
            )
            .collect::<Vec<_>>()
            .join(",");
        let expected = shapes_arg(
            target
                .inputs
                .iter()
                .map(|d| (d.name.as_str(), d.shape.as_slice())),
        );
        return Err(EngineError::Shapes {
            engine: engine(),
            found,
            expected,
            command: command(),
        });
    }
    if target.exact_precision && sidecar.precision != target.precision.name() {
        return Err(EngineError::Precision {
            engine: engine(),
            found: sidecar.precision,
            expected: target.precision.name().into(),
            command: command(),
        });
    }
    if sidecar.onnx_sha256 != target.onnx_sha256 {
        return Err(EngineError::OnnxHash {
            engine: engine(),
            onnx: files.onnx.clone(),
            found: sidecar.onnx_sha256,
            expected: target.onnx_sha256.into(),
            command: command(),
        });
    }
    Ok(Some(sidecar))
}
