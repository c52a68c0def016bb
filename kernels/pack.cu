// The renderer's input side (src/draw/convert.rs): the exact 2x2 shrink of OpenCV INTER_LINEAR
// on uint8, and uint8 HWC RGB -> float CHW in [-1, 1] by (v/255 - 0.5)/0.5 evaluated in double
// and rounded once to float. Compiled with --fmad=false. Self-contained.

// Halves a width x height (both even) uint8 HWC RGB image into dst (width/2 x height/2 x 3):
// (a + b + c + d + 2) >> 2 per channel. One thread per destination pixel (2-D grid).
extern "C" __global__ void shrink_2x(const unsigned char* src, int width, int height, unsigned char* dst) {
    const unsigned int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (width <= 0 || height <= 0 || (width & 1) || (height & 1)) {
        return;
    }
    const unsigned int ow = (unsigned int)width / 2;
    const unsigned int oh = (unsigned int)height / 2;
    if (ox >= ow || oy >= oh) {
        return;
    }
    const unsigned long long row = 3ull * (unsigned long long)width;
    const unsigned char* r0 = src + 2ull * oy * row + 6ull * ox;
    const unsigned char* r1 = r0 + row;
    unsigned char* o = dst + 3ull * ((unsigned long long)oy * ow + ox);
    for (int c = 0; c < 3; ++c) {
        const unsigned int sum = (unsigned int)r0[c] + r0[3 + c] + r1[c] + r1[3 + c];
        o[c] = (unsigned char)((sum + 2) >> 2);
    }
}

// uint8 HWC RGB (height x width x 3) -> float CHW (3 x height x width). One thread per pixel
// (1-D grid over width * height).
extern "C" __global__ void u8_hwc_to_unit_chw(const unsigned char* src, unsigned int n_pixels, float* dst) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_pixels) {
        return;
    }
    for (unsigned int c = 0; c < 3; ++c) {
        const double v = (double)src[3ull * i + c];
        dst[(unsigned long long)c * n_pixels + i] = (float)((v / 255.0 - 0.5) / 0.5);
    }
}
