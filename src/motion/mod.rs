//! Motion stage maths: MODA windowing and merging for offline files, the streaming window and
//! its normalization, seam blending and lookahead-limited smoothing for live audio, the VAE
//! noise, and the temporal Gaussian smoothing of the MODA streams and of FaCo's output.
//! Everything here is pure arithmetic on float32 buffers; the network calls live in
//! `pipeline::motion` (see docs/architecture.md).

pub mod noise;
pub mod offline;
pub mod smooth;
pub mod streaming;

pub use noise::{Noise, NOISE_DIM};
pub use offline::{frame_count, merge, windows, MergeError, AV_RATE, STEP_SAMPLES, WINDOW_SAMPLES};
pub use smooth::{
    gaussian_filter1d, gaussian_weights, smooth_columns, smooth_moda_streams, smooth_vertices,
    SmoothError, SmoothingSettings,
};
pub use streaming::{blend_seam, CausalSmoother, RunningNorm, StreamWindow};
