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

use super::frame::{FrameDevice, FrameGpuError, FrameGpuSettings, GpuFrameStage, OutputLayout};
use super::kernels::DrawPlan;
use crate::backend::tensorrt::{TensorRtBackend, TensorRtSlotRenderer};
use crate::backend::PlanCache;
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw};
use crate::face::avatar::Avatar;
use crate::face::repr::Repr;
use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};
use crate::pipeline::frame::{prepare_renderer, FrameBuffers, FrameError, FrameSettings};
use crate::pipeline::{FrameOutcome, MotionFrame, RenderStage, RenderStages};

fn gpu_error(e: FrameGpuError) -> FrameError {
    FrameError::Gpu(e.to_string())
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
