//! Execution contexts bound to memory the caller owns: the GPU frame stage's buffers
//! (`crate::gpu::live`), so the stage's kernels write the engine's inputs and read its output in
//! place, with no copy, and each run goes on the stream the caller names.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use super::contract::set_input_shapes;
use super::handles::Context;
use super::session::TensorRtPrepared;
use super::NAME;
use crate::backend::BackendError;

/// An execution context whose tensors are bound to caller memory.
pub struct BoundContext {
    context: Context,
    label: Arc<str>,
}

impl TensorRtPrepared {
    /// A new execution context with the prepared input shapes and every tensor in `addresses`
    /// (name, device address) bound.
    ///
    /// # Safety
    /// Each address must point to device memory (host memory for the fake) of the tensor's
    /// size and element type, valid and untouched by the host while runs enqueued with this
    /// context are in flight, until the context is dropped.
    ///
    /// # Errors
    /// A tensor the engine does not have, or the engine refusing the context.
    pub unsafe fn bind(&self, addresses: &[(&str, u64)]) -> Result<BoundContext, BackendError> {
        let run_error = |detail: String| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        };
        let mut context = self.engine.context().map_err(|e| run_error(e.message))?;
        set_input_shapes(&mut context, &self.inputs).map_err(&run_error)?;
        for (name, address) in addresses {
            let c_name = CString::new(*name)
                .map_err(|_| run_error(format!("tensor name `{name}` holds a NUL byte")))?;
            // SAFETY: the caller vouches for the address (this function's contract).
            unsafe { context.set_tensor_address(&c_name, *address as usize as *mut c_void) }
                .map_err(|e| run_error(e.message))?;
        }
        Ok(BoundContext {
            context,
            label: Arc::clone(&self.label),
        })
    }
}

impl BoundContext {
    /// Enqueues one run on `stream` (a `cudaStream_t`, or a fake stream's handle).
    ///
    /// # Safety
    /// `stream` must be a live stream of the platform the engine runs on, and the bound memory
    /// must stay valid until the run has completed on it.
    ///
    /// # Errors
    /// The engine refusing the run.
    pub unsafe fn enqueue(&mut self, stream: *mut c_void) -> Result<(), BackendError> {
        // SAFETY: passed on from the caller.
        unsafe { self.context.enqueue(stream) }.map_err(|e| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: e.message.into(),
        })
    }
}
