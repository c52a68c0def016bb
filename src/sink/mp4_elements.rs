//! Building the mp4 sink's GStreamer pipeline: which encoders to use, their settings and
//! Debian packages, and the video and audio branches up to `mp4mux`; the element helpers the
//! display sink shares.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{SinkError, SinkSettings};

/// H.264 encoders, in order of preference.
pub(super) const H264_ENCODERS: &[&str] =
    &["x264enc", "nvv4l2h264enc", "openh264enc", "avenc_h264_omx"];
pub(super) const H264_PACKAGES: &str =
    "gstreamer1.0-plugins-ugly (x264enc) or gstreamer1.0-plugins-bad \
                             (openh264enc); on Jetson, nvv4l2h264enc comes with JetPack";
/// AAC encoders in order of preference, with their priming (encoder delay) in samples at
/// [`AAC_RATE`]: the samples each puts before the first input sample. avenc_aac and voaacenc
/// were measured with GStreamer 1.22 (tests/sink_mp4.rs finds the onset of a tone exactly);
/// the fdkaacenc and faac values are the libraries' documented AAC-LC delays, not measured.
pub(super) const AAC_ENCODERS: &[(&str, u32)] = &[
    ("avenc_aac", 1024),
    ("voaacenc", 1600),
    ("fdkaacenc", 2048),
    ("faac", 1024),
];
/// Sample rate of the AAC track: the usual rate for players, and a priming delay of 21 ms
/// rather than the 64 ms it would be at 16 kHz.
pub(super) const AAC_RATE: u32 = 48_000;
pub(super) const PLUGINS_BASE: &str = "gstreamer1.0-plugins-base";
pub(super) const AAC_PACKAGES: &str =
    "gstreamer1.0-libav (avenc_aac) or gstreamer1.0-plugins-bad (voaacenc)";

/// The first element of `names` that is installed.
pub(super) fn first_installed(
    names: &[&'static str],
    role: &'static str,
    package: &'static str,
) -> Result<&'static str, SinkError> {
    names
        .iter()
        .copied()
        .find(|n| gst::ElementFactory::find(n).is_some())
        .ok_or_else(|| SinkError::MissingElement {
            role,
            tried: names.to_vec(),
            package,
        })
}

/// One line for an error message from the bus: the element, the error and its debug text.
pub(super) fn describe(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(e) => {
            let src = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{src} reported: {}{debug}", e.error())
        }
        _ => format!("unexpected bus message {:?}", msg.type_()),
    }
}

/// A required element that has no alternative.
pub(super) fn make(name: &'static str, package: &'static str) -> Result<gst::Element, SinkError> {
    gst::ElementFactory::make(name)
        .build()
        .map_err(|_| SinkError::MissingElement {
            role: "element",
            tried: vec![name],
            package,
        })
}

/// An `appsrc` in time format that never blocks the caller (the sink bounds the video queue
/// itself by waiting for room before each push; audio is small and must run ahead of the video).
pub(super) fn app_src(name: &str, caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(caps)
        .format(gst::Format::Time)
        .is_live(false)
        .block(false)
        .max_bytes(u64::MAX / 2)
        .build()
}

pub(super) fn capsfilter(caps: &gst::Caps) -> Result<gst::Element, SinkError> {
    let filter = make("capsfilter", "libgstreamer1.0-0")?;
    filter.set_property("caps", caps);
    Ok(filter)
}

/// Adds the elements of `chain` to `pipeline`, links them in order and the last to `mux`.
pub(super) fn add_chain(
    pipeline: &gst::Pipeline,
    chain: &[gst::Element],
    mux: &gst::Element,
) -> Result<(), String> {
    pipeline.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|e| {
        let names: Vec<String> = chain.iter().map(|el| el.name().to_string()).collect();
        format!("cannot link {}: {e}", names.join(" ! "))
    })?;
    let last = chain.last().ok_or("empty branch")?;
    last.link(mux)
        .map_err(|e| format!("cannot link {} to mp4mux: {e}", last.name()))
}

/// appsrc (RGB) ! videoconvert ! I420 [! nvvidconv] ! `h264` ! h264parse ! `mux`. Returns the
/// source and the row stride of its buffers (GStreamer pads RGB rows to 4 bytes).
pub(super) fn video_branch(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    settings: &SinkSettings,
    h264: &'static str,
    path: &Path,
) -> Result<(gst_app::AppSrc, usize), SinkError> {
    let src = app_src("video", &rgb_caps(settings));
    let i420 = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .build();
    let mut chain = vec![
        src.clone().upcast::<gst::Element>(),
        make("videoconvert", PLUGINS_BASE)?,
        capsfilter(&i420)?,
    ];
    if h264 == "nvv4l2h264enc" {
        // The Jetson encoder takes NVMM buffers only.
        chain.push(make("nvvidconv", "nvidia-l4t-gstreamer")?);
    }
    let encoder = make(h264, H264_PACKAGES)?;
    configure_h264(&encoder, h264);
    chain.push(encoder);
    chain.push(make("h264parse", "gstreamer1.0-plugins-bad")?);
    add_chain(pipeline, &chain, mux).map_err(|detail| SinkError::Pipeline {
        path: path.to_owned(),
        detail,
    })?;
    Ok((src, rgb_stride(settings.width)))
}

/// Caps of the RGB frames the sinks push: `settings`' size and rate, square pixels.
pub(super) fn rgb_caps(settings: &SinkSettings) -> gst::Caps {
    // Sizes and rates were validated to fit (16384 pixels, 1000 fps).
    gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", settings.width as i32)
        .field("height", settings.height as i32)
        .field("framerate", gst::Fraction::new(settings.fps as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

/// Bytes per row of a GStreamer RGB buffer `width` pixels wide (rows are padded to 4 bytes).
pub(super) fn rgb_stride(width: u32) -> usize {
    (width as usize * 3).div_ceil(4) * 4
}

/// Copies tightly packed rows of `row` bytes from `src` into `dst`, whose rows are `stride`
/// bytes apart.
pub(super) fn copy_rows(dst: &mut [u8], stride: usize, src: &[u8], row: usize) {
    for (d, s) in dst.chunks_exact_mut(stride).zip(src.chunks_exact(row)) {
        d[..row].copy_from_slice(s);
    }
}

/// appsrc (F32LE mono at `rate`) ! audioconvert ! audioresample ! [`AAC_RATE`] ! `aac` !
/// aacparse ! `mux`.
pub(super) fn audio_branch(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    rate: u32,
    aac: &'static str,
    path: &Path,
) -> Result<gst_app::AppSrc, SinkError> {
    let caps = gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("rate", rate as i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build();
    let src = app_src("audio", &caps);
    let aac_caps = gst::Caps::builder("audio/x-raw")
        .field("rate", AAC_RATE as i32)
        .field("channels", 1i32)
        .build();
    let chain = [
        src.clone().upcast::<gst::Element>(),
        make("audioconvert", PLUGINS_BASE)?,
        make("audioresample", PLUGINS_BASE)?,
        capsfilter(&aac_caps)?,
        make(aac, AAC_PACKAGES)?,
        make("aacparse", "gstreamer1.0-plugins-good")?,
    ];
    add_chain(pipeline, &chain, mux).map_err(|detail| SinkError::Pipeline {
        path: path.to_owned(),
        detail,
    })?;
    Ok(src)
}

/// Sets quality-oriented options that the encoder's defaults get wrong for a portrait video.
pub(super) fn configure_h264(encoder: &gst::Element, name: &str) {
    match name {
        // Constant quality instead of the 2 Mbit/s default. No B-frames: with them the first
        // picture's PTS lies after its DTS, and mp4mux then starts the video track late by
        // the reorder delay (two frames, measured), which shifts the lips against the sound.
        "x264enc" => {
            encoder.set_property_from_str("pass", "qual");
            encoder.set_property("quantizer", 20u32);
            encoder.set_property("bframes", 0u32);
        }
        // The default is 128 kbit/s.
        "openh264enc" => encoder.set_property("bitrate", 4_000_000u32),
        _ => {}
    }
}
