//! `moda-edged`: the live talking-portrait service. Audio in (microphone, text-to-speech on a
//! pipe, a file), the avatar speaking in sync out (V4L2, display, file), frame k shown at
//! `t0 + k/30 s + latency_ms`, run by systemd (`Type=notify`, watchdog, status).
//!
//! A thin main over library calls: the config (`moda_edge::config`), the live pipeline
//! (`moda_edge::pipeline::live`), the systemd plumbing (`moda_edge::daemon`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use moda_edge::audio::capture::{Capture, CaptureSettings, ClockMode};
use moda_edge::audio::{AlsaSettings, PlaybackSettings, PlaybackUri, SourceUri};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{PlanCache, Prepared};
use moda_edge::clock::{Clock, MonotonicClock};
use moda_edge::config::{BackendKind, Config, Settings};
use moda_edge::daemon::{Notifier, Request, SecondStop, SignalListener, State, StatusReport};
use moda_edge::face::avatar::Avatar;
use moda_edge::pipeline::live::{
    self, check_budget, AudioOut, LiveParts, LivePipeline, LiveSettings, Pacing, PlaybackOut,
};
use moda_edge::pipeline::MotionModels;
use moda_edge::pipeline::RenderStages;
use moda_edge::sink::{SinkSettings, SinkUri};

/// tract's activations come from blocks recycled run to run, so a warm session's `run` takes
/// nothing from the system heap (see `moda_edge::backend::recycle`; feature `recycle`, on by
/// default). Feature `mimalloc` replaces it, for README's allocator comparison.
#[cfg(all(feature = "recycle", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOC: moda_edge::backend::recycle::Recycler = moda_edge::backend::recycle::Recycler;
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "moda-edged",
    version,
    about = "MODA live talking-portrait service: audio in, the avatar speaking in sync out, at a fixed latency"
)]
struct Cli {
    /// The service config (every key and its default: systemd/moda-edge.toml).
    #[arg(long, default_value = moda_edge::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Override one config key, e.g. --set latency_ms=500 --set audio.source=silence://
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Validate the config, open the devices, warm the networks up, print the measured
    /// per-stage times and the smallest latency budget that holds, and exit (0: it holds).
    #[arg(long)]
    check: bool,
    /// `real`: frames on the wall clock. `virtual`: run the same pipeline from a file:// or
    /// pipe:// source as fast as the machine allows, time taken from the audio, until it ends.
    #[arg(long, value_enum, default_value_t = ClockArg::Real)]
    clock: ClockArg,
    /// With --clock virtual: write the motion and face stages as .npy (the names of render --dump).
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// Rewrite this JSON status file atomically (overrides service.status_file).
    #[arg(long, value_name = "PATH")]
    status_file: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides. The default is info.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClockArg {
    Real,
    Virtual,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 | 1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    moda_edge::backend::quiet_guarded_panics();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The config file with the command line's overrides, validated.
fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut config = Config::load(&cli.config)?;
    for arg in &cli.set {
        config.set_arg(arg)?;
    }
    let mut settings = config.validate()?;
    if let Some(p) = &cli.status_file {
        settings.service.status_file = Some(p.clone());
    }
    Ok(settings)
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let settings = load_settings(cli)?;
    let pacing = match cli.clock {
        ClockArg::Real => Pacing::RealTime,
        ClockArg::Virtual => Pacing::Virtual,
    };
    if cli.dump.is_some() && pacing != Pacing::Virtual {
        bail!("--dump needs --clock virtual (the simulation writes its stages at the end)");
    }
    let signals =
        SignalListener::install(SecondStop::Exit).context("cannot install the signal handlers")?;
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("systemd notification socket unusable ({e}); running without it");
        Notifier::disabled()
    });
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    if cli.check {
        return check(&settings, &clock);
    }
    let started = Instant::now();
    let stall = stall_control()?;
    let mut service = Service::start(&settings, pacing, cli.dump.clone(), stall.clone(), &clock)?;
    let _ = notifier.ready();
    log::info!(
        "running: {} → {} at latency {} ms",
        service.pipeline.device(),
        settings.video.sink,
        settings.latency.as_millis()
    );
    let mut settings = settings;
    let mut reporter = Reporter::new(&settings, started);
    let mut last_ping: Option<Instant> = None;
    loop {
        match signals.next(Duration::from_millis(100)) {
            Some(Request::Stop) => {
                let _ = notifier.stopping();
                log::info!("stopping");
                let snap = service.stop()?;
                reporter.log_final(&snap);
                return Ok(ExitCode::SUCCESS);
            }
            Some(Request::Reload) => {
                let _ = notifier.reloading();
                match load_settings(cli).and_then(|new| {
                    check_reload(&new)?;
                    Ok(new)
                }) {
                    Err(e) => {
                        log::error!("reload refused, the running config stays: {}", one_line(&e))
                    }
                    Ok(new) => {
                        log::info!("reloading the config and the avatar");
                        let _ = service.stop()?;
                        service =
                            Service::start(&new, pacing, cli.dump.clone(), stall.clone(), &clock)?;
                        settings = new;
                        reporter = Reporter::new(&settings, started);
                    }
                }
                let _ = notifier.ready();
            }
            None => {}
        }
        let m = service.pipeline.metrics();
        if let (Some(interval), Some(every)) =
            (notifier.watchdog_interval(), notifier.ping_interval())
        {
            // At the rate systemd asked for, and only while every stage beats.
            if last_ping.is_none_or(|t| t.elapsed() >= every) && m.alive(clock.now(), interval / 2)
            {
                let _ = notifier.watchdog();
                last_ping = Some(Instant::now());
            }
        }
        reporter.tick(&service, &notifier);
        if service.pipeline.finished() {
            let snap = service.stop()?;
            reporter.log_final(&snap);
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// A running pipeline.
struct Service {
    pipeline: LivePipeline,
}

/// The debug control of the field tests: with `MODA_EDGED_DEBUG_STALL=1` in the environment,
/// SIGUSR1 blocks the render stage for good (as a hung stage would), so that the watchdog
/// stops being fed and systemd restarts the service. Off otherwise.
fn stall_control() -> Result<Option<Arc<AtomicBool>>> {
    if std::env::var_os("MODA_EDGED_DEBUG_STALL").is_none_or(|v| v != "1") {
        return Ok(None);
    }
    let stall = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&stall))
        .context("cannot install the SIGUSR1 debug handler")?;
    log::warn!("debug: SIGUSR1 stalls the render stage (MODA_EDGED_DEBUG_STALL=1)");
    Ok(Some(stall))
}

/// The mp4 file and the screen are GStreamer pipelines.
#[cfg(feature = "gstreamer")]
fn uses_gstreamer(uri: &SinkUri) -> bool {
    matches!(uri, SinkUri::File(_) | SinkUri::Display { .. })
}

fn live_settings(
    settings: &Settings,
    pacing: Pacing,
    dump: Option<PathBuf>,
    stall: Option<Arc<AtomicBool>>,
) -> LiveSettings {
    LiveSettings {
        motion: settings.motion.streaming(),
        noise: settings.noise(),
        smoothing: moda_edge::motion::SmoothingSettings::default(),
        budget: settings.latency,
        time_code_period: settings.video.time_code_period,
        pacing,
        dump,
        stall,
        stamp: settings.video.stamp,
    }
}

/// Runs `$body` with `$b` bound to an `Arc` of the backend `settings.backend` names; in a build
/// without TensorRT, `backend = "tensorrt"` returns its one-line error from the enclosing
/// function.
macro_rules! with_backend {
    ($settings:expr, |$b:ident| $body:expr) => {{
        let settings: &Settings = $settings;
        match settings.backend {
            BackendKind::Cpu => {
                let $b = Arc::new(TractBackend::new(settings.threads));
                $body
            }
            #[cfg(any(feature = "tensorrt", feature = "tensorrt-fake"))]
            BackendKind::TensorRt => {
                let choice = moda_edge::backend::select::TensorRtChoice::default();
                let $b =
                    Arc::new(moda_edge::backend::select::open_tensorrt(choice).context("backend")?);
                $body
            }
            #[cfg(not(any(feature = "tensorrt", feature = "tensorrt-fake")))]
            BackendKind::TensorRt => {
                return Err(
                    anyhow::Error::from(moda_edge::backend::select::tensorrt_not_built())
                        .context("backend"),
                );
            }
        }
    }};
}

/// Fails when the avatar, the models or the backend in `settings` cannot be had, so that a
/// reload asking for them keeps the running service (and its config) instead.
fn check_reload(settings: &Settings) -> Result<()> {
    Avatar::load(&settings.avatar)?;
    MotionModels::load(&settings.models)?;
    with_backend!(settings, |backend| {
        drop(backend);
        Ok(())
    })
}

impl Service {
    fn start(
        settings: &Settings,
        pacing: Pacing,
        dump: Option<PathBuf>,
        stall: Option<Arc<AtomicBool>>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Service> {
        with_backend!(settings, |backend| Service::start_on(
            backend, settings, pacing, dump, stall, clock
        ))
    }

    fn start_on<B: RenderStages>(
        backend: Arc<B>,
        settings: &Settings,
        pacing: Pacing,
        dump: Option<PathBuf>,
        stall: Option<Arc<AtomicBool>>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Service>
    where
        <B::Prepared as Prepared>::Session: 'static,
    {
        let cache = Arc::new(PlanCache::new(None));
        let models = MotionModels::load(&settings.models)?;
        let avatar = Avatar::load(&settings.avatar)?;
        let live = live_settings(settings, pacing, dump, stall);
        if pacing == Pacing::RealTime {
            // Warm the networks up, measure them, and refuse a budget that cannot hold.
            let m = live::measure(
                &backend,
                &cache,
                &models,
                &avatar,
                &live,
                capture_period(settings),
                3,
            )?;
            check_budget(settings.latency, &m.needs)?;
            log::info!(
                "latency budget {} ms holds: needs {}",
                settings.latency.as_millis(),
                m.needs.describe()
            );
        }
        let source = SourceUri::parse(&settings.audio.source).context("audio.source")?;
        if pacing == Pacing::Virtual
            && !matches!(source, SourceUri::File { .. } | SourceUri::Pipe(_))
        {
            bail!(
                "--clock virtual needs audio.source = file://PATH.wav or pipe://?rate=R&format=F, \
                 a source that ends (got {source})"
            );
        }
        let capture = Capture::start(
            &CaptureSettings {
                source,
                period_frames: settings.audio.period_frames,
                buffer_frames: settings.audio.buffer_frames,
                retry: settings.audio.retry,
                mode: match pacing {
                    Pacing::RealTime => ClockMode::RealTime,
                    Pacing::Virtual => ClockMode::Virtual,
                },
            },
            Arc::clone(clock),
        )?;
        let sink_uri = SinkUri::parse(&settings.video.sink).context("video.sink")?;
        let size = avatar.config.renderer_size as u32;
        let sink_audio = matches!(sink_uri, SinkUri::File(_));
        #[cfg(feature = "gstreamer")]
        if uses_gstreamer(&sink_uri) {
            moda_edge::sink::init_gstreamer()?;
        }
        let sink =
            moda_edge::sink::open(&sink_uri, &SinkSettings::new(size, size).with_audio(16_000))?;
        let playback: Option<Box<dyn AudioOut>> = match settings.audio.playback() {
            Some(uri) if pacing == Pacing::RealTime => Some(Box::new(PlaybackOut::open(
                PlaybackUri::parse(uri).context("audio.out")?,
                PlaybackSettings {
                    alsa: AlsaSettings {
                        period_frames: settings.audio.period_frames,
                        buffer_frames: settings.audio.buffer_frames,
                        ..AlsaSettings::default()
                    },
                },
                Arc::clone(clock),
                settings.audio.retry,
            )?)),
            _ => None,
        };
        let pipeline = LivePipeline::start(
            LiveParts {
                backend,
                cache,
                models,
                avatar,
                feed: Box::new(capture),
                sink,
                sink_audio,
                playback,
                clock: Arc::clone(clock),
            },
            live,
        )?;
        Ok(Service { pipeline })
    }

    fn stop(self) -> Result<live::Snapshot> {
        Ok(self.pipeline.stop()?)
    }
}

/// How late captured audio reaches the pipeline: one capture period (the device's period at
/// 16 kHz, as the capture thread counts it).
fn capture_period(settings: &Settings) -> Duration {
    Duration::from_nanos(u64::from(settings.audio.period_frames.max(16)) * 1_000_000_000 / 16_000)
}

/// `--check`: the config, the devices, the networks warmed up and timed, the budget.
fn check(settings: &Settings, clock: &Arc<dyn Clock>) -> Result<ExitCode> {
    with_backend!(settings, |backend| check_on(backend, settings, clock))
}

fn check_on<B: RenderStages>(
    backend: Arc<B>,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
) -> Result<ExitCode> {
    let cache = Arc::new(PlanCache::new(None));
    let models = MotionModels::load(&settings.models)?;
    let avatar = Avatar::load(&settings.avatar)?;
    println!(
        "config: ok ({} → {})",
        settings.audio.source, settings.video.sink
    );
    println!("backend: {} ({})", backend.name(), backend.platform());
    // The devices open (and close again).
    let source = SourceUri::parse(&settings.audio.source).context("audio.source")?;
    let capture = Capture::start(&CaptureSettings::new(source), Arc::clone(clock))?;
    let status = live::AudioFeed::status(&capture);
    println!(
        "audio in: {} ({})",
        status.device,
        if status.connected {
            "present"
        } else {
            "missing: the service would start with silence and retry"
        }
    );
    capture.stop();
    if let Some(uri) = settings.audio.playback() {
        let out = PlaybackOut::open(
            PlaybackUri::parse(uri).context("audio.out")?,
            PlaybackSettings::default(),
            Arc::clone(clock),
            settings.audio.retry,
        )?;
        drop(out);
        println!("audio out: {uri}");
    }
    let sink_uri = SinkUri::parse(&settings.video.sink).context("video.sink")?;
    #[cfg(feature = "gstreamer")]
    if uses_gstreamer(&sink_uri) {
        moda_edge::sink::init_gstreamer()?;
    }
    if !matches!(sink_uri, SinkUri::File(_) | SinkUri::Y4m(_)) {
        let size = avatar.config.renderer_size as u32;
        let sink = moda_edge::sink::open(&sink_uri, &SinkSettings::new(size, size))?;
        drop(sink);
    }
    println!("video out: {sink_uri}");
    let live = live_settings(settings, Pacing::RealTime, None, None);
    let m = live::measure(
        &backend,
        &cache,
        &models,
        &avatar,
        &live,
        capture_period(settings),
        10,
    )?;
    let p = |v: &[f64]| {
        let warm = &v[v.len().min(2)..];
        let mut s = warm.to_vec();
        s.sort_by(f64::total_cmp);
        (s[s.len() / 2], s[s.len() - 1])
    };
    let (m50, mmax) = p(&m.motion_ms);
    let (r50, rmax) = p(&m.render_ms);
    let w = settings.motion.window;
    println!(
        "motion (MODA + FaCo per chunk of {} frames): median {m50:.1} ms, max {mmax:.1} ms",
        w.chunk
    );
    println!(
        "render (per frame, {0}×{0}): median {r50:.1} ms, max {rmax:.1} ms",
        avatar.config.renderer_size
    );
    println!("smallest budget that holds: {}", m.needs.describe());
    match check_budget(settings.latency, &m.needs) {
        Ok(()) => {
            println!("latency_ms = {}: holds", settings.latency.as_millis());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The periodic status: a log line, the status file, systemd's STATUS=.
struct Reporter {
    interval: Option<Duration>,
    file: Option<PathBuf>,
    started: Instant,
    last: Instant,
    last_frames: u64,
}

impl Reporter {
    fn new(settings: &Settings, started: Instant) -> Reporter {
        Reporter {
            interval: settings.service.status_interval,
            file: settings.service.status_file.clone(),
            started,
            last: Instant::now(),
            last_frames: 0,
        }
    }

    fn report(&self, service: &Service, fps: f64) -> StatusReport {
        let m = service.pipeline.metrics();
        let snap = m.snapshot();
        let mut r = StatusReport::new(
            if snap.late > 0 && fps < 29.0 {
                State::Degraded
            } else {
                State::Running
            },
            service.pipeline.device(),
        );
        r.uptime_s = self.started.elapsed().as_secs_f64();
        r.frames = snap.presented;
        r.fps = fps;
        r.latency_ms = m.latencies.summary().into();
        r.late_frames = snap.late;
        r.dropped_frames = snap.skipped + snap.stale + snap.sink_dropped;
        r.xruns =
            m.capture_xruns.load(Ordering::Relaxed) + m.playback_xruns.load(Ordering::Relaxed);
        r.audio_connected = m.audio_connected.load(Ordering::Relaxed);
        r
    }

    fn tick(&mut self, service: &Service, notifier: &Notifier) {
        let every = self.interval.unwrap_or(Duration::from_secs(10));
        if self.last.elapsed() < every {
            return;
        }
        let frames = service.pipeline.metrics().presented.load(Ordering::Relaxed);
        let fps = (frames - self.last_frames) as f64 / self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        self.last_frames = frames;
        let r = self.report(service, fps);
        if self.interval.is_some() {
            log::info!("{r}");
        }
        // The file first: whoever reacts to STATUS= finds it current.
        if let Some(path) = &self.file {
            if let Err(e) = r.write(path) {
                log::warn!("cannot write the status file {}: {e}", path.display());
            }
        }
        let _ = notifier.status_fmt(format_args!(
            "{} frames, {:.1} fps, latency p99 {:.0} ms, {} late",
            r.frames, r.fps, r.latency_ms.p99, r.late_frames
        ));
    }

    fn log_final(&self, snap: &live::Snapshot) {
        log::info!(
            "stopped after {} frames: {} late, {} skipped, latency p50 {:.1} p99 {:.1} max {:.1} ms",
            snap.presented,
            snap.late,
            snap.skipped,
            snap.latency_p50.as_secs_f64() * 1e3,
            snap.latency_p99.as_secs_f64() * 1e3,
            snap.latency_max.as_secs_f64() * 1e3
        );
    }
}
