//! The live pipeline: capture → motion → render → output on their own threads, frame k shown
//! at `t0 + k/fps + budget` (the arithmetic is in [`schedule`]).
//!
//! ```text
//! AudioFeed ──▶ motion thread ──MotionFrame──▶ render thread ──RGB slot──▶ output thread ──▶ FrameSink
//! (capture:      (streaming MotionStage;         (FrameStage; skips a      (frame clock: shows frame k
//!  continuous     forwards the samples to          frame it cannot finish    at its deadline or repeats
//!  16 kHz)        the sink and the playback)       in time)                  the last one, counted)
//!                      └──audio chunks──▶ playback thread (sample n heard at t0 + n/16000 + budget)
//! ```
//!
//! Buffers circulate: motion frames and RGB slots are allocated when the pipeline starts and
//! handed between threads through bounded channels (two RGB slots in flight while the output
//! holds the picture on screen: double buffering), so nothing on the per-frame path allocates.
//! Each thread beats a heartbeat; the service pings the systemd watchdog only while every
//! heartbeat is fresh, so a stalled stage stops the pings.
//!
//! With [`Pacing::Virtual`] the same threads run as fast as the machine allows with time taken
//! from the audio: the output waits for each frame instead of its deadline, nothing is late,
//! and the run ends with the audio (`moda-edged --clock virtual`).

mod dump;
mod feed;
pub mod histogram;
mod measure;
mod metrics;
pub mod schedule;
mod threads;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use feed::{AudioFeed, AudioOut, FeedRead, FeedStatus, MemoryFeed, PlaybackOut};
pub use histogram::{LatencyHistogram, LatencySummary};
pub use measure::{measure, Measured};
pub use metrics::{Metrics, Snapshot};
pub use schedule::{check_budget, BudgetError, BudgetNeeds, Presenter, Schedule};

use super::motion::StreamingSettings;
use super::{
    FrameError, FrameSettings, MotionError, MotionFrame, MotionModels, MotionSettings, MotionStage,
    RenderStages, WindowPolicy,
};
use crate::backend::{Backend, PlanCache, Prepared};
use crate::clock::{Clock, FrameClock, Pts};
use crate::face::avatar::Avatar;
use crate::motion::{Noise, SmoothingSettings, StreamWindow};
use crate::sink::{FrameSink, SinkError};
use threads::{AudioChunk, AudioIn, AudioLane, ChunkBuf, Shared, ToOutput, ToRender, CHUNK, POLL};

/// How the output is paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Frame k at `t0 + k/fps + budget` on the clock.
    RealTime,
    /// As fast as the machine allows; every frame shown in order.
    Virtual,
}

/// Settings of the live pipeline.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub motion: StreamingSettings,
    pub noise: Noise,
    pub smoothing: SmoothingSettings,
    pub budget: Duration,
    pub time_code_period: u64,
    pub pacing: Pacing,
    /// Simulation only: the motion and face intermediates, written as `.npy` at the end.
    pub dump: Option<PathBuf>,
    /// Debug control: while set, the render thread blocks (and stops beating its heartbeat),
    /// as a stalled stage would; the field tests use it to see the watchdog act.
    pub stall: Option<Arc<AtomicBool>>,
    /// Draw the debug stamp (frame index and first sample, [`crate::sink::stamp`]) into the
    /// top-left corner of every rendered frame, for the field tests' sync checks.
    pub stamp: bool,
}

/// Errors of the live pipeline.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Motion(#[from] MotionError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error("cannot start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    #[error("cannot write {}", path.display())]
    Dump {
        path: PathBuf,
        source: crate::util::npy::NpyError,
    },
}

/// Motion frames in flight between the motion and render threads.
const MOTION_SLOTS: usize = 64;
/// RGB slots: one being rendered, one queued, one held by the output (on screen).
const RGB_SLOTS: usize = 3;

/// The running pipeline.
pub struct LivePipeline {
    /// The audio source's name (`alsa://default`, `file://…`).
    device: Arc<str>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    t0: Arc<OnceLock<Pts>>,
    threads: Vec<(&'static str, JoinHandle<Result<(), LiveError>>)>,
}

/// Everything the pipeline runs with.
pub struct LiveParts<B: Backend> {
    pub backend: Arc<B>,
    pub cache: Arc<PlanCache<B>>,
    pub models: MotionModels,
    pub avatar: Avatar,
    pub feed: Box<dyn AudioFeed>,
    pub sink: Box<dyn FrameSink>,
    /// Hand the stream's audio to the sink too (a file with a sound track).
    pub sink_audio: bool,
    /// Delayed playback of the captured audio (`audio.out`).
    pub playback: Option<Box<dyn AudioOut>>,
    pub clock: Arc<dyn Clock>,
}

type Job = Box<dyn FnOnce() -> Result<(), LiveError> + Send>;

/// A bounded channel of audio chunks with its pool of buffers: enough for the budget, the
/// motion window's chunk and lookahead (audio taken before its frames can be made) and a second
/// more. A motion thread that waits for room (simulations) therefore always has frames
/// downstream whose presentation drains the lane.
fn audio_lane(budget: Duration, window: StreamWindow) -> (AudioLane, AudioIn) {
    let ahead = FrameClock::MODA.first_sample((window.chunk + window.lookahead) as u64 + 1);
    let chunks = budget.as_millis() as usize / 10 + ahead as usize / CHUNK + 1 + 100;
    let (to, rx) = sync_channel::<AudioChunk>(chunks);
    let (free_tx, free) = sync_channel::<ChunkBuf>(chunks);
    for _ in 0..chunks {
        let _ = free_tx.send(Box::new([0.0; CHUNK]));
    }
    (AudioLane { to, free }, AudioIn { rx, free: free_tx })
}

impl LivePipeline {
    /// Prepares the stages (on this thread: errors come back here) and starts the threads.
    ///
    /// # Errors
    /// A stage that cannot be built (models, avatar), or a thread that cannot start.
    pub fn start<B: RenderStages>(
        parts: LiveParts<B>,
        settings: LiveSettings,
    ) -> Result<LivePipeline, LiveError>
    where
        <B::Prepared as Prepared>::Session: 'static,
    {
        let LiveParts {
            backend,
            cache,
            models,
            avatar,
            mut feed,
            mut sink,
            sink_audio,
            playback,
            clock,
        } = parts;
        let frame_settings = FrameSettings {
            canvas: avatar.config.canvas,
            size: avatar.config.renderer_size,
            time_code_period: Some(settings.time_code_period),
        };
        let mut stage = B::render_stage(&backend, &cache, &avatar, frame_settings)?;
        let mut motion = MotionStage::new(
            Arc::clone(&backend),
            Arc::clone(&cache),
            &models,
            &avatar.template,
            MotionSettings {
                window: WindowPolicy::Streaming(settings.motion),
                noise: settings.noise,
                smoothing: settings.smoothing,
            },
        )?;

        let device = feed.status().device;
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        let t0: Arc<OnceLock<Pts>> = Arc::new(OnceLock::new());
        for h in &metrics.heartbeat {
            h.store(clock.now().nanos(), Ordering::Relaxed);
        }
        if playback.is_none() {
            metrics.heartbeat[3].store(u64::MAX, Ordering::Relaxed);
        }
        let (to_render, render_rx) = sync_channel::<ToRender>(MOTION_SLOTS + 1);
        let (motion_free_tx, motion_free) = sync_channel::<Box<MotionFrame>>(MOTION_SLOTS);
        for _ in 0..MOTION_SLOTS {
            let _ = motion_free_tx.send(Box::default());
        }
        let size = frame_settings.size;
        let (to_output, output_rx) = sync_channel::<ToOutput>(RGB_SLOTS + 1);
        let (rgb_free_tx, rgb_free) = sync_channel::<Vec<u8>>(RGB_SLOTS);
        for _ in 0..RGB_SLOTS {
            let _ = rgb_free_tx.send(vec![0u8; size * size * 3]);
        }
        let mut lanes = Vec::new();
        let sink_lane = sink_audio.then(|| {
            let (lane, audio) = audio_lane(settings.budget, settings.motion.window);
            lanes.push(lane);
            audio
        });
        let play_lane = playback.map(|out| {
            let (lane, audio) = audio_lane(settings.budget, settings.motion.window);
            lanes.push(lane);
            (out, audio)
        });

        let (pacing, budget) = (settings.pacing, settings.budget);
        let mut threads = Vec::new();
        let mut spawn = |name: &'static str, f: Job| -> Result<(), LiveError> {
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| LiveError::Thread(name, e))?;
            threads.push((name, handle));
            Ok(())
        };
        let context = || {
            (
                Arc::clone(&stop),
                Arc::clone(&metrics),
                Arc::clone(&t0),
                Arc::clone(&clock),
            )
        };
        macro_rules! shared {
            ($c:expr) => {
                Shared {
                    stop: &$c.0,
                    metrics: &$c.1,
                    t0: &$c.2,
                    clock: &*$c.3,
                    pacing,
                    budget,
                }
            };
        }

        let c = context();
        spawn(
            "moda-motion",
            Box::new(move || {
                let r = threads::motion_loop(
                    &shared!(c),
                    &mut *feed,
                    &mut motion,
                    &to_render,
                    &motion_free,
                    &lanes,
                );
                let _ = to_render.send(ToRender::End);
                r
            }),
        )?;
        let c = context();
        let (stall, dump, stamp) = (
            settings.stall.clone(),
            settings.dump.clone(),
            settings.stamp,
        );
        spawn(
            "moda-render",
            Box::new(move || {
                let mut dumped = dump.as_ref().map(|_| dump::LiveDump::default());
                let r = threads::render_loop(
                    &shared!(c),
                    stage.as_mut(),
                    &render_rx,
                    &motion_free_tx,
                    &to_output,
                    &rgb_free,
                    threads::RenderDebug {
                        stall: stall.as_deref(),
                        stamp: stamp.then_some(size as u32),
                    },
                    dumped.as_mut(),
                );
                let _ = to_output.send(ToOutput::End);
                if let (Some(dir), Some(d)) = (dump, dumped) {
                    d.write(&dir)?;
                }
                r
            }),
        )?;
        let c = context();
        spawn(
            "moda-output",
            Box::new(move || {
                let io = threads::OutputIo {
                    sink: &mut *sink,
                    rx: &output_rx,
                    rgb_free: &rgb_free_tx,
                    audio: sink_lane.as_ref(),
                };
                let r = threads::output_loop(&shared!(c), io, size);
                c.1.finished.store(true, Ordering::SeqCst);
                let finished = sink.finish().map(|_| ()).map_err(LiveError::from);
                r.and(finished)
            }),
        )?;
        if let Some((mut out, audio)) = play_lane {
            let c = context();
            spawn(
                "moda-playback",
                Box::new(move || {
                    threads::playback_loop(&shared!(c), &mut *out, &audio);
                    Ok(())
                }),
            )?;
        }
        Ok(LivePipeline {
            device,
            stop,
            metrics,
            t0,
            threads,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The audio source's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Capture time of sample 0, once known.
    pub fn t0(&self) -> Option<Pts> {
        self.t0.get().copied()
    }

    /// Whether the output has finished (the audio ended, or a stage failed).
    pub fn finished(&self) -> bool {
        self.metrics.finished.load(Ordering::SeqCst)
    }

    /// Stops the threads, finalizes the sink and returns the first error a thread met.
    ///
    /// # Errors
    /// The first stage error, or a thread that panicked.
    pub fn stop(self) -> Result<Snapshot, LiveError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits until the stream ends by itself (a file source), then stops.
    ///
    /// # Errors
    /// As [`LivePipeline::stop`].
    pub fn wait(self) -> Result<Snapshot, LiveError> {
        while !self.finished() {
            std::thread::sleep(POLL);
        }
        self.stop()
    }

    fn join(self) -> Result<Snapshot, LiveError> {
        let mut first = Ok(());
        for (name, handle) in self.threads {
            let r = handle.join().unwrap_or(Err(LiveError::Panicked(name)));
            if first.is_ok() {
                first = r;
            }
        }
        first.map(|()| self.metrics.snapshot())
    }
}

#[cfg(test)]
mod tests;
