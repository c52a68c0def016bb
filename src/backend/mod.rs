//! Inference backends behind one API: prepare a graph once for fixed input shapes and a
//! precision, open sessions that own their I/O buffers, then enqueue runs.
//!
//! ```text
//! OnnxModel ──Backend::prepare(PrepareOptions)──▶ Prepared (immutable, shared; PlanCache keeps it)
//!                                                   │ session()
//!                                                   ▼
//!                 input(i) ──▶ Session ──enqueue()──▶ Event ──wait()──▶ output(i)
//! ```
//!
//! - Tensors are found by name once ([`Prepared::input_index`]) and then addressed by index.
//! - Buffers are typed ([`HostMut`], [`HostRef`]: float32 or float16), and live where the
//!   backend keeps them ([`Memory`]): host memory for tract, device or host-mapped memory for a
//!   GPU backend, which also hands out device addresses for kernels.
//! - A run is *enqueued* on the session's stream and completes through an [`Event`]: a GPU
//!   backend returns before the device is done, and the event can be waited on or handed to
//!   the next stage. The CPU backend runs synchronously inside `enqueue` and returns a
//!   completed event.
//! - [`PlanCache`] keys a prepared graph by model hash, shapes, precision and platform, so an
//!   expensive build (a TensorRT engine, tract's optimisation) is done once and reused.
//!
//! `tract` (pure Rust, CPU) is the default; the TensorRT backend comes with feature
//! `tensorrt` (its fake over tract with `tensorrt-fake`). [`conformance`] is one golden-file
//! suite every backend runs.

mod cache;
pub mod conformance;
mod guard;
pub mod recipe;
pub mod recycle;
pub mod select;
#[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
pub mod tensorrt;
pub mod tract;

use std::error::Error as StdError;

pub use cache::{CacheStats, PlanCache, PlanKey};
#[cfg(feature = "cuda")]
pub(crate) use guard::catch as catch_panic;
pub use guard::quiet_guarded_panics;
pub use half::f16;

pub use crate::model::contract::{ElemType, OnnxModel, ShapeError, TensorDesc};

/// A boxed error from a runtime library, kept as the `source()` of a [`BackendError`].
pub type RuntimeError = Box<dyn StdError + Send + Sync + 'static>;

/// Errors of a backend. `Prepare` means the graph cannot run on this backend (a user's file or
/// our writer is at fault); `Run` is a failure during inference.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot prepare {model} on {backend}")]
    Prepare {
        model: String,
        backend: &'static str,
        source: RuntimeError,
    },
    #[error("{backend} is not available on this machine")]
    Unavailable {
        backend: &'static str,
        source: RuntimeError,
    },
    #[error("{backend} does not support {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("inference of {model} failed on {backend}")]
    Run {
        model: String,
        backend: &'static str,
        source: RuntimeError,
    },
    #[error("{backend} failed on {model} (an internal panic: {detail})")]
    Panicked {
        model: String,
        backend: &'static str,
        detail: String,
    },
    #[error("{tensor} is a {found} buffer; expected {expected}")]
    BufferType {
        tensor: String,
        found: ElemType,
        expected: ElemType,
    },
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// What the caller can do about a [`BackendError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The model, shapes or precision do not fit this backend: fix the input or rebuild.
    Fatal,
    /// A run failed; a new session (or a restart of the device) may succeed.
    Rebuild,
}

impl BackendError {
    pub fn kind(&self) -> BackendErrorKind {
        match self {
            BackendError::Run { .. } | BackendError::Panicked { .. } => BackendErrorKind::Rebuild,
            BackendError::Prepare { .. }
            | BackendError::Unavailable { .. }
            | BackendError::Unsupported { .. }
            | BackendError::BufferType { .. }
            | BackendError::Shape(_) => BackendErrorKind::Fatal,
        }
    }
}

/// Arithmetic precision a graph is prepared for. Buffers keep the element types the graph
/// declares; this selects what the engine computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

/// Where a session's buffers live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Plain host memory (CPU backends).
    Host,
    /// Device memory the host can address too (an integrated GPU's pinned, mapped memory).
    Mapped,
    /// Device memory only: host views are unavailable; stages use device addresses.
    Device,
}

/// Everything `prepare` needs besides the model (one options struct per phase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrepareOptions {
    /// A concrete shape for every model input, by name, in any order.
    pub shapes: Vec<(String, Vec<usize>)>,
    pub precision: Precision,
}

impl PrepareOptions {
    /// Float32 preparation for `shapes`.
    pub fn shapes<S: AsRef<str>>(shapes: &[(S, Vec<usize>)]) -> PrepareOptions {
        PrepareOptions {
            shapes: shapes
                .iter()
                .map(|(n, s)| (n.as_ref().to_string(), s.clone()))
                .collect(),
            precision: Precision::Fp32,
        }
    }
}

/// A runtime that can execute our ONNX graphs.
pub trait Backend: Send + Sync {
    type Prepared: Prepared;

    fn name(&self) -> &'static str;

    /// What a prepared graph depends on beyond model, shapes and precision (runtime version,
    /// CPU or GPU, thread count): part of every [`PlanKey`].
    fn platform(&self) -> String;

    /// Translates `model` for the given shapes and precision. Expensive; do it once (see
    /// [`PlanCache`]). Every output is checked to have a concrete shape.
    ///
    /// # Errors
    /// [`BackendError::Shape`] when a shape does not fit the model's declared inputs,
    /// [`BackendError::Unsupported`] for a precision or element type the backend lacks,
    /// [`BackendError::Prepare`] when the backend cannot run the graph.
    fn prepare(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
    ) -> Result<Self::Prepared, BackendError>;

    /// A prepared graph as bytes for the on-disk cache (a serialized engine), or `None` when
    /// this backend keeps prepared graphs in memory only.
    fn serialize(&self, _prepared: &Self::Prepared) -> Option<Vec<u8>> {
        None
    }

    /// Restores what [`Backend::serialize`] wrote for the same key.
    ///
    /// # Errors
    /// When the bytes are not a plan of this backend (the cache then prepares afresh).
    fn deserialize(
        &self,
        model: &OnnxModel,
        _opts: &PrepareOptions,
        _bytes: &[u8],
    ) -> Result<Self::Prepared, BackendError> {
        Err(BackendError::Unsupported {
            backend: self.name(),
            what: format!("restoring a serialized plan of {}", model.label),
        })
    }
}

/// A model translated for fixed shapes; immutable and shareable between threads.
pub trait Prepared: Send + Sync {
    type Session: Session;

    /// Inputs in model order, with the concrete shapes and element types.
    fn inputs(&self) -> &[TensorDesc];
    /// Outputs in model order, with concrete shapes and element types.
    fn outputs(&self) -> &[TensorDesc];
    /// The model's label, for error messages.
    fn label(&self) -> &str;

    /// A session with its own preallocated input and output buffers.
    ///
    /// # Errors
    /// When the backend cannot create per-session state.
    fn session(&self) -> Result<Self::Session, BackendError>;

    /// Index of the input called `name`; resolve once, then address buffers by index.
    ///
    /// # Errors
    /// [`ShapeError::UnknownInput`] naming the inputs the model has.
    fn input_index(&self, name: &str) -> Result<usize, BackendError> {
        self.inputs()
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| {
                ShapeError::UnknownInput {
                    model: self.label().to_string(),
                    name: name.to_string(),
                    expected: describe(self.inputs()),
                }
                .into()
            })
    }

    /// Index of the output called `name`.
    ///
    /// # Errors
    /// [`ShapeError::MissingOutput`] naming the outputs the model has.
    fn output_index(&self, name: &str) -> Result<usize, BackendError> {
        self.outputs()
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| {
                ShapeError::MissingOutput {
                    model: self.label().to_string(),
                    name: name.to_string(),
                    expected: format!("`{name}`; the model has {}", describe(self.outputs())),
                }
                .into()
            })
    }
}

fn describe(descs: &[TensorDesc]) -> String {
    descs
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.name,
                crate::model::checkpoint::shape_string(&d.shape)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A mutable host view of an I/O buffer, typed.
#[derive(Debug)]
pub enum HostMut<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
}

/// A host view of an I/O buffer, typed.
#[derive(Clone, Copy, Debug)]
pub enum HostRef<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl HostMut<'_> {
    pub fn dtype(&self) -> ElemType {
        match self {
            HostMut::F32(_) => ElemType::F32,
            HostMut::F16(_) => ElemType::F16,
        }
    }

    /// Writes float32 values, converting to the buffer's type (round to nearest for f16).
    ///
    /// # Panics
    /// When `src` is not as long as the buffer (a caller's bug: shapes were fixed at prepare).
    pub fn copy_from_f32(&mut self, src: &[f32]) {
        match self {
            HostMut::F32(dst) => dst.copy_from_slice(src),
            HostMut::F16(dst) => {
                assert_eq!(dst.len(), src.len(), "buffer length");
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f16::from_f32(s);
                }
            }
        }
    }
}

impl HostRef<'_> {
    pub fn dtype(&self) -> ElemType {
        match self {
            HostRef::F32(_) => ElemType::F32,
            HostRef::F16(_) => ElemType::F16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostRef::F32(s) => s.len(),
            HostRef::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the values as float32 into `dst` (exact for both types).
    ///
    /// # Panics
    /// When `dst` is not as long as the buffer.
    pub fn copy_to_f32(&self, dst: &mut [f32]) {
        match self {
            HostRef::F32(src) => dst.copy_from_slice(src),
            HostRef::F16(src) => {
                assert_eq!(dst.len(), src.len(), "buffer length");
                for (d, s) in dst.iter_mut().zip(src.iter()) {
                    *d = s.to_f32();
                }
            }
        }
    }
}

/// Completion of an enqueued run.
pub trait Event: Send {
    /// Whether the run has finished (successfully or not); never blocks.
    fn is_complete(&self) -> bool;
    /// Blocks until the run has finished; the session's outputs are then valid.
    ///
    /// # Errors
    /// The run's failure.
    fn wait(self) -> Result<(), BackendError>;
}

/// The event of a run that finished before `enqueue` returned (synchronous backends).
#[derive(Debug)]
pub struct Completed(Result<(), BackendError>);

impl Completed {
    pub fn new(result: Result<(), BackendError>) -> Completed {
        Completed(result)
    }
}

impl Event for Completed {
    fn is_complete(&self) -> bool {
        true
    }

    fn wait(self) -> Result<(), BackendError> {
        self.0
    }
}

/// Per-stream state: fill inputs, enqueue, wait on the event, read outputs.
pub trait Session: Send {
    type Event: Event;

    /// Where this session's buffers live.
    fn memory(&self) -> Memory;

    /// Host view of input `index` (model order), of the prepared shape and element type.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] when the buffer is device memory the host cannot address.
    fn input(&mut self, index: usize) -> Result<HostMut<'_>, BackendError>;

    /// Host view of output `index`; valid once the event of the last run has completed.
    ///
    /// # Errors
    /// As [`Session::input`].
    fn output(&self, index: usize) -> Result<HostRef<'_>, BackendError>;

    /// Device address of input `index`, for kernels of the same device; `None` on the host.
    fn input_device_ptr(&self, _index: usize) -> Option<u64> {
        None
    }

    /// Device address of output `index`; `None` on the host.
    fn output_device_ptr(&self, _index: usize) -> Option<u64> {
        None
    }

    /// Starts a run on the current inputs. The inputs must not be touched and the outputs not
    /// read until the returned event has completed. Does not allocate once warmed up (on tract
    /// with [`recycle::Recycler`] as the global allocator: see that module).
    ///
    /// # Errors
    /// A failure to start the run; failures during it come from the event.
    fn enqueue(&mut self) -> Result<Self::Event, BackendError>;

    /// Enqueues a run and waits for it.
    ///
    /// # Errors
    /// As [`Session::enqueue`] and [`Event::wait`].
    fn run(&mut self) -> Result<(), BackendError> {
        self.enqueue()?.wait()
    }

    /// The float32 input `index`.
    ///
    /// # Errors
    /// [`BackendError::BufferType`] when the buffer is not float32; as [`Session::input`].
    fn input_f32(&mut self, index: usize) -> Result<&mut [f32], BackendError> {
        match self.input(index)? {
            HostMut::F32(s) => Ok(s),
            other => Err(BackendError::BufferType {
                tensor: format!("input {index}"),
                found: other.dtype(),
                expected: ElemType::F32,
            }),
        }
    }

    /// The float32 output `index`.
    ///
    /// # Errors
    /// As [`Session::input_f32`].
    fn output_f32(&self, index: usize) -> Result<&[f32], BackendError> {
        match self.output(index)? {
            HostRef::F32(s) => Ok(s),
            other => Err(BackendError::BufferType {
                tensor: format!("output {index}"),
                found: other.dtype(),
                expected: ElemType::F32,
            }),
        }
    }
}

/// Prepares `model` for the shapes of `inputs`, runs it once and returns every output by name
/// (as float32). For tools (`moda-edge infer`) and tests; pipelines keep their sessions.
///
/// # Errors
/// [`ShapeError`] (unknown, missing, mis-shaped or non-float input, naming what the model
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
                expected: format!("float32 ({})", model.describe_inputs()),
            }
            .into());
        }
    }
    let shapes: Vec<(&str, Vec<usize>)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.clone()))
        .collect();
    let prepared = backend.prepare(model, &PrepareOptions::shapes(&shapes))?;
    let mut session = prepared.session()?;
    fill_inputs(&prepared, &mut session, inputs)?;
    session.run()?;
    prepared
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, desc)| {
            let mut data = vec![0f32; desc.len()];
            session.output(i)?.copy_to_f32(&mut data);
            Ok((
                desc.name.clone(),
                crate::model::Tensor::f32(desc.shape.clone(), data),
            ))
        })
        .collect()
}

/// Copies named float32 host tensors into a session's input buffers, by the prepared input
/// names (converting to each buffer's element type).
///
/// # Errors
/// [`ShapeError::MissingInput`] when a prepared input has no tensor, [`ShapeError::BadDType`]
/// for a tensor that is not float32, [`ShapeError::BadShape`] for one of another shape, or
/// the session's buffer error.
pub fn fill_inputs<P: Prepared>(
    prepared: &P,
    session: &mut P::Session,
    inputs: &[(String, crate::model::Tensor)],
) -> Result<(), BackendError> {
    for (i, desc) in prepared.inputs().iter().enumerate() {
        let Some((_, t)) = inputs.iter().find(|(n, _)| *n == desc.name) else {
            return Err(ShapeError::MissingInput {
                model: prepared.label().to_string(),
                name: desc.name.clone(),
                expected: describe(prepared.inputs()),
            }
            .into());
        };
        let data = t.as_f32().ok_or_else(|| ShapeError::BadDType {
            model: prepared.label().to_string(),
            name: desc.name.clone(),
            found: t.dtype().to_string(),
            expected: "float32".into(),
        })?;
        if t.shape != desc.shape {
            return Err(ShapeError::BadShape {
                model: prepared.label().to_string(),
                name: desc.name.clone(),
                found: crate::model::checkpoint::shape_string(&t.shape),
                declared: crate::model::checkpoint::shape_string(&desc.shape),
            }
            .into());
        }
        session.input(i)?.copy_from_f32(data);
    }
    Ok(())
}
