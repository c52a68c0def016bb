//! Prepared engines and their sessions: one buffer per tensor bound by name to an execution
//! context, runs enqueued on a stream, completion through an event.

use std::cell::Cell;
use std::ffi::CString;
use std::sync::Arc;

use super::contract::set_input_shapes;
use super::handles::{Context, Engine};
use super::platform::{self, Buffer, Platform, Stream};
use super::NAME;
use crate::backend::{
    f16, BackendError, ElemType, HostMut, HostRef, Memory, Prepared, Session, TensorDesc,
};

/// An engine checked against its model; immutable and shared by sessions.
pub struct TensorRtPrepared {
    pub(super) label: Arc<str>,
    pub(super) inputs: Vec<TensorDesc>,
    pub(super) outputs: Vec<TensorDesc>,
    pub(super) input_names: Vec<CString>,
    pub(super) output_names: Vec<CString>,
    pub(super) engine: Arc<Engine>,
    pub(super) platform: Arc<Platform>,
}

fn elem_size(t: ElemType) -> usize {
    match t {
        ElemType::F16 => 2,
        _ => 4,
    }
}

impl TensorRtPrepared {
    /// A session whose runs are enqueued on `stream` (shared with other stages, which then
    /// run in order with it) instead of a stream of its own.
    ///
    /// # Errors
    /// As [`Prepared::session`].
    pub fn session_on(&self, stream: Stream) -> Result<TensorRtSession, BackendError> {
        let run_error = |detail: String| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        };
        let mut context = self.engine.context().map_err(|e| run_error(e.message))?;
        set_input_shapes(&mut context, &self.inputs).map_err(&run_error)?;
        let alloc = |descs: &[TensorDesc]| -> Result<Vec<Buffer>, BackendError> {
            descs
                .iter()
                .map(|d| {
                    self.platform
                        .buffer(d.len() * elem_size(d.dtype))
                        .map_err(&run_error)
                })
                .collect()
        };
        let inputs = alloc(&self.inputs)?;
        let outputs = alloc(&self.outputs)?;
        let bindings = self
            .input_names
            .iter()
            .zip(&inputs)
            .chain(self.output_names.iter().zip(&outputs));
        for (name, buffer) in bindings {
            // SAFETY: the buffer holds the tensor's bytes (allocated above for its shape and
            // element type) and lives in the session with the context; the session settles its
            // stream before dropping them or handing out host views.
            unsafe { context.set_tensor_address(name, buffer.address()) }
                .map_err(|e| run_error(e.message))?;
        }
        Ok(TensorRtSession {
            context,
            stream,
            inputs,
            outputs,
            input_types: self.inputs.iter().map(|d| d.dtype).collect(),
            output_types: self.outputs.iter().map(|d| d.dtype).collect(),
            memory: self.platform.memory(),
            label: Arc::clone(&self.label),
            pending: Cell::new(false),
        })
    }
}

impl Prepared for TensorRtPrepared {
    type Session = TensorRtSession;

    fn inputs(&self) -> &[TensorDesc] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorDesc] {
        &self.outputs
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn session(&self) -> Result<TensorRtSession, BackendError> {
        let stream = self.platform.stream().map_err(|detail| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        })?;
        self.session_on(stream)
    }
}

/// Buffers bound by name to an execution context, and the stream runs go to.
pub struct TensorRtSession {
    // Dropped first (after `Drop::drop` has settled the stream), before its buffers.
    context: Context,
    stream: Stream,
    inputs: Vec<Buffer>,
    pub(super) outputs: Vec<Buffer>,
    input_types: Vec<ElemType>,
    output_types: Vec<ElemType>,
    memory: Memory,
    label: Arc<str>,
    /// A run may be in flight: views wait for the stream first.
    pending: Cell<bool>,
}

impl TensorRtSession {
    /// The stream this session enqueues on (to order other work after its runs).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Waits for the stream when a run may be in flight, so that no host view aliases a buffer
    /// the device (or the fake's worker) is using.
    fn settle(&self) -> Result<(), BackendError> {
        if self.pending.get() {
            platform::synchronize(&self.stream).map_err(|detail| self.run_error(detail))?;
            self.pending.set(false);
        }
        Ok(())
    }

    fn run_error(&self, detail: String) -> BackendError {
        BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        }
    }
}

fn typed_mut(bytes: &mut [u8], dtype: ElemType) -> Option<HostMut<'_>> {
    match dtype {
        ElemType::F32 => {
            // SAFETY: every bit pattern is a valid f32; `align_to_mut` only yields aligned
            // elements, and a non-empty prefix is refused below.
            let (pre, mid, post) = unsafe { bytes.align_to_mut::<f32>() };
            (pre.is_empty() && post.is_empty()).then_some(HostMut::F32(mid))
        }
        ElemType::F16 => {
            // SAFETY: as above, for f16 (any 16 bits are a valid f16).
            let (pre, mid, post) = unsafe { bytes.align_to_mut::<f16>() };
            (pre.is_empty() && post.is_empty()).then_some(HostMut::F16(mid))
        }
        ElemType::Other(_) => None,
    }
}

fn typed(bytes: &[u8], dtype: ElemType) -> Option<HostRef<'_>> {
    match dtype {
        ElemType::F32 => {
            // SAFETY: as in `typed_mut`.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            (pre.is_empty() && post.is_empty()).then_some(HostRef::F32(mid))
        }
        ElemType::F16 => {
            // SAFETY: as in `typed_mut`.
            let (pre, mid, post) = unsafe { bytes.align_to::<f16>() };
            (pre.is_empty() && post.is_empty()).then_some(HostRef::F16(mid))
        }
        ElemType::Other(_) => None,
    }
}

impl Session for TensorRtSession {
    type Event = TensorRtEvent;

    fn memory(&self) -> Memory {
        self.memory
    }

    /// Waits for a run in flight first.
    fn input(&mut self, index: usize) -> Result<HostMut<'_>, BackendError> {
        self.settle()?;
        let dtype = self.input_types[index];
        typed_mut(self.inputs[index].host_mut(), dtype).ok_or_else(|| BackendError::Unsupported {
            backend: NAME,
            what: format!("a host view of input {index} ({dtype}, or an unaligned buffer)"),
        })
    }

    /// Waits for a run in flight first.
    fn output(&self, index: usize) -> Result<HostRef<'_>, BackendError> {
        self.settle()?;
        let dtype = self.output_types[index];
        typed(self.outputs[index].host(), dtype).ok_or_else(|| BackendError::Unsupported {
            backend: NAME,
            what: format!("a host view of output {index} ({dtype}, or an unaligned buffer)"),
        })
    }

    fn input_device_ptr(&self, index: usize) -> Option<u64> {
        self.inputs.get(index)?.device_ptr()
    }

    fn output_device_ptr(&self, index: usize) -> Option<u64> {
        self.outputs.get(index)?.device_ptr()
    }

    /// Uploads the inputs (no-op on mapped memory), enqueues the engine and the downloads,
    /// records an event and returns without waiting. Allocates nothing but the platform's
    /// event.
    fn enqueue(&mut self) -> Result<TensorRtEvent, BackendError> {
        for b in &self.inputs {
            platform::upload(&self.stream, b).map_err(|d| self.run_error(d))?;
        }
        // SAFETY: `stream` is this session's live stream; every bound address is one of the
        // session's buffers, which live as long as the context and are not handed out as host
        // views until the stream has been settled after this run (`pending`).
        unsafe { self.context.enqueue(platform::raw(&self.stream)) }
            .map_err(|e| self.run_error(e.message))?;
        self.pending.set(true);
        for b in &self.outputs {
            platform::download(&self.stream, b).map_err(|d| self.run_error(d))?;
        }
        let event = platform::record(&self.stream).map_err(|d| self.run_error(d))?;
        Ok(TensorRtEvent {
            event,
            label: Arc::clone(&self.label),
        })
    }
}

impl Drop for TensorRtSession {
    fn drop(&mut self) {
        if self.pending.get() {
            if let Err(e) = platform::synchronize(&self.stream) {
                log::warn!("tensorrt: the last run of {} failed: {e}", self.label);
            }
        }
    }
}

/// Completion of a run on the session's stream.
pub struct TensorRtEvent {
    event: platform::Event,
    label: Arc<str>,
}

impl crate::backend::Event for TensorRtEvent {
    fn is_complete(&self) -> bool {
        platform::query(&self.event)
    }

    fn wait(self) -> Result<(), BackendError> {
        platform::wait(&self.event).map_err(|detail| BackendError::Run {
            model: self.label.to_string(),
            backend: NAME,
            source: detail.into(),
        })
    }
}
