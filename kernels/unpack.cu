// The renderer's output side (src/draw/convert.rs): float CHW -> uint8 HWC RGB by
// trunc(clip((p + 1)/2*255, 0, 255)) in float arithmetic; NaN becomes 0 (what Rust's
// `f32::clamp` followed by `as u8` gives). Compiled with --fmad=false. Self-contained.

static __device__ __forceinline__ unsigned char unit_to_u8(float p) {
    const float v = (p + 1.0f) / 2.0f * 255.0f;
    if (!(v >= 0.0f)) {  // negative or NaN
        return 0;
    }
    if (v >= 255.0f) {  // includes +inf
        return 255;
    }
    return (unsigned char)v;  // truncation toward zero, 0 <= v < 255
}

// float CHW (3 x height x width) -> uint8 HWC. One thread per pixel (1-D grid over
// width * height).
extern "C" __global__ void unit_chw_to_u8_hwc(const float* src, unsigned int n_pixels, unsigned char* dst) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_pixels) {
        return;
    }
    for (unsigned int c = 0; c < 3; ++c) {
        dst[3ull * i + c] = unit_to_u8(src[(unsigned long long)c * n_pixels + i]);
    }
}
