//! A loaded ONNX file as the rest of moda-edge sees it: the bytes, their sha256, and the
//! contract the graph declares (input and output names, element types, shapes with symbols,
//! metadata props). Nothing here knows a runtime; a backend decodes the bytes itself when it
//! prepares the graph.
//!
//! The contract moda-edge writes is documented in README.md ("The ONNX contract"): opset 17,
//! float32, batch 1, `moda.kind` metadata naming the network.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tract_onnx::pb::{
    tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue, type_proto,
    ModelProto, ValueInfoProto,
};

use super::onnx;

/// Element type of a graph input or output (and of a backend's I/O buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    F16,
    /// Any other ONNX element type, by its `TensorProto.DataType` code.
    Other(i32),
}

impl ElemType {
    fn from_onnx(code: i32) -> ElemType {
        match code {
            c if c == DataType::Float as i32 => ElemType::F32,
            c if c == DataType::Float16 as i32 => ElemType::F16,
            c => ElemType::Other(c),
        }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::F32 => f.write_str("float32"),
            ElemType::F16 => f.write_str("float16"),
            ElemType::Other(code) => write!(f, "ONNX element type {code}"),
        }
    }
}

/// One declared dimension: fixed, or a named symbol (`N`, `F`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredDim {
    Fixed(usize),
    Sym(String),
}

/// A graph input or output as the file declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDecl {
    pub name: String,
    pub dtype: ElemType,
    pub dims: Vec<DeclaredDim>,
}

/// A tensor with a concrete shape: what a backend prepared an input or output for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    pub name: String,
    pub dtype: ElemType,
    pub shape: Vec<usize>,
}

impl TensorDesc {
    /// Elements in the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a model file or the shapes asked of it do not fit.
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
    #[error("{model}: input `{name}` is {found}; the model expects {expected}")]
    BadDType {
        model: String,
        name: String,
        found: String,
        expected: String,
    },
    #[error("cannot read ONNX model {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an ONNX model: {detail}", path.display())]
    NotOnnx { path: PathBuf, detail: String },
    #[error("{model} is a {found} model (metadata moda.kind); expected a {expected} model here")]
    WrongKind {
        model: String,
        found: String,
        expected: String,
    },
    #[error("{model} has no output `{name}`; the pipeline needs {expected}")]
    MissingOutput {
        model: String,
        name: String,
        expected: String,
    },
    #[error("{model}: input `{name}` has {found} samples; the audio encoder needs at least {min} (its receptive field)")]
    TooShort {
        model: String,
        name: String,
        found: usize,
        min: usize,
    },
    #[error("{model}: output `{name}` has shape {found}, expected {expected}")]
    BadOutput {
        model: String,
        name: String,
        found: String,
        expected: String,
    },
}

/// An ONNX model held in memory: bytes plus the contract they declare.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    /// How errors name the model (its path, or a name for graphs built in memory).
    pub label: String,
    bytes: Arc<[u8]>,
    sha256: String,
    pub inputs: Vec<TensorDecl>,
    pub outputs: Vec<TensorDecl>,
    pub metadata: BTreeMap<String, String>,
}

impl OnnxModel {
    /// Reads an `.onnx` file.
    ///
    /// # Errors
    /// [`ShapeError::Read`] when the file is unreadable, [`ShapeError::NotOnnx`] when it does
    /// not hold an ONNX graph.
    pub fn load(path: &Path) -> Result<OnnxModel, ShapeError> {
        let bytes = std::fs::read(path).map_err(|source| ShapeError::Read {
            path: path.into(),
            source,
        })?;
        OnnxModel::from_bytes(path, bytes)
    }

    /// Decodes the bytes of the `.onnx` file at `path` (already read by the caller).
    ///
    /// # Errors
    /// [`ShapeError::NotOnnx`] when the bytes are not an ONNX model with a graph.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<OnnxModel, ShapeError> {
        let not_onnx = |detail: String| ShapeError::NotOnnx {
            path: path.into(),
            detail,
        };
        let proto = onnx::decode(&bytes).map_err(|e| not_onnx(format!("bad protobuf ({e})")))?;
        if proto.graph.is_none() {
            return Err(not_onnx("the file holds no graph".into()));
        }
        Ok(OnnxModel::parse(
            path.display().to_string(),
            &proto,
            bytes.into(),
        ))
    }

    /// Wraps a model built in memory (encoding it once, as a file would hold it).
    pub fn from_proto(label: impl Into<String>, proto: &ModelProto) -> OnnxModel {
        let bytes = onnx::encode(proto);
        OnnxModel::parse(label.into(), proto, bytes.into())
    }

    fn parse(label: String, proto: &ModelProto, bytes: Arc<[u8]>) -> OnnxModel {
        let empty = Default::default();
        let graph = proto.graph.as_ref().unwrap_or(&empty);
        let init: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
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
        let sha256 = hex(&Sha256::digest(&bytes));
        OnnxModel {
            label,
            bytes,
            sha256,
            inputs,
            outputs,
            metadata,
        }
    }

    /// The file's bytes, for a backend to decode.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Hex sha256 of the bytes: identifies the graph in caches and engine sidecars.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Decodes the protobuf again (for backends and graph rewrites).
    ///
    /// # Errors
    /// Never for a model made by [`OnnxModel::load`] or [`OnnxModel::from_proto`], which
    /// decoded the same bytes already.
    pub fn proto(&self) -> Result<ModelProto, ShapeError> {
        onnx::decode(&self.bytes).map_err(|e| ShapeError::NotOnnx {
            path: self.label.clone().into(),
            detail: format!("bad protobuf ({e})"),
        })
    }

    /// Checks the `moda.kind` metadata prop that moda-edge writes (`moda`, `faco`, `renderer`)
    /// against `expected`. A model without the prop (exported elsewhere) passes; its inputs
    /// and outputs are still checked when it is prepared.
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

    /// Whether the graph declares an input called `name`.
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|d| d.name == name)
    }

    /// A description of the inputs for error messages: `waveform [1, N], template [1, 1434]`.
    pub fn describe_inputs(&self) -> String {
        describe(&self.inputs)
    }

    /// A description of the outputs for error messages.
    pub fn describe_outputs(&self) -> String {
        describe(&self.outputs)
    }

    /// The fewest samples the `waveform` input of a wav2vec MODA graph takes: the receptive
    /// field of its convolutional feature encoder, `k₀ + Σᵢ (kᵢ − 1)·Πⱼ<ᵢ sⱼ` from the kernels
    /// and strides in the `moda.hparams` metadata (400 samples for wav2vec2-base). Shorter audio
    /// gives the encoder no output step at all. `None` for other graphs.
    pub fn min_waveform_samples(&self) -> Option<usize> {
        let hparams: serde_json::Value =
            serde_json::from_str(self.metadata.get("moda.hparams")?).ok()?;
        let w2v = &hparams["audio"]["wav2vec"];
        let list = |key: &str| -> Option<Vec<usize>> {
            w2v[key]
                .as_array()?
                .iter()
                .map(|v| v.as_u64().map(|x| x as usize))
                .collect()
        };
        let (kernels, strides) = (list("conv_kernels")?, list("conv_strides")?);
        if kernels.len() != strides.len() {
            return None;
        }
        let (mut field, mut jump) = (*kernels.first()?, *strides.first()?);
        for (k, s) in kernels.iter().zip(&strides).skip(1) {
            field = field.checked_add(k.checked_sub(1)?.checked_mul(jump)?)?;
            jump = jump.checked_mul(*s)?;
        }
        Some(field)
    }

    /// Checks input shapes against the declaration (every input present, fixed dims equal,
    /// each symbol one positive value, a waveform at least as long as the audio encoder's
    /// receptive field) and returns them in model order.
    ///
    /// # Errors
    /// A [`ShapeError`] naming the input and what the model expects.
    pub fn resolve_shapes(
        &self,
        shapes: &[(String, Vec<usize>)],
    ) -> Result<Vec<TensorDesc>, ShapeError> {
        let expected = self.describe_inputs();
        for (name, _) in shapes {
            if !self.has_input(name) {
                return Err(ShapeError::UnknownInput {
                    model: self.label.clone(),
                    name: name.clone(),
                    expected,
                });
            }
        }
        let mut symbols: BTreeMap<&str, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for decl in &self.inputs {
            let Some((_, shape)) = shapes.iter().find(|(n, _)| *n == decl.name) else {
                return Err(ShapeError::MissingInput {
                    model: self.label.clone(),
                    name: decl.name.clone(),
                    expected,
                });
            };
            let bad = || ShapeError::BadShape {
                model: self.label.clone(),
                name: decl.name.clone(),
                found: super::checkpoint::shape_string(shape),
                declared: dims_string(&decl.dims),
            };
            if shape.len() != decl.dims.len() {
                return Err(bad());
            }
            for (d, &s) in decl.dims.iter().zip(shape) {
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
            if decl.name == "waveform" {
                let found = shape.iter().product();
                if let Some(min) = self.min_waveform_samples().filter(|&m| found < m) {
                    return Err(ShapeError::TooShort {
                        model: self.label.clone(),
                        name: decl.name.clone(),
                        found,
                        min,
                    });
                }
            }
            out.push(TensorDesc {
                name: decl.name.clone(),
                dtype: decl.dtype,
                shape: shape.clone(),
            });
        }
        Ok(out)
    }
}

fn declared(v: &ValueInfoProto) -> TensorDecl {
    let (dtype, dims) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(DimValue::DimValue(n)) => {
                                DeclaredDim::Fixed(usize::try_from(*n).unwrap_or(0))
                            }
                            Some(DimValue::DimParam(p)) => DeclaredDim::Sym(p.clone()),
                            None => DeclaredDim::Sym("?".into()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (ElemType::from_onnx(t.elem_type), dims)
        }
        None => (ElemType::Other(0), vec![]),
    };
    TensorDecl {
        name: v.name.clone(),
        dtype,
        dims,
    }
}

fn describe(decls: &[TensorDecl]) -> String {
    decls
        .iter()
        .map(|d| format!("{} {}", d.name, dims_string(&d.dims)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A declared shape for messages: `[1, 3, N]`.
pub(crate) fn dims_string(dims: &[DeclaredDim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            DeclaredDim::Fixed(n) => n.to_string(),
            DeclaredDim::Sym(s) => s.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::import::{init, Network};
    use crate::model::Preset;

    #[test]
    fn the_contract_of_a_written_graph_is_read_back() {
        let model = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1));
        let names: Vec<&str> = model.inputs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["lip", "eye", "template"]);
        assert_eq!(model.inputs[0].dtype, ElemType::F32);
        assert_eq!(model.describe_outputs(), "mesh [1, F, 1434]");
        assert_eq!(model.metadata["moda.kind"], "faco");
        assert_eq!(model.sha256().len(), 64);
        let again = OnnxModel::from_bytes(Path::new("x.onnx"), model.bytes().to_vec()).unwrap();
        assert_eq!(again.sha256(), model.sha256());
        assert_eq!(again.inputs, model.inputs);
    }

    #[test]
    fn shapes_are_resolved_against_symbols() {
        let model = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1));
        let s = |f: usize, g: usize| {
            vec![
                ("lip".to_string(), vec![1, f, 120]),
                ("eye".to_string(), vec![1, g, 180]),
                ("template".to_string(), vec![1, 1434]),
            ]
        };
        let ok = model.resolve_shapes(&s(7, 7)).unwrap();
        assert_eq!(ok[1].shape, [1, 7, 180]);
        let err = model.resolve_shapes(&s(7, 8)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "faco: input `eye` has shape [1, 8, 180], expected [1, F, 180]"
        );
        assert!(matches!(
            model.resolve_shapes(&s(0, 0)),
            Err(ShapeError::BadShape { .. })
        ));
    }

    #[test]
    fn a_waveform_shorter_than_the_receptive_field_is_refused() {
        let moda = OnnxModel::from_proto("moda.onnx", &init(Network::Moda, Preset::Tiny, 1));
        assert_eq!(moda.min_waveform_samples(), Some(400));
        let shapes = |n: usize| {
            vec![
                ("waveform".to_string(), vec![1, n]),
                ("template".to_string(), vec![1, 1434]),
                ("noise".to_string(), vec![1, 2, 128]),
            ]
        };
        assert!(moda.resolve_shapes(&shapes(400)).is_ok());
        let err = moda.resolve_shapes(&shapes(399)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "moda.onnx: input `waveform` has 399 samples; the audio encoder needs at least 400 (its receptive field)"
        );
        let faco = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1));
        assert_eq!(faco.min_waveform_samples(), None);
    }

    #[test]
    fn garbage_is_not_onnx() {
        let err = OnnxModel::from_bytes(Path::new("x.onnx"), b"\xff\xff\xff".to_vec()).unwrap_err();
        assert!(
            err.to_string().starts_with("x.onnx is not an ONNX model"),
            "{err}"
        );
    }
}
