//! The backend a command or the service runs on, chosen by name (`--backend cpu|tensorrt`,
//! config key `backend`).
//!
//! TensorRT engines are looked up beside the ONNX files they were built from
//! (`models/renderer.onnx` → `models/renderer.engine`, see [`super::tensorrt::engine`]); a
//! missing or mismatched one is one error line with the command that builds the right one. A
//! build without feature `tensorrt` (or its test stand-in `tensorrt-fake`) says so in one line.

use super::{BackendError, OnnxModel, Precision, TensorDesc};

/// Where the TensorRT backend runs and what its engines must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TensorRtChoice {
    /// CUDA device ordinal.
    pub device: usize,
    /// The precision engines must have been built for; `None` uses each as built.
    pub precision: Option<Precision>,
}

#[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
pub use super::tensorrt::TensorRtBackend;

/// Opens the TensorRT backend. In a `tensorrt-fake` build (tests and CI only) a missing engine
/// is written as a fake engine instead, so the whole command runs through the backend's code.
///
/// # Errors
/// [`BackendError::Unavailable`] without a GPU or TensorRT, naming what is missing.
#[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
pub fn open_tensorrt(choice: TensorRtChoice) -> Result<TensorRtBackend, BackendError> {
    use super::tensorrt::{engine::EngineLookup, MissingEngine, TensorRtOptions};
    #[cfg(feature = "tensorrt-fake")]
    let missing = {
        log::info!("tensorrt: the fake TensorRT of a test build (tract on the CPU); missing engines are written as fake ones");
        MissingEngine::BuildFake
    };
    #[cfg(not(feature = "tensorrt-fake"))]
    let missing = MissingEngine::Fail;
    TensorRtBackend::new(TensorRtOptions {
        device: choice.device,
        lookup: EngineLookup::BesideOnnx,
        missing,
        precision: choice.precision,
    })
}

/// The error of `--backend tensorrt` in a build without TensorRT.
pub fn tensorrt_not_built() -> BackendError {
    BackendError::Unavailable {
        backend: "tensorrt",
        source: "this build has no TensorRT backend: build it on the Jetson with \
                 `cargo build --release --features jetson` (JetPack 6), or use the cpu backend"
            .into(),
    }
}

/// The `trtexec` command that builds `model`'s engine beside its ONNX file for `inputs` (the
/// concrete shapes) at `precision`; the runtime then finds it there.
pub fn trtexec_beside(model: &OnnxModel, inputs: &[TensorDesc], precision: Precision) -> String {
    let onnx = std::path::PathBuf::from(&model.label);
    let engine = onnx.with_extension("engine");
    let shapes = inputs
        .iter()
        .map(|d| {
            let dims: Vec<String> = d.shape.iter().map(ToString::to_string).collect();
            format!("{}:{}", d.name, dims.join("x"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let flag = match precision {
        Precision::Fp32 => "",
        Precision::Fp16 => " --fp16",
        Precision::Int8 => " --int8",
    };
    format!(
        "trtexec --onnx={} --saveEngine={} --shapes={shapes}{flag}",
        onnx.display(),
        engine.display()
    )
}
