//! The range checks: the serde structs (every key present, TOML's types) become the typed
//! [`Settings`], or the first value out of its range is reported with its origin.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawConfig;
use super::schema::{self, show_float};
use super::{
    uri, AudioSection, BackendKind, ConfigError, MotionSection, NoiseMode, Origin, ServiceSection,
    Settings, VideoSection,
};
use crate::motion::StreamWindow;

/// The most frames a MODA window holds (its positional tables); two is the least (its
/// interpolation needs two).
const WINDOW_FRAMES: RangeInclusive<i64> = 2..=600;
/// The largest ALSA buffer accepted, in device frames (21.8 s at 48 kHz).
const MAX_BUFFER_FRAMES: i64 = 1 << 20;

/// Names where a key's value came from.
pub(crate) trait Origins {
    /// The origin of the first of `keys` set on the command line, else the file.
    fn origin_of(&self, keys: &[&str]) -> Origin;
}

struct Check<'a, O: Origins> {
    origins: &'a O,
}

impl<O: Origins> Check<'_, O> {
    fn fail(&self, key: &str, value: String, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origins.origin_of(&[key]),
            key: key.to_owned(),
            value,
            expected: expected.into(),
        }
    }

    fn int(&self, key: &str, v: i64, range: RangeInclusive<i64>) -> Result<i64, ConfigError> {
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.fail(key, v.to_string(), schema::spec(key).expected))
        }
    }

    /// A finite number in `range` (integers were widened to `f64` by serde).
    fn float(&self, key: &str, v: f64, ok: impl FnOnce(f64) -> bool) -> Result<f64, ConfigError> {
        if v.is_finite() && ok(v) {
            Ok(v)
        } else {
            Err(self.fail(key, show_float(v), schema::spec(key).expected))
        }
    }

    /// One of `choices` (exactly, case-sensitive).
    fn choice<T: Copy>(&self, key: &str, v: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        choices
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| self.fail(key, schema::show_str(v), schema::spec(key).expected))
    }

    fn string(&self, key: &str, v: &str, ok: fn(&str) -> bool) -> Result<String, ConfigError> {
        if ok(v) {
            Ok(v.to_owned())
        } else {
            Err(self.fail(key, schema::show_str(v), schema::spec(key).expected))
        }
    }
}

fn non_empty(s: &str) -> bool {
    !s.is_empty()
}

fn any(_: &str) -> bool {
    true
}

/// Checks every value of `raw` and builds the settings; no file system access.
pub(crate) fn settings(raw: &RawConfig, origins: &impl Origins) -> Result<Settings, ConfigError> {
    let c = Check { origins };

    let models = PathBuf::from(c.string("models", &raw.models, non_empty)?);
    let avatar = PathBuf::from(c.string("avatar", &raw.avatar, non_empty)?);
    let backend = c.choice(
        "backend",
        &raw.backend,
        &[
            ("cpu", BackendKind::Cpu),
            ("tensorrt", BackendKind::TensorRt),
        ],
    )?;
    let threads = c.int("threads", raw.threads, 1..=64)?;
    let latency_ms = c.int("latency_ms", raw.latency_ms, 1..=10_000)?;
    let seed = c.int("seed", raw.seed, 0..=i64::MAX)?;
    let noise = c.choice(
        "noise",
        &raw.noise,
        &[("seeded", NoiseMode::Seeded), ("zero", NoiseMode::Zero)],
    )?;

    let a = &raw.audio;
    let source = c.string("audio.source", &a.source, uri::is_source)?;
    let out = c.string("audio.out", &a.out, uri::is_playback)?;
    let period = c.int("audio.period_frames", a.period_frames, 16..=65_536)?;
    let buffer_range = 2 * period..=MAX_BUFFER_FRAMES;
    if !buffer_range.contains(&a.buffer_frames) {
        return Err(ConfigError::Invalid {
            origin: origins.origin_of(&["audio.buffer_frames", "audio.period_frames"]),
            key: "audio.buffer_frames".into(),
            value: a.buffer_frames.to_string(),
            expected: format!(
                "an integer {}..={MAX_BUFFER_FRAMES} (at least 2 × audio.period_frames = 2 × {period})",
                2 * period
            ),
        });
    }
    let retry = c.float("audio.retry_seconds", a.retry_seconds, |v| {
        (0.1..=600.0).contains(&v)
    })?;

    let m = &raw.motion;
    let history = c.int("motion.history_frames", m.history_frames, 0..=i64::MAX)?;
    let chunk = c.int("motion.chunk_frames", m.chunk_frames, 1..=i64::MAX)?;
    let lookahead = c.int("motion.lookahead_frames", m.lookahead_frames, 0..=i64::MAX)?;
    let total = i128::from(history) + i128::from(chunk) + i128::from(lookahead);
    let window = match (
        usize::try_from(history),
        usize::try_from(chunk),
        usize::try_from(lookahead),
    ) {
        (Ok(history), Ok(chunk), Ok(lookahead))
            if (i128::from(*WINDOW_FRAMES.start())..=i128::from(*WINDOW_FRAMES.end()))
                .contains(&total) =>
        {
            StreamWindow {
                history,
                chunk,
                lookahead,
            }
        }
        _ => {
            const KEYS: [&str; 3] = [
                "motion.history_frames",
                "motion.chunk_frames",
                "motion.lookahead_frames",
            ];
            return Err(ConfigError::Invalid {
                origin: origins.origin_of(&KEYS),
                key: KEYS.join(" + "),
                value: format!("{history} + {chunk} + {lookahead} = {total}"),
                expected: format!(
                    "a window of {}..={} frames (MODA's limits)",
                    WINDOW_FRAMES.start(),
                    WINDOW_FRAMES.end()
                ),
            });
        }
    };
    let norm_seconds = c.float("motion.norm_seconds", m.norm_seconds, |v| v > 0.0)?;
    // The floor is used as an f32: it must stay above zero there too.
    let norm_floor = c.float("motion.norm_floor", m.norm_floor, |v| {
        v >= f64::from(f32::MIN_POSITIVE) && v <= 1.0
    })?;

    let v = &raw.video;
    let sink = c.string("video.sink", &v.sink, uri::is_sink)?;
    let time_code_period = c.int("video.time_code_period", v.time_code_period, 1..=i64::MAX)?;

    let s = &raw.service;
    let interval = c.float("service.status_interval_s", s.status_interval_s, |v| {
        v == 0.0 || (0.5..=3600.0).contains(&v)
    })?;
    let status_file = c.string("service.status_file", &s.status_file, any)?;

    Ok(Settings {
        models,
        avatar,
        backend,
        threads: usize::try_from(threads).unwrap_or(1),
        latency: Duration::from_millis(latency_ms.unsigned_abs()),
        seed: seed.unsigned_abs(),
        noise,
        audio: AudioSection {
            source,
            out,
            period_frames: u32::try_from(period).unwrap_or(u32::MAX),
            buffer_frames: u32::try_from(a.buffer_frames).unwrap_or(u32::MAX),
            // In range (0.1..=600), so the conversion cannot fail.
            retry: Duration::try_from_secs_f64(retry).unwrap_or(Duration::from_secs(3)),
        },
        motion: MotionSection {
            window,
            norm_seconds,
            norm_floor: norm_floor as f32,
        },
        video: VideoSection {
            sink,
            time_code_period: time_code_period.unsigned_abs(),
            stamp: v.stamp,
        },
        service: ServiceSection {
            status_interval: (interval > 0.0)
                .then(|| Duration::try_from_secs_f64(interval).unwrap_or(Duration::from_secs(10))),
            status_file: (!status_file.is_empty()).then(|| PathBuf::from(status_file)),
        },
    })
}
