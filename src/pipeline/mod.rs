//! The stages every driver is built from (offline `render`, the live service, the GPU path):
//!
//! ```text
//! 16 kHz mono samples ──▶ MotionStage ──MotionFrame──▶ FrameStage ──uint8 RGB──▶ FrameSink
//!   (audio::*)            (MODA windows, smoothing,     (pose, condition image,
//!                          FaCo; offline or streaming)   renderer, conversion)
//! ```
//!
//! A stage is settings plus state; it prepares its networks through a [`PlanCache`] of the
//! backend it is given, resolves its tensors by name once, checks every output it reads
//! against the network contract when it is built (so a model that would break a later stage is
//! refused with a message naming the tensor), and does not allocate per frame. See
//! docs/architecture.md for the boundaries and the clocks.
//!
//! [`PlanCache`]: crate::backend::PlanCache

pub mod frame;
pub mod live;
pub mod motion;

pub use frame::{FrameError, FrameOutcome, FrameSettings, FrameStage, RenderStage, RenderStages};
pub use motion::{
    MotionError, MotionFrame, MotionModels, MotionSettings, MotionStage, MotionStats, WindowPolicy,
};

use crate::backend::{BackendError, Prepared, ShapeError};
use crate::model::checkpoint::shape_string;

/// The index of output `name` of `prepared`, checked to have exactly `shape`.
///
/// # Errors
/// [`ShapeError::MissingOutput`] or [`ShapeError::BadOutput`] naming the model and tensor.
pub(crate) fn expect_output<P: Prepared>(
    prepared: &P,
    name: &str,
    shape: &[usize],
) -> Result<usize, BackendError> {
    let index = prepared.output_index(name)?;
    let found = &prepared.outputs()[index].shape;
    if found != shape {
        return Err(ShapeError::BadOutput {
            model: prepared.label().to_string(),
            name: name.to_string(),
            found: shape_string(found),
            expected: shape_string(shape),
        }
        .into());
    }
    Ok(index)
}
