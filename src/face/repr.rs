//! An avatar's `repr.npz` (the official per-person means: `templete` 478 × 3, `shoulder`
//! 18 × 3, `headmotion` 7, float64) and the per-frame step that turns MODA/FaCo residuals into
//! canvas pixel positions: means plus residuals, then the head pose's de-normalisation.

use std::path::{Path, PathBuf};

use super::pose::{HeadPose, CANON_CENTER};
use super::tables::{FACE_POINTS, SHOULDER_POINTS};
use crate::model::tensor::Tensor;
use crate::util::npy::{self, NpyError};

/// Errors of the avatar loader and the per-frame projection.
#[derive(Debug, thiserror::Error)]
pub enum ReprError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: member {key} is missing (expected a float64 array of shape {expected})")]
    Missing {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
    },
    #[error("{path}: member {key} has shape {found:?}, expected {expected}")]
    Shape {
        path: PathBuf,
        key: &'static str,
        found: Vec<usize>,
        expected: &'static str,
    },
    #[error("{path}: member {key} is {found}, expected a float array")]
    DType {
        path: PathBuf,
        key: &'static str,
        found: crate::model::DType,
    },
    #[error("{path}: member {key} has {value} at {index}; expected finite values only")]
    NonFinite {
        path: PathBuf,
        key: &'static str,
        index: String,
        value: f64,
    },
    #[error("{what} has {found} values, expected {expected}")]
    Length {
        what: &'static str,
        found: usize,
        expected: usize,
    },
}

/// The subject meta data the pose step needs, float64 as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Repr {
    /// `templete` (sic): the mean canonical face mesh, 478 points.
    pub templete: Vec<[f64; 3]>,
    /// The mean shoulder points, 18.
    pub shoulder: Vec<[f64; 3]>,
    /// The mean head pose `[yaw, pitch, roll, tx, ty, tz, scale]`.
    pub headmotion: [f64; 7],
    /// The canonical-space centre the pose step subtracts ([`CANON_CENTER`] unless the
    /// avatar's `face_centre` says otherwise).
    pub centre: [f64; 3],
}

/// Refuses a member that is not float or holds NaN/±Inf.
fn check_values(path: &Path, key: &'static str, t: &Tensor) -> Result<(), ReprError> {
    if !matches!(
        t.dtype(),
        crate::model::DType::F32 | crate::model::DType::F64
    ) {
        return Err(ReprError::DType {
            path: path.into(),
            key,
            found: t.dtype(),
        });
    }
    npy::check_finite(t).map_err(|(index, value)| ReprError::NonFinite {
        path: path.into(),
        key,
        index,
        value,
    })
}

fn points(
    path: &Path,
    t: Option<&Tensor>,
    key: &'static str,
    n: usize,
    expected: &'static str,
) -> Result<Vec<[f64; 3]>, ReprError> {
    let t = t.ok_or_else(|| ReprError::Missing {
        path: path.into(),
        key,
        expected,
    })?;
    if t.shape != [n, 3] {
        return Err(ReprError::Shape {
            path: path.into(),
            key,
            found: t.shape.clone(),
            expected,
        });
    }
    check_values(path, key, t)?;
    Ok(t.to_f64_vec()
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect())
}

impl Repr {
    /// Reads `templete` (478×3), `shoulder` (18×3) and `headmotion` (7) from a `repr.npz`.
    ///
    /// # Errors
    /// When the archive cannot be read or a member is missing, has another shape, is not
    /// float or holds NaN/±Inf.
    pub fn load(path: &Path) -> Result<Repr, ReprError> {
        let members = npy::read_npz(path)?;
        let templete = points(
            path,
            members.get("templete"),
            "templete",
            FACE_POINTS,
            "[478, 3]",
        )?;
        let shoulder = points(
            path,
            members.get("shoulder"),
            "shoulder",
            SHOULDER_POINTS,
            "[18, 3]",
        )?;
        let key = "headmotion";
        let expected = "[7]";
        let hm = members.get(key).ok_or_else(|| ReprError::Missing {
            path: path.into(),
            key,
            expected,
        })?;
        if hm.len() != 7 || hm.shape.len() > 2 {
            return Err(ReprError::Shape {
                path: path.into(),
                key,
                found: hm.shape.clone(),
                expected,
            });
        }
        check_values(path, key, hm)?;
        let headmotion =
            <[f64; 7]>::try_from(hm.to_f64_vec().as_slice()).map_err(|_| ReprError::Shape {
                path: path.into(),
                key,
                found: hm.shape.clone(),
                expected,
            })?;
        Ok(Repr {
            templete,
            shoulder,
            headmotion,
            centre: CANON_CENTER,
        })
    }

    /// Pixel positions (before truncation) of one frame, from the MODA/FaCo residuals:
    /// face = `face_residual` (478×3, point-major) + templete, head = `head_residual` +
    /// headmotion, shoulders = `torso_residual` (18×3) + shoulder, each de-normalised with the
    /// head pose and projected. Writes 478 and 18 entries. Does not allocate.
    ///
    /// # Errors
    /// When an input or output slice has the wrong length.
    pub fn project_frame(
        &self,
        face_residual: &[f32],
        head_residual: &[f32],
        torso_residual: &[f32],
        face_px: &mut [[f64; 2]],
        shoulder_px: &mut [[f64; 2]],
    ) -> Result<(), ReprError> {
        let check = |what, found, expected| {
            if found == expected {
                Ok(())
            } else {
                Err(ReprError::Length {
                    what,
                    found,
                    expected,
                })
            }
        };
        check("face residual", face_residual.len(), FACE_POINTS * 3)?;
        check("head residual", head_residual.len(), 7)?;
        check("torso residual", torso_residual.len(), SHOULDER_POINTS * 3)?;
        check("face pixel buffer", face_px.len(), FACE_POINTS)?;
        check("shoulder pixel buffer", shoulder_px.len(), SHOULDER_POINTS)?;
        let mut h = self.headmotion;
        for (h, &r) in h.iter_mut().zip(head_residual) {
            *h += r as f64;
        }
        let pose = HeadPose::with_centre(&h, self.centre);
        let add = |r: &[f32], base: &[f64; 3]| {
            [
                r[0] as f64 + base[0],
                r[1] as f64 + base[1],
                r[2] as f64 + base[2],
            ]
        };
        for ((o, r), base) in face_px
            .iter_mut()
            .zip(face_residual.chunks_exact(3))
            .zip(&self.templete)
        {
            *o = pose.project(add(r, base));
        }
        for ((o, r), base) in shoulder_px
            .iter_mut()
            .zip(torso_residual.chunks_exact(3))
            .zip(&self.shoulder)
        {
            *o = pose.project(add(r, base));
        }
        Ok(())
    }

    /// Pixel positions of the zero-residual pose (the avatar at rest).
    pub fn rest_pixels(&self, face_px: &mut [[f64; 2]], shoulder_px: &mut [[f64; 2]]) {
        let pose = HeadPose::with_centre(&self.headmotion, self.centre);
        pose.project_all(&self.templete, face_px);
        pose.project_all(&self.shoulder, shoulder_px);
    }
}
