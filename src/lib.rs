//! moda-edge: the MODA talking-portrait system (audio → motion → face mesh → rendered portrait)
//! for NVIDIA Jetson Orin, with a pure-Rust CPU backend that runs the same ONNX graphs.
//!
//! The module boundaries and the data that crosses them are described in
//! `docs/architecture.md`: `model` and `face` know nothing of devices, devices know nothing of
//! networks, and only `backend` (and the graph writer in `model`) touches the inference runtime.

#[cfg(all(feature = "tensorrt", feature = "tensorrt-fake"))]
compile_error!("features `tensorrt` and `tensorrt-fake` exclude each other: pick one");

pub mod audio;
pub mod backend;
pub mod bench;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod draw;
pub mod face;
pub mod gpu;
pub mod model;
pub mod motion;
pub mod offline;
pub mod pipeline;
pub mod quant;
pub mod sink;
pub mod util;

/// The unit tests run on the recycling allocator the binaries install, so every test that runs
/// a session also exercises it.
#[cfg(test)]
#[global_allocator]
static ALLOC: backend::recycle::Recycler = backend::recycle::Recycler;
