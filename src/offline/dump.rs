//! `render --dump DIR`: every intermediate as `.npy`, with the names, shapes and dtypes of the
//! official end-to-end golden set, so a run can be compared stage by stage.
//!
//! | file | shape | dtype |
//! |---|---|---|
//! | `waveform_normalized` | (1, N) | float32 |
//! | `moda_merged_{lip,eye,head,torso}`, `moda_smoothed_*` | (T, C) | float32 |
//! | `faco_raw`, `faco_smoothed` | (T, 478, 3) | float32 |
//! | `face_px`, `shoulder_px` | (T, 478, 2), (T, 18, 2) | float64 |
//! | `frames_cond`, `frames_out` | (n, 512, 512, 3), (n, S, S, 3) | uint8 |
//! | `indices` | (n,) | int64 |

use std::path::Path;

use super::RenderError;
use crate::model::{Tensor, TensorData};
use crate::pipeline::frame::FrameBuffers;
use crate::pipeline::motion::Motion;
use crate::util::npy;

/// Collects the dump and writes it at the end of a complete run; does nothing without a
/// directory.
pub(super) struct Dump<'a> {
    dir: Option<&'a Path>,
    /// Tensors collected before the frames (the motion stage's products).
    early: Vec<(String, Tensor)>,
    frames: &'a [usize],
    face_px: Vec<f64>,
    shoulder_px: Vec<f64>,
    cond: Vec<u8>,
    out: Vec<u8>,
    indices: Vec<i64>,
    total: usize,
}

impl<'a> Dump<'a> {
    pub(super) fn new(dir: Option<&'a Path>, frames: &'a [usize], total: usize) -> Dump<'a> {
        Dump {
            dir,
            early: Vec::new(),
            frames,
            face_px: Vec::new(),
            shoulder_px: Vec::new(),
            cond: Vec::new(),
            out: Vec::new(),
            indices: Vec::new(),
            total,
        }
    }

    fn write(&self, name: &str, t: &Tensor) -> Result<(), RenderError> {
        let Some(dir) = self.dir else { return Ok(()) };
        let path = dir.join(format!("{name}.npy"));
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(RenderError::Dump {
                path,
                source: npy::NpyError::Io {
                    path: dir.to_path_buf(),
                    error: e,
                },
            });
        }
        npy::write(&path, t).map_err(|source| RenderError::Dump { path, source })
    }

    /// The motion stage's products.
    pub(super) fn motion(&mut self, m: &Motion) {
        if self.dir.is_none() {
            return;
        }
        let t = m.frames;
        let mut keep = |name: String, shape: Vec<usize>, data: &[f32]| {
            self.early.push((name, Tensor::f32(shape, data.to_vec())));
        };
        keep(
            "waveform_normalized".into(),
            vec![1, m.waveform.len()],
            &m.waveform,
        );
        for (prefix, s) in [("moda_merged", &m.merged), ("moda_smoothed", &m.smoothed)] {
            for (name, data, c) in [
                ("lip", &s.lip, 120),
                ("eye", &s.eye, 180),
                ("head", &s.head, 7),
                ("torso", &s.torso, 54),
            ] {
                keep(format!("{prefix}_{name}"), vec![t, c], data);
            }
        }
        keep("faco_raw".into(), vec![t, 478, 3], &m.faco_raw);
        keep("faco_smoothed".into(), vec![t, 478, 3], &m.faco_smoothed);
    }

    /// One frame's pose and, for the listed frames, its pictures.
    pub(super) fn frame(&mut self, k: usize, b: &FrameBuffers) {
        if self.dir.is_none() {
            return;
        }
        self.face_px.extend(b.face_px.iter().flatten());
        self.shoulder_px.extend(b.shoulder_px.iter().flatten());
        if self.frames.contains(&k) {
            self.cond.extend_from_slice(&b.cond);
            self.out.extend_from_slice(&b.out);
            self.indices.push(k as i64);
        }
    }

    /// Writes what the frames gave.
    pub(super) fn finish(self, canvas: usize, size: usize) -> Result<(), RenderError> {
        if self.dir.is_none() {
            return Ok(());
        }
        for (name, tensor) in &self.early {
            self.write(name, tensor)?;
        }
        let (t, n) = (self.total, self.indices.len());
        let tensor = |shape: Vec<usize>, data: TensorData| Tensor { shape, data };
        self.write(
            "face_px",
            &tensor(vec![t, 478, 2], TensorData::F64(self.face_px.clone())),
        )?;
        self.write(
            "shoulder_px",
            &tensor(vec![t, 18, 2], TensorData::F64(self.shoulder_px.clone())),
        )?;
        self.write(
            "frames_cond",
            &tensor(
                vec![n, canvas, canvas, 3],
                TensorData::U8(self.cond.clone()),
            ),
        )?;
        self.write(
            "frames_out",
            &tensor(vec![n, size, size, 3], TensorData::U8(self.out.clone())),
        )?;
        self.write(
            "indices",
            &tensor(vec![n], TensorData::I64(self.indices.clone())),
        )
    }
}
