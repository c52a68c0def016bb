//! A loaded ONNX file: its bytes, declared inputs/outputs and metadata props.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tract_onnx::pb::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, ModelProto, ValueInfoProto,
};

use crate::model::onnx;

/// Name and shape of a graph input or output. Declared shapes may hold symbols (`N`, `F`);
/// prepared shapes are concrete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One declared dimension: fixed or symbolic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredDim {
    Fixed(usize),
    Sym(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("{model}: no input named `{name}`; the model expects {expected}")]
    UnknownInput {
        model: String,
        name: String,
        expected: String,
    },
    #[error("{model}: input `{name}` is missing; the model expects {expected}")]
    MissingInput {
        model: String,
        name: String,
        expected: String,
    },
    #[error("{model}: input `{name}` has shape {found}, expected {declared}")]
    BadShape {
        model: String,
        name: String,
        found: String,
        declared: String,
    },
    #[error("{model}: input `{name}` is {found}; the model expects float32 ({expected})")]
    BadDType {
        model: String,
        name: String,
        found: String,
        expected: String,
    },
    #[error("cannot read ONNX model {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("{model} is a {found} model (metadata moda.kind); expected a {expected} model here")]
    WrongKind {
        model: String,
        found: String,
        expected: String,
    },
}

/// An ONNX model held in memory.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub label: String,
    pub proto: ModelProto,
    pub inputs: Vec<(String, Vec<DeclaredDim>)>,
    pub outputs: Vec<(String, Vec<DeclaredDim>)>,
    pub metadata: BTreeMap<String, String>,
}

impl OnnxModel {
    /// Reads an `.onnx` file.
    ///
    /// # Errors
    /// [`ShapeError::Load`] when the file is unreadable or not ONNX.
    pub fn load(path: &Path) -> Result<OnnxModel, ShapeError> {
        let load = |detail: String| ShapeError::Load {
            path: path.into(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| load(e.to_string()))?;
        OnnxModel::from_bytes(path, &bytes)
    }

    /// Decodes the bytes of the `.onnx` file at `path` (already read by the caller).
    ///
    /// # Errors
    /// [`ShapeError::Load`] when the bytes are not an ONNX model with a graph.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<OnnxModel, ShapeError> {
        let load = |detail: String| ShapeError::Load {
            path: path.into(),
            detail,
        };
        let proto = onnx::decode(bytes).map_err(|e| load(format!("not an ONNX protobuf ({e})")))?;
        if proto.graph.is_none() {
            return Err(load("the file holds no graph".into()));
        }
        Ok(OnnxModel::from_proto(path.display().to_string(), proto))
    }

    /// Wraps a model built in memory.
    pub fn from_proto(label: String, proto: ModelProto) -> OnnxModel {
        let graph = proto.graph.clone().unwrap_or_default();
        let init: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs = graph
            .input
            .iter()
            .filter(|v| !init.contains(v.name.as_str()))
            .map(declared)
            .collect();
        let outputs = graph.output.iter().map(declared).collect();
        let metadata = proto
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        OnnxModel {
            label,
            proto,
            inputs,
            outputs,
            metadata,
        }
    }

    /// Checks the `moda.kind` metadata prop that moda-edge writes (`moda`, `faco`, `renderer`)
    /// against `expected`. A model without the prop (exported elsewhere) passes; its inputs
    /// are still checked when it is prepared.
    ///
    /// # Errors
    /// [`ShapeError::WrongKind`] naming the file, its kind and the expected one.
    pub fn check_kind(&self, expected: &str) -> Result<(), ShapeError> {
        match self.metadata.get("moda.kind") {
            Some(found) if found != expected => Err(ShapeError::WrongKind {
                model: self.label.clone(),
                found: found.clone(),
                expected: expected.into(),
            }),
            _ => Ok(()),
        }
    }

    /// A description of the inputs for error messages: `waveform [1, N], template [1, 1434]`.
    pub fn describe_inputs(&self) -> String {
        self.inputs
            .iter()
            .map(|(n, d)| format!("{n} {}", dims_string(d)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks user-supplied input shapes against the declaration (every input present, fixed
    /// dims equal, each symbol one value) and returns them in model order.
    ///
    /// # Errors
    /// A [`ShapeError`] naming the input and what the model expects.
    pub fn resolve_shapes(&self, shapes: &[(&str, Vec<usize>)]) -> Result<Vec<IoSpec>, ShapeError> {
        let expected = self.describe_inputs();
        for (name, _) in shapes {
            if !self.inputs.iter().any(|(n, _)| n == name) {
                return Err(ShapeError::UnknownInput {
                    model: self.label.clone(),
                    name: name.to_string(),
                    expected,
                });
            }
        }
        let mut symbols: BTreeMap<&str, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (name, dims) in &self.inputs {
            let Some((_, shape)) = shapes.iter().find(|(n, _)| n == name) else {
                return Err(ShapeError::MissingInput {
                    model: self.label.clone(),
                    name: name.clone(),
                    expected,
                });
            };
            let bad = || ShapeError::BadShape {
                model: self.label.clone(),
                name: name.clone(),
                found: crate::model::checkpoint::shape_string(shape),
                declared: dims_string(dims),
            };
            if shape.len() != dims.len() {
                return Err(bad());
            }
            for (d, &s) in dims.iter().zip(shape) {
                match d {
                    DeclaredDim::Fixed(f) if *f != s => return Err(bad()),
                    DeclaredDim::Sym(sym)
                        if s == 0 || *symbols.entry(sym.as_str()).or_insert(s) != s =>
                    {
                        return Err(bad())
                    }
                    _ => {}
                }
            }
            out.push(IoSpec {
                name: name.clone(),
                shape: shape.clone(),
            });
        }
        Ok(out)
    }
}

fn declared(v: &ValueInfoProto) -> (String, Vec<DeclaredDim>) {
    let dims = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimValue::DimValue(n)) => DeclaredDim::Fixed(*n as usize),
                        Some(DimValue::DimParam(p)) => DeclaredDim::Sym(p.clone()),
                        None => DeclaredDim::Sym("?".into()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => vec![],
    };
    (v.name.clone(), dims)
}

fn dims_string(dims: &[DeclaredDim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            DeclaredDim::Fixed(n) => n.to_string(),
            DeclaredDim::Sym(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
