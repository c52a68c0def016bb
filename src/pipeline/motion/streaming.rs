//! The streaming policy: MODA on a sliding window of history + chunk + lookahead frames as the
//! audio arrives (geometry and maths in `motion::streaming`).
//!
//! Per window starting at frame `s` (the first window starts at `−H`, its history silence):
//! 1. waveform: the `N = ⌊W·1600/3⌋` samples from sample `⌊s·1600/3⌋`, normalized with the
//!    running statistics (samples before the stream start, and after its end, are silence);
//!    noise: ε of frames `s..s+W` (a pure function of the seed and the frame);
//! 2. MODA; the chunk's first frames are cross-faded with the previous window's prediction of
//!    them (its lookahead);
//! 3. each stream is smoothed with its official σ, seeing past frames and at most the `L`
//!    lookahead frames;
//! 4. FaCo on the chunk and the lookahead (FaCo is per frame), then the σ 5 smoothing of the
//!    non-semantic vertices with the same limits;
//! 5. the chunk's frames are handed out.
//!
//! Every buffer is allocated in `new`; a window's run allocates nothing on the host side.

use std::sync::Arc;

use super::{Context, MotionError, MotionFrame, StreamingSettings, HEAD_DIM, TORSO_DIM};
use crate::backend::{Backend, PrepareOptions, Prepared, Session};
use crate::clock::FrameClock;
use crate::model::faco::{EYE_DIM, LIP_DIM, VERTEX_DIM};
use crate::motion::{blend_seam, frame_count, CausalSmoother, RunningNorm, NOISE_DIM};
use crate::pipeline::expect_output;

const DIMS: [usize; 4] = [LIP_DIM, EYE_DIM, HEAD_DIM, TORSO_DIM];
const NAMES: [&str; 4] = ["lip", "eye", "head", "torso"];

struct Net<B: Backend> {
    /// Keeps the plan the session runs.
    _prepared: Arc<B::Prepared>,
    session: <B::Prepared as Prepared>::Session,
}

pub(super) struct Streaming<B: Backend> {
    h: usize,
    k: usize,
    l: usize,
    /// Samples per window.
    n: usize,
    clock: FrameClock,
    moda: Net<B>,
    moda_in: [usize; 3],
    moda_out: [usize; 4],
    faco: Net<B>,
    faco_in: [usize; 3],
    faco_out: usize,
    /// Raw samples from absolute sample `base` on.
    audio: Vec<f32>,
    base: u64,
    received: u64,
    norm: RunningNorm,
    /// Samples taken into `norm` so far: each window's statistics cover the audio up to its
    /// own end, so the motion does not depend on how the audio was delivered.
    norm_pos: u64,
    ended: bool,
    /// First frame of the next window.
    next_start: i64,
    wave: Vec<f32>,
    noise: Vec<f32>,
    /// MODA outputs of the last window, W × C per stream.
    streams: [Vec<f32>; 4],
    /// The last window's prediction of the next chunk's first frames, L × C per stream.
    lookahead: [Vec<f32>; 4],
    has_lookahead: bool,
    smoothers: [CausalSmoother; 4],
    /// Smoothed chunk (K rows) then lookahead (L rows), per stream.
    smoothed: [Vec<f32>; 4],
    faco_raw: Vec<f32>,
    refine: CausalSmoother,
    faco_smoothed: Vec<f32>,
    /// Frames of the last chunk not yet handed out: `ready_from..k`.
    ready_from: usize,
    ready_first: u64,
}

impl<B: Backend> Streaming<B> {
    pub(super) fn new(
        ctx: &mut Context<B>,
        settings: StreamingSettings,
    ) -> Result<Streaming<B>, MotionError> {
        let sw = settings.window;
        let (h, k, l) = (sw.history, sw.chunk, sw.lookahead);
        let w = sw.frames();
        let clock = FrameClock::MODA;
        let n = clock.first_sample(w as u64) as usize;
        let moda_opts = PrepareOptions::shapes(&[
            ("waveform", vec![1, n]),
            ("template", vec![1, VERTEX_DIM]),
            ("noise", vec![1, w, NOISE_DIM]),
        ]);
        log::info!("preparing streaming MODA: {h}+{k}+{l} frames, {n} samples");
        let prepared = ctx
            .cache
            .prepare(&ctx.backend, &ctx.models.moda, &moda_opts)?;
        let mut moda_out = [0; 4];
        for (o, (name, c)) in moda_out.iter_mut().zip(NAMES.iter().zip(DIMS)) {
            *o = expect_output(prepared.as_ref(), name, &[1, w, c])?;
        }
        let moda_in = [
            prepared.input_index("waveform")?,
            prepared.input_index("template")?,
            prepared.input_index("noise")?,
        ];
        let mut moda: Net<B> = Net {
            session: prepared.session()?,
            _prepared: prepared,
        };
        moda.session.input(moda_in[1])?.copy_from_f32(&ctx.template);
        ctx.stats.moda_sessions += 1;

        let f = k + l;
        let faco_opts = PrepareOptions::shapes(&[
            ("lip", vec![1, f, LIP_DIM]),
            ("eye", vec![1, f, EYE_DIM]),
            ("template", vec![1, VERTEX_DIM]),
        ]);
        let prepared = ctx
            .cache
            .prepare(&ctx.backend, &ctx.models.faco, &faco_opts)?;
        let faco_out = expect_output(prepared.as_ref(), "mesh", &[1, f, VERTEX_DIM])?;
        let faco_in = [
            prepared.input_index("lip")?,
            prepared.input_index("eye")?,
            prepared.input_index("template")?,
        ];
        let mut faco: Net<B> = Net {
            session: prepared.session()?,
            _prepared: prepared,
        };
        faco.session.input(faco_in[2])?.copy_from_f32(&ctx.template);

        let s = ctx.smoothing;
        let smoothers = [
            CausalSmoother::new(LIP_DIM, vec![(CausalSmoother::columns(0..LIP_DIM), s.lip)]),
            CausalSmoother::new(EYE_DIM, vec![(CausalSmoother::columns(0..EYE_DIM), s.eye)]),
            CausalSmoother::new(
                HEAD_DIM,
                vec![
                    (CausalSmoother::columns(0..3), s.head_rotation),
                    (CausalSmoother::columns(3..6), s.head_translation),
                ],
            ),
            CausalSmoother::new(
                TORSO_DIM,
                vec![(CausalSmoother::columns(0..TORSO_DIM), s.torso)],
            ),
        ];
        let mut vertices: Vec<usize> = ctx.non_semantic.clone();
        vertices.sort_unstable();
        vertices.dedup();
        let refine_cols = vertices
            .iter()
            .flat_map(|v| [3 * v, 3 * v + 1, 3 * v + 2])
            .collect();
        let refine = CausalSmoother::new(VERTEX_DIM, vec![(refine_cols, s.faco_others)]);
        let rate = f64::from(clock.sample_rate());
        Ok(Streaming {
            h,
            k,
            l,
            n,
            clock,
            moda,
            moda_in,
            moda_out,
            faco,
            faco_in,
            faco_out,
            audio: Vec::with_capacity(4 * n),
            base: 0,
            received: 0,
            norm: RunningNorm::new(settings.norm_seconds * rate, settings.norm_floor),
            norm_pos: 0,
            ended: false,
            next_start: -(h as i64),
            wave: vec![0.0; n],
            noise: vec![0.0; w * NOISE_DIM],
            streams: DIMS.map(|c| vec![0.0; w * c]),
            lookahead: DIMS.map(|c| vec![0.0; l * c]),
            has_lookahead: false,
            smoothers,
            smoothed: DIMS.map(|c| vec![0.0; (k + l) * c]),
            faco_raw: vec![0.0; (k + l) * VERTEX_DIM],
            refine,
            faco_smoothed: vec![0.0; k * VERTEX_DIM],
            ready_from: k,
            ready_first: 0,
        })
    }

    pub(super) fn push(&mut self, samples: &[f32]) -> Result<(), MotionError> {
        if self.ended {
            return Err(MotionError::Ended);
        }
        self.audio.extend_from_slice(samples);
        self.received += samples.len() as u64;
        Ok(())
    }

    pub(super) fn end_of_stream(&mut self) {
        self.ended = true;
    }

    /// Frames of the whole stream (the official count for its samples), once it has ended.
    pub(super) fn total_frames(&self) -> Option<u64> {
        self.ended
            .then(|| frame_count(self.received as usize) as u64)
    }

    /// Absolute sample index of the first sample of frame `s` (negative before the stream).
    fn first_sample(&self, s: i64) -> i64 {
        let (fps, rate) = (
            i128::from(self.clock.fps()),
            i128::from(self.clock.sample_rate()),
        );
        (i128::from(s) * rate).div_euclid(fps) as i64
    }

    pub(super) fn next_frame(
        &mut self,
        ctx: &mut Context<B>,
        out: &mut MotionFrame,
    ) -> Result<bool, MotionError> {
        if self.ready_from == self.k {
            let emit = self.next_start + self.h as i64;
            if let Some(total) = self.total_frames() {
                if emit as u64 >= total {
                    return Ok(false);
                }
            }
            let end = self.first_sample(self.next_start) + self.n as i64;
            if end > self.received as i64 && !self.ended {
                return Ok(false);
            }
            self.run_window(ctx)?;
        }
        let index = self.ready_first + self.ready_from as u64;
        if let Some(total) = self.total_frames() {
            if index >= total {
                return Ok(false);
            }
        }
        let i = self.ready_from;
        for ((dst, src), c) in [&mut out.lip, &mut out.eye, &mut out.head, &mut out.torso]
            .into_iter()
            .zip(&self.smoothed)
            .zip(DIMS)
        {
            dst.copy_from_slice(&src[i * c..(i + 1) * c]);
        }
        out.face
            .copy_from_slice(&self.faco_smoothed[i * VERTEX_DIM..(i + 1) * VERTEX_DIM]);
        out.index = index;
        self.ready_from += 1;
        Ok(true)
    }

    /// Runs the window starting at `next_start` and makes its chunk ready.
    fn run_window(&mut self, ctx: &mut Context<B>) -> Result<(), MotionError> {
        let (h, k, l) = (self.h, self.k, self.l);
        let s = self.next_start;
        let start = self.first_sample(s);
        // Statistics of the audio up to this window's end.
        let end = (start + self.n as i64).clamp(0, self.received as i64) as u64;
        if end > self.norm_pos {
            let from = (self.norm_pos - self.base) as usize;
            let to = (end - self.base) as usize;
            self.norm.update(&self.audio[from..to]);
            self.norm_pos = end;
        }
        // Waveform: normalized samples, silence (0 after normalization) outside the stream.
        let (mean, denom) = self.norm.stats();
        for (j, v) in self.wave.iter_mut().enumerate() {
            let a = start + j as i64;
            *v = if a >= self.base as i64 && a < self.received as i64 {
                (self.audio[(a - self.base as i64) as usize] - mean) / denom
            } else {
                0.0
            };
        }
        ctx.noise.fill(s, &mut self.noise);
        let session = &mut self.moda.session;
        session.input(self.moda_in[0])?.copy_from_f32(&self.wave);
        session.input(self.moda_in[2])?.copy_from_f32(&self.noise);
        session.run()?;
        ctx.stats.moda_runs += 1;
        for (dst, &idx) in self.streams.iter_mut().zip(&self.moda_out) {
            session.output(idx)?.copy_to_f32(dst);
        }

        // Seams, smoothing, the next seam's lookahead.
        let blend = k.min(l);
        for (((stream, look), smoother), (smoothed, c)) in self
            .streams
            .iter_mut()
            .zip(&mut self.lookahead)
            .zip(&mut self.smoothers)
            .zip(self.smoothed.iter_mut().zip(DIMS))
        {
            let (chunk, future) = stream[h * c..].split_at_mut(k * c);
            if self.has_lookahead {
                blend_seam(&mut chunk[..blend * c], &look[..blend * c], c);
            }
            look.copy_from_slice(&future[..l * c]);
            let (out_chunk, out_future) = smoothed.split_at_mut(k * c);
            smoother.process_with_future(chunk, &future[..l * c], out_chunk, out_future);
        }
        self.has_lookahead = l > 0;

        // FaCo on chunk + lookahead, then the refine smoothing of the chunk.
        let faco = &mut self.faco.session;
        faco.input(self.faco_in[0])?
            .copy_from_f32(&self.smoothed[0]);
        faco.input(self.faco_in[1])?
            .copy_from_f32(&self.smoothed[1]);
        faco.run()?;
        ctx.stats.faco_runs += 1;
        faco.output(self.faco_out)?.copy_to_f32(&mut self.faco_raw);
        let (chunk, future) = self.faco_raw.split_at(k * VERTEX_DIM);
        self.refine.process(chunk, future, &mut self.faco_smoothed);

        self.ready_first = (s + h as i64) as u64;
        self.ready_from = 0;
        self.next_start += k as i64;
        // Drop audio no later window needs.
        let keep_from = (self.first_sample(self.next_start).max(0) as u64).min(self.norm_pos);
        if keep_from > self.base {
            let drop = ((keep_from - self.base) as usize).min(self.audio.len());
            self.audio.drain(..drop);
            self.base += drop as u64;
        }
        Ok(())
    }
}
