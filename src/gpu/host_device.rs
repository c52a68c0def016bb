//! The host frame device (feature `tensorrt-fake`, tests and CI only): the kernels of
//! `kernels/*.cu` compiled as C++ (`super::host`) run on the fake TensorRT's in-order streams,
//! on host buffers whose addresses stand for device addresses. With it the double-buffered
//! [`super::frame::GpuFrameStage`], with the fake TensorRT renderer, runs without a GPU: the
//! slots, streams, events, hand-offs and every kernel's arguments are exercised, and its
//! frames are compared with the CPU frame stage bit for bit.

use std::ffi::c_void;
use std::ptr::NonNull;

use super::frame::{Call, FrameBuffer, FrameDevice, FrameGpuError};
use crate::backend::tensorrt::fake_stream::{FakeEvent, FakeStream};

/// Host memory standing for device memory: 8-byte aligned, zero-filled, at a fixed address.
pub struct HostBuffer {
    ptr: NonNull<u64>,
    words: usize,
    len: usize,
}

// SAFETY: the buffer owns its allocation; the fake streams write it only between a launch and
// the event the frame stage waits for before touching the host side again.
unsafe impl Send for HostBuffer {}

impl HostBuffer {
    fn new(len: usize) -> HostBuffer {
        let words = len.div_ceil(8).max(1);
        let boxed = vec![0u64; words].into_boxed_slice();
        // `into_raw` keeps write permission for the kernels' raw pointers.
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u64>()).unwrap_or(NonNull::dangling());
        HostBuffer { ptr, words, len }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.words);
        // SAFETY: `ptr`/`words` came from `Box::into_raw` of a boxed slice of `words` u64 in
        // `new`, and are given back once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl FrameBuffer for HostBuffer {
    fn device_ptr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn host(&self) -> &[u8] {
        // SAFETY: the allocation holds `8·words ≥ len` initialised bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }

    fn host_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `host`; `&mut self` makes this the only view from Rust.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Kernels on the CPU, streams from the fake TensorRT.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFrameDevice;

fn device_error(e: impl std::fmt::Display) -> FrameGpuError {
    FrameGpuError::Device(format!("host device: {e}"))
}

impl FrameDevice for HostFrameDevice {
    type Buffer = HostBuffer;
    type Stream = FakeStream;
    type Event = FakeEvent;

    fn buffer(&self, bytes: usize) -> Result<HostBuffer, FrameGpuError> {
        Ok(HostBuffer::new(bytes))
    }

    fn stream(&self) -> Result<FakeStream, FrameGpuError> {
        FakeStream::new().map_err(device_error)
    }

    fn raw_stream(&self, stream: &FakeStream) -> *mut c_void {
        stream.raw()
    }

    fn upload(&self, _stream: &FakeStream, _buf: &HostBuffer) -> Result<(), FrameGpuError> {
        Ok(())
    }

    fn download(&self, _stream: &FakeStream, _buf: &mut HostBuffer) -> Result<(), FrameGpuError> {
        Ok(())
    }

    unsafe fn launch(&self, stream: &FakeStream, call: Call) -> Result<(), FrameGpuError> {
        stream.launch_host(move || {
            // SAFETY: the caller of `launch` guarantees that the addresses in `call` are of live
            // buffers of this device, large enough for the kernel, until the stream has passed
            // this point, which is when this job runs.
            unsafe { super::host::launch(call) }
        });
        Ok(())
    }

    fn record(&self, stream: &FakeStream) -> Result<FakeEvent, FrameGpuError> {
        Ok(stream.record())
    }

    fn wait(&self, event: &FakeEvent) -> Result<(), FrameGpuError> {
        event.synchronize().map_err(device_error)
    }

    fn synchronize(&self, stream: &FakeStream) -> Result<(), FrameGpuError> {
        stream.synchronize().map_err(device_error)
    }
}
