//! An engine's input and output tensors checked against the ONNX contract of the model it
//! claims to run: names, element types, shapes. Each mismatch is one sentence naming the engine
//! file, the tensor, what the engine has and what the model expects.

use std::ffi::CString;
use std::sync::Arc;

use super::engine::EngineFiles;
use super::ffi;
use super::handles::{Context, Engine, IoTensor};
use crate::backend::{ElemType, OnnxModel, TensorDesc};
use crate::model::checkpoint::shape_string;
use crate::model::contract::{dims_string as declared_dims, DeclaredDim};

/// The ONNX contract an engine's IO tensors must match.
pub(super) struct Contract<'a> {
    pub model: &'a OnnxModel,
    pub files: &'a EngineFiles,
}

pub(super) fn elem_type(dtype: i32) -> ElemType {
    match dtype {
        ffi::DTYPE_FLOAT => ElemType::F32,
        ffi::DTYPE_HALF => ElemType::F16,
        other => ElemType::Other(other),
    }
}

fn dims_string(dims: &[i64]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", parts.join(", "))
}

pub(super) fn shape_dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&s| s as i64).collect()
}

impl Contract<'_> {
    fn engine(&self) -> String {
        self.files.engine.display().to_string()
    }

    /// The engine's inputs are the model's, with the same element types, and shapes that
    /// admit the prepared ones (-1 in the engine admits any size).
    pub(super) fn check_inputs(
        &self,
        io: &[IoTensor],
        inputs: &[TensorDesc],
    ) -> Result<(), String> {
        for t in io.iter().filter(|t| t.is_input) {
            if !inputs.iter().any(|d| d.name == t.name) {
                return Err(format!(
                    "{}: engine input `{}` is not an input of {} (it has {})",
                    self.engine(),
                    t.name,
                    self.model.label,
                    self.model.describe_inputs()
                ));
            }
        }
        for d in inputs {
            let Some(t) = io.iter().find(|t| t.is_input && t.name == d.name) else {
                return Err(format!(
                    "{}: input `{}` is missing from the engine; expected {} {}",
                    self.engine(),
                    d.name,
                    d.dtype,
                    shape_string(&d.shape)
                ));
            };
            if elem_type(t.dtype) != d.dtype {
                return Err(format!(
                    "{}: input `{}` is {} in the engine, expected {}",
                    self.engine(),
                    d.name,
                    elem_type(t.dtype),
                    d.dtype
                ));
            }
            let fits = t.dims.len() == d.shape.len()
                && t.dims
                    .iter()
                    .zip(&d.shape)
                    .all(|(&e, &s)| e < 0 || e == s as i64);
            if !fits {
                return Err(format!(
                    "{}: input `{}` has shape {} in the engine, expected {}",
                    self.engine(),
                    d.name,
                    dims_string(&t.dims),
                    shape_string(&d.shape)
                ));
            }
        }
        Ok(())
    }

    /// The engine's outputs in the model's order, with their concrete shapes for `inputs`
    /// (asked of a probe context, since a dynamic engine knows them only there).
    pub(super) fn outputs(
        &self,
        engine: &Arc<Engine>,
        io: &[IoTensor],
        inputs: &[TensorDesc],
    ) -> Result<Vec<TensorDesc>, String> {
        let declared = &self.model.outputs;
        for t in io.iter().filter(|t| !t.is_input) {
            if !declared.iter().any(|o| o.name == t.name) {
                return Err(format!(
                    "{}: engine output `{}` is not an output of {} (it has {})",
                    self.engine(),
                    t.name,
                    self.model.label,
                    self.model.describe_outputs()
                ));
            }
        }
        let mut probe = engine
            .context()
            .map_err(|e| format!("{}: {}", self.engine(), e.message))?;
        set_input_shapes(&mut probe, inputs).map_err(|e| format!("{}: {e}", self.engine()))?;
        let mut out = Vec::with_capacity(declared.len());
        for decl in declared {
            let Some(t) = io.iter().find(|t| !t.is_input && t.name == decl.name) else {
                return Err(format!(
                    "{}: output `{}` is missing from the engine; {} declares {}",
                    self.engine(),
                    decl.name,
                    self.model.label,
                    self.model.describe_outputs()
                ));
            };
            let dtype = elem_type(t.dtype);
            if dtype != decl.dtype {
                return Err(format!(
                    "{}: output `{}` is {dtype} in the engine, expected {}",
                    self.engine(),
                    decl.name,
                    decl.dtype
                ));
            }
            let name = CString::new(decl.name.as_str())
                .map_err(|_| format!("output name `{}` holds a NUL byte", decl.name))?;
            let dims = probe
                .tensor_shape(&name)
                .map_err(|e| format!("{}: {}", self.engine(), e.message))?;
            let fits = dims.len() == decl.dims.len()
                && dims.iter().zip(&decl.dims).all(|(&e, d)| match d {
                    DeclaredDim::Fixed(f) => e == *f as i64,
                    DeclaredDim::Sym(_) => e >= 0,
                });
            if !fits {
                return Err(format!(
                    "{}: output `{}` has shape {} in the engine, expected {}",
                    self.engine(),
                    decl.name,
                    dims_string(&dims),
                    declared_dims(&decl.dims)
                ));
            }
            out.push(TensorDesc {
                name: decl.name.clone(),
                dtype,
                shape: dims.iter().map(|&d| d as usize).collect(),
            });
        }
        Ok(out)
    }
}

/// Fixes every input's shape on `context`.
pub(super) fn set_input_shapes(context: &mut Context, inputs: &[TensorDesc]) -> Result<(), String> {
    for d in inputs {
        let name = CString::new(d.name.as_str())
            .map_err(|_| format!("input name `{}` holds a NUL byte", d.name))?;
        context
            .set_input_shape(&name, &shape_dims(&d.shape))
            .map_err(|e| e.message)?;
    }
    Ok(())
}
