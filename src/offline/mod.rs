//! `moda-edge render`: a speech recording in, the avatar's talking video out. A thin driver over
//! the pipeline stages (docs/architecture.md):
//!
//! ```text
//! WAV ─▶ 16 kHz mono ─▶ MotionStage (offline windows) ─▶ FrameStage ─▶ FrameSink (+ the speech)
//! ```
//!
//! It checks the avatar's renderer before the long motion stage, writes every intermediate
//! with `--dump` (the file names of the official end-to-end golden set), and feeds the sink the
//! speech a little ahead of the frames.

mod dump;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{Backend, OnnxModel, PlanCache, ShapeError};
use crate::clock::{FrameClock, Pts};
use crate::face::avatar::Avatar;
pub use crate::motion::Noise;
use crate::motion::SmoothingSettings;
use crate::pipeline::{
    FrameError, FrameOutcome, FrameSettings, FrameStage, MotionError, MotionFrame, MotionModels,
    MotionSettings, MotionStage, WindowPolicy,
};
use crate::sink::{Frame, SinkSettings, SinkUri};
use dump::Dump;

/// Seconds of speech handed to the sink ahead of the frame being written (an mp4 muxer
/// interleaves by time and waits for the track that lags).
pub const AUDIO_LEAD_S: f64 = 0.5;

/// How frames are laid out in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// The rendered portrait only.
    Frame,
    /// prediction | reference | condition image side by side, as the official output.
    Panel,
}

/// Options of one render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub noise: Noise,
    pub layout: Layout,
    /// Write every intermediate here, with the file names of `golden/e2e`.
    pub dump: Option<PathBuf>,
    /// Frames whose images are dumped (`frames_cond`, `frames_out`, `indices`).
    pub dump_frames: Vec<usize>,
    /// Set (e.g. by a signal handler) to stop after the frame being rendered: the output is
    /// then finalized with the frames so far and the summary says `interrupted`.
    pub stop: Option<Arc<AtomicBool>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    #[error(transparent)]
    Avatar(#[from] crate::face::avatar::AvatarError),
    #[error(transparent)]
    Model(#[from] ShapeError),
    #[error(transparent)]
    Motion(#[from] MotionError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("cannot write dump file {}", path.display())]
    Dump {
        path: PathBuf,
        source: crate::util::npy::NpyError,
    },
    #[error("--dump-frames {frame} is past the last frame ({frames} frames, 0 to {last})", last = frames.saturating_sub(1))]
    DumpFrame { frame: usize, frames: usize },
    #[error("frame {frame} has non-finite motion (the networks produced NaN or infinity)")]
    NonFinite { frame: u64 },
}

/// The result summary.
#[derive(Clone, Debug)]
pub struct RenderSummary {
    /// Frames written.
    pub frames: usize,
    /// Frames the whole recording has.
    pub total_frames: usize,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
    /// Stopped early through [`RenderOptions::stop`]; the output holds `frames` frames.
    pub interrupted: bool,
    /// The file written, if any.
    pub path: Option<PathBuf>,
}

/// The models a render needs besides the avatar's renderer.
pub type Models = MotionModels;

/// Renders `wav` with `avatar` into `sink`. `progress(done, total)` is called after each frame.
///
/// # Errors
/// A [`RenderError`] naming the file or stage at fault.
pub fn render<B: Backend + Clone>(
    backend: &B,
    models: &MotionModels,
    avatar: &Avatar,
    wav: &Path,
    sink_uri: &SinkUri,
    opts: &RenderOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<RenderSummary, RenderError> {
    let t0 = Instant::now();
    let backend = Arc::new(backend.clone());
    let cache: Arc<PlanCache<B>> = Arc::new(PlanCache::new(None));
    // The avatar's renderer is checked (kind, inputs, outputs) before the long motion stage.
    let renderer = OnnxModel::load(&avatar.renderer_path())?;
    renderer.check_kind("renderer")?;
    let settings = FrameSettings {
        canvas: avatar.config.canvas,
        size: avatar.config.renderer_size,
        time_code_period: None,
    };
    let prepared = cache
        .prepare(backend.as_ref(), &renderer, &settings.prepare_options())
        .map_err(FrameError::from)?;
    let mut stage = FrameStage::new(
        prepared.as_ref(),
        avatar.repr(),
        &avatar.reference,
        settings,
    )?;

    let samples = crate::audio::load_wav_16k(wav)?;
    let audio_seconds = samples.len() as f64 / 16_000.0;
    let mut motion = MotionStage::new(
        Arc::clone(&backend),
        Arc::clone(&cache),
        models,
        &avatar.template,
        MotionSettings {
            window: WindowPolicy::Offline,
            noise: opts.noise,
            smoothing: SmoothingSettings::default(),
        },
    )?;
    motion.push(&samples)?;
    motion.end_of_stream()?;
    let m = motion.offline_motion().ok_or(MotionError::Ended)?;
    let t = m.frames;
    if let Some(&frame) = opts.dump_frames.iter().find(|&&f| f >= t) {
        return Err(RenderError::DumpFrame { frame, frames: t });
    }
    let mut dump = Dump::new(opts.dump.as_deref(), &opts.dump_frames, t);
    dump.motion(m);

    let size = settings.size;
    let width = match opts.layout {
        Layout::Frame => size,
        Layout::Panel => 3 * size,
    };
    let clock = FrameClock::MODA;
    let mut sink = crate::sink::open(
        sink_uri,
        &SinkSettings::new(width as u32, size as u32).with_audio(clock.sample_rate()),
    )?;
    let mut panel = vec![0u8; width * size * 3];
    let mut frame = MotionFrame::default();
    let mut audio_sent = 0usize;
    let mut written = 0usize;
    let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    while !stopped() && motion.next_frame(&mut frame)? {
        let k = frame.index;
        if stage.process(&frame)? == FrameOutcome::KeptPrevious {
            return Err(RenderError::NonFinite { frame: k });
        }
        let b = &stage.buffers;
        dump.frame(k as usize, b);
        // The speech up to AUDIO_LEAD_S past this frame's end goes first.
        let lead = clock.frame_offset(k + 1).as_secs_f64() + AUDIO_LEAD_S;
        let until = ((lead * f64::from(clock.sample_rate())) as usize).min(samples.len());
        if until > audio_sent {
            let pts = clock.sample_pts(Pts::ZERO, audio_sent as u64);
            sink.write_audio(&samples[audio_sent..until], pts)?;
            audio_sent = until;
        }
        let data: &[u8] = match opts.layout {
            Layout::Frame => &b.out,
            Layout::Panel => {
                for (row, dst) in panel.chunks_exact_mut(width * 3).enumerate() {
                    let r = row * size * 3..(row + 1) * size * 3;
                    dst[..size * 3].copy_from_slice(&b.out[r.clone()]);
                    dst[size * 3..2 * size * 3].copy_from_slice(&stage.reference_small[r.clone()]);
                    dst[2 * size * 3..].copy_from_slice(&b.cond_small[r]);
                }
                &panel
            }
        };
        sink.write_frame(&Frame::rgb(k, clock.frame_pts(Pts::ZERO, k), data))?;
        written += 1;
        progress(written, t);
    }
    let interrupted = written < t;
    if !interrupted && audio_sent < samples.len() {
        let pts = clock.sample_pts(Pts::ZERO, audio_sent as u64);
        sink.write_audio(&samples[audio_sent..], pts)?;
    }
    // Stopped before the first frame: no output at all (dropping the sink removes its file).
    let path = if written == 0 {
        drop(sink);
        None
    } else {
        sink.finish()?.path
    };
    // Dumps are written once the run is complete, so a failed run leaves nothing behind.
    if !interrupted {
        dump.finish(settings.canvas, size)?;
    }
    Ok(RenderSummary {
        frames: written,
        total_frames: t,
        audio_seconds,
        wall_seconds: t0.elapsed().as_secs_f64(),
        interrupted,
        path,
    })
}
