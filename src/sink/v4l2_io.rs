//! The V4L2 calls of the `v4l2://` sink, fenced: every `unsafe` of that sink is in this file.
//!
//! The `v4l` crate supplies the kernel ABI: the structures bindgen generates from
//! `linux/videodev2.h` (`v4l::v4l_sys`), the `VIDIOC_*` request numbers and thin `ioctl`/`mmap`
//! wrappers. Its higher layer (`Device`, `io::mmap::Stream`) is not used: it panics on driver
//! data it does not expect (non-UTF-8 names, unknown colorspaces) and in `Drop` (a failing
//! `close` or `STREAMOFF`), its output stream waits for a free buffer and drops the timestamp.
//! Here the node is a `File` opened non-blocking, buffers are a [`Mapping`] each, and every
//! call returns an `io::Error`: `VIDIOC_DQBUF` says `EAGAIN` when no buffer is done, and a
//! device that went away says `ENODEV`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

use v4l::v4l2::{self as raw, vidioc};
use v4l::v4l_sys::{
    v4l2_buffer, v4l2_capability, v4l2_fmtdesc, v4l2_format, v4l2_requestbuffers, v4l2_streamparm,
};

/// `V4L2_BUF_TYPE_VIDEO_OUTPUT`: single-planar video output.
const BUF_TYPE_OUTPUT: u32 = 2;
/// `V4L2_MEMORY_MMAP`.
const MEMORY_MMAP: u32 = 1;
/// `V4L2_FIELD_NONE`: progressive frames.
const FIELD_NONE: u32 = 1;
pub(super) const CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
pub(super) const CAP_VIDEO_OUTPUT_MPLANE: u32 = 0x0000_2000;
pub(super) const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// `V4L2_CAP_TIMEPERFRAME` in `v4l2_outputparm::capability`.
const CAP_TIMEPERFRAME: u32 = 0x1000;
/// Formats listed at most (drivers list a handful; v4l2loopback about 50).
const MAX_FORMATS: u32 = 256;

/// A format's colour description in `v4l2_pix_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Colour {
    /// `V4L2_COLORSPACE_*`: SMPTE170M (BT.601) = 1, SRGB = 8.
    pub colorspace: u32,
    /// `V4L2_YCBCR_ENC_*`: 601 = 1 (0 for RGB).
    pub ycbcr_enc: u32,
    /// `V4L2_QUANTIZATION_*`: full range = 1, limited range = 2.
    pub quantization: u32,
}

/// What `VIDIOC_S_FMT` settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PixFormat {
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    pub bytes_per_line: u32,
    pub size_image: u32,
}

/// The device's name and capabilities (`VIDIOC_QUERYCAP`).
#[derive(Debug, Clone)]
pub(super) struct Caps {
    pub driver: String,
    pub card: String,
    /// The capabilities of this node (`device_caps` where the driver gives them).
    pub caps: u32,
}

/// A V4L2 device node, open read-write and non-blocking; closed on drop.
pub(super) struct Device {
    file: File,
}

/// Text of a NUL-padded C string field.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A zero-initialised V4L2 structure.
///
/// # Safety
/// `T` must be valid when all its bytes are zero: true of the V4L2 structures (integers,
/// integer arrays, unions of those and raw pointers).
unsafe fn zeroed<T>() -> T {
    // SAFETY: the caller guarantees that all-zero bytes are a valid `T`.
    unsafe { std::mem::zeroed() }
}

impl Device {
    /// Opens `path` read-write, non-blocking, close-on-exec.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self { file })
    }

    /// Runs `request` on the node with `arg`, retrying when interrupted by a signal.
    ///
    /// # Safety
    /// `request` must be a `VIDIOC_*` number whose argument is a `T` (the number encodes the
    /// argument's size; the kernel reads and writes that many bytes at `arg`).
    unsafe fn ioctl<T>(&self, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
        loop {
            // SAFETY: `arg` is a live, exclusively borrowed `T`, the argument type of `request`
            // (the caller's guarantee), and the descriptor is open for as long as `self`.
            let r = unsafe {
                raw::ioctl(
                    self.file.as_raw_fd(),
                    request,
                    (arg as *mut T).cast::<std::os::raw::c_void>(),
                )
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    pub fn query_caps(&self) -> io::Result<Caps> {
        // SAFETY: v4l2_capability is integers and byte arrays.
        let mut cap: v4l2_capability = unsafe { zeroed() };
        // SAFETY: VIDIOC_QUERYCAP takes a v4l2_capability.
        unsafe { self.ioctl(vidioc::VIDIOC_QUERYCAP, &mut cap)? };
        let caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        Ok(Caps {
            driver: c_text(&cap.driver),
            card: c_text(&cap.card),
            caps,
        })
    }

    /// The pixel formats the node lists for video output (`VIDIOC_ENUM_FMT`), in its order.
    pub fn output_formats(&self) -> io::Result<Vec<u32>> {
        let mut formats = Vec::new();
        for index in 0..MAX_FORMATS {
            // SAFETY: v4l2_fmtdesc is integers and byte arrays.
            let mut desc: v4l2_fmtdesc = unsafe { zeroed() };
            desc.index = index;
            desc.type_ = BUF_TYPE_OUTPUT;
            // SAFETY: VIDIOC_ENUM_FMT takes a v4l2_fmtdesc.
            match unsafe { self.ioctl(vidioc::VIDIOC_ENUM_FMT, &mut desc) } {
                Ok(()) => formats.push(desc.pixelformat),
                // EINVAL past the last index.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(formats)
    }

    /// Asks for progressive `fourcc` frames of `width`×`height` in `colour`; returns what the
    /// driver settled on (it may change any field).
    pub fn set_format(
        &self,
        fourcc: u32,
        width: u32,
        height: u32,
        colour: Colour,
    ) -> io::Result<PixFormat> {
        // SAFETY: v4l2_format is integers and unions of integer structures.
        let mut fmt: v4l2_format = unsafe { zeroed() };
        fmt.type_ = BUF_TYPE_OUTPUT;
        // SAFETY: `pix` is the union member for the single-planar video buffer type set above;
        // the union is zeroed, so every member is initialised.
        let pix = unsafe { &mut fmt.fmt.pix };
        pix.width = width;
        pix.height = height;
        pix.pixelformat = fourcc;
        pix.field = FIELD_NONE;
        pix.colorspace = colour.colorspace;
        pix.quantization = colour.quantization;
        pix.__bindgen_anon_1.ycbcr_enc = colour.ycbcr_enc;
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { self.ioctl(vidioc::VIDIOC_S_FMT, &mut fmt)? };
        // SAFETY: the driver answers in the member for the buffer type asked for.
        let pix = unsafe { fmt.fmt.pix };
        Ok(PixFormat {
            fourcc: pix.pixelformat,
            width: pix.width,
            height: pix.height,
            bytes_per_line: pix.bytesperline,
            size_image: pix.sizeimage,
        })
    }

    /// Tells the driver the frame interval, `1/fps` s, when it has one to set (many do not:
    /// `Ok(false)`).
    pub fn set_frame_rate(&self, fps: u32) -> io::Result<bool> {
        // SAFETY: v4l2_streamparm is integers and unions of integer structures.
        let mut parm: v4l2_streamparm = unsafe { zeroed() };
        parm.type_ = BUF_TYPE_OUTPUT;
        // SAFETY: VIDIOC_G_PARM takes a v4l2_streamparm.
        if unsafe { self.ioctl(vidioc::VIDIOC_G_PARM, &mut parm) }.is_err() {
            return Ok(false);
        }
        // SAFETY: `output` is the member for an output buffer type; the union was zeroed and
        // then filled by the driver.
        let out = unsafe { &mut parm.parm.output };
        if out.capability & CAP_TIMEPERFRAME == 0 {
            return Ok(false);
        }
        out.timeperframe.numerator = 1;
        out.timeperframe.denominator = fps;
        // SAFETY: VIDIOC_S_PARM takes a v4l2_streamparm.
        unsafe { self.ioctl(vidioc::VIDIOC_S_PARM, &mut parm)? };
        Ok(true)
    }

    /// Asks for `count` memory-mapped output buffers; returns how many the driver gave.
    pub fn request_buffers(&self, count: u32) -> io::Result<u32> {
        // SAFETY: v4l2_requestbuffers is integers.
        let mut req: v4l2_requestbuffers = unsafe { zeroed() };
        req.count = count;
        req.type_ = BUF_TYPE_OUTPUT;
        req.memory = MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a v4l2_requestbuffers.
        unsafe { self.ioctl(vidioc::VIDIOC_REQBUFS, &mut req)? };
        Ok(req.count)
    }

    /// A zeroed `v4l2_buffer` for an mmap output buffer.
    fn buffer(index: u32) -> v4l2_buffer {
        // SAFETY: v4l2_buffer is integers, a timeval, and a union of an integer and pointers.
        let mut buf: v4l2_buffer = unsafe { zeroed() };
        buf.index = index;
        buf.type_ = BUF_TYPE_OUTPUT;
        buf.memory = MEMORY_MMAP;
        buf
    }

    /// Maps buffer `index` (`VIDIOC_QUERYBUF`, then `mmap`).
    pub fn map(&self, index: u32) -> io::Result<Mapping> {
        let mut buf = Self::buffer(index);
        // SAFETY: VIDIOC_QUERYBUF takes a v4l2_buffer.
        unsafe { self.ioctl(vidioc::VIDIOC_QUERYBUF, &mut buf)? };
        let len = buf.length as usize;
        // SAFETY: for MMAP buffers the driver fills in `offset`.
        let offset = unsafe { buf.m.offset };
        if len == 0 {
            return Err(io::Error::other(format!("buffer {index} has length 0")));
        }
        // SAFETY: a shared read-write mapping of `len` bytes at the offset the driver gave for
        // this buffer; no existing memory is touched (the address is the kernel's choice).
        let ptr = unsafe {
            raw::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                offset as libc::off_t,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Mapping { ptr, len })
    }

    /// Queues buffer `index` holding `bytes_used` bytes, stamped `timestamp_ns` (nanoseconds on
    /// CLOCK_MONOTONIC).
    pub fn queue(&self, index: u32, bytes_used: u32, timestamp_ns: u64) -> io::Result<()> {
        let mut buf = Self::buffer(index);
        buf.bytesused = bytes_used;
        buf.field = FIELD_NONE;
        buf.timestamp.tv_sec = (timestamp_ns / 1_000_000_000) as _;
        buf.timestamp.tv_usec = (timestamp_ns % 1_000_000_000 / 1_000) as _;
        // SAFETY: VIDIOC_QBUF takes a v4l2_buffer.
        unsafe { self.ioctl(vidioc::VIDIOC_QBUF, &mut buf) }
    }

    /// Takes back a buffer the driver is done with: its index, or `None` when none is (`EAGAIN`
    /// on the non-blocking node).
    pub fn dequeue(&self) -> io::Result<Option<u32>> {
        let mut buf = Self::buffer(0);
        // SAFETY: VIDIOC_DQBUF takes a v4l2_buffer.
        match unsafe { self.ioctl(vidioc::VIDIOC_DQBUF, &mut buf) } {
            Ok(()) => Ok(Some(buf.index)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn stream_on(&self) -> io::Result<()> {
        let mut kind = BUF_TYPE_OUTPUT;
        // SAFETY: VIDIOC_STREAMON takes the buffer type as an int.
        unsafe { self.ioctl(vidioc::VIDIOC_STREAMON, &mut kind) }
    }

    pub fn stream_off(&self) -> io::Result<()> {
        let mut kind = BUF_TYPE_OUTPUT;
        // SAFETY: VIDIOC_STREAMOFF takes the buffer type as an int.
        unsafe { self.ioctl(vidioc::VIDIOC_STREAMOFF, &mut kind) }
    }
}

/// One memory-mapped device buffer; unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value alone; moving it to another
// thread moves the only handle to it.
unsafe impl Send for Mapping {}

impl Mapping {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live read-write mapping of `len` bytes until drop, and `&mut self`
        // makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping `Device::map` created, unmapped once here;
        // no slice into it outlives `self`.
        if let Err(e) = unsafe { raw::munmap(self.ptr.as_ptr().cast(), self.len) } {
            log::warn!("v4l2 sink: munmap of a device buffer failed: {e}");
        }
    }
}
