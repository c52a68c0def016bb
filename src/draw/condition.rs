//! The condition-image drawing: projected face and shoulder points in,
//! the renderer's RGB mesh drawing out.
//!
//! Drawing follows the official `get_feature_image` on a black BGR canvas: tessellation
//! (thickness 1), contours and irises (thickness 2), then the two shoulder polylines
//! (thickness 2), every segment with `cv2.line` LINE_8 semantics ([`super::raster`]), point
//! coordinates truncated toward zero. The canvas is finally flipped BGR → RGB.
//!
//! The drawer is settings plus state; its state is only the preallocated canvas and
//! point buffers, so there is no Stopped/Running lifecycle: drawing opens no resource.

use super::raster::{self, ImageMut};
use crate::face::pose::truncate_px;
use crate::face::tables::{EdgeGroup, Tables, FACE_POINTS, SHOULDER_POINTS};

/// Errors of the condition drawer.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error(
        "condition canvas {width}×{height} is not supported (expected sides of 1 to 8192 pixels)"
    )]
    Size { width: usize, height: usize },
    #[error("{what} has {found} entries, expected {expected}")]
    Length {
        what: &'static str,
        found: usize,
        expected: usize,
    },
}

/// Validated drawer settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawSettings {
    pub width: usize,
    pub height: usize,
}

impl Default for DrawSettings {
    /// The official 512 × 512 canvas.
    fn default() -> Self {
        DrawSettings {
            width: 512,
            height: 512,
        }
    }
}

/// Draws condition images into caller buffers; owns its canvas and integer point buffers.
pub struct ConditionDrawer {
    settings: DrawSettings,
    tables: Tables,
    /// BGR canvas, `height × width × 3`.
    canvas: Vec<u8>,
    face: Vec<[i32; 2]>,
    shoulders: Vec<[i32; 2]>,
}

fn check(what: &'static str, found: usize, expected: usize) -> Result<(), DrawError> {
    if found == expected {
        Ok(())
    } else {
        Err(DrawError::Length {
            what,
            found,
            expected,
        })
    }
}

fn draw_group(img: &mut ImageMut<'_>, group: &EdgeGroup, pts: &[[i32; 2]]) {
    for e in &group.edges {
        raster::line(
            img,
            pts[e.a as usize],
            pts[e.b as usize],
            e.color,
            group.thickness,
        );
    }
}

impl ConditionDrawer {
    /// Prepares a drawer with its canvas allocated once.
    ///
    /// # Errors
    /// When a canvas side is 0 or larger than 8192.
    pub fn new(settings: DrawSettings, tables: Tables) -> Result<ConditionDrawer, DrawError> {
        let ok = |s: usize| (1..=8192).contains(&s);
        if !ok(settings.width) || !ok(settings.height) {
            return Err(DrawError::Size {
                width: settings.width,
                height: settings.height,
            });
        }
        Ok(ConditionDrawer {
            settings,
            tables,
            canvas: vec![0; settings.width * settings.height * 3],
            face: vec![[0; 2]; FACE_POINTS],
            shoulders: vec![[0; 2]; SHOULDER_POINTS],
        })
    }

    pub fn settings(&self) -> DrawSettings {
        self.settings
    }

    /// The BGR canvas of the last [`ConditionDrawer::process`] call (what OpenCV would hold).
    pub fn canvas_bgr(&self) -> &[u8] {
        &self.canvas
    }

    /// Draws one frame from 478 face and 18 shoulder pixel positions (before truncation) and
    /// writes the RGB image (`height × width × 3`, HWC) into `out`. Does not allocate.
    ///
    /// # Errors
    /// When a slice has the wrong length.
    pub fn process(
        &mut self,
        face_px: &[[f64; 2]],
        shoulder_px: &[[f64; 2]],
        out: &mut [u8],
    ) -> Result<(), DrawError> {
        check("face pixel array", face_px.len(), FACE_POINTS)?;
        check("shoulder pixel array", shoulder_px.len(), SHOULDER_POINTS)?;
        check("output image buffer", out.len(), self.canvas.len())?;
        for (d, s) in self.face.iter_mut().zip(face_px) {
            *d = [truncate_px(s[0]), truncate_px(s[1])];
        }
        for (d, s) in self.shoulders.iter_mut().zip(shoulder_px) {
            *d = [truncate_px(s[0]), truncate_px(s[1])];
        }
        let DrawSettings { width, height } = self.settings;
        // The canvas was sized from the settings in `new`, so this cannot fail.
        let mut img = ImageMut::new(&mut self.canvas, width, height)
            .map_err(|_| DrawError::Size { width, height })?;
        img.fill([0, 0, 0]);
        draw_group(&mut img, &self.tables.tessellation, &self.face);
        draw_group(&mut img, &self.tables.contours, &self.face);
        draw_group(&mut img, &self.tables.irises, &self.face);
        for polyline in &self.tables.shoulder_polylines {
            for pair in polyline.windows(2) {
                let (a, b) = (self.shoulders[pair[0]], self.shoulders[pair[1]]);
                raster::line(
                    &mut img,
                    a,
                    b,
                    self.tables.shoulder_color,
                    self.tables.shoulder_thickness,
                );
            }
        }
        for (o, c) in out.chunks_exact_mut(3).zip(self.canvas.chunks_exact(3)) {
            o[0] = c[2];
            o[1] = c[1];
            o[2] = c[0];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        let mut d = ConditionDrawer::new(
            DrawSettings {
                width: 64,
                height: 32,
            },
            Tables::official().unwrap(),
        )
        .unwrap();
        let face = vec![[10.0, 10.0]; FACE_POINTS];
        let sh = vec![[5.0, 5.0]; SHOULDER_POINTS];
        let mut out = vec![0u8; 64 * 32 * 3];
        assert!(matches!(
            d.process(&face[1..], &sh, &mut out),
            Err(DrawError::Length { expected: 478, .. })
        ));
        assert!(matches!(
            d.process(&face, &sh, &mut out[1..]),
            Err(DrawError::Length { .. })
        ));
        d.process(&face, &sh, &mut out).unwrap();
        // Everything collapses onto two points: the face disc in contour/iris colours, RGB order.
        assert_ne!(&out[(10 * 64 + 10) * 3..(10 * 64 + 10) * 3 + 3], &[0, 0, 0]);
        assert_eq!(
            &out[(5 * 64 + 5) * 3..(5 * 64 + 5) * 3 + 3],
            &[225, 225, 225]
        );
        assert!(ConditionDrawer::new(
            DrawSettings {
                width: 0,
                height: 1
            },
            Tables::official().unwrap()
        )
        .is_err());
    }
}
