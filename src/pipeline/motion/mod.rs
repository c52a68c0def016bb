//! The motion stage: 16 kHz mono samples in, one [`MotionFrame`] per video frame out (the
//! smoothed MODA streams and FaCo's smoothed face residual), under one of two window policies:
//!
//! - [`WindowPolicy::Offline`] reproduces the official offline run exactly: the whole file is
//!   normalized at once, MODA runs on 20 s windows every 10 s (each window with its own frame
//!   count, `trunc(samples / (16000/30))` in float64), the windows are merged by a mean over
//!   the overlap, the four streams are smoothed over the whole sequence (lip σ 1.5, eye σ 2,
//!   head rotation σ 4, translation σ 6, torso σ 4, scipy 'reflect' edges), FaCo composes the
//!   mesh and the non-semantic vertices are smoothed with σ 5. Frames come out after
//!   [`MotionStage::end_of_stream`].
//! - [`WindowPolicy::Streaming`] runs the same networks on a sliding window of history, chunk
//!   and lookahead frames as audio arrives (see `motion::streaming` for the geometry and the
//!   maths) and hands out each chunk's frames as soon as its window has run.
//!
//! Both prepare their graphs through the plan cache, keep one warm session per window shape,
//! and check the networks' outputs against the contract before the first run.

mod offline;
mod streaming;

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, OnnxModel, PlanCache, ShapeError};
use crate::face::tables::{Tables, TablesError};
use crate::model::faco::{EYE_DIM, LIP_DIM, VERTEX_DIM};
use crate::motion::{MergeError, Noise, SmoothError, SmoothingSettings, StreamWindow};

pub use offline::Motion;

/// Channels of MODA's head stream (3 rotations, 3 translations, scale).
pub const HEAD_DIM: usize = 7;
/// Channels of MODA's torso stream (18 shoulder points × xyz).
pub const TORSO_DIM: usize = 54;

/// How MODA's windows are laid over the audio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WindowPolicy {
    /// The official offline windows over a whole file.
    Offline,
    /// History + chunk + lookahead frames, as audio arrives.
    Streaming(StreamingSettings),
}

/// Settings of the streaming policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamingSettings {
    pub window: StreamWindow,
    /// Time constant of the running waveform statistics, in seconds.
    pub norm_seconds: f64,
    /// Smallest denominator of the running normalization (full scale = 1): quieter input is
    /// not amplified further.
    pub norm_floor: f32,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        StreamingSettings {
            window: StreamWindow::default(),
            norm_seconds: 20.0,
            norm_floor: 0.02,
        }
    }
}

/// Settings of the motion stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotionSettings {
    pub window: WindowPolicy,
    pub noise: Noise,
    pub smoothing: SmoothingSettings,
}

/// The person-independent networks of the motion stage.
#[derive(Clone, Debug)]
pub struct MotionModels {
    pub moda: OnnxModel,
    pub faco: OnnxModel,
}

impl MotionModels {
    /// Loads `moda.onnx` and `faco.onnx` from a models directory, checking their kinds.
    ///
    /// # Errors
    /// When a file is missing, not ONNX, or another network than its name says.
    pub fn load(dir: &Path) -> Result<MotionModels, ShapeError> {
        let load = |name: &str| -> Result<OnnxModel, ShapeError> {
            let model = OnnxModel::load(&dir.join(format!("{name}.onnx")))?;
            model.check_kind(name)?;
            Ok(model)
        };
        Ok(MotionModels {
            moda: load("moda")?,
            faco: load("faco")?,
        })
    }
}

/// One video frame of motion: the smoothed MODA streams and the face residual of all 478
/// vertices (FaCo, smoothed), to be added to the avatar's means by the pose step.
#[derive(Clone, Debug, PartialEq)]
pub struct MotionFrame {
    /// Absolute frame index.
    pub index: u64,
    pub lip: Vec<f32>,
    pub eye: Vec<f32>,
    pub head: Vec<f32>,
    pub torso: Vec<f32>,
    /// 478 × 3 residual.
    pub face: Vec<f32>,
}

impl Default for MotionFrame {
    fn default() -> Self {
        MotionFrame {
            index: 0,
            lip: vec![0.0; LIP_DIM],
            eye: vec![0.0; EYE_DIM],
            head: vec![0.0; HEAD_DIM],
            torso: vec![0.0; TORSO_DIM],
            face: vec![0.0; VERTEX_DIM],
        }
    }
}

impl MotionFrame {
    /// Whether every value is finite.
    pub fn is_finite(&self) -> bool {
        [&self.lip, &self.eye, &self.head, &self.torso, &self.face]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
    }
}

/// Errors of the motion stage.
#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Contract(#[from] ShapeError),
    #[error("{model} has no `waveform` input (inputs: {inputs}); moda-edge needs a MODA model with the wav2vec audio head")]
    NotWav2vec { model: String, inputs: String },
    #[error("the audio is too short: {samples} samples give {frames} frame(s) at 16 kHz; at least 2 frames (1,067 samples) are needed")]
    TooShort { samples: usize, frames: usize },
    #[error("cannot merge the MODA windows")]
    Merge(#[from] MergeError),
    #[error("cannot smooth the motion")]
    Smooth(#[from] SmoothError),
    #[error("the built-in drawing tables do not load")]
    Tables(#[from] TablesError),
    #[error("invalid streaming window: {0}")]
    Window(String),
    #[error("audio pushed after the end of the stream")]
    Ended,
}

/// Counters of what the stage ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MotionStats {
    /// MODA runs (windows).
    pub moda_runs: usize,
    /// MODA sessions opened (one per window shape).
    pub moda_sessions: usize,
    /// FaCo runs.
    pub faco_runs: usize,
}

/// What the stage needs of its environment, shared by the two policies.
struct Context<B: Backend> {
    backend: Arc<B>,
    cache: Arc<PlanCache<B>>,
    models: MotionModels,
    template: Vec<f32>,
    non_semantic: Vec<usize>,
    noise: Noise,
    smoothing: SmoothingSettings,
    stats: MotionStats,
}

enum Policy<B: Backend> {
    Offline(Box<offline::Offline<B>>),
    Streaming(Box<streaming::Streaming<B>>),
}

/// Settings plus state of the motion stage.
pub struct MotionStage<B: Backend> {
    ctx: Context<B>,
    policy: Policy<B>,
}

impl<B: Backend> MotionStage<B> {
    /// A stage for `models` and the avatar's template mesh (478 × 3, canvas pixels). The
    /// streaming policy prepares its fixed-shape graphs here; the offline one per window shape
    /// when the file's length is known.
    ///
    /// # Errors
    /// [`MotionError::NotWav2vec`] for a MODA graph with the mel head, a contract error for
    /// networks whose inputs or outputs do not fit, a backend error.
    pub fn new(
        backend: Arc<B>,
        cache: Arc<PlanCache<B>>,
        models: &MotionModels,
        template: &[f64],
        settings: MotionSettings,
    ) -> Result<MotionStage<B>, MotionError> {
        if !models.moda.has_input("waveform") {
            return Err(MotionError::NotWav2vec {
                model: models.moda.label.clone(),
                inputs: models.moda.describe_inputs(),
            });
        }
        let tables = Tables::official()?;
        let mut ctx = Context {
            backend,
            cache,
            models: models.clone(),
            template: template.iter().map(|&x| x as f32).collect(),
            non_semantic: tables.non_semantic_indices,
            noise: settings.noise,
            smoothing: settings.smoothing,
            stats: MotionStats::default(),
        };
        let policy = match settings.window {
            WindowPolicy::Offline => Policy::Offline(Box::new(offline::Offline::new())),
            WindowPolicy::Streaming(s) => {
                s.window.validate().map_err(MotionError::Window)?;
                Policy::Streaming(Box::new(streaming::Streaming::new(&mut ctx, s)?))
            }
        };
        Ok(MotionStage { ctx, policy })
    }

    /// Takes in 16 kHz mono samples (raw, not normalized).
    ///
    /// # Errors
    /// [`MotionError::Ended`] after [`MotionStage::end_of_stream`].
    pub fn push(&mut self, samples: &[f32]) -> Result<(), MotionError> {
        match &mut self.policy {
            Policy::Offline(o) => o.push(samples),
            Policy::Streaming(s) => s.push(samples),
        }
    }

    /// Marks the end of the audio. Offline, this runs the whole motion pipeline.
    ///
    /// # Errors
    /// A too-short file, or a network or contract error.
    pub fn end_of_stream(&mut self) -> Result<(), MotionError> {
        match &mut self.policy {
            Policy::Offline(o) => o.finish(&mut self.ctx),
            Policy::Streaming(s) => {
                s.end_of_stream();
                Ok(())
            }
        }
    }

    /// Writes the next frame into `out` and returns `true`, or returns `false` when no frame is
    /// ready (streaming: not enough audio yet; both: the stream has ended and every frame was
    /// handed out). Streaming runs the next window when its audio has arrived.
    ///
    /// # Errors
    /// A network or contract error.
    pub fn next_frame(&mut self, out: &mut MotionFrame) -> Result<bool, MotionError> {
        match &mut self.policy {
            Policy::Offline(o) => Ok(o.next_frame(out)),
            Policy::Streaming(s) => s.next_frame(&mut self.ctx, out),
        }
    }

    /// Offline: every intermediate of the run (for `--dump`), once the stream has ended.
    pub fn offline_motion(&self) -> Option<&Motion> {
        match &self.policy {
            Policy::Offline(o) => o.motion(),
            Policy::Streaming(_) => None,
        }
    }

    /// Frames the stream will have in all, once that is known (offline after the end of the
    /// stream; streaming after it too).
    pub fn total_frames(&self) -> Option<u64> {
        match &self.policy {
            Policy::Offline(o) => o.motion().map(|m| m.frames as u64),
            Policy::Streaming(s) => s.total_frames(),
        }
    }

    pub fn stats(&self) -> MotionStats {
        self.ctx.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tract::TractBackend;
    use crate::model::import::{init, Network};
    use crate::model::Preset;
    use crate::motion::frame_count;

    fn tiny_models() -> MotionModels {
        MotionModels {
            moda: OnnxModel::from_proto("moda", &init(Network::Moda, Preset::Tiny, 1)),
            faco: OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1)),
        }
    }

    fn stage(window: WindowPolicy) -> MotionStage<TractBackend> {
        MotionStage::new(
            Arc::new(TractBackend::default()),
            Arc::new(PlanCache::new(None)),
            &tiny_models(),
            &[250.0; 1434],
            MotionSettings {
                window,
                noise: Noise::Seeded(3),
                smoothing: SmoothingSettings::default(),
            },
        )
        .unwrap()
    }

    fn drain(stage: &mut MotionStage<TractBackend>) -> Vec<MotionFrame> {
        let mut out = Vec::new();
        let mut f = MotionFrame::default();
        while stage.next_frame(&mut f).unwrap() {
            out.push(f.clone());
        }
        out
    }

    fn speechlike(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i % 97) as f32 - 48.0) / 60.0 * (1.0 + (i as f32 / 4000.0).sin()))
            .collect()
    }

    #[test]
    fn three_offline_windows_two_of_one_shape_share_a_session() {
        // 35 s: windows from 0, 10 and 20 s; the first two are full 20 s windows.
        let n = 35 * 16_000;
        let mut s = stage(WindowPolicy::Offline);
        s.push(&speechlike(n)).unwrap();
        assert!(
            !s.next_frame(&mut MotionFrame::default()).unwrap(),
            "nothing before the end"
        );
        s.end_of_stream().unwrap();
        // Three windows with their own truncated frame counts (600, 600, 449: 240 000 samples
        // give 449 as the official float64 arithmetic does); the merge adds all but the
        // 300-frame overlap of every later window.
        let counts: Vec<usize> = crate::motion::windows(n)
            .iter()
            .map(|r| frame_count(r.len()))
            .collect();
        assert_eq!(counts, [600, 600, 449]);
        let frames = drain(&mut s);
        assert_eq!(frames.len(), 600 + 300 + 149);
        assert!(frames.iter().enumerate().all(|(k, f)| f.index == k as u64));
        assert!(frames.iter().all(MotionFrame::is_finite));
        assert_eq!(
            s.stats(),
            MotionStats {
                moda_runs: 3,
                moda_sessions: 2,
                faco_runs: 1
            },
            "the two full windows share one session"
        );
        assert!(matches!(s.push(&[0.0]), Err(MotionError::Ended)));
    }

    #[test]
    fn streaming_output_does_not_depend_on_how_audio_arrives() {
        let audio = speechlike(3 * 16_000 + 123);
        let policy = WindowPolicy::Streaming(StreamingSettings {
            window: StreamWindow {
                history: 20,
                chunk: 6,
                lookahead: 4,
            },
            ..StreamingSettings::default()
        });
        let run = |piece: usize| {
            let mut s = stage(policy);
            let mut frames = Vec::new();
            let mut f = MotionFrame::default();
            for chunk in audio.chunks(piece) {
                s.push(chunk).unwrap();
                while s.next_frame(&mut f).unwrap() {
                    frames.push(f.clone());
                }
            }
            s.end_of_stream().unwrap();
            frames.extend(drain(&mut s));
            (frames, s.stats())
        };
        let (a, stats) = run(160);
        let (b, _) = run(7_001);
        assert_eq!(a.len(), frame_count(audio.len()));
        assert!(a.iter().enumerate().all(|(k, f)| f.index == k as u64));
        assert!(a.iter().all(MotionFrame::is_finite));
        assert_eq!(a.len(), b.len());
        let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "chunking of the input changes nothing");
        assert_eq!(stats.moda_runs, a.len().div_ceil(6));
        assert_eq!(stats.moda_sessions, 1);
    }

    #[test]
    fn a_mel_moda_is_refused_with_its_inputs() {
        let mut models = tiny_models();
        let mut h = crate::model::moda::Hparams::preset(Preset::Tiny);
        h.audio = crate::model::moda::AudioHead::Mel { layers: 1 };
        let specs = crate::model::moda::specs(&h);
        let ck = crate::model::spec::random_checkpoint(&specs, 1, "mel");
        models.moda = OnnxModel::from_proto(
            "mel.onnx",
            &crate::model::moda::build(&ck, &h).into_model("moda", &[]),
        );
        let err = MotionStage::new(
            Arc::new(TractBackend::default()),
            Arc::new(PlanCache::new(None)),
            &models,
            &[0.0; 1434],
            MotionSettings {
                window: WindowPolicy::Offline,
                noise: Noise::Zero,
                smoothing: SmoothingSettings::default(),
            },
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("mel.onnx has no `waveform` input (inputs: mel [1, "),
            "{err}"
        );
    }
}
