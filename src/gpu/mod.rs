//! The GPU path's per-frame work and device plumbing.
//!
//! - [`kernels`]: the CUDA C sources (`kernels/*.cu`, one per stage), always compiled into the
//!   crate as text: NVRTC compiles them at start-up for the device's architecture, with
//!   `--fmad=false` and no fast math so that they match the Rust CPU stages bit for bit.
//! - `host` (tests only): the same sources compiled as C++ and run on the CPU, compared bit for
//!   bit with the Rust stages.
//! - With feature `cuda`: [`nvrtc`] compiles a kernel module to a cubin for the device's
//!   `sm_XY`, cached on disk; [`device`]: the context, streams, events and buffers over cudarc,
//!   loaded at run time so that a machine without libcuda gets an error, not a crash;
//!   [`cuda_frame`]: the kernels loaded and launched; [`check`]: `moda-edge gpu-check`.
//! - With `cuda` or `tensorrt-fake` (and in tests): [`frame`], the double-buffered frame stage over any
//!   [`frame::FrameDevice`]; with `tensorrt` or `tensorrt-fake`, [`live`]: that stage as the
//!   TensorRT backend's render stage in the live pipeline.

pub mod kernels;

#[cfg(any(test, feature = "tensorrt-fake"))]
mod host;
#[cfg(feature = "tensorrt-fake")]
pub mod host_device;
#[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
pub mod live;

#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
pub mod cuda_frame;
#[cfg(feature = "cuda")]
pub mod device;
#[cfg(any(test, feature = "cuda", feature = "tensorrt-fake"))]
pub mod frame;
#[cfg(feature = "cuda")]
pub mod nvrtc;

#[cfg(feature = "cuda")]
pub use device::{Buffer, Gpu, GpuError, GpuErrorKind, GpuEvent, Stream};
