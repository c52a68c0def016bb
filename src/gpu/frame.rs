//! The double-buffered GPU frame stage (feature `cuda`): points in, the rendered frame out,
//! with every per-frame step but the pose projection on the device.
//!
//! ```text
//! slot k mod 2, on its own stream:
//!   points ─▶ draw_clear ─▶ draw_segments ─▶ draw_colour ─▶ [shrink_2x] ─▶ u8_hwc_to_unit_chw ─┐
//!   frame index ─▶ time_code ─────────────────────────────────────────────────────────────────┤
//!                                                   renderer (TensorRT, or a stand-in) ◀──────┘
//!                                  ─▶ unit_chw_to_u8_hwc ─▶ [rgb_to_yuyv | rgb_to_nv12] ─▶ event
//! ```
//!
//! Two slots, each with its own stream and its own buffers (allocated once in
//! [`GpuFrameStage::new`]): while slot A's renderer runs, the host projects the next frame's
//! points and queues slot B, whose drawing overlaps A's network on the device; slot A's output
//! is handed to the sink only when the slot comes round again and its event has completed. With
//! `slots = 1` every frame waits for the one before, which is what `moda-edge gpu-check`
//! compares against. Frames leave in the order they were submitted.
//!
//! The kernels come from [`super::kernels`], compiled by NVRTC for the device (cached on disk,
//! [`super::nvrtc::CubinCache`]); nothing here allocates per frame.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use super::device::{Buffer, Gpu, GpuError, GpuEvent, Stream};
use super::kernels::{self, geometry, Arch, DrawPlan, Launch, Module, DRAW_POINTS};
use super::nvrtc::{CubinCache, Fetched, NvrtcError};
use crate::draw::condition::DrawError;

/// Errors of the GPU frame stage.
#[derive(Debug, thiserror::Error)]
pub enum FrameGpuError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Nvrtc(#[from] NvrtcError),
    #[error("kernel {kernel} of kernels/{module}.cu cannot be loaded: {detail}")]
    Load {
        module: &'static str,
        kernel: &'static str,
        detail: String,
    },
    #[error("kernel {kernel} failed to launch: {detail}")]
    Launch {
        kernel: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Draw(#[from] DrawError),
    #[error("frame stage settings: {0}")]
    Settings(String),
    #[error("renderer: {0}")]
    Renderer(String),
}

/// A loaded kernel.
pub(super) struct Kernel {
    name: &'static str,
    function: CudaFunction,
}

/// Every kernel of [`kernels::MODULES`] and the renderer stand-in, loaded on one device.
pub struct Kernels {
    all: Vec<Kernel>,
    _modules: Vec<Arc<CudaModule>>,
}

/// How each module was obtained, for the start-up log.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub module: &'static str,
    pub fetched: Fetched,
    pub millis: f64,
}

impl Kernels {
    /// Compiles (or takes from `cache`) and loads every module for `gpu`'s architecture.
    ///
    /// # Errors
    /// NVRTC missing or failing, or the driver refusing a cubin.
    pub fn load(
        gpu: &Gpu,
        cache: &CubinCache,
    ) -> Result<(Kernels, Vec<LoadReport>), FrameGpuError> {
        let (major, minor) = gpu.compute_capability();
        let arch = Arch { major, minor };
        let mut modules = Vec::new();
        let mut reports = Vec::new();
        let mut all = Vec::new();
        for module in kernels::MODULES {
            let t0 = std::time::Instant::now();
            let (cubin, fetched) = cache.cubin(module, arch)?;
            let loaded = gpu
                .context()
                .load_module(Ptx::from_binary(cubin))
                .map_err(|e| load_error(module, "(module)", e))?;
            for &name in module.kernels {
                let function = loaded
                    .load_function(name)
                    .map_err(|e| load_error(module, name, e))?;
                all.push(Kernel { name, function });
            }
            modules.push(loaded);
            reports.push(LoadReport {
                module: module.name,
                fetched,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            });
        }
        Ok((
            Kernels {
                all,
                _modules: modules,
            },
            reports,
        ))
    }

    /// The kernel called `name`.
    ///
    /// # Errors
    /// When no module defines it.
    pub(super) fn get(&self, name: &'static str) -> Result<&Kernel, FrameGpuError> {
        self.all
            .iter()
            .find(|k| k.name == name)
            .ok_or(FrameGpuError::Load {
                module: "?",
                kernel: name,
                detail: "not defined by any module".into(),
            })
    }
}

fn load_error(module: &Module, kernel: &'static str, e: impl std::fmt::Debug) -> FrameGpuError {
    FrameGpuError::Load {
        module: module.name,
        kernel,
        detail: format!("{e:?}"),
    }
}

/// Queues `kernel` on `stream`. `params` point at the argument values, in the kernel's order.
pub(super) fn launch(
    kernel: &Kernel,
    l: Launch,
    stream: &Stream,
    params: &mut [*mut c_void],
) -> Result<(), FrameGpuError> {
    // SAFETY: every caller passes pointers to live locals whose types match the kernel's C
    // parameters one for one (device addresses as u64, `int` as i32, `unsigned` as u32), and
    // device addresses of buffers owned by the frame stage, which outlives the queued work
    // (it synchronizes every slot before dropping them). The function belongs to the stream's
    // context, which the caller has bound to this thread.
    unsafe {
        result::launch_kernel(
            kernel.function.cu_function(),
            (l.grid[0], l.grid[1], l.grid[2]),
            (l.block[0], l.block[1], l.block[2]),
            0,
            stream.cuda().cu_stream(),
            params,
        )
    }
    .map_err(|e| FrameGpuError::Launch {
        kernel: kernel.name,
        detail: format!("{e:?}"),
    })
}

/// Pointer to a launch argument.
pub(super) fn arg<T>(v: &T) -> *mut c_void {
    (v as *const T).cast_mut().cast()
}

/// Device addresses of the renderer's tensors in one slot (float32, NCHW, batch 1).
#[derive(Debug, Clone, Copy)]
pub struct RendererIo {
    /// `mesh_image` [1,3,side,side] in [−1, 1].
    pub mesh_image: u64,
    /// `reference` [1,3,side,side] in [−1, 1].
    pub reference: u64,
    /// `time_code` [1,13].
    pub time_code: u64,
    /// `image` [1,3,side,side], the output.
    pub image: u64,
    pub side: usize,
}

/// The network step of the frame stage: binds each slot's buffers once, then queues runs on
/// the slot's stream.
pub trait SlotRenderer {
    /// Binds slot `slot`'s buffers (called once per slot, at start-up).
    ///
    /// # Errors
    /// When the renderer refuses the tensors (names, shapes).
    fn bind(&mut self, slot: usize, io: &RendererIo) -> Result<(), FrameGpuError>;

    /// Queues one run of slot `slot` on `stream`.
    ///
    /// # Errors
    /// When the run cannot be queued.
    fn enqueue(&mut self, slot: usize, stream: &Stream) -> Result<(), FrameGpuError>;
}

/// A stand-in for the renderer network (`kernels/standin.cu`): reads both images and the time
/// code and writes an output of the same shape after `rounds` dependent multiply-adds per
/// value, so it occupies the device for a chosen time. For timing the slots without TensorRT.
pub struct StandInRenderer<'k> {
    kernels: &'k Kernels,
    rounds: u32,
    io: Vec<RendererIo>,
}

impl<'k> StandInRenderer<'k> {
    pub fn new(kernels: &'k Kernels, rounds: u32) -> Self {
        StandInRenderer {
            kernels,
            rounds,
            io: Vec::new(),
        }
    }
}

impl SlotRenderer for StandInRenderer<'_> {
    fn bind(&mut self, slot: usize, io: &RendererIo) -> Result<(), FrameGpuError> {
        if self.io.len() <= slot {
            self.io.resize(slot + 1, *io);
        }
        self.io[slot] = *io;
        Ok(())
    }

    fn enqueue(&mut self, slot: usize, stream: &Stream) -> Result<(), FrameGpuError> {
        let io = self.io.get(slot).copied().ok_or_else(|| {
            FrameGpuError::Renderer(format!("stand-in: slot {slot} was never bound"))
        })?;
        let n = (3 * io.side * io.side) as u32;
        let (mesh, reference, code, image, rounds) = (
            io.mesh_image,
            io.reference,
            io.time_code,
            io.image,
            self.rounds,
        );
        launch(
            self.kernels.get("standin_render")?,
            Launch::linear(n as usize),
            stream,
            &mut [
                arg(&mesh),
                arg(&reference),
                arg(&code),
                arg(&image),
                arg(&n),
                arg(&rounds),
            ],
        )
    }
}

/// What the stage hands to the sink, in the layout chosen at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLayout {
    /// RGB24, `side × side × 3`, no padding.
    Rgb,
    /// V4L2 YUYV with rows of `stride` bytes.
    Yuyv { stride: usize },
    /// NV12 with rows of `stride` bytes.
    Nv12 { stride: usize },
}

/// Settings of the GPU frame stage.
#[derive(Debug, Clone, Copy)]
pub struct FrameGpuSettings {
    /// The condition canvas side (the avatar's, 512 officially).
    pub canvas: usize,
    /// The renderer's side: the canvas, or half of it (drawn at the canvas, then halved).
    pub side: usize,
    /// Frames in flight: 2 (double buffering) or 1.
    pub slots: usize,
    pub output: OutputLayout,
}

struct Pending {
    frame: u64,
    done: GpuEvent,
}

struct Slot {
    stream: Stream,
    points: Buffer,
    order: Buffer,
    cond: Buffer,
    small: Option<Buffer>,
    mesh: Buffer,
    code: Buffer,
    image: Buffer,
    rgb: Buffer,
    out: Option<Buffer>,
    pending: Option<Pending>,
}

/// The double-buffered frame stage.
pub struct GpuFrameStage<'k, R: SlotRenderer> {
    gpu: Gpu,
    kernels: &'k Kernels,
    renderer: R,
    settings: FrameGpuSettings,
    segments: Buffer,
    n_segments: u32,
    _reference: Buffer,
    slots: Vec<Slot>,
    next: usize,
    points: Vec<[i32; 2]>,
}

fn bytes_of_f32(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_ne_bytes());
    }
}

impl<'k, R: SlotRenderer> GpuFrameStage<'k, R> {
    /// Allocates every buffer of every slot, uploads the segment table and the reference
    /// (float32 CHW in [−1, 1], `3 × side × side`), and binds the renderer to each slot.
    ///
    /// # Errors
    /// Bad settings, an allocation or upload failure, or the renderer refusing its tensors.
    pub fn new(
        gpu: &Gpu,
        kernels: &'k Kernels,
        mut renderer: R,
        plan: &DrawPlan,
        reference: &[f32],
        settings: FrameGpuSettings,
    ) -> Result<Self, FrameGpuError> {
        let FrameGpuSettings {
            canvas,
            side,
            slots,
            output,
        } = settings;
        if !(1..=2).contains(&slots) {
            return Err(FrameGpuError::Settings(format!(
                "slots = {slots}, expected 1 or 2"
            )));
        }
        if side != canvas && 2 * side != canvas {
            return Err(FrameGpuError::Settings(format!(
                "renderer side {side} for a {canvas} canvas: expected the canvas side or half of it"
            )));
        }
        if reference.len() != 3 * side * side {
            return Err(FrameGpuError::Settings(format!(
                "reference has {} values, expected 3 × {side} × {side}",
                reference.len()
            )));
        }
        let out_len = match output {
            OutputLayout::Rgb => None,
            OutputLayout::Yuyv { stride } if stride >= 4 * side.div_ceil(2) => Some(stride * side),
            OutputLayout::Nv12 { stride } if stride >= 2 * side.div_ceil(2) => {
                Some(stride * (side + side.div_ceil(2)))
            }
            other => {
                return Err(FrameGpuError::Settings(format!(
                    "{other:?}: the stride is too small for a {side}-pixel row"
                )))
            }
        };
        gpu.context()
            .bind_to_thread()
            .map_err(|e| GpuError::Driver {
                what: "binding the context",
                detail: format!("{e:?}"),
            })?;
        let segs = plan.segments();
        let mut segments = gpu.buffer(std::mem::size_of_val(segs))?;
        for (d, s) in segments.host_mut().chunks_exact_mut(16).zip(segs) {
            d[0..4].copy_from_slice(&s.a.to_ne_bytes());
            d[4..8].copy_from_slice(&s.b.to_ne_bytes());
            d[8..12].copy_from_slice(&s.thickness.to_ne_bytes());
            d[12..16].copy_from_slice(&s.rgb.to_ne_bytes());
        }
        let mut reference_buf = gpu.buffer(4 * reference.len())?;
        bytes_of_f32(reference, reference_buf.host_mut());
        let setup = gpu.stream()?;
        setup.upload(&segments)?;
        setup.upload(&reference_buf)?;
        setup.synchronize()?;

        let mut all = Vec::with_capacity(slots);
        for i in 0..slots {
            let slot = Slot {
                stream: gpu.stream()?,
                points: gpu.buffer(DRAW_POINTS * 8)?,
                order: gpu.buffer(canvas * canvas * 4)?,
                cond: gpu.buffer(canvas * canvas * 3)?,
                small: if side != canvas {
                    Some(gpu.buffer(side * side * 3)?)
                } else {
                    None
                },
                mesh: gpu.buffer(3 * side * side * 4)?,
                code: gpu.buffer(13 * 4)?,
                image: gpu.buffer(3 * side * side * 4)?,
                rgb: gpu.buffer(side * side * 3)?,
                out: out_len.map(|n| gpu.buffer(n)).transpose()?,
                pending: None,
            };
            renderer.bind(
                i,
                &RendererIo {
                    mesh_image: slot.mesh.device_ptr(),
                    reference: reference_buf.device_ptr(),
                    time_code: slot.code.device_ptr(),
                    image: slot.image.device_ptr(),
                    side,
                },
            )?;
            all.push(slot);
        }
        Ok(GpuFrameStage {
            gpu: gpu.clone(),
            kernels,
            renderer,
            settings,
            n_segments: segs.len() as u32,
            segments,
            _reference: reference_buf,
            slots: all,
            next: 0,
            points: vec![[0; 2]; DRAW_POINTS],
        })
    }

    pub fn settings(&self) -> FrameGpuSettings {
        self.settings
    }

    /// Queues frame `frame` from 478 face and 18 shoulder pixel positions, with the temporal
    /// code of `code_index`. When the slot it takes still holds an earlier frame, that frame is
    /// waited for and handed to `sink` first (as `(frame, bytes)` in the output layout).
    ///
    /// # Errors
    /// Wrong point counts, or a device failure (of this frame or the one handed out).
    pub fn submit(
        &mut self,
        frame: u64,
        code_index: u64,
        face_px: &[[f64; 2]],
        shoulder_px: &[[f64; 2]],
        sink: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), FrameGpuError> {
        DrawPlan::truncate_points(face_px, shoulder_px, &mut self.points)?;
        self.bind()?;
        let i = self.next;
        self.next = (self.next + 1) % self.slots.len();
        self.hand_out(i, sink)?;
        let slot = &mut self.slots[i];
        for (d, p) in slot.points.host_mut().chunks_exact_mut(8).zip(&self.points) {
            d[0..4].copy_from_slice(&p[0].to_ne_bytes());
            d[4..8].copy_from_slice(&p[1].to_ne_bytes());
        }
        let slot = &self.slots[i];
        let k = self.kernels;
        let s = &slot.stream;
        let FrameGpuSettings {
            canvas,
            side,
            output,
            ..
        } = self.settings;
        s.upload(&slot.points)?;

        // The condition image.
        let (order, n_pixels) = (slot.order.device_ptr(), (canvas * canvas) as u32);
        launch(
            k.get("draw_clear")?,
            geometry::per_pixel(canvas, canvas),
            s,
            &mut [arg(&order), arg(&n_pixels)],
        )?;
        let (points, n_points) = (slot.points.device_ptr(), DRAW_POINTS as u32);
        let (segments, n_segments) = (self.segments.device_ptr(), self.n_segments);
        let (w, h) = (canvas as i32, canvas as i32);
        launch(
            k.get("draw_segments")?,
            geometry::per_segment(self.n_segments as usize),
            s,
            &mut [
                arg(&points),
                arg(&n_points),
                arg(&segments),
                arg(&n_segments),
                arg(&order),
                arg(&w),
                arg(&h),
            ],
        )?;
        let cond = slot.cond.device_ptr();
        launch(
            k.get("draw_colour")?,
            geometry::per_pixel_2d(canvas, canvas),
            s,
            &mut [
                arg(&order),
                arg(&segments),
                arg(&n_segments),
                arg(&cond),
                arg(&w),
                arg(&h),
            ],
        )?;
        let drawn = match &slot.small {
            Some(small) => {
                let dst = small.device_ptr();
                launch(
                    k.get("shrink_2x")?,
                    geometry::shrink_2x(canvas, canvas),
                    s,
                    &mut [arg(&cond), arg(&w), arg(&h), arg(&dst)],
                )?;
                dst
            }
            None => cond,
        };

        // The renderer's inputs, the network, the output conversions.
        let (mesh, n_side) = (slot.mesh.device_ptr(), (side * side) as u32);
        launch(
            k.get("u8_hwc_to_unit_chw")?,
            geometry::per_pixel(side, side),
            s,
            &mut [arg(&drawn), arg(&n_side), arg(&mesh)],
        )?;
        let code = slot.code.device_ptr();
        launch(
            k.get("time_code")?,
            geometry::time_code(),
            s,
            &mut [arg(&code_index), arg(&code)],
        )?;
        self.renderer.enqueue(i, s)?;
        let (image, rgb) = (slot.image.device_ptr(), slot.rgb.device_ptr());
        launch(
            k.get("unit_chw_to_u8_hwc")?,
            geometry::per_pixel(side, side),
            s,
            &mut [arg(&image), arg(&n_side), arg(&rgb)],
        )?;
        let (sw, sh) = (side as i32, side as i32);
        match (output, &slot.out) {
            (OutputLayout::Yuyv { stride }, Some(out)) => {
                let (dst, stride) = (out.device_ptr(), stride as u32);
                launch(
                    k.get("rgb_to_yuyv")?,
                    geometry::yuyv(side, side),
                    s,
                    &mut [arg(&rgb), arg(&sw), arg(&sh), arg(&dst), arg(&stride)],
                )?;
            }
            (OutputLayout::Nv12 { stride }, Some(out)) => {
                let (dst, stride) = (out.device_ptr(), stride as u32);
                launch(
                    k.get("rgb_to_nv12")?,
                    geometry::nv12(side, side),
                    s,
                    &mut [arg(&rgb), arg(&sw), arg(&sh), arg(&dst), arg(&stride)],
                )?;
            }
            _ => {}
        }
        let slot = &mut self.slots[i];
        match slot.out.as_mut() {
            Some(out) => slot.stream.download(out)?,
            None => slot.stream.download(&mut slot.rgb)?,
        }
        let done = slot.stream.record()?;
        slot.pending = Some(Pending { frame, done });
        Ok(())
    }

    /// Waits for every frame in flight and hands them to `sink`, oldest first.
    ///
    /// # Errors
    /// A device failure.
    pub fn finish(&mut self, sink: &mut dyn FnMut(u64, &[u8])) -> Result<(), FrameGpuError> {
        self.bind()?;
        for n in 0..self.slots.len() {
            let i = (self.next + n) % self.slots.len();
            self.hand_out(i, sink)?;
        }
        Ok(())
    }

    fn bind(&self) -> Result<(), FrameGpuError> {
        self.gpu.context().bind_to_thread().map_err(|e| {
            FrameGpuError::Gpu(GpuError::Driver {
                what: "binding the context",
                detail: format!("{e:?}"),
            })
        })
    }

    fn hand_out(
        &mut self,
        i: usize,
        sink: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), FrameGpuError> {
        let slot = &mut self.slots[i];
        if let Some(p) = slot.pending.take() {
            p.done.synchronize()?;
            let bytes = match &slot.out {
                Some(out) => out.host(),
                None => slot.rgb.host(),
            };
            sink(p.frame, bytes);
        }
        Ok(())
    }
}

impl<R: SlotRenderer> Drop for GpuFrameStage<'_, R> {
    fn drop(&mut self) {
        // Buffers are freed after the work that uses them.
        for slot in &self.slots {
            let _ = slot.stream.synchronize();
        }
    }
}
