//! The condition image and the renderer's pixel plumbing: an exact OpenCV LINE_8 rasterizer,
//! the condition-image stage, the temporal code and the uint8/float conversions.

pub mod condition;
pub mod convert;
pub mod raster;
pub mod timecode;
