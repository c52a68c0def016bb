//! INT8 calibration on the CPU: range statistics of every tensor a quantized layer reads or
//! writes, an explicit Q/DQ ONNX graph, a TensorRT calibration cache and a JSON report.
//!
//! ```text
//! calibration set ──collect (tract, 2 passes)──▶ TensorStats per tensor
//!                                         ├─ max / percentile / entropy ranges ─▶ report.json
//!                                         ├─ chosen range ─▶ qdq::write ─▶ NAME.int8.onnx
//!                                         └─ entropy scale ─▶ NAME.calib (TensorRT ≤ 10)
//! ```
//! TensorRT 10 deprecates implicit calibration and 11 removes it, so the Q/DQ graph is the
//! primary output; the cache serves implicit builds on JetPack 6. See ARCHITECTURE.md
//! ("INT8 and engines").

pub mod cache;
pub mod calibrate;
pub mod collect;
pub mod fp16;
pub mod plan;
pub mod qdq;
pub mod set;
pub mod stats;

pub use cache::CalibrationCache;
pub use calibrate::{
    calibrate, calibrate_dir, read_set, CalibrateOptions, Calibrated, Method, NetworkReport,
    TensorRange,
};
pub use plan::{plan, KeepRules, Plan};

/// Why calibration failed. Every kind is a user or data error to fix and rerun (nothing to
/// retry).
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tract: {0}")]
    Tract(String),
    #[error("calibration set: {0}")]
    Sample(String),
    #[error("no calibration range for tensor `{0}` (it feeds a quantized layer)")]
    MissingRange(String),
    #[error("graph: {0}")]
    Graph(String),
    #[error("{path}: {detail}")]
    File {
        path: std::path::PathBuf,
        detail: String,
    },
}
