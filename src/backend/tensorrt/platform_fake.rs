//! The memory and stream platform of the fake build (feature `tensorrt-fake`): host buffers
//! whose addresses the fake shim reads and writes, and [fake streams](super::fake_stream).
//! The same surface as `platform_cuda.rs`, so `mod.rs` is written once.

use std::ffi::c_void;
use std::ptr::NonNull;

use super::fake_stream::{FakeEvent, FakeStream};
use crate::backend::Memory;

pub use super::fake_stream::FakeStream as Stream;
pub type Event = FakeEvent;

/// The fake device: host memory, no GPU.
pub struct Platform;

impl Platform {
    /// The fake device `ordinal` (any ordinal works).
    ///
    /// # Errors
    /// Never; the signature is the CUDA platform's.
    pub fn open(_ordinal: usize) -> Result<Platform, String> {
        Ok(Platform)
    }

    /// What a sidecar records as the GPU.
    pub fn gpu_name(&self) -> &str {
        "fake GPU (host memory)"
    }

    pub fn compute_capability(&self) -> (u32, u32) {
        (0, 0)
    }

    pub fn memory(&self) -> Memory {
        Memory::Host
    }

    /// A new stream with its worker thread.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn stream(&self) -> Result<Stream, String> {
        FakeStream::new().map_err(|e| format!("cannot start a fake stream thread: {e}"))
    }

    /// A zeroed buffer of `bytes` bytes, 8-byte aligned.
    ///
    /// # Errors
    /// Never (allocation failure aborts, as for any Rust allocation).
    pub fn buffer(&self, bytes: usize) -> Result<Buffer, String> {
        let words = bytes.div_ceil(8).max(1);
        let boxed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let raw = NonNull::from(Box::leak(boxed)).cast::<u64>();
        Ok(Buffer {
            raw,
            words,
            len: bytes,
        })
    }
}

/// A host buffer that a fake stream's worker writes through its address. It is owned through
/// a raw pointer (not a `Vec`) because the worker writes while no Rust reference to it exists.
pub struct Buffer {
    raw: NonNull<u64>,
    words: usize,
    len: usize,
}

// SAFETY: the buffer is plain owned memory; the worker thread touches it only between an
// enqueue and the completion the session waits for before handing out views again.
unsafe impl Send for Buffer {}

impl Buffer {
    /// The address TensorRT (the fake) reads or writes.
    pub fn address(&self) -> *mut c_void {
        self.raw.as_ptr().cast()
    }

    pub fn host(&self) -> &[u8] {
        // SAFETY: `raw` owns `words * 8 >= len` initialized bytes; no run is in flight while a
        // view exists (the session settles its stream before handing one out).
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().cast(), self.len) }
    }

    pub fn host_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `host`, and `&mut self` makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_ptr().cast(), self.len) }
    }

    /// No device address: the fake runs on the host.
    pub fn device_ptr(&self) -> Option<u64> {
        None
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.raw.as_ptr(), self.words);
        // SAFETY: `raw` and `words` came from `Box::leak` of a `Box<[u64]>` of that length.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Host memory needs no copies: these are the mapped-memory no-ops.
pub fn upload(_stream: &Stream, _buffer: &Buffer) -> Result<(), String> {
    Ok(())
}

/// As [`upload`].
pub fn download(_stream: &Stream, _buffer: &Buffer) -> Result<(), String> {
    Ok(())
}

/// `cudaEventRecord` on a fresh event.
///
/// # Errors
/// Never for the fake.
pub fn record(stream: &Stream) -> Result<Event, String> {
    Ok(stream.record())
}

/// `cudaStreamSynchronize`.
///
/// # Errors
/// The first failure of the stream's work.
pub fn synchronize(stream: &Stream) -> Result<(), String> {
    stream.synchronize()
}

/// `cudaEventQuery`: whether the work before `event` is done.
pub fn query(event: &Event) -> bool {
    event.query()
}

/// `cudaEventSynchronize`.
///
/// # Errors
/// The first failure of the work before `event`.
pub fn wait(event: &Event) -> Result<(), String> {
    event.synchronize()
}

/// The stream's handle for the shim (`cudaStream_t`).
pub fn raw(stream: &Stream) -> *mut c_void {
    stream.raw()
}
