//! Frame sinks: where rendered uint8 RGB frames go.
//!
//! A sink is chosen by a URI, parsed once at start into [`SinkUri`] (STYLE rule 3), and
//! opened by the single exhaustive [`open`]. Every sink implements [`FrameSink`]:
//!
//! | URI | sink |
//! |---|---|
//! | `y4m://out.y4m`, `out.y4m` | [`y4m`]: pure-Rust YUV4MPEG2, 4:4:4, BT.601 limited range |
//! | `file://out.mp4`, `out.mp4` | `mp4` (feature `gstreamer`): H.264 + AAC of the speech in MP4 |
//! | `null://` | [`null`]: counts frames, writes nothing (the test sink) |
//!
//! `v4l2://` and `display://` are reserved for the live service and are refused here with a
//! clear message.
//!
//! Frames are row-major HWC RGB, `width * height * 3` bytes, at `fps` frames per second; frame
//! `k` starts at `k / fps` seconds. Audio, when given, is mono float32 at `sample_rate` and starts
//! at 0 as well, so picture and sound share one time origin.

#[cfg(feature = "gstreamer")]
mod mp4;
#[cfg(feature = "gstreamer")]
mod mp4_elements;
pub mod null;
pub mod y4m;

use std::fmt;
use std::path::{Path, PathBuf};

/// The URI forms accepted by [`SinkUri::parse`], for error messages and `--help` texts.
pub const ACCEPTED_FORMS: &str = "y4m://PATH.y4m, file://PATH.mp4, PATH.mp4, PATH.y4m or null:// \
     (v4l2:// and display:// are not available in offline render yet)";

/// Where frames go, parsed once from a user's string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkUri {
    /// A YUV4MPEG2 file (`y4m://PATH` or a bare `PATH.y4m`).
    Y4m(PathBuf),
    /// An MP4 file with H.264 video and, when audio is given, an AAC track
    /// (`file://PATH.mp4` or a bare `PATH.mp4`).
    File(PathBuf),
    /// Discards frames, counting them (`null://`).
    Null,
}

impl SinkUri {
    /// Parses a sink URI: `y4m://PATH`, `file://PATH.mp4` (also `file://PATH.y4m`), a bare path
    /// ending in `.mp4` or `.y4m` (case-insensitive), or `null://`. `file:///abs/x.mp4` is the
    /// absolute path `/abs/x.mp4`; `file://x.mp4` is relative to the working directory.
    ///
    /// # Errors
    /// [`SinkError::NotAvailable`] for `v4l2://` and `display://`, [`SinkError::BadUri`] for
    /// anything else that is not one of [`ACCEPTED_FORMS`].
    pub fn parse(uri: &str) -> Result<Self, SinkError> {
        let bad = || SinkError::BadUri {
            uri: uri.to_owned(),
        };
        if let Some((scheme, rest)) = uri.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "null" if rest.is_empty() => Ok(Self::Null),
                "y4m" if !rest.is_empty() => Ok(Self::Y4m(PathBuf::from(rest))),
                "file" => match extension(rest) {
                    Some(Ext::Mp4) => Ok(Self::File(PathBuf::from(rest))),
                    Some(Ext::Y4m) => Ok(Self::Y4m(PathBuf::from(rest))),
                    None => Err(bad()),
                },
                "v4l2" | "display" => Err(SinkError::NotAvailable {
                    uri: uri.to_owned(),
                }),
                _ => Err(bad()),
            };
        }
        match extension(uri) {
            Some(Ext::Mp4) => Ok(Self::File(PathBuf::from(uri))),
            Some(Ext::Y4m) => Ok(Self::Y4m(PathBuf::from(uri))),
            None => Err(bad()),
        }
    }

    /// The output file, if this sink writes one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Y4m(p) | Self::File(p) => Some(p),
            Self::Null => None,
        }
    }
}

impl std::str::FromStr for SinkUri {
    type Err = SinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SinkUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Y4m(p) => write!(f, "y4m://{}", p.display()),
            Self::File(p) => write!(f, "file://{}", p.display()),
            Self::Null => f.write_str("null://"),
        }
    }
}

enum Ext {
    Mp4,
    Y4m,
}

/// The known extension of a path with a non-empty file stem.
fn extension(path: &str) -> Option<Ext> {
    let p = Path::new(path);
    p.file_stem().filter(|s| !s.is_empty())?;
    let ext = p.extension()?.to_str()?;
    if ext.eq_ignore_ascii_case("mp4") {
        Some(Ext::Mp4)
    } else if ext.eq_ignore_ascii_case("y4m") {
        Some(Ext::Y4m)
    } else {
        None
    }
}

/// Frame rate of the offline renderer (MODA runs at 30 fps).
pub const DEFAULT_FPS: u32 = 30;
/// Sample rate of the speech the renderer consumes.
pub const DEFAULT_SAMPLE_RATE: u32 = 16_000;

/// What a sink is opened for: picture size, frame rate and the optional sound track.
#[derive(Debug, Clone, Copy)]
pub struct SinkSettings<'a> {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (integer; MODA uses 30).
    pub fps: u32,
    /// Mono float32 samples in [-1, 1] at `sample_rate`, starting at time 0. Only the mp4
    /// sink uses them; the others ignore them. The sink copies what it needs.
    pub audio: Option<&'a [f32]>,
    /// Sample rate of `audio` in Hz.
    pub sample_rate: u32,
}

impl<'a> SinkSettings<'a> {
    /// Settings for `width`×`height` frames at 30 fps with optional 16 kHz mono audio.
    pub fn new(width: u32, height: u32, audio: Option<&'a [f32]>) -> Self {
        Self {
            width,
            height,
            fps: DEFAULT_FPS,
            audio,
            sample_rate: DEFAULT_SAMPLE_RATE,
        }
    }

    /// Bytes in one RGB frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Checks sizes and rates once, at open.
    fn validate(&self) -> Result<(), SinkError> {
        let invalid = |detail: String| Err(SinkError::Settings { detail });
        if self.width == 0 || self.height == 0 || self.width > 16_384 || self.height > 16_384 {
            return invalid(format!(
                "frame size {}x{} is outside 1..=16384 pixels per side",
                self.width, self.height
            ));
        }
        if self.fps == 0 || self.fps > 1000 {
            return invalid(format!("frame rate {} fps is outside 1..=1000", self.fps));
        }
        if self.audio.is_some() && !(8_000..=192_000).contains(&self.sample_rate) {
            return invalid(format!(
                "audio sample rate {} Hz is outside 8000..=192000",
                self.sample_rate
            ));
        }
        Ok(())
    }
}

/// What a sink wrote, returned by [`FrameSink::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSummary {
    /// Frames written.
    pub frames: u64,
    /// Video duration in seconds (`frames / fps`).
    pub video_seconds: f64,
    /// Audio duration in seconds when a sound track was written.
    pub audio_seconds: Option<f64>,
    /// The file written, if any.
    pub path: Option<PathBuf>,
}

/// A destination for rendered frames.
pub trait FrameSink {
    /// Writes the next frame: row-major RGB, `width * height * 3` bytes. Frame `k` (counting
    /// from 0) is shown at `k / fps` seconds.
    ///
    /// # Errors
    /// [`SinkError::FrameSize`] for a buffer of the wrong length; an I/O or pipeline error
    /// when the frame cannot be written (the sink is then unusable).
    fn write_frame(&mut self, rgb: &[u8]) -> Result<(), SinkError>;

    /// Flushes and closes the output, returning what was written.
    ///
    /// # Errors
    /// When the last data cannot be written or the file cannot be finalized.
    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError>;
}

/// What the caller should do about a [`SinkError`] (STYLE rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The user's input or the installation is wrong; retrying will not help.
    Fatal,
    /// The output failed mid-stream; a new sink may succeed (e.g. after freeing disk space).
    RebuildStream,
}

/// Errors of the sinks. Each message is one sentence that names the URI, file or element.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("`{uri}` is not a sink URI; use {ACCEPTED_FORMS}")]
    BadUri { uri: String },
    #[error("sink `{uri}` is not available in offline render yet; use {ACCEPTED_FORMS}")]
    NotAvailable { uri: String },
    #[error(
        "sink `{uri}` needs moda-edge built with feature `gstreamer`; use a y4m:// sink instead"
    )]
    FeatureDisabled { uri: String },
    #[error("invalid sink settings: {detail}")]
    Settings { detail: String },
    #[error("cannot create the output file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("frame {index} has {got} bytes but a {width}x{height} RGB frame has {expected}")]
    FrameSize {
        index: u64,
        got: usize,
        expected: usize,
        width: u32,
        height: u32,
    },
    #[error("GStreamer cannot be initialised: {detail}")]
    GstInit { detail: String },
    #[error(
        "GStreamer is not initialised; call sink::init_gstreamer() in main before opening {uri}"
    )]
    GstNotInitialised { uri: String },
    #[error("no GStreamer {role} is installed (tried {}); install {package}", tried.join(", "))]
    MissingElement {
        role: &'static str,
        tried: Vec<&'static str>,
        package: &'static str,
    },
    #[error("the GStreamer pipeline writing {} failed: {detail}", path.display())]
    Pipeline { path: PathBuf, detail: String },
    #[error("the GStreamer pipeline writing {} did not finish within {seconds} s after the last frame", path.display())]
    Timeout { path: PathBuf, seconds: u64 },
}

impl SinkError {
    /// Whether to give up or to build a new sink.
    pub fn kind(&self) -> SinkErrorKind {
        match self {
            Self::Write { .. } | Self::Pipeline { .. } | Self::Timeout { .. } => {
                SinkErrorKind::RebuildStream
            }
            Self::BadUri { .. }
            | Self::NotAvailable { .. }
            | Self::FeatureDisabled { .. }
            | Self::Settings { .. }
            | Self::Create { .. }
            | Self::FrameSize { .. }
            | Self::GstInit { .. }
            | Self::GstNotInitialised { .. }
            | Self::MissingElement { .. } => SinkErrorKind::Fatal,
        }
    }
}

/// Initialises GStreamer; call once from `main` (STYLE rule 9) before opening an mp4 sink.
/// Calling it again is harmless.
///
/// # Errors
/// [`SinkError::GstInit`] when the GStreamer library cannot start (e.g. a broken registry).
#[cfg(feature = "gstreamer")]
pub fn init_gstreamer() -> Result<(), SinkError> {
    gstreamer::init().map_err(|e| SinkError::GstInit {
        detail: e.to_string(),
    })
}

/// Opens the sink named by `uri` for frames described by `settings`, logging the resolved
/// settings once.
///
/// # Errors
/// [`SinkError::Settings`] for impossible sizes or rates, [`SinkError::Create`] when the output
/// file cannot be created, and for mp4: [`SinkError::GstNotInitialised`],
/// [`SinkError::MissingElement`] or [`SinkError::Pipeline`]; [`SinkError::FeatureDisabled`]
/// for mp4 in a build without feature `gstreamer`.
pub fn open(uri: &SinkUri, settings: &SinkSettings<'_>) -> Result<Box<dyn FrameSink>, SinkError> {
    settings.validate()?;
    let audio = match settings.audio {
        Some(a) => format!(
            "{} samples ({:.3} s) at {} Hz",
            a.len(),
            a.len() as f64 / f64::from(settings.sample_rate),
            settings.sample_rate
        ),
        None => "none".to_owned(),
    };
    let sink: Box<dyn FrameSink> = match uri {
        SinkUri::Y4m(path) => Box::new(y4m::Y4mSink::create(path, settings)?),
        #[cfg(feature = "gstreamer")]
        SinkUri::File(path) => Box::new(mp4::Mp4Sink::create(path, settings)?),
        #[cfg(not(feature = "gstreamer"))]
        SinkUri::File(_) => {
            return Err(SinkError::FeatureDisabled {
                uri: uri.to_string(),
            })
        }
        SinkUri::Null => Box::new(null::NullSink::new(settings)),
    };
    log::info!(
        "sink {uri}: {}x{} RGB at {} fps, audio {audio}",
        settings.width,
        settings.height,
        settings.fps
    );
    Ok(sink)
}

/// Checks one frame's length; shared by the sinks.
fn check_frame(rgb: &[u8], index: u64, width: u32, height: u32) -> Result<(), SinkError> {
    let expected = width as usize * height as usize * 3;
    if rgb.len() == expected {
        Ok(())
    } else {
        Err(SinkError::FrameSize {
            index,
            got: rgb.len(),
            expected,
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests;
