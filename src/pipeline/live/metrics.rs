//! The live pipeline's counters: written by its threads with relaxed atomics, read by the
//! service for the status line, the status file and the watchdog decision.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::LatencyHistogram;
use crate::clock::{Clock, Pts};

/// Counters the threads update and the service reads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Deadlines passed (frames presented, fresh or repeated).
    pub presented: AtomicU64,
    /// Deadlines at which the frame due was not ready (the previous picture was repeated).
    pub late: AtomicU64,
    /// Frames rendered and handed to the output.
    pub rendered: AtomicU64,
    /// Frames the renderer skipped because they could not make their deadline.
    pub skipped: AtomicU64,
    /// Frames whose motion was not finite (the previous picture was kept).
    pub nonfinite: AtomicU64,
    /// Frames rendered after their deadline (dropped at the output).
    pub stale: AtomicU64,
    /// Frames the sink dropped (no room on the device).
    pub sink_dropped: AtomicU64,
    /// Motion windows run.
    pub motion_runs: AtomicU64,
    /// Samples taken from the feed.
    pub samples: AtomicU64,
    /// Smallest and largest presentation latency (present time − frame time), ns.
    pub latency_min_ns: AtomicU64,
    pub latency_max_ns: AtomicU64,
    /// Presentation latencies, for percentiles.
    pub latencies: LatencyHistogram,
    /// Per-thread heartbeats: clock ns of the last loop turn (motion, render, output,
    /// playback); `u64::MAX` for a thread that does not run (counts as alive).
    pub heartbeat: [AtomicU64; 4],
    /// Audio chunks the sink or the playback could not take (their queue was full).
    pub audio_dropped: AtomicU64,
    /// Samples of silence put in for samples the capture dropped.
    pub gap_filled: AtomicU64,
    /// Capture and playback underruns/overruns (xruns) so far.
    pub capture_xruns: AtomicU64,
    pub playback_xruns: AtomicU64,
    /// Whether the capture device is delivering (false: silence while it is looked for).
    pub audio_connected: AtomicBool,
    /// The output has finished (end of stream or error).
    pub finished: AtomicBool,
    /// The render thread is held by the debug stall control.
    pub render_stalled: AtomicBool,
}

/// A snapshot of the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub presented: u64,
    pub late: u64,
    pub skipped: u64,
    pub stale: u64,
    pub sink_dropped: u64,
    pub motion_runs: u64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        Metrics {
            latency_min_ns: AtomicU64::new(u64::MAX),
            ..Metrics::default()
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let h = self.latencies.summary();
        Snapshot {
            presented: self.presented.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            sink_dropped: self.sink_dropped.load(Ordering::Relaxed),
            motion_runs: self.motion_runs.load(Ordering::Relaxed),
            latency_p50: h.p50,
            latency_p99: h.p99,
            latency_max: h.max,
        }
    }

    /// Whether every running thread has turned its loop within `within` of `now`.
    pub fn alive(&self, now: Pts, within: Duration) -> bool {
        self.heartbeat.iter().all(|h| {
            let t = Pts::from_nanos(h.load(Ordering::Relaxed));
            now.since(t) <= within
        })
    }
}

pub(super) fn beat(h: &AtomicU64, clock: &dyn Clock) {
    h.store(clock.now().nanos(), Ordering::Relaxed);
}
