//! Pixel-exact re-implementation of OpenCV's `cv::line` with `LINE_8` (no anti-aliasing,
//! `shift` 0) on an 8-bit, 3-channel image, written from the documented behaviour of
//! OpenCV's `drawing.cpp`:
//!
//! * thickness 1: the 8-connected Bresenham walk of `LineIterator`, left to right, after
//!   clipping both end points to the image with `clipLine` (only when one lies outside);
//! * thickness > 1 ("ThickLine"): in 16-bit fixed point (`XY_SHIFT` 16), a filled convex
//!   quadrilateral offset by half the thickness perpendicular to the line (its outline drawn
//!   with the fixed-point line walker first, then scan-line filled), plus a filled Bresenham
//!   circle of radius `(thickness·2¹⁵ + 2¹⁵) >> 16` at both end points.
//!
//! Nothing here allocates; all drawing is clipped to the image.

/// Fixed-point shift of OpenCV's drawing code.
const XY_SHIFT: u32 = 16;
const XY_ONE: i64 = 1 << XY_SHIFT;
const HALF: i64 = XY_ONE >> 1;

/// An 8-bit, 3-channel, row-major image borrowed mutably (no padding between rows).
pub struct ImageMut<'a> {
    data: &'a mut [u8],
    width: i32,
    height: i32,
}

/// The buffer does not hold `width × height × 3` bytes.
#[derive(Debug, thiserror::Error)]
#[error("image buffer has {found} bytes, expected {width}×{height}×3 = {expected}")]
pub struct ImageSizeError {
    pub found: usize,
    pub expected: usize,
    pub width: usize,
    pub height: usize,
}

impl<'a> ImageMut<'a> {
    /// Wraps `data` as a `width × height` 3-channel image.
    ///
    /// # Errors
    /// When `data.len() != width·height·3` or a side does not fit in `i32`.
    pub fn new(
        data: &'a mut [u8],
        width: usize,
        height: usize,
    ) -> Result<ImageMut<'a>, ImageSizeError> {
        let expected = width.saturating_mul(height).saturating_mul(3);
        let too_big = i32::try_from(width).is_err() || i32::try_from(height).is_err();
        if data.len() != expected || too_big {
            return Err(ImageSizeError {
                found: data.len(),
                expected,
                width,
                height,
            });
        }
        Ok(ImageMut {
            data,
            width: width as i32,
            height: height as i32,
        })
    }

    pub fn width(&self) -> usize {
        self.width as usize
    }

    pub fn height(&self) -> usize {
        self.height as usize
    }

    /// Sets every pixel to `color`.
    pub fn fill(&mut self, color: [u8; 3]) {
        if color[0] == color[1] && color[1] == color[2] {
            self.data.fill(color[0]);
        } else {
            for px in self.data.chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Writes one pixel that the caller knows to be inside the image.
    #[inline(always)]
    fn put(&mut self, x: i32, y: i32, color: [u8; 3]) {
        debug_assert!(x >= 0 && x < self.width && y >= 0 && y < self.height);
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&color);
    }

    /// Writes one pixel if it lies inside the image.
    #[inline(always)]
    fn put_clipped(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && x < self.width as i64 && y >= 0 && y < self.height as i64 {
            self.put(x as i32, y as i32, color);
        }
    }

    /// Fills row `y` from `x1` to `x2` inclusive, clipped to the image (nothing if `x1 > x2`).
    #[inline]
    fn hline_clipped(&mut self, y: i64, x1: i64, x2: i64, color: [u8; 3]) {
        if y < 0 || y >= self.height as i64 {
            return;
        }
        let x1 = x1.max(0);
        let x2 = x2.min(self.width as i64 - 1);
        if x1 > x2 {
            return;
        }
        let row = y as usize * self.width as usize * 3;
        let span = &mut self.data[row + x1 as usize * 3..row + (x2 as usize + 1) * 3];
        for px in span.chunks_exact_mut(3) {
            px.copy_from_slice(&color);
        }
    }
}

/// OpenCV's `clipLine` for an image of `w × h` (in the units of the points): clips the segment
/// to `[0, w−1] × [0, h−1]` in place, intersections truncated toward zero, and returns whether
/// anything is left.
fn clip_line(w: i64, h: i64, p1: &mut [i64; 2], p2: &mut [i64; 2]) -> bool {
    if w <= 0 || h <= 0 {
        return false;
    }
    let (right, bottom) = (w - 1, h - 1);
    let code = |p: &[i64; 2]| {
        (p[0] < 0) as i32
            + (p[0] > right) as i32 * 2
            + (p[1] < 0) as i32 * 4
            + (p[1] > bottom) as i32 * 8
    };
    let (mut c1, mut c2) = (code(p1), code(p2));
    // Truncating division in double precision, as OpenCV computes the intersections.
    let cut = |num: i64, mul: i64, den: i64| (num as f64 * mul as f64 / den as f64) as i64;
    if (c1 & c2) == 0 && (c1 | c2) != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1[0] += cut(a - p1[1], p2[0] - p1[0], p2[1] - p1[1]);
            p1[1] = a;
            c1 = (p1[0] < 0) as i32 + (p1[0] > right) as i32 * 2;
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2[0] += cut(a - p2[1], p2[0] - p1[0], p2[1] - p1[1]);
            p2[1] = a;
            c2 = (p2[0] < 0) as i32 + (p2[0] > right) as i32 * 2;
        }
        if (c1 & c2) == 0 && (c1 | c2) != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1[1] += cut(a - p1[0], p2[1] - p1[1], p2[0] - p1[0]);
                p1[0] = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2[1] += cut(a - p2[0], p2[1] - p1[1], p2[0] - p1[0]);
                p2[0] = a;
                c2 = 0;
            }
        }
    }
    (c1 | c2) == 0
}

/// Thickness-1, 8-connected line between integer pixels (OpenCV `Line` via `LineIterator`).
fn thin_line(img: &mut ImageMut<'_>, p1: [i32; 2], p2: [i32; 2], color: [u8; 3]) {
    let (w, h) = (img.width as i64, img.height as i64);
    let mut a = [p1[0] as i64, p1[1] as i64];
    let mut b = [p2[0] as i64, p2[1] as i64];
    let outside = |p: &[i64; 2]| p[0] < 0 || p[0] >= w || p[1] < 0 || p[1] >= h;
    if (outside(&a) || outside(&b)) && !clip_line(w, h, &mut a, &mut b) {
        return;
    }
    // Walk left to right.
    let (mut dx, mut dy) = (b[0] - a[0], b[1] - a[1]);
    let start = if dx < 0 {
        dx = -dx;
        dy = -dy;
        b
    } else {
        a
    };
    let y_step = if dy < 0 { -1 } else { 1 };
    dy = dy.abs();
    let (mut x, mut y) = (start[0] as i32, start[1] as i32);
    if dy > dx {
        // Major axis y: always step y, step x when the error goes negative.
        let (major, minor) = (dy, dx);
        let mut err = major - 2 * minor;
        for _ in 0..=major {
            img.put(x, y, color);
            let step_minor = err < 0;
            err += -2 * minor + if step_minor { 2 * major } else { 0 };
            y += y_step;
            if step_minor {
                x += 1;
            }
        }
    } else {
        let (major, minor) = (dx, dy);
        let mut err = major - 2 * minor;
        for _ in 0..=major {
            img.put(x, y, color);
            let step_minor = err < 0;
            err += -2 * minor + if step_minor { 2 * major } else { 0 };
            x += 1;
            if step_minor {
                y += y_step;
            }
        }
    }
}

/// Fixed-point (16-bit fraction) line walker used for polygon outlines (OpenCV `Line2`).
fn fixed_line(img: &mut ImageMut<'_>, p1: [i64; 2], p2: [i64; 2], color: [u8; 3]) {
    let (mut a, mut b) = (p1, p2);
    if !clip_line(
        (img.width as i64) << XY_SHIFT,
        (img.height as i64) << XY_SHIFT,
        &mut a,
        &mut b,
    ) {
        return;
    }
    let (mut dx, mut dy) = (b[0] - a[0], b[1] - a[1]);
    let (ax, ay) = (dx.abs(), dy.abs());
    let (x_step, y_step, mut ecount);
    if ax > ay {
        if dx < 0 {
            dy = -dy;
            std::mem::swap(&mut a, &mut b);
        }
        x_step = XY_ONE;
        y_step = (dy * XY_ONE) / (ax | 1);
        ecount = (b[0] - a[0]) >> XY_SHIFT;
    } else {
        if dy < 0 {
            dx = -dx;
            std::mem::swap(&mut a, &mut b);
        }
        x_step = (dx * XY_ONE) / (ay | 1);
        y_step = XY_ONE;
        ecount = (b[1] - a[1]) >> XY_SHIFT;
    }
    a[0] += HALF;
    a[1] += HALF;
    img.put_clipped((b[0] + HALF) >> XY_SHIFT, (b[1] + HALF) >> XY_SHIFT, color);
    if ax > ay {
        let (mut x, mut y) = (a[0] >> XY_SHIFT, a[1]);
        while ecount >= 0 {
            img.put_clipped(x, y >> XY_SHIFT, color);
            x += 1;
            y += y_step;
            ecount -= 1;
        }
    } else {
        let (mut x, mut y) = (a[0], a[1] >> XY_SHIFT);
        while ecount >= 0 {
            img.put_clipped(x >> XY_SHIFT, y, color);
            x += x_step;
            y += 1;
            ecount -= 1;
        }
    }
}

/// Scan-line fill of a convex polygon given in 16-bit fixed point (OpenCV `FillConvexPoly`
/// with `shift` 16 and `LINE_8`), outline included.
fn fill_convex_poly(img: &mut ImageMut<'_>, v: &[[i64; 2]], color: [u8; 3]) {
    let n = v.len();
    if n == 0 {
        return;
    }
    let (w, h) = (img.width as i64, img.height as i64);
    let mut p0 = v[n - 1];
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (v[0][0], v[0][0], v[0][1], v[0][1]);
    let mut imin = 0usize;
    for (i, &p) in v.iter().enumerate() {
        if p[1] < ymin {
            ymin = p[1];
            imin = i;
        }
        ymax = ymax.max(p[1]);
        xmax = xmax.max(p[0]);
        xmin = xmin.min(p[0]);
        fixed_line(img, p0, p, color);
        p0 = p;
    }
    let round = |c: i64| (c + HALF) >> XY_SHIFT;
    let (xmin, xmax, ymin, ymax) = (round(xmin), round(xmax), round(ymin), round(ymax));
    if n < 3 || xmax < 0 || ymax < 0 || xmin >= w || ymin >= h {
        return;
    }
    let ymax = ymax.min(h - 1);

    #[derive(Clone, Copy)]
    struct Edge {
        idx: usize,
        di: usize,
        x: i64,
        dx: i64,
        ye: i64,
    }
    let mut edge = [
        Edge {
            idx: imin,
            di: 1,
            x: -XY_ONE,
            dx: 0,
            ye: ymin,
        },
        Edge {
            idx: imin,
            di: n - 1,
            x: -XY_ONE,
            dx: 0,
            ye: ymin,
        },
    ];
    // Number of polygon edges not yet consumed; going below zero ends the fill.
    let mut edges = n as i64;
    let mut y = ymin;
    loop {
        for e in edge.iter_mut() {
            if y < e.ye {
                continue;
            }
            let mut idx0 = e.idx;
            let mut idx = idx0 + e.di;
            if idx >= n {
                idx -= n;
            }
            loop {
                let more = edges > 0;
                edges -= 1;
                if !more {
                    break;
                }
                let ty = (v[idx][1] + HALF) >> XY_SHIFT;
                if ty > y {
                    let (xs, xe) = (v[idx0][0], v[idx][0]);
                    e.ye = ty;
                    e.dx = ((xe - xs) * 2 + (ty - y)) / (2 * (ty - y));
                    e.x = xs;
                    e.idx = idx;
                    break;
                }
                idx0 = idx;
                idx += e.di;
                if idx >= n {
                    idx -= n;
                }
            }
        }
        if edges < 0 {
            break;
        }
        if y >= 0 {
            let (l, r) = if edge[0].x > edge[1].x {
                (1, 0)
            } else {
                (0, 1)
            };
            let x1 = (edge[l].x + HALF) >> XY_SHIFT;
            let x2 = (edge[r].x + HALF) >> XY_SHIFT;
            if x2 >= 0 && x1 < w {
                img.hline_clipped(y, x1, x2, color);
            }
        }
        edge[0].x += edge[0].dx;
        edge[1].x += edge[1].dx;
        y += 1;
        if y > ymax {
            break;
        }
    }
}

/// Filled Bresenham circle (OpenCV `Circle` with `fill`), clipped to the image.
fn filled_circle(img: &mut ImageMut<'_>, cx: i64, cy: i64, radius: i64, color: [u8; 3]) {
    let (mut err, mut dx, mut dy, mut plus, mut minus) = (0i64, radius, 0i64, 1i64, 2 * radius - 1);
    while dx >= dy {
        img.hline_clipped(cy - dy, cx - dx, cx + dx, color);
        img.hline_clipped(cy + dy, cx - dx, cx + dx, color);
        img.hline_clipped(cy - dx, cx - dy, cx + dy, color);
        img.hline_clipped(cy + dx, cx - dy, cx + dy, color);
        dy += 1;
        err += plus;
        plus += 2;
        let mask = if err <= 0 { 0 } else { -1 };
        err -= minus & mask;
        dx += mask;
        minus -= mask & 2;
    }
}

/// `cv::line(img, p0, p1, color, thickness, LINE_8, 0)` on an 8-bit 3-channel image.
/// `color` is written as given (pass BGR to mimic an OpenCV BGR canvas). Thickness ≤ 1 draws
/// the 1-pixel line. Does not allocate.
pub fn line(img: &mut ImageMut<'_>, p0: [i32; 2], p1: [i32; 2], color: [u8; 3], thickness: i32) {
    if thickness <= 1 {
        thin_line(img, p0, p1, color);
        return;
    }
    let a = [(p0[0] as i64) << XY_SHIFT, (p0[1] as i64) << XY_SHIFT];
    let b = [(p1[0] as i64) << XY_SHIFT, (p1[1] as i64) << XY_SHIFT];
    let inv = 1.0 / XY_ONE as f64;
    let dx = (a[0] - b[0]) as f64 * inv;
    let dy = (b[1] - a[1]) as f64 * inv;
    let r2 = dx * dx + dy * dy;
    let odd = thickness & 1;
    let half = (thickness as i64) << (XY_SHIFT - 1);
    if r2.abs() > f64::EPSILON {
        let r = (half as f64 + odd as f64 * XY_ONE as f64 * 0.5) / r2.sqrt();
        // cvRound: round half to even.
        let ox = (dy * r).round_ties_even() as i64;
        let oy = (dx * r).round_ties_even() as i64;
        let quad = [
            [a[0] + ox, a[1] + oy],
            [a[0] - ox, a[1] - oy],
            [b[0] - ox, b[1] - oy],
            [b[0] + ox, b[1] + oy],
        ];
        fill_convex_poly(img, &quad, color);
    }
    let radius = (half + HALF) >> XY_SHIFT;
    for p in [a, b] {
        filled_circle(
            img,
            (p[0] + HALF) >> XY_SHIFT,
            (p[1] + HALF) >> XY_SHIFT,
            radius,
            color,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(w: usize, h: usize, f: impl FnOnce(&mut ImageMut<'_>)) -> Vec<String> {
        let mut buf = vec![0u8; w * h * 3];
        let mut img = ImageMut::new(&mut buf, w, h).unwrap();
        f(&mut img);
        buf.chunks(w * 3)
            .map(|row| {
                row.chunks(3)
                    .map(|p| if p[0] > 0 { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn thin_line_is_8_connected_bresenham() {
        let rows = draw(8, 4, |img| line(img, [0, 0], [7, 3], [255; 3], 1));
        // err starts at 7 − 6 = 1, the y step happens on the move after a negative error.
        assert_eq!(rows, ["##......", "..##....", "....##..", "......##"]);
        // Same pixels when drawn right to left (OpenCV walks left to right).
        assert_eq!(
            draw(8, 4, |img| line(img, [7, 3], [0, 0], [255; 3], 1)),
            rows
        );
    }

    #[test]
    fn thin_line_is_clipped() {
        let rows = draw(4, 3, |img| line(img, [-5, 1], [10, 1], [255; 3], 1));
        assert_eq!(rows, ["....", "####", "...."]);
        let rows = draw(4, 3, |img| line(img, [-5, -5], [-1, 10], [255; 3], 1));
        assert_eq!(rows, ["....", "....", "...."]);
    }

    #[test]
    fn radius_one_cap_is_a_plus() {
        let rows = draw(5, 5, |img| filled_circle(img, 2, 2, 1, [255; 3]));
        assert_eq!(rows, [".....", "..#..", ".###.", "..#..", "....."]);
        let rows = draw(3, 3, |img| filled_circle(img, 0, 0, 1, [255; 3]));
        assert_eq!(rows, ["##.", "#..", "..."]);
    }

    #[test]
    fn thick_horizontal_line_is_three_rows_with_round_caps() {
        let rows = draw(9, 5, |img| line(img, [2, 2], [6, 2], [255; 3], 2));
        assert_eq!(
            rows,
            [
                ".........",
                "..#####..",
                ".#######.",
                "..#####..",
                "........."
            ]
        );
    }

    #[test]
    fn thick_degenerate_line_is_a_disc() {
        let rows = draw(5, 5, |img| line(img, [2, 2], [2, 2], [255; 3], 2));
        assert_eq!(rows, [".....", "..#..", ".###.", "..#..", "....."]);
    }

    #[test]
    fn clip_line_matches_opencv_truncation() {
        let (mut a, mut b) = ([-10, 5], [20, 8]);
        assert!(clip_line(10, 10, &mut a, &mut b));
        // y1 += (0 − (−10))·3/30 = 1 ; x2 side: y2 += (9 − 20)·3/30 = −1.1 → −1.
        assert_eq!((a, b), ([0, 6], [9, 7]));
        let (mut a, mut b) = ([-10, -10], [-1, 20]);
        assert!(!clip_line(10, 10, &mut a, &mut b));
    }
}
