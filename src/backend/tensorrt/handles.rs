//! Owned handles over the shim's C interface ([`super::ffi`]): each raw handle lives in a
//! newtype whose `Drop` destroys it, and each keeps its parent alive (a context its engine, an
//! engine its runtime), so TensorRT objects are destroyed children first.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use super::ffi;

/// A failed shim call: its code and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShimError {
    pub code: c_int,
    pub message: String,
}

impl ShimError {
    /// The library is missing (no TensorRT on this machine).
    pub fn is_no_library(&self) -> bool {
        self.code == ffi::NO_LIBRARY
    }
}

/// Size of the message buffer handed to every call.
const ERR_LEN: usize = 1024;

/// Runs one shim call with a message buffer; a code other than OK becomes a [`ShimError`].
pub(super) fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), ShimError> {
    let mut buf = [0 as c_char; ERR_LEN];
    let code = f(buf.as_mut_ptr(), ERR_LEN);
    if code == ffi::OK {
        return Ok(());
    }
    buf[ERR_LEN - 1] = 0;
    // SAFETY: `buf` is NUL-terminated (its last byte was just set to 0).
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
    let mut message = text.to_string_lossy().into_owned();
    if message.is_empty() {
        message = format!("TensorRT shim call failed with code {code} and no message");
    }
    Err(ShimError { code, message })
}

/// A TensorRT runtime (libnvinfer opened, logger installed).
pub struct Runtime {
    raw: NonNull<ffi::moda_trt_runtime>,
    version: String,
    /// Serializes deserialization: the shim's contract does not promise that one runtime
    /// deserializes on two threads at once.
    deserialize: Mutex<()>,
}

// SAFETY: the runtime handle is only used through `&self` methods that either read immutable
// state (the version, read once at creation) or hold `deserialize`'s lock; TensorRT's runtime
// is not tied to the thread that created it.
unsafe impl Send for Runtime {}
// SAFETY: as above: concurrent use goes through the lock.
unsafe impl Sync for Runtime {}

impl Runtime {
    /// Opens libnvinfer.so.10 and creates a runtime.
    ///
    /// # Errors
    /// The shim's message; [`ShimError::is_no_library`] when TensorRT is not installed.
    pub fn create() -> Result<Runtime, ShimError> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer; the message buffer comes from `call`.
        call(|err, len| unsafe { ffi::moda_trt_runtime_create(&mut raw, err, len) })?;
        let raw = NonNull::new(raw).ok_or_else(|| ShimError {
            code: ffi::INTERNAL,
            message: "moda_trt_runtime_create returned no runtime".into(),
        })?;
        let mut buf = [0 as c_char; 64];
        // SAFETY: `raw` is the live runtime just created; `buf` holds 64 bytes.
        let rc = unsafe { ffi::moda_trt_runtime_version(raw.as_ptr(), buf.as_mut_ptr(), 64) };
        buf[63] = 0;
        // SAFETY: `buf` is NUL-terminated.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        let version = if rc == ffi::OK {
            text.into_owned()
        } else {
            format!("unknown ({text})")
        };
        Ok(Runtime {
            raw,
            version,
            deserialize: Mutex::new(()),
        })
    }

    /// The loaded library's version, `10.3.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Deserializes the bytes of an engine file.
    ///
    /// # Errors
    /// TensorRT's message (not an engine, built by another version, for another GPU).
    pub fn deserialize(self: &Arc<Self>, bytes: &[u8]) -> Result<Engine, ShimError> {
        let _lock = self.deserialize.lock().unwrap_or_else(|p| p.into_inner());
        let mut raw = ptr::null_mut();
        call(|err, len| {
            // SAFETY: the runtime is live, `bytes` is valid for `bytes.len()` bytes during the
            // call (TensorRT copies what it keeps), `raw` is a valid out-pointer.
            unsafe {
                ffi::moda_trt_engine_deserialize(
                    self.raw.as_ptr(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    &mut raw,
                    err,
                    len,
                )
            }
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| ShimError {
            code: ffi::INTERNAL,
            message: "moda_trt_engine_deserialize returned no engine".into(),
        })?;
        Ok(Engine {
            raw,
            _runtime: Arc::clone(self),
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: the handle is live and every engine holds an `Arc` of this runtime, so none
        // is left.
        unsafe { ffi::moda_trt_runtime_destroy(self.raw.as_ptr()) }
    }
}

/// One input or output tensor of an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoTensor {
    pub name: String,
    pub is_input: bool,
    /// nvinfer1::DataType's value.
    pub dtype: i32,
    /// The engine's shape; -1 for a dimension set at run time.
    pub dims: Vec<i64>,
}

/// A deserialized engine.
pub struct Engine {
    raw: NonNull<ffi::moda_trt_engine>,
    _runtime: Arc<Runtime>,
}

// SAFETY: an ICudaEngine is immutable once deserialized; TensorRT documents creating
// execution contexts from several threads as safe, and the IO queries only read it.
unsafe impl Send for Engine {}
// SAFETY: as above.
unsafe impl Sync for Engine {}

impl Engine {
    /// The engine's inputs and outputs, in TensorRT's order.
    ///
    /// # Errors
    /// The shim's message.
    pub fn io(&self) -> Result<Vec<IoTensor>, ShimError> {
        // SAFETY: the engine handle is live.
        let count = unsafe { ffi::moda_trt_engine_io_count(self.raw.as_ptr()) };
        let mut out = Vec::new();
        for index in 0..count {
            let mut io = ffi::moda_trt_io::ZERO;
            // SAFETY: the engine is live, `index` is in range, `io` is a valid out-pointer.
            call(|err, len| unsafe {
                ffi::moda_trt_engine_io(self.raw.as_ptr(), index, &mut io, err, len)
            })?;
            io.name[ffi::NAME_LEN - 1] = 0;
            // SAFETY: `io.name` is NUL-terminated (its last byte was just set to 0).
            let name = unsafe { CStr::from_ptr(io.name.as_ptr()) };
            let nb = usize::try_from(io.nb_dims).unwrap_or(0).min(ffi::MAX_DIMS);
            out.push(IoTensor {
                name: name.to_string_lossy().into_owned(),
                is_input: io.is_input != 0,
                dtype: io.dtype,
                dims: io.dims[..nb].to_vec(),
            });
        }
        Ok(out)
    }

    /// A new execution context.
    ///
    /// # Errors
    /// The shim's message (out of device memory, typically).
    pub fn context(self: &Arc<Self>) -> Result<Context, ShimError> {
        let mut raw = ptr::null_mut();
        // SAFETY: the engine is live, `raw` is a valid out-pointer.
        call(|err, len| unsafe {
            ffi::moda_trt_context_create(self.raw.as_ptr(), &mut raw, err, len)
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| ShimError {
            code: ffi::INTERNAL,
            message: "moda_trt_context_create returned no context".into(),
        })?;
        Ok(Context {
            raw,
            _engine: Arc::clone(self),
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle is live; every context holds an `Arc` of this engine.
        unsafe { ffi::moda_trt_engine_destroy(self.raw.as_ptr()) }
    }
}

/// An execution context: one set of bound tensor addresses, used by one session.
pub struct Context {
    raw: NonNull<ffi::moda_trt_context>,
    _engine: Arc<Engine>,
}

// SAFETY: a context is used by one thread at a time (`&mut self` methods); TensorRT contexts
// are not bound to the creating thread.
unsafe impl Send for Context {}

impl Context {
    /// Fixes the shape of input `name`.
    ///
    /// # Errors
    /// The shim's message (unknown tensor, shape outside the engine's profile).
    pub fn set_input_shape(&mut self, name: &CStr, dims: &[i64]) -> Result<(), ShimError> {
        let nb = i32::try_from(dims.len()).unwrap_or(i32::MAX);
        // SAFETY: the context is live; `name` is NUL-terminated and `dims` holds `nb` values,
        // both read during the call only.
        call(|err, len| unsafe {
            ffi::moda_trt_context_set_input_shape(
                self.raw.as_ptr(),
                name.as_ptr(),
                dims.as_ptr(),
                nb,
                err,
                len,
            )
        })
    }

    /// The shape of tensor `name` in this context (concrete once every input shape is set).
    ///
    /// # Errors
    /// The shim's message (unknown tensor).
    pub fn tensor_shape(&self, name: &CStr) -> Result<Vec<i64>, ShimError> {
        let mut dims = [0i64; ffi::MAX_DIMS];
        let mut nb = 0i32;
        // SAFETY: the context is live, `name` NUL-terminated, `dims` holds MAX_DIMS values and
        // `nb` is a valid out-pointer.
        call(|err, len| unsafe {
            ffi::moda_trt_context_tensor_shape(
                self.raw.as_ptr(),
                name.as_ptr(),
                dims.as_mut_ptr(),
                &mut nb,
                err,
                len,
            )
        })?;
        let nb = usize::try_from(nb).unwrap_or(0).min(ffi::MAX_DIMS);
        Ok(dims[..nb].to_vec())
    }

    /// Binds tensor `name` to `address`.
    ///
    /// # Safety
    /// `address` must point to a buffer of the tensor's size that stays valid (and is not
    /// accessed by the host) while runs enqueued with this binding are in flight.
    pub unsafe fn set_tensor_address(
        &mut self,
        name: &CStr,
        address: *mut c_void,
    ) -> Result<(), ShimError> {
        // SAFETY: the context is live and `name` NUL-terminated; the caller vouches for
        // `address`.
        call(|err, len| unsafe {
            ffi::moda_trt_context_set_tensor_address(
                self.raw.as_ptr(),
                name.as_ptr(),
                address,
                err,
                len,
            )
        })
    }

    /// Enqueues one run on `stream` (a `cudaStream_t`, or a fake stream's handle).
    ///
    /// # Safety
    /// `stream` must be a live stream of the platform the engine runs on, and every bound
    /// address must stay valid until the run completes on that stream.
    pub unsafe fn enqueue(&mut self, stream: *mut c_void) -> Result<(), ShimError> {
        // SAFETY: the context is live; the caller vouches for the stream and the bindings.
        call(|err, len| unsafe {
            ffi::moda_trt_context_enqueue(self.raw.as_ptr(), stream, err, len)
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the handle is live; the owning session synchronizes its stream before the
        // context is dropped, so no run uses it.
        unsafe { ffi::moda_trt_context_destroy(self.raw.as_ptr()) }
    }
}

/// With the real shim: on a machine without TensorRT the runtime is an error naming the
/// library and JetPack; with TensorRT it is version 10.
#[cfg(all(test, feature = "tensorrt"))]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_opens_libnvinfer_or_says_it_is_missing() {
        match Runtime::create() {
            Ok(runtime) => assert!(
                runtime.version().starts_with("10."),
                "{}",
                runtime.version()
            ),
            Err(e) => {
                assert!(e.is_no_library(), "{e:?}");
                assert!(
                    e.message.starts_with("cannot load libnvinfer.so.10 ("),
                    "{e}"
                );
                assert!(e.message.contains("JetPack 6"), "{e}");
            }
        }
    }
}
