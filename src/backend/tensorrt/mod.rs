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
//!
//! Engines are built offline by [`engine_build::build_engine`] (`moda-edge engine build`)
//! through the shim's builder ([`builder`]); with `tensorrt-fake`, [`fake_builder`] writes
//! fake engines the fake runtime runs, so build-then-run is tested without a GPU.

pub mod builder;
mod contract;
pub mod engine;
pub mod engine_build;
mod ffi;
mod handles;
mod session;
mod slots;

#[cfg(feature = "tensorrt-fake")]
pub mod fake;
#[cfg(feature = "tensorrt-fake")]
pub mod fake_builder;
#[cfg(feature = "tensorrt-fake")]
pub mod fake_engine;
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

use std::ffi::CString;
use std::sync::Arc;

use self::contract::Contract;
use self::engine::{EngineError, EngineFiles, EngineLookup, Target};
use self::handles::Runtime;
use self::platform::Platform;
use super::{Backend, BackendError, OnnxModel, Precision, PrepareOptions, TensorDesc};

pub use self::handles::ShimError;
pub use self::platform::Stream;
pub use self::session::{TensorRtEvent, TensorRtPrepared, TensorRtSession};
pub use self::slots::BoundContext;

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
    /// The precision engines must have been built for; `None` takes each engine's as it was
    /// built (the pipelines ask for float32, which then names the float32 engine only when
    /// one has to be built).
    pub precision: Option<Precision>,
}

/// TensorRT on one GPU.
#[derive(Clone)]
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

    /// The CUDA device ordinal it runs on.
    pub fn device(&self) -> usize {
        self.options.device
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
            precision: self.options.precision.unwrap_or(opts.precision),
            exact_precision: self.options.precision.is_some() || opts.precision != Precision::Fp32,
            inputs,
            onnx_sha256: model.sha256(),
        }
    }

    /// Checks the engine files, building a fake engine first when asked to.
    fn check_engine(
        &self,
        model: &OnnxModel,
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
            // A fake engine is cheap: one is written for every new shape (an offline render
            // prepares MODA for the clip's length).
            #[cfg(feature = "tensorrt-fake")]
            Err(EngineError::Missing { .. } | EngineError::Shapes { .. })
                if self.options.missing == MissingEngine::BuildFake =>
            {
                self.build_fake(model, files, target)?;
                engine::check(files, target)
                    .map(drop)
                    .map_err(prepare_error)
            }
            Err(e) => Err(prepare_error(e)),
        }
    }

    #[cfg(feature = "tensorrt-fake")]
    fn build_fake(
        &self,
        model: &OnnxModel,
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
        let shapes: Vec<(String, Vec<usize>)> = target
            .inputs
            .iter()
            .map(|d| (d.name.clone(), d.shape.clone()))
            .collect();
        fake::write_fake_engine(model, &shapes, target.precision, &files.engine)?;
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
        self.check_engine(model, &files, &target)?;
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
        // An engine that does not fit the contract (one built by hand for other shapes, without
        // a sidecar) gets the command that builds the right one, as a sidecar mismatch does.
        let rebuild = |detail: String| {
            prepare_error(format!(
                "{detail}; rebuild it: {}",
                engine::trtexec_command(&files, &target)
            ))
        };
        contract.check_inputs(&io, &inputs).map_err(rebuild)?;
        let outputs = contract.outputs(&engine, &io, &inputs).map_err(rebuild)?;
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
