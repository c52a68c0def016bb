//! The capture thread: one continuous, real-time 16 kHz mono stream from any live source.
//!
//! Contract: sample `n` of the stream is the audio captured at `t0 + n/16000` on the
//! [`Clock`] given to [`Capture::start`] (`t0`, the capture time of sample 0, is known after the
//! first samples: [`Capture::t0`]). The index never skips or repeats time: a device that runs
//! fast or slow is kept on the clock by dropping or repeating single samples (at most one per
//! 1000, see [`super::align`]); samples lost in an xrun or while the device was missing are
//! replaced by silence; a missing or unplugged device yields silence in real time, one log line
//! when it goes, one when it comes back, and a new attempt every `retry` (the first one at
//! once). The consumer takes samples with [`Capture::pop`], which never waits; the index of
//! each run tells it where the samples belong.
//!
//! Per source:
//!
//! | source | how samples come |
//! |---|---|
//! | `alsa://` | as the device captures them, placed by their ALSA timestamps |
//! | `file://` | the whole file decoded at start (16 kHz mono), paced by the clock; loops or ends |
//! | `pipe://` | as soon as they arrive but never ahead of the clock; silence once the writer has been idle for [`PIPE_GRACE`]; ends when the pipe closes |
//! | `silence://` | zeros, paced by the clock, endless |
//!
//! Hand-over: a fixed-size lock-free ring ([`super::ring`], about 4 s). In real time the
//! producer never waits for the consumer: when the ring is full the new block is dropped and
//! counted ([`CaptureStats::ring_overruns`]); the consumer sees a jump in the index.
//!
//! [`ClockMode::Virtual`] is for simulations: the source (`file://`, `pipe://` or
//! `silence://`) is read as fast as the consumer takes it, `t0` is the clock's time at start and
//! sample `n` is stamped `t0 + n/16000`; only in this mode does the producer wait (for room in
//! the ring).
//!
//! Live samples are sanitized (NaN and ±Inf become 0, values are clamped to [-1, 1]) and the
//! repairs counted. After start-up nothing on the per-period path allocates (a reconnection
//! to a device with another sample rate builds a new resampler).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::align::{Aligner, Fix};
use super::alsa_pcm::{AlsaCapture, AlsaSettings};
use super::pipe::{PipeRead, PipeSource};
use super::ring::{ring, RingReader, RingWriter, BLOCK};
use super::source::{AudioSource, SourceError};
use super::stream_resample::StreamResampler;
use super::uri::SourceUri;
use super::{load_wav_16k, SAMPLE_RATE};
use crate::clock::{Clock, MonotonicClock, Pts};

pub use super::ring::Popped;

/// How long a `pipe://` writer may be idle before silence fills the stream.
pub const PIPE_GRACE: Duration = Duration::from_millis(60);
/// Samples the pipe buffers ahead of the clock (1 s); beyond it the writer is held back.
const PIPE_FIFO: usize = 16_000;
/// Longest wait between two checks of the stop flag.
const STOP_POLL: Duration = Duration::from_millis(5);

/// Whether the stream follows the clock or the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// Real time: samples are produced as time passes.
    RealTime,
    /// Simulation: a file, pipe or silence read as fast as it is consumed.
    Virtual,
}

/// What the capture thread needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSettings {
    pub source: SourceUri,
    /// ALSA period in device frames; also the pacing tick of files, pipes and silence (in
    /// 16 kHz samples: 256 → 16 ms).
    pub period_frames: u32,
    /// ALSA buffer in device frames.
    pub buffer_frames: u32,
    /// Time between attempts to open a missing device.
    pub retry: Duration,
    pub mode: ClockMode,
}

impl CaptureSettings {
    /// The service defaults (`audio.*` in the config) for `source`.
    pub fn new(source: SourceUri) -> CaptureSettings {
        CaptureSettings {
            source,
            period_frames: 256,
            buffer_frames: 2048,
            retry: Duration::from_secs(3),
            mode: ClockMode::RealTime,
        }
    }

    fn tick(&self) -> Duration {
        Duration::from_nanos(u64::from(self.period_frames.max(16)) * 1_000_000_000 / 16_000)
    }
}

/// Opens a live device; called again after the device is lost. ALSA's is [`AlsaOpener`]; tests
/// supply simulated devices. The source's timestamps are on `CLOCK_MONOTONIC`
/// ([`MonotonicClock`]); the capture thread converts them to its own clock by their age.
pub trait DeviceOpener: Send {
    /// The device's name for logs and [`CaptureStats::device_name`].
    fn name(&self) -> &str;
    /// Opens the device.
    ///
    /// # Errors
    /// [`SourceError::Unavailable`] for a device that is not there (retried).
    fn open(&mut self) -> Result<Box<dyn AudioSource>, SourceError>;
}

/// Opens an ALSA capture device by name.
#[derive(Clone, Debug)]
pub struct AlsaOpener {
    name: String,
    device: String,
    settings: AlsaSettings,
}

impl AlsaOpener {
    pub fn new(device: &str, settings: AlsaSettings) -> AlsaOpener {
        AlsaOpener {
            name: format!("alsa://{device}"),
            device: device.to_owned(),
            settings,
        }
    }
}

impl DeviceOpener for AlsaOpener {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&mut self) -> Result<Box<dyn AudioSource>, SourceError> {
        Ok(Box::new(AlsaCapture::open(&self.device, &self.settings)?))
    }
}

/// Where the capture thread gets its samples.
pub enum CaptureInput {
    /// A live device, reopened when lost.
    Device(Box<dyn DeviceOpener>),
    /// Samples already at 16 kHz mono (a decoded `file://`), paced by the clock.
    Samples {
        name: String,
        samples: Vec<f32>,
        looped: bool,
    },
    /// Raw PCM from a pipe.
    Pipe { name: String, source: PipeSource },
    /// Endless silence.
    Silence,
}

impl CaptureInput {
    /// The input for `settings.source`: opens the pipe, decodes the file.
    ///
    /// # Errors
    /// [`SourceError::File`] for a WAV file that cannot be read, [`SourceError::Failed`] when
    /// standard input cannot be used.
    pub fn from_settings(settings: &CaptureSettings) -> Result<CaptureInput, SourceError> {
        Ok(match &settings.source {
            SourceUri::Alsa { device } => CaptureInput::Device(Box::new(AlsaOpener::new(
                device,
                AlsaSettings {
                    period_frames: settings.period_frames,
                    buffer_frames: settings.buffer_frames,
                    ..AlsaSettings::default()
                },
            ))),
            SourceUri::File { path, looped } => CaptureInput::Samples {
                name: settings.source.name(),
                samples: load_wav_16k(path)?,
                looped: *looped,
            },
            SourceUri::Pipe(format) => CaptureInput::Pipe {
                name: settings.source.name(),
                source: PipeSource::stdin(*format, settings.period_frames.max(16) as usize)?,
            },
            SourceUri::Silence => CaptureInput::Silence,
        })
    }

    fn name(&self) -> String {
        match self {
            CaptureInput::Device(d) => d.name().to_owned(),
            CaptureInput::Samples { name, .. } | CaptureInput::Pipe { name, .. } => name.clone(),
            CaptureInput::Silence => "silence://".to_owned(),
        }
    }
}

/// Counters and state of a running capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Device overruns (xruns) recovered.
    pub xruns: u64,
    /// Blocks dropped because the ring was full (the consumer fell behind).
    pub ring_overruns: u64,
    /// Samples in those blocks.
    pub ring_dropped_samples: u64,
    /// Whether the source is delivering (always true for files, pipes and silence).
    pub device_connected: bool,
    /// Times a lost device came back.
    pub reconnects: u64,
    /// The source's name (`alsa://default`, `file://…`); shared, so `stats()` does not
    /// allocate.
    pub device_name: Arc<str>,
    /// Samples repaired by sanitizing (NaN/Inf, out of range).
    pub repaired_samples: u64,
    /// Single samples repeated / dropped to follow the clock.
    pub drift_inserted: u64,
    pub drift_dropped: u64,
    /// Silence samples written for gaps (xruns, reconnections), and device samples skipped
    /// because they overlapped.
    pub gap_filled: u64,
    pub overlap_skipped: u64,
    /// Index of the next sample the producer will write.
    pub produced: u64,
}

/// State shared by the capture thread and its handle; counters only, no locks.
#[derive(Default)]
struct Shared {
    stop: Arc<AtomicBool>,
    /// `u64::MAX` until known.
    t0: AtomicU64,
    xruns: AtomicU64,
    overruns: AtomicU64,
    ring_dropped: AtomicU64,
    connected: AtomicBool,
    reconnects: AtomicU64,
    repaired: AtomicU64,
    inserted: AtomicU64,
    dropped: AtomicU64,
    filled: AtomicU64,
    skipped: AtomicU64,
    produced: AtomicU64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn set_t0(&self, t0: Pts) {
        self.t0.store(t0.nanos(), Ordering::Release);
    }

    fn publish(&self, w: &RingWriter) {
        self.overruns.store(w.overruns(), Ordering::Relaxed);
        self.ring_dropped
            .store(w.dropped_samples(), Ordering::Relaxed);
        self.produced.store(w.next_index(), Ordering::Relaxed);
    }
}

/// Replaces NaN and ±Inf by 0 and clamps to [-1, 1]; returns how many samples it changed.
/// (The hardening branch brings a shared `audio::sanitize`; this is the capture's own.)
fn sanitize(x: &mut [f32]) -> u64 {
    let mut repaired = 0;
    for v in x {
        if !v.is_finite() {
            *v = 0.0;
            repaired += 1;
        } else if v.abs() > 1.0 {
            *v = v.clamp(-1.0, 1.0);
            repaired += 1;
        }
    }
    repaired
}

/// The source error with its causes, for one log line.
fn describe(e: &SourceError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Sleeps on `clock` until `deadline`, checking the stop flag at least every [`STOP_POLL`].
/// Returns `false` when asked to stop.
fn sleep_until(clock: &dyn Clock, deadline: Pts, shared: &Shared) -> bool {
    loop {
        if shared.stopped() {
            return false;
        }
        let now = clock.now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep(deadline.since(now).min(STOP_POLL));
    }
}

/// Index of the last sample whose time has fully passed, `⌊(now − t0)·16000⌋`.
fn due(now: Pts, t0: Pts) -> u64 {
    (u128::from(now.since(t0).as_nanos() as u64) * 16_000 / 1_000_000_000) as u64
}

/// A running capture: the consumer's handle.
pub struct Capture {
    reader: RingReader,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    device_name: Arc<str>,
}

impl Capture {
    /// Opens `settings.source` and starts the capture thread. A device that is missing now is
    /// not an error: the stream starts with silence and the device is retried.
    ///
    /// # Errors
    /// A bad file, an unusable device ([`SourceError::Config`]), `alsa://` in
    /// [`ClockMode::Virtual`], or a thread that cannot be started.
    pub fn start(
        settings: &CaptureSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Capture, SourceError> {
        Capture::start_input(CaptureInput::from_settings(settings)?, settings, clock)
    }

    /// Starts the capture thread on an input built by the caller (a simulated device, a pipe
    /// other than standard input); `settings.source` is not used.
    ///
    /// # Errors
    /// As [`Capture::start`].
    pub fn start_input(
        input: CaptureInput,
        settings: &CaptureSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Capture, SourceError> {
        let device_name = input.name();
        let shared = Arc::new(Shared {
            t0: AtomicU64::new(u64::MAX),
            connected: AtomicBool::new(true),
            ..Shared::default()
        });
        let (mut writer, reader) = ring();
        if settings.mode == ClockMode::Virtual {
            // Simulations only: the producer waits for the consumer.
            writer.wait_for_room(Arc::clone(&shared.stop));
        }
        let settings = settings.clone();
        let worker = Worker {
            settings,
            clock,
            writer,
            shared: Arc::clone(&shared),
            name: device_name.clone(),
        };
        let job: Box<dyn FnOnce() + Send> = match (input, worker.settings.mode) {
            (CaptureInput::Device(_), ClockMode::Virtual) => {
                return Err(SourceError::Config {
                    name: device_name,
                    detail: "the virtual clock mode needs file://, pipe:// or silence://".into(),
                })
            }
            (CaptureInput::Device(mut opener), ClockMode::RealTime) => {
                // Open once here, so a device that can never work is an error at start.
                let first = match opener.open() {
                    Ok(src) => Some(src),
                    Err(e) if e.kind() == super::SourceErrorKind::Fatal => return Err(e),
                    Err(e) => {
                        log::warn!(
                            "{}; producing silence and retrying every {:.1} s",
                            describe(&e),
                            worker.settings.retry.as_secs_f64()
                        );
                        shared.connected.store(false, Ordering::Relaxed);
                        None
                    }
                };
                // Without a device the stream starts now, with silence.
                let t0 = first.is_none().then(|| worker.start_clock());
                Box::new(move || worker.run_device(opener, first, t0))
            }
            (
                CaptureInput::Samples {
                    samples, looped, ..
                },
                mode,
            ) => {
                let t0 = worker.start_clock();
                Box::new(move || worker.run_samples(samples, looped, mode, t0))
            }
            (CaptureInput::Pipe { source, .. }, mode) => {
                let t0 = worker.start_clock();
                Box::new(move || worker.run_pipe(source, mode, t0))
            }
            (CaptureInput::Silence, mode) => {
                let t0 = worker.start_clock();
                Box::new(move || worker.run_silence(mode, t0))
            }
        };
        let thread = std::thread::Builder::new()
            .name("moda-capture".into())
            .spawn(job)
            .map_err(|e| SourceError::Failed {
                name: device_name.clone(),
                source: Box::new(e),
            })?;
        Ok(Capture {
            reader,
            shared,
            thread: Some(thread),
            device_name: device_name.into(),
        })
    }

    /// Copies the next consecutive samples into `out` without waiting; see [`Popped`]. A run
    /// ends at the end of `out`, when nothing more is there, or at a jump in the index (samples
    /// the ring had to drop). Does not allocate.
    pub fn pop(&mut self, out: &mut [f32]) -> Popped {
        self.reader.pop(out)
    }

    /// Capture time of sample 0 on the clock, once known.
    pub fn t0(&self) -> Option<Pts> {
        match self.shared.t0.load(Ordering::Acquire) {
            u64::MAX => None,
            ns => Some(Pts::from_nanos(ns)),
        }
    }

    /// The counters now. Does not allocate.
    pub fn stats(&self) -> CaptureStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CaptureStats {
            xruns: get(&s.xruns),
            ring_overruns: get(&s.overruns),
            ring_dropped_samples: get(&s.ring_dropped),
            device_connected: s.connected.load(Ordering::Relaxed),
            reconnects: get(&s.reconnects),
            device_name: Arc::clone(&self.device_name),
            repaired_samples: get(&s.repaired),
            drift_inserted: get(&s.inserted),
            drift_dropped: get(&s.dropped),
            gap_filled: get(&s.filled),
            overlap_skipped: get(&s.skipped),
            produced: get(&s.produced),
        }
    }

    /// Stops the thread and waits for it (at most about one device period, or a second for a
    /// device that stalls).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("audio capture thread of {} panicked", self.device_name);
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The capture thread's state.
struct Worker {
    settings: CaptureSettings,
    clock: Arc<dyn Clock>,
    writer: RingWriter,
    shared: Arc<Shared>,
    name: String,
}

/// A connected device and the conversion of its samples to 16 kHz.
struct Connected {
    source: Box<dyn AudioSource>,
    resampler: StreamResampler,
    /// Samples fed to / produced by the resampler since the connection.
    fed: u64,
    made: u64,
}

impl Worker {
    /// Hands the pending block to the ring (see [`RingWriter::flush`]) and publishes the
    /// counters; `false` when asked to stop.
    fn flush(&mut self) -> bool {
        self.writer.flush();
        self.shared.publish(&self.writer);
        !self.shared.stopped()
    }

    /// `t0` of a clock-paced source: the clock's time at start (set before the thread runs,
    /// so `Capture::t0` is known as soon as `start` returns).
    fn start_clock(&self) -> Pts {
        let t0 = self.clock.now();
        self.shared.set_t0(t0);
        t0
    }

    /// A decoded file: paced by the clock (or by the consumer in a simulation).
    fn run_samples(mut self, mut samples: Vec<f32>, looped: bool, mode: ClockMode, t0: Pts) {
        let repaired = sanitize(&mut samples);
        self.shared.repaired.store(repaired, Ordering::Relaxed);
        if repaired > 0 {
            log::warn!(
                "{}: {repaired} samples were NaN, infinite or out of range; repaired",
                self.name
            );
        }
        let tick = self.settings.tick();
        let (mut next, mut pos) = (0u64, 0usize);
        let mut tick_end = t0;
        loop {
            if self.shared.stopped() {
                return;
            }
            let target = match mode {
                ClockMode::RealTime => due(self.clock.now(), t0),
                ClockMode::Virtual => next + BLOCK as u64,
            };
            while next < target {
                if pos == samples.len() {
                    if looped && !samples.is_empty() {
                        pos = 0;
                    } else {
                        self.writer.end();
                        self.shared.publish(&self.writer);
                        return;
                    }
                }
                let k = ((target - next) as usize).min(samples.len() - pos);
                self.writer.write(next, &samples[pos..pos + k]);
                pos += k;
                next += k as u64;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            }
        }
    }

    /// Endless silence, paced by the clock (or by the consumer).
    fn run_silence(mut self, mode: ClockMode, t0: Pts) {
        let tick = self.settings.tick();
        let mut next = 0u64;
        let mut tick_end = t0;
        loop {
            let target = match mode {
                ClockMode::RealTime => due(self.clock.now(), t0),
                ClockMode::Virtual => next + BLOCK as u64,
            };
            if target > next {
                self.writer.write_silence(next, target - next);
                next = target;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            } else if self.shared.stopped() {
                return;
            }
        }
    }

    /// Raw PCM from a pipe: as soon as it arrives, never ahead of the clock, silence when the
    /// writer is idle, the end when the pipe closes.
    fn run_pipe(mut self, mut pipe: PipeSource, mode: ClockMode, t0: Pts) {
        let frames = self.settings.period_frames.max(16) as usize;
        let Some(mut resampler) = StreamResampler::new(pipe.format().rate, SAMPLE_RATE, frames)
        else {
            self.writer.end();
            return;
        };
        let mut input = vec![0.0f32; frames.max(resampler.delay_input_samples())];
        let mut output = vec![0.0f32; resampler.max_output(input.len())];
        let mut fifo: VecDeque<f32> = VecDeque::with_capacity(PIPE_FIFO + output.len());
        let grace = (PIPE_GRACE.as_nanos() * 16_000 / 1_000_000_000) as u64;
        let tick = self.settings.tick();
        let mut tick_end = t0;
        let mut next = 0u64;
        let mut pipe_ended = false;
        loop {
            if self.shared.stopped() {
                return;
            }
            // Take what the pipe has (in a simulation: wait for it), as long as there is room.
            let wait = match mode {
                ClockMode::RealTime => Duration::ZERO,
                ClockMode::Virtual => Duration::from_millis(50),
            };
            while !pipe_ended && fifo.len() + output.len() <= fifo.capacity() {
                let n = match pipe.try_read(&mut input[..frames], wait) {
                    Ok(PipeRead::Samples(0)) | Ok(PipeRead::Idle) => break,
                    Ok(PipeRead::Samples(n)) => n,
                    Ok(PipeRead::End) => {
                        // Push the resampler's last outputs out with zeros.
                        pipe_ended = true;
                        let tail = resampler.delay_input_samples();
                        input[..tail].fill(0.0);
                        tail
                    }
                    Err(e) => {
                        log::error!("{}: {}; ending the stream", self.name, describe(&e));
                        pipe_ended = true;
                        0
                    }
                };
                let made = resampler.process(&input[..n], &mut output);
                let repaired = sanitize(&mut output[..made]);
                self.shared.repaired.fetch_add(repaired, Ordering::Relaxed);
                fifo.extend(&output[..made]);
                if mode == ClockMode::Virtual {
                    break;
                }
            }
            let (target, silence_to) = match mode {
                ClockMode::RealTime => {
                    let d = due(self.clock.now(), t0);
                    (d, d.saturating_sub(grace))
                }
                ClockMode::Virtual => (u64::MAX, 0),
            };
            let k = (fifo.len() as u64).min(target.saturating_sub(next)) as usize;
            let (a, b) = fifo.as_slices();
            let from_a = k.min(a.len());
            self.writer.write(next, &a[..from_a]);
            self.writer.write(next + from_a as u64, &b[..k - from_a]);
            fifo.drain(..k);
            next += k as u64;
            if pipe_ended && fifo.is_empty() {
                self.writer.end();
                self.shared.publish(&self.writer);
                return;
            }
            if next < silence_to {
                self.writer.write_silence(next, silence_to - next);
                next = silence_to;
            }
            if !self.flush() {
                return;
            }
            if mode == ClockMode::RealTime {
                tick_end = tick_end.after(tick).max(self.clock.now());
                if !sleep_until(&*self.clock, tick_end, &self.shared) {
                    return;
                }
            }
        }
    }

    /// A live device: placed on the clock by its timestamps; silence and retries while it is
    /// missing.
    fn run_device(
        mut self,
        mut opener: Box<dyn DeviceOpener>,
        first: Option<Box<dyn AudioSource>>,
        t0: Option<Pts>,
    ) {
        let frames = self.settings.period_frames.max(16) as usize;
        let mut input = vec![0.0f32; frames];
        let mut output: Vec<f32> = Vec::new();
        let mut aligner = Aligner::new();
        if let Some(t0) = t0 {
            aligner.start_at(t0);
        }
        let margin = u64::from(self.settings.period_frames);
        let tick = self.settings.tick();
        let mut connected: Option<Connected> = None;
        let mut pending_first = first;
        let mut lost = pending_first.is_none();
        let mut next_try = self.clock.now().after(self.settings.retry);
        loop {
            if self.shared.stopped() {
                return;
            }
            // (Re)connect.
            if connected.is_none() {
                let opened = match pending_first.take() {
                    Some(src) => Some(src),
                    None if self.clock.now() >= next_try => match opener.open() {
                        Ok(src) => Some(src),
                        Err(e) => {
                            log::debug!("{}: still unavailable: {}", self.name, describe(&e));
                            next_try = self.clock.now().after(self.settings.retry);
                            None
                        }
                    },
                    None => None,
                };
                if let Some(source) = opened {
                    let rate = source.sample_rate();
                    let Some(resampler) = StreamResampler::new(rate, SAMPLE_RATE, frames) else {
                        log::error!("{}: the device reports a sample rate of 0 Hz", self.name);
                        next_try = self.clock.now().after(self.settings.retry);
                        continue;
                    };
                    output.resize(resampler.max_output(frames), 0.0);
                    // Two device periods (at 16 kHz) of timestamp uncertainty are smoothed.
                    aligner.set_gap(2.0 * frames as f64 * 16_000.0 / f64::from(rate));
                    aligner.resync();
                    if lost {
                        log::info!("{} is back", self.name);
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        lost = false;
                    }
                    self.shared.connected.store(true, Ordering::Relaxed);
                    connected = Some(Connected {
                        source,
                        resampler,
                        fed: 0,
                        made: 0,
                    });
                }
            }
            match connected.as_mut() {
                None => {
                    // Keep time with silence, a period behind the clock.
                    let (first, n) = aligner.silence_until(self.clock.now(), margin);
                    if let Some(t0) = aligner.t0() {
                        self.shared.set_t0(t0);
                    }
                    self.writer.write_silence(first, n);
                    self.shared.filled.fetch_add(n, Ordering::Relaxed);
                    self.flush();
                    let wake = self.clock.now().after(tick).min(next_try);
                    if !sleep_until(&*self.clock, wake, &self.shared) {
                        return;
                    }
                }
                Some(dev) => match dev.source.read(&mut input) {
                    Ok(c) if c.samples > 0 => {
                        if c.lost > 0 {
                            self.shared.xruns.fetch_add(1, Ordering::Relaxed);
                            aligner.resync();
                        }
                        // The chunk's capture time on our clock, by its age on CLOCK_MONOTONIC.
                        let age = MonotonicClock::read().since(c.timestamp);
                        let t_in = self.clock.now().nanos() as f64 - age.as_nanos() as f64;
                        let made = dev.resampler.process(&input[..c.samples], &mut output);
                        if made > 0 {
                            let rate = f64::from(dev.resampler.from_rate());
                            let lag = dev.resampler.input_position(dev.made) - dev.fed as f64;
                            let t_out = (t_in + lag * 1e9 / rate).max(0.0);
                            let chunk = &mut output[..made];
                            let repaired = sanitize(chunk);
                            self.shared.repaired.fetch_add(repaired, Ordering::Relaxed);
                            let plan = aligner.place(made, Pts::from_nanos(t_out as u64));
                            self.writer.write_silence(plan.first, plan.pad);
                            let body = &chunk[plan.skip..];
                            let at = plan.first + plan.pad;
                            match plan.fix {
                                Fix::None => self.writer.write(at, body),
                                Fix::Insert => {
                                    self.writer.write(at, body);
                                    if let Some(&last) = body.last() {
                                        self.writer.write(at + body.len() as u64, &[last]);
                                    }
                                }
                                Fix::Drop => {
                                    self.writer.write(at, &body[..body.len().saturating_sub(1)])
                                }
                            }
                            dev.made += made as u64;
                            let st = aligner.stats();
                            self.shared.inserted.store(st.inserted, Ordering::Relaxed);
                            self.shared.dropped.store(st.dropped, Ordering::Relaxed);
                            self.shared.skipped.store(st.skipped, Ordering::Relaxed);
                            self.shared.filled.fetch_add(plan.pad, Ordering::Relaxed);
                            if let Some(t0) = aligner.t0() {
                                self.shared.set_t0(t0);
                            }
                        }
                        dev.fed += c.samples as u64;
                        self.flush();
                    }
                    result => {
                        let why = match result {
                            Err(e) => describe(&e),
                            Ok(_) => format!("{}: the device stopped delivering audio", self.name),
                        };
                        log::warn!(
                            "{why}; producing silence and retrying every {:.1} s",
                            self.settings.retry.as_secs_f64()
                        );
                        self.shared.connected.store(false, Ordering::Relaxed);
                        connected = None;
                        lost = true;
                        // Try once at once (a device that failed may reopen), then every `retry`.
                        next_try = self.clock.now();
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_repairs_and_counts() {
        let mut x = [0.5, f32::NAN, f32::INFINITY, -3.0, 1.0, f32::NEG_INFINITY];
        assert_eq!(sanitize(&mut x), 4);
        assert_eq!(x, [0.5, 0.0, 0.0, -1.0, 1.0, 0.0]);
    }

    #[test]
    fn due_counts_whole_samples() {
        let t0 = Pts::from_nanos(1_000);
        assert_eq!(due(t0, t0), 0);
        assert_eq!(due(t0.after(Duration::from_micros(62)), t0), 0);
        assert_eq!(due(t0.after(Duration::from_nanos(62_500)), t0), 1);
        assert_eq!(due(t0.after(Duration::from_secs(3600)), t0), 57_600_000);
        assert_eq!(due(Pts::ZERO, t0), 0);
    }
}
