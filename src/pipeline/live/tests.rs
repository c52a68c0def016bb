//! The live pipeline with the tiny seeded networks and the demo avatar, on a clock the test
//! moves: every frame at its deadline to the nanosecond, late frames repeated and counted, a
//! stalled render stage visible in the heartbeats, and the simulation mode.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::backend::tract::TractBackend;
use crate::clock::{FrameClock, ManualClock};
use crate::model::import::{init, Network};
use crate::model::Preset;
use crate::motion::StreamWindow;
use crate::sink::{SinkError, SinkSummary, WriteOutcome};

/// A sink that records what it was given: frames, and audio as (pts, samples).
#[derive(Clone, Default)]
struct Recorder(
    Arc<Mutex<Vec<(u64, Pts, u8)>>>,
    Arc<Mutex<Vec<(Pts, usize)>>>,
);

impl FrameSink for Recorder {
    fn write_frame(&mut self, frame: &crate::sink::Frame<'_>) -> Result<WriteOutcome, SinkError> {
        let mut v = self.0.lock().unwrap();
        v.push((frame.index, frame.pts, frame.data[0]));
        Ok(WriteOutcome::Written)
    }
    fn write_audio(&mut self, samples: &[f32], pts: Pts) -> Result<(), SinkError> {
        self.1.lock().unwrap().push((pts, samples.len()));
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<SinkSummary, SinkError> {
        Ok(SinkSummary {
            frames: self.0.lock().unwrap().len() as u64,
            video_seconds: 0.0,
            audio_seconds: None,
            path: None,
        })
    }
}

fn demo(dir: &Path) -> (MotionModels, Avatar) {
    let proto = |n| init(n, Preset::Tiny, 1);
    let renderer = dir.join("renderer.onnx");
    std::fs::write(
        &renderer,
        crate::model::onnx::encode(&proto(Network::Renderer)),
    )
    .unwrap();
    crate::face::avatar::write_synthetic(&renderer, 256, &dir.join("avatar")).unwrap();
    let models = MotionModels {
        moda: crate::backend::OnnxModel::from_proto("moda", &proto(Network::Moda)),
        faco: crate::backend::OnnxModel::from_proto("faco", &proto(Network::Faco)),
    };
    (models, Avatar::load(&dir.join("avatar")).unwrap())
}

fn speech(seconds: f32) -> Vec<f32> {
    (0..(seconds * 16_000.0) as usize)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (std::f32::consts::TAU * 150.0 * t).sin() * (std::f32::consts::PI * 3.0 * t).sin()
        })
        .collect()
}

fn settings(pacing: Pacing, stall: Option<Arc<AtomicBool>>) -> LiveSettings {
    LiveSettings {
        motion: StreamingSettings {
            window: StreamWindow {
                history: 12,
                chunk: 3,
                lookahead: 2,
            },
            ..StreamingSettings::default()
        },
        noise: Noise::Seeded(5),
        smoothing: SmoothingSettings::default(),
        budget: Duration::from_millis(400),
        time_code_period: 600,
        pacing,
        dump: None,
        stall,
        stamp: false,
    }
}

/// Polls `f` until it holds, for at most 60 s of real time.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );

        std::thread::sleep(Duration::from_micros(200));
    }
}

fn start(
    dir: &Path,
    clock: Arc<dyn Clock>,
    pacing: Pacing,
    stall: Option<Arc<AtomicBool>>,
    seconds: f32,
) -> (LivePipeline, Recorder) {
    let (models, avatar) = demo(dir);
    let sink = Recorder::default();
    let parts = LiveParts {
        backend: Arc::new(TractBackend::default()),
        cache: Arc::new(PlanCache::new(None)),
        models,
        avatar,
        feed: Box::new(MemoryFeed::new(speech(seconds))),
        sink: Box::new(sink.clone()),
        sink_audio: true,
        playback: None,
        clock,
    };
    (
        LivePipeline::start(parts, settings(pacing, stall)).unwrap(),
        sink,
    )
}

#[test]
fn every_frame_is_presented_at_its_deadline_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Pts::ZERO));
    let (pipeline, sink) = start(dir.path(), clock.clone(), Pacing::RealTime, None, 1.5);
    let m = Arc::clone(pipeline.metrics());
    let s = Schedule::new(Pts::ZERO, Duration::from_millis(400), FrameClock::MODA);
    let frames = 40u64;
    for k in 0..frames {
        // The renderer runs up to three frames ahead; let it, then pass the deadline.
        let ahead = (k + 3).min(frames);
        wait_for("renders", || m.rendered.load(Ordering::SeqCst) >= ahead);
        clock.set(s.deadline(k));
        wait_for("the output", || m.presented.load(Ordering::SeqCst) > k);
    }
    let snap = pipeline.stop().unwrap();
    assert_eq!(snap.late, 0);
    assert_eq!(snap.skipped, 0);
    assert_eq!(
        m.latency_min_ns.load(Ordering::SeqCst),
        400_000_000,
        "latency equals the budget exactly"
    );
    assert_eq!(m.latency_max_ns.load(Ordering::SeqCst), 400_000_000);
    let written = sink.0.lock().unwrap();
    assert_eq!(written.len() as u64, frames);
    for (k, (index, pts, _)) in written.iter().enumerate() {
        assert_eq!(*index, k as u64);
        assert_eq!(*pts, s.deadline(k as u64));
    }
    // The sound went to the sink ahead of the frames, stamped on the same timeline: sample n
    // at t0 + n/16000 + budget, in order and without gaps.
    let audio = sink.1.lock().unwrap();
    let mut next = Pts::from_nanos(400_000_000);
    let mut samples = 0u64;
    for (pts, n) in audio.iter() {
        assert_eq!(
            *pts,
            FrameClock::MODA
                .sample_pts(Pts::ZERO, samples)
                .after(Duration::from_millis(400))
        );
        assert!(*pts >= next);
        next = *pts;
        samples += *n as u64;
    }
    assert!(
        samples >= FrameClock::MODA.first_sample(frames),
        "{samples} samples"
    );
}

#[test]
fn a_stalled_render_stage_repeats_frames_counts_them_and_stops_its_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Pts::ZERO));
    let stall = Arc::new(AtomicBool::new(false));
    let (pipeline, sink) = start(
        dir.path(),
        clock.clone(),
        Pacing::RealTime,
        Some(stall.clone()),
        1.5,
    );
    let m = Arc::clone(pipeline.metrics());
    let s = Schedule::new(Pts::ZERO, Duration::from_millis(400), FrameClock::MODA);
    let frames = 40u64;
    for k in 0..frames {
        if k == 10 {
            stall.store(true, Ordering::SeqCst);
            // The frame being rendered when the stall is raised is finished first; only then
            // does the clock move on.
            wait_for("the stall", || m.render_stalled.load(Ordering::SeqCst));
        }
        if k == 22 {
            // Twelve deadlines later the render heartbeat is 12 frames old; the others are not.
            let now = clock.now();
            assert!(
                !m.alive(now, Duration::from_millis(300)),
                "stalled stage looks alive"
            );
            stall.store(false, Ordering::SeqCst);
        }
        if !stall.load(Ordering::SeqCst) {
            let ahead = (k + 3).min(frames);
            wait_for("renders", || {
                m.rendered.load(Ordering::SeqCst) + m.skipped.load(Ordering::SeqCst) >= ahead
            });
        }
        clock.set(s.deadline(k));
        wait_for("the output", || m.presented.load(Ordering::SeqCst) > k);
    }
    let snap = pipeline.stop().unwrap();
    let written = sink.0.lock().unwrap();
    assert_eq!(written.len() as u64, frames, "a picture at every deadline");
    for (k, (index, pts, _)) in written.iter().enumerate() {
        assert_eq!((*index, *pts), (k as u64, s.deadline(k as u64)), "no drift");
    }
    assert!(snap.late >= 9, "late {}", snap.late);
    // Each late frame was either skipped by the renderer or rendered too late and dropped.
    assert_eq!(snap.late, snap.skipped + snap.stale, "{snap:?}");
    assert_eq!(snap.presented, frames);
}

#[test]
fn the_simulation_presents_every_frame_in_order_and_dumps_the_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (models, avatar) = demo(dir.path());
    let mut s = settings(Pacing::Virtual, None);
    let dump = dir.path().join("dump");
    s.dump = Some(dump.clone());
    let sink = Recorder::default();
    let audio = speech(2.0);
    let parts = LiveParts {
        backend: Arc::new(TractBackend::default()),
        cache: Arc::new(PlanCache::new(None)),
        models,
        avatar,
        feed: Box::new(MemoryFeed::new(audio.clone())),
        sink: Box::new(sink.clone()),
        sink_audio: true,
        playback: None,
        clock: Arc::new(crate::clock::MonotonicClock),
    };
    let snap = LivePipeline::start(parts, s).unwrap().wait().unwrap();
    let frames = crate::motion::frame_count(audio.len());
    assert_eq!(snap.presented, frames as u64);
    assert_eq!(snap.late, 0);
    let written = sink.0.lock().unwrap();
    assert!(written.iter().enumerate().all(|(k, w)| w.0 == k as u64));
    for (name, shape) in [
        ("moda_smoothed_lip", vec![frames, 120]),
        ("faco_smoothed", vec![frames, 478, 3]),
        ("face_px", vec![frames, 478, 2]),
        ("shoulder_px", vec![frames, 18, 2]),
    ] {
        let t = crate::util::npy::read(&dump.join(format!("{name}.npy"))).unwrap();
        assert_eq!(t.shape, shape, "{name}");
    }
}

#[test]
fn measure_times_both_stages() {
    let dir = tempfile::tempdir().unwrap();
    let (models, avatar) = demo(dir.path());
    let backend = Arc::new(TractBackend::default());
    let cache = Arc::new(PlanCache::new(None));
    let s = settings(Pacing::RealTime, None);
    let m = measure(
        &backend,
        &cache,
        &models,
        &avatar,
        &s,
        Duration::from_millis(16),
        3,
    )
    .unwrap();
    assert_eq!(m.motion_ms.len(), 5);
    assert_eq!(m.render_ms.len(), 5);
    assert_eq!(m.needs.audio_wait, FrameClock::MODA.frame_offset(5));
    assert!(m.needs.motion > Duration::ZERO && m.needs.render > Duration::ZERO);
    assert!(m.needs.minimum() > m.needs.audio_wait + Duration::from_millis(21));
    // The stages' plans are in the cache for the service to reuse.
    assert_eq!(cache.stats().built, 3);
}
