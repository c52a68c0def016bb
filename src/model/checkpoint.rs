//! Official PyTorch checkpoints: a bare state_dict written by `torch.save` (zip container with
//! `*/data.pkl` and one raw storage record per tensor under `*/data/`).
//!
//! The reader lives in [`crate::model::pickle`]; this file holds the result type and the errors
//! that every importer reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::tensor::{DType, ShapeDisplay, Tensor};

/// A loaded state_dict: key → tensor, with a leading `module.` stripped from every key.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Where it was read from (for error messages).
    pub path: PathBuf,
    /// sha256 of the file, lowercase hex (recorded in the ONNX metadata).
    pub sha256: String,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Everything that can be wrong with a checkpoint file. Each message names the file and,
/// where it applies, the key with expected and found shape.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be opened or read. The I/O error is part of the message (and so not
    /// also a `source()`, which would print it twice).
    #[error("cannot read checkpoint {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a PyTorch checkpoint (expected the zip container written by torch.save): {detail}")]
    NotTorch { path: PathBuf, detail: String },
    #[error("{path} is damaged: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} is not a {expected} checkpoint: {detail}")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
    #[error("{path}: missing key `{key}` (expected {dtype} tensor of shape {shape})")]
    MissingKey {
        path: PathBuf,
        key: String,
        shape: String,
        dtype: DType,
    },
    #[error(
        "{path}: unexpected key `{key}` (shape {shape}) that the {kind} network does not have"
    )]
    UnexpectedKey {
        path: PathBuf,
        key: String,
        shape: String,
        kind: &'static str,
    },
    #[error("{path}: key `{key}` has shape {found}, expected {expected}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: String,
        found: String,
    },
    #[error("{path}: key `{key}` is {found}, expected {expected}")]
    DTypeMismatch {
        path: PathBuf,
        key: String,
        expected: DType,
        found: DType,
    },
    #[error("{path}: cannot use these hyper-parameters: {detail}")]
    BadHparams { path: PathBuf, detail: String },
}

impl Checkpoint {
    /// The tensor stored under `key`.
    ///
    /// # Errors
    /// [`CheckpointError::MissingKey`] when the key is absent (the shape in the message is
    /// unknown here and reads `?`).
    pub fn get(&self, key: &str) -> Result<&Tensor, CheckpointError> {
        self.tensors
            .get(key)
            .ok_or_else(|| CheckpointError::MissingKey {
                path: self.path.clone(),
                key: key.to_string(),
                shape: "?".into(),
                dtype: DType::F32,
            })
    }

    /// Shape of `key`, or `None` when absent.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape.as_slice())
    }

    /// Float32 data of `key`. Only call after [`super::spec::validate`] has checked dtypes.
    ///
    /// # Panics
    /// When the key is missing or not float32, which validation rules out.
    pub fn f32(&self, key: &str) -> &[f32] {
        self.tensors
            .get(key)
            .and_then(Tensor::as_f32)
            .unwrap_or_else(|| panic!("BUG: `{key}` used before validation"))
    }

    pub fn file_name(&self) -> &Path {
        &self.path
    }
}

/// Formats a shape for error messages.
pub fn shape_string(shape: &[usize]) -> String {
    ShapeDisplay(shape).to_string()
}
