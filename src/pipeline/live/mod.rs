//! The live pipeline: capture → motion → render → output on their own threads, frame k shown
//! at `t0 + k/fps + budget` (the arithmetic is in [`schedule`]).
//!
//! ```text
//! AudioFeed ──▶ motion thread ──MotionFrame──▶ render thread ──RGB slot──▶ output thread ──▶ FrameSink
//! (capture:      (streaming MotionStage;         (FrameStage; skips a      (frame clock: shows frame k
//!  continuous     forwards the samples to          frame it cannot finish    at its deadline or repeats
//!  16 kHz)        the audio output)                in time)                  the last one, counted)
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

pub mod histogram;
pub mod schedule;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use histogram::{LatencyHistogram, LatencySummary};
pub use schedule::{check_budget, BudgetError, BudgetNeeds, Presenter, Schedule};

use super::motion::StreamingSettings;
use super::{
    FrameError, FrameOutcome, FrameSettings, FrameStage, MotionError, MotionFrame, MotionModels,
    MotionSettings, MotionStage, WindowPolicy,
};
use crate::backend::{Backend, PlanCache, Prepared};
use crate::clock::{Clock, FrameClock, Pts};
use crate::face::avatar::Avatar;
use crate::motion::{Noise, SmoothingSettings};
use crate::sink::{Frame, FrameSink, SinkError, WriteOutcome};

/// What the motion thread reads: a continuous 16 kHz mono stream, sample n captured at
/// `t0 + n/16000` (the audio capture keeps it continuous: silence fills gaps).
pub trait AudioFeed: Send {
    /// Moves up to `out.len()` samples into `out` without blocking.
    fn pop(&mut self, out: &mut [f32]) -> FeedRead;
    /// Capture time of sample 0, once it has been captured.
    fn t0(&self) -> Option<Pts>;
    /// The source's counters, for the status.
    fn status(&self) -> FeedStatus {
        FeedStatus::default()
    }
}

/// One [`AudioFeed::pop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedRead {
    pub samples: usize,
    /// Absolute index of the first sample popped.
    pub first_index: u64,
    /// The stream has ended (a file source) and every sample was popped.
    pub end_of_stream: bool,
}

/// What a feed reports about its source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedStatus {
    pub device: String,
    pub connected: bool,
    pub xruns: u64,
    pub dropped_samples: u64,
}

/// A feed over samples in memory, for simulations and tests: everything available at once,
/// t0 = 0 (time taken from the audio).
#[derive(Debug)]
pub struct MemoryFeed {
    samples: Vec<f32>,
    pos: usize,
}

impl MemoryFeed {
    pub fn new(samples: Vec<f32>) -> MemoryFeed {
        MemoryFeed { samples, pos: 0 }
    }
}

impl AudioFeed for MemoryFeed {
    fn pop(&mut self, out: &mut [f32]) -> FeedRead {
        let n = out.len().min(self.samples.len() - self.pos);
        out[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        let first_index = self.pos as u64;
        self.pos += n;
        FeedRead {
            samples: n,
            first_index,
            end_of_stream: self.pos == self.samples.len(),
        }
    }

    fn t0(&self) -> Option<Pts> {
        Some(Pts::ZERO)
    }

    fn status(&self) -> FeedStatus {
        FeedStatus {
            device: "memory".into(),
            connected: true,
            ..FeedStatus::default()
        }
    }
}

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

/// Counters the threads update and the service reads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Deadlines passed (frames presented, fresh or repeated).
    pub presented: AtomicU64,
    /// Deadlines at which the frame due was not ready (the previous picture was repeated).
    pub late: AtomicU64,
    /// Frames rendered and handed to the output.
    pub rendered: AtomicU64,
    /// Frames the renderer skipped because they could not make their deadline.
    pub skipped: AtomicU64,
    /// Frames whose motion was not finite (the previous picture was kept).
    pub nonfinite: AtomicU64,
    /// Frames rendered after their deadline (dropped at the output).
    pub stale: AtomicU64,
    /// Frames the sink dropped (no room on the device).
    pub sink_dropped: AtomicU64,
    /// Motion windows run.
    pub motion_runs: AtomicU64,
    /// Samples taken from the feed.
    pub samples: AtomicU64,
    /// Smallest and largest presentation latency (present time − frame time), ns.
    pub latency_min_ns: AtomicU64,
    pub latency_max_ns: AtomicU64,
    /// Presentation latencies, for percentiles.
    pub latencies: LatencyHistogram,
    /// Per-thread heartbeats: monotonic ns of the last loop turn (capture/motion, render, output).
    pub heartbeat: [AtomicU64; 3],
    /// The output has finished (end of stream or error).
    pub finished: AtomicBool,
}

/// A snapshot of the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub presented: u64,
    pub late: u64,
    pub skipped: u64,
    pub stale: u64,
    pub sink_dropped: u64,
    pub motion_runs: u64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            latency_min_ns: AtomicU64::new(u64::MAX),
            ..Metrics::default()
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let h = self.latencies.summary();
        Snapshot {
            presented: self.presented.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            sink_dropped: self.sink_dropped.load(Ordering::Relaxed),
            motion_runs: self.motion_runs.load(Ordering::Relaxed),
            latency_p50: h.p50,
            latency_p99: h.p99,
            latency_max: h.max,
        }
    }

    /// Whether every thread has turned its loop within `within` of `now`.
    pub fn alive(&self, now: Pts, within: Duration) -> bool {
        self.heartbeat.iter().all(|h| {
            let t = Pts::from_nanos(h.load(Ordering::Relaxed));
            now.since(t) <= within
        })
    }
}

fn beat(h: &AtomicU64, clock: &dyn Clock) {
    h.store(clock.now().nanos(), Ordering::Relaxed);
}

/// A rendered frame in an RGB slot.
struct Rendered {
    index: u64,
    rgb: Vec<u8>,
}

impl schedule::Indexed for Rendered {
    fn index(&self) -> u64 {
        self.index
    }
}

enum ToRender {
    Frame(Box<MotionFrame>),
    End,
}

enum ToOutput {
    Frame(Rendered),
    End,
}

/// Motion frames in flight between the motion and render threads.
const MOTION_SLOTS: usize = 64;
/// RGB slots: one being rendered, one queued, one held by the output (on screen).
const RGB_SLOTS: usize = 3;
/// How long a blocked thread sleeps between looks at the stop flag.
const POLL: Duration = Duration::from_millis(2);

/// The running pipeline.
pub struct LivePipeline {
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
    pub clock: Arc<dyn Clock>,
}

impl LivePipeline {
    /// Prepares the stages (on this thread: errors come back here) and starts the threads.
    ///
    /// # Errors
    /// A stage that cannot be built (models, avatar), or a thread that cannot start.
    pub fn start<B: Backend + 'static>(
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
            clock,
        } = parts;
        let frame_settings = FrameSettings {
            canvas: avatar.config.canvas,
            size: avatar.config.renderer_size,
            time_code_period: Some(settings.time_code_period),
        };
        let renderer =
            crate::backend::OnnxModel::load(&avatar.renderer_path()).map_err(FrameError::from)?;
        renderer.check_kind("renderer").map_err(FrameError::from)?;
        let prepared = cache
            .prepare(
                backend.as_ref(),
                &renderer,
                &frame_settings.prepare_options(),
            )
            .map_err(FrameError::from)?;
        let mut stage = FrameStage::new(
            prepared.as_ref(),
            avatar.repr(),
            &avatar.reference,
            frame_settings,
        )?;
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

        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new());
        let t0: Arc<OnceLock<Pts>> = Arc::new(OnceLock::new());
        for h in &metrics.heartbeat {
            h.store(clock.now().nanos(), Ordering::Relaxed);
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
        let pacing = settings.pacing;
        let budget = settings.budget;

        let mut threads = Vec::new();
        let spawn = |name: &'static str,
                     threads: &mut Vec<(&'static str, JoinHandle<Result<(), LiveError>>)>,
                     f: Box<dyn FnOnce() -> Result<(), LiveError> + Send>|
         -> Result<(), LiveError> {
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| LiveError::Thread(name, e))?;
            threads.push((name, handle));
            Ok(())
        };

        // Motion: feed → MotionStage → motion frames.
        {
            let (stop, metrics, t0, clock) = (
                Arc::clone(&stop),
                Arc::clone(&metrics),
                Arc::clone(&t0),
                Arc::clone(&clock),
            );
            spawn(
                "moda-motion",
                &mut threads,
                Box::new(move || {
                    let r = motion_loop(
                        &mut *feed,
                        &mut motion,
                        &to_render,
                        &motion_free,
                        &stop,
                        &metrics,
                        &t0,
                        &*clock,
                    );
                    let _ = to_render.send(ToRender::End);
                    r
                }),
            )?;
        }
        // Render: motion frames → RGB slots.
        {
            let (stop, metrics, t0, clock) = (
                Arc::clone(&stop),
                Arc::clone(&metrics),
                Arc::clone(&t0),
                Arc::clone(&clock),
            );
            let stall = settings.stall.clone();
            let dump = settings.dump.clone();
            spawn(
                "moda-render",
                &mut threads,
                Box::new(move || {
                    let mut dumped = dump.as_ref().map(|_| LiveDump::default());
                    let r = render_loop(
                        &mut stage,
                        &render_rx,
                        &motion_free_tx,
                        &to_output,
                        &rgb_free,
                        RenderContext {
                            stop: &stop,
                            metrics: &metrics,
                            t0: &t0,
                            clock: &*clock,
                            pacing,
                            budget,
                            stall: stall.as_deref(),
                            dump: dumped.as_mut(),
                        },
                    );
                    let _ = to_output.send(ToOutput::End);
                    if let (Some(dir), Some(d)) = (dump, dumped) {
                        d.write(&dir)?;
                    }
                    r
                }),
            )?;
        }
        // Output: the frame clock.
        {
            let (stop, metrics, t0, clock) = (
                Arc::clone(&stop),
                Arc::clone(&metrics),
                Arc::clone(&t0),
                Arc::clone(&clock),
            );
            spawn(
                "moda-output",
                &mut threads,
                Box::new(move || {
                    let r = output_loop(
                        &mut *sink,
                        &output_rx,
                        &rgb_free_tx,
                        &stop,
                        &metrics,
                        &t0,
                        &*clock,
                        pacing,
                        budget,
                        size,
                    );
                    metrics.finished.store(true, Ordering::SeqCst);
                    let finished = sink.finish().map(|_| ()).map_err(LiveError::from);
                    r.and(finished)
                }),
            )?;
        }
        Ok(LivePipeline {
            stop,
            metrics,
            t0,
            threads,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
            std::thread::sleep(Duration::from_millis(5));
        }
        self.join()
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

/// Samples the motion thread takes from the feed at a time (10 ms at 16 kHz).
const FEED_CHUNK: usize = 160;

#[allow(clippy::too_many_arguments)]
fn motion_loop<B: Backend>(
    feed: &mut dyn AudioFeed,
    motion: &mut MotionStage<B>,
    to_render: &SyncSender<ToRender>,
    free: &Receiver<Box<MotionFrame>>,
    stop: &AtomicBool,
    metrics: &Metrics,
    t0: &OnceLock<Pts>,
    clock: &dyn Clock,
) -> Result<(), LiveError> {
    let mut buf = [0f32; FEED_CHUNK];
    let mut slot: Option<Box<MotionFrame>> = None;
    let mut ended = false;
    while !stop.load(Ordering::Relaxed) {
        beat(&metrics.heartbeat[0], clock);
        let read = feed.pop(&mut buf);
        if read.samples > 0 {
            if t0.get().is_none() {
                if let Some(t) = feed.t0() {
                    let _ = t0.set(t);
                }
            }
            motion.push(&buf[..read.samples])?;
            metrics
                .samples
                .fetch_add(read.samples as u64, Ordering::Relaxed);
        }
        if read.end_of_stream && !ended {
            motion.end_of_stream()?;
            ended = true;
        }
        // Hand out every frame that is ready.
        loop {
            let mut frame = match slot.take() {
                Some(f) => f,
                None => match free.recv_timeout(POLL) {
                    Ok(f) => f,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
            };
            let runs = motion.stats().moda_runs;
            if motion.next_frame(&mut frame)? {
                metrics
                    .motion_runs
                    .fetch_add((motion.stats().moda_runs - runs) as u64, Ordering::Relaxed);
                if to_render.send(ToRender::Frame(frame)).is_err() {
                    return Ok(());
                }
            } else {
                slot = Some(frame);
                if ended {
                    // Every frame of the stream was handed out.
                    return Ok(());
                }
                break;
            }
        }
        if read.samples == 0 {
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

struct RenderContext<'a> {
    stop: &'a AtomicBool,
    metrics: &'a Metrics,
    t0: &'a OnceLock<Pts>,
    clock: &'a dyn Clock,
    pacing: Pacing,
    budget: Duration,
    stall: Option<&'a AtomicBool>,
    dump: Option<&'a mut LiveDump>,
}

fn render_loop<S: crate::backend::Session>(
    stage: &mut FrameStage<S>,
    rx: &Receiver<ToRender>,
    motion_free: &SyncSender<Box<MotionFrame>>,
    to_output: &SyncSender<ToOutput>,
    rgb_free: &Receiver<Vec<u8>>,
    mut cx: RenderContext<'_>,
) -> Result<(), LiveError> {
    let fclock = FrameClock::MODA;
    // The last render's duration: a frame whose deadline is nearer than this is skipped.
    let mut render_time = Duration::ZERO;
    loop {
        beat(&cx.metrics.heartbeat[1], cx.clock);
        if cx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let msg = match rx.recv_timeout(POLL) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let frame = match msg {
            ToRender::Frame(f) => f,
            ToRender::End => return Ok(()),
        };
        let k = frame.index;
        // A stalled stage (debug control): no heartbeat while it lasts.
        while cx.stall.is_some_and(|s| s.load(Ordering::Relaxed)) {
            if cx.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        if cx.pacing == Pacing::RealTime {
            if let Some(&t0) = cx.t0.get() {
                let deadline = Schedule::new(t0, cx.budget, fclock).deadline(k);
                if cx.clock.now().after(render_time) > deadline {
                    cx.metrics.skipped.fetch_add(1, Ordering::Relaxed);
                    let _ = motion_free.send(frame);
                    continue;
                }
            }
        }
        let started = Instant::now();
        if stage.process(&frame)? == FrameOutcome::KeptPrevious {
            cx.metrics.nonfinite.fetch_add(1, Ordering::Relaxed);
        }
        render_time = started.elapsed();
        if let Some(d) = cx.dump.as_deref_mut() {
            d.record(&frame, &stage.buffers);
        }
        let mut rgb = loop {
            match rgb_free.recv_timeout(POLL) {
                Ok(b) => break b,
                Err(RecvTimeoutError::Timeout) if !cx.stop.load(Ordering::Relaxed) => {
                    beat(&cx.metrics.heartbeat[1], cx.clock);
                }
                Err(_) => return Ok(()),
            }
        };
        rgb.copy_from_slice(&stage.buffers.out);
        let _ = motion_free.send(frame);
        if to_output
            .send(ToOutput::Frame(Rendered { index: k, rgb }))
            .is_err()
        {
            return Ok(());
        }
        cx.metrics.rendered.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
fn output_loop(
    sink: &mut dyn FrameSink,
    rx: &Receiver<ToOutput>,
    rgb_free: &SyncSender<Vec<u8>>,
    stop: &AtomicBool,
    metrics: &Metrics,
    t0: &OnceLock<Pts>,
    clock: &dyn Clock,
    pacing: Pacing,
    budget: Duration,
    size: usize,
) -> Result<(), LiveError> {
    let fclock = FrameClock::MODA;
    // The picture on screen (repeated when a frame is late).
    let mut shown = vec![0u8; size * size * 3];
    let mut presenter: Presenter<Rendered> = Presenter::default();
    let mut ended = false;
    let recycle = |r: Rendered| {
        let _ = rgb_free.send(r.rgb);
    };
    // Wait for t0 (the first captured sample).
    let t0 = loop {
        beat(&metrics.heartbeat[2], clock);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(&t) = t0.get() {
            break t;
        }
        std::thread::sleep(POLL);
    };
    let schedule = Schedule::new(t0, budget, fclock);
    let mut k = match pacing {
        Pacing::RealTime => schedule.first_frame_due_after(clock.now()),
        Pacing::Virtual => 0,
    };
    while !stop.load(Ordering::Relaxed) {
        beat(&metrics.heartbeat[2], clock);
        let deadline = schedule.deadline(k);
        let frame = match pacing {
            Pacing::RealTime => {
                // Sleep in short steps so the heartbeat and the stop flag stay live.
                loop {
                    let now = clock.now();
                    if now >= deadline || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    clock.sleep_until(deadline.min(now.after(Duration::from_millis(50))));
                    beat(&metrics.heartbeat[2], clock);
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let mut next = || match rx.try_recv() {
                    Ok(ToOutput::Frame(f)) => Some(f),
                    Ok(ToOutput::End) => {
                        ended = true;
                        None
                    }
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
                };
                presenter.take(k, &mut next, recycle)
            }
            Pacing::Virtual => loop {
                match rx.recv_timeout(POLL) {
                    Ok(ToOutput::Frame(f)) => break Some(f),
                    Ok(ToOutput::End) | Err(RecvTimeoutError::Disconnected) => {
                        ended = true;
                        break None;
                    }
                    Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return Ok(()),
                    Err(RecvTimeoutError::Timeout) => beat(&metrics.heartbeat[2], clock),
                }
            },
        };
        if ended && frame.is_none() {
            return Ok(());
        }
        let index = match pacing {
            Pacing::RealTime => k,
            Pacing::Virtual => frame.as_ref().map_or(k, |f| f.index),
        };
        if let Some(f) = frame {
            shown.copy_from_slice(&f.rgb);
            recycle(f);
        } else {
            metrics.late.store(presenter.late, Ordering::Relaxed);
        }
        let pts = match pacing {
            Pacing::RealTime => deadline,
            Pacing::Virtual => schedule.deadline(index),
        };
        let outcome = sink.write_frame(&Frame::rgb(index, pts, &shown))?;
        if outcome == WriteOutcome::Dropped {
            metrics.sink_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if pacing == Pacing::RealTime {
            let latency = clock.now().since(schedule.frame_time(index));
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            metrics.latency_min_ns.fetch_min(ns, Ordering::Relaxed);
            metrics.latency_max_ns.fetch_max(ns, Ordering::Relaxed);
            metrics.latencies.record(latency);
        }
        metrics.presented.fetch_add(1, Ordering::Relaxed);
        metrics.stale.store(presenter.stale, Ordering::Relaxed);
        k = index + 1;
    }
    Ok(())
}

/// The simulation's dump: the motion and face intermediates under the names of `render
/// --dump` (`moda_smoothed_{lip,eye,head,torso}`, `faco_smoothed`, `face_px`, `shoulder_px`).
#[derive(Default)]
struct LiveDump {
    frames: usize,
    lip: Vec<f32>,
    eye: Vec<f32>,
    head: Vec<f32>,
    torso: Vec<f32>,
    face: Vec<f32>,
    face_px: Vec<f64>,
    shoulder_px: Vec<f64>,
}

impl LiveDump {
    fn record(&mut self, m: &MotionFrame, b: &super::frame::FrameBuffers) {
        self.frames += 1;
        self.lip.extend_from_slice(&m.lip);
        self.eye.extend_from_slice(&m.eye);
        self.head.extend_from_slice(&m.head);
        self.torso.extend_from_slice(&m.torso);
        self.face.extend_from_slice(&m.face);
        self.face_px.extend(b.face_px.iter().flatten());
        self.shoulder_px.extend(b.shoulder_px.iter().flatten());
    }

    fn write(&self, dir: &std::path::Path) -> Result<(), LiveError> {
        use crate::model::{Tensor, TensorData};
        let t = self.frames;
        let write = |name: &str, tensor: Tensor| {
            let path = dir.join(format!("{name}.npy"));
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::util::npy::NpyError::Io {
                    path: dir.to_path_buf(),
                    error: e,
                })
                .and_then(|()| crate::util::npy::write(&path, &tensor))
                .map_err(|source| LiveError::Dump { path, source })
        };
        for (name, data, c) in [
            ("lip", &self.lip, 120),
            ("eye", &self.eye, 180),
            ("head", &self.head, 7),
            ("torso", &self.torso, 54),
        ] {
            write(
                &format!("moda_smoothed_{name}"),
                Tensor::f32(vec![t, c], data.clone()),
            )?;
        }
        write(
            "faco_smoothed",
            Tensor::f32(vec![t, 478, 3], self.face.clone()),
        )?;
        write(
            "face_px",
            Tensor {
                shape: vec![t, 478, 2],
                data: TensorData::F64(self.face_px.clone()),
            },
        )?;
        write(
            "shoulder_px",
            Tensor {
                shape: vec![t, 18, 2],
                data: TensorData::F64(self.shoulder_px.clone()),
            },
        )
    }
}

/// What [`measure`] found: the budget terms and the raw timings.
#[derive(Clone, Debug)]
pub struct Measured {
    pub needs: BudgetNeeds,
    /// Motion runs timed (one per chunk), ms.
    pub motion_ms: Vec<f64>,
    /// Frames timed, ms.
    pub render_ms: Vec<f64>,
}

/// Times the streaming motion stage and the frame stage on this machine, with `models` and
/// `avatar` as the service will run them (through `cache`, so the service reuses the plans), and
/// returns the terms of the smallest budget that holds. `runs` chunks and as many frames are
/// timed after two warm-up runs of each; p99 of so few runs is their maximum.
///
/// # Errors
/// A stage that cannot be built or run.
pub fn measure<B: Backend>(
    backend: &Arc<B>,
    cache: &Arc<PlanCache<B>>,
    models: &MotionModels,
    avatar: &Avatar,
    settings: &LiveSettings,
    capture: Duration,
    runs: usize,
) -> Result<Measured, LiveError> {
    let w = settings.motion.window;
    let mut motion = MotionStage::new(
        Arc::clone(backend),
        Arc::clone(cache),
        models,
        &avatar.template,
        MotionSettings {
            window: WindowPolicy::Streaming(settings.motion),
            noise: settings.noise,
            smoothing: settings.smoothing,
        },
    )?;
    let frame_settings = FrameSettings {
        canvas: avatar.config.canvas,
        size: avatar.config.renderer_size,
        time_code_period: Some(settings.time_code_period),
    };
    let renderer =
        crate::backend::OnnxModel::load(&avatar.renderer_path()).map_err(FrameError::from)?;
    let prepared = cache
        .prepare(
            backend.as_ref(),
            &renderer,
            &frame_settings.prepare_options(),
        )
        .map_err(FrameError::from)?;
    let mut stage = FrameStage::new(
        prepared.as_ref(),
        avatar.repr(),
        &avatar.reference,
        frame_settings,
    )?;
    // A speech-like test signal long enough for the runs.
    let clock = FrameClock::MODA;
    let chunks = runs + 2;
    let frames = (w.history + w.frames() + chunks * w.chunk) as u64;
    let n = clock.first_sample(frames) as usize;
    let audio: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (std::f32::consts::TAU * 140.0 * t).sin() * (std::f32::consts::PI * 4.0 * t).sin()
        })
        .collect();
    motion.push(&audio)?;
    let mut frame = MotionFrame::default();
    let (mut motion_ms, mut render_ms) = (Vec::new(), Vec::new());
    let mut rendered = 0usize;
    while motion_ms.len() < runs + 2 || rendered < runs + 2 {
        let before = motion.stats().moda_runs;
        let t = Instant::now();
        if !motion.next_frame(&mut frame)? {
            break;
        }
        let dt = t.elapsed().as_secs_f64() * 1e3;
        if motion.stats().moda_runs > before {
            motion_ms.push(dt);
        }
        if rendered < runs + 2 {
            let t = Instant::now();
            stage.process(&frame)?;
            render_ms.push(t.elapsed().as_secs_f64() * 1e3);
            rendered += 1;
        }
    }
    let p99 = |v: &[f64]| {
        let warm = &v[v.len().min(2)..];
        Duration::from_secs_f64(warm.iter().copied().fold(0.0, f64::max) / 1e3)
    };
    let needs = BudgetNeeds {
        audio_wait: clock.frame_offset((w.chunk + w.lookahead) as u64),
        motion: p99(&motion_ms),
        render: p99(&render_ms),
        capture,
        margin: Duration::from_millis(5),
    };
    Ok(Measured {
        needs,
        motion_ms,
        render_ms,
    })
}

#[cfg(test)]
mod tests;
