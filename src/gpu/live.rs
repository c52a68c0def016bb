//! The GPU frame stage as the render stage of the TensorRT backend: what the live pipeline
//! (`moda-edged` with `backend = "tensorrt"`) and its budget measurement run.
//!
//! The pose projection stays on the CPU (496 points); drawing, packing, the temporal code, the
//! renderer engine and the output conversion run on the device in one slot's stream, and the
//! picture comes back into [`FrameBuffers::out`] for the live pipeline's output slots (which
//! already keep a frame rendering while the previous one is shown). With feature `tensorrt` the
//! device is the GPU (kernels compiled by NVRTC, cached under `$XDG_CACHE_HOME/moda-edge`); in a
//! `tensorrt-fake` test build it is the host device, so the same code runs in CI.
//! `FrameBuffers::cond` and `cond_small` stay empty: the condition image never leaves the
//! device.

use std::sync::Arc;

use super::frame::{
    FrameDevice, FrameGpuError, FrameGpuSettings, GpuFrameStage, OutputLayout, RendererIo,
    SlotRenderer,
};
use super::kernels::DrawPlan;
use crate::backend::tensorrt::{BoundContext, TensorRtBackend, TensorRtPrepared};
use crate::backend::{ElemType, PlanCache, Prepared};
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw};
use crate::face::avatar::Avatar;
use crate::face::repr::Repr;
use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};
use crate::pipeline::frame::{prepare_renderer, FrameBuffers, FrameError, FrameSettings};
use crate::pipeline::{FrameOutcome, MotionFrame, RenderStage, RenderStages};

fn gpu_error(e: FrameGpuError) -> FrameError {
    FrameError::Gpu(e.to_string())
}

fn renderer_error(e: impl std::fmt::Display) -> FrameGpuError {
    FrameGpuError::Renderer(e.to_string())
}

/// The renderer's tensors, by name, in the order of [`RendererIo`].
const TENSORS: [&str; 4] = ["mesh_image", "reference", "time_code", "image"];

/// A prepared renderer engine as the frame stage's network step: one execution context per
/// slot, bound once to that slot's buffers by tensor name, each run enqueued on the slot's
/// stream between its drawing kernels and its output conversion.
pub struct TensorRtSlotRenderer {
    prepared: Arc<TensorRtPrepared>,
    contexts: Vec<BoundContext>,
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
        Ok(TensorRtSlotRenderer {
            prepared,
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
        let addresses = [io.mesh_image, io.reference, io.time_code, io.image];
        let bound: Vec<(&str, u64)> = TENSORS.iter().copied().zip(addresses).collect();
        // SAFETY: the frame stage allocated these buffers for exactly these tensors (3·side²
        // floats, 13 for the time code; shapes checked in `new`) and keeps them, untouched by
        // the host during runs, until every stream is synchronized when it is dropped, before
        // this renderer and its contexts.
        let context = unsafe { self.prepared.bind(&bound) }.map_err(renderer_error)?;
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
        // engine's (CUDA streams with `tensorrt`, the fake's streams with `tensorrt-fake`); the
        // bound buffers stay valid until the stream has passed this run (see `bind`).
        unsafe { context.enqueue(device.raw_stream(stream)) }.map_err(renderer_error)
    }
}

/// The frame stage on a device, one frame at a time.
pub struct GpuRenderStage<D: FrameDevice> {
    stage: GpuFrameStage<D, TensorRtSlotRenderer>,
    repr: Repr,
    period: Option<u64>,
    buffers: FrameBuffers,
}

impl<D: FrameDevice> GpuRenderStage<D> {
    /// Builds the stage on `device` with the renderer engine of `avatar`.
    ///
    /// # Errors
    /// The renderer that does not load or fit, a reference of the wrong size, a device failure.
    pub fn new(
        device: D,
        backend: &Arc<TensorRtBackend>,
        cache: &Arc<PlanCache<TensorRtBackend>>,
        avatar: &Avatar,
        settings: FrameSettings,
    ) -> Result<Self, FrameError> {
        let FrameSettings { canvas, size, .. } = settings;
        if size != canvas && 2 * size != canvas {
            return Err(FrameError::Size { size, canvas });
        }
        if avatar.reference.len() != canvas * canvas * 3 {
            return Err(FrameError::Reference {
                found: avatar.reference.len(),
                expected: canvas * canvas * 3,
                canvas,
            });
        }
        let prepared = prepare_renderer(backend, cache, avatar, settings)?;
        let renderer = TensorRtSlotRenderer::new(prepared, size).map_err(gpu_error)?;
        // The reference at the renderer size, as the CPU stage computes it.
        let mut small = vec![0u8; size * size * 3];
        if size == canvas {
            small.copy_from_slice(&avatar.reference);
        } else {
            shrink_2x(&avatar.reference, canvas, canvas, &mut small)?;
        }
        let mut unit = vec![0f32; 3 * size * size];
        u8_hwc_to_unit_chw(&small, size, size, &mut unit)?;
        let stage = GpuFrameStage::new(
            device,
            renderer,
            &DrawPlan::new(&Tables::official()?),
            &unit,
            FrameGpuSettings {
                canvas,
                side: size,
                slots: 1,
                output: OutputLayout::Rgb,
            },
        )
        .map_err(gpu_error)?;
        Ok(GpuRenderStage {
            stage,
            repr: avatar.repr(),
            period: settings.time_code_period.filter(|&p| p > 0),
            buffers: FrameBuffers {
                face_px: vec![[0.0; 2]; FACE_POINTS],
                shoulder_px: vec![[0.0; 2]; SHOULDER_POINTS],
                cond: Vec::new(),
                cond_small: Vec::new(),
                out: vec![0; size * size * 3],
            },
        })
    }
}

impl<D: FrameDevice> RenderStage for GpuRenderStage<D> {
    fn process(&mut self, motion: &MotionFrame) -> Result<FrameOutcome, FrameError> {
        if !motion.is_finite() {
            return Ok(FrameOutcome::KeptPrevious);
        }
        let b = &mut self.buffers;
        self.repr.project_frame(
            &motion.face,
            &motion.head,
            &motion.torso,
            &mut b.face_px,
            &mut b.shoulder_px,
        )?;
        let k = motion.index;
        let code = self.period.map_or(k, |p| k % p);
        let out = &mut b.out;
        let mut sink = |_: u64, bytes: &[u8]| out.copy_from_slice(bytes);
        self.stage
            .submit(k, code, &b.face_px, &b.shoulder_px, &mut sink)
            .and_then(|()| self.stage.finish(&mut sink))
            .map_err(gpu_error)?;
        Ok(FrameOutcome::Rendered)
    }

    fn buffers(&self) -> &FrameBuffers {
        &self.buffers
    }
}

impl RenderStages for TensorRtBackend {
    fn render_stage(
        backend: &Arc<Self>,
        cache: &Arc<PlanCache<Self>>,
        avatar: &Avatar,
        settings: FrameSettings,
    ) -> Result<Box<dyn RenderStage>, FrameError> {
        #[cfg(feature = "tensorrt-fake")]
        let device = super::host_device::HostFrameDevice;
        #[cfg(not(feature = "tensorrt-fake"))]
        let device = cuda_device(backend)?;
        Ok(Box::new(GpuRenderStage::new(
            device, backend, cache, avatar, settings,
        )?))
    }
}

/// The backend's GPU with the kernels compiled for it (or taken from the on-disk cache).
#[cfg(not(feature = "tensorrt-fake"))]
fn cuda_device(
    backend: &TensorRtBackend,
) -> Result<super::cuda_frame::CudaFrameDevice, FrameError> {
    use super::cuda_frame::{CudaFrameDevice, Kernels};
    use super::nvrtc::CubinCache;
    let gpu =
        super::device::Gpu::open(backend.device()).map_err(|e| FrameError::Gpu(e.to_string()))?;
    let dir =
        CubinCache::default_dir().unwrap_or_else(|| std::env::temp_dir().join("moda-edge-kernels"));
    let (kernels, loads) = Kernels::load(&gpu, &CubinCache::new(dir)).map_err(gpu_error)?;
    for l in &loads {
        log::info!(
            "kernels/{}.cu: {:?} in {:.1} ms",
            l.module,
            l.fetched,
            l.millis
        );
    }
    Ok(CudaFrameDevice::new(gpu, Arc::new(kernels)))
}
