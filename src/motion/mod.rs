//! Motion stage maths: MODA windowing and merging for offline files, and the temporal
//! Gaussian smoothing of the MODA streams and of FaCo's output (`reference/MODA_INFERENCE.md`
//! §3). The network calls themselves live with the pipeline; everything here is pure
//! arithmetic on float32 buffers.

pub mod offline;
pub mod smooth;

pub use offline::{frame_count, merge, windows, MergeError, AV_RATE, STEP_SAMPLES, WINDOW_SAMPLES};
pub use smooth::{
    gaussian_filter1d, gaussian_weights, smooth_columns, smooth_moda_streams, smooth_vertices,
    SmoothError, SmoothingSettings,
};
