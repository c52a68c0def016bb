//! The double-buffered GPU frame stage: points in, the rendered frame out, with every
//! per-frame step but the pose projection on the device.
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
//! compares against. Frames leave in the order they were submitted. Nothing here allocates per
//! frame.
//!
//! The stage is generic over a [`FrameDevice`]: the CUDA device (`super::cuda_frame`, feature
//! `cuda`) launches the NVRTC-compiled kernels of [`super::kernels`] on CUDA streams; the host
//! device (`super::host_device`, feature `tensorrt-fake`, for tests and CI) runs the same kernel
//! source compiled as C++ on in-order queues, so the slots, streams, events and hand-offs, and
//! every kernel's arguments, are exercised without a GPU.

use std::ffi::c_void;

use super::kernels::{geometry, DrawPlan, Launch, DRAW_POINTS};
use crate::draw::condition::DrawError;

/// Errors of the GPU frame stage.
#[derive(Debug, thiserror::Error)]
pub enum FrameGpuError {
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Gpu(#[from] super::device::GpuError),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Nvrtc(#[from] super::nvrtc::NvrtcError),
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
    #[error("frame device: {0}")]
    Device(String),
    #[error(transparent)]
    Draw(#[from] DrawError),
    #[error("frame stage settings: {0}")]
    Settings(String),
    #[error("renderer: {0}")]
    Renderer(String),
}

/// One kernel launch with its arguments (device addresses as `u64`), in the kernels' C order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    DrawClear {
        order: u64,
        n: u32,
    },
    DrawSegments {
        points: u64,
        n_points: u32,
        segments: u64,
        n_segments: u32,
        order: u64,
        width: i32,
        height: i32,
    },
    DrawColour {
        order: u64,
        segments: u64,
        n_segments: u32,
        rgb: u64,
        width: i32,
        height: i32,
    },
    Shrink2x {
        src: u64,
        width: i32,
        height: i32,
        dst: u64,
    },
    ToUnit {
        src: u64,
        n_pixels: u32,
        dst: u64,
    },
    TimeCode {
        frame: u64,
        code: u64,
    },
    ToU8 {
        src: u64,
        n_pixels: u32,
        dst: u64,
    },
    Yuyv {
        rgb: u64,
        width: i32,
        height: i32,
        dst: u64,
        stride: u32,
    },
    Nv12 {
        rgb: u64,
        width: i32,
        height: i32,
        dst: u64,
        stride: u32,
    },
    StandIn {
        mesh: u64,
        reference: u64,
        code: u64,
        image: u64,
        n: u32,
        rounds: u32,
    },
}

fn side(v: i32) -> usize {
    usize::try_from(v).unwrap_or(0)
}

impl Call {
    /// The kernel's entry point name.
    pub fn kernel(&self) -> &'static str {
        match self {
            Call::DrawClear { .. } => "draw_clear",
            Call::DrawSegments { .. } => "draw_segments",
            Call::DrawColour { .. } => "draw_colour",
            Call::Shrink2x { .. } => "shrink_2x",
            Call::ToUnit { .. } => "u8_hwc_to_unit_chw",
            Call::TimeCode { .. } => "time_code",
            Call::ToU8 { .. } => "unit_chw_to_u8_hwc",
            Call::Yuyv { .. } => "rgb_to_yuyv",
            Call::Nv12 { .. } => "rgb_to_nv12",
            Call::StandIn { .. } => "standin_render",
        }
    }

    /// The grid the kernel is launched with ([`geometry`]).
    pub fn launch(&self) -> Launch {
        match *self {
            Call::DrawClear { n, .. } => Launch::linear(n as usize),
            Call::DrawSegments { n_segments, .. } => geometry::per_segment(n_segments as usize),
            Call::DrawColour { width, height, .. } => {
                geometry::per_pixel_2d(side(width), side(height))
            }
            Call::Shrink2x { width, height, .. } => geometry::shrink_2x(side(width), side(height)),
            Call::ToUnit { n_pixels, .. } | Call::ToU8 { n_pixels, .. } => {
                Launch::linear(n_pixels as usize)
            }
            Call::TimeCode { .. } => geometry::time_code(),
            Call::Yuyv { width, height, .. } => geometry::yuyv(side(width), side(height)),
            Call::Nv12 { width, height, .. } => geometry::nv12(side(width), side(height)),
            Call::StandIn { n, .. } => Launch::linear(n as usize),
        }
    }
}

/// Bytes the device and the host both reach (see [`FrameDevice`]).
pub trait FrameBuffer: Send {
    /// The address kernels and the renderer use.
    fn device_ptr(&self) -> u64;
    /// The host side; read it only after the producing stream's event has completed.
    fn host(&self) -> &[u8];
    fn host_mut(&mut self) -> &mut [u8];
}

/// What the frame stage needs of a device: buffers, in-order streams, events and the kernels.
pub trait FrameDevice: Send {
    type Buffer: FrameBuffer;
    type Stream: Send;
    type Event: Send;

    /// A buffer of `bytes` bytes, zero-filled.
    ///
    /// # Errors
    /// When the device cannot allocate it.
    fn buffer(&self, bytes: usize) -> Result<Self::Buffer, FrameGpuError>;
    /// A new in-order stream.
    ///
    /// # Errors
    /// When the device cannot create one.
    fn stream(&self) -> Result<Self::Stream, FrameGpuError>;
    /// The stream as the renderer takes it (`cudaStream_t`, or the fake's handle).
    fn raw_stream(&self, stream: &Self::Stream) -> *mut c_void;
    /// Queues the host side's copy to the device (nothing where both sides are one memory).
    ///
    /// # Errors
    /// When the device refuses the copy.
    fn upload(&self, stream: &Self::Stream, buf: &Self::Buffer) -> Result<(), FrameGpuError>;
    /// Queues the device side's copy to the host (nothing where both sides are one memory).
    ///
    /// # Errors
    /// When the device refuses the copy.
    fn download(&self, stream: &Self::Stream, buf: &mut Self::Buffer) -> Result<(), FrameGpuError>;
    /// Queues a kernel.
    ///
    /// # Safety
    /// Every address in `call` must be a device address of a live buffer of this device, large
    /// enough for the kernel's reads and writes at the call's sizes, and stay alive until the
    /// stream has passed this point.
    unsafe fn launch(&self, stream: &Self::Stream, call: Call) -> Result<(), FrameGpuError>;
    /// Records an event after the work queued so far.
    ///
    /// # Errors
    /// When the device refuses.
    fn record(&self, stream: &Self::Stream) -> Result<Self::Event, FrameGpuError>;
    /// Blocks until the work before `event` has finished.
    ///
    /// # Errors
    /// The failure of that work.
    fn wait(&self, event: &Self::Event) -> Result<(), FrameGpuError>;
    /// Blocks until everything queued on `stream` has finished.
    ///
    /// # Errors
    /// The failure of that work.
    fn synchronize(&self, stream: &Self::Stream) -> Result<(), FrameGpuError>;
    /// Makes the device usable from the calling thread (a CUDA context bind).
    ///
    /// # Errors
    /// When the device refuses.
    fn bind_thread(&self) -> Result<(), FrameGpuError> {
        Ok(())
    }
}

/// Device addresses of the renderer's tensors in one slot (float32, NCHW, batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub trait SlotRenderer<D: FrameDevice> {
    /// Binds slot `slot`'s buffers (called once per slot, at start-up).
    ///
    /// # Errors
    /// When the renderer refuses the tensors (names, shapes).
    fn bind(&mut self, slot: usize, io: &RendererIo) -> Result<(), FrameGpuError>;

    /// Queues one run of slot `slot` on `stream`.
    ///
    /// # Errors
    /// When the run cannot be queued.
    fn enqueue(&mut self, device: &D, slot: usize, stream: &D::Stream)
        -> Result<(), FrameGpuError>;
}

/// A stand-in for the renderer network (`kernels/standin.cu`): reads both images and the time
/// code and writes an output of the same shape after `rounds` dependent multiply-adds per
/// value, so it occupies the device for a chosen time. For timing the slots without TensorRT.
pub struct StandInRenderer {
    rounds: u32,
    io: Vec<RendererIo>,
}

impl StandInRenderer {
    pub fn new(rounds: u32) -> Self {
        StandInRenderer {
            rounds,
            io: Vec::new(),
        }
    }
}

impl<D: FrameDevice> SlotRenderer<D> for StandInRenderer {
    fn bind(&mut self, slot: usize, io: &RendererIo) -> Result<(), FrameGpuError> {
        if self.io.len() <= slot {
            self.io.resize(slot + 1, *io);
        }
        self.io[slot] = *io;
        Ok(())
    }

    fn enqueue(
        &mut self,
        device: &D,
        slot: usize,
        stream: &D::Stream,
    ) -> Result<(), FrameGpuError> {
        let io = self.io.get(slot).copied().ok_or_else(|| {
            FrameGpuError::Renderer(format!("stand-in: slot {slot} was never bound"))
        })?;
        let call = Call::StandIn {
            mesh: io.mesh_image,
            reference: io.reference,
            code: io.time_code,
            image: io.image,
            n: (3 * io.side * io.side) as u32,
            rounds: self.rounds,
        };
        // SAFETY: the addresses were bound by the frame stage from its own buffers of
        // 3·side² floats (13 for the code), which outlive the queued work.
        unsafe { device.launch(stream, call) }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGpuSettings {
    /// The condition canvas side (the avatar's, 512 officially).
    pub canvas: usize,
    /// The renderer's side: the canvas, or half of it (drawn at the canvas, then halved).
    pub side: usize,
    /// Frames in flight: 2 (double buffering) or 1.
    pub slots: usize,
    pub output: OutputLayout,
}

struct Pending<E> {
    frame: u64,
    done: E,
}

struct Slot<D: FrameDevice> {
    stream: D::Stream,
    points: D::Buffer,
    order: D::Buffer,
    cond: D::Buffer,
    small: Option<D::Buffer>,
    mesh: D::Buffer,
    code: D::Buffer,
    image: D::Buffer,
    rgb: D::Buffer,
    out: Option<D::Buffer>,
    pending: Option<Pending<D::Event>>,
}

/// The double-buffered frame stage.
pub struct GpuFrameStage<D: FrameDevice, R: SlotRenderer<D>> {
    device: D,
    renderer: R,
    settings: FrameGpuSettings,
    segments: D::Buffer,
    n_segments: u32,
    _reference: D::Buffer,
    slots: Vec<Slot<D>>,
    next: usize,
    points: Vec<[i32; 2]>,
}

fn bytes_of_f32(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_ne_bytes());
    }
}

/// Writes the segment table as the kernels read it (`struct Segment`, 16 bytes each).
pub(super) fn segment_bytes(plan: &DrawPlan, dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(16).zip(plan.segments()) {
        d[0..4].copy_from_slice(&s.a.to_ne_bytes());
        d[4..8].copy_from_slice(&s.b.to_ne_bytes());
        d[8..12].copy_from_slice(&s.thickness.to_ne_bytes());
        d[12..16].copy_from_slice(&s.rgb.to_ne_bytes());
    }
}

/// Writes truncated points as the kernels read them (`int` pairs).
pub(super) fn point_bytes(points: &[[i32; 2]], dst: &mut [u8]) {
    for (d, p) in dst.chunks_exact_mut(8).zip(points) {
        d[0..4].copy_from_slice(&p[0].to_ne_bytes());
        d[4..8].copy_from_slice(&p[1].to_ne_bytes());
    }
}

impl<D: FrameDevice, R: SlotRenderer<D>> GpuFrameStage<D, R> {
    /// Allocates every buffer of every slot, uploads the segment table and the reference
    /// (float32 CHW in [−1, 1], `3 × side × side`), and binds the renderer to each slot.
    ///
    /// # Errors
    /// Bad settings, an allocation or upload failure, or the renderer refusing its tensors.
    pub fn new(
        device: D,
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
        if !(1..=8192).contains(&canvas) || (side != canvas && 2 * side != canvas) {
            return Err(FrameGpuError::Settings(format!(
                "renderer side {side} for a {canvas} canvas: expected a canvas of 1 to 8192 \
                 pixels and the renderer at its side or half of it"
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
        device.bind_thread()?;
        let mut segments = device.buffer(16 * plan.segments().len())?;
        segment_bytes(plan, segments.host_mut());
        let mut reference_buf = device.buffer(4 * reference.len())?;
        bytes_of_f32(reference, reference_buf.host_mut());
        let setup = device.stream()?;
        device.upload(&setup, &segments)?;
        device.upload(&setup, &reference_buf)?;
        device.synchronize(&setup)?;

        let mut all = Vec::with_capacity(slots);
        for i in 0..slots {
            let slot = Slot::<D> {
                stream: device.stream()?,
                points: device.buffer(DRAW_POINTS * 8)?,
                order: device.buffer(canvas * canvas * 4)?,
                cond: device.buffer(canvas * canvas * 3)?,
                small: if side != canvas {
                    Some(device.buffer(side * side * 3)?)
                } else {
                    None
                },
                mesh: device.buffer(3 * side * side * 4)?,
                code: device.buffer(13 * 4)?,
                image: device.buffer(3 * side * side * 4)?,
                rgb: device.buffer(side * side * 3)?,
                out: out_len.map(|n| device.buffer(n)).transpose()?,
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
            device,
            renderer,
            settings,
            n_segments: plan.segments().len() as u32,
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

    pub fn device(&self) -> &D {
        &self.device
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
        self.device.bind_thread()?;
        let i = self.next;
        self.next = (self.next + 1) % self.slots.len();
        self.hand_out(i, sink)?;
        point_bytes(&self.points, self.slots[i].points.host_mut());
        let (before, after) = self.calls(i, code_index);
        let (d, slot) = (&self.device, &self.slots[i]);
        let s = &slot.stream;
        d.upload(s, &slot.points)?;
        for call in before.iter().flatten() {
            // SAFETY: the calls address only this stage's buffers, sized in `new` for the
            // canvas, the renderer side and the output layout they use; the buffers live until
            // the stage is dropped, which synchronizes every stream first.
            unsafe { d.launch(s, *call)? };
        }
        self.renderer.enqueue(d, i, s)?;
        for call in after.iter().flatten() {
            // SAFETY: as above.
            unsafe { d.launch(s, *call)? };
        }
        let slot = &mut self.slots[i];
        match slot.out.as_mut() {
            Some(out) => d.download(&slot.stream, out)?,
            None => d.download(&slot.stream, &mut slot.rgb)?,
        }
        let done = d.record(&slot.stream)?;
        slot.pending = Some(Pending { frame, done });
        Ok(())
    }

    /// The kernel calls of one frame in slot `i`: those before the renderer (drawing, shrink,
    /// input conversion, time code) and those after it (output conversion, pixel layout).
    fn calls(&self, i: usize, code_index: u64) -> ([Option<Call>; 6], [Option<Call>; 2]) {
        let slot = &self.slots[i];
        let FrameGpuSettings {
            canvas,
            side,
            output,
            ..
        } = self.settings;
        let (w, sw) = (canvas as i32, side as i32);
        let (order, cond, rgb) = (
            slot.order.device_ptr(),
            slot.cond.device_ptr(),
            slot.rgb.device_ptr(),
        );
        let segments = self.segments.device_ptr();
        let drawn = slot.small.as_ref().map_or(cond, FrameBuffer::device_ptr);
        let dst = slot.out.as_ref().map_or(0, FrameBuffer::device_ptr);
        let layout = match output {
            OutputLayout::Rgb => None,
            OutputLayout::Yuyv { stride } => Some(Call::Yuyv {
                rgb,
                width: sw,
                height: sw,
                dst,
                stride: stride as u32,
            }),
            OutputLayout::Nv12 { stride } => Some(Call::Nv12 {
                rgb,
                width: sw,
                height: sw,
                dst,
                stride: stride as u32,
            }),
        };
        let before = [
            Some(Call::DrawClear {
                order,
                n: (canvas * canvas) as u32,
            }),
            Some(Call::DrawSegments {
                points: slot.points.device_ptr(),
                n_points: DRAW_POINTS as u32,
                segments,
                n_segments: self.n_segments,
                order,
                width: w,
                height: w,
            }),
            Some(Call::DrawColour {
                order,
                segments,
                n_segments: self.n_segments,
                rgb: cond,
                width: w,
                height: w,
            }),
            slot.small.as_ref().map(|small| Call::Shrink2x {
                src: cond,
                width: w,
                height: w,
                dst: small.device_ptr(),
            }),
            Some(Call::ToUnit {
                src: drawn,
                n_pixels: (side * side) as u32,
                dst: slot.mesh.device_ptr(),
            }),
            Some(Call::TimeCode {
                frame: code_index,
                code: slot.code.device_ptr(),
            }),
        ];
        let after = [
            Some(Call::ToU8 {
                src: slot.image.device_ptr(),
                n_pixels: (side * side) as u32,
                dst: rgb,
            }),
            layout,
        ];
        (before, after)
    }

    /// Waits for every frame in flight and hands them to `sink`, oldest first.
    ///
    /// # Errors
    /// A device failure.
    pub fn finish(&mut self, sink: &mut dyn FnMut(u64, &[u8])) -> Result<(), FrameGpuError> {
        self.device.bind_thread()?;
        for n in 0..self.slots.len() {
            let i = (self.next + n) % self.slots.len();
            self.hand_out(i, sink)?;
        }
        Ok(())
    }

    fn hand_out(
        &mut self,
        i: usize,
        sink: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), FrameGpuError> {
        let slot = &mut self.slots[i];
        if let Some(p) = slot.pending.take() {
            self.device.wait(&p.done)?;
            let bytes = match &slot.out {
                Some(out) => out.host(),
                None => slot.rgb.host(),
            };
            sink(p.frame, bytes);
        }
        Ok(())
    }
}

impl<D: FrameDevice, R: SlotRenderer<D>> Drop for GpuFrameStage<D, R> {
    fn drop(&mut self) {
        // Buffers are freed only after the work that uses them.
        let _ = self.device.bind_thread();
        for slot in &self.slots {
            let _ = self.device.synchronize(&slot.stream);
        }
    }
}
