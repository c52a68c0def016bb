//! The renderer engine as the network step of the GPU frame stage ([`crate::gpu::frame`]): one
//! execution context per slot, bound once to that slot's buffers by tensor name, each run
//! enqueued on the slot's stream after the slot's drawing kernels and before its output
//! conversion. No host copy: the kernels write the inputs and read the output in place.

use std::ffi::CString;
use std::sync::Arc;

use super::contract::set_input_shapes;
use super::handles::Context;
use super::session::TensorRtPrepared;
use crate::backend::{ElemType, Prepared};
use crate::gpu::frame::{FrameDevice, FrameGpuError, RendererIo, SlotRenderer};

/// The renderer's tensors, by name, in the order of [`RendererIo`].
const TENSORS: [&str; 4] = ["mesh_image", "reference", "time_code", "image"];

/// A prepared renderer engine driving the frame stage's slots.
pub struct TensorRtSlotRenderer {
    prepared: Arc<TensorRtPrepared>,
    names: Vec<CString>,
    contexts: Vec<Context>,
}

fn renderer_error(e: impl std::fmt::Display) -> FrameGpuError {
    FrameGpuError::Renderer(e.to_string())
}

impl TensorRtSlotRenderer {
    /// Checks that `prepared` is a float32 renderer (`mesh_image`, `reference`, `time_code` in,
    /// `image` out) for the stage's side.
    ///
    /// # Errors
    /// A missing tensor or one of another shape or element type, named.
    pub fn new(prepared: Arc<TensorRtPrepared>, side: usize) -> Result<Self, FrameGpuError> {
        let image = vec![1, 3, side, side];
        let want = [image.clone(), image.clone(), vec![1, 13], image];
        for (name, shape) in TENSORS.iter().zip(&want) {
            let desc = prepared
                .inputs()
                .iter()
                .chain(prepared.outputs())
                .find(|d| d.name == *name)
                .ok_or_else(|| {
                    renderer_error(format!("{}: no tensor `{name}`", prepared.label()))
                })?;
            if desc.shape != *shape || desc.dtype != ElemType::F32 {
                return Err(renderer_error(format!(
                    "{}: `{name}` is {:?} {:?}, expected float32 {shape:?} for the GPU frame stage",
                    prepared.label(),
                    desc.dtype,
                    desc.shape
                )));
            }
        }
        let names = TENSORS
            .iter()
            .map(|n| CString::new(*n).map_err(renderer_error))
            .collect::<Result<_, _>>()?;
        Ok(TensorRtSlotRenderer {
            prepared,
            names,
            contexts: Vec::new(),
        })
    }
}

impl<D: FrameDevice> SlotRenderer<D> for TensorRtSlotRenderer {
    fn bind(&mut self, slot: usize, io: &RendererIo) -> Result<(), FrameGpuError> {
        if slot != self.contexts.len() {
            return Err(renderer_error(format!(
                "slots are bound in order: got slot {slot} after {}",
                self.contexts.len()
            )));
        }
        let mut context = self
            .prepared
            .engine
            .context()
            .map_err(|e| renderer_error(e.message))?;
        set_input_shapes(&mut context, &self.prepared.inputs).map_err(renderer_error)?;
        let addresses = [io.mesh_image, io.reference, io.time_code, io.image];
        for (name, address) in self.names.iter().zip(addresses) {
            // SAFETY: the frame stage allocated these buffers for exactly these tensors
            // (3·side² floats, 13 for the time code; shapes checked in `new`) and keeps them,
            // untouched by the host during runs, until every stream is synchronized on drop.
            unsafe { context.set_tensor_address(name, address as usize as *mut _) }
                .map_err(|e| renderer_error(e.message))?;
        }
        self.contexts.push(context);
        Ok(())
    }

    fn enqueue(
        &mut self,
        device: &D,
        slot: usize,
        stream: &D::Stream,
    ) -> Result<(), FrameGpuError> {
        let context = self
            .contexts
            .get_mut(slot)
            .ok_or_else(|| renderer_error(format!("slot {slot} was never bound")))?;
        // SAFETY: the stream is a live stream of the frame device, whose platform is the
        // engine's (CUDA streams with `tensorrt`, fake streams with `tensorrt-fake`); the bound
        // addresses stay valid until the stream has passed this run (see `bind`).
        unsafe { context.enqueue(device.raw_stream(stream)) }.map_err(|e| renderer_error(e.message))
    }
}
