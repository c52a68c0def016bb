//! The plumbing of the `moda-edged` service around the pipeline: telling systemd how it is
//! ([`notify`]), reporting how it runs ([`status`], with the pipeline's latency histogram) and hearing what it is
//! asked ([`signals`]). Nothing here knows about audio, networks or frames.
//!
//! ```text
//! signals ──stop / reload──▶ main loop ──READY=1, WATCHDOG=1, STATUS=…──▶ systemd (notify)
//!                               │
//!                               └──StatusReport──▶ log line + status.json (status)
//! output thread ──latency of each frame──▶ LatencyHistogram (lock-free, no allocation)
//! ```

pub mod notify;
pub mod signals;
pub mod status;

pub use crate::pipeline::live::histogram::{LatencyHistogram, LatencySummary};
pub use notify::{Notifier, NotifyError};
pub use signals::{Request, SecondStop, SignalListener};
pub use status::{LatencyMs, State, StatusReport};
