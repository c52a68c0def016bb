//! The TensorRT 10 backend: prebuilt engines run through the in-tree C++ shim
//! (`shim/moda_trt.h`, declared in [`ffi`]).
//!
//! ```text
//! prepare(model, shapes, precision)
//!   engine::check      models/x.engine + x.engine.json fit this TensorRT, GPU, shapes, ONNX?
//!   Runtime::deserialize  ─▶ Engine ─ IO tensors checked against the ONNX contract
//! session()            buffers (one per tensor) + Context (addresses bound) + Stream
//! enqueue()            upload inputs, enqueueV3, download outputs, record an event; returns
//!                      before the device is done
//! ```
//!
//! The platform under the shim (memory, streams, events) is `platform_cuda.rs` over the
//! `gpu` module with feature `tensorrt`, and `platform_fake.rs` (host memory, fake streams)
//! with `tensorrt-fake`, where [`fake`] implements the shim's functions in Rust over tract.
//! Everything `unsafe` of the backend lives in this folder.

pub mod engine;
mod ffi;
mod handles;

#[cfg(feature = "tensorrt-fake")]
pub mod fake;
#[cfg(feature = "tensorrt-fake")]
pub mod fake_stream;

#[cfg(feature = "tensorrt")]
#[path = "platform_cuda.rs"]
mod platform;
#[cfg(feature = "tensorrt-fake")]
#[path = "platform_fake.rs"]
mod platform;

#[cfg(all(test, feature = "tensorrt-fake"))]
mod tests;

use std::cell::Cell;
use std::ffi::CString;
use std::sync::Arc;

use self::engine::{EngineError, EngineFiles, EngineLookup, Target};
use self::handles::{Context, Engine, IoTensor, Runtime};
use self::platform::{Buffer, Platform};
use super::{
    f16, Backend, BackendError, ElemType, HostMut, HostRef, Memory, OnnxModel, PrepareOptions,
    Prepared, Session, TensorDesc,
};
use crate::model::contract::DeclaredDim;

pub use self::handles::ShimError;
pub use self::platform::Stream;

const NAME: &str = "tensorrt";

/// What to do when a model has no engine yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingEngine {
    /// Refuse, printing the command that builds it.
    #[default]
    Fail,
    /// Write a fake engine and its sidecar, then load it (tests; the fake's `engine build`).
    #[cfg(feature = "tensorrt-fake")]
    BuildFake,
}

/// Everything [`TensorRtBackend::new`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// CUDA device ordinal.
    pub device: usize,
    pub lookup: EngineLookup,
    pub missing: MissingEngine,
}

/// TensorRT on one GPU.
pub struct TensorRtBackend {
    options: TensorRtOptions,
    platform: Arc<Platform>,
    runtime: Arc<Runtime>,
}

fn unavailable(detail: String) -> BackendError {
    BackendError::Unavailable {
        backend: NAME,
        source: detail.into(),
    }
}

impl TensorRtBackend {
    /// Opens the GPU and libnvinfer.so.10.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] naming what is missing (no GPU, no TensorRT).
    pub fn new(options: TensorRtOptions) -> Result<TensorRtBackend, BackendError> {
        let platform = Platform::open(options.device).map_err(unavailable)?;
        let runtime = Runtime::create().map_err(|e| unavailable(e.message))?;
        log::info!(
            "tensorrt: TensorRT {} on {} (compute {}.{}), engines {:?}",
            runtime.version(),
            platform.gpu_name(),
            platform.compute_capability().0,
            platform.compute_capability().1,
            options.lookup
        );
        Ok(TensorRtBackend {
            options,
            platform: Arc::new(platform),
            runtime: Arc::new(runtime),
        })
    }

    /// The loaded TensorRT version, `10.3.0`.
    pub fn version(&self) -> &str {
        self.runtime.version()
    }

    /// Where the engine of `model` is looked for.
    pub fn engine_files(&self, model: &OnnxModel) -> EngineFiles {
        self.options.lookup.files(&model.label)
    }

    fn target<'a>(
        &'a self,
        model: &'a OnnxModel,
        opts: &PrepareOptions,
        inputs: &'a [TensorDesc],
    ) -> Target<'a> {
        Target {
            tensorrt_version: self.runtime.version(),
            gpu_name: self.platform.gpu_name(),
            compute_capability: self.platform.compute_capability(),
            precision: opts.precision,
            inputs,
            onnx_sha256: model.sha256(),
        }
    }

    /// Checks the engine files, building a fake engine first when asked to.
    fn check_engine(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
        files: &EngineFiles,
        target: &Target<'_>,
    ) -> Result<(), BackendError> {
        let prepare_error = |e: EngineError| BackendError::Prepare {
            model: model.label.clone(),
            backend: NAME,
            source: e.into(),
        };
        match engine::check(files, target) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                log::warn!(
                    "tensorrt: {} has no sidecar {}: cannot check the TensorRT version, GPU and \
                     ONNX it was built from; relying on TensorRT and the IO check",
                    files.engine.display(),
                    files.sidecar.display()
                );
                Ok(())
            }
            #[cfg(feature = "tensorrt-fake")]
            Err(EngineError::Missing { .. })
                if self.options.missing == MissingEngine::BuildFake =>
            {
                self.build_fake(model, opts, files, target)?;
                engine::check(files, target)
                    .map(drop)
                    .map_err(prepare_error)
            }
            Err(e) => {
                let _ = opts;
                Err(prepare_error(e))
            }
        }
    }

    #[cfg(feature = "tensorrt-fake")]
    fn build_fake(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
        files: &EngineFiles,
        target: &Target<'_>,
    ) -> Result<(), BackendError> {
        if let Some(dir) = files.engine.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BackendError::Prepare {
                model: model.label.clone(),
                backend: NAME,
                source: format!("cannot create {}: {e}", dir.display()).into(),
            })?;
        }
        fake::write_fake_engine(model, &opts.shapes, opts.precision, &files.engine)?;
        let sidecar = engine::Sidecar::for_build(target, std::time::SystemTime::now());
        engine::write_sidecar(&files.sidecar, &sidecar).map_err(|e| BackendError::Prepare {
            model: model.label.clone(),
            backend: NAME,
            source: e.into(),
        })
    }
}

impl Backend for TensorRtBackend {
    type Prepared = TensorRtPrepared;

    fn name(&self) -> &'static str {
        NAME
    }

    fn platform(&self) -> String {
        let (major, minor) = self.platform.compute_capability();
        format!(
            "tensorrt-{}/{}/sm_{major}{minor}",
            self.runtime.version(),
            self.platform.gpu_name()
        )
    }

    fn prepare(
        &self,
        model: &OnnxModel,
        opts: &PrepareOptions,
    ) -> Result<TensorRtPrepared, BackendError> {
        let inputs = model.resolve_shapes(&opts.shapes)?;
        let files = self.engine_files(model);
        let target = self.target(model, opts, &inputs);
        self.check_engine(model, opts, &files, &target)?;
        let prepare_error = |detail: String| BackendError::Prepare {
            model: model.label.clone(),
            backend: NAME,
            source: detail.into(),
        };
        let bytes = std::fs::read(&files.engine)
            .map_err(|e| prepare_error(format!("cannot read {}: {e}", files.engine.display())))?;
        let engine = self.runtime.deserialize(&bytes).map_err(|e| {
            prepare_error(format!(
                "cannot load {}: {}; rebuild it: {}",
                files.engine.display(),
                e.message,
                engine::trtexec_command(&files, &target)
            ))
        })?;
        let engine = Arc::new(engine);
        let io = engine
            .io()
            .map_err(|e| prepare_error(format!("{}: {}", files.engine.display(), e.message)))?;
        let contract = Contract {
            model,
            files: &files,
        };
        contract
            .check_inputs(&io, &inputs)
            .map_err(&prepare_error)?;
        let outputs = contract
            .outputs(&engine, &io, &inputs)
            .map_err(&prepare_error)?;
        let names = |descs: &[TensorDesc]| -> Result<Vec<CString>, BackendError> {
            descs
                .iter()
                .map(|d| {
                    CString::new(d.name.as_str()).map_err(|_| {
                        prepare_error(format!("tensor name `{}` holds a NUL byte", d.name))
                    })
                })
                .collect()
        };
        Ok(TensorRtPrepared {
            label: Arc::from(model.label.as_str()),
            input_names: names(&inputs)?,
            output_names: names(&outputs)?,
            inputs,
            outputs,
            engine,
            platform: Arc::clone(&self.platform),
        })
    }
}

/// The ONNX contract an engine's IO tensors must match.
struct Contract<'a> {
    model: &'a OnnxModel,
    files: &'a EngineFiles,
}

fn elem_type(dtype: i32) -> ElemType {
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

fn shape_dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&s| s as i64).collect()
}

impl Contract<'_> {
    fn engine(&self) -> String {
        self.files.engine.display().to_string()
    }

    /// The engine's inputs are the model's, with the same element types, and shapes that
    /// admit the prepared ones (-1 in the engine admits any size).
    fn check_inputs(&self, io: &[IoTensor], inputs: &[TensorDesc]) -> Result<(), String> {
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
                    dims_string(&shape_dims(&d.shape))
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
                    dims_string(&shape_dims(&d.shape))
                ));
            }
        }
        Ok(())
    }

    /// The engine's outputs in the model's order, with their concrete shapes for `inputs`
    /// (asked of a probe context, since a dynamic engine knows them only there).
    fn outputs(
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
                let declared: Vec<String> = decl
                    .dims
                    .iter()
                    .map(|d| match d {
                        DeclaredDim::Fixed(f) => f.to_string(),
                        DeclaredDim::Sym(s) => s.clone(),
                    })
                    .collect();
                return Err(format!(
                    "{}: output `{}` has shape {} in the engine, expected [{}]",
                    self.engine(),
                    decl.name,
                    dims_string(&dims),
                    declared.join(", ")
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

fn set_input_shapes(context: &mut Context, inputs: &[TensorDesc]) -> Result<(), String> {
    for d in inputs {
        let name = CString::new(d.name.as_str())
            .map_err(|_| format!("input name `{}` holds a NUL byte", d.name))?;
        context
            .set_input_shape(&name, &shape_dims(&d.shape))
            .map_err(|e| e.message)?;
    }
    Ok(())
}

/// An engine checked against its model; immutable and shared by sessions.
pub struct TensorRtPrepared {
    label: Arc<str>,
    inputs: Vec<TensorDesc>,
    outputs: Vec<TensorDesc>,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
    engine: Arc<Engine>,
    platform: Arc<Platform>,
}

fn elem_size(t: ElemType) -> usize {
    match t {
        ElemType::F16 => 2,
        _ => 4,
    }
}

impl TensorRtPrepared {
    /// A session whose runs are enqueued on `stream` (shared with other stages, which then
    /// run in order with it) instead of a stream of its own.
    ///
    /// # Errors
    /// As [`Prepared::session`].
    pub fn session_on(&self, stream: Stream) -> Result<TensorRtSession, BackendError> {
        let run_error = |detail: String| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        };
        let mut context = self.engine.context().map_err(|e| run_error(e.message))?;
        set_input_shapes(&mut context, &self.inputs).map_err(&run_error)?;
        let alloc = |descs: &[TensorDesc]| -> Result<Vec<Buffer>, BackendError> {
            descs
                .iter()
                .map(|d| {
                    self.platform
                        .buffer(d.len() * elem_size(d.dtype))
                        .map_err(&run_error)
                })
                .collect()
        };
        let inputs = alloc(&self.inputs)?;
        let outputs = alloc(&self.outputs)?;
        let bindings = self
            .input_names
            .iter()
            .zip(&inputs)
            .chain(self.output_names.iter().zip(&outputs));
        for (name, buffer) in bindings {
            // SAFETY: the buffer holds the tensor's bytes (allocated above for its shape and
            // element type) and lives in the session with the context; the session settles its
            // stream before dropping them or handing out host views.
            unsafe { context.set_tensor_address(name, buffer.address()) }
                .map_err(|e| run_error(e.message))?;
        }
        Ok(TensorRtSession {
            context,
            stream,
            inputs,
            outputs,
            input_types: self.inputs.iter().map(|d| d.dtype).collect(),
            output_types: self.outputs.iter().map(|d| d.dtype).collect(),
            memory: self.platform.memory(),
            label: Arc::clone(&self.label),
            pending: Cell::new(false),
        })
    }
}

impl Prepared for TensorRtPrepared {
    type Session = TensorRtSession;

    fn inputs(&self) -> &[TensorDesc] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorDesc] {
        &self.outputs
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn session(&self) -> Result<TensorRtSession, BackendError> {
        let stream = self.platform.stream().map_err(|detail| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        })?;
        self.session_on(stream)
    }
}

/// Buffers bound by name to an execution context, and the stream runs go to.
pub struct TensorRtSession {
    // Dropped first (after `Drop::drop` has settled the stream), before its buffers.
    context: Context,
    stream: Stream,
    inputs: Vec<Buffer>,
    outputs: Vec<Buffer>,
    input_types: Vec<ElemType>,
    output_types: Vec<ElemType>,
    memory: Memory,
    label: Arc<str>,
    /// A run may be in flight: views wait for the stream first.
    pending: Cell<bool>,
}

impl TensorRtSession {
    /// The stream this session enqueues on (to order other work after its runs).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Waits for the stream when a run may be in flight, so that no host view aliases a buffer
    /// the device (or the fake's worker) is using.
    fn settle(&self) -> Result<(), BackendError> {
        if self.pending.get() {
            platform::synchronize(&self.stream).map_err(|detail| self.run_error(detail))?;
            self.pending.set(false);
        }
        Ok(())
    }

    fn run_error(&self, detail: String) -> BackendError {
        BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        }
    }
}

fn typed_mut(bytes: &mut [u8], dtype: ElemType) -> Option<HostMut<'_>> {
    match dtype {
        ElemType::F32 => {
            // SAFETY: every bit pattern is a valid f32; `align_to_mut` only yields aligned
            // elements, and a non-empty prefix is refused below.
            let (pre, mid, post) = unsafe { bytes.align_to_mut::<f32>() };
            (pre.is_empty() && post.is_empty()).then_some(HostMut::F32(mid))
        }
        ElemType::F16 => {
            // SAFETY: as above, for f16 (any 16 bits are a valid f16).
            let (pre, mid, post) = unsafe { bytes.align_to_mut::<f16>() };
            (pre.is_empty() && post.is_empty()).then_some(HostMut::F16(mid))
        }
        ElemType::Other(_) => None,
    }
}

fn typed(bytes: &[u8], dtype: ElemType) -> Option<HostRef<'_>> {
    match dtype {
        ElemType::F32 => {
            // SAFETY: as in `typed_mut`.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            (pre.is_empty() && post.is_empty()).then_some(HostRef::F32(mid))
        }
        ElemType::F16 => {
            // SAFETY: as in `typed_mut`.
            let (pre, mid, post) = unsafe { bytes.align_to::<f16>() };
            (pre.is_empty() && post.is_empty()).then_some(HostRef::F16(mid))
        }
        ElemType::Other(_) => None,
    }
}

impl Session for TensorRtSession {
    type Event = TensorRtEvent;

    fn memory(&self) -> Memory {
        self.memory
    }

    /// Waits for a run in flight first.
    fn input(&mut self, index: usize) -> Result<HostMut<'_>, BackendError> {
        self.settle()?;
        let dtype = self.input_types[index];
        typed_mut(self.inputs[index].host_mut(), dtype).ok_or_else(|| BackendError::Unsupported {
            backend: NAME,
            what: format!("a host view of input {index} ({dtype}, or an unaligned buffer)"),
        })
    }

    /// Waits for a run in flight first.
    fn output(&self, index: usize) -> Result<HostRef<'_>, BackendError> {
        self.settle()?;
        let dtype = self.output_types[index];
        typed(self.outputs[index].host(), dtype).ok_or_else(|| BackendError::Unsupported {
            backend: NAME,
            what: format!("a host view of output {index} ({dtype}, or an unaligned buffer)"),
        })
    }

    fn input_device_ptr(&self, index: usize) -> Option<u64> {
        self.inputs.get(index)?.device_ptr()
    }

    fn output_device_ptr(&self, index: usize) -> Option<u64> {
        self.outputs.get(index)?.device_ptr()
    }

    /// Uploads the inputs (no-op on mapped memory), enqueues the engine and the downloads,
    /// records an event and returns without waiting. Allocates nothing but the platform's
    /// event.
    fn enqueue(&mut self) -> Result<TensorRtEvent, BackendError> {
        for b in &self.inputs {
            platform::upload(&self.stream, b).map_err(|d| self.run_error(d))?;
        }
        // SAFETY: `stream` is this session's live stream; every bound address is one of the
        // session's buffers, which live as long as the context and are not handed out as host
        // views until the stream has been settled after this run (`pending`).
        unsafe { self.context.enqueue(platform::raw(&self.stream)) }
            .map_err(|e| self.run_error(e.message))?;
        self.pending.set(true);
        for b in &self.outputs {
            platform::download(&self.stream, b).map_err(|d| self.run_error(d))?;
        }
        let event = platform::record(&self.stream).map_err(|d| self.run_error(d))?;
        Ok(TensorRtEvent {
            event,
            label: Arc::clone(&self.label),
        })
    }
}

impl Drop for TensorRtSession {
    fn drop(&mut self) {
        if self.pending.get() {
            if let Err(e) = platform::synchronize(&self.stream) {
                log::warn!("tensorrt: the last run of {} failed: {e}", self.label);
            }
        }
    }
}

/// Completion of a run on the session's stream.
pub struct TensorRtEvent {
    event: platform::Event,
    label: Arc<str>,
}

impl super::Event for TensorRtEvent {
    fn is_complete(&self) -> bool {
        platform::query(&self.event)
    }

    fn wait(self) -> Result<(), BackendError> {
        platform::wait(&self.event).map_err(|detail| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        })
    }
}
