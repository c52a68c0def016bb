//! The service config of `moda-edged`: a TOML file (`/etc/moda-edge/moda-edge.toml`, example
//! with every key and its default in `systemd/moda-edge.toml`), `--set KEY=VALUE` overrides on
//! the command line, and one validation into typed [`Settings`].
//!
//! ```text
//! text ──Config::from_toml──▶ Config ──set(key, value)*──▶ Config ──validate──▶ Settings
//!        syntax, unknown keys,         same checks for         ranges, URI shapes,
//!        TOML types                    the overridden key      directories exist
//! ```
//!
//! Every mistake is one sentence naming the file or the `--set`, the key, the value and what
//! was expected, e.g.
//! `config /etc/moda-edge/moda-edge.toml: motion.chunk_frames = 0: expected an integer >= 1` or
//! `--set latency_ms=abc: expected an integer 1..=10000`. Unknown keys list the known keys of
//! their table. Every number is checked finite.
//!
//! The URIs (`audio.source`, `audio.out`, `video.sink`) are checked for their scheme and shape
//! here and kept as strings; the pipeline parses them when it opens the devices with
//! `audio::SourceUri::parse` and `sink::SinkUri::parse`, whose modules own the full grammar.

mod check;
mod error;
mod raw;
mod schema;
mod uri;
mod validate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use error::{ConfigError, Origin};

use check::{check_table, line_column, one_line, parse_scalar};
use raw::RawConfig;
use schema::Lookup;
use validate::Origins as _;

use crate::motion::{Noise, StreamWindow};
use crate::pipeline::motion::StreamingSettings;

/// Where the packaged service reads its config.
pub const DEFAULT_PATH: &str = "/etc/moda-edge/moda-edge.toml";

/// A parsed config: the file's table (keys and TOML types checked) with the `--set` overrides
/// applied, not yet range-checked. [`Config::validate`] turns it into [`Settings`].
#[derive(Clone, Debug)]
pub struct Config {
    file: Origin,
    table: toml::Table,
    /// Dotted key → the `--set` value as given (the last one wins).
    overrides: BTreeMap<String, String>,
}

/// Which inference backend runs the networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The pure-Rust tract backend (`backend = "cpu"`).
    Cpu,
    /// TensorRT engines on the Jetson (`backend = "tensorrt"`).
    TensorRt,
}

/// How MODA's VAE noise is drawn (`noise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseMode {
    /// From a generator seeded by (`seed`, frame index).
    Seeded,
    /// ε = 0: deterministic.
    Zero,
}

/// The validated settings of the service. Every value is in its range; the directories exist
/// when they came from [`Config::validate`] (not from [`parse_and_validate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Directory with `moda.onnx` and `faco.onnx`.
    pub models: PathBuf,
    /// Avatar bundle directory.
    pub avatar: PathBuf,
    pub backend: BackendKind,
    /// CPU threads for matrix products, 1..=64.
    pub threads: usize,
    /// The fixed audio-to-picture budget, 1 ms..=10 s.
    pub latency: Duration,
    /// VAE noise seed (used when `noise` is [`NoiseMode::Seeded`]).
    pub seed: u64,
    pub noise: NoiseMode,
    pub audio: AudioSection,
    pub motion: MotionSection,
    pub video: VideoSection,
    pub service: ServiceSection,
}

impl Settings {
    /// The noise of the motion stage.
    pub fn noise(&self) -> Noise {
        match self.noise {
            NoiseMode::Seeded => Noise::Seeded(self.seed),
            NoiseMode::Zero => Noise::Zero,
        }
    }
}

/// `[audio]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioSection {
    /// Capture URI, scheme and shape checked: parse it with `audio::SourceUri::parse`.
    pub source: String,
    /// Playback URI, `""` (none) or `alsa://DEVICE`: see [`AudioSection::playback`].
    pub out: String,
    /// ALSA period in device frames, 16..=65536.
    pub period_frames: u32,
    /// ALSA buffer in device frames, `2 × period_frames..=1048576`.
    pub buffer_frames: u32,
    /// How often a missing capture device is looked for again, 0.1..=600 s.
    pub retry: Duration,
}

impl AudioSection {
    /// The playback URI, `None` when playback is off.
    pub fn playback(&self) -> Option<&str> {
        (!self.out.is_empty()).then_some(self.out.as_str())
    }
}

/// `[motion]`: the streaming window and the running waveform normalization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotionSection {
    /// History + chunk + lookahead frames; 2..=600 in all, chunk >= 1.
    pub window: StreamWindow,
    /// Time constant of the running waveform statistics, seconds (> 0, finite).
    pub norm_seconds: f64,
    /// Smallest normalization denominator, (0, 1].
    pub norm_floor: f32,
}

impl MotionSection {
    /// The motion stage's streaming settings.
    pub fn streaming(&self) -> StreamingSettings {
        StreamingSettings {
            window: self.window,
            norm_seconds: self.norm_seconds,
            norm_floor: self.norm_floor,
        }
    }
}

/// `[video]`.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoSection {
    /// Output URI, scheme and shape checked: parse it with `sink::SinkUri::parse`.
    pub sink: String,
    /// The renderer's temporal code cycles with this period, frames (>= 1).
    pub time_code_period: u64,
    /// Debug stamp of frame and sample index in a corner of every frame.
    pub stamp: bool,
}

/// `[service]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSection {
    /// One status log line every this long; `None` when off (`status_interval_s = 0`).
    pub status_interval: Option<Duration>,
    /// The JSON status file, rewritten atomically; `None` when off (`status_file = ""`).
    pub status_file: Option<PathBuf>,
}

impl Config {
    /// Reads and parses the config file at `path` (see [`Config::from_toml`]).
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, else as [`Config::from_toml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses config text; `origin` names it in messages (the file's path). Checks the syntax,
    /// that every key is known and that every value has its key's TOML type; ranges are checked
    /// by [`Config::validate`]. Missing keys take their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`], [`ConfigError::UnknownKey`] or [`ConfigError::Invalid`] (a value
    /// of the wrong type).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let file = Origin::File(origin.to_path_buf());
        let table = text.parse::<toml::Table>().map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                origin: file.clone(),
                line,
                column,
                message: one_line(e.message()),
            }
        })?;
        check_table(&table, &file)?;
        Ok(Config {
            file,
            table,
            overrides: BTreeMap::new(),
        })
    }

    /// The built-in defaults (no file; messages name `origin`).
    pub fn defaults(origin: &Path) -> Config {
        Config {
            file: Origin::File(origin.to_path_buf()),
            table: toml::Table::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// Overrides one key (`--set KEY=VALUE`): `key` is dotted (`motion.chunk_frames`), `value`
    /// is read as a TOML scalar (`6`, `2.5`, `true`, `"alsa://hw:1"`); for a string key any text
    /// that is not a quoted TOML string is taken as it is (`null://`, `hw:1`, an empty value).
    ///
    /// # Errors
    /// [`ConfigError::UnknownKey`] listing the known keys of the table, or
    /// [`ConfigError::Invalid`] when the value does not have the key's type.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let origin = Origin::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        let spec = match schema::lookup(key) {
            Some(Lookup::Key(spec)) => spec,
            Some(Lookup::Section(section)) => {
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: key.to_owned(),
                    known: section
                        .keys
                        .iter()
                        .map(|k| format!("{}.{}", section.name, k.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
            None => {
                let known = match key.split_once('.') {
                    Some((table, _)) => match schema::section(table) {
                        Some(section) => schema::known_in(section),
                        None => schema::known_top(),
                    },
                    None => schema::known_top(),
                };
                return Err(ConfigError::UnknownKey {
                    origin,
                    key: key.to_owned(),
                    known,
                });
            }
        };
        let parsed = parse_scalar(value, spec).ok_or_else(|| ConfigError::Invalid {
            origin: origin.clone(),
            key: key.to_owned(),
            value: value.to_owned(),
            expected: spec.expected.to_owned(),
        })?;
        match key.split_once('.') {
            None => {
                self.table.insert(spec.name.to_owned(), parsed);
            }
            Some((table, _)) => {
                // check_table let only tables through under a section's name.
                let mut inner = match self.table.remove(table) {
                    Some(toml::Value::Table(t)) => t,
                    _ => toml::Table::new(),
                };
                inner.insert(spec.name.to_owned(), parsed);
                self.table
                    .insert(table.to_owned(), toml::Value::Table(inner));
            }
        }
        self.overrides.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// [`Config::set`] from one `KEY=VALUE` argument (split at the first `=`).
    ///
    /// # Errors
    /// [`ConfigError::BadSet`] without `=` or with an empty key, else as [`Config::set`].
    pub fn set_arg(&mut self, arg: &str) -> Result<(), ConfigError> {
        match arg.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => self.set(key.trim(), value),
            _ => Err(ConfigError::BadSet {
                arg: arg.to_owned(),
            }),
        }
    }

    /// The checked settings: every value in its range ([`Config::validate_values`]) and the
    /// `models` and `avatar` directories (and the status file's directory) present.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key, its value and its origin.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let settings = self.validate_values()?;
        self.check_paths(&settings)?;
        Ok(settings)
    }

    /// Every value checked for its range and shape, without looking at the file system
    /// (deterministic: the fuzz target's function).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key, its value and its origin.
    pub fn validate_values(&self) -> Result<Settings, ConfigError> {
        let raw = RawConfig::deserialize(toml::Value::Table(self.table.clone())).map_err(|e| {
            ConfigError::Schema {
                origin: self.file.clone(),
                message: one_line(e.message()),
            }
        })?;
        validate::settings(&raw, self)
    }

    /// The effective config (file, defaults and overrides) as TOML text, every key written.
    ///
    /// # Errors
    /// [`ConfigError::Schema`] when the table does not fit the settings structs.
    pub fn effective_toml(&self) -> Result<String, ConfigError> {
        let schema_error = |message: String| ConfigError::Schema {
            origin: self.file.clone(),
            message: one_line(&message),
        };
        let raw = RawConfig::deserialize(toml::Value::Table(self.table.clone()))
            .map_err(|e| schema_error(e.message().to_owned()))?;
        toml::to_string(&raw).map_err(|e| schema_error(e.to_string()))
    }

    /// The keys set on the command line, with their values as given.
    pub fn overrides(&self) -> impl Iterator<Item = (&str, &str)> {
        self.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `models` and `avatar` must be directories; the status file's directory must exist.
    fn check_paths(&self, settings: &Settings) -> Result<(), ConfigError> {
        let is_dir = |key: &str, path: &Path| -> Result<(), ConfigError> {
            let problem = match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => return Ok(()),
                Ok(_) => "but it is not a directory".to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    "but nothing is there".to_owned()
                }
                Err(e) => format!("but it cannot be read ({e})"),
            };
            Err(ConfigError::Invalid {
                origin: self.origin_of(&[key]),
                key: key.to_owned(),
                value: schema::show_str(&path.display().to_string()),
                expected: format!("an existing directory, {problem}"),
            })
        };
        is_dir("models", &settings.models)?;
        is_dir("avatar", &settings.avatar)?;
        if let Some(file) = &settings.service.status_file {
            let dir = match file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(ConfigError::Invalid {
                    origin: self.origin_of(&["service.status_file"]),
                    key: "service.status_file".into(),
                    value: schema::show_str(&file.display().to_string()),
                    expected: format!(
                        "a file in an existing directory, but {} is not one",
                        dir.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl validate::Origins for Config {
    fn origin_of(&self, keys: &[&str]) -> Origin {
        keys.iter()
            .find_map(|k| {
                self.overrides.get(*k).map(|v| Origin::Set {
                    key: (*k).to_owned(),
                    value: v.clone(),
                })
            })
            .unwrap_or_else(|| self.file.clone())
    }
}

/// Parses config text and checks every value, without the file-system checks of
/// [`Config::validate`]: the fuzz target of the config parser. It never panics; every input
/// gives settings or one of the errors above.
///
/// # Errors
/// As [`Config::from_toml`] and [`Config::validate_values`]; messages name the file `<input>`.
pub fn parse_and_validate(text: &str) -> Result<Settings, ConfigError> {
    Config::from_toml(text, Path::new("<input>"))?.validate_values()
}
