//! Bit-for-bit comparisons of the kernels (run on the CPU) with the Rust stages.

use super::*;
use crate::draw::condition::{ConditionDrawer, DrawSettings};
use crate::draw::{convert, timecode};
use crate::face::repr::Repr;
use crate::face::synthetic::SyntheticSubject;
use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};
use crate::model::tensor::TensorData;
use crate::sink::pixel::{self, Layout};
use crate::util::npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// `../shared/reference/<rel>` beside the checkout (or under `$MODA_REFERENCE`); a missing file
/// fails the test, as in the integration tests.
fn reference_file(rel: &str) -> PathBuf {
    let dir = match std::env::var_os("MODA_REFERENCE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"),
    };
    let p = dir.join(rel);
    assert!(p.exists(), "reference file missing: {}", p.display());
    p
}

/// Index of the first element that differs (floats compared by their bits by the callers).
fn first_difference<T: PartialEq>(got: &[T], want: &[T]) -> Option<usize> {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter().zip(want).position(|(g, w)| g != w)
}

/// Panics naming the first differing pixel (x, y) of two `width`-wide images of `channels`
/// bytes per pixel, and how many pixels differ.
fn assert_same_image(what: &str, got: &[u8], want: &[u8], width: usize, channels: usize) {
    if let Some(i) = first_difference(got, want) {
        let px = i / channels;
        let differing = got
            .chunks(channels)
            .zip(want.chunks(channels))
            .filter(|(g, w)| g != w)
            .count();
        panic!(
            "{what}: {differing} pixels differ, first at ({}, {}): kernel {:?}, Rust {:?}",
            px % width,
            px / width,
            &got[px * channels..(px + 1) * channels],
            &want[px * channels..(px + 1) * channels],
        );
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Draws frames with the Rust drawer and with the kernels at one canvas size and compares.
struct DrawCheck {
    size: usize,
    plan: DrawPlan,
    drawer: ConditionDrawer,
    points: [[i32; 2]; DRAW_POINTS],
    order: Vec<u32>,
    kernel: Vec<u8>,
    cpu: Vec<u8>,
}

impl DrawCheck {
    fn new(size: usize) -> DrawCheck {
        let tables = Tables::official().unwrap();
        let settings = DrawSettings {
            width: size,
            height: size,
        };
        DrawCheck {
            size,
            plan: DrawPlan::new(&tables),
            drawer: ConditionDrawer::new(settings, tables).unwrap(),
            points: [[0; 2]; DRAW_POINTS],
            order: vec![0; size * size],
            kernel: vec![0; size * size * 3],
            cpu: vec![0; size * size * 3],
        }
    }

    /// Draws both; returns how many pixels are not black (so that a test can tell that it
    /// drew something).
    fn draw(&mut self, face: &[[f64; 2]], shoulders: &[[f64; 2]]) -> usize {
        self.drawer.process(face, shoulders, &mut self.cpu).unwrap();
        DrawPlan::truncate_points(face, shoulders, &mut self.points).unwrap();
        self.kernel.fill(0xAB);
        draw(
            &self.plan,
            &self.points,
            self.size,
            self.size,
            &mut self.order,
            &mut self.kernel,
        );
        self.cpu.chunks(3).filter(|p| p != &[0, 0, 0]).count()
    }

    fn check(&mut self, what: &str, face: &[[f64; 2]], shoulders: &[[f64; 2]]) -> usize {
        let lit = self.draw(face, shoulders);
        assert_same_image(what, &self.kernel, &self.cpu, self.size, 3);
        lit
    }
}

fn golden_pixels() -> (usize, Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let read = |rel: &str| {
        let t = npy::read(&reference_file(rel)).unwrap();
        let v = t.to_f64_vec();
        (
            t.shape.clone(),
            v.chunks_exact(2).map(|c| [c[0], c[1]]).collect::<Vec<_>>(),
        )
    };
    let (fs, face) = read("golden/e2e/face_px.npy");
    let (ss, sh) = read("golden/e2e/shoulder_px.npy");
    assert_eq!((&fs[1..], &ss[1..]), (&[478, 2][..], &[18, 2][..]));
    assert_eq!(fs[0], ss[0]);
    (fs[0], face, sh)
}

#[test]
fn condition_images_match_the_rust_drawer_on_every_golden_pose() {
    let (frames, face, sh) = golden_pixels();
    let mut big = DrawCheck::new(512);
    let mut small = DrawCheck::new(256);
    let half = |v: &[[f64; 2]]| {
        v.iter()
            .map(|p| [p[0] / 2.0, p[1] / 2.0])
            .collect::<Vec<_>>()
    };
    for k in 0..frames {
        let (f, s) = (
            &face[k * FACE_POINTS..(k + 1) * FACE_POINTS],
            &sh[k * SHOULDER_POINTS..(k + 1) * SHOULDER_POINTS],
        );
        let lit = big.check(&format!("golden frame {k} at 512"), f, s);
        assert!(lit > 3_000, "golden frame {k}: only {lit} pixels drawn");
        // At 256 the 512 poses spill over the right and bottom edges (clipping), and halved
        // they fill the canvas.
        small.check(&format!("golden frame {k} clipped at 256"), f, s);
        small.check(
            &format!("golden frame {k} halved at 256"),
            &half(f),
            &half(s),
        );
    }
}

#[test]
fn condition_images_match_the_official_golden_frames() {
    let idx = npy::read(&reference_file("golden/e2e/indices.npy")).unwrap();
    let indices: Vec<usize> = idx.to_f64_vec().iter().map(|&v| v as usize).collect();
    let cond = npy::read(&reference_file("golden/e2e/frames_cond.npy")).unwrap();
    let TensorData::U8(cond) = cond.data else {
        panic!("frames_cond.npy is not uint8")
    };
    let (_, face, sh) = golden_pixels();
    let mut check = DrawCheck::new(512);
    for (i, &k) in indices.iter().enumerate() {
        check.draw(
            &face[k * FACE_POINTS..(k + 1) * FACE_POINTS],
            &sh[k * SHOULDER_POINTS..(k + 1) * SHOULDER_POINTS],
        );
        let want = &cond[i * 512 * 512 * 3..(i + 1) * 512 * 512 * 3];
        assert_same_image(&format!("official frame {k}"), &check.kernel, want, 512, 3);
    }
}

#[test]
fn condition_images_match_on_the_demo_avatar_in_motion_and_off_canvas() {
    let tables = Tables::official().unwrap();
    let subject = SyntheticSubject::build(&tables).unwrap();
    let repr = Repr {
        templete: subject.template.clone(),
        shoulder: subject.shoulders.clone(),
        headmotion: subject.headmotion,
        centre: crate::face::pose::CANON_CENTER,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (mut face, mut sh) = (vec![[0.0; 2]; FACE_POINTS], vec![[0.0; 2]; SHOULDER_POINTS]);
    let mut checks = [DrawCheck::new(512), DrawCheck::new(256)];
    repr.rest_pixels(&mut face, &mut sh);
    for c in &mut checks {
        c.check("demo avatar at rest", &face, &sh);
    }
    for k in 0..48 {
        let t = k as f32 / 8.0;
        // Face residuals of a few pixels, head rotations up to ~0.5 rad, translations that
        // push the head partly and at the end wholly off the canvas, scales 0.3 to 3.
        let face_res: Vec<f32> = (0..FACE_POINTS * 3)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        let off = if k < 40 { 60.0 * t.sin() } else { 900.0 };
        let scale = if k % 12 == 11 {
            2.0
        } else {
            0.5 * (t * 0.7).cos() - 0.2
        };
        let head = [
            0.5 * (t * 1.3).sin(),
            0.4 * t.cos(),
            0.3 * (t * 0.5).sin(),
            off,
            -0.7 * off,
            10.0 * t.sin(),
            scale,
        ];
        let torso: Vec<f32> = (0..SHOULDER_POINTS * 3)
            .map(|_| rng.random_range(-20.0f32..20.0))
            .collect();
        repr.project_frame(&face_res, &head, &torso, &mut face, &mut sh)
            .unwrap();
        for c in &mut checks {
            let what = format!("demo avatar frame {k} at {}", c.size);
            c.check(&what, &face, &sh);
        }
    }
    // Degenerate and extreme points: every point on one pixel, on the borders, far outside.
    let corners = [
        [0.0, 0.0],
        [511.9, 0.0],
        [-1e9, 3.0],
        [7.0, 1e15],
        [f64::NAN, 5.0],
    ];
    for (i, p) in corners.iter().enumerate() {
        let f: Vec<[f64; 2]> = (0..FACE_POINTS)
            .map(|j| if j % 3 == 0 { *p } else { face[j] })
            .collect();
        let s = vec![corners[(i + 1) % corners.len()]; SHOULDER_POINTS];
        for c in &mut checks {
            c.check(&format!("extreme points {p:?} at {}", c.size), &f, &s);
        }
    }
}

#[test]
#[should_panic(expected = "1 pixels differ, first at (300, 200)")]
fn the_comparison_detects_a_single_changed_pixel() {
    let (_, face, sh) = golden_pixels();
    let mut check = DrawCheck::new(512);
    check.draw(&face[..FACE_POINTS], &sh[..SHOULDER_POINTS]);
    assert_same_image("unchanged", &check.kernel, &check.cpu, 512, 3);
    check.kernel[(200 * 512 + 300) * 3 + 1] ^= 1;
    assert_same_image(
        "one channel of one pixel flipped",
        &check.kernel,
        &check.cpu,
        512,
        3,
    );
}

#[test]
fn the_drawing_order_matters_and_is_detected() {
    // Overlapping segments in reverse order give another picture: the comparison is not
    // blind to which line wins.
    let (_, face, sh) = golden_pixels();
    let mut check = DrawCheck::new(512);
    check.draw(&face[..FACE_POINTS], &sh[..SHOULDER_POINTS]);
    let segs: Vec<Segment> = check.plan.segments().iter().rev().copied().collect();
    let reversed = DrawPlan::from_segments(segs);
    let mut rgb = vec![0u8; 512 * 512 * 3];
    draw(
        &reversed,
        &check.points,
        512,
        512,
        &mut check.order,
        &mut rgb,
    );
    assert!(first_difference(&rgb, &check.cpu).is_some());
}

#[test]
fn time_code_matches_for_every_frame_of_several_periods() {
    // Three periods of 9000 frames (5 minutes at 30 frames/s), then indices up to 2⁴⁰.
    let far = (0..40).flat_map(|e| {
        let b = 1u64 << e;
        [b - 1, b, b + 1, b + 37]
    });
    for k in (0..27_000u64).chain(far) {
        let want = timecode::time_code(k as usize);
        let got = time_code(k);
        assert_eq!(
            bits(&got),
            bits(&want),
            "frame {k}: kernel {got:?}, Rust {want:?}"
        );
    }
    let code = timecode::time_code(4321);
    for plane in [1usize, 7, 256 * 256] {
        let mut want = vec![0.0; 13 * plane];
        timecode::fill_planes(&code, &mut want);
        let mut got = vec![f32::NAN; 13 * plane];
        time_code_planes(&code, &mut got);
        assert_eq!(bits(&got), bits(&want), "planes of {plane}");
    }
}

fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

#[test]
fn pack_matches_for_all_levels_and_random_images() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // All 256 levels in every channel position.
    let levels: Vec<u8> = (0..=255u8)
        .flat_map(|v| [v, 255 - v, v.wrapping_mul(7)])
        .collect();
    let mut images = vec![(256usize, 1usize, levels)];
    for (w, h) in [(2, 2), (6, 4), (34, 18), (256, 256), (512, 512)] {
        images.push((w, h, random_bytes(&mut rng, w * h * 3)));
    }
    for (w, h, img) in &images {
        let (w, h) = (*w, *h);
        let mut want = vec![0.0f32; w * h * 3];
        convert::u8_hwc_to_unit_chw(img, w, h, &mut want).unwrap();
        let mut got = vec![f32::NAN; w * h * 3];
        u8_hwc_to_unit_chw(img, w, h, &mut got);
        assert!(
            first_difference(&bits(&got), &bits(&want)).is_none(),
            "{w}×{h}"
        );
        if w.is_multiple_of(2) && h.is_multiple_of(2) {
            let mut want = vec![0u8; w * h * 3 / 4];
            convert::shrink_2x(img, w, h, &mut want).unwrap();
            let mut got = vec![0xABu8; w * h * 3 / 4];
            shrink_2x(img, w, h, &mut got);
            assert_same_image(&format!("shrink {w}×{h}"), &got, &want, w / 2, 3);
        }
    }
}

#[test]
fn unpack_matches_for_special_and_random_floats() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut values = vec![
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45,
        3.0,
        -3.0,
        1e30,
    ];
    // Around every level boundary p = 2k/255 − 1: 16 floats either side.
    for k in 0..=256 {
        let p = 2.0 * k as f32 / 255.0 - 1.0;
        for d in -16i32..=16 {
            values.push(f32::from_bits(p.to_bits().wrapping_add_signed(d)));
        }
    }
    values.extend((0..200_000).map(|_| rng.random_range(-1.2f32..1.2)));
    values.extend((0..200_000).map(|_| f32::from_bits(rng.random::<u32>())));
    values.resize(values.len().div_ceil(3) * 3, 0.5);
    let n = values.len() / 3;
    let mut want = vec![0u8; values.len()];
    convert::unit_chw_to_u8_hwc(&values, n, 1, &mut want).unwrap();
    let mut got = vec![0xABu8; values.len()];
    unit_chw_to_u8_hwc(&values, n, 1, &mut got);
    if let Some(i) = first_difference(&got, &want) {
        let v = values[(i % 3) * n + i / 3];
        panic!(
            "value {v:e} ({:#x}): kernel {}, Rust {}",
            v.to_bits(),
            got[i],
            want[i]
        );
    }
}

#[test]
fn yuyv_and_nv12_match_for_odd_even_sizes_and_padded_strides() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (w, h) in [
        (1, 1),
        (2, 2),
        (1, 4),
        (3, 5),
        (7, 5),
        (16, 8),
        (17, 9),
        (511, 3),
        (512, 512),
    ] {
        let rgb = random_bytes(&mut rng, w * h * 3);
        for (layout, pad) in [
            (Layout::Yuyv, 0),
            (Layout::Yuyv, 13),
            (Layout::Nv12, 0),
            (Layout::Nv12, 64),
        ] {
            let stride = layout.min_stride(w) + pad;
            let len = layout.frame_len(h, stride);
            // Padding keeps its bytes in both.
            let mut want = vec![0x5Au8; len];
            pixel::convert(layout, &rgb, w, h, &mut want, stride).unwrap();
            let mut got = vec![0x5Au8; len];
            match layout {
                Layout::Yuyv => rgb_to_yuyv(&rgb, w, h, &mut got, stride),
                _ => rgb_to_nv12(&rgb, w, h, &mut got, stride),
            }
            assert_same_image(
                &format!("{layout:?} {w}×{h} stride {stride}"),
                &got,
                &want,
                stride,
                1,
            );
        }
    }
}

/// `launch`, which the host frame device queues, passes every `Call`'s fields to the right
/// kernel in the right order: each call gives what the slice wrappers (checked above against
/// the Rust stages) give on the same data.
#[test]
fn launch_calls_reach_their_kernels_with_their_arguments() {
    use crate::gpu::frame::Call;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (w, h) = (18usize, 10usize);
    let rgb = random_bytes(&mut rng, w * h * 3);
    let addr = |p: *const u8| p as u64;

    let mut a = vec![0u8; w * h * 3 / 4];
    let mut b = vec![0u8; w * h * 3 / 4];
    shrink_2x(&rgb, w, h, &mut a);
    // SAFETY: `rgb` is w×h×3 bytes and `b` its half-size shrink.
    unsafe {
        launch(Call::Shrink2x {
            src: addr(rgb.as_ptr()),
            width: w as i32,
            height: h as i32,
            dst: addr(b.as_mut_ptr()),
        })
    };
    assert_eq!(a, b);

    let mut fa = vec![0f32; w * h * 3];
    let mut fb = vec![0f32; w * h * 3];
    u8_hwc_to_unit_chw(&rgb, w, h, &mut fa);
    // SAFETY: both buffers hold 3·w·h values.
    unsafe {
        launch(Call::ToUnit {
            src: addr(rgb.as_ptr()),
            n_pixels: (w * h) as u32,
            dst: fb.as_mut_ptr() as u64,
        })
    };
    assert_eq!(bits(&fa), bits(&fb));

    let mut ua = vec![0u8; w * h * 3];
    let mut ub = vec![0u8; w * h * 3];
    unit_chw_to_u8_hwc(&fa, w, h, &mut ua);
    // SAFETY: as above.
    unsafe {
        launch(Call::ToU8 {
            src: fa.as_ptr() as u64,
            n_pixels: (w * h) as u32,
            dst: addr(ub.as_mut_ptr()),
        })
    };
    assert_eq!(ua, ub);

    let mut code = [0f32; 13];
    // SAFETY: `code` holds the 13 values the kernel writes.
    unsafe {
        launch(Call::TimeCode {
            frame: 1234,
            code: code.as_mut_ptr() as u64,
        })
    };
    assert_eq!(bits(&code), bits(&time_code(1234)));

    for layout in [Layout::Yuyv, Layout::Nv12] {
        let stride = layout.min_stride(w) + 6;
        let mut ya = vec![0u8; layout.frame_len(h, stride)];
        let mut yb = ya.clone();
        let call = |dst: u64| {
            let (width, height, stride) = (w as i32, h as i32, stride as u32);
            let rgb = addr(rgb.as_ptr());
            if layout == Layout::Yuyv {
                Call::Yuyv {
                    rgb,
                    width,
                    height,
                    dst,
                    stride,
                }
            } else {
                Call::Nv12 {
                    rgb,
                    width,
                    height,
                    dst,
                    stride,
                }
            }
        };
        if layout == Layout::Yuyv {
            rgb_to_yuyv(&rgb, w, h, &mut ya, stride);
        } else {
            rgb_to_nv12(&rgb, w, h, &mut ya, stride);
        }
        // SAFETY: `yb` holds the layout's frame at this stride.
        unsafe { launch(call(addr(yb.as_mut_ptr()))) };
        assert_eq!(ya, yb, "{layout:?}");
    }

    // The stand-in renderer, against the same float arithmetic in Rust.
    let n = 300usize;
    let mesh: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let reference: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut image = vec![f32::NAN; n];
    // SAFETY: mesh, reference and image hold n values, code 13.
    unsafe {
        launch(Call::StandIn {
            mesh: mesh.as_ptr() as u64,
            reference: reference.as_ptr() as u64,
            code: code.as_ptr() as u64,
            image: image.as_mut_ptr() as u64,
            n: n as u32,
            rounds: 7,
        })
    };
    let want: Vec<f32> = (0..n)
        .map(|i| {
            let mut v = 0.5f32 * (mesh[i] + reference[i]) + 0.001f32 * code[0];
            for _ in 0..7 {
                v = v * 0.999f32 + 0.0005f32;
            }
            v.clamp(-1.0, 1.0)
        })
        .collect();
    assert_eq!(bits(&image), bits(&want));

    // Drawing through the three calls equals `draw`.
    let tables = Tables::official().unwrap();
    let plan = DrawPlan::new(&tables);
    let mut pts = [[0i32; 2]; DRAW_POINTS];
    for p in pts.iter_mut() {
        *p = [rng.random_range(-5..70), rng.random_range(-5..50)];
    }
    let (cw, ch) = (64usize, 48usize);
    let mut order = vec![0u32; cw * ch];
    let mut want = vec![0u8; cw * ch * 3];
    draw(&plan, &pts, cw, ch, &mut order, &mut want);
    let mut order = vec![7u32; cw * ch];
    let mut got = vec![0u8; cw * ch * 3];
    let segs = plan.segments();
    let calls = [
        Call::DrawClear {
            order: order.as_mut_ptr() as u64,
            n: (cw * ch) as u32,
        },
        Call::DrawSegments {
            points: pts.as_ptr() as u64,
            n_points: DRAW_POINTS as u32,
            segments: segs.as_ptr() as u64,
            n_segments: segs.len() as u32,
            order: order.as_mut_ptr() as u64,
            width: cw as i32,
            height: ch as i32,
        },
        Call::DrawColour {
            order: order.as_ptr() as u64,
            segments: segs.as_ptr() as u64,
            n_segments: segs.len() as u32,
            rgb: addr(got.as_mut_ptr()),
            width: cw as i32,
            height: ch as i32,
        },
    ];
    for c in calls {
        // SAFETY: order is cw×ch, got cw×ch×3, pts DRAW_POINTS pairs, segs the plan's table.
        unsafe { launch(c) };
    }
    assert_same_image("launched drawing", &got, &want, cw, 3);
}
