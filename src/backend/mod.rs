//! Inference backends behind one trait: prepare a graph once for fixed input shapes, open a
//! session that owns its input and output buffers, then `run` it as often as needed.
//!
//! `tract` (pure Rust, CPU) is the default; the TensorRT backend arrives with feature
//! `tensorrt`.

mod model;
pub mod recycle;
pub mod tract;

pub use model::{IoSpec, OnnxModel, ShapeError};

/// Errors of a backend. `Prepare` means the graph cannot run on this backend (a user's file or
/// our writer is at fault); `Run` is a failure during inference.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot prepare {model} on {backend}: {detail}")]
    Prepare {
        model: String,
        backend: &'static str,
        detail: String,
    },
    #[error("inference failed on {backend}: {detail}")]
    Run {
        backend: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// A runtime that can execute our ONNX graphs.
pub trait Backend {
    type Prepared: Prepared;
    fn name(&self) -> &'static str;
    /// Translates `model` for the given concrete input shapes (every input of the model, in
    /// any order). Expensive; do it once.
    ///
    /// # Errors
    /// [`BackendError::Shape`] when a shape does not fit the model's declared inputs,
    /// [`BackendError::Prepare`] when the backend cannot run the graph.
    fn prepare(
        &self,
        model: &OnnxModel,
        shapes: &[(&str, Vec<usize>)],
    ) -> Result<Self::Prepared, BackendError>;
}

/// A model translated for fixed shapes; immutable and shareable between threads.
pub trait Prepared: Send + Sync {
    type Session: Session;
    /// Inputs in model order, with the concrete shapes it was prepared for.
    fn inputs(&self) -> &[IoSpec];
    /// Outputs in model order, with concrete shapes.
    fn outputs(&self) -> &[IoSpec];
    /// A session with its own preallocated input and output buffers.
    ///
    /// # Errors
    /// When the backend cannot create per-session state.
    fn session(&self) -> Result<Self::Session, BackendError>;
}

/// Per-stream state. Fill inputs, `run`, read outputs.
pub trait Session: Send {
    /// Input buffer `index` (model order), row-major float32, of the prepared shape.
    fn input_mut(&mut self, index: usize) -> &mut [f32];
    /// Runs the graph on the current inputs; outputs are valid until the next `run`. Does
    /// not allocate once warmed up: on tract that holds with [`recycle::Recycler`] installed as
    /// the global allocator (the `moda-edge` binary does), which serves the activations tract
    /// allocates from blocks recycled from the previous run.
    ///
    /// # Errors
    /// [`BackendError::Run`].
    fn run(&mut self) -> Result<(), BackendError>;
    /// Output buffer `index` (model order), row-major float32.
    fn output(&self, index: usize) -> &[f32];
}

/// Prepares `model` for the shapes of `inputs`, runs it once and returns every output by name.
/// For tools (`moda-edge infer`) and tests; the live pipeline keeps its sessions.
///
/// # Errors
/// [`ShapeError`] (unknown, missing, mis-shaped or non-float32 input, naming what the model
/// expects), or the backend's prepare/run error.
pub fn run_once<B: Backend>(
    backend: &B,
    model: &OnnxModel,
    inputs: &[(String, crate::model::Tensor)],
) -> Result<Vec<(String, crate::model::Tensor)>, BackendError> {
    for (name, t) in inputs {
        if t.dtype() != crate::model::DType::F32 {
            return Err(ShapeError::BadDType {
                model: model.label.clone(),
                name: name.clone(),
                found: t.dtype().to_string(),
                expected: model.describe_inputs(),
            }
            .into());
        }
    }
    let shapes: Vec<(&str, Vec<usize>)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.clone()))
        .collect();
    let prepared = backend.prepare(model, &shapes)?;
    let mut session = prepared.session()?;
    fill_inputs(&prepared, &mut session, inputs);
    session.run()?;
    Ok(prepared
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            (
                spec.name.clone(),
                crate::model::Tensor::f32(spec.shape.clone(), session.output(i).to_vec()),
            )
        })
        .collect())
}

/// Copies named float32 host tensors into a session's input buffers (by the prepared input
/// names; every prepared input must be present, as `prepare` checked).
///
/// # Panics
/// When an input is missing or not float32, which `prepare`'s shape check and the callers'
/// dtype check rule out.
pub fn fill_inputs<P: Prepared>(
    prepared: &P,
    session: &mut P::Session,
    inputs: &[(String, crate::model::Tensor)],
) {
    for (i, spec) in prepared.inputs().iter().enumerate() {
        let (_, t) = inputs
            .iter()
            .find(|(n, _)| *n == spec.name)
            .expect("input resolved by prepare");
        session
            .input_mut(i)
            .copy_from_slice(t.as_f32().expect("float32 input"));
    }
}
