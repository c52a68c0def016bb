//! Frame sinks: where rendered uint8 RGB frames go.
//!
//! A sink is chosen by a URI, parsed once at start into [`SinkUri`], and
//! opened by the single exhaustive [`open`]. Every sink implements [`FrameSink`]:
//!
//! | URI | sink |
//! |---|---|
//! | `y4m://out.y4m`, `out.y4m` | [`y4m`]: pure-Rust YUV4MPEG2, 4:4:4, BT.601 limited range |
//! | `file://out.mp4`, `out.mp4` | `mp4` (feature `gstreamer`): H.264 + AAC of the speech in MP4 |
//! | `null://` | [`null`]: counts frames, writes nothing (the test sink) |
//! | `v4l2:///dev/videoN` | `v4l2` (feature `v4l2`): a V4L2 video output device (v4l2loopback, an HDMI output), YUYV, RGB3 or NV12 |
//! | `display://`, `display://?sink=NAME` | `display` (feature `gstreamer`): a screen through GStreamer's platform sink |
//!
//! The last two are live outputs ([`SinkUri::is_live`]) for the service `moda-edged`: they show a
//! frame when it is written and never block (a frame the output has no room for is
//! [`WriteOutcome::Dropped`]). Offline `render` refuses them ([`SinkUri::parse_offline`]).
//! [`pixel`] converts RGB frames into the layouts devices take; [`stamp`] draws and reads the
//! debug stamp of the field tests.
//!
//! A [`Frame`] is row-major HWC RGB, `width * height * 3` bytes, with its index and its
//! presentation timestamp ([`Pts`], nanoseconds on the stream's clock); writing it returns a
//! [`WriteOutcome`] (written, or for live outputs late or dropped). Audio takes its own path,
//! [`FrameSink::write_audio`]: mono float32 samples at the rate given at open, stamped with the
//! time of their first sample on the same clock, so picture and sound share one time origin.
//! Sinks are `Send`, so a driver can own one on its output thread. A file's timeline starts at
//! the first timestamp written to it (frame or audio): offline that is 0, live it is the
//! monotonic time the first frame is presented at.
//!
//! Files are written atomically: to a temporary file beside the target, renamed over it by
//! [`FrameSink::finish`]. A sink dropped unfinished (a failed or aborted run) removes its
//! temporary file, so a previous output at the target stays intact and nothing is left behind.

#[cfg(feature = "gstreamer")]
mod display;
#[cfg(feature = "gstreamer")]
mod mp4;
#[cfg(feature = "gstreamer")]
mod mp4_elements;
pub mod null;
pub mod pixel;
pub mod stamp;
#[cfg(feature = "v4l2")]
mod v4l2;
#[cfg(feature = "v4l2")]
mod v4l2_io;
pub mod y4m;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::clock::Pts;

/// The URI forms accepted by [`SinkUri::parse`], for error messages and `--help` texts.
pub const ACCEPTED_FORMS: &str = "y4m://PATH.y4m, file://PATH.mp4, PATH.mp4, PATH.y4m, null://, \
     v4l2:///dev/videoN, display:// or display://?sink=ELEMENT";

/// The forms offline `render` writes ([`SinkUri::parse_offline`]).
pub const OFFLINE_FORMS: &str = "y4m://PATH.y4m, file://PATH.mp4, PATH.mp4, PATH.y4m or null://";

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
    /// A V4L2 video output device (`v4l2:///dev/videoN`: the absolute path of its node).
    V4l2(PathBuf),
    /// A screen, through GStreamer (`display://`); `sink` names the GStreamer sink element to
    /// use instead of the platform's (`display://?sink=NAME`).
    Display { sink: Option<String> },
}

impl SinkUri {
    /// Parses a sink URI: `y4m://PATH`, `file://PATH.mp4` (also `file://PATH.y4m`), a bare path
    /// ending in `.mp4` or `.y4m` (case-insensitive), `null://`, and the live outputs
    /// `v4l2:///dev/videoN` (an absolute path) and `display://` or `display://?sink=NAME` (NAME:
    /// letters, digits, `_` and `-`). `file:///abs/x.mp4` is the absolute path `/abs/x.mp4`;
    /// `file://x.mp4` is relative to the working directory.
    ///
    /// # Errors
    /// [`SinkError::BadUri`] for anything that is not one of [`ACCEPTED_FORMS`].
    pub fn parse(uri: &str) -> Result<Self, SinkError> {
        let bad = || SinkError::BadUri {
            uri: uri.to_owned(),
            forms: ACCEPTED_FORMS,
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
                "v4l2" if rest.starts_with('/') && !rest.contains(['?', '\0']) => {
                    Ok(Self::V4l2(PathBuf::from(rest)))
                }
                "display" => match rest.strip_prefix("?sink=") {
                    None if rest.is_empty() => Ok(Self::Display { sink: None }),
                    Some(name) if is_element_name(name) => Ok(Self::Display {
                        sink: Some(name.to_owned()),
                    }),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            };
        }
        match extension(uri) {
            Some(Ext::Mp4) => Ok(Self::File(PathBuf::from(uri))),
            Some(Ext::Y4m) => Ok(Self::Y4m(PathBuf::from(uri))),
            None => Err(bad()),
        }
    }

    /// Parses a sink URI for offline `render`, which writes files: as [`SinkUri::parse`], but a
    /// live output is refused.
    ///
    /// # Errors
    /// [`SinkError::NotAvailable`] for `v4l2://` and `display://` URIs, [`SinkError::BadUri`]
    /// listing [`OFFLINE_FORMS`] for anything that is not a sink URI.
    pub fn parse_offline(uri: &str) -> Result<Self, SinkError> {
        let parsed = Self::parse(uri).map_err(|e| match e {
            SinkError::BadUri { uri, .. } => SinkError::BadUri {
                uri,
                forms: OFFLINE_FORMS,
            },
            other => other,
        })?;
        if parsed.is_live() {
            return Err(SinkError::NotAvailable {
                uri: uri.to_owned(),
            });
        }
        Ok(parsed)
    }

    /// Whether this is a live output of the service (`v4l2://`, `display://`): frames are shown
    /// when written and may be dropped, nothing is stored.
    pub fn is_live(&self) -> bool {
        match self {
            Self::V4l2(_) | Self::Display { .. } => true,
            Self::Y4m(_) | Self::File(_) | Self::Null => false,
        }
    }

    /// The output file, if this sink writes one (a device node is not one).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Y4m(p) | Self::File(p) => Some(p),
            Self::Null | Self::V4l2(_) | Self::Display { .. } => None,
        }
    }
}

/// A GStreamer element factory name as `display://?sink=` takes it.
fn is_element_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
            Self::V4l2(p) => write!(f, "v4l2://{}", p.display()),
            Self::Display { sink: None } => f.write_str("display://"),
            Self::Display { sink: Some(name) } => write!(f, "display://?sink={name}"),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSettings {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (integer; MODA uses 30).
    pub fps: u32,
    /// Sample rate of the mono float32 audio [`FrameSink::write_audio`] will get, or `None`
    /// for a picture-only output. Only sinks with a sound track use it.
    pub audio_rate: Option<u32>,
}

impl SinkSettings {
    /// Settings for `width`×`height` frames at 30 fps, without audio.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            fps: DEFAULT_FPS,
            audio_rate: None,
        }
    }

    /// The same with a mono audio track at `rate` Hz.
    pub fn with_audio(self, rate: u32) -> Self {
        Self {
            audio_rate: Some(rate),
            ..self
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
        if let Some(rate) = self.audio_rate {
            if !(8_000..=192_000).contains(&rate) {
                return invalid(format!(
                    "audio sample rate {rate} Hz is outside 8000..=192000"
                ));
            }
        }
        Ok(())
    }
}

/// Layout of a frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit R, G, B per pixel, rows of `width * 3` bytes, no padding.
    Rgb24,
}

/// One picture with its place in time.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Frame index from the start of the stream.
    pub index: u64,
    /// Presentation timestamp on the stream's clock.
    pub pts: Pts,
    pub format: PixelFormat,
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// An RGB frame.
    pub fn rgb(index: u64, pts: Pts, data: &'a [u8]) -> Frame<'a> {
        Frame {
            index,
            pts,
            format: PixelFormat::Rgb24,
            data,
        }
    }
}

/// What became of a frame handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written (or queued for its presentation time).
    Written,
    /// Shown, but after its presentation time.
    Late,
    /// Not shown: the output had no room (a live device whose reader stalls).
    Dropped,
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

/// A destination for rendered frames and, where the format has a sound track, audio.
pub trait FrameSink: Send {
    /// Writes the next frame.
    ///
    /// # Errors
    /// [`SinkError::FrameSize`] for a buffer of the wrong length; an I/O or pipeline error
    /// when the frame cannot be written (the sink is then unusable).
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError>;

    /// Writes mono audio whose first sample plays at `pts`, at the rate given at open. Sinks
    /// without a sound track count it and drop it. Push audio ahead of the frames it goes with
    /// (a muxer waits for both).
    ///
    /// # Errors
    /// An I/O or pipeline error.
    fn write_audio(&mut self, samples: &[f32], pts: Pts) -> Result<(), SinkError>;

    /// Flushes and closes the output (renaming a file into place), returning what was written.
    ///
    /// # Errors
    /// When the last data cannot be written or the file cannot be finalized; the target is
    /// then unchanged.
    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError>;
}

/// What the caller should do about a [`SinkError`].
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
    #[error("`{uri}` is not a sink URI; use {forms}")]
    BadUri { uri: String, forms: &'static str },
    #[error("sink `{uri}` is a live output of the service moda-edged; offline render writes {OFFLINE_FORMS}")]
    NotAvailable { uri: String },
    #[error(
        "sink `{uri}` needs moda-edge built with feature `{feature}`; use a y4m:// sink instead"
    )]
    FeatureDisabled { uri: String, feature: &'static str },
    #[error("invalid sink settings: {detail}")]
    Settings { detail: String },
    #[error("cannot create the output file {}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to {}", path.display())]
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
    #[error("sink `{uri}` names the GStreamer element `{name}`, which is not installed (see gst-inspect-1.0 {name}); install its plugin or leave ?sink= out for the platform's display sink")]
    UnknownElement { uri: String, name: String },
    #[error("the GStreamer pipeline showing {uri} failed: {detail}")]
    Live { uri: String, detail: String },
    #[error("the V4L2 device {} does not exist; load v4l2loopback or name an existing /dev/videoN", path.display())]
    DeviceMissing { path: PathBuf },
    #[error("cannot open the V4L2 device {}", path.display())]
    DeviceOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a V4L2 video output device: {detail}", path.display())]
    NotVideoOutput { path: PathBuf, detail: String },
    #[error("the V4L2 device {} cannot take {width}x{height} frames as YUYV, RGB3 or NV12: {detail}", path.display())]
    DeviceFormat {
        path: PathBuf,
        width: u32,
        height: u32,
        detail: String,
    },
    #[error("the V4L2 device {} failed in {op}", path.display())]
    DeviceIo {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("the V4L2 device {} disappeared", path.display())]
    DeviceLost { path: PathBuf },
}

impl SinkError {
    /// Whether to give up or to build a new sink.
    ///
    /// A V4L2 device that is missing at open is [`SinkErrorKind::RebuildStream`] too: after a
    /// [`SinkError::DeviceLost`] the node is gone until the device returns, and a supervisor
    /// retrying the open must not stop on it (at start-up it may treat it as fatal).
    pub fn kind(&self) -> SinkErrorKind {
        match self {
            Self::Write { .. }
            | Self::Pipeline { .. }
            | Self::Timeout { .. }
            | Self::Live { .. }
            | Self::DeviceMissing { .. }
            | Self::DeviceIo { .. }
            | Self::DeviceLost { .. } => SinkErrorKind::RebuildStream,
            Self::BadUri { .. }
            | Self::NotAvailable { .. }
            | Self::FeatureDisabled { .. }
            | Self::Settings { .. }
            | Self::Create { .. }
            | Self::FrameSize { .. }
            | Self::GstInit { .. }
            | Self::GstNotInitialised { .. }
            | Self::MissingElement { .. }
            | Self::UnknownElement { .. }
            | Self::DeviceOpen { .. }
            | Self::NotVideoOutput { .. }
            | Self::DeviceFormat { .. } => SinkErrorKind::Fatal,
        }
    }
}

/// Initialises GStreamer; call once from `main` (no hidden global start-up in the library)
/// before opening an mp4 or display sink.
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
/// file cannot be created; for mp4 and display: [`SinkError::GstNotInitialised`],
/// [`SinkError::MissingElement`], [`SinkError::UnknownElement`], [`SinkError::Pipeline`] or
/// [`SinkError::Live`]; for v4l2: [`SinkError::DeviceMissing`], [`SinkError::DeviceOpen`],
/// [`SinkError::NotVideoOutput`], [`SinkError::DeviceFormat`] or [`SinkError::DeviceIo`];
/// [`SinkError::FeatureDisabled`] for a sink whose feature is not built.
pub fn open(uri: &SinkUri, settings: &SinkSettings) -> Result<Box<dyn FrameSink>, SinkError> {
    settings.validate()?;
    #[cfg(not(all(feature = "gstreamer", feature = "v4l2")))]
    let disabled = |feature| SinkError::FeatureDisabled {
        uri: uri.to_string(),
        feature,
    };
    let sink: Box<dyn FrameSink> = match uri {
        SinkUri::Y4m(path) => Box::new(y4m::Y4mSink::create(path, settings)?),
        #[cfg(feature = "gstreamer")]
        SinkUri::File(path) => Box::new(mp4::Mp4Sink::create(path, settings)?),
        #[cfg(not(feature = "gstreamer"))]
        SinkUri::File(_) => return Err(disabled("gstreamer")),
        SinkUri::Null => Box::new(null::NullSink::new(settings)),
        #[cfg(feature = "v4l2")]
        SinkUri::V4l2(path) => Box::new(v4l2::V4l2Sink::open(path, settings)?),
        #[cfg(not(feature = "v4l2"))]
        SinkUri::V4l2(_) => return Err(disabled("v4l2")),
        #[cfg(feature = "gstreamer")]
        SinkUri::Display { sink } => Box::new(display::DisplaySink::open(
            &uri.to_string(),
            sink.as_deref(),
            settings,
        )?),
        #[cfg(not(feature = "gstreamer"))]
        SinkUri::Display { .. } => return Err(disabled("gstreamer")),
    };
    let audio = match settings.audio_rate {
        Some(rate) => format!("mono at {rate} Hz"),
        None => "none".to_owned(),
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
