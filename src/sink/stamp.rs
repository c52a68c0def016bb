//! The debug stamp (`video.stamp = true`): a frame's index and the index of its first audio
//! sample, drawn as black and white cells into the top-left corner of the picture, so that a
//! field test can read back from a captured video which frame it sees and which audio it
//! belongs to.
//!
//! Layout: a grid of 16 × 8 square cells of `c` pixels, `c = min(8, ⌊w/16⌋, ⌊h/8⌋)` (128 × 64
//! pixels on a frame of at least that size), white for 1 and black for 0, most significant bit
//! first, row by row:
//!
//! ```text
//! row 0      the start marker 0xACE2 (16 cells)
//! rows 1..=2 frame index, u32
//! rows 3..=6 first audio sample, u64
//! row 7      CRC-16/CCITT-FALSE of the 12 bytes above (big-endian index, then sample)
//! ```
//!
//! The reader averages the inner part of each cell on the luma (RGB: `(R+G+B)/3`; YUYV, NV12:
//! Y) and thresholds it halfway between the darkest and the brightest marker cell, so it does
//! not depend on the range (full-range RGB, limited-range Y) and survives chroma subsampling,
//! rounding and mild blur. It returns `None` unless the marker and the CRC both match: a frame
//! without a stamp is recognised as such (a false match has probability 2⁻³²).

/// Cells per row and rows of cells.
const COLS: usize = 16;
const ROWS: usize = 8;
/// Largest cell side in pixels.
const MAX_CELL: usize = 8;
const MARKER: u16 = 0xACE2;

/// Side of a cell for a `width`×`height` frame, `None` when the frame is smaller than 16×8.
fn cell_size(width: usize, height: usize) -> Option<usize> {
    let c = MAX_CELL.min(width / COLS).min(height / ROWS);
    (c > 0).then_some(c)
}

/// Bytes of a stamp's payload: index, sample.
fn payload(frame_index: u32, first_sample: u64) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&frame_index.to_be_bytes());
    p[4..].copy_from_slice(&first_sample.to_be_bytes());
    p
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 128 cells, row by row: marker, index, sample, CRC.
fn cells(frame_index: u32, first_sample: u64) -> [bool; COLS * ROWS] {
    let p = payload(frame_index, first_sample);
    let mut words = [0u16; ROWS];
    words[0] = MARKER;
    for (w, pair) in words[1..7].iter_mut().zip(p.chunks_exact(2)) {
        *w = u16::from_be_bytes([pair[0], pair[1]]);
    }
    words[7] = crc16(&p);
    let mut out = [false; COLS * ROWS];
    for (row, word) in words.iter().enumerate() {
        for col in 0..COLS {
            out[row * COLS + col] = word & (0x8000 >> col) != 0;
        }
    }
    out
}

/// Draws the stamp of frame `frame_index`, whose first audio sample is `first_sample`, into the
/// top-left corner of the `width`×`height` RGB24 frame `rgb`. Returns `false`, drawing nothing,
/// when the frame is smaller than 16×8 pixels or `rgb` is not `3·width·height` bytes. Does not
/// allocate.
pub fn write(rgb: &mut [u8], width: u32, height: u32, frame_index: u32, first_sample: u64) -> bool {
    let (w, h) = (width as usize, height as usize);
    let Some(c) = cell_size(w, h) else {
        return false;
    };
    if rgb.len() != w * h * 3 {
        return false;
    }
    let bits = cells(frame_index, first_sample);
    for y in 0..ROWS * c {
        let row = &mut rgb[y * w * 3..][..COLS * c * 3];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let v = if bits[(y / c) * COLS + x / c] { 255 } else { 0 };
            px.fill(v);
        }
    }
    true
}

/// Reads a stamp through `luma(x, y)`: the mean luma of each cell's inner part, thresholded
/// halfway between the marker's darkest and brightest cells.
fn read(width: usize, height: usize, luma: impl Fn(usize, usize) -> u8) -> Option<(u32, u64)> {
    let c = cell_size(width, height)?;
    // The inner half of a cell (all of it below 4 pixels), away from edges blurred by scaling.
    let (inset, span) = if c >= 4 { (c / 4, c - c / 2) } else { (0, c) };
    let mut level = [0u32; COLS * ROWS];
    for (i, l) in level.iter_mut().enumerate() {
        let (x0, y0) = ((i % COLS) * c + inset, (i / COLS) * c + inset);
        let mut sum = 0u32;
        for y in y0..y0 + span {
            for x in x0..x0 + span {
                sum += u32::from(luma(x, y));
            }
        }
        *l = sum / (span * span) as u32;
    }
    let marker = &level[..COLS];
    let (lo, hi) = (marker.iter().min()?, marker.iter().max()?);
    if hi - lo < 32 {
        return None;
    }
    let threshold = (lo + hi) / 2;
    let mut words = [0u16; ROWS];
    for (row, word) in words.iter_mut().enumerate() {
        for col in 0..COLS {
            if level[row * COLS + col] > threshold {
                *word |= 0x8000 >> col;
            }
        }
    }
    if words[0] != MARKER {
        return None;
    }
    let mut p = [0u8; 12];
    for (pair, w) in p.chunks_exact_mut(2).zip(&words[1..7]) {
        pair.copy_from_slice(&w.to_be_bytes());
    }
    if crc16(&p) != words[7] {
        return None;
    }
    let index = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let mut sample = [0u8; 8];
    sample.copy_from_slice(&p[4..]);
    Some((index, u64::from_be_bytes(sample)))
}

/// Decodes the stamp of a `width`×`height` RGB24 frame (rows of `3·width` bytes): `(frame index,
/// first audio sample)`, or `None` when there is no valid stamp or `rgb` is too short.
pub fn read_rgb(rgb: &[u8], width: u32, height: u32) -> Option<(u32, u64)> {
    let (w, h) = (width as usize, height as usize);
    if rgb.len() < w * h * 3 {
        return None;
    }
    read(w, h, |x, y| {
        let p = &rgb[(y * w + x) * 3..][..3];
        ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8
    })
}

/// Decodes the stamp of a `width`×`height` YUYV frame with rows of `stride` bytes.
pub fn read_yuyv(yuyv: &[u8], width: u32, height: u32, stride: usize) -> Option<(u32, u64)> {
    let (w, h) = (width as usize, height as usize);
    if stride < 2 * w || yuyv.len() < stride * h {
        return None;
    }
    read(w, h, |x, y| yuyv[y * stride + 2 * x])
}

/// Decodes the stamp of a `width`×`height` NV12 frame whose Y plane (the first `stride·height`
/// bytes) has rows of `stride` bytes.
pub fn read_nv12(nv12: &[u8], width: u32, height: u32, stride: usize) -> Option<(u32, u64)> {
    let (w, h) = (width as usize, height as usize);
    if stride < w || nv12.len() < stride * h {
        return None;
    }
    read(w, h, |x, y| nv12[y * stride + x])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::pixel::{convert, Layout};

    /// A frame of smooth colours with some texture, like a portrait's background.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&[
                    (x * 255 / w.max(1)) as u8,
                    (y * 255 / h.max(1)) as u8,
                    ((x * 7 + y * 13) % 256) as u8,
                ]);
            }
        }
        rgb
    }

    const CASES: [(u32, u64); 5] = [
        (0, 0),
        (1, 533),
        (29_999, 15_999_466),
        (u32::MAX, u64::MAX),
        (0x8000_0001, 0x0123_4567_89AB_CDEF),
    ];

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn round_trips_through_rgb_yuyv_and_nv12() {
        for (w, h) in [(256u32, 256u32), (128, 64), (64, 32), (20, 10), (16, 8)] {
            for (index, sample) in CASES {
                let mut rgb = picture(w as usize, h as usize);
                assert!(write(&mut rgb, w, h, index, sample), "{w}x{h} has room");
                assert_eq!(read_rgb(&rgb, w, h), Some((index, sample)), "rgb {w}x{h}");
                for (layout, pad) in [(Layout::Yuyv, 4), (Layout::Nv12, 2)] {
                    let stride = layout.min_stride(w as usize) + pad;
                    let mut out = vec![0u8; layout.frame_len(h as usize, stride)];
                    convert(layout, &rgb, w as usize, h as usize, &mut out, stride)
                        .expect("convert");
                    let got = match layout {
                        Layout::Yuyv => read_yuyv(&out, w, h, stride),
                        _ => read_nv12(&out, w, h, stride),
                    };
                    assert_eq!(got, Some((index, sample)), "{layout:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn survives_noise_and_a_dimmed_range() {
        let (w, h) = (256u32, 256u32);
        let mut rgb = picture(256, 256);
        assert!(write(&mut rgb, w, h, 1234, 657_898));
        // Compress the range to 40..=200 and add ±20 of noise, as a capture through an encoder
        // and a camera might.
        let mut s = 99u32;
        for v in rgb.iter_mut() {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = ((s >> 16) % 41) as i32 - 20;
            *v = (40 + i32::from(*v) * 160 / 255 + noise).clamp(0, 255) as u8;
        }
        assert_eq!(read_rgb(&rgb, w, h), Some((1234, 657_898)));
    }

    #[test]
    fn a_frame_without_a_stamp_reads_as_none() {
        let rgb = picture(256, 256);
        assert_eq!(read_rgb(&rgb, 256, 256), None);
        assert_eq!(read_rgb(&[0u8; 256 * 256 * 3], 256, 256), None);
        assert_eq!(read_rgb(&[255u8; 256 * 256 * 3], 256, 256), None);
    }

    #[test]
    fn a_corrupted_bit_fails_the_crc() {
        let (w, h) = (128u32, 64u32);
        let mut rgb = vec![0u8; 128 * 64 * 3];
        assert!(write(&mut rgb, w, h, 42, 22_400));
        // Invert the cell for the lowest bit of the frame index (row 2, column 15).
        for y in 16..24 {
            for x in 120..128 {
                let p = &mut rgb[(y * 128 + x) * 3..][..3];
                p.iter_mut().for_each(|v| *v = 255 - *v);
            }
        }
        assert_eq!(read_rgb(&rgb, w, h), None);
    }

    #[test]
    fn too_small_frames_and_wrong_lengths_are_left_alone() {
        let mut small = vec![9u8; 15 * 8 * 3];
        assert!(!write(&mut small, 15, 8, 1, 1));
        assert!(small.iter().all(|&b| b == 9));
        let mut short = vec![9u8; 16 * 8 * 3 - 1];
        assert!(!write(&mut short, 16, 8, 1, 1));
        assert_eq!(read_rgb(&short, 16, 8), None);
        assert_eq!(read_yuyv(&[0u8; 10], 16, 8, 32), None);
        assert_eq!(read_nv12(&[0u8; 10], 16, 8, 16), None);
    }

    #[test]
    fn the_stamp_covers_only_the_corner() {
        let (w, h) = (256usize, 192usize);
        let before = picture(w, h);
        let mut rgb = before.clone();
        assert!(write(&mut rgb, w as u32, h as u32, 7, 3733));
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                if x >= 128 || y >= 64 {
                    assert_eq!(rgb[i..i + 3], before[i..i + 3], "pixel {x},{y} changed");
                }
            }
        }
    }
}
