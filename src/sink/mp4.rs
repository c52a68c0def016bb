//! `file://….mp4`: H.264 video and the speech as AAC in an MP4 file, through GStreamer.
//!
//! ```text
//! appsrc (RGB, W×H, fps/1) ! videoconvert ! video/x-raw,format=I420 [! nvvidconv] ! H.264 encoder
//!     ! h264parse ! mp4mux ! filesink
//! appsrc (F32LE mono) ! audioconvert ! audioresample ! AAC encoder ! aacparse ! mp4mux
//! ```
//!
//! Timing: video frame `k` has PTS `k/fps` s and lasts until `(k+1)/fps`; the audio buffer
//! holding samples `[s0, s1)` has PTS `s0/rate` and lasts `(s1-s0)/rate`. Both start at 0, so
//! the file's audio lasts exactly the speech and its video `frames/fps`.
//!
//! No deadlock: `mp4mux` interleaves by time, so it holds data on one pad until the other pad
//! has caught up (or ended). Audio is therefore pushed *ahead* of the video (up to
//! [`AUDIO_LEAD_S`] past the frame being written) into an audio `appsrc` that never blocks the
//! caller, while the video `appsrc` is bounded to a few frames; the caller waits for room in
//! it with a bus watch and a stall timeout instead of a blocking push, so a failed pipeline is
//! reported as an error and never hangs. After the last frame both sources get EOS and the
//! bus is waited on for EOS or an error for at most [`FINISH_TIMEOUT`].
//!
//! `gst::init` is not called here (STYLE rule 9): `main` calls [`super::init_gstreamer`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::mp4_elements::{
    audio_branch, first_installed, make, video_branch, AAC_ENCODERS, AAC_PACKAGES, AAC_RATE,
    H264_ENCODERS, H264_PACKAGES,
};
use super::{check_frame, FrameSink, SinkError, SinkSettings, SinkSummary};

/// Seconds of audio pushed ahead of the frame being written.
pub const AUDIO_LEAD_S: f64 = 0.5;
/// How long to wait for the file to be finalized after the last frame.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the video queue may stay full before the pipeline counts as stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Video frames queued in the video `appsrc` before the caller waits.
const QUEUED_FRAMES: u64 = 4;

/// Writes frames and the speech to an MP4 file.
pub struct Mp4Sink {
    path: PathBuf,
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    video: gst_app::AppSrc,
    audio: Option<AudioFeed>,
    width: u32,
    height: u32,
    fps: u32,
    /// Bytes per row in a GStreamer RGB buffer (rows are padded to 4 bytes).
    stride: usize,
    frames: u64,
    max_queued: u64,
}

/// The speech, pushed in time order as the video advances.
struct AudioFeed {
    src: gst_app::AppSrc,
    /// The speech after the samples hidden under the encoder's priming.
    samples: Vec<f32>,
    /// Samples in the whole speech.
    total: usize,
    pushed: usize,
    rate: u32,
}

/// `ticks / per_second` seconds as a clock time, rounded down.
fn clock(ticks: u64, per_second: u32) -> gst::ClockTime {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(per_second);
    gst::ClockTime::from_nseconds(u64::try_from(ns).unwrap_or(u64::MAX))
}

impl Mp4Sink {
    /// Builds and starts the pipeline writing `path`.
    ///
    /// # Errors
    /// [`SinkError::GstNotInitialised`], [`SinkError::Settings`] for odd frame sizes (H.264
    /// 4:2:0 needs even sides), [`SinkError::Create`] when `path` cannot be created,
    /// [`SinkError::MissingElement`] naming the elements tried and their Debian package, and
    /// [`SinkError::Pipeline`] when GStreamer refuses to start.
    pub fn create(path: &Path, settings: &SinkSettings<'_>) -> Result<Self, SinkError> {
        if !gst::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::GstNotInitialised {
                uri: format!("file://{}", path.display()),
            });
        }
        if !settings.width.is_multiple_of(2) || !settings.height.is_multiple_of(2) {
            return Err(SinkError::Settings {
                detail: format!(
                    "an H.264 mp4 needs even frame sides, got {}x{}",
                    settings.width, settings.height
                ),
            });
        }
        let audio = settings.audio.filter(|a| !a.is_empty());
        let h264 = first_installed(H264_ENCODERS, "H.264 encoder", H264_PACKAGES)?;
        let aac = match audio {
            Some(_) => {
                let names: Vec<&'static str> = AAC_ENCODERS.iter().map(|e| e.0).collect();
                let name = first_installed(&names, "AAC encoder", AAC_PACKAGES)?;
                AAC_ENCODERS.iter().copied().find(|e| e.0 == name)
            }
            None => None,
        };
        // Fail early, with the OS's reason, if the file cannot be created.
        File::create(path).map_err(|source| SinkError::Create {
            path: path.to_owned(),
            source,
        })?;

        let pipeline = gst::Pipeline::with_name("moda-mp4-sink");
        let fail = |detail: String| SinkError::Pipeline {
            path: path.to_owned(),
            detail,
        };
        let mux = make("mp4mux", "gstreamer1.0-plugins-good")?;
        let filesink = make("filesink", "libgstreamer1.0-0")?;
        filesink.set_property("location", path.to_string_lossy().as_ref());
        pipeline
            .add_many([&mux, &filesink])
            .map_err(|e| fail(e.to_string()))?;
        mux.link(&filesink)
            .map_err(|e| fail(format!("mp4mux to filesink: {e}")))?;
        let (video, stride) = video_branch(&pipeline, &mux, settings, h264, path)?;
        let audio = match (audio, aac) {
            (Some(samples), Some(encoder)) => {
                let src = audio_branch(&pipeline, &mux, settings.sample_rate, encoder.0, path)?;
                // The encoder's priming samples come first in the track and mp4mux writes no
                // edit list to hide them, so drop as much speech from the start: the track
                // then lasts as long as the speech and sample n plays at n/rate, in sync
                // with the frames (speech recordings start with silence).
                let skip = (u64::from(encoder.1) * u64::from(settings.sample_rate))
                    .div_ceil(u64::from(AAC_RATE)) as usize;
                Some(AudioFeed {
                    src,
                    samples: samples[skip.min(samples.len())..].to_vec(),
                    total: samples.len(),
                    pushed: 0,
                    rate: settings.sample_rate,
                })
            }
            _ => None,
        };
        let max_queued = QUEUED_FRAMES * (stride * settings.height as usize) as u64;

        let bus = pipeline
            .bus()
            .ok_or_else(|| fail("the pipeline has no bus".into()))?;
        let sink = Self {
            path: path.to_owned(),
            pipeline,
            bus,
            video,
            audio,
            width: settings.width,
            height: settings.height,
            fps: settings.fps,
            stride,
            frames: 0,
            max_queued,
        };
        if sink.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(sink.pipeline_error("the pipeline refused to start"));
        }
        log::info!(
            "mp4 sink {}: {h264} ! h264parse ! mp4mux{}",
            path.display(),
            aac.map(|(a, p)| format!(", audio {a} (priming {p} samples) ! aacparse"))
                .unwrap_or_default()
        );
        Ok(sink)
    }

    /// The pending bus error, if any, as one line.
    fn bus_error(&self, timeout: Option<gst::ClockTime>) -> Option<String> {
        let msg = match timeout {
            Some(t) => self.bus.timed_pop_filtered(t, &[gst::MessageType::Error]),
            None => self.bus.pop_filtered(&[gst::MessageType::Error]),
        }?;
        Some(describe(&msg))
    }

    /// A pipeline error carrying the bus's error message when there is one, else `context`.
    fn pipeline_error(&self, context: &str) -> SinkError {
        let detail = self
            .bus_error(Some(gst::ClockTime::from_mseconds(100)))
            .unwrap_or_else(|| context.to_owned());
        SinkError::Pipeline {
            path: self.path.clone(),
            detail,
        }
    }

    /// Pushes audio up to `end_sample` (clamped to the speech).
    fn push_audio_until(&mut self, end_sample: usize) -> Result<(), SinkError> {
        let Some(feed) = self.audio.as_mut() else {
            return Ok(());
        };
        let end = end_sample.min(feed.samples.len());
        if end <= feed.pushed {
            return Ok(());
        }
        let chunk = &feed.samples[feed.pushed..end];
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let b = buffer.make_mut();
            let start = clock(feed.pushed as u64, feed.rate);
            b.set_pts(start);
            b.set_duration(clock(end as u64, feed.rate) - start);
            b.set_offset(feed.pushed as u64);
            b.set_offset_end(end as u64);
        }
        feed.pushed = end;
        let pushed = feed.src.push_buffer(buffer);
        pushed
            .map(|_| ())
            .map_err(|e| self.pipeline_error(&format!("audio push failed: {e:?}")))
    }

    /// Waits until the video queue has room, watching the bus for errors.
    fn wait_for_room(&self) -> Result<(), SinkError> {
        let start = Instant::now();
        while self.video.current_level_bytes() >= self.max_queued {
            if let Some(detail) = self.bus_error(Some(gst::ClockTime::from_mseconds(2))) {
                return Err(SinkError::Pipeline {
                    path: self.path.clone(),
                    detail,
                });
            }
            if start.elapsed() > STALL_TIMEOUT {
                return Err(SinkError::Timeout {
                    path: self.path.clone(),
                    seconds: STALL_TIMEOUT.as_secs(),
                });
            }
        }
        Ok(())
    }
}

/// One line for an error message from the bus: the element, the error and its debug text.
fn describe(msg: &gst::Message) -> String {
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

impl FrameSink for Mp4Sink {
    fn write_frame(&mut self, rgb: &[u8]) -> Result<(), SinkError> {
        check_frame(rgb, self.frames, self.width, self.height)?;
        if let Some(detail) = self.bus_error(None) {
            return Err(SinkError::Pipeline {
                path: self.path.clone(),
                detail,
            });
        }
        let k = self.frames;
        if let Some(rate) = self.audio.as_ref().map(|a| a.rate) {
            let end = (k + 1) as f64 / f64::from(self.fps) + AUDIO_LEAD_S;
            self.push_audio_until((end * f64::from(rate)).ceil() as usize)?;
        }
        self.wait_for_room()?;

        let row = self.width as usize * 3;
        let mut data = vec![0u8; self.stride * self.height as usize];
        for (dst, src) in data
            .chunks_exact_mut(self.stride)
            .zip(rgb.chunks_exact(row))
        {
            dst[..row].copy_from_slice(src);
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.make_mut();
            let start = clock(k, self.fps);
            b.set_pts(start);
            b.set_duration(clock(k + 1, self.fps) - start);
            b.set_offset(k);
        }
        match self.video.push_buffer(buffer) {
            Ok(_) => {
                self.frames += 1;
                Ok(())
            }
            Err(e) => Err(self.pipeline_error(&format!("video push failed: {e:?}"))),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary, SinkError> {
        self.push_audio_until(usize::MAX)?;
        let mut eos = self.video.end_of_stream().map(|_| ());
        if let Some(feed) = &self.audio {
            eos = eos.and(feed.src.end_of_stream().map(|_| ()));
        }
        if let Err(e) = eos {
            return Err(self.pipeline_error(&format!("end of stream failed: {e:?}")));
        }
        let timeout = gst::ClockTime::from_seconds(FINISH_TIMEOUT.as_secs());
        let types = [gst::MessageType::Eos, gst::MessageType::Error];
        let result = match self.bus.timed_pop_filtered(timeout, &types) {
            Some(msg) if msg.type_() == gst::MessageType::Eos => Ok(()),
            Some(msg) => Err(SinkError::Pipeline {
                path: self.path.clone(),
                detail: describe(&msg),
            }),
            None => Err(SinkError::Timeout {
                path: self.path.clone(),
                seconds: FINISH_TIMEOUT.as_secs(),
            }),
        };
        let stopped = self.pipeline.set_state(gst::State::Null);
        result?;
        if stopped.is_err() {
            return Err(self.pipeline_error("the pipeline did not stop"));
        }
        let audio_seconds = self
            .audio
            .as_ref()
            .map(|a| a.total as f64 / f64::from(a.rate));
        log::info!(
            "mp4 sink {}: {} frames written",
            self.path.display(),
            self.frames
        );
        Ok(SinkSummary {
            frames: self.frames,
            video_seconds: self.frames as f64 / f64::from(self.fps),
            audio_seconds,
            path: Some(self.path.clone()),
        })
    }
}

impl Drop for Mp4Sink {
    /// Stops the pipeline when the sink is dropped without `finish` (the file is then
    /// incomplete).
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
