//! The CUDA C kernel sources, what NVRTC is asked to do with them, their launch geometry and
//! the host-side preparation the drawing kernels need.
//!
//! | module | file | kernels | CPU stage it reproduces bit for bit |
//! |---|---|---|---|
//! | `draw` | `kernels/draw.cu` | `draw_clear`, `draw_segments`, `draw_colour` | `draw::condition` over `draw::raster` |
//! | `timecode` | `kernels/timecode.cu` | `time_code`, `time_code_planes` | `draw::timecode` |
//! | `pack` | `kernels/pack.cu` | `shrink_2x`, `u8_hwc_to_unit_chw` | `draw::convert` (renderer input) |
//! | `unpack` | `kernels/unpack.cu` | `unit_chw_to_u8_hwc` | `draw::convert` (renderer output) |
//! | `yuv` | `kernels/yuv.cu` | `rgb_to_yuyv`, `rgb_to_nv12` | `sink::pixel` |
//!
//! Each file is self-contained (NVRTC is given no include path) and is also compiled as C++
//! for the CPU by `build.rs` (`kernels/host/`), where the unit tests of `gpu::host` compare it
//! with the Rust stages.
//!
//! # Floating point
//! NVRTC runs with [`NVRTC_OPTIONS`]: `--fmad=false`, because a fused multiply-add rounds once
//! where the Rust code rounds twice (the thick-line offsets of the drawing, `dx·dx + dy·dy`,
//! would move by one pixel now and then); no fast math (`--use_fast_math` would also
//! approximate divisions and square roots). The host build mirrors this with
//! `-ffp-contract=off`. Integer arithmetic is 64-bit wherever the Rust code uses `i64`.
//!
//! # The drawing
//! The CPU drawer paints segments one after another and a later line overwrites an earlier
//! one. On the GPU, one thread per segment records `atomicMax(order[pixel], segment + 1)` for
//! every pixel that segment paints, and a second pass colours each pixel from the segment
//! with the largest index: the same picture, whatever order the threads run in. [`DrawPlan`]
//! holds the segments in drawing order, built once from the tables;
//! [`DrawPlan::truncate_points`] prepares a frame's points without allocating.

use crate::draw::condition::DrawError;
use crate::face::pose::truncate_px;
use crate::face::tables::{EdgeGroup, Tables, FACE_POINTS, SHOULDER_POINTS};

/// One CUDA C source file and the `extern "C"` kernels it defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module {
    /// Short name, used for the NVRTC program name and the cubin cache file.
    pub name: &'static str,
    /// The CUDA C text (`kernels/<name>.cu`).
    pub source: &'static str,
    /// Entry points, as `cuModuleGetFunction` looks them up.
    pub kernels: &'static [&'static str],
}

/// `kernels/draw.cu`: the condition image.
pub const DRAW: Module = Module {
    name: "draw",
    source: include_str!("../../kernels/draw.cu"),
    kernels: &["draw_clear", "draw_segments", "draw_colour"],
};

/// `kernels/timecode.cu`: the renderer's temporal code.
pub const TIMECODE: Module = Module {
    name: "timecode",
    source: include_str!("../../kernels/timecode.cu"),
    kernels: &["time_code", "time_code_planes"],
};

/// `kernels/pack.cu`: 2× shrink and uint8 HWC → float CHW.
pub const PACK: Module = Module {
    name: "pack",
    source: include_str!("../../kernels/pack.cu"),
    kernels: &["shrink_2x", "u8_hwc_to_unit_chw"],
};

/// `kernels/unpack.cu`: float CHW → uint8 HWC.
pub const UNPACK: Module = Module {
    name: "unpack",
    source: include_str!("../../kernels/unpack.cu"),
    kernels: &["unit_chw_to_u8_hwc"],
};

/// `kernels/yuv.cu`: RGB → YUYV and NV12 with a row stride.
pub const YUV: Module = Module {
    name: "yuv",
    source: include_str!("../../kernels/yuv.cu"),
    kernels: &["rgb_to_yuyv", "rgb_to_nv12"],
};

/// `kernels/standin.cu`: a stand-in for the renderer network, for timing the frame stage's
/// slots without TensorRT (`moda-edge gpu-check`).
pub const STANDIN: Module = Module {
    name: "standin",
    source: include_str!("../../kernels/standin.cu"),
    kernels: &["standin_render"],
};

/// Every kernel module, in the order the frame uses them (the stand-in last).
pub const MODULES: &[Module] = &[DRAW, TIMECODE, PACK, UNPACK, YUV, STANDIN];

/// NVRTC options besides the architecture: no fused multiply-add (bit-exact with the CPU
/// stages), C++17, and no fast math (not passed, so divisions and square roots stay IEEE).
pub const NVRTC_OPTIONS: &[&str] = &["--fmad=false", "--std=c++17"];

/// A compute capability, compiled for as `sm_<major><minor>` (Orin: 8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    /// Jetson AGX Orin / Orin NX / Orin Nano.
    pub const ORIN: Arch = Arch { major: 8, minor: 7 };

    /// `--gpu-architecture=sm_XY`: a real architecture, so that NVRTC can emit a cubin
    /// (with `compute_XY` the cubin is empty).
    pub fn option(self) -> String {
        format!("--gpu-architecture=sm_{}{}", self.major, self.minor)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sm_{}{}", self.major, self.minor)
    }
}

/// Threads per block of the one-dimensional launches.
pub const BLOCK_1D: u32 = 256;
/// Block side of the two-dimensional launches (16 × 16 = 256 threads).
pub const BLOCK_2D: u32 = 16;

/// A launch's grid and block sizes, laid out as the host harness takes them (`#[repr(C)]`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

fn blocks(n: usize, per_block: u32) -> u32 {
    // The sizes are frame sides and segment counts, far below 2³² threads.
    n.div_ceil(per_block as usize).max(1) as u32
}

impl Launch {
    /// At least `n` threads in blocks of [`BLOCK_1D`] (one block when `n` is 0).
    pub fn linear(n: usize) -> Launch {
        Launch {
            grid: [blocks(n, BLOCK_1D), 1, 1],
            block: [BLOCK_1D, 1, 1],
        }
    }

    /// At least `width × height` threads in [`BLOCK_2D`]² blocks.
    pub fn planar(width: usize, height: usize) -> Launch {
        Launch {
            grid: [blocks(width, BLOCK_2D), blocks(height, BLOCK_2D), 1],
            block: [BLOCK_2D, BLOCK_2D, 1],
        }
    }

    /// Threads launched in all.
    pub fn threads(&self) -> u64 {
        let g: u64 = self.grid.iter().map(|&v| u64::from(v)).product();
        let b: u64 = self.block.iter().map(|&v| u64::from(v)).product();
        g * b
    }
}

/// Launch geometry of each kernel for a `width × height` frame (the source size for
/// `shrink_2x`, the output size otherwise).
pub mod geometry {
    use super::Launch;

    /// `draw_clear`, `u8_hwc_to_unit_chw`, `unit_chw_to_u8_hwc`: one thread per pixel.
    pub fn per_pixel(width: usize, height: usize) -> Launch {
        Launch::linear(width * height)
    }

    /// `draw_colour`: one thread per pixel on a 2-D grid.
    pub fn per_pixel_2d(width: usize, height: usize) -> Launch {
        Launch::planar(width, height)
    }

    /// `draw_segments`: one thread per segment.
    pub fn per_segment(segments: usize) -> Launch {
        Launch::linear(segments)
    }

    /// `time_code`: 13 threads.
    pub fn time_code() -> Launch {
        Launch::linear(13)
    }

    /// `time_code_planes`: one thread per value of 13 planes of `plane` values.
    pub fn time_code_planes(plane: usize) -> Launch {
        Launch::linear(13 * plane)
    }

    /// `shrink_2x` of a `width × height` source: one thread per destination pixel.
    pub fn shrink_2x(width: usize, height: usize) -> Launch {
        Launch::planar(width / 2, height / 2)
    }

    /// `rgb_to_yuyv`: one thread per pair of pixels of a row.
    pub fn yuyv(width: usize, height: usize) -> Launch {
        Launch::planar(width.div_ceil(2), height)
    }

    /// `rgb_to_nv12`: one thread per 2 × 2 block.
    pub fn nv12(width: usize, height: usize) -> Launch {
        Launch::planar(width.div_ceil(2), height.div_ceil(2))
    }
}

/// Points the drawing kernel indexes: 478 face points, then 18 shoulder points.
pub const DRAW_POINTS: usize = FACE_POINTS + SHOULDER_POINTS;

/// One line of the condition image, as `draw.cu`'s `Segment`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First end point, an index into the [`DRAW_POINTS`] points.
    pub a: i32,
    /// Second end point.
    pub b: i32,
    /// `cv::line` thickness (≤ 1: the thin line).
    pub thickness: i32,
    /// Colour `0xRRGGBB` of the final RGB picture.
    pub rgb: u32,
}

/// The condition image's segments in drawing order (tessellation, contours, irises, then the
/// shoulder polylines), built once from the tables.
#[derive(Debug, Clone)]
pub struct DrawPlan {
    segments: Vec<Segment>,
}

/// A table colour (BGR, the OpenCV canvas order) as `0xRRGGBB` of the RGB picture.
fn rgb_of_bgr(c: [u8; 3]) -> u32 {
    (u32::from(c[2]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[0])
}

fn push_group(segments: &mut Vec<Segment>, group: &EdgeGroup) {
    segments.extend(group.edges.iter().map(|e| Segment {
        a: i32::from(e.a),
        b: i32::from(e.b),
        thickness: group.thickness,
        rgb: rgb_of_bgr(e.color),
    }));
}

impl DrawPlan {
    /// The segments `ConditionDrawer` draws, in its order.
    pub fn new(tables: &Tables) -> DrawPlan {
        let mut segments = Vec::new();
        push_group(&mut segments, &tables.tessellation);
        push_group(&mut segments, &tables.contours);
        push_group(&mut segments, &tables.irises);
        let shoulder = |i: usize| (FACE_POINTS + i) as i32;
        for polyline in &tables.shoulder_polylines {
            for pair in polyline.windows(2) {
                segments.push(Segment {
                    a: shoulder(pair[0]),
                    b: shoulder(pair[1]),
                    thickness: tables.shoulder_thickness,
                    rgb: rgb_of_bgr(tables.shoulder_color),
                });
            }
        }
        DrawPlan { segments }
    }

    /// A plan of explicit segments (tests: another drawing order).
    #[cfg(test)]
    pub(crate) fn from_segments(segments: Vec<Segment>) -> DrawPlan {
        DrawPlan { segments }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// One frame's points for `draw_segments`: face then shoulder pixel positions truncated
    /// toward zero exactly as the CPU drawer does, into `out` ([`DRAW_POINTS`] pairs). Does not
    /// allocate.
    ///
    /// # Errors
    /// [`DrawError::Length`] when a slice has the wrong length.
    pub fn truncate_points(
        face_px: &[[f64; 2]],
        shoulder_px: &[[f64; 2]],
        out: &mut [[i32; 2]],
    ) -> Result<(), DrawError> {
        let check = |what, found, expected| {
            if found == expected {
                Ok(())
            } else {
                Err(DrawError::Length {
                    what,
                    found,
                    expected,
                })
            }
        };
        check("face pixel array", face_px.len(), FACE_POINTS)?;
        check("shoulder pixel array", shoulder_px.len(), SHOULDER_POINTS)?;
        check("point buffer", out.len(), DRAW_POINTS)?;
        for (d, s) in out.iter_mut().zip(face_px.iter().chain(shoulder_px)) {
            *d = [truncate_px(s[0]), truncate_px(s[1])];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_defines_its_kernels_as_extern_c() {
        for m in MODULES {
            for k in m.kernels {
                let decl = format!("extern \"C\" __global__ void {k}(");
                assert!(m.source.contains(&decl), "{} lacks {decl}", m.name);
            }
            assert_eq!(
                m.source.matches("extern \"C\" __global__").count(),
                m.kernels.len(),
                "{}: a kernel missing from the table",
                m.name
            );
            assert!(
                !m.source.contains("#include"),
                "{} is not self-contained",
                m.name
            );
            assert!(!m.source.contains("__shared__") && !m.source.contains("__syncthreads"));
        }
        assert!(NVRTC_OPTIONS.contains(&"--fmad=false"));
        assert!(!NVRTC_OPTIONS.iter().any(|o| o.contains("fast_math")));
        assert_eq!(Arch::ORIN.option(), "--gpu-architecture=sm_87");
    }

    #[test]
    fn launches_cover_their_work() {
        assert_eq!(Launch::linear(0).threads(), 256);
        assert_eq!(Launch::linear(257).grid, [2, 1, 1]);
        let l = geometry::yuyv(17, 3);
        assert_eq!((l.grid, l.block), ([1, 1, 1], [16, 16, 1]));
        let l = geometry::nv12(513, 511);
        assert_eq!(l.grid, [17, 16, 1]);
        assert!(geometry::per_pixel(512, 512).threads() >= 512 * 512);
    }

    #[test]
    fn plan_follows_the_drawing_order() {
        let t = Tables::official().unwrap();
        let plan = DrawPlan::new(&t);
        let n_face = t.tessellation.edges.len() + t.contours.edges.len() + t.irises.edges.len();
        let n_sh: usize = t.shoulder_polylines.iter().map(|p| p.len() - 1).sum();
        assert_eq!(plan.segments().len(), n_face + n_sh);
        assert_eq!(plan.segments()[0].thickness, t.tessellation.thickness);
        let last = plan.segments().last().unwrap();
        assert!(last.a >= FACE_POINTS as i32 && (last.b as usize) < DRAW_POINTS);
        assert_eq!(rgb_of_bgr([1, 2, 3]), 0x030201);
        let mut pts = [[0; 2]; DRAW_POINTS];
        let face = vec![[-1.7, 2.9]; FACE_POINTS];
        let sh = vec![[f64::NAN, 1e12]; SHOULDER_POINTS];
        DrawPlan::truncate_points(&face, &sh, &mut pts).unwrap();
        assert_eq!(pts[0], [-1, 2]);
        assert_eq!(pts[DRAW_POINTS - 1], [0, i32::MAX]);
        assert!(DrawPlan::truncate_points(&face[1..], &sh, &mut pts).is_err());
    }
}
