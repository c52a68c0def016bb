//! The simulation's dump (`moda-edged --clock virtual --dump DIR`).

use super::LiveError;
use crate::pipeline::frame::FrameBuffers;
use crate::pipeline::MotionFrame;

/// The simulation's dump: the motion and face intermediates under the names of `render
/// --dump` (`moda_smoothed_{lip,eye,head,torso}`, `faco_smoothed`, `face_px`, `shoulder_px`).
#[derive(Default)]
pub(super) struct LiveDump {
    frames: usize,
    lip: Vec<f32>,
    eye: Vec<f32>,
    head: Vec<f32>,
    torso: Vec<f32>,
    face: Vec<f32>,
    face_px: Vec<f64>,
    shoulder_px: Vec<f64>,
}

impl LiveDump {
    pub(super) fn record(&mut self, m: &MotionFrame, b: &FrameBuffers) {
        self.frames += 1;
        self.lip.extend_from_slice(&m.lip);
        self.eye.extend_from_slice(&m.eye);
        self.head.extend_from_slice(&m.head);
        self.torso.extend_from_slice(&m.torso);
        self.face.extend_from_slice(&m.face);
        self.face_px.extend(b.face_px.iter().flatten());
        self.shoulder_px.extend(b.shoulder_px.iter().flatten());
    }

    pub(super) fn write(&self, dir: &std::path::Path) -> Result<(), LiveError> {
        use crate::model::{Tensor, TensorData};
        let t = self.frames;
        let write = |name: &str, tensor: Tensor| {
            let path = dir.join(format!("{name}.npy"));
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::util::npy::NpyError::Io {
                    path: dir.to_path_buf(),
                    error: e,
                })
                .and_then(|()| crate::util::npy::write(&path, &tensor))
                .map_err(|source| LiveError::Dump { path, source })
        };
        for (name, data, c) in [
            ("lip", &self.lip, 120),
            ("eye", &self.eye, 180),
            ("head", &self.head, 7),
            ("torso", &self.torso, 54),
        ] {
            write(
                &format!("moda_smoothed_{name}"),
                Tensor::f32(vec![t, c], data.clone()),
            )?;
        }
        write(
            "faco_smoothed",
            Tensor::f32(vec![t, 478, 3], self.face.clone()),
        )?;
        write(
            "face_px",
            Tensor {
                shape: vec![t, 478, 2],
                data: TensorData::F64(self.face_px.clone()),
            },
        )?;
        write(
            "shoulder_px",
            Tensor {
                shape: vec![t, 18, 2],
                data: TensorData::F64(self.shoulder_px.clone()),
            },
        )
    }
}
