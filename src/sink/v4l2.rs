//! `v4l2:///dev/videoN`: frames into a V4L2 video output device (a v4l2loopback node that a
//! browser or a video call reads as a camera, or a display output).
//!
//! Open: the node must be a character device whose V4L2 capabilities include single-planar
//! video output with streaming I/O. The format is negotiated once: the device's listed output
//! formats are tried in the order YUYV, RGB3, NV12 (all three when it lists none) with
//! `VIDIOC_S_FMT` at the frame size, and the first that the driver keeps, at that size, wins;
//! YUV formats are asked for as BT.601 limited range (the conversion of [`super::pixel`]).
//! [`BUFFERS`] buffers are requested and memory-mapped once.
//!
//! Writing a frame never blocks and allocates nothing: buffers the driver has finished with are
//! taken back (`VIDIOC_DQBUF` on the non-blocking node until `EAGAIN`); when none is free the
//! frame is [`WriteOutcome::Dropped`]. Otherwise the frame is converted straight into the mapped
//! buffer and queued with its presentation timestamp ([`Pts`], CLOCK_MONOTONIC nanoseconds, the
//! clock V4L2 timestamps use); the stream starts with the first queued frame. The scheduler
//! writes each frame at its presentation time, so queuing is showing.
//!
//! Errors: a missing node, a node that is not a video output, or a format the device refuses
//! are one sentence at open. Mid-stream, `ENODEV` (the device went away: the loopback module
//! unloaded, a USB adapter unplugged) is [`SinkError::DeviceLost`], any other failure
//! [`SinkError::DeviceIo`]; both ask for the stream to be rebuilt.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::pixel::{self, Layout};
use super::v4l2_io::{
    Caps, Colour, Device, Mapping, PixFormat, CAP_STREAMING, CAP_VIDEO_OUTPUT,
    CAP_VIDEO_OUTPUT_MPLANE,
};
use super::{check_frame, Frame, FrameSink, SinkError, SinkSettings, SinkSummary, WriteOutcome};
use crate::clock::Pts;

/// Buffers asked of the driver: one being shown, one queued, two free for the next frames.
pub const BUFFERS: u32 = 4;

/// A V4L2 pixel format code from its four characters.
const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// The formats this sink writes, in order of preference, with their layouts and colour.
const FORMATS: [(u32, Layout); 3] = [
    (fourcc(b"YUYV"), Layout::Yuyv),
    (fourcc(b"RGB3"), Layout::Rgb24),
    (fourcc(b"NV12"), Layout::Nv12),
];

/// BT.601 limited range (SMPTE 170M), as [`super::pixel`] converts.
const BT601_LIMITED: Colour = Colour {
    colorspace: 1,
    ycbcr_enc: 1,
    quantization: 2,
};
/// sRGB, full range.
const SRGB: Colour = Colour {
    colorspace: 8,
    ycbcr_enc: 0,
    quantization: 1,
};

/// Four characters of a format code, for messages.
fn fourcc_text(code: u32) -> String {
    code.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// The formats to try, best first: those of [`FORMATS`] the device lists, or all of them when
/// it lists none.
fn candidates(offered: &[u32]) -> Vec<(u32, Layout)> {
    FORMATS
        .iter()
        .copied()
        .filter(|(code, _)| offered.is_empty() || offered.contains(code))
        .collect()
}

/// Why the node cannot be used as an output, if it cannot: from its capability bits.
fn output_problem(caps: &Caps) -> Option<String> {
    let who = format!("driver {} ({})", caps.driver, caps.card);
    if caps.caps & CAP_VIDEO_OUTPUT == 0 {
        return Some(if caps.caps & CAP_VIDEO_OUTPUT_MPLANE != 0 {
            format!("{who} has only multi-planar video output, which this sink does not write")
        } else {
            format!("{who} has no video output (a capture device?)")
        });
    }
    if caps.caps & CAP_STREAMING == 0 {
        return Some(format!("{who} has no streaming I/O"));
    }
    None
}

/// Writes frames to a V4L2 output device.
pub struct V4l2Sink {
    path: PathBuf,
    /// Mapped device buffers; unmapped (dropped) before the device closes.
    buffers: Vec<Mapping>,
    /// Whether the driver holds buffer `i` (queued and not yet taken back).
    queued: Vec<bool>,
    device: Device,
    layout: Layout,
    width: u32,
    height: u32,
    fps: u32,
    /// Bytes per row in the device's buffers (the Y rows for NV12).
    stride: usize,
    /// Bytes of one frame in a buffer (`sizeimage`).
    frame_len: u32,
    streaming: bool,
    frames: u64,
    dropped: u64,
}

impl V4l2Sink {
    /// Opens the output device at `path` for frames described by `settings`.
    ///
    /// # Errors
    /// [`SinkError::DeviceMissing`] when there is no such node, [`SinkError::NotVideoOutput`]
    /// when it is not a V4L2 device with single-planar video output and streaming,
    /// [`SinkError::DeviceOpen`] when it cannot be opened (permissions),
    /// [`SinkError::DeviceFormat`] when it takes none of YUYV, RGB3 and NV12 at the frame size,
    /// [`SinkError::DeviceIo`] when buffers cannot be allocated or mapped.
    pub fn open(path: &Path, settings: &SinkSettings) -> Result<Self, SinkError> {
        let not_output = |detail: String| SinkError::NotVideoOutput {
            path: path.to_owned(),
            detail,
        };
        let device = open_node(path)?;
        let io_err = |op: &'static str| move |source: io::Error| io_error(path, op, source);
        let caps = device.query_caps().map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                not_output("it is not a V4L2 device (VIDIOC_QUERYCAP is not supported)".into())
            }
            _ => io_error(path, "VIDIOC_QUERYCAP", e),
        })?;
        if let Some(problem) = output_problem(&caps) {
            return Err(not_output(problem));
        }
        let offered = device.output_formats().map_err(io_err("VIDIOC_ENUM_FMT"))?;
        let (format, layout) = negotiate(&device, path, settings, &offered)?;
        let stride = if format.bytes_per_line == 0 {
            layout.min_stride(settings.width as usize)
        } else {
            format.bytes_per_line as usize
        };
        let needed = layout.frame_len(settings.height as usize, stride);
        let format_error = |detail: String| SinkError::DeviceFormat {
            path: path.to_owned(),
            width: settings.width,
            height: settings.height,
            detail,
        };
        if stride < layout.min_stride(settings.width as usize) {
            return Err(format_error(format!(
                "{} rows of {stride} bytes are too short",
                fourcc_text(format.fourcc)
            )));
        }
        let frame_len = (format.size_image as usize).max(needed);
        match device.set_frame_rate(settings.fps) {
            Ok(true) => {}
            Ok(false) => log::debug!("v4l2 sink {}: no frame interval to set", path.display()),
            Err(e) => log::debug!(
                "v4l2 sink {}: the frame interval was refused: {e}",
                path.display()
            ),
        }
        let count = device
            .request_buffers(BUFFERS)
            .map_err(io_err("VIDIOC_REQBUFS"))?;
        if count == 0 {
            return Err(io_error(
                path,
                "VIDIOC_REQBUFS",
                io::Error::other("the driver gave no buffers"),
            ));
        }
        let mut buffers = Vec::with_capacity(count as usize);
        for index in 0..count {
            let map = device.map(index).map_err(io_err("VIDIOC_QUERYBUF/mmap"))?;
            if map.len() < frame_len {
                return Err(format_error(format!(
                    "buffer {index} has {} bytes, a frame needs {frame_len}",
                    map.len()
                )));
            }
            buffers.push(map);
        }
        log::info!(
            "v4l2 sink {}: driver {} ({}), {} {}x{} with rows of {stride} bytes, {count} buffers \
             of {frame_len} bytes",
            path.display(),
            caps.driver,
            caps.card,
            fourcc_text(format.fourcc),
            format.width,
            format.height
        );
        Ok(Self {
            path: path.to_owned(),
            queued: vec![false; buffers.len()],
            buffers,
            device,
            layout,
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            stride,
            frame_len: u32::try_from(frame_len).unwrap_or(u32::MAX),
            streaming: false,
            frames: 0,
            dropped: 0,
        })
    }

    /// Takes back every buffer the driver has finished with.
    fn reclaim(&mut self) -> Result<(), SinkError> {
        if !self.streaming {
            return Ok(());
        }
        while let Some(index) = self
            .device
            .dequeue()
            .map_err(|e| io_error(&self.path, "VIDIOC_DQBUF", e))?
        {
            if let Some(q) = self.queued.get_mut(index as usize) {
                *q = false;
            }
        }
        Ok(())
    }
}

/// Opens the node after checking that it is a character device (a regular file or a
/// directory is refused without opening it).
fn open_node(path: &Path) -> Result<Device, SinkError> {
    let missing = || SinkError::DeviceMissing {
        path: path.to_owned(),
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => missing(),
        _ => SinkError::DeviceOpen {
            path: path.to_owned(),
            source: e,
        },
    })?;
    let kind = meta.file_type();
    if !kind.is_char_device() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "not a character device"
        };
        return Err(SinkError::NotVideoOutput {
            path: path.to_owned(),
            detail: format!("it is {what}"),
        });
    }
    Device::open(path).map_err(|e| match e.raw_os_error() {
        // The node exists but its driver is gone.
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => missing(),
        _ => SinkError::DeviceOpen {
            path: path.to_owned(),
            source: e,
        },
    })
}

/// The sink error for a failed call: the device gone, or another failure.
fn io_error(path: &Path, op: &'static str, source: io::Error) -> SinkError {
    if source.raw_os_error() == Some(libc::ENODEV) {
        SinkError::DeviceLost {
            path: path.to_owned(),
        }
    } else {
        SinkError::DeviceIo {
            path: path.to_owned(),
            op,
            source,
        }
    }
}

/// Sets the first of the candidate formats the driver keeps at the frame size.
fn negotiate(
    device: &Device,
    path: &Path,
    settings: &SinkSettings,
    offered: &[u32],
) -> Result<(PixFormat, Layout), SinkError> {
    let mut answers = Vec::new();
    for (code, layout) in candidates(offered) {
        let colour = if layout == Layout::Rgb24 {
            SRGB
        } else {
            BT601_LIMITED
        };
        match device.set_format(code, settings.width, settings.height, colour) {
            Ok(f)
                if f.fourcc == code && f.width == settings.width && f.height == settings.height =>
            {
                return Ok((f, layout))
            }
            Ok(f) => answers.push(format!(
                "{} was answered with {} {}x{}",
                fourcc_text(code),
                fourcc_text(f.fourcc),
                f.width,
                f.height
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return Err(io_error(path, "VIDIOC_S_FMT", e))
            }
            Err(e) => answers.push(format!("{} was refused ({e})", fourcc_text(code))),
        }
    }
    let listed: Vec<String> = offered.iter().map(|&c| fourcc_text(c)).collect();
    let detail = if candidates(offered).is_empty() {
        format!("it lists only {}", listed.join(", "))
    } else {
        answers.join("; ")
    };
    Err(SinkError::DeviceFormat {
        path: path.to_owned(),
        width: settings.width,
        height: settings.height,
        detail,
    })
}

impl FrameSink for V4l2Sink {
    /// Does not block and, after open, does not allocate.
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError> {
        check_frame(frame.data, self.frames, self.width, self.height)?;
        self.reclaim()?;
        let Some(index) = self.queued.iter().position(|q| !q) else {
            self.dropped += 1;
            return Ok(WriteOutcome::Dropped);
        };
        pixel::convert(
            self.layout,
            frame.data,
            self.width as usize,
            self.height as usize,
            self.buffers[index].as_mut_slice(),
            self.stride,
        )
        .map_err(|e| SinkError::Settings {
            detail: e.to_string(),
        })?;
        // `index` < the driver's buffer count, a u32.
        self.device
            .queue(index as u32, self.frame_len, frame.pts.nanos())
            .map_err(|e| io_error(&self.path, "VIDIOC_QBUF", e))?;
        self.queued[index] = true;
        if !self.streaming {
            self.device
                .stream_on()
                .map_err(|e| io_error(&self.path, "VIDIOC_STREAMON", e))?;
            self.streaming = true;
        }
        self.frames += 1;
        Ok(WriteOutcome::Written)
    }

    /// A video device has no sound track: audio goes to `audio::playback`.
    fn write_audio(&mut self, _samples: &[f32], _pts: Pts) -> Result<(), SinkError> {
        Ok(())
    }

    /// Stops the stream (the device has shown what it was given).
    fn finish(mut self: Box<Self>) -> Result<SinkSummary, SinkError> {
        if self.streaming {
            self.streaming = false;
            match self.device.stream_off() {
                Ok(()) => {}
                // Gone already: nothing left to stop.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(io_error(&self.path, "VIDIOC_STREAMOFF", e)),
            }
        }
        log::info!(
            "v4l2 sink {}: {} frames shown, {} dropped (no free buffer)",
            self.path.display(),
            self.frames,
            self.dropped
        );
        Ok(SinkSummary {
            frames: self.frames,
            video_seconds: self.frames as f64 / f64::from(self.fps),
            audio_seconds: None,
            path: None,
        })
    }
}

impl Drop for V4l2Sink {
    /// Stops the stream if it runs; then the buffers are unmapped and the node closed.
    fn drop(&mut self) {
        if self.streaming {
            let _ = self.device.stream_off();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_order_and_fallback() {
        let yuyv = fourcc(b"YUYV");
        let rgb3 = fourcc(b"RGB3");
        let nv12 = fourcc(b"NV12");
        let mjpg = fourcc(b"MJPG");
        let codes = |c: Vec<(u32, Layout)>| c.into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(codes(candidates(&[])), [yuyv, rgb3, nv12]);
        assert_eq!(codes(candidates(&[nv12, mjpg, yuyv])), [yuyv, nv12]);
        assert_eq!(codes(candidates(&[rgb3])), [rgb3]);
        assert!(candidates(&[mjpg]).is_empty());
        assert_eq!(fourcc_text(yuyv), "YUYV");
        assert_eq!(fourcc_text(0x0102_0304), "????");
    }

    #[test]
    fn capability_bits_decide_whether_a_node_is_an_output() {
        let caps = |caps| Caps {
            driver: "v4l2 loopback".into(),
            card: "Dummy".into(),
            caps,
        };
        assert_eq!(
            output_problem(&caps(CAP_VIDEO_OUTPUT | CAP_STREAMING)),
            None
        );
        let capture = output_problem(&caps(0x1 | CAP_STREAMING)).expect("capture only");
        assert!(capture.contains("no video output"), "{capture}");
        let mplane =
            output_problem(&caps(CAP_VIDEO_OUTPUT_MPLANE | CAP_STREAMING)).expect("mplane");
        assert!(mplane.contains("multi-planar"), "{mplane}");
        let no_streaming = output_problem(&caps(CAP_VIDEO_OUTPUT)).expect("read/write only");
        assert!(no_streaming.contains("streaming"), "{no_streaming}");
    }

    #[test]
    fn enodev_is_a_lost_device_and_asks_for_a_rebuild() {
        let p = Path::new("/dev/video10");
        let lost = io_error(p, "VIDIOC_QBUF", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(matches!(lost, SinkError::DeviceLost { .. }), "{lost}");
        assert_eq!(lost.kind(), super::super::SinkErrorKind::RebuildStream);
        assert_eq!(lost.to_string(), "the V4L2 device /dev/video10 disappeared");
        let other = io_error(p, "VIDIOC_QBUF", io::Error::from_raw_os_error(libc::EIO));
        assert!(
            matches!(
                other,
                SinkError::DeviceIo {
                    op: "VIDIOC_QBUF",
                    ..
                }
            ),
            "{other}"
        );
        assert_eq!(other.kind(), super::super::SinkErrorKind::RebuildStream);
    }
}
