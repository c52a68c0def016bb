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
//!   [`frame`]: the double-buffered frame stage; [`check`]: `moda-edge gpu-check`.

pub mod kernels;

#[cfg(test)]
mod host;

#[cfg(feature = "cuda")]
pub mod check;
#[cfg(feature = "cuda")]
pub mod device;
#[cfg(feature = "cuda")]
pub mod frame;
#[cfg(feature = "cuda")]
pub mod nvrtc;

#[cfg(feature = "cuda")]
pub use device::{Buffer, Gpu, GpuError, GpuErrorKind, GpuEvent, Stream};
