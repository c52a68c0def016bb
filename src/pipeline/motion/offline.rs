//! The offline policy: the official windows over a whole file (see the parent module's doc).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Context, MotionError, MotionFrame, HEAD_DIM, TORSO_DIM};
use crate::backend::{Backend, PrepareOptions, Prepared, Session};
use crate::model::faco::{EYE_DIM, LIP_DIM, VERTEX_DIM};
use crate::motion::{
    frame_count, merge, smooth_moda_streams, smooth_vertices, windows, NOISE_DIM, STEP_SAMPLES,
};
use crate::pipeline::expect_output;

/// Frames between the starts of two windows (160 000 samples at 16 kHz / 30 fps).
const STEP_FRAMES: i64 = 300;

/// The four MODA streams, T frames each, row-major (T × channels).
#[derive(Clone, Debug, Default)]
pub struct Streams {
    pub lip: Vec<f32>,
    pub eye: Vec<f32>,
    pub head: Vec<f32>,
    pub torso: Vec<f32>,
}

/// Everything the offline motion stage produces (all kept for `--dump`).
#[derive(Clone, Debug)]
pub struct Motion {
    pub frames: usize,
    /// The 16 kHz waveform after the whole-file normalization.
    pub waveform: Vec<f32>,
    pub merged: Streams,
    pub smoothed: Streams,
    /// FaCo output, T × 478 × 3 residuals.
    pub faco_raw: Vec<f32>,
    pub faco_smoothed: Vec<f32>,
}

const CHANNELS: [(&str, usize); 4] = [
    ("lip", LIP_DIM),
    ("eye", EYE_DIM),
    ("head", HEAD_DIM),
    ("torso", TORSO_DIM),
];

/// A MODA graph prepared for one window shape, its session and its output indices.
struct Warm<B: Backend> {
    prepared: Arc<B::Prepared>,
    session: <B::Prepared as Prepared>::Session,
    outputs: [usize; 4],
}

pub(super) struct Offline<B: Backend> {
    samples: Vec<f32>,
    motion: Option<Motion>,
    next: usize,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> Offline<B> {
    pub(super) fn new() -> Offline<B> {
        Offline {
            samples: Vec::new(),
            motion: None,
            next: 0,
            _backend: std::marker::PhantomData,
        }
    }

    pub(super) fn push(&mut self, samples: &[f32]) -> Result<(), MotionError> {
        if self.motion.is_some() {
            return Err(MotionError::Ended);
        }
        self.samples.extend_from_slice(samples);
        Ok(())
    }

    pub(super) fn motion(&self) -> Option<&Motion> {
        self.motion.as_ref()
    }

    pub(super) fn next_frame(&mut self, out: &mut MotionFrame) -> bool {
        let Some(m) = &self.motion else {
            return false;
        };
        let k = self.next;
        if k >= m.frames {
            return false;
        }
        let row =
            |v: &[f32], c: usize, dst: &mut [f32]| dst.copy_from_slice(&v[k * c..(k + 1) * c]);
        out.index = k as u64;
        row(&m.smoothed.lip, LIP_DIM, &mut out.lip);
        row(&m.smoothed.eye, EYE_DIM, &mut out.eye);
        row(&m.smoothed.head, HEAD_DIM, &mut out.head);
        row(&m.smoothed.torso, TORSO_DIM, &mut out.torso);
        row(&m.faco_smoothed, VERTEX_DIM, &mut out.face);
        self.next += 1;
        true
    }

    /// Runs the whole offline motion pipeline on the samples pushed so far.
    pub(super) fn finish(&mut self, ctx: &mut Context<B>) -> Result<(), MotionError> {
        if self.motion.is_some() {
            return Err(MotionError::Ended);
        }
        let mut waveform = std::mem::take(&mut self.samples);
        crate::audio::normalize_in_place(&mut waveform);
        let merged = run_moda(ctx, &waveform)?;
        self.motion = Some(compose(ctx, waveform, merged)?);
        Ok(())
    }
}

/// Runs MODA window by window on the normalized waveform and merges the windows.
fn run_moda<B: Backend>(ctx: &mut Context<B>, waveform: &[f32]) -> Result<Streams, MotionError> {
    // One prepared graph and session per window shape: full windows share one, so the session
    // stays warm (and its run pool filled) from window to window.
    let mut warm: HashMap<(usize, usize), Warm<B>> = HashMap::new();
    let mut per_stream: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 4];
    for (i, range) in windows(waveform.len()).into_iter().enumerate() {
        let clip = &waveform[range.clone()];
        let f = frame_count(clip.len());
        if f < 2 {
            return Err(MotionError::TooShort {
                samples: clip.len(),
                frames: f,
            });
        }
        debug_assert_eq!(range.start, i * STEP_SAMPLES);
        let w = match warm.entry((clip.len(), f)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                log::info!("preparing MODA for {} samples, {f} frames", clip.len());
                let opts = PrepareOptions::shapes(&[
                    ("waveform", vec![1, clip.len()]),
                    ("template", vec![1, 1434]),
                    ("noise", vec![1, f, NOISE_DIM]),
                ]);
                let prepared = ctx.cache.prepare(&ctx.backend, &ctx.models.moda, &opts)?;
                let mut outputs = [0; 4];
                for (o, (name, c)) in outputs.iter_mut().zip(CHANNELS) {
                    *o = expect_output(prepared.as_ref(), name, &[1, f, c])?;
                }
                let session = prepared.session()?;
                ctx.stats.moda_sessions += 1;
                e.insert(Warm {
                    prepared,
                    session,
                    outputs,
                })
            }
        };
        for name in ["waveform", "template", "noise"] {
            let idx = w.prepared.input_index(name)?;
            let mut buf = w.session.input(idx)?;
            match name {
                "waveform" => buf.copy_from_f32(clip),
                "template" => buf.copy_from_f32(&ctx.template),
                _ => {
                    let mut noise = vec![0f32; f * NOISE_DIM];
                    ctx.noise.fill(i as i64 * STEP_FRAMES, &mut noise);
                    buf.copy_from_f32(&noise);
                }
            }
        }
        w.session.run()?;
        ctx.stats.moda_runs += 1;
        for (s, &idx) in w.outputs.iter().enumerate() {
            let out = w.session.output(idx)?;
            let mut v = vec![0f32; out.len()];
            out.copy_to_f32(&mut v);
            per_stream[s].push(v);
        }
    }
    let mut merged = per_stream
        .iter()
        .zip(CHANNELS)
        .map(|(outs, (_, c))| merge(outs, c));
    let mut next = || merged.next().unwrap_or(Ok(Vec::new()));
    Ok(Streams {
        lip: next()?,
        eye: next()?,
        head: next()?,
        torso: next()?,
    })
}

/// Smoothing, FaCo and the refine smoothing on merged MODA streams.
fn compose<B: Backend>(
    ctx: &mut Context<B>,
    waveform: Vec<f32>,
    merged: Streams,
) -> Result<Motion, MotionError> {
    let frames = merged.lip.len() / LIP_DIM;
    let mut smoothed = merged.clone();
    smooth_moda_streams(
        &ctx.smoothing,
        &mut smoothed.lip,
        &mut smoothed.eye,
        &mut smoothed.head,
        &mut smoothed.torso,
    )?;
    let opts = PrepareOptions::shapes(&[
        ("lip", vec![1, frames, LIP_DIM]),
        ("eye", vec![1, frames, EYE_DIM]),
        ("template", vec![1, VERTEX_DIM]),
    ]);
    let prepared = ctx.cache.prepare(&ctx.backend, &ctx.models.faco, &opts)?;
    let mesh = expect_output(prepared.as_ref(), "mesh", &[1, frames, VERTEX_DIM])?;
    let mut session = prepared.session()?;
    for (name, src) in [
        ("lip", &smoothed.lip),
        ("eye", &smoothed.eye),
        ("template", &ctx.template),
    ] {
        let idx = prepared.input_index(name)?;
        session.input(idx)?.copy_from_f32(src);
    }
    session.run()?;
    ctx.stats.faco_runs += 1;
    let mut faco_raw = vec![0f32; frames * VERTEX_DIM];
    session.output(mesh)?.copy_to_f32(&mut faco_raw);
    let mut faco_smoothed = faco_raw.clone();
    smooth_vertices(
        &mut faco_smoothed,
        VERTEX_DIM / 3,
        &ctx.non_semantic,
        ctx.smoothing.faco_others,
    )?;
    Ok(Motion {
        frames,
        waveform,
        merged,
        smoothed,
        faco_raw,
        faco_smoothed,
    })
}
