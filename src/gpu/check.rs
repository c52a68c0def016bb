//! `moda-edge gpu-check` (feature `cuda`): on a machine with a GPU, runs every kernel on the
//! device against the Rust CPU stages (bit for bit), then times the frame stage with two slots
//! against one, with [`StandInRenderer`] in place of the network. `scripts/gpu-check.sh`
//! builds and runs it.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::sync::Arc;

use super::cuda_frame::{CudaFrameDevice, Kernels};
use super::device::{Buffer, Gpu, Stream};
use super::frame::{
    point_bytes, segment_bytes, Call, FrameDevice, FrameGpuError, FrameGpuSettings, GpuFrameStage,
    OutputLayout, StandInRenderer,
};
use super::kernels::{DrawPlan, DRAW_POINTS};
use super::nvrtc::CubinCache;
use crate::draw::condition::{ConditionDrawer, DrawSettings};
use crate::draw::convert::{shrink_2x, u8_hwc_to_unit_chw, unit_chw_to_u8_hwc};
use crate::draw::timecode::time_code;
use crate::face::repr::Repr;
use crate::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};
use crate::sink::pixel::{self, Layout};

/// What `gpu-check` runs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub device: usize,
    /// Frames compared (drawing, conversions) and timed (slots).
    pub frames: usize,
    /// The stand-in renderer's multiply-adds per value (sets its device time).
    pub rounds: u32,
    /// Temporal-code indices compared: `0..time_codes`.
    pub time_codes: u64,
    pub cache: CubinCache,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything `gpu-check` measured.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub device: String,
    pub lines: Vec<CheckLine>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.passed)
    }
}

fn f32_bytes(v: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(v) {
        d.copy_from_slice(&s.to_ne_bytes());
    }
}

fn f32_from(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
}

/// Points of frame `k`: the avatar's rest pose with small seeded residuals and a head swing.
fn frame_points(
    repr: &Repr,
    rng: &mut ChaCha8Rng,
    k: usize,
    face_px: &mut [[f64; 2]],
    shoulder_px: &mut [[f64; 2]],
) -> Result<(), FrameGpuError> {
    let face: Vec<f32> = (0..FACE_POINTS * 3)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let torso: Vec<f32> = (0..SHOULDER_POINTS * 3)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let head = [
        0.6 * (k as f32 * 0.1).sin(),
        0.3 * (k as f32 * 0.07).cos(),
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    repr.project_frame(&face, &head, &torso, face_px, shoulder_px)
        .map_err(|e| FrameGpuError::Settings(e.to_string()))
}

struct Probe {
    device: CudaFrameDevice,
    stream: Stream,
}

impl Probe {
    /// Queues `call`.
    ///
    /// # Safety
    /// As [`FrameDevice::launch`]: the addresses are of live buffers large enough for `call`.
    unsafe fn run(&self, call: Call) -> Result<(), FrameGpuError> {
        // SAFETY: passed on to the caller.
        unsafe { self.device.launch(&self.stream, call) }
    }

    fn finish(&self) -> Result<(), FrameGpuError> {
        self.stream.record()?.synchronize()?;
        Ok(())
    }
}

fn line(what: impl Into<String>, mismatches: usize, total: usize) -> CheckLine {
    CheckLine {
        what: what.into(),
        passed: mismatches == 0,
        detail: format!("{} of {total} values differ", mismatches),
    }
}

/// Runs the comparison and the timing.
///
/// # Errors
/// No driver, no NVRTC, or a device failure (a mismatch is a failed line, not an error).
pub fn run(
    opts: &CheckOptions,
    repr: &Repr,
    canvas: usize,
    mut log: impl FnMut(&str),
) -> Result<CheckReport, FrameGpuError> {
    let gpu = Gpu::open(opts.device)?;
    let (major, minor) = gpu.compute_capability();
    let device = format!(
        "{} (sm_{major}{minor}, {})",
        gpu.name(),
        if gpu.integrated() {
            "integrated: mapped pinned memory"
        } else {
            "discrete: device memory + pinned copies"
        }
    );
    log(&format!("device: {device}"));
    let (kernels, loads) = Kernels::load(&gpu, &opts.cache)?;
    let kernels = Arc::new(kernels);
    for l in &loads {
        log(&format!(
            "kernels/{}.cu: {:?} in {:.1} ms",
            l.module, l.fetched, l.millis
        ));
    }
    let mut lines = Vec::new();
    let probe = Probe {
        device: CudaFrameDevice::new(gpu.clone(), Arc::clone(&kernels)),
        stream: gpu.stream()?,
    };
    lines.extend(check_drawing(&gpu, &probe, opts, repr, canvas)?);
    lines.push(check_time_code(&gpu, &probe, opts.time_codes)?);
    lines.extend(check_conversions(&gpu, &probe, canvas)?);
    for l in &lines {
        log(&format!(
            "{} {}: {}",
            if l.passed { "ok  " } else { "FAIL" },
            l.what,
            l.detail
        ));
    }
    lines.extend(time_slots(&gpu, &kernels, opts, repr, canvas, &mut log)?);
    Ok(CheckReport { device, lines })
}

fn check_drawing(
    gpu: &Gpu,
    p: &Probe,
    opts: &CheckOptions,
    repr: &Repr,
    canvas: usize,
) -> Result<Vec<CheckLine>, FrameGpuError> {
    let tables = Tables::official().map_err(|e| FrameGpuError::Settings(e.to_string()))?;
    let plan = DrawPlan::new(&tables);
    let mut drawer = ConditionDrawer::new(
        DrawSettings {
            width: canvas,
            height: canvas,
        },
        tables,
    )?;
    let segs = plan.segments();
    let mut segments = gpu.buffer(16 * segs.len())?;
    segment_bytes(&plan, segments.host_mut());
    let mut points = gpu.buffer(DRAW_POINTS * 8)?;
    let order = gpu.buffer(canvas * canvas * 4)?;
    let cond = gpu.buffer(canvas * canvas * 3)?;
    let half = canvas / 2;
    let small = gpu.buffer(half * half * 3)?;
    let unit = gpu.buffer(3 * canvas * canvas * 4)?;
    p.stream.upload(&segments)?;

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut face_px = vec![[0.0; 2]; FACE_POINTS];
    let mut shoulder_px = vec![[0.0; 2]; SHOULDER_POINTS];
    let mut pts = vec![[0i32; 2]; DRAW_POINTS];
    let mut cpu = vec![0u8; canvas * canvas * 3];
    let mut cpu_small = vec![0u8; half * half * 3];
    let mut cpu_unit = vec![0f32; 3 * canvas * canvas];
    let (mut bad_draw, mut bad_shrink, mut bad_unit) = (0, 0, 0);
    let (w, h) = (canvas as i32, canvas as i32);
    let (n_pixels, n_points, n_segments) = (
        (canvas * canvas) as u32,
        DRAW_POINTS as u32,
        segs.len() as u32,
    );
    for k in 0..opts.frames {
        frame_points(repr, &mut rng, k, &mut face_px, &mut shoulder_px)?;
        DrawPlan::truncate_points(&face_px, &shoulder_px, &mut pts)?;
        point_bytes(&pts, points.host_mut());
        p.stream.upload(&points)?;
        let (o, pt, sg, c, sm, u) = (
            order.device_ptr(),
            points.device_ptr(),
            segments.device_ptr(),
            cond.device_ptr(),
            small.device_ptr(),
            unit.device_ptr(),
        );
        let calls = [
            Call::DrawClear {
                order: o,
                n: n_pixels,
            },
            Call::DrawSegments {
                points: pt,
                n_points,
                segments: sg,
                n_segments,
                order: o,
                width: w,
                height: h,
            },
            Call::DrawColour {
                order: o,
                segments: sg,
                n_segments,
                rgb: c,
                width: w,
                height: h,
            },
            Call::Shrink2x {
                src: c,
                width: w,
                height: h,
                dst: sm,
            },
            Call::ToUnit {
                src: c,
                n_pixels,
                dst: u,
            },
        ];
        for call in calls {
            // SAFETY: the buffers above are sized for the canvas (order: canvas² u32, cond:
            // canvas²·3, small: (canvas/2)²·3, unit: 3·canvas² f32), the segment table and
            // the 496 points; they outlive `p.finish()` below.
            unsafe { p.run(call)? };
        }
        p.stream.download(&cond)?;
        p.stream.download(&small)?;
        p.stream.download(&unit)?;
        p.finish()?;

        drawer.process(&face_px, &shoulder_px, &mut cpu)?;
        bad_draw += cpu.iter().zip(cond.host()).filter(|(a, b)| a != b).count();
        shrink_2x(&cpu, canvas, canvas, &mut cpu_small)
            .map_err(|e| FrameGpuError::Settings(e.to_string()))?;
        bad_shrink += cpu_small
            .iter()
            .zip(small.host())
            .filter(|(a, b)| a != b)
            .count();
        u8_hwc_to_unit_chw(&cpu, canvas, canvas, &mut cpu_unit)
            .map_err(|e| FrameGpuError::Settings(e.to_string()))?;
        bad_unit += cpu_unit
            .iter()
            .zip(f32_from(unit.host()))
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
    }
    let n = opts.frames;
    Ok(vec![
        line(
            format!("condition image ({n} frames, {canvas}²)"),
            bad_draw,
            n * cpu.len(),
        ),
        line(
            format!("shrink_2x ({n} frames)"),
            bad_shrink,
            n * cpu_small.len(),
        ),
        line(
            format!("u8 → [−1, 1] float ({n} frames)"),
            bad_unit,
            n * cpu_unit.len(),
        ),
    ])
}

fn check_time_code(gpu: &Gpu, p: &Probe, count: u64) -> Result<CheckLine, FrameGpuError> {
    let code = gpu.buffer(13 * 4)?;
    let mut bad = 0;
    for k in 0..count {
        let c = code.device_ptr();
        // SAFETY: `code` holds 13 floats, all the kernel writes; it outlives `p.finish()`.
        unsafe { p.run(Call::TimeCode { frame: k, code: c })? };
        p.stream.download(&code)?;
        p.finish()?;
        bad += time_code(k as usize)
            .iter()
            .zip(f32_from(code.host()))
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
    }
    Ok(line(
        format!("time code (frames 0..{count})"),
        bad,
        13 * count as usize,
    ))
}

fn check_conversions(gpu: &Gpu, p: &Probe, side: usize) -> Result<Vec<CheckLine>, FrameGpuError> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = side * side;
    // Renderer outputs: mostly in range, with the edges and non-finite values mixed in.
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1.0,
        1.0,
        0.0,
        -0.0,
        1.5,
        -3.0,
    ];
    let values: Vec<f32> = (0..3 * n)
        .map(|i| {
            if i % 97 == 0 {
                specials[(i / 97) % specials.len()]
            } else {
                rng.random_range(-1.05f32..1.05)
            }
        })
        .collect();
    let mut src = gpu.buffer(4 * values.len())?;
    f32_bytes(&values, src.host_mut());
    let rgb = gpu.buffer(3 * n)?;
    p.stream.upload(&src)?;
    let (s, d, np) = (src.device_ptr(), rgb.device_ptr(), n as u32);
    // SAFETY: `src` holds 3·n floats and `rgb` 3·n bytes; both outlive `p.finish()`.
    unsafe {
        p.run(Call::ToU8 {
            src: s,
            n_pixels: np,
            dst: d,
        })?
    };
    p.stream.download(&rgb)?;
    p.finish()?;
    let mut cpu = vec![0u8; 3 * n];
    unit_chw_to_u8_hwc(&values, side, side, &mut cpu)
        .map_err(|e| FrameGpuError::Settings(e.to_string()))?;
    let mut lines = vec![line(
        "float → u8 (truncation, non-finite values)",
        cpu.iter().zip(rgb.host()).filter(|(a, b)| a != b).count(),
        cpu.len(),
    )];

    // RGB → YUYV and NV12, on a random picture, odd and even sizes, padded rows.
    for (w, h) in [(side, side), (side - 1, side - 3)] {
        let pic: Vec<u8> = (0..w * h * 3).map(|_| rng.random()).collect();
        let mut src = gpu.buffer(pic.len())?;
        src.host_mut().copy_from_slice(&pic);
        p.stream.upload(&src)?;
        for (layout, kernel) in [(Layout::Yuyv, "rgb_to_yuyv"), (Layout::Nv12, "rgb_to_nv12")] {
            let stride = layout.min_stride(w) + 64;
            let len = layout.frame_len(h, stride);
            let mut dst: Buffer = gpu.buffer(len)?;
            let mut cpu = vec![0u8; len];
            pixel::convert(layout, &pic, w, h, &mut cpu, stride)
                .map_err(|e| FrameGpuError::Settings(e.to_string()))?;
            // The padding is not written by either side: start both equal.
            dst.host_mut().copy_from_slice(&cpu);
            for (i, b) in dst.host_mut().iter_mut().enumerate() {
                if i % stride < layout.min_stride(w) {
                    *b = 0;
                }
            }
            p.stream.upload(&dst)?;
            let (sp, dp, wi, hi, st) = (
                src.device_ptr(),
                dst.device_ptr(),
                w as i32,
                h as i32,
                stride as u32,
            );
            let call = if layout == Layout::Yuyv {
                Call::Yuyv {
                    rgb: sp,
                    width: wi,
                    height: hi,
                    dst: dp,
                    stride: st,
                }
            } else {
                Call::Nv12 {
                    rgb: sp,
                    width: wi,
                    height: hi,
                    dst: dp,
                    stride: st,
                }
            };
            // SAFETY: `src` holds the w×h RGB picture and `dst` the layout's frame at this
            // stride (`frame_len`); both outlive `p.finish()`.
            unsafe { p.run(call)? };
            p.stream.download(&dst)?;
            p.finish()?;
            lines.push(line(
                format!("{kernel} ({w}×{h}, stride {stride})"),
                cpu.iter().zip(dst.host()).filter(|(a, b)| a != b).count(),
                len,
            ));
        }
    }
    Ok(lines)
}

/// Frames per second of the frame stage with one and with two slots.
fn time_slots(
    gpu: &Gpu,
    kernels: &Arc<Kernels>,
    opts: &CheckOptions,
    repr: &Repr,
    canvas: usize,
    log: &mut impl FnMut(&str),
) -> Result<Vec<CheckLine>, FrameGpuError> {
    let tables = Tables::official().map_err(|e| FrameGpuError::Settings(e.to_string()))?;
    let plan = DrawPlan::new(&tables);
    let side = canvas;
    let reference = vec![0.25f32; 3 * side * side];
    let mut fps = Vec::new();
    for slots in [1, 2] {
        let settings = FrameGpuSettings {
            canvas,
            side,
            slots,
            output: OutputLayout::Yuyv { stride: 2 * side },
        };
        let mut stage = GpuFrameStage::new(
            CudaFrameDevice::new(gpu.clone(), Arc::clone(kernels)),
            StandInRenderer::new(opts.rounds),
            &plan,
            &reference,
            settings,
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut face_px = vec![[0.0; 2]; FACE_POINTS];
        let mut shoulder_px = vec![[0.0; 2]; SHOULDER_POINTS];
        let mut received = 0u64;
        let mut in_order = true;
        let mut sink = |frame: u64, _bytes: &[u8]| {
            in_order &= frame == received;
            received += 1;
        };
        // Warm-up: one frame per slot.
        for k in 0..slots as u64 {
            frame_points(repr, &mut rng, k as usize, &mut face_px, &mut shoulder_px)?;
            stage.submit(k, k, &face_px, &shoulder_px, &mut sink)?;
        }
        let t0 = Instant::now();
        for k in slots as u64..(slots + opts.frames) as u64 {
            frame_points(repr, &mut rng, k as usize, &mut face_px, &mut shoulder_px)?;
            stage.submit(k, k % 600, &face_px, &shoulder_px, &mut sink)?;
        }
        stage.finish(&mut sink)?;
        let secs = t0.elapsed().as_secs_f64();
        let rate = opts.frames as f64 / secs;
        log(&format!(
            "{slots} slot(s), stand-in renderer ({} rounds): {} frames in {secs:.2} s, {rate:.1} frames/s",
            opts.rounds, opts.frames
        ));
        fps.push(rate);
        drop(stage);
        if !in_order || received != (slots + opts.frames) as u64 {
            return Err(FrameGpuError::Settings(format!(
                "{slots} slot(s): the frame stage handed out {received} frames, out of order or \
                 short of {}",
                slots + opts.frames
            )));
        }
    }
    Ok(vec![CheckLine {
        what: "two slots against one (stand-in renderer)".into(),
        passed: true,
        detail: format!(
            "1 slot {:.1} frames/s, 2 slots {:.1} frames/s ({:.2}×)",
            fps[0],
            fps[1],
            fps[1] / fps[0]
        ),
    }])
}
