//! What the service reports about itself: a [`StatusReport`] written as JSON to the status file
//! (replaced atomically, so a reader never sees half of it) and shown as one log line (its
//! `Display`), e.g.
//!
//! ```text
//! running: 18000 frames, 30.0 fps, latency p50 402.1 p99 409.8 max 431.0 ms, 2 late, 0 dropped, 0 xruns, audio hw:1 (connected), up 600 s
//! ```
//!
//! Building and writing a report allocates: it is done every few seconds by the main loop,
//! not per frame.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::LatencySummary;
use crate::util::fsx;

/// The service's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Loading networks, opening devices.
    Starting,
    /// Frames flow.
    Running,
    /// Frames flow, but something is missing (e.g. the capture device: silence is animated
    /// while it is looked for).
    Degraded,
    /// Re-reading the config after SIGHUP.
    Reloading,
    /// Shutting down.
    Stopping,
}

impl State {
    /// The state as the JSON and the log write it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Degraded => "degraded",
            State::Reloading => "reloading",
            State::Stopping => "stopping",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl From<LatencySummary> for LatencyMs {
    fn from(s: LatencySummary) -> LatencyMs {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        LatencyMs {
            p50: ms(s.p50),
            p99: ms(s.p99),
            max: ms(s.max),
        }
    }
}

/// One status report: the JSON object of the status file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub state: State,
    /// Seconds since the service started.
    pub uptime_s: f64,
    /// Frames presented since start.
    pub frames: u64,
    /// Frames per second over the last interval.
    pub fps: f64,
    /// Capture-to-presentation latency of the frames of the last interval.
    pub latency_ms: LatencyMs,
    /// Frames presented after their deadline, since start.
    pub late_frames: u64,
    /// Frames not presented (too late, or the sink had no room), since start.
    pub dropped_frames: u64,
    /// Audio over- and underruns (capture and playback), since start.
    pub xruns: u64,
    /// The capture device (or source URI) in use.
    pub audio_device: String,
    /// Whether the capture device is present (false: silence while it is looked for).
    pub audio_connected: bool,
}

impl StatusReport {
    /// A report with every counter zero.
    pub fn new(state: State, audio_device: &str) -> StatusReport {
        StatusReport {
            state,
            uptime_s: 0.0,
            frames: 0,
            fps: 0.0,
            latency_ms: LatencyMs::default(),
            late_frames: 0,
            dropped_frames: 0,
            xruns: 0,
            audio_device: audio_device.to_owned(),
            audio_connected: false,
        }
    }

    /// The JSON text (pretty, ending in a newline). A number that is not finite is written as
    /// 0, so that the file always reads back (JSON has no NaN).
    pub fn to_json(&self) -> String {
        let mut clean = self.clone();
        for x in [
            &mut clean.uptime_s,
            &mut clean.fps,
            &mut clean.latency_ms.p50,
            &mut clean.latency_ms.p99,
            &mut clean.latency_ms.max,
        ] {
            if !x.is_finite() {
                *x = 0.0;
            }
        }
        // A struct of numbers, strings and a unit enum always serializes.
        let mut text = serde_json::to_string_pretty(&clean).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses a status file's text.
    ///
    /// # Errors
    /// serde_json's error when it is not a status report.
    pub fn from_json(text: &str) -> serde_json::Result<StatusReport> {
        serde_json::from_str(text)
    }

    /// Replaces the file at `path` with this report, atomically (`util::fsx::write_atomic`).
    ///
    /// # Errors
    /// The OS error of writing or renaming; the previous file is then unchanged.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        fsx::write_atomic(path, self.to_json().as_bytes())
    }
}

/// The one-line status log text (see the module doc).
impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_ms;
        write!(
            f,
            "{}: {} frames, {:.1} fps, latency p50 {:.1} p99 {:.1} max {:.1} ms, {} late, \
             {} dropped, {} xruns, audio {} ({}), up {:.0} s",
            self.state,
            self.frames,
            self.fps,
            l.p50,
            l.p99,
            l.max,
            self.late_frames,
            self.dropped_frames,
            self.xruns,
            self.audio_device.escape_debug(),
            if self.audio_connected {
                "connected"
            } else {
                "missing"
            },
            self.uptime_s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::LatencyHistogram;
    use std::time::Duration;

    fn report() -> StatusReport {
        let h = LatencyHistogram::new();
        for ms in [400, 401, 402, 430] {
            h.record(Duration::from_millis(ms));
        }
        StatusReport {
            state: State::Running,
            uptime_s: 600.4,
            frames: 18_000,
            fps: 29.97,
            latency_ms: h.summary().into(),
            late_frames: 2,
            dropped_frames: 1,
            xruns: 3,
            audio_device: "hw:1".into(),
            audio_connected: true,
        }
    }

    /// Equal, but for the last bit of the floats (serde_json's default float parser is not
    /// correctly rounded).
    fn assert_same(a: &StatusReport, b: &StatusReport) {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
        let floats = |r: &StatusReport| {
            let l = r.latency_ms;
            [r.uptime_s, r.fps, l.p50, l.p99, l.max]
        };
        for (x, y) in floats(a).into_iter().zip(floats(b)) {
            assert!(close(x, y), "{a:?}\n{b:?}");
        }
        let mut a = a.clone();
        a.uptime_s = b.uptime_s;
        a.fps = b.fps;
        a.latency_ms = b.latency_ms;
        assert_eq!(&a, b);
    }

    #[test]
    fn the_status_file_reads_back_and_has_the_documented_fields() {
        let r = report();
        let text = r.to_json();
        assert_same(&StatusReport::from_json(&text).unwrap(), &r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["frames"], 18_000);
        assert_eq!(v["fps"], 29.97);
        assert_eq!(v["late_frames"], 2);
        assert_eq!(v["xruns"], 3);
        assert_eq!(v["audio_device"], "hw:1");
        let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 401.0).abs() < 401.0 / 64.0, "{p50}");
        assert_eq!(v["latency_ms"]["max"], 430.0);
        assert!(v["latency_ms"]["p99"].as_f64().unwrap() <= 430.0);
    }

    #[test]
    fn numbers_that_are_not_finite_are_written_as_zero() {
        let mut r = report();
        r.fps = f64::NAN;
        r.latency_ms.max = f64::INFINITY;
        let back = StatusReport::from_json(&r.to_json()).unwrap();
        assert_eq!(back.fps, 0.0);
        assert_eq!(back.latency_ms.max, 0.0);
        assert_eq!(back.frames, r.frames);
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut r = StatusReport::new(State::Starting, "default");
        r.write(&path).unwrap();
        assert_same(
            &StatusReport::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            &r,
        );
        // Held open, the old file keeps its content: the new one replaced it by rename.
        let old = std::fs::File::open(&path).unwrap();
        r.state = State::Running;
        r.frames = 42;
        r.write(&path).unwrap();
        let now = StatusReport::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((now.state, now.frames), (State::Running, 42));
        let before = serde_json::from_reader::<_, StatusReport>(old).unwrap();
        assert_eq!(before.state, State::Starting);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        // A directory that does not exist: an error, nothing written.
        assert!(r.write(&dir.path().join("none/status.json")).is_err());
    }

    #[test]
    fn the_log_line_is_one_line() {
        let line = report().to_string();
        assert_eq!(
            line,
            "running: 18000 frames, 30.0 fps, latency p50 399.4 p99 428.0 max 430.0 ms, 2 late, \
             1 dropped, 3 xruns, audio hw:1 (connected), up 600 s"
        );
        let mut r = report();
        r.audio_device = "evil\nname".into();
        r.audio_connected = false;
        let line = r.to_string();
        assert!(!line.contains('\n'));
        assert!(line.contains("audio evil\\nname (missing)"));
    }
}
