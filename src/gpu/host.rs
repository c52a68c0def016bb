//! The kernels of `kernels/*.cu` run on the CPU (tests, and the host frame device of feature
//! `tensorrt-fake`) and compared bit for bit with the Rust stages they replace on the GPU.
//!
//! `build.rs` compiles `kernels/host/harness.cpp` (the `.cu` files as C++17 after
//! `kernels/host/cuda_host.h`, `-ffp-contract=off`) into the static library
//! `moda_kernels_host`; it is linked here only, in test builds and fake builds, so no product
//! binary contains it. Each C
//! launcher walks the whole grid of a [`Launch`] on the calling thread, one thread after
//! another; the geometry comes from [`super::kernels::geometry`], so it is tested too.

// The slice wrappers serve the tests; a `tensorrt-fake` build uses `launch` only.
#![cfg_attr(not(test), allow(dead_code))]

use super::kernels::{geometry, DrawPlan, Launch, Segment, DRAW_POINTS};

#[link(name = "moda_kernels_host", kind = "static")]
extern "C" {
    fn moda_host_draw_clear(l: *const Launch, order: *mut u32, n: u32);
    fn moda_host_draw_segments(
        l: *const Launch,
        points: *const i32,
        n_points: u32,
        segments: *const Segment,
        n_segments: u32,
        order: *mut u32,
        width: i32,
        height: i32,
    );
    fn moda_host_draw_colour(
        l: *const Launch,
        order: *const u32,
        segments: *const Segment,
        n_segments: u32,
        rgb: *mut u8,
        width: i32,
        height: i32,
    );
    fn moda_host_time_code(l: *const Launch, frame: u64, code: *mut f32);
    fn moda_host_time_code_planes(l: *const Launch, code: *const f32, plane: u32, out: *mut f32);
    fn moda_host_shrink_2x(l: *const Launch, src: *const u8, width: i32, height: i32, dst: *mut u8);
    fn moda_host_u8_hwc_to_unit_chw(l: *const Launch, src: *const u8, n_pixels: u32, dst: *mut f32);
    fn moda_host_unit_chw_to_u8_hwc(l: *const Launch, src: *const f32, n_pixels: u32, dst: *mut u8);
    fn moda_host_rgb_to_yuyv(
        l: *const Launch,
        rgb: *const u8,
        width: i32,
        height: i32,
        dst: *mut u8,
        stride: u32,
    );
    fn moda_host_rgb_to_nv12(
        l: *const Launch,
        rgb: *const u8,
        width: i32,
        height: i32,
        dst: *mut u8,
        stride: u32,
    );
    fn moda_host_standin_render(
        l: *const Launch,
        mesh: *const f32,
        reference: *const f32,
        code: *const f32,
        image: *mut f32,
        n: u32,
        rounds: u32,
    );
}

/// Runs one frame-stage kernel call on the calling thread (the host frame device's streams).
///
/// # Safety
/// Every address in `call` is of a live host buffer large enough for the kernel at the call's
/// sizes, not accessed by anything else while this runs.
#[cfg(any(test, feature = "tensorrt-fake"))]
pub(super) unsafe fn launch(call: super::frame::Call) {
    use super::frame::Call;
    let l = call.launch();
    // SAFETY: in every arm, the caller's contract: the addresses are live host pointers cast
    // to u64, large enough for the kernel.
    unsafe {
        match call {
            Call::DrawClear { order, n } => moda_host_draw_clear(&l, order as *mut u32, n),
            Call::DrawSegments {
                points,
                n_points,
                segments,
                n_segments,
                order,
                width,
                height,
            } => moda_host_draw_segments(
                &l,
                points as *const i32,
                n_points,
                segments as *const Segment,
                n_segments,
                order as *mut u32,
                width,
                height,
            ),
            Call::DrawColour {
                order,
                segments,
                n_segments,
                rgb,
                width,
                height,
            } => moda_host_draw_colour(
                &l,
                order as *const u32,
                segments as *const Segment,
                n_segments,
                rgb as *mut u8,
                width,
                height,
            ),
            Call::Shrink2x {
                src,
                width,
                height,
                dst,
            } => moda_host_shrink_2x(&l, src as *const u8, width, height, dst as *mut u8),
            Call::ToUnit { src, n_pixels, dst } => {
                moda_host_u8_hwc_to_unit_chw(&l, src as *const u8, n_pixels, dst as *mut f32)
            }
            Call::TimeCode { frame, code } => moda_host_time_code(&l, frame, code as *mut f32),
            Call::ToU8 { src, n_pixels, dst } => {
                moda_host_unit_chw_to_u8_hwc(&l, src as *const f32, n_pixels, dst as *mut u8)
            }
            Call::Yuyv {
                rgb,
                width,
                height,
                dst,
                stride,
            } => moda_host_rgb_to_yuyv(&l, rgb as *const u8, width, height, dst as *mut u8, stride),
            Call::Nv12 {
                rgb,
                width,
                height,
                dst,
                stride,
            } => moda_host_rgb_to_nv12(&l, rgb as *const u8, width, height, dst as *mut u8, stride),
            Call::StandIn {
                mesh,
                reference,
                code,
                image,
                n,
                rounds,
            } => moda_host_standin_render(
                &l,
                mesh as *const f32,
                reference as *const f32,
                code as *const f32,
                image as *mut f32,
                n,
                rounds,
            ),
        }
    }
}

fn side(v: usize) -> i32 {
    i32::try_from(v).expect("image side fits in i32")
}

fn count(v: usize) -> u32 {
    u32::try_from(v).expect("count fits in u32")
}

/// The three drawing kernels: clear `order`, draw every segment of `plan` from `points`,
/// colour `rgb` (`width × height × 3`).
pub fn draw(
    plan: &DrawPlan,
    points: &[[i32; 2]; DRAW_POINTS],
    width: usize,
    height: usize,
    order: &mut [u32],
    rgb: &mut [u8],
) {
    assert_eq!(order.len(), width * height, "order buffer");
    assert_eq!(rgb.len(), width * height * 3, "rgb buffer");
    let segs = plan.segments();
    let n = count(order.len());
    let clear = geometry::per_pixel(width, height);
    // SAFETY: `order` holds `n` u32 and the kernel writes only indices below `n`.
    unsafe { moda_host_draw_clear(&clear, order.as_mut_ptr(), n) };
    let walk = geometry::per_segment(segs.len());
    // SAFETY: `points` holds DRAW_POINTS pairs and segments naming other points are skipped by
    // the kernel; `segs` holds `segs.len()` entries; every write to `order` is inside
    // `width × height`, which is its length (checked above).
    unsafe {
        moda_host_draw_segments(
            &walk,
            points.as_ptr().cast(),
            count(DRAW_POINTS),
            segs.as_ptr(),
            count(segs.len()),
            order.as_mut_ptr(),
            side(width),
            side(height),
        )
    };
    let colour = geometry::per_pixel_2d(width, height);
    // SAFETY: `order` and `rgb` hold `width × height` pixels (checked above); the kernel reads
    // only segments below `segs.len()`.
    unsafe {
        moda_host_draw_colour(
            &colour,
            order.as_ptr(),
            segs.as_ptr(),
            count(segs.len()),
            rgb.as_mut_ptr(),
            side(width),
            side(height),
        )
    };
}

/// `time_code` for one frame.
pub fn time_code(frame: u64) -> [f32; 13] {
    let mut code = [f32::NAN; 13];
    // SAFETY: the kernel writes `code[0..13]` only.
    unsafe { moda_host_time_code(&geometry::time_code(), frame, code.as_mut_ptr()) };
    code
}

/// `time_code_planes`: `out` holds 13 planes.
pub fn time_code_planes(code: &[f32; 13], out: &mut [f32]) {
    assert!(out.len().is_multiple_of(13));
    let plane = out.len() / 13;
    // SAFETY: the kernel reads `code[0..13]` and writes `out[0..13·plane]`.
    unsafe {
        moda_host_time_code_planes(
            &geometry::time_code_planes(plane),
            code.as_ptr(),
            count(plane),
            out.as_mut_ptr(),
        )
    };
}

/// `shrink_2x` of a `width × height` image (even sides).
pub fn shrink_2x(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    assert!(width.is_multiple_of(2) && height.is_multiple_of(2));
    assert_eq!(src.len(), width * height * 3);
    assert_eq!(dst.len(), width * height * 3 / 4);
    // SAFETY: sizes checked above; the kernel reads inside `src` and writes inside `dst`.
    unsafe {
        moda_host_shrink_2x(
            &geometry::shrink_2x(width, height),
            src.as_ptr(),
            side(width),
            side(height),
            dst.as_mut_ptr(),
        )
    };
}

/// `u8_hwc_to_unit_chw`.
pub fn u8_hwc_to_unit_chw(src: &[u8], width: usize, height: usize, dst: &mut [f32]) {
    let n = width * height;
    assert_eq!((src.len(), dst.len()), (3 * n, 3 * n));
    // SAFETY: both buffers hold 3·n values (checked above).
    unsafe {
        moda_host_u8_hwc_to_unit_chw(
            &geometry::per_pixel(width, height),
            src.as_ptr(),
            count(n),
            dst.as_mut_ptr(),
        )
    };
}

/// `unit_chw_to_u8_hwc`.
pub fn unit_chw_to_u8_hwc(src: &[f32], width: usize, height: usize, dst: &mut [u8]) {
    let n = width * height;
    assert_eq!((src.len(), dst.len()), (3 * n, 3 * n));
    // SAFETY: both buffers hold 3·n values (checked above).
    unsafe {
        moda_host_unit_chw_to_u8_hwc(
            &geometry::per_pixel(width, height),
            src.as_ptr(),
            count(n),
            dst.as_mut_ptr(),
        )
    };
}

/// `rgb_to_yuyv` with rows of `stride` bytes.
pub fn rgb_to_yuyv(rgb: &[u8], width: usize, height: usize, dst: &mut [u8], stride: usize) {
    use crate::sink::pixel::Layout;
    assert_eq!(rgb.len(), width * height * 3);
    assert!(stride >= Layout::Yuyv.min_stride(width));
    assert!(dst.len() >= Layout::Yuyv.frame_len(height, stride));
    // SAFETY: the kernel writes 4·⌈w/2⌉ ≤ stride bytes in each of `height` rows of `dst`,
    // which holds `stride·height` (checked above), and reads inside `rgb`.
    unsafe {
        moda_host_rgb_to_yuyv(
            &geometry::yuyv(width, height),
            rgb.as_ptr(),
            side(width),
            side(height),
            dst.as_mut_ptr(),
            count(stride),
        )
    };
}

/// `rgb_to_nv12` with rows of `stride` bytes.
pub fn rgb_to_nv12(rgb: &[u8], width: usize, height: usize, dst: &mut [u8], stride: usize) {
    use crate::sink::pixel::Layout;
    assert_eq!(rgb.len(), width * height * 3);
    assert!(stride >= Layout::Nv12.min_stride(width));
    assert!(dst.len() >= Layout::Nv12.frame_len(height, stride));
    // SAFETY: Y rows hold `width ≤ stride` bytes, CbCr rows 2·⌈w/2⌉ ≤ stride, and `dst` holds
    // `stride·(height + ⌈height/2⌉)` (checked above); reads stay inside `rgb`.
    unsafe {
        moda_host_rgb_to_nv12(
            &geometry::nv12(width, height),
            rgb.as_ptr(),
            side(width),
            side(height),
            dst.as_mut_ptr(),
            count(stride),
        )
    };
}

#[cfg(test)]
mod tests;
