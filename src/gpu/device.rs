//! The CUDA device: one context on a chosen GPU, streams, events and I/O buffers, over cudarc's
//! driver API loaded at run time (feature `cuda`).
//!
//! cudarc panics when libcuda is missing or lacks a symbol, so [`Gpu::open`] first asks whether
//! the library loads at all and runs every first call under a panic guard: a machine without an
//! NVIDIA driver gets [`GpuError::NoDriver`], one line, never a crash.
//!
//! Memory follows the device kind, decided once at start-up:
//! - **integrated** (Jetson: CPU and GPU share DRAM, `CU_DEVICE_ATTRIBUTE_INTEGRATED` = 1): every
//!   buffer is pinned host memory mapped into the device (`CU_MEMHOSTALLOC_DEVICEMAP`, not
//!   write-combined, so the CPU reads it at full speed). Kernels, TensorRT and the sinks all
//!   address the same bytes; [`Stream::upload`] and [`Stream::download`] do nothing.
//! - **discrete**: device memory plus a pinned host mirror, copied asynchronously on the
//!   buffer's stream by [`Stream::upload`] / [`Stream::download`].
//!
//! All buffers are allocated when a pipeline starts; nothing on the per-frame path allocates.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaEvent, CudaStream, DriverError};

/// Errors of the CUDA device layer.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no CUDA driver: libcuda.so.1 could not be loaded (install the NVIDIA driver, or JetPack 6 \
         on a Jetson; otherwise run with backend = \"cpu\")"
    )]
    NoDriver,
    #[error("no CUDA device {ordinal}: this machine has {count}")]
    NoDevice { ordinal: usize, count: usize },
    #[error("CUDA {what} failed: {detail}")]
    Driver { what: &'static str, detail: String },
}

/// What the caller can do about a [`GpuError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuErrorKind {
    /// No driver or no such device: configuration or installation, not worth retrying.
    Fatal,
    /// A call failed on a working device: rebuild the streams and buffers (or restart).
    Rebuild,
}

impl GpuError {
    pub fn kind(&self) -> GpuErrorKind {
        match self {
            GpuError::NoDriver | GpuError::NoDevice { .. } => GpuErrorKind::Fatal,
            GpuError::Driver { .. } => GpuErrorKind::Rebuild,
        }
    }
}

fn driver(what: &'static str) -> impl FnOnce(DriverError) -> GpuError {
    move |e| GpuError::Driver {
        what,
        detail: format!("{e:?}"),
    }
}

/// Runs a first call into the driver with cudarc's panics turned into errors.
fn guarded<T>(what: &'static str, f: impl FnOnce() -> Result<T, GpuError>) -> Result<T, GpuError> {
    crate::backend::quiet_guarded_panics();
    crate::backend::catch_panic(f).unwrap_or_else(|detail| Err(GpuError::Driver { what, detail }))
}

/// Whether libcuda can be loaded on this machine (no device is touched).
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the library names cudarc knows and closes
    // the handle again; it touches no CUDA state.
    unsafe { sys::is_culib_present() }
}

/// One GPU: its context (the device's primary context), kind and identity.
#[derive(Clone)]
pub struct Gpu {
    ctx: Arc<CudaContext>,
    integrated: bool,
    name: String,
    compute_capability: (u32, u32),
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("ordinal", &self.ctx.ordinal())
            .field("name", &self.name)
            .field("integrated", &self.integrated)
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

impl Gpu {
    /// Opens device `ordinal`.
    ///
    /// # Errors
    /// [`GpuError::NoDriver`] without libcuda, [`GpuError::NoDevice`] when there is no such
    /// device, [`GpuError::Driver`] when the driver refuses (a panic of cudarc included).
    pub fn open(ordinal: usize) -> Result<Gpu, GpuError> {
        if !driver_present() {
            return Err(GpuError::NoDriver);
        }
        guarded("initialisation", || {
            let count = CudaContext::device_count().map_err(driver("device count"))?;
            let count = usize::try_from(count).unwrap_or(0);
            if ordinal >= count {
                return Err(GpuError::NoDevice { ordinal, count });
            }
            let ctx = CudaContext::new(ordinal).map_err(driver("context creation"))?;
            let attr = |a| ctx.attribute(a).map_err(driver("device attribute"));
            let integrated = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_INTEGRATED)? == 1;
            let can_map =
                attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)? == 1;
            let (major, minor) = ctx
                .compute_capability()
                .map_err(driver("compute capability"))?;
            let name = ctx.name().map_err(driver("device name"))?;
            Ok(Gpu {
                ctx,
                integrated: integrated && can_map,
                name,
                compute_capability: (major.max(0) as u32, minor.max(0) as u32),
            })
        })
    }

    /// Whether buffers are host memory mapped into the device (an integrated GPU).
    pub fn integrated(&self) -> bool {
        self.integrated
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn compute_capability(&self) -> (u32, u32) {
        self.compute_capability
    }

    /// `sm_XY` as a number (87 for Orin), the architecture kernels are compiled for.
    pub fn arch(&self) -> u32 {
        self.compute_capability.0 * 10 + self.compute_capability.1
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// A new non-blocking stream.
    ///
    /// # Errors
    /// When the driver cannot create one.
    pub fn stream(&self) -> Result<Stream, GpuError> {
        let inner = self.ctx.new_stream().map_err(driver("stream creation"))?;
        Ok(Stream {
            inner,
            integrated: self.integrated,
        })
    }

    /// An I/O buffer of `bytes` bytes (see the module documentation for where it lives),
    /// zero-filled on the host side.
    ///
    /// # Errors
    /// When the driver cannot allocate it.
    pub fn buffer(&self, bytes: usize) -> Result<Buffer, GpuError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver("binding the context"))?;
        let len = bytes.max(1);
        let flags = if self.integrated {
            sys::CU_MEMHOSTALLOC_DEVICEMAP
        } else {
            0
        };
        // SAFETY: the context is bound to this thread; the allocation is `len` bytes of pinned
        // host memory, zeroed below before any view of it is made.
        let host =
            unsafe { result::malloc_host(len, flags) }.map_err(driver("pinned allocation"))?;
        // SAFETY: `host` points to `len` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(host.cast::<u8>(), 0, len) };
        let (device, owns_device) = if self.integrated {
            let mut dptr: sys::CUdeviceptr = 0;
            // SAFETY: `host` was allocated with CU_MEMHOSTALLOC_DEVICEMAP in the bound context;
            // the call writes the device address of the mapping into `dptr`.
            let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dptr, host, 0) }.result();
            if let Err(e) = r {
                // SAFETY: `host` came from `malloc_host` and has no other owner yet.
                let _ = unsafe { result::free_host(host) };
                return Err(driver("mapping pinned memory")(e));
            }
            (dptr, false)
        } else {
            // SAFETY: the context is bound; the device memory is owned by the returned buffer.
            match unsafe { result::malloc_sync(len) } {
                Ok(d) => (d, true),
                Err(e) => {
                    // SAFETY: as above.
                    let _ = unsafe { result::free_host(host) };
                    return Err(driver("device allocation")(e));
                }
            }
        };
        Ok(Buffer {
            ctx: Arc::clone(&self.ctx),
            host: host.cast(),
            device,
            owns_device,
            len: bytes,
        })
    }
}

/// A CUDA stream of the device; work on one stream runs in order.
pub struct Stream {
    inner: Arc<CudaStream>,
    integrated: bool,
}

impl Stream {
    /// The `CUstream`, which is TensorRT's `cudaStream_t` (the same type).
    pub fn raw(&self) -> *mut c_void {
        self.inner.cu_stream().cast()
    }

    pub fn cuda(&self) -> &Arc<CudaStream> {
        &self.inner
    }

    /// Queues the copy of the buffer's host side to the device (nothing on an integrated GPU).
    ///
    /// # Errors
    /// When the driver refuses the copy.
    pub fn upload(&self, buf: &Buffer) -> Result<(), GpuError> {
        if self.integrated || !buf.owns_device {
            return Ok(());
        }
        // SAFETY: both sides are `buf.len` bytes owned by `buf`, which outlives the copy as
        // long as the caller keeps it until the stream has passed this point (every pipeline
        // allocates its buffers at start and frees them after synchronizing); the host side is
        // pinned, so the asynchronous copy reads it in place.
        unsafe { result::memcpy_htod_async(buf.device, buf.host(), self.inner.cu_stream()) }
            .map_err(driver("host-to-device copy"))
    }

    /// Queues the copy of the buffer's device side to its host side (nothing on an integrated
    /// GPU). The host side is valid once an event recorded after this has completed; until
    /// then the caller must not read it (the copy writes it through the buffer's own pointer,
    /// which is why a shared reference is enough).
    ///
    /// # Errors
    /// When the driver refuses the copy.
    pub fn download(&self, buf: &Buffer) -> Result<(), GpuError> {
        if self.integrated || !buf.owns_device {
            return Ok(());
        }
        // SAFETY: the destination is the buffer's pinned host allocation of `buf.len` bytes and
        // the source its device allocation of the same size, both owned by `buf`, which the
        // caller keeps alive (and does not read) until an event recorded after this copy has
        // completed.
        unsafe {
            sys::cuMemcpyDtoHAsync_v2(buf.host.cast(), buf.device, buf.len, self.inner.cu_stream())
        }
        .result()
        .map_err(driver("device-to-host copy"))
    }

    /// Records an event after the work queued so far.
    ///
    /// # Errors
    /// When the driver cannot create or record it.
    pub fn record(&self) -> Result<GpuEvent, GpuError> {
        let event = self
            .inner
            .record_event(None)
            .map_err(driver("event record"))?;
        Ok(GpuEvent(event))
    }

    /// Makes later work on this stream wait for `event` (a hand-off between streams; the host
    /// does not block).
    ///
    /// # Errors
    /// When the driver refuses.
    pub fn wait(&self, event: &GpuEvent) -> Result<(), GpuError> {
        self.inner.wait(&event.0).map_err(driver("stream wait"))
    }

    /// Blocks until everything queued on the stream has finished.
    ///
    /// # Errors
    /// The failure of any queued work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.inner
            .synchronize()
            .map_err(driver("stream synchronize"))
    }
}

/// A point in a stream's work.
pub struct GpuEvent(CudaEvent);

impl GpuEvent {
    /// Whether the work before the event has finished; never blocks.
    pub fn query(&self) -> bool {
        self.0.is_complete()
    }

    /// Blocks until the work before the event has finished.
    ///
    /// # Errors
    /// The failure of that work.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.0.synchronize().map_err(driver("event synchronize"))
    }
}

/// Bytes the device and the host both reach: one allocation on an integrated GPU, a device
/// allocation plus a pinned mirror on a discrete one.
pub struct Buffer {
    ctx: Arc<CudaContext>,
    host: *mut u8,
    device: sys::CUdeviceptr,
    owns_device: bool,
    len: usize,
}

// SAFETY: the buffer owns its allocations; the raw pointers are not shared with other Rust
// values, and access from the host goes through `&self` / `&mut self`.
unsafe impl Send for Buffer {}
// SAFETY: shared references only give out `&[u8]`.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// The device address (of the mapping on an integrated GPU).
    pub fn device_ptr(&self) -> u64 {
        self.device
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host side. On an integrated GPU this is the memory kernels write: read it only after
    /// the producing stream's event has completed.
    pub fn host(&self) -> &[u8] {
        // SAFETY: `host` points to at least `len` bytes (allocated as max(len, 1)) that live
        // as long as `self`, initialised at allocation.
        unsafe { std::slice::from_raw_parts(self.host, self.len) }
    }

    pub fn host_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `host`, and `&mut self` makes this the only host view.
        unsafe { std::slice::from_raw_parts_mut(self.host, self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        if self.owns_device {
            // SAFETY: `device` came from `malloc_sync` in this context and is freed once.
            let _ = unsafe { result::free_sync(self.device) };
        }
        // SAFETY: `host` came from `malloc_host` in this context and is freed once.
        let _ = unsafe { result::free_host(self.host.cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without the driver (this one and CI) `open` is one clear error; on a GPU
    /// machine it opens device 0 and a buffer round-trips through the device.
    #[test]
    fn open_reports_a_missing_driver_or_works() {
        match Gpu::open(0) {
            Err(GpuError::NoDriver) => {
                let msg = GpuError::NoDriver.to_string();
                assert!(msg.contains("libcuda.so.1") && msg.contains("backend = \"cpu\""));
                assert!(!driver_present());
            }
            Err(GpuError::NoDevice { count: 0, .. }) => {}
            Err(e) => panic!("unexpected: {e}"),
            Ok(gpu) => {
                let stream = gpu.stream().unwrap();
                let mut buf = gpu.buffer(4096).unwrap();
                buf.host_mut()
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b = i as u8);
                stream.upload(&buf).unwrap();
                buf.host_mut().fill(0);
                stream.download(&buf).unwrap();
                let done = stream.record().unwrap();
                done.synchronize().unwrap();
                assert!(done.query());
                if gpu.integrated() {
                    assert!(buf.host().iter().all(|&b| b == 0));
                } else {
                    assert!(buf.host().iter().enumerate().all(|(i, &b)| b == i as u8));
                }
                assert!(matches!(
                    Gpu::open(1000),
                    Err(GpuError::NoDevice { ordinal: 1000, .. })
                ));
            }
        }
    }
}
