//! Head-pose de-normalisation and orthographic projection, float64, as the official
//! `denorm_verticies_via_headpose`.
//!
//! MODA predicts the face in a canonical space, `v_can = s·R·(v − anchor) + (256, 232, 128)`;
//! the official inference inverts it with the centre c = **(256, 235, 128)**, which an avatar
//! bundle may override (`face_centre` in `avatar.toml`):
//! `denorm(X) = Rᵀ·(X − c)/h₆ + (h₃, h₄, h₅)` with `R = Rz(h₂)·Ry(h₀)·Rx(h₁)` (degrees,
//! standard right-handed axis rotations; the x axis takes the pitch h₁, the y axis the yaw h₀).
//! The pixel position is (x, y) of the result; z and tz are unused by the drawing.

/// The canonical-space centre the official inference subtracts before rotating (the default
/// `face_centre` of an avatar bundle).
pub const CANON_CENTER: [f64; 3] = [256.0, 235.0, 128.0];

/// A head pose ready to apply: canonical centre, transposed rotation, scale and translation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadPose {
    centre: [f64; 3],
    /// Rᵀ, row-major.
    rt: [[f64; 3]; 3],
    scale: f64,
    t: [f64; 3],
}

/// `R = Rz(roll)·Ry(yaw)·Rx(pitch)` for angles in radians.
fn rotation(yaw: f64, pitch: f64, roll: f64) -> [[f64; 3]; 3] {
    let (sx, cx) = pitch.sin_cos();
    let (sy, cy) = yaw.sin_cos();
    let (sz, cz) = roll.sin_cos();
    // Rz·Ry·Rx expanded.
    [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ]
}

impl HeadPose {
    /// Builds the pose from the 7 absolute head parameters
    /// `[yaw, pitch, roll (degrees), tx, ty, tz, scale]` (MODA residual + `headmotion`) around
    /// the official centre [`CANON_CENTER`].
    pub fn from_params(h: &[f64; 7]) -> HeadPose {
        HeadPose::with_centre(h, CANON_CENTER)
    }

    /// As [`from_params`](Self::from_params), around the canonical centre `centre` (an
    /// avatar's `face_centre`).
    pub fn with_centre(h: &[f64; 7], centre: [f64; 3]) -> HeadPose {
        let r = rotation(h[0].to_radians(), h[1].to_radians(), h[2].to_radians());
        let mut rt = [[0.0; 3]; 3];
        for (i, row) in rt.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = r[j][i];
            }
        }
        HeadPose {
            centre,
            rt,
            scale: h[6],
            t: [h[3], h[4], h[5]],
        }
    }

    /// De-normalises one canonical point: `Rᵀ·(p − c)/scale + t`.
    #[inline]
    pub fn denorm(&self, p: [f64; 3]) -> [f64; 3] {
        let v = [
            (p[0] - self.centre[0]) / self.scale,
            (p[1] - self.centre[1]) / self.scale,
            (p[2] - self.centre[2]) / self.scale,
        ];
        let mut out = [0.0; 3];
        for (o, (row, t)) in out.iter_mut().zip(self.rt.iter().zip(self.t)) {
            *o = row[0] * v[0] + row[1] * v[1] + row[2] * v[2] + t;
        }
        out
    }

    /// De-normalises and projects one point to canvas pixels (x, y), before truncation.
    #[inline]
    pub fn project(&self, p: [f64; 3]) -> [f64; 2] {
        let d = self.denorm(p);
        [d[0], d[1]]
    }

    /// Projects every point of `points` into `out` (same length; extra entries are left
    /// untouched). Does not allocate.
    pub fn project_all(&self, points: &[[f64; 3]], out: &mut [[f64; 2]]) {
        for (o, &p) in out.iter_mut().zip(points) {
            *o = self.project(p);
        }
    }
}

/// The integer pixel coordinate the official drawing uses: truncation toward zero (numpy
/// `astype(int32)` for the face, Python `int()` for the shoulders; identical for finite values).
/// Non-finite values become 0 and huge ones saturate, which only moves a line that is far
/// outside the canvas anyway.
#[inline]
pub fn truncate_px(v: f64) -> i32 {
    v as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_pose_only_recentres_and_scales() {
        let pose = HeadPose::from_params(&[0.0, 0.0, 0.0, 10.0, 20.0, 30.0, 2.0]);
        let d = pose.denorm([260.0, 225.0, 128.0]);
        assert_eq!(d, [12.0, 15.0, 30.0]);
    }

    #[test]
    fn axis_conventions_match_the_spec() {
        // Yaw h0 rotates about y: R = Ry(90°), Rᵀ maps x to z.
        let pose = HeadPose::from_params(&[90.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let d = pose.denorm([257.0, 235.0, 128.0]);
        assert!(
            (d[0]).abs() < 1e-12 && (d[1]).abs() < 1e-12 && (d[2] - 1.0).abs() < 1e-12,
            "{d:?}"
        );
        // Roll h2 rotates about z: Rz(90°)ᵀ maps x to −y.
        let pose = HeadPose::from_params(&[0.0, 0.0, 90.0, 0.0, 0.0, 0.0, 1.0]);
        let d = pose.denorm([257.0, 235.0, 128.0]);
        assert!((d[1] + 1.0).abs() < 1e-12, "{d:?}");
        // Pitch h1 rotates about x: Rx(90°)ᵀ maps y to −z.
        let pose = HeadPose::from_params(&[0.0, 90.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let d = pose.denorm([256.0, 236.0, 128.0]);
        assert!((d[2] + 1.0).abs() < 1e-12, "{d:?}");
    }

    #[test]
    fn the_centre_is_what_is_subtracted() {
        let h = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let p = [300.0, 200.0, 100.0];
        assert_eq!(
            HeadPose::with_centre(&h, CANON_CENTER),
            HeadPose::from_params(&h)
        );
        assert_eq!(
            HeadPose::with_centre(&h, [250.0, 210.0, 90.0]).denorm(p),
            [50.0, -10.0, 10.0]
        );
        assert_eq!(HeadPose::from_params(&h).denorm(p), [44.0, -35.0, -28.0]);
    }

    #[test]
    fn truncation_is_toward_zero() {
        assert_eq!(truncate_px(3.99), 3);
        assert_eq!(truncate_px(-0.5), 0);
        assert_eq!(truncate_px(-56.7), -56);
    }
}
