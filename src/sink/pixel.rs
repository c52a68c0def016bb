//! Pixel conversions for the live outputs: RGB24 frames into the layouts V4L2 devices take.
//!
//! | layout | bytes per row (at least) | planes |
//! |---|---|---|
//! | [`Layout::Yuyv`] (V4L2 `YUYV`, 4:2:2) | `4·⌈w/2⌉` | one: `Y0 Cb Y1 Cr` per pair of pixels |
//! | [`Layout::Rgb24`] (V4L2 `RGB3`) | `3·w` | one: `R G B` per pixel |
//! | [`Layout::Nv12`] (V4L2 `NV12`, 4:2:0) | `w` (Y), `2·⌈w/2⌉` (CbCr) | Y rows, then `⌈h/2⌉` rows of `Cb Cr` pairs with the same stride |
//!
//! Colour: BT.601 limited range, each pixel's Y, Cb and Cr exactly [`rgb_to_ycbcr`] (the y4m
//! sink's integer conversion). Chroma subsampling: a YUYV pair carries the rounded mean of its
//! two pixels' Cb and Cr, `(a + b + 1) >> 1`; an NV12 chroma sample the rounded mean of its 2×2
//! block's, `(a + b + c + d + 2) >> 2`. At an odd right or bottom edge the missing pixels repeat
//! the edge, so the mean is that of the pixels present.
//!
//! Every function writes into a destination the caller allocated once (a mapped device buffer
//! or a pooled one) with its own row stride, and allocates nothing.

use super::y4m::rgb_to_ycbcr;

/// A destination pixel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Packed 4:2:2, `Y0 Cb Y1 Cr` for each pair of pixels (V4L2 `YUYV`).
    Yuyv,
    /// Packed `R G B` (V4L2 `RGB3`): the frame as it is, rows padded to the stride.
    Rgb24,
    /// Semi-planar 4:2:0: the Y plane, then interleaved `Cb Cr` at half resolution (V4L2 `NV12`).
    Nv12,
}

impl Layout {
    /// The fewest bytes a row of a `width`-pixel frame takes (the Y row for NV12).
    pub fn min_stride(self, width: usize) -> usize {
        match self {
            Self::Yuyv => 4 * width.div_ceil(2),
            Self::Rgb24 => 3 * width,
            // The CbCr rows (2·⌈w/2⌉ bytes) share the stride, so they set the minimum when w is odd.
            Self::Nv12 => 2 * width.div_ceil(2),
        }
    }

    /// Bytes a whole `width`×`height` frame takes with rows of `stride` bytes.
    pub fn frame_len(self, height: usize, stride: usize) -> usize {
        match self {
            Self::Yuyv | Self::Rgb24 => stride * height,
            Self::Nv12 => stride * (height + height.div_ceil(2)),
        }
    }
}

/// Why a conversion could not run: the buffers do not fit the frame size (a bug in the caller,
/// checked before any pixel is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    #[error("an RGB frame of {got} bytes is not {width}x{height} (expected {expected})")]
    Source {
        got: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
    #[error(
        "a {layout:?} buffer of {got} bytes with rows of {stride} bytes cannot hold a \
         {width}x{height} frame (needs rows of at least {min_stride} bytes, {needed} bytes in all)"
    )]
    Destination {
        layout: Layout,
        got: usize,
        stride: usize,
        min_stride: usize,
        needed: usize,
        width: usize,
        height: usize,
    },
}

/// Converts the `width`×`height` RGB24 frame `rgb` (rows of `3·width` bytes) into `dst` laid out
/// as `layout` with rows of `stride` bytes. Padding bytes at the ends of rows are left as they
/// are. Does not allocate.
///
/// # Errors
/// [`PixelError`] when `rgb` is not `3·width·height` bytes, `stride` is below
/// [`Layout::min_stride`] or `dst` is shorter than [`Layout::frame_len`]; nothing is written then.
pub fn convert(
    layout: Layout,
    rgb: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
    stride: usize,
) -> Result<(), PixelError> {
    let expected = width * height * 3;
    if rgb.len() != expected {
        return Err(PixelError::Source {
            got: rgb.len(),
            expected,
            width,
            height,
        });
    }
    let min_stride = layout.min_stride(width);
    let needed = layout.frame_len(height, stride);
    if stride < min_stride || dst.len() < needed {
        return Err(PixelError::Destination {
            layout,
            got: dst.len(),
            stride,
            min_stride,
            needed,
            width,
            height,
        });
    }
    if width == 0 || height == 0 {
        return Ok(());
    }
    match layout {
        Layout::Yuyv => yuyv(rgb, width, dst, stride),
        Layout::Rgb24 => {
            for (src, out) in rgb.chunks_exact(3 * width).zip(dst.chunks_mut(stride)) {
                out[..3 * width].copy_from_slice(src);
            }
        }
        Layout::Nv12 => nv12(rgb, width, height, dst, stride),
    }
    Ok(())
}

/// Rounded mean of two chroma values.
#[inline]
fn mean2(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b) + 1) >> 1) as u8
}

/// Rounded mean of four chroma values.
#[inline]
fn mean4(a: u8, b: u8, c: u8, d: u8) -> u8 {
    ((u16::from(a) + u16::from(b) + u16::from(c) + u16::from(d) + 2) >> 2) as u8
}

#[inline]
fn ycbcr(px: &[u8]) -> [u8; 3] {
    rgb_to_ycbcr(px[0], px[1], px[2])
}

fn yuyv(rgb: &[u8], width: usize, dst: &mut [u8], stride: usize) {
    for (src, out) in rgb.chunks_exact(3 * width).zip(dst.chunks_mut(stride)) {
        let mut pairs = src.chunks_exact(6);
        let mut outs = out.chunks_exact_mut(4);
        for (px, o) in (&mut pairs).zip(&mut outs) {
            let [y0, cb0, cr0] = ycbcr(&px[..3]);
            let [y1, cb1, cr1] = ycbcr(&px[3..]);
            o.copy_from_slice(&[y0, mean2(cb0, cb1), y1, mean2(cr0, cr1)]);
        }
        // An odd width: the last pixel is its own pair.
        let last = pairs.remainder();
        if let (false, Some(o)) = (last.is_empty(), outs.next()) {
            let [y, cb, cr] = ycbcr(last);
            o.copy_from_slice(&[y, cb, y, cr]);
        }
    }
}

fn nv12(rgb: &[u8], width: usize, height: usize, dst: &mut [u8], stride: usize) {
    let row = 3 * width;
    let (luma, chroma) = dst.split_at_mut(stride * height);
    for (pair, uv) in (0..height).step_by(2).zip(chroma.chunks_mut(stride)) {
        // Rows `pair` and `pair + 1`; an odd last row pairs with itself.
        let bottom = (pair + 1).min(height - 1);
        let top_src = &rgb[pair * row..][..row];
        let bottom_src = &rgb[bottom * row..][..row];
        let (top_y, rest) = luma[pair * stride..].split_at_mut(stride);
        for x in (0..width).step_by(2) {
            let right = (x + 1).min(width - 1);
            let a = ycbcr(&top_src[3 * x..]);
            let b = ycbcr(&top_src[3 * right..]);
            let c = ycbcr(&bottom_src[3 * x..]);
            let d = ycbcr(&bottom_src[3 * right..]);
            top_y[x] = a[0];
            if right != x {
                top_y[right] = b[0];
            }
            if bottom != pair {
                let bottom_y = &mut rest[..stride];
                bottom_y[x] = c[0];
                if right != x {
                    bottom_y[right] = d[0];
                }
            }
            uv[x] = mean4(a[1], b[1], c[1], d[1]);
            uv[x + 1] = mean4(a[2], b[2], c[2], d[2]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact BT.601 limited-range Y'CbCr in floating point.
    fn reference(px: &[u8]) -> [f64; 3] {
        let [r, g, b] = [px[0], px[1], px[2]].map(|v| f64::from(v) / 255.0);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        [
            16.0 + 219.0 * y,
            128.0 + 224.0 * (b - y) / 1.772,
            128.0 + 224.0 * (r - y) / 1.402,
        ]
    }

    /// A deterministic pseudo-random RGB frame.
    fn noise(width: usize, height: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..width * height * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect()
    }

    fn px(rgb: &[u8], width: usize, x: usize, y: usize) -> &[u8] {
        &rgb[3 * (y * width + x)..][..3]
    }

    #[test]
    fn known_colours() {
        // red, green / blue, white
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
        let mut yuyv = [0u8; 8];
        convert(Layout::Yuyv, &rgb, 2, 2, &mut yuyv, 4).expect("yuyv");
        // Y: 82 144 / 41 235; Cb: (90+54+1)>>1 = 72, (240+128+1)>>1 = 184;
        // Cr: (240+34+1)>>1 = 137, (110+128+1)>>1 = 119.
        assert_eq!(yuyv, [82, 72, 144, 137, 41, 184, 235, 119]);
        let mut nv12 = [0u8; 6];
        convert(Layout::Nv12, &rgb, 2, 2, &mut nv12, 2).expect("nv12");
        // Cb (90+54+240+128+2)>>2 = 128, Cr (240+34+110+128+2)>>2 = 128.
        assert_eq!(nv12, [82, 144, 41, 235, 128, 128]);

        let white = [255u8; 4 * 2 * 3];
        let black = [0u8; 4 * 2 * 3];
        for (frame, y) in [(&white, 235), (&black, 16)] {
            let mut out = [0u8; 16];
            convert(Layout::Yuyv, frame, 4, 2, &mut out, 8).expect("yuyv");
            assert_eq!(out, [y, 128, y, 128].repeat(4).as_slice());
            let mut out = [0u8; 12];
            convert(Layout::Nv12, frame, 4, 2, &mut out, 4).expect("nv12");
            assert_eq!(&out[..8], [y; 8].as_slice());
            assert_eq!(&out[8..], [128; 4].as_slice());
        }
    }

    #[test]
    fn luma_is_the_y4m_conversion_and_chroma_within_one_and_a_half_levels_of_bt601() {
        // Per pixel the integer Cb/Cr lie within 1 level of the exact values, so their mean
        // does too, and rounding the mean adds at most half a level.
        for (w, h) in [(16usize, 8usize), (7, 5), (1, 1), (2, 3)] {
            let rgb = noise(w, h, (w * 31 + h) as u32);
            let stride_yuyv = Layout::Yuyv.min_stride(w) + 8;
            let mut yuyv = vec![0u8; Layout::Yuyv.frame_len(h, stride_yuyv)];
            convert(Layout::Yuyv, &rgb, w, h, &mut yuyv, stride_yuyv).expect("yuyv");
            let stride_nv12 = Layout::Nv12.min_stride(w) + 3;
            let mut nv12 = vec![0u8; Layout::Nv12.frame_len(h, stride_nv12)];
            convert(Layout::Nv12, &rgb, w, h, &mut nv12, stride_nv12).expect("nv12");
            for y in 0..h {
                for x in 0..w {
                    let want = rgb_to_ycbcr(
                        px(&rgb, w, x, y)[0],
                        px(&rgb, w, x, y)[1],
                        px(&rgb, w, x, y)[2],
                    );
                    assert_eq!(yuyv[y * stride_yuyv + 2 * x], want[0], "yuyv Y at {x},{y}");
                    assert_eq!(nv12[y * stride_nv12 + x], want[0], "nv12 Y at {x},{y}");
                }
                for x in (0..w).step_by(2) {
                    let pair = [x, (x + 1).min(w - 1)];
                    for (c, offset) in [(1usize, 1usize), (2, 3)] {
                        let exact = pair
                            .iter()
                            .map(|&i| reference(px(&rgb, w, i, y))[c])
                            .sum::<f64>()
                            / 2.0;
                        let got = f64::from(yuyv[y * stride_yuyv + 2 * x + offset]);
                        assert!(
                            (got - exact).abs() <= 1.5,
                            "yuyv chroma {c} at {x},{y}: {got} vs {exact}"
                        );
                    }
                }
            }
            let chroma = &nv12[stride_nv12 * h..];
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let block = [
                        (x, y),
                        ((x + 1).min(w - 1), y),
                        (x, (y + 1).min(h - 1)),
                        ((x + 1).min(w - 1), (y + 1).min(h - 1)),
                    ];
                    for c in [1usize, 2] {
                        let exact = block
                            .iter()
                            .map(|&(i, j)| reference(px(&rgb, w, i, j))[c])
                            .sum::<f64>()
                            / 4.0;
                        let got = f64::from(chroma[(y / 2) * stride_nv12 + x + c - 1]);
                        assert!(
                            (got - exact).abs() <= 1.5,
                            "nv12 chroma {c} at {x},{y}: {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn chroma_is_the_rounded_mean_of_the_integer_values() {
        let (w, h) = (6usize, 4usize);
        let rgb = noise(w, h, 7);
        let ycc = |x: usize, y: usize| {
            let p = px(&rgb, w, x, y);
            rgb_to_ycbcr(p[0], p[1], p[2]).map(u32::from)
        };
        let mut yuyv = vec![0u8; Layout::Yuyv.frame_len(h, 12)];
        convert(Layout::Yuyv, &rgb, w, h, &mut yuyv, 12).expect("yuyv");
        let mut nv12 = vec![0u8; Layout::Nv12.frame_len(h, 6)];
        convert(Layout::Nv12, &rgb, w, h, &mut nv12, 6).expect("nv12");
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let (a, b) = (ycc(x, y), ycc(x + 1, y));
                assert_eq!(
                    u32::from(yuyv[y * 12 + 2 * x + 1]),
                    (a[1] + b[1]).div_ceil(2)
                );
                assert_eq!(
                    u32::from(yuyv[y * 12 + 2 * x + 3]),
                    (a[2] + b[2]).div_ceil(2)
                );
                if y % 2 == 0 {
                    let (c, d) = (ycc(x, y + 1), ycc(x + 1, y + 1));
                    let uv = &nv12[6 * h + (y / 2) * 6 + x..];
                    assert_eq!(u32::from(uv[0]), (a[1] + b[1] + c[1] + d[1] + 2) / 4);
                    assert_eq!(u32::from(uv[1]), (a[2] + b[2] + c[2] + d[2] + 2) / 4);
                }
            }
        }
    }

    #[test]
    fn rgb_rows_are_copied_and_padding_is_untouched() {
        let rgb = noise(3, 2, 3);
        let mut dst = vec![0xAAu8; 12 * 2];
        convert(Layout::Rgb24, &rgb, 3, 2, &mut dst, 12).expect("rgb");
        assert_eq!(&dst[..9], &rgb[..9]);
        assert_eq!(&dst[12..21], &rgb[9..]);
        assert!(dst[9..12].iter().chain(&dst[21..]).all(|&b| b == 0xAA));
    }

    #[test]
    fn wrong_sizes_are_refused_before_writing() {
        let rgb = noise(4, 4, 1);
        let mut dst = vec![0x55u8; 64];
        let err = convert(Layout::Yuyv, &rgb[1..], 4, 4, &mut dst, 8).expect_err("short source");
        assert!(
            matches!(
                err,
                PixelError::Source {
                    got: 47,
                    expected: 48,
                    ..
                }
            ),
            "{err}"
        );
        let err = convert(Layout::Yuyv, &rgb, 4, 4, &mut dst, 6).expect_err("narrow rows");
        assert!(
            matches!(err, PixelError::Destination { min_stride: 8, .. }),
            "{err}"
        );
        let err = convert(Layout::Nv12, &rgb, 4, 4, &mut dst[..23], 4).expect_err("short NV12");
        assert!(
            matches!(err, PixelError::Destination { needed: 24, .. }),
            "{err}"
        );
        assert!(dst.iter().all(|&b| b == 0x55), "nothing written");
    }
}
