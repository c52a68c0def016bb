//! The network contract, the official checkpoint reader, the ONNX graph writer and the three
//! official architectures.
//!
//! Each architecture module (`moda`, `faco`, `renderer`) exposes the same four pieces:
//! - `Hparams::infer(&Checkpoint, …)`: hyper-parameters from tensor shapes,
//! - `Hparams::preset(Preset, …)`: the `release` and `tiny` sizes for `models init`,
//! - `specs(&Hparams) -> Vec<ParamSpec>`: every state_dict key, shape and dtype it expects,
//! - `build(&Checkpoint, &Hparams) -> Graph`: the ONNX graph from validated weights.
//!
//! [`import`] strings them together: read, infer, validate strictly, build.

pub mod checkpoint;
pub mod contract;
pub mod faco;
pub mod import;
pub mod moda;
pub mod nn;
pub mod onnx;
pub mod pickle;
pub mod renderer;
pub mod spec;
pub mod tensor;
pub mod torch_zip;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use contract::{DeclaredDim, ElemType, OnnxModel, ShapeError, TensorDecl, TensorDesc};
pub use tensor::{DType, Tensor, TensorData};
pub use torch_zip::{load_checkpoint, load_reference_image};

/// Sizes for `models init`: `release` has the official sizes (for benchmarks), `tiny` is small
/// enough for fast tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Release,
    Tiny,
}
