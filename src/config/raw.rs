//! The config file as serde reads it: every key with its default, in the types TOML writes
//! (integers as `i64`, numbers as `f64`), before the range checks of `validate.rs`. Unknown keys
//! are refused at every level (`deny_unknown_fields`); the key check in `mod.rs` finds them
//! first to name the known keys.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub models: String,
    pub avatar: String,
    pub backend: String,
    pub threads: i64,
    pub latency_ms: i64,
    pub seed: i64,
    pub noise: String,
    pub audio: RawAudio,
    pub motion: RawMotion,
    pub video: RawVideo,
    pub service: RawService,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            models: "/var/lib/moda-edge/models".into(),
            avatar: "/var/lib/moda-edge/avatar".into(),
            backend: "cpu".into(),
            threads: 1,
            latency_ms: 400,
            seed: 1,
            noise: "seeded".into(),
            audio: RawAudio::default(),
            motion: RawMotion::default(),
            video: RawVideo::default(),
            service: RawService::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAudio {
    pub source: String,
    pub out: String,
    pub period_frames: i64,
    pub buffer_frames: i64,
    pub retry_seconds: f64,
}

impl Default for RawAudio {
    fn default() -> Self {
        RawAudio {
            source: "alsa://default".into(),
            out: String::new(),
            period_frames: 256,
            buffer_frames: 2048,
            retry_seconds: 3.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMotion {
    pub history_frames: i64,
    pub chunk_frames: i64,
    pub lookahead_frames: i64,
    pub norm_seconds: f64,
    pub norm_floor: f64,
}

impl Default for RawMotion {
    fn default() -> Self {
        RawMotion {
            history_frames: 90,
            chunk_frames: 5,
            lookahead_frames: 5,
            norm_seconds: 20.0,
            norm_floor: 0.02,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawVideo {
    pub sink: String,
    pub time_code_period: i64,
    pub stamp: bool,
}

impl Default for RawVideo {
    fn default() -> Self {
        RawVideo {
            sink: "null://".into(),
            time_code_period: 600,
            stamp: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawService {
    pub status_interval_s: f64,
    pub status_file: String,
}

impl Default for RawService {
    fn default() -> Self {
        RawService {
            status_interval_s: 10.0,
            status_file: String::new(),
        }
    }
}
