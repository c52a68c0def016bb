//! The fake engine file (feature `tensorrt-fake`): [`MAGIC`], the length of a JSON header
//! (u32, little endian), the header ([`FakeHeader`]: tensor names, element types, shapes,
//! precision, the fake TensorRT version [`FAKE_VERSION`]) and the ONNX bytes of the graph.
//! [`write_fake_engine`] is the fake's `trtexec --saveEngine`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ffi;
use crate::backend::tract::TractBackend;
use crate::backend::{
    Backend, BackendError, ElemType, OnnxModel, Precision, PrepareOptions, Prepared,
};

/// The first bytes of a fake engine file.
pub const MAGIC: &[u8; 16] = b"MODA-FAKE-TRT-1\n";
/// The TensorRT version the fake runtime reports and fake engines record.
pub const FAKE_VERSION: &str = "10.3.0-fake";

/// One tensor of a fake engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeTensor {
    pub name: String,
    /// nvinfer1::DataType's value (0 float32, 1 float16).
    pub dtype: i32,
    /// The shape (an input's `opt` shape when it has a profile).
    pub shape: Vec<usize>,
    /// An input's profile bounds, when built with one whose min and max differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Vec<usize>>,
}

impl FakeTensor {
    /// The smallest and largest shape the tensor admits.
    pub fn bounds(&self) -> (&[usize], &[usize]) {
        (
            self.min.as_deref().unwrap_or(&self.shape),
            self.max.as_deref().unwrap_or(&self.shape),
        )
    }

    /// Whether `dims` lies within the bounds.
    pub fn admits(&self, dims: &[usize]) -> bool {
        let (lo, hi) = self.bounds();
        dims.len() == lo.len()
            && dims
                .iter()
                .zip(lo.iter().zip(hi))
                .all(|(d, (l, h))| l <= d && d <= h)
    }
}

/// One input of a fake build: its name and min, opt and max shapes.
pub type FakeProfile = (String, Vec<usize>, Vec<usize>, Vec<usize>);

/// The JSON header of a fake engine file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeHeader {
    pub tensorrt_version: String,
    pub precision: String,
    pub inputs: Vec<FakeTensor>,
    pub outputs: Vec<FakeTensor>,
}

fn dtype_code(t: ElemType) -> i32 {
    match t {
        ElemType::F16 => ffi::DTYPE_HALF,
        _ => ffi::DTYPE_FLOAT,
    }
}

pub(super) fn code_size(code: i32) -> usize {
    if code == ffi::DTYPE_HALF {
        2
    } else {
        4
    }
}

/// The bytes of a fake engine of `model` for `shapes` (what `trtexec` would have built):
/// the graph is prepared on tract once to learn its output shapes.
///
/// # Errors
/// As [`TractBackend::prepare`].
pub fn fake_engine_bytes(
    model: &OnnxModel,
    shapes: &[(String, Vec<usize>)],
    precision: Precision,
) -> Result<Vec<u8>, BackendError> {
    let profiles: Vec<FakeProfile> = shapes
        .iter()
        .map(|(n, s)| (n.clone(), s.clone(), s.clone(), s.clone()))
        .collect();
    profile_engine_bytes(model, &profiles, precision)
}

/// The bytes of a fake engine of `model` with an optimization profile per input (the fake
/// builder's output): prepared on tract at the `opt` shapes; inputs whose min and max differ
/// record them, and the fake runtime then accepts any shape within.
///
/// # Errors
/// As [`TractBackend::prepare`].
pub fn profile_engine_bytes(
    model: &OnnxModel,
    profiles: &[FakeProfile],
    precision: Precision,
) -> Result<Vec<u8>, BackendError> {
    let opts = PrepareOptions {
        shapes: profiles
            .iter()
            .map(|(n, _, opt, _)| (n.clone(), opt.clone()))
            .collect(),
        precision: Precision::Fp32,
    };
    let prepared = TractBackend::default().prepare(model, &opts)?;
    let tensors = |descs: &[crate::backend::TensorDesc]| {
        descs
            .iter()
            .map(|d| FakeTensor {
                name: d.name.clone(),
                dtype: dtype_code(d.dtype),
                shape: d.shape.clone(),
                min: None,
                max: None,
            })
            .collect()
    };
    let mut inputs: Vec<FakeTensor> = tensors(prepared.inputs());
    for t in &mut inputs {
        if let Some((_, min, _, max)) = profiles.iter().find(|p| p.0 == t.name) {
            if min != max {
                t.min = Some(min.clone());
                t.max = Some(max.clone());
            }
        }
    }
    let header = FakeHeader {
        tensorrt_version: FAKE_VERSION.into(),
        precision: precision.name().into(),
        inputs,
        outputs: tensors(prepared.outputs()),
    };
    let json = serde_json::to_vec(&header).map_err(|e| BackendError::Prepare {
        model: model.label.clone(),
        backend: "tensorrt-fake",
        source: e.into(),
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + json.len() + model.bytes().len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(model.bytes());
    Ok(bytes)
}

/// Writes a fake engine of `model` for `shapes` and `precision` to `path` (the fake
/// counterpart of `trtexec --saveEngine`; the sidecar is written separately, see
/// [`super::engine::write_sidecar`]).
///
/// # Errors
/// As [`fake_engine_bytes`], or the file cannot be written.
pub fn write_fake_engine(
    model: &OnnxModel,
    shapes: &[(String, Vec<usize>)],
    precision: Precision,
    path: &Path,
) -> Result<(), BackendError> {
    let bytes = fake_engine_bytes(model, shapes, precision)?;
    std::fs::write(path, bytes).map_err(|e| BackendError::Prepare {
        model: model.label.clone(),
        backend: "tensorrt-fake",
        source: format!("cannot write {}: {e}", path.display()).into(),
    })
}

/// Splits a fake engine file into its header and ONNX bytes.
pub(super) fn parse(bytes: &[u8]) -> Result<(FakeHeader, &[u8]), String> {
    let bad = |what: &str| format!("not a serialized engine ({what})");
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("bad magic"));
    }
    let rest = &bytes[MAGIC.len()..];
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("truncated header"))?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let json = rest
        .get(4..4 + len)
        .ok_or_else(|| bad("truncated header"))?;
    let header: FakeHeader =
        serde_json::from_slice(json).map_err(|e| bad(&format!("bad header: {e}")))?;
    Ok((header, &rest[4 + len..]))
}
