//! How long the stages take on this machine: the compute terms of the latency budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schedule::BudgetNeeds;
use super::{LiveError, LiveSettings};
use crate::backend::PlanCache;
use crate::clock::FrameClock;
use crate::face::avatar::Avatar;
use crate::pipeline::{
    FrameSettings, MotionFrame, MotionModels, MotionSettings, MotionStage, RenderStages,
    WindowPolicy,
};

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
pub fn measure<B: RenderStages>(
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
    let mut stage = B::render_stage(backend, cache, avatar, frame_settings)?;
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
