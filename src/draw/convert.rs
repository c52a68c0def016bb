//! Pixel conversions between the drawing, the renderer and the sinks, all into caller buffers:
//!
//! * the exact 2 × 2 shrink that OpenCV `INTER_LINEAR` performs for a factor of 2 on uint8
//!   (`(a + b + c + d + 2) >> 2` per channel), used when the renderer runs at 256;
//! * uint8 HWC RGB → float32 CHW in [−1, 1] by `(v/255 − 0.5)/0.5`, evaluated in float64 and
//!   rounded once to float32 (the official `im2tensor` maps in NumPy float64; float32 arithmetic
//!   differs in the last bit for about half of the levels, checked against
//!   `golden/render_small/input_mesh.npy`);
//! * renderer float32 CHW → uint8 HWC by `trunc(clip((p + 1)/2·255, 0, 255))` (official
//!   `tensor2im`, float32 arithmetic).

/// A buffer length does not match the image size.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{what} has {found} elements, expected {expected} for a {width}×{height} image")]
    Length {
        what: &'static str,
        found: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
    #[error("cannot halve a {width}×{height} image: both sides must be even")]
    Odd { width: usize, height: usize },
}

fn check(
    what: &'static str,
    found: usize,
    expected: usize,
    width: usize,
    height: usize,
) -> Result<(), ConvertError> {
    if found == expected {
        Ok(())
    } else {
        Err(ConvertError::Length {
            what,
            found,
            expected,
            width,
            height,
        })
    }
}

/// Halves a `width × height` uint8 HWC RGB image into `dst` (`width/2 × height/2 × 3`).
/// Does not allocate.
///
/// # Errors
/// When a side is odd or a buffer has the wrong length.
pub fn shrink_2x(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(ConvertError::Odd { width, height });
    }
    check("source image", src.len(), width * height * 3, width, height)?;
    check(
        "destination image",
        dst.len(),
        width * height * 3 / 4,
        width / 2,
        height / 2,
    )?;
    let row = width * 3;
    for (oy, out_row) in dst.chunks_exact_mut(row / 2).enumerate() {
        let r0 = &src[2 * oy * row..(2 * oy + 1) * row];
        let r1 = &src[(2 * oy + 1) * row..(2 * oy + 2) * row];
        for (ox, px) in out_row.chunks_exact_mut(3).enumerate() {
            let i = ox * 6;
            for c in 0..3 {
                let sum = r0[i + c] as u16
                    + r0[i + 3 + c] as u16
                    + r1[i + c] as u16
                    + r1[i + 3 + c] as u16;
                px[c] = ((sum + 2) >> 2) as u8;
            }
        }
    }
    Ok(())
}

/// `(v/255 − 0.5)/0.5` in float64, rounded to float32, for every uint8 `v`.
fn unit_lut() -> [f32; 256] {
    let mut lut = [0.0f32; 256];
    for (v, o) in lut.iter_mut().enumerate() {
        *o = ((v as f64 / 255.0 - 0.5) / 0.5) as f32;
    }
    lut
}

/// uint8 HWC RGB (`height × width × 3`) → float32 CHW (`3 × height × width`) in [−1, 1].
/// Does not allocate.
///
/// # Errors
/// When a buffer has the wrong length.
pub fn u8_hwc_to_unit_chw(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [f32],
) -> Result<(), ConvertError> {
    let n = width * height;
    check("source image", src.len(), n * 3, width, height)?;
    check("destination tensor", dst.len(), n * 3, width, height)?;
    let lut = unit_lut();
    let (r, rest) = dst.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in src.chunks_exact(3).enumerate() {
        r[i] = lut[px[0] as usize];
        g[i] = lut[px[1] as usize];
        b[i] = lut[px[2] as usize];
    }
    Ok(())
}

/// One renderer output value to uint8: `trunc(clip((p + 1)/2·255, 0, 255))` in float32
/// (NaN becomes 0).
#[inline]
pub fn unit_to_u8(p: f32) -> u8 {
    ((p + 1.0) / 2.0 * 255.0).clamp(0.0, 255.0) as u8
}

/// float32 CHW (`3 × height × width`, renderer output in [−1, 1]) → uint8 HWC RGB.
/// Does not allocate.
///
/// # Errors
/// When a buffer has the wrong length.
pub fn unit_chw_to_u8_hwc(
    src: &[f32],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let n = width * height;
    check("source tensor", src.len(), n * 3, width, height)?;
    check("destination image", dst.len(), n * 3, width, height)?;
    let (r, rest) = src.split_at(n);
    let (g, b) = rest.split_at(n);
    for (i, px) in dst.chunks_exact_mut(3).enumerate() {
        px[0] = unit_to_u8(r[i]);
        px[1] = unit_to_u8(g[i]);
        px[2] = unit_to_u8(b[i]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_rounds_half_up() {
        // One 2×2 block per channel pattern: sums 0+0+0+1 = 1 → 0, 1+1+0+0 = 2 → 1, 255·4 → 255.
        let src = [0, 1, 255, 0, 1, 255, 0, 0, 255, 1, 0, 255];
        let mut dst = [0u8; 3];
        shrink_2x(&src, 2, 2, &mut dst).unwrap();
        assert_eq!(dst, [0, 1, 255]);
        assert!(matches!(
            shrink_2x(&src, 1, 4, &mut dst),
            Err(ConvertError::Odd { .. })
        ));
    }

    #[test]
    fn unit_mapping_round_trips_and_truncates() {
        let src: Vec<u8> = (0..=255).flat_map(|v| [v, 255 - v, v / 2]).collect();
        let mut t = vec![0.0f32; src.len()];
        u8_hwc_to_unit_chw(&src, 256, 1, &mut t).unwrap();
        assert_eq!((t[0], t[255], t[256]), (-1.0, 1.0, 1.0));
        let mut back = vec![0u8; src.len()];
        unit_chw_to_u8_hwc(&t, 256, 1, &mut back).unwrap();
        // (v/255·2 − 1 + 1)/2·255 may land just below v, and truncation then gives v − 1.
        for (a, b) in src.iter().zip(&back) {
            assert!(*a == *b || *a == *b + 1, "{a} {b}");
        }
        assert_eq!(unit_to_u8(1.5), 255);
        assert_eq!(unit_to_u8(-3.0), 0);
        assert_eq!(unit_to_u8(f32::NAN), 0);
        assert_eq!(unit_to_u8(0.0), 127);
    }
}
