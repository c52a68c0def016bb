//! The CUDA frame device (feature `cuda`): the kernels of [`super::kernels`] compiled by NVRTC
//! for the GPU (cached on disk) and launched on CUDA streams, with the buffers of
//! [`super::device`]. [`super::frame::GpuFrameStage`] runs on it.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{result, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

use super::device::{Buffer, Gpu, GpuError, GpuEvent, Stream};
use super::frame::{Call, FrameBuffer, FrameDevice, FrameGpuError};
use super::kernels::{self, Arch, Module};
use super::nvrtc::{CubinCache, Fetched};

/// A loaded kernel.
struct Kernel {
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
    fn get(&self, name: &'static str) -> Result<&Kernel, FrameGpuError> {
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

/// Pointer to a launch argument.
fn arg<T>(v: &T) -> *mut c_void {
    (v as *const T).cast_mut().cast()
}

/// The GPU with its kernels loaded: what [`super::frame::GpuFrameStage`] runs on.
pub struct CudaFrameDevice {
    gpu: Gpu,
    kernels: Arc<Kernels>,
}

impl CudaFrameDevice {
    pub fn new(gpu: Gpu, kernels: Arc<Kernels>) -> CudaFrameDevice {
        CudaFrameDevice { gpu, kernels }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

impl FrameBuffer for Buffer {
    fn device_ptr(&self) -> u64 {
        Buffer::device_ptr(self)
    }

    fn host(&self) -> &[u8] {
        Buffer::host(self)
    }

    fn host_mut(&mut self) -> &mut [u8] {
        Buffer::host_mut(self)
    }
}

impl FrameDevice for CudaFrameDevice {
    type Buffer = Buffer;
    type Stream = Stream;
    type Event = GpuEvent;

    fn buffer(&self, bytes: usize) -> Result<Buffer, FrameGpuError> {
        Ok(self.gpu.buffer(bytes)?)
    }

    fn stream(&self) -> Result<Stream, FrameGpuError> {
        Ok(self.gpu.stream()?)
    }

    fn raw_stream(&self, stream: &Stream) -> *mut c_void {
        stream.raw()
    }

    fn upload(&self, stream: &Stream, buf: &Buffer) -> Result<(), FrameGpuError> {
        Ok(stream.upload(buf)?)
    }

    fn download(&self, stream: &Stream, buf: &mut Buffer) -> Result<(), FrameGpuError> {
        Ok(stream.download(buf)?)
    }

    unsafe fn launch(&self, stream: &Stream, call: Call) -> Result<(), FrameGpuError> {
        let kernel = self.kernels.get(call.kernel())?;
        let l = call.launch();
        // The argument values live on this frame until the launch has copied them.
        let mut params: [*mut c_void; 7] = [std::ptr::null_mut(); 7];
        let n = match &call {
            Call::DrawClear { order, n } => {
                params[..2].copy_from_slice(&[arg(order), arg(n)]);
                2
            }
            Call::DrawSegments {
                points,
                n_points,
                segments,
                n_segments,
                order,
                width,
                height,
            } => {
                params.copy_from_slice(&[
                    arg(points),
                    arg(n_points),
                    arg(segments),
                    arg(n_segments),
                    arg(order),
                    arg(width),
                    arg(height),
                ]);
                7
            }
            Call::DrawColour {
                order,
                segments,
                n_segments,
                rgb,
                width,
                height,
            } => {
                params[..6].copy_from_slice(&[
                    arg(order),
                    arg(segments),
                    arg(n_segments),
                    arg(rgb),
                    arg(width),
                    arg(height),
                ]);
                6
            }
            Call::Shrink2x {
                src,
                width,
                height,
                dst,
            } => {
                params[..4].copy_from_slice(&[arg(src), arg(width), arg(height), arg(dst)]);
                4
            }
            Call::ToUnit { src, n_pixels, dst } | Call::ToU8 { src, n_pixels, dst } => {
                params[..3].copy_from_slice(&[arg(src), arg(n_pixels), arg(dst)]);
                3
            }
            Call::TimeCode { frame, code } => {
                params[..2].copy_from_slice(&[arg(frame), arg(code)]);
                2
            }
            Call::Yuyv {
                rgb,
                width,
                height,
                dst,
                stride,
            }
            | Call::Nv12 {
                rgb,
                width,
                height,
                dst,
                stride,
            } => {
                params[..5].copy_from_slice(&[
                    arg(rgb),
                    arg(width),
                    arg(height),
                    arg(dst),
                    arg(stride),
                ]);
                5
            }
            Call::StandIn {
                mesh,
                reference,
                code,
                image,
                n,
                rounds,
            } => {
                params[..6].copy_from_slice(&[
                    arg(mesh),
                    arg(reference),
                    arg(code),
                    arg(image),
                    arg(n),
                    arg(rounds),
                ]);
                6
            }
        };
        // SAFETY: `params` points at the fields of `call`, which lives until this returns
        // (cuLaunchKernel copies the values); their types match the kernels' C parameters one
        // for one (addresses as u64, `int` as i32, `unsigned` as u32, `unsigned long long` as
        // u64); the caller guarantees the addresses (this function's contract). The context
        // is bound by the frame stage before it launches.
        unsafe {
            result::launch_kernel(
                kernel.function.cu_function(),
                (l.grid[0], l.grid[1], l.grid[2]),
                (l.block[0], l.block[1], l.block[2]),
                0,
                stream.cuda().cu_stream(),
                &mut params[..n],
            )
        }
        .map_err(|e| FrameGpuError::Launch {
            kernel: kernel.name,
            detail: format!("{e:?}"),
        })
    }

    fn record(&self, stream: &Stream) -> Result<GpuEvent, FrameGpuError> {
        Ok(stream.record()?)
    }

    fn wait(&self, event: &GpuEvent) -> Result<(), FrameGpuError> {
        Ok(event.synchronize()?)
    }

    fn synchronize(&self, stream: &Stream) -> Result<(), FrameGpuError> {
        Ok(stream.synchronize()?)
    }

    fn bind_thread(&self) -> Result<(), FrameGpuError> {
        self.gpu.context().bind_to_thread().map_err(|e| {
            FrameGpuError::Gpu(GpuError::Driver {
                what: "binding the context",
                detail: format!("{e:?}"),
            })
        })
    }
}
