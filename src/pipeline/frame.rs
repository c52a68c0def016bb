//! The frame stage: one [`MotionFrame`] in, one uint8 RGB picture out.
//!
//! ```text
//! face/head/torso residuals ─▶ pose de-normalization and projection (face::repr, float64)
//!   ─▶ condition image on the 512² canvas (draw::condition, OpenCV LINE_8 semantics)
//!   ─▶ 2×2 shrink to the renderer size when it is 256 ─▶ [-1, 1] CHW float
//!   ─▶ renderer (with the reference picture and the 13-value temporal code of the frame)
//!   ─▶ uint8 RGB by truncation of (tanh + 1) / 2 · 255
//! ```
//!
//! The renderer's contract is checked when the stage is built (inputs `mesh_image`,
//! `reference` [1,3,S,S], `time_code` [1,13]; output `image` [1,3,S,S]); every buffer is
//! allocated then, so [`FrameStage::process`] does not allocate.

use super::expect_output;
use super::motion::MotionFrame;
use std::sync::Arc;

use crate::backend::{
    Backend, BackendError, ElemType, HostMut, PlanCache, PrepareOptions, Prepared, Session,
    ShapeError,
};
use crate::draw::condition::{ConditionDrawer, DrawError, DrawSettings};
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw, unit_chw_to_u8_hwc, ConvertError};
use crate::draw::timecode::time_code;
use crate::face::avatar::Avatar;
use crate::face::repr::{Repr, ReprError};
use crate::face::tables::{Tables, TablesError, FACE_POINTS, SHOULDER_POINTS};

/// Validated settings of the frame stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSettings {
    /// Side of the square canvas the mesh is drawn on (512).
    pub canvas: usize,
    /// Side of the renderer's input and output: the canvas or half of it.
    pub size: usize,
    /// The temporal code takes the frame index modulo this period (`None`: the index itself,
    /// as the official offline run). A renderer only saw the frame indices of its training
    /// clips, so a service running for days cycles them.
    pub time_code_period: Option<u64>,
}

/// What happened to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The picture in [`FrameStage::buffers`] is this frame's.
    Rendered,
    /// The motion was not finite; the buffers still hold the previous picture.
    KeptPrevious,
}

/// Errors of the frame stage.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("renderer size {size} must be the canvas size {canvas} or half of it")]
    Size { size: usize, canvas: usize },
    #[error(
        "the reference picture has {found} bytes; expected {expected} ({canvas}×{canvas} RGB)"
    )]
    Reference {
        found: usize,
        expected: usize,
        canvas: usize,
    },
    #[error("the built-in drawing tables do not load")]
    Tables(#[from] TablesError),
    #[error("cannot draw the condition image")]
    Draw(#[from] DrawError),
    #[error("cannot convert a picture")]
    Convert(#[from] ConvertError),
    #[error("cannot place the face")]
    Pose(#[from] ReprError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("GPU frame stage: {0}")]
    Gpu(String),
}

impl From<ShapeError> for FrameError {
    fn from(e: ShapeError) -> FrameError {
        FrameError::Backend(e.into())
    }
}

/// What the drivers need of a frame stage: render a motion frame, then read the picture (and
/// the points it was drawn from) in [`RenderStage::buffers`].
pub trait RenderStage: Send {
    /// Renders `motion`; the picture is then in `buffers().out`. Does not allocate.
    ///
    /// # Errors
    /// A buffer that does not fit, or the renderer failing.
    fn process(&mut self, motion: &MotionFrame) -> Result<FrameOutcome, FrameError>;

    /// The last frame's products.
    fn buffers(&self) -> &FrameBuffers;
}

impl<S: Session> RenderStage for FrameStage<S> {
    fn process(&mut self, motion: &MotionFrame) -> Result<FrameOutcome, FrameError> {
        FrameStage::process(self, motion)
    }

    fn buffers(&self) -> &FrameBuffers {
        &self.buffers
    }
}

/// The render stage a backend runs the live pipeline with. By default the CPU [`FrameStage`]
/// over a session of the avatar's renderer prepared through `cache`; the TensorRT backend
/// runs the GPU frame stage instead (`crate::gpu::live`).
pub trait RenderStages: Backend + Sized + 'static {
    /// Builds the stage for `avatar` with `settings`.
    ///
    /// # Errors
    /// The renderer that does not load, prepare or fit the contract; a device failure.
    fn render_stage(
        backend: &Arc<Self>,
        cache: &Arc<PlanCache<Self>>,
        avatar: &Avatar,
        settings: FrameSettings,
    ) -> Result<Box<dyn RenderStage>, FrameError>
    where
        <Self::Prepared as Prepared>::Session: 'static,
    {
        cpu_render_stage(backend, cache, avatar, settings)
    }
}

impl RenderStages for crate::backend::tract::TractBackend {}

/// The avatar's renderer prepared through `cache` for `settings`.
///
/// # Errors
/// A renderer file that does not load, is not a renderer, or does not prepare.
pub fn prepare_renderer<B: Backend>(
    backend: &Arc<B>,
    cache: &Arc<PlanCache<B>>,
    avatar: &Avatar,
    settings: FrameSettings,
) -> Result<Arc<B::Prepared>, FrameError> {
    let renderer = crate::backend::OnnxModel::load(&avatar.renderer_path())?;
    renderer.check_kind("renderer")?;
    Ok(cache.prepare(backend.as_ref(), &renderer, &settings.prepare_options())?)
}

/// The CPU frame stage over a session of the avatar's renderer.
///
/// # Errors
/// As [`prepare_renderer`] and [`FrameStage::new`].
pub fn cpu_render_stage<B: Backend>(
    backend: &Arc<B>,
    cache: &Arc<PlanCache<B>>,
    avatar: &Avatar,
    settings: FrameSettings,
) -> Result<Box<dyn RenderStage>, FrameError>
where
    <B::Prepared as Prepared>::Session: 'static,
{
    let prepared = prepare_renderer(backend, cache, avatar, settings)?;
    Ok(Box::new(FrameStage::new(
        prepared.as_ref(),
        avatar.repr(),
        &avatar.reference,
        settings,
    )?))
}

/// One frame's products.
pub struct FrameBuffers {
    pub face_px: Vec<[f64; 2]>,
    pub shoulder_px: Vec<[f64; 2]>,
    /// Condition image at the canvas size (512² RGB).
    pub cond: Vec<u8>,
    /// Condition image at the renderer size.
    pub cond_small: Vec<u8>,
    /// Renderer output, uint8 RGB at the renderer size.
    pub out: Vec<u8>,
}

/// Settings plus state of the frame stage.
pub struct FrameStage<S: Session> {
    settings: FrameSettings,
    repr: Repr,
    drawer: ConditionDrawer,
    session: S,
    idx_mesh: usize,
    idx_time: usize,
    idx_image: usize,
    /// Float scratch for buffers that are not float32 (a float16 engine).
    unit: Vec<f32>,
    /// The reference at the renderer size, uint8 RGB (for panels).
    pub reference_small: Vec<u8>,
    pub buffers: FrameBuffers,
}

impl FrameSettings {
    /// How to prepare the renderer for these settings.
    pub fn prepare_options(&self) -> PrepareOptions {
        let s = self.size;
        PrepareOptions::shapes(&[
            ("mesh_image", vec![1, 3, s, s]),
            ("reference", vec![1, 3, s, s]),
            ("time_code", vec![1, 13]),
        ])
    }
}

impl<S: Session> FrameStage<S> {
    /// Builds the stage on a renderer prepared with [`FrameSettings::prepare_options`], filling
    /// the constant reference input.
    ///
    /// # Errors
    /// A size that does not fit, a renderer whose tensors break the contract, a reference of
    /// the wrong size.
    pub fn new<P: Prepared<Session = S>>(
        prepared: &P,
        repr: Repr,
        reference: &[u8],
        settings: FrameSettings,
    ) -> Result<FrameStage<S>, FrameError> {
        let FrameSettings { canvas, size, .. } = settings;
        if size != canvas && size * 2 != canvas {
            return Err(FrameError::Size { size, canvas });
        }
        if reference.len() != canvas * canvas * 3 {
            return Err(FrameError::Reference {
                found: reference.len(),
                expected: canvas * canvas * 3,
                canvas,
            });
        }
        let drawer = ConditionDrawer::new(
            DrawSettings {
                width: canvas,
                height: canvas,
            },
            Tables::official()?,
        )?;
        let idx_mesh = prepared.input_index("mesh_image")?;
        let idx_ref = prepared.input_index("reference")?;
        let idx_time = prepared.input_index("time_code")?;
        let idx_image = expect_output(prepared, "image", &[1, 3, size, size])?;
        let mut session = prepared.session()?;
        let mut reference_small = vec![0; size * size * 3];
        shrink_into(reference, canvas, size, &mut reference_small)?;
        let mut unit = vec![0f32; 3 * size * size];
        u8_hwc_to_unit_chw(&reference_small, size, size, &mut unit)?;
        session.input(idx_ref)?.copy_from_f32(&unit);
        let all_f32 = prepared
            .inputs()
            .iter()
            .chain(prepared.outputs())
            .all(|d| d.dtype == ElemType::F32);
        if all_f32 {
            unit = Vec::new();
        }
        Ok(FrameStage {
            settings,
            repr,
            drawer,
            session,
            idx_mesh,
            idx_time,
            idx_image,
            unit,
            reference_small,
            buffers: FrameBuffers {
                face_px: vec![[0.0; 2]; FACE_POINTS],
                shoulder_px: vec![[0.0; 2]; SHOULDER_POINTS],
                cond: vec![0; canvas * canvas * 3],
                cond_small: vec![0; size * size * 3],
                out: vec![0; size * size * 3],
            },
        })
    }

    pub fn settings(&self) -> FrameSettings {
        self.settings
    }

    /// Renders `motion` into [`FrameStage::buffers`]. A frame with non-finite motion is not
    /// drawn: the previous picture stays and the outcome says so. Does not allocate.
    ///
    /// # Errors
    /// When a buffer does not fit or the renderer fails.
    pub fn process(&mut self, motion: &MotionFrame) -> Result<FrameOutcome, FrameError> {
        if !motion.is_finite() {
            return Ok(FrameOutcome::KeptPrevious);
        }
        let FrameSettings { canvas, size, .. } = self.settings;
        let b = &mut self.buffers;
        self.repr.project_frame(
            &motion.face,
            &motion.head,
            &motion.torso,
            &mut b.face_px,
            &mut b.shoulder_px,
        )?;
        self.drawer
            .process(&b.face_px, &b.shoulder_px, &mut b.cond)?;
        shrink_into(&b.cond, canvas, size, &mut b.cond_small)?;
        match self.session.input(self.idx_mesh)? {
            HostMut::F32(dst) => u8_hwc_to_unit_chw(&b.cond_small, size, size, dst)?,
            mut other => {
                u8_hwc_to_unit_chw(&b.cond_small, size, size, &mut self.unit)?;
                other.copy_from_f32(&self.unit);
            }
        }
        let k = match self.settings.time_code_period {
            Some(p) if p > 0 => motion.index % p,
            _ => motion.index,
        };
        self.session
            .input(self.idx_time)?
            .copy_from_f32(&time_code(k as usize));
        self.session.run()?;
        let image = self.session.output(self.idx_image)?;
        match image {
            crate::backend::HostRef::F32(src) => unit_chw_to_u8_hwc(src, size, size, &mut b.out)?,
            other => {
                other.copy_to_f32(&mut self.unit);
                unit_chw_to_u8_hwc(&self.unit, size, size, &mut b.out)?;
            }
        }
        Ok(FrameOutcome::Rendered)
    }
}

/// `image` (canvas² RGB) at the renderer size: copied, or shrunk 2×2.
fn shrink_into(
    image: &[u8],
    canvas: usize,
    size: usize,
    out: &mut [u8],
) -> Result<(), ConvertError> {
    if size == canvas {
        out.copy_from_slice(image);
        Ok(())
    } else {
        shrink_2x(image, canvas, canvas, out)
    }
}
