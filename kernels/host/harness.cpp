// The kernels of kernels/*.cu compiled as C++ for the CPU, with one C launcher per kernel that
// walks the grid sequentially. Linked only into the crate's unit tests and, with feature
// `tensorrt-fake`, the host device of the GPU frame stage (src/gpu/host.rs); the tests compare
// the results bit for bit with the Rust stages. Built by build.rs with
// -ffp-contract=off, the host counterpart of NVRTC's --fmad=false.

#include "cuda_host.h"

#include "draw.cu"
#include "pack.cu"
#include "standin.cu"
#include "timecode.cu"
#include "unpack.cu"
#include "yuv.cu"

// Same layout as `gpu::kernels::Launch` (#[repr(C)]).
struct ModaLaunch {
    unsigned int grid[3];
    unsigned int block[3];
};

// Runs `kernel()` once per thread of `launch`: blocks in order, threads in order within each.
template <typename K>
static void moda_run(const ModaLaunch* launch, K kernel) {
    gridDim = {launch->grid[0], launch->grid[1], launch->grid[2]};
    blockDim = {launch->block[0], launch->block[1], launch->block[2]};
    for (unsigned int bz = 0; bz < gridDim.z; ++bz) {
        for (unsigned int by = 0; by < gridDim.y; ++by) {
            for (unsigned int bx = 0; bx < gridDim.x; ++bx) {
                blockIdx = {bx, by, bz};
                for (unsigned int tz = 0; tz < blockDim.z; ++tz) {
                    for (unsigned int ty = 0; ty < blockDim.y; ++ty) {
                        for (unsigned int tx = 0; tx < blockDim.x; ++tx) {
                            threadIdx = {tx, ty, tz};
                            kernel();
                        }
                    }
                }
            }
        }
    }
}

extern "C" {

void moda_host_draw_clear(const ModaLaunch* l, unsigned int* order, unsigned int n) {
    moda_run(l, [&] { draw_clear(order, n); });
}

void moda_host_draw_segments(const ModaLaunch* l, const int* points, unsigned int n_points,
                             const Segment* segments, unsigned int n_segments, unsigned int* order, int width,
                             int height) {
    moda_run(l, [&] { draw_segments(points, n_points, segments, n_segments, order, width, height); });
}

void moda_host_draw_colour(const ModaLaunch* l, const unsigned int* order, const Segment* segments,
                           unsigned int n_segments, unsigned char* rgb, int width, int height) {
    moda_run(l, [&] { draw_colour(order, segments, n_segments, rgb, width, height); });
}

void moda_host_time_code(const ModaLaunch* l, unsigned long long frame, float* code) {
    moda_run(l, [&] { time_code(frame, code); });
}

void moda_host_time_code_planes(const ModaLaunch* l, const float* code, unsigned int plane, float* out) {
    moda_run(l, [&] { time_code_planes(code, plane, out); });
}

void moda_host_shrink_2x(const ModaLaunch* l, const unsigned char* src, int width, int height, unsigned char* dst) {
    moda_run(l, [&] { shrink_2x(src, width, height, dst); });
}

void moda_host_u8_hwc_to_unit_chw(const ModaLaunch* l, const unsigned char* src, unsigned int n_pixels, float* dst) {
    moda_run(l, [&] { u8_hwc_to_unit_chw(src, n_pixels, dst); });
}

void moda_host_unit_chw_to_u8_hwc(const ModaLaunch* l, const float* src, unsigned int n_pixels, unsigned char* dst) {
    moda_run(l, [&] { unit_chw_to_u8_hwc(src, n_pixels, dst); });
}

void moda_host_rgb_to_yuyv(const ModaLaunch* l, const unsigned char* rgb, int width, int height, unsigned char* dst,
                           unsigned int stride) {
    moda_run(l, [&] { rgb_to_yuyv(rgb, width, height, dst, stride); });
}

void moda_host_rgb_to_nv12(const ModaLaunch* l, const unsigned char* rgb, int width, int height, unsigned char* dst,
                           unsigned int stride) {
    moda_run(l, [&] { rgb_to_nv12(rgb, width, height, dst, stride); });
}

void moda_host_standin_render(const ModaLaunch* l, const float* mesh, const float* reference, const float* code,
                               float* image, unsigned int n, unsigned int rounds) {
    moda_run(l, [&] { standin_render(mesh, reference, code, image, n, rounds); });
}

}  // extern "C"
