//! `file://….mp4`: H.264 video and the speech as AAC in an MP4 file, through GStreamer.
//!
//! ```text
//! appsrc (RGB, W×H, fps/1) ! videoconvert ! video/x-raw,format=I420 [! nvvidconv] ! H.264 encoder
//!     ! h264parse ! mp4mux ! filesink
//! appsrc (F32LE mono) ! audioconvert ! audioresample ! AAC encoder ! aacparse ! mp4mux
//! ```
//!
//! Timing: a video frame has the PTS it was given and lasts until the next frame's time
//! (`1/fps`); an audio buffer holding samples `[s0, s1)` of the stream has PTS `s0/rate` and
//! lasts `(s1-s0)/rate`. The AAC encoder puts its priming samples first and `mp4mux` writes no
//! edit list to hide them, so the sink drops as much speech from the start of the stream (speech
//! recordings start with silence) and moves the rest earlier by the same amount: sample `n`
//! then plays at `n/rate`, in sync with the frames.
//!
//! No deadlock: `mp4mux` interleaves by time, so it holds data on one pad until the other pad
//! has caught up (or ended). The caller pushes audio *ahead* of the video into an audio
//! `appsrc` that never blocks, while the video `appsrc` is bounded to a few frames; the caller
//! waits for room in it with a bus watch and a stall timeout instead of a blocking push, so a
//! failed pipeline is reported as an error and never hangs. After the last frame both sources
//! get EOS and the bus is waited on for EOS or an error for at most [`FINISH_TIMEOUT`].
//!
//! Video and audio buffers come from GStreamer buffer pools: after the first frames, writing a
//! frame reuses a buffer the encoder has released instead of allocating one. The file is
//! written at a temporary path and renamed into place by `finish`.
//!
//! `gst::init` is not called here (no hidden globals): `main` calls
//! [`super::init_gstreamer`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::mp4_elements::{
    audio_branch, copy_rows, describe, first_installed, make, video_branch, AAC_ENCODERS,
    AAC_PACKAGES, AAC_RATE, H264_ENCODERS, H264_PACKAGES,
};
use super::{check_frame, Frame, FrameSink, SinkError, SinkSettings, SinkSummary, WriteOutcome};
use crate::clock::{FrameClock, Pts};
use crate::util::fsx::AtomicFile;

/// How long to wait for the file to be finalized after the last frame.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the video queue may stay full before the pipeline counts as stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Video frames queued in the video `appsrc` before the caller waits.
const QUEUED_FRAMES: u64 = 4;
/// Samples per pooled audio buffer; longer writes are split.
const AUDIO_BUFFER_SAMPLES: usize = 8192;

/// Writes frames and the speech to an MP4 file.
pub struct Mp4Sink {
    path: PathBuf,
    /// The temporary file until `finish` commits it.
    file: Option<AtomicFile>,
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    video: gst_app::AppSrc,
    video_pool: gst::BufferPool,
    audio: Option<AudioFeed>,
    width: u32,
    height: u32,
    clock: FrameClock,
    /// Bytes per row in a GStreamer RGB buffer (rows are padded to 4 bytes).
    stride: usize,
    frames: u64,
    max_queued: u64,
    /// The stream time of the file's start: the timestamp of the first frame or audio written
    /// (0 offline; `t0 + budget` in the live service, whose timestamps are monotonic time).
    origin: Option<Pts>,
}

/// The speech track.
struct AudioFeed {
    src: gst_app::AppSrc,
    pool: gst::BufferPool,
    rate: u32,
    /// Samples at the start of the stream hidden under the encoder's priming.
    skip: u64,
    /// Samples of the stream received (the end of the last write, in stream samples).
    received: u64,
}

/// A pool of `size`-byte buffers, as many as the pipeline holds at once.
fn pool(caps: &gst::Caps, size: usize, path: &Path) -> Result<gst::BufferPool, SinkError> {
    let fail = |e: gst::glib::BoolError| SinkError::Pipeline {
        path: path.to_owned(),
        detail: format!("buffer pool: {e}"),
    };
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    let size = u32::try_from(size).map_err(|_| SinkError::Settings {
        detail: format!("a frame of {size} bytes is too large for a GStreamer buffer"),
    })?;
    config.set_params(Some(caps), size, 2, 0);
    pool.set_config(config).map_err(fail)?;
    pool.set_active(true).map_err(fail)?;
    Ok(pool)
}

impl Mp4Sink {
    /// Builds and starts the pipeline writing `path` (at a temporary path beside it until
    /// `finish`).
    ///
    /// # Errors
    /// [`SinkError::GstNotInitialised`], [`SinkError::Settings`] for odd frame sizes (H.264
    /// 4:2:0 needs even sides), [`SinkError::Create`] when `path` cannot be created,
    /// [`SinkError::MissingElement`] naming the elements tried and their Debian package, and
    /// [`SinkError::Pipeline`] when GStreamer refuses to start.
    pub fn create(path: &Path, settings: &SinkSettings) -> Result<Self, SinkError> {
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
        let clock = FrameClock::new(settings.fps, settings.audio_rate.unwrap_or(16_000))
            .ok_or_else(|| SinkError::Settings {
                detail: "a frame rate of 0".into(),
            })?;
        let h264 = first_installed(H264_ENCODERS, "H.264 encoder", H264_PACKAGES)?;
        let aac = match settings.audio_rate {
            Some(_) => {
                let names: Vec<&'static str> = AAC_ENCODERS.iter().map(|e| e.0).collect();
                let name = first_installed(&names, "AAC encoder", AAC_PACKAGES)?;
                AAC_ENCODERS.iter().copied().find(|e| e.0 == name)
            }
            None => None,
        };
        // Fail early, with the OS's reason, if the file cannot be created.
        let file = AtomicFile::new(path);
        file.create().map_err(|source| SinkError::Create {
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
        filesink.set_property("location", file.temp_path().to_string_lossy().as_ref());
        pipeline
            .add_many([&mux, &filesink])
            .map_err(|e| fail(e.to_string()))?;
        mux.link(&filesink)
            .map_err(|e| fail(format!("mp4mux to filesink: {e}")))?;
        let (video, stride) = video_branch(&pipeline, &mux, settings, h264, path)?;
        let frame_size = stride * settings.height as usize;
        let video_pool = pool(
            &video.caps().unwrap_or_else(gst::Caps::new_any),
            frame_size,
            path,
        )?;
        let audio = match (settings.audio_rate, aac) {
            (Some(rate), Some(encoder)) => {
                let src = audio_branch(&pipeline, &mux, rate, encoder.0, path)?;
                let caps = src.caps().unwrap_or_else(gst::Caps::new_any);
                Some(AudioFeed {
                    pool: pool(&caps, AUDIO_BUFFER_SAMPLES * 4, path)?,
                    src,
                    rate,
                    skip: (u64::from(encoder.1) * u64::from(rate)).div_ceil(u64::from(AAC_RATE)),
                    received: 0,
                })
            }
            _ => None,
        };
        let max_queued = QUEUED_FRAMES * frame_size as u64;

        let bus = pipeline
            .bus()
            .ok_or_else(|| fail("the pipeline has no bus".into()))?;
        let sink = Self {
            path: path.to_owned(),
            file: Some(file),
            pipeline,
            bus,
            video,
            video_pool,
            audio,
            width: settings.width,
            height: settings.height,
            clock,
            stride,
            frames: 0,
            max_queued,
            origin: None,
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

impl Mp4Sink {
    /// `pts` on the file's timeline (the first timestamp written is 0).
    fn file_time(&mut self, pts: Pts) -> u64 {
        let origin = *self.origin.get_or_insert(pts);
        pts.nanos().saturating_sub(origin.nanos())
    }

    fn pushed(
        &self,
        what: &str,
        r: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<(), SinkError> {
        r.map(|_| ())
            .map_err(|e| self.pipeline_error(&format!("{what} push failed: {e:?}")))
    }

    fn acquire(&self, pool: &gst::BufferPool) -> Result<gst::Buffer, SinkError> {
        pool.acquire_buffer(None)
            .map_err(|e| self.pipeline_error(&format!("no pooled buffer: {e:?}")))
    }
}

/// `samples / rate` seconds as a clock time, rounded down.
fn sample_time(samples: u64, rate: u32) -> gst::ClockTime {
    let ns = u128::from(samples) * 1_000_000_000 / u128::from(rate);
    gst::ClockTime::from_nseconds(u64::try_from(ns).unwrap_or(u64::MAX))
}

impl FrameSink for Mp4Sink {
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError> {
        check_frame(frame.data, self.frames, self.width, self.height)?;
        if let Some(detail) = self.bus_error(None) {
            return Err(SinkError::Pipeline {
                path: self.path.clone(),
                detail,
            });
        }
        self.wait_for_room()?;
        let pts = self.file_time(frame.pts);
        let mut buffer = self.acquire(&self.video_pool)?;
        {
            let row = self.width as usize * 3;
            let b = buffer
                .get_mut()
                .ok_or_else(|| self.pipeline_error("a pooled buffer is shared"))?;
            {
                let mut map = b
                    .map_writable()
                    .map_err(|e| self.pipeline_error(&format!("cannot map a buffer: {e}")))?;
                copy_rows(&mut map, self.stride, frame.data, row);
            }
            let k = frame.index;
            let duration = self.clock.frame_offset(k + 1) - self.clock.frame_offset(k);
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration.as_nanos() as u64));
            b.set_offset(k);
        }
        let pushed = self.video.push_buffer(buffer);
        self.pushed("video", pushed)?;
        self.frames += 1;
        Ok(WriteOutcome::Written)
    }

    fn write_audio(&mut self, samples: &[f32], pts: Pts) -> Result<(), SinkError> {
        if self.audio.is_none() {
            return Ok(());
        }
        let at = self.file_time(pts);
        let Some(feed) = &self.audio else {
            return Ok(());
        };
        let rate = feed.rate;
        // File sample index of samples[0]; samples before `skip` are hidden by the priming.
        let first =
            u64::try_from(u128::from(at) * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX);
        let start = (feed.skip.saturating_sub(first) as usize).min(samples.len());
        let mut at = first + start as u64 - feed.skip;
        for chunk in samples[start..].chunks(AUDIO_BUFFER_SAMPLES) {
            let mut buffer = self.acquire(&feed.pool)?;
            {
                let b = buffer
                    .get_mut()
                    .ok_or_else(|| self.pipeline_error("a pooled buffer is shared"))?;
                b.set_size(chunk.len() * 4);
                {
                    let mut map = b
                        .map_writable()
                        .map_err(|e| self.pipeline_error(&format!("cannot map a buffer: {e}")))?;
                    for (dst, s) in map.chunks_exact_mut(4).zip(chunk) {
                        dst.copy_from_slice(&s.to_le_bytes());
                    }
                }
                let end = at + chunk.len() as u64;
                b.set_pts(sample_time(at, rate));
                b.set_duration(sample_time(end, rate) - sample_time(at, rate));
                b.set_offset(at);
                b.set_offset_end(end);
                at = end;
            }
            self.pushed("audio", feed.src.push_buffer(buffer))?;
        }
        if let Some(feed) = self.audio.as_mut() {
            feed.received = feed.received.max(first + samples.len() as u64);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError> {
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
        let mut this = *self;
        if let Some(file) = this.file.take() {
            file.commit().map_err(|source| SinkError::Write {
                path: this.path.clone(),
                source,
            })?;
        }
        let audio_seconds = this
            .audio
            .as_ref()
            .map(|a| a.received as f64 / f64::from(a.rate));
        log::info!(
            "mp4 sink {}: {} frames written",
            this.path.display(),
            this.frames
        );
        Ok(SinkSummary {
            frames: this.frames,
            video_seconds: this.frames as f64 / f64::from(this.clock.fps()),
            audio_seconds,
            path: Some(this.path.clone()),
        })
    }
}

impl Drop for Mp4Sink {
    /// Stops the pipeline; unless `finish` committed it, the temporary file is then removed.
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        drop(self.file.take());
        let _ = self.video_pool.set_active(false);
        if let Some(feed) = &self.audio {
            let _ = feed.pool.set_active(false);
        }
    }
}
