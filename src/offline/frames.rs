//! The per-frame stage: de-normalize and project the pose, draw the condition image, shrink it
//! to the renderer size, run the renderer with the reference and temporal code, convert to
//! uint8 (`reference/MODA_INFERENCE.md` §5–§6). Buffers are allocated once in [`FrameStage::new`].

use super::RenderError;
use crate::backend::{Backend, OnnxModel, Prepared, Session};
use crate::draw::condition::{ConditionDrawer, DrawSettings};
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw, unit_chw_to_u8_hwc};
use crate::draw::timecode::time_code;
use crate::face::repr::Repr;
use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};

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
    repr: Repr,
    drawer: ConditionDrawer,
    canvas: usize,
    size: usize,
    session: S,
    idx_mesh: usize,
    idx_time: usize,
    idx_image: usize,
    pub reference_small: Vec<u8>,
    pub buffers: FrameBuffers,
}

impl<S: Session> FrameStage<S> {
    /// Prepares the renderer at `size` and fills the constant reference input.
    ///
    /// # Errors
    /// When the renderer graph cannot be prepared or the sizes do not fit.
    pub fn new<B: Backend<Prepared = P>, P: Prepared<Session = S>>(
        backend: &B,
        renderer: &OnnxModel,
        repr: Repr,
        reference: &[u8],
        canvas: usize,
        size: usize,
    ) -> Result<(FrameStage<S>, P), RenderError> {
        if size != canvas && size * 2 != canvas {
            return Err(RenderError::Input(format!(
                "renderer size {size} must be the canvas size {canvas} or half of it"
            )));
        }
        let tables = Tables::official().map_err(|e| RenderError::Model(e.to_string()))?;
        let drawer = ConditionDrawer::new(
            DrawSettings {
                width: canvas,
                height: canvas,
            },
            tables,
        )
        .map_err(|e| RenderError::Model(e.to_string()))?;
        let shapes = [
            ("mesh_image", vec![1, 3, size, size]),
            ("reference", vec![1, 3, size, size]),
            ("time_code", vec![1, 13]),
        ];
        let prepared = backend.prepare(renderer, &shapes)?;
        let mut session = prepared.session()?;
        let find = |name: &str| {
            prepared
                .inputs()
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| {
                    RenderError::Model(format!("{} has no input `{name}`", renderer.label))
                })
        };
        let (idx_mesh, idx_ref, idx_time) =
            (find("mesh_image")?, find("reference")?, find("time_code")?);
        let idx_image = prepared
            .outputs()
            .iter()
            .position(|s| s.name == "image")
            .ok_or_else(|| {
                RenderError::Model(format!("{} has no output `image`", renderer.label))
            })?;
        let reference_small = shrink_to(reference, canvas, size)?;
        u8_hwc_to_unit_chw(&reference_small, size, size, session.input_mut(idx_ref))
            .map_err(conv)?;
        let buffers = FrameBuffers {
            face_px: vec![[0.0; 2]; FACE_POINTS],
            shoulder_px: vec![[0.0; 2]; SHOULDER_POINTS],
            cond: vec![0; canvas * canvas * 3],
            cond_small: vec![0; size * size * 3],
            out: vec![0; size * size * 3],
        };
        let stage = FrameStage {
            repr,
            drawer,
            canvas,
            size,
            session,
            idx_mesh,
            idx_time,
            idx_image,
            reference_small,
            buffers,
        };
        Ok((stage, prepared))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Produces frame `k` from its residuals into [`FrameStage::buffers`]. Does not allocate.
    ///
    /// # Errors
    /// When a residual slice has the wrong length or the renderer fails.
    pub fn process(
        &mut self,
        k: usize,
        face: &[f32],
        head: &[f32],
        torso: &[f32],
    ) -> Result<(), RenderError> {
        let b = &mut self.buffers;
        self.repr
            .project_frame(face, head, torso, &mut b.face_px, &mut b.shoulder_px)
            .map_err(|e| RenderError::Model(e.to_string()))?;
        self.drawer
            .process(&b.face_px, &b.shoulder_px, &mut b.cond)
            .map_err(|e| RenderError::Model(e.to_string()))?;
        if self.size == self.canvas {
            b.cond_small.copy_from_slice(&b.cond);
        } else {
            shrink_2x(&b.cond, self.canvas, self.canvas, &mut b.cond_small).map_err(conv)?;
        }
        u8_hwc_to_unit_chw(
            &b.cond_small,
            self.size,
            self.size,
            self.session.input_mut(self.idx_mesh),
        )
        .map_err(conv)?;
        self.session
            .input_mut(self.idx_time)
            .copy_from_slice(&time_code(k));
        self.session.run()?;
        unit_chw_to_u8_hwc(
            self.session.output(self.idx_image),
            self.size,
            self.size,
            &mut b.out,
        )
        .map_err(conv)?;
        Ok(())
    }
}

fn conv(e: crate::draw::convert::ConvertError) -> RenderError {
    RenderError::Model(e.to_string())
}

fn shrink_to(image: &[u8], canvas: usize, size: usize) -> Result<Vec<u8>, RenderError> {
    if size == canvas {
        return Ok(image.to_vec());
    }
    let mut out = vec![0; size * size * 3];
    shrink_2x(image, canvas, canvas, &mut out).map_err(conv)?;
    Ok(out)
}
