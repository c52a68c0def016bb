//! The capture thread: one continuous, real-time 16 kHz mono stream from any live source.
//!
//! Contract: sample `n` of the stream is the audio captured at `t0 + n/16000` on the
//! [`Clock`] given to [`Capture::start`] (`t0`, the capture time of sample 0, is known after the
//! first samples: [`Capture::t0`]). The index never skips or repeats time: a device that runs
//! fast or slow is kept on the clock by dropping or repeating single samples (at most one per
//! 1000, see `audio/align.rs`); samples lost in an xrun or while the device was missing are
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
//! Hand-over: a fixed-size lock-free ring (`audio/ring.rs`, about 4 s). In real time the
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

mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::alsa_capture::AlsaCapture;
use super::alsa_pcm::AlsaSettings;
use super::load_wav_16k;
use super::pipe::PipeSource;
use super::ring::{ring, RingReader, RingWriter};
use super::source::{AudioSource, SourceError};
use super::uri::SourceUri;
use crate::clock::{Clock, Pts};
use worker::{describe, Worker};

pub use super::ring::Popped;

/// How long a `pipe://` writer may be idle before silence fills the stream.
pub const PIPE_GRACE: Duration = Duration::from_millis(60);

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
/// ([`MonotonicClock`](crate::clock::MonotonicClock)); the capture thread converts them to its own clock by their age.
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
