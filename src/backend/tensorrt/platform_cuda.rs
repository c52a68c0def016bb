//! The memory and stream platform of the real build (feature `tensorrt`), over the `gpu`
//! module: one CUDA context, buffers, streams, events. The same surface as
//! `platform_fake.rs`, so `mod.rs` is written once.
//!
//! Written against the planned `crate::gpu` API (`Gpu`, `Buffer`, `Stream`, `GpuEvent`,
//! `GpuError`), which comes with another branch: adapt the calls here when it lands.
//!
//! Memory: on an integrated GPU (Jetson) a buffer is pinned, host-mapped memory, so the host
//! views and the device address are the same bytes and `upload`/`download` are no-ops. On a
//! discrete GPU a buffer is device memory with a pinned host mirror: the host views are the
//! mirror, copied to the device before each run and back after it on the session's stream.

use std::ffi::c_void;

use crate::backend::Memory;
use crate::gpu;

pub use crate::gpu::Stream;
pub type Event = gpu::GpuEvent;

/// One CUDA device.
pub struct Platform {
    gpu: gpu::Gpu,
}

impl Platform {
    /// Opens CUDA device `ordinal`.
    ///
    /// # Errors
    /// No driver, no such device: the `gpu` module's message.
    pub fn open(ordinal: usize) -> Result<Platform, String> {
        let gpu = gpu::Gpu::open(ordinal).map_err(|e| e.to_string())?;
        Ok(Platform { gpu })
    }

    pub fn gpu_name(&self) -> &str {
        self.gpu.name()
    }

    pub fn compute_capability(&self) -> (u32, u32) {
        self.gpu.compute_capability()
    }

    /// Mapped on an integrated GPU; device memory (with host mirrors) otherwise.
    pub fn memory(&self) -> Memory {
        if self.gpu.integrated() {
            Memory::Mapped
        } else {
            Memory::Device
        }
    }

    /// A new CUDA stream.
    ///
    /// # Errors
    /// The driver's message.
    pub fn stream(&self) -> Result<Stream, String> {
        self.gpu.stream().map_err(|e| e.to_string())
    }

    /// A buffer of `bytes` bytes (see the module doc for where it lives).
    ///
    /// # Errors
    /// Out of device or pinned memory.
    pub fn buffer(&self, bytes: usize) -> Result<Buffer, String> {
        self.gpu
            .buffer(bytes)
            .map(Buffer)
            .map_err(|e| format!("cannot allocate {bytes} bytes on the GPU: {e}"))
    }
}

/// A tensor's buffer: its device address goes to TensorRT.
pub struct Buffer(gpu::Buffer);

impl Buffer {
    /// The device address bound to the tensor.
    pub fn address(&self) -> *mut c_void {
        self.0.device_ptr() as usize as *mut c_void
    }

    pub fn host(&self) -> &[u8] {
        self.0.host()
    }

    pub fn host_mut(&mut self) -> &mut [u8] {
        self.0.host_mut()
    }

    pub fn device_ptr(&self) -> Option<u64> {
        Some(self.0.device_ptr())
    }
}

/// Copies the host mirror to the device on `stream` (no-op when mapped).
///
/// # Errors
/// The driver's message.
pub fn upload(stream: &Stream, buffer: &Buffer) -> Result<(), String> {
    stream.upload(&buffer.0).map_err(|e| e.to_string())
}

/// Copies the device buffer to its host mirror on `stream` (no-op when mapped).
///
/// # Errors
/// The driver's message.
pub fn download(stream: &Stream, buffer: &Buffer) -> Result<(), String> {
    stream.download(&buffer.0).map_err(|e| e.to_string())
}

/// An event recorded on `stream` after the work enqueued so far.
///
/// # Errors
/// The driver's message.
pub fn record(stream: &Stream) -> Result<Event, String> {
    stream.record().map_err(|e| e.to_string())
}

/// Waits for the work enqueued on `stream`.
///
/// # Errors
/// The first failure of that work (CUDA errors are sticky).
pub fn synchronize(stream: &Stream) -> Result<(), String> {
    stream.synchronize().map_err(|e| e.to_string())
}

/// Whether the work before `event` has finished; never blocks.
pub fn query(event: &Event) -> bool {
    event.query()
}

/// Waits for the work before `event`.
///
/// # Errors
/// The failure of that work.
pub fn wait(event: &Event) -> Result<(), String> {
    event.synchronize().map_err(|e| e.to_string())
}

/// The stream's `cudaStream_t`, for `enqueueV3`.
pub fn raw(stream: &Stream) -> *mut c_void {
    stream.raw()
}
