//! `moda-edge render`: a speech recording in, the avatar's talking video out, stage by stage
//! as the official offline pipeline (`reference/MODA_INFERENCE.md` §1, §3–§6): audio → motion
//! (MODA windows, merge, smoothing, FaCo) → per frame: pose, drawing, renderer → sink.

pub mod frames;
pub mod motion;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::{Backend, BackendError, OnnxModel, ShapeError};
use crate::face::avatar::Avatar;
use crate::face::tables::Tables;
use crate::model::{Tensor, TensorData};
use crate::sink::{FrameSink, SinkSettings, SinkUri};
use crate::util::npy;
pub use motion::Noise;

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
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    #[error(transparent)]
    Avatar(#[from] crate::face::avatar::AvatarError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("{0}")]
    Model(String),
    #[error("{0}")]
    Input(String),
    #[error("cannot write dump file {path}: {detail}")]
    Dump { path: PathBuf, detail: String },
}

/// The result summary.
#[derive(Clone, Debug)]
pub struct RenderSummary {
    pub frames: usize,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
}

/// The models a render needs.
pub struct Models {
    pub moda: OnnxModel,
    pub faco: OnnxModel,
}

impl Models {
    /// Loads `moda.onnx` and `faco.onnx` from a models directory.
    ///
    /// # Errors
    /// When a file is missing, not ONNX, or another network than its name says.
    pub fn load(dir: &Path) -> Result<Models, RenderError> {
        let load = |name: &str| -> Result<OnnxModel, RenderError> {
            let model = OnnxModel::load(&dir.join(format!("{name}.onnx")))?;
            model.check_kind(name)?;
            Ok(model)
        };
        Ok(Models {
            moda: load("moda")?,
            faco: load("faco")?,
        })
    }
}

/// Renders `wav` with `avatar` into `sink`. `progress(done, total)` is called after each frame.
///
/// # Errors
/// A [`RenderError`] naming the file or stage at fault.
pub fn render<B: Backend>(
    backend: &B,
    models: &Models,
    avatar: &Avatar,
    wav: &Path,
    sink_uri: &SinkUri,
    opts: &RenderOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<RenderSummary, RenderError> {
    let t0 = Instant::now();
    // The avatar's renderer is checked before the long motion stage runs.
    let renderer = OnnxModel::load(&avatar.renderer_path())?;
    renderer.check_kind("renderer")?;
    let samples = crate::audio::load_wav_16k(wav)?;
    let audio_seconds = samples.len() as f64 / 16_000.0;
    let waveform = crate::audio::normalize(&samples);
    let dump = Dump(opts.dump.as_deref());
    dump.f32("waveform_normalized", vec![1, waveform.len()], &waveform)?;

    let template: Vec<f32> = avatar.template.iter().map(|&x| x as f32).collect();
    let merged = motion::run_moda(backend, &models.moda, &waveform, &template, opts.noise)?;
    let tables = Tables::official().map_err(|e| RenderError::Model(e.to_string()))?;
    let m = motion::compose(
        backend,
        &models.faco,
        merged,
        &template,
        &tables.non_semantic_indices,
    )?;
    let t = m.frames;
    for (prefix, s) in [("moda_merged", &m.merged), ("moda_smoothed", &m.smoothed)] {
        for (name, data, c) in [
            ("lip", &s.lip, 120),
            ("eye", &s.eye, 180),
            ("head", &s.head, 7),
            ("torso", &s.torso, 54),
        ] {
            dump.f32(&format!("{prefix}_{name}"), vec![t, c], data)?;
        }
    }
    dump.f32("faco_raw", vec![t, 478, 3], &m.faco_raw)?;
    dump.f32("faco_smoothed", vec![t, 478, 3], &m.faco_smoothed)?;

    let repr = avatar.repr();
    let canvas = avatar.config.canvas;
    let (mut stage, _prepared) = frames::FrameStage::new(
        backend,
        &renderer,
        repr,
        &avatar.reference,
        canvas,
        avatar.config.renderer_size,
    )?;
    let size = stage.size();
    let width = match opts.layout {
        Layout::Frame => size,
        Layout::Panel => 3 * size,
    };
    let mut sink: Box<dyn FrameSink> = crate::sink::open(
        sink_uri,
        &SinkSettings::new(width as u32, size as u32, Some(&samples)),
    )?;
    let mut panel = vec![0u8; width * size * 3];
    let mut face_px = Vec::new();
    let mut shoulder_px = Vec::new();
    let (mut dumped_cond, mut dumped_out, mut indices) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..t {
        stage.process(
            k,
            &m.faco_smoothed[k * 1434..(k + 1) * 1434],
            &m.smoothed.head[k * 7..(k + 1) * 7],
            &m.smoothed.torso[k * 54..(k + 1) * 54],
        )?;
        let b = &stage.buffers;
        if opts.dump.is_some() {
            face_px.extend(b.face_px.iter().flatten());
            shoulder_px.extend(b.shoulder_px.iter().flatten());
            if opts.dump_frames.contains(&k) {
                dumped_cond.extend_from_slice(&b.cond);
                dumped_out.extend_from_slice(&b.out);
                indices.push(k as i64);
            }
        }
        match opts.layout {
            Layout::Frame => sink.write_frame(&b.out)?,
            Layout::Panel => {
                for (row, dst) in panel.chunks_exact_mut(width * 3).enumerate() {
                    let r = row * size * 3..(row + 1) * size * 3;
                    dst[..size * 3].copy_from_slice(&b.out[r.clone()]);
                    dst[size * 3..2 * size * 3].copy_from_slice(&stage.reference_small[r.clone()]);
                    dst[2 * size * 3..].copy_from_slice(&b.cond_small[r]);
                }
                sink.write_frame(&panel)?;
            }
        }
        progress(k + 1, t);
    }
    sink.finish()?;
    if opts.dump.is_some() {
        dump.tensor(
            "face_px",
            Tensor {
                shape: vec![t, 478, 2],
                data: TensorData::F64(face_px),
            },
        )?;
        dump.tensor(
            "shoulder_px",
            Tensor {
                shape: vec![t, 18, 2],
                data: TensorData::F64(shoulder_px),
            },
        )?;
        let n = indices.len();
        dump.tensor(
            "frames_cond",
            Tensor {
                shape: vec![n, canvas, canvas, 3],
                data: TensorData::U8(dumped_cond),
            },
        )?;
        dump.tensor(
            "frames_out",
            Tensor {
                shape: vec![n, size, size, 3],
                data: TensorData::U8(dumped_out),
            },
        )?;
        dump.tensor(
            "indices",
            Tensor {
                shape: vec![n],
                data: TensorData::I64(indices),
            },
        )?;
    }
    Ok(RenderSummary {
        frames: t,
        audio_seconds,
        wall_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Writes intermediates under the dump directory, when there is one.
struct Dump<'a>(Option<&'a Path>);

impl Dump<'_> {
    fn f32(&self, name: &str, shape: Vec<usize>, data: &[f32]) -> Result<(), RenderError> {
        if self.0.is_none() {
            return Ok(());
        }
        self.tensor(name, Tensor::f32(shape, data.to_vec()))
    }

    fn tensor(&self, name: &str, t: Tensor) -> Result<(), RenderError> {
        let Some(dir) = self.0 else { return Ok(()) };
        let path = dir.join(format!("{name}.npy"));
        std::fs::create_dir_all(dir).map_err(|e| RenderError::Dump {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        npy::write(&path, &t).map_err(|e| RenderError::Dump {
            path,
            detail: e.to_string(),
        })
    }
}
