//! `display://`: frames on a screen, through GStreamer.
//!
//! ```text
//! appsrc (RGB, W×H, live, never blocks) ! videoconvert [! nvvidconv] ! SINK (sync=false)
//! ```
//!
//! SINK is the element `display://?sink=NAME` names, else the platform's ([`choose_sink`]):
//! `nv3dsink` on JetPack (it draws on a bare console too; `nvvidconv` moves frames into the
//! NVMM memory it takes), `nveglglessink` on JetPack under X or Wayland, `kmssink` on a console
//! without `DISPLAY`/`WAYLAND_DISPLAY`, `autovideosink` on a desktop.
//!
//! Timing: the scheduler writes each frame at its presentation time, so the sink shows a frame
//! as soon as it arrives (`sync=false`: no second clock that could hold frames back or drop
//! them as late). Buffers carry their time since the first frame as PTS, for logs and tracers.
//!
//! Never blocks, no allocation per frame: at most [`QUEUED_FRAMES`] frames wait in the
//! `appsrc`, and frame buffers come from a pool of [`POOL_BUFFERS`] acquired without waiting.
//! When the display falls behind, the queue or the pool is full and the frame is
//! [`WriteOutcome::Dropped`]. The bus is drained on every write; an error message from any
//! element is [`SinkError::Live`] (rebuild the stream).
//!
//! `gst::init` is not called here: `main` calls [`super::init_gstreamer`].

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::mp4_elements::{copy_rows, describe, make, rgb_caps, rgb_stride, PLUGINS_BASE};
use super::{check_frame, Frame, FrameSink, SinkError, SinkSettings, SinkSummary, WriteOutcome};
use crate::clock::{FrameClock, Pts};

/// Frames that may wait in the `appsrc` before new ones are dropped.
pub const QUEUED_FRAMES: u64 = 2;
/// Frame buffers in the pool: the queued ones, one in conversion, one being shown and the
/// sink's last sample.
pub const POOL_BUFFERS: u32 = QUEUED_FRAMES as u32 + 3;
/// How long `finish` waits for the end of stream to reach the sink.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

const JETPACK_PACKAGE: &str = "nvidia-l4t-gstreamer";

/// The sink element for `display://`: `forced` when given (it must be installed), else the
/// platform's. `has_display`: `DISPLAY` or `WAYLAND_DISPLAY` is set.
///
/// # Errors
/// [`SinkError::UnknownElement`] for a forced element that is not installed,
/// [`SinkError::MissingElement`] naming the elements tried and the package to install.
pub fn choose_sink<'a>(
    uri: &str,
    forced: Option<&'a str>,
    has_display: bool,
    installed: impl Fn(&str) -> bool,
) -> Result<&'a str, SinkError> {
    if let Some(name) = forced {
        return if installed(name) {
            Ok(name)
        } else {
            Err(SinkError::UnknownElement {
                uri: uri.to_owned(),
                name: name.to_owned(),
            })
        };
    }
    let (tried, role, package): (&[&'static str], _, _) = if has_display {
        (
            &["nv3dsink", "nveglglessink", "autovideosink"],
            "video display sink",
            "gstreamer1.0-plugins-good (autovideosink); on Jetson, nv3dsink and nveglglessink \
             come with JetPack (nvidia-l4t-gstreamer)",
        )
    } else {
        (
            &["nv3dsink", "kmssink"],
            "video sink for a console without X or Wayland",
            "gstreamer1.0-plugins-bad (kmssink); on Jetson, nv3dsink comes with JetPack \
             (nvidia-l4t-gstreamer)",
        )
    };
    tried
        .iter()
        .copied()
        .find(|n| installed(n))
        .ok_or_else(|| SinkError::MissingElement {
            role,
            tried: tried.to_vec(),
            package,
        })
}

/// Shows frames in a window or on the screen.
pub struct DisplaySink {
    uri: String,
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    src: gst_app::AppSrc,
    pool: gst::BufferPool,
    acquire: gst::BufferPoolAcquireParams,
    width: u32,
    height: u32,
    clock: FrameClock,
    /// Bytes per row in a GStreamer RGB buffer (rows are padded to 4 bytes).
    stride: usize,
    max_queued: u64,
    /// PTS of the first frame written: buffer times count from it.
    origin: Option<Pts>,
    frames: u64,
    dropped: u64,
}

impl DisplaySink {
    /// Builds and starts the pipeline for `uri` with the sink `forced` or the platform's.
    ///
    /// # Errors
    /// [`SinkError::GstNotInitialised`], [`SinkError::UnknownElement`],
    /// [`SinkError::MissingElement`], and [`SinkError::Live`] when the pipeline does not start
    /// (no screen, no permission on the DRM device).
    pub fn open(
        uri: &str,
        forced: Option<&str>,
        settings: &SinkSettings,
    ) -> Result<Self, SinkError> {
        if !gst::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SinkError::GstNotInitialised {
                uri: uri.to_owned(),
            });
        }
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        let name = choose_sink(uri, forced, has_display, |n| {
            gst::ElementFactory::find(n).is_some()
        })?;
        let sink = gst::ElementFactory::make(name)
            .build()
            .map_err(|e| SinkError::Live {
                uri: uri.to_owned(),
                detail: format!("cannot create {name}: {e}"),
            })?;
        let mut chain = Vec::new();
        if name == "nv3dsink" {
            // nv3dsink takes NVMM buffers only.
            chain.push(make("nvvidconv", JETPACK_PACKAGE)?);
        }
        chain.push(sink);
        let this = Self::with_chain(uri, settings, &chain)?;
        log::info!("display sink {uri}: appsrc ! videoconvert ! {name} (sync=false)");
        Ok(this)
    }

    /// Builds `appsrc ! videoconvert ! chain…` and starts it.
    fn with_chain(
        uri: &str,
        settings: &SinkSettings,
        chain: &[gst::Element],
    ) -> Result<Self, SinkError> {
        let fail = |detail: String| SinkError::Live {
            uri: uri.to_owned(),
            detail,
        };
        if gst::ElementFactory::find("appsrc").is_none() {
            return Err(SinkError::MissingElement {
                role: "element",
                tried: vec!["appsrc"],
                package: PLUGINS_BASE,
            });
        }
        let clock = FrameClock::new(settings.fps, 16_000)
            .ok_or_else(|| fail("a frame rate of 0".into()))?;
        let caps = rgb_caps(settings);
        let stride = rgb_stride(settings.width);
        let frame_size = stride * settings.height as usize;
        let max_queued = QUEUED_FRAMES * frame_size as u64;
        let src = gst_app::AppSrc::builder()
            .name("frames")
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(true)
            .block(false)
            .max_bytes(max_queued)
            .build();
        let pipeline = gst::Pipeline::with_name("moda-display-sink");
        let mut elements = vec![
            src.clone().upcast::<gst::Element>(),
            make("videoconvert", PLUGINS_BASE)?,
        ];
        elements.extend(chain.iter().cloned());
        if let Some(last) = elements.last() {
            if last.find_property("sync").is_some() {
                last.set_property("sync", false);
            }
        }
        pipeline
            .add_many(&elements)
            .map_err(|e| fail(e.to_string()))?;
        gst::Element::link_many(&elements).map_err(|e| {
            let names: Vec<String> = elements.iter().map(|el| el.name().to_string()).collect();
            fail(format!("cannot link {}: {e}", names.join(" ! ")))
        })?;
        let pool = gst::BufferPool::new();
        let mut config = pool.config();
        let size = u32::try_from(frame_size).map_err(|_| SinkError::Settings {
            detail: format!("a frame of {frame_size} bytes is too large for a GStreamer buffer"),
        })?;
        config.set_params(Some(&caps), size, POOL_BUFFERS, POOL_BUFFERS);
        pool.set_config(config)
            .map_err(|e| fail(format!("buffer pool: {e}")))?;
        pool.set_active(true)
            .map_err(|e| fail(format!("buffer pool: {e}")))?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| fail("the pipeline has no bus".into()))?;
        let sink = Self {
            uri: uri.to_owned(),
            pipeline,
            bus,
            src,
            pool,
            acquire: gst::BufferPoolAcquireParams::with_flags(
                gst::BufferPoolAcquireFlags::DONTWAIT,
            ),
            width: settings.width,
            height: settings.height,
            clock,
            stride,
            max_queued,
            origin: None,
            frames: 0,
            dropped: 0,
        };
        if sink.pipeline.set_state(gst::State::Playing).is_err() {
            let detail = sink
                .bus
                .timed_pop_filtered(
                    gst::ClockTime::from_mseconds(100),
                    &[gst::MessageType::Error],
                )
                .map(|m| describe(&m))
                .unwrap_or_else(|| "the pipeline refused to start".into());
            return Err(fail(detail));
        }
        Ok(sink)
    }

    /// Drains the bus without waiting: the first error as one line; warnings are logged.
    fn drain_bus(&self) -> Result<(), SinkError> {
        while let Some(msg) = self.bus.pop() {
            match msg.view() {
                gst::MessageView::Error(_) => {
                    return Err(SinkError::Live {
                        uri: self.uri.clone(),
                        detail: describe(&msg),
                    })
                }
                gst::MessageView::Warning(w) => {
                    log::warn!("display sink {}: {}", self.uri, w.error());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl FrameSink for DisplaySink {
    /// Does not block; after the pool has filled, does not allocate frame buffers.
    fn write_frame(&mut self, frame: &Frame<'_>) -> Result<WriteOutcome, SinkError> {
        check_frame(frame.data, self.frames, self.width, self.height)?;
        self.drain_bus()?;
        if self.src.current_level_bytes() >= self.max_queued {
            self.dropped += 1;
            return Ok(WriteOutcome::Dropped);
        }
        let mut buffer = match self.pool.acquire_buffer(Some(&self.acquire)) {
            Ok(b) => b,
            // DONTWAIT and every buffer in use.
            Err(gst::FlowError::Eos) => {
                self.dropped += 1;
                return Ok(WriteOutcome::Dropped);
            }
            Err(e) => {
                return Err(SinkError::Live {
                    uri: self.uri.clone(),
                    detail: format!("no pooled buffer: {e:?}"),
                })
            }
        };
        let origin = *self.origin.get_or_insert(frame.pts);
        {
            let row = self.width as usize * 3;
            let shared = || SinkError::Live {
                uri: self.uri.clone(),
                detail: "a pooled buffer is shared".into(),
            };
            let b = buffer.get_mut().ok_or_else(shared)?;
            {
                let mut map = b.map_writable().map_err(|e| SinkError::Live {
                    uri: self.uri.clone(),
                    detail: format!("cannot map a buffer: {e}"),
                })?;
                copy_rows(&mut map, self.stride, frame.data, row);
            }
            let k = frame.index;
            let duration = self.clock.frame_offset(k + 1) - self.clock.frame_offset(k);
            let since = frame.pts.since(origin);
            b.set_pts(gst::ClockTime::from_nseconds(since.as_nanos() as u64));
            b.set_duration(gst::ClockTime::from_nseconds(duration.as_nanos() as u64));
            b.set_offset(k);
        }
        if let Err(e) = self.src.push_buffer(buffer) {
            self.drain_bus()?;
            return Err(SinkError::Live {
                uri: self.uri.clone(),
                detail: format!("push failed: {e:?}"),
            });
        }
        self.frames += 1;
        Ok(WriteOutcome::Written)
    }

    /// A display has no sound track: audio goes to `audio::playback`.
    fn write_audio(&mut self, _samples: &[f32], _pts: Pts) -> Result<(), SinkError> {
        Ok(())
    }

    /// Ends the stream and waits (at most [`FINISH_TIMEOUT`]) until the sink has it.
    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError> {
        let fail = |detail: String| SinkError::Live {
            uri: self.uri.clone(),
            detail,
        };
        self.src
            .end_of_stream()
            .map_err(|e| fail(format!("end of stream failed: {e:?}")))?;
        let timeout = gst::ClockTime::from_mseconds(FINISH_TIMEOUT.as_millis() as u64);
        let types = [gst::MessageType::Eos, gst::MessageType::Error];
        let result = match self.bus.timed_pop_filtered(timeout, &types) {
            Some(msg) if msg.type_() == gst::MessageType::Eos => Ok(()),
            Some(msg) => Err(fail(describe(&msg))),
            None => Err(fail(format!(
                "the end of stream did not reach the sink within {} s",
                FINISH_TIMEOUT.as_secs()
            ))),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        log::info!(
            "display sink {}: {} frames shown, {} dropped",
            self.uri,
            self.frames,
            self.dropped
        );
        Ok(SinkSummary {
            frames: self.frames,
            video_seconds: self.frames as f64 / f64::from(self.clock.fps()),
            audio_seconds: None,
            path: None,
        })
    }
}

impl Drop for DisplaySink {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = self.pool.set_active(false);
    }
}

#[cfg(test)]
mod tests;
