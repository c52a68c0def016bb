// RGB24 -> YUYV (4:2:2) and NV12 (4:2:0) for the live outputs (src/sink/pixel.rs): BT.601
// limited range with the y4m sink's integer conversion, chroma the rounded mean of the pixels
// present (an odd right or bottom edge repeats the edge pixel), rows of `stride` bytes whose
// padding is left untouched. Self-contained.

struct Ycc {
    int y;
    int cb;
    int cr;
};

// sink::y4m::rgb_to_ycbcr (arithmetic right shifts of possibly negative sums).
static __device__ __forceinline__ Ycc yuv_ycbcr(const unsigned char* px) {
    const int r = px[0], g = px[1], b = px[2];
    Ycc o;
    o.y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    o.cb = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    o.cr = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    return o;
}

// One thread per pair of pixels (2-D grid: ceil(width/2) x height). Each pair writes
// Y0 Cb Y1 Cr at dst + y*stride + 4*pair; an odd last pixel is its own pair (Y Cb Y Cr).
extern "C" __global__ void rgb_to_yuyv(const unsigned char* rgb, int width, int height, unsigned char* dst,
                                       unsigned int stride) {
    const unsigned int pair = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (width <= 0 || height <= 0 || y >= (unsigned int)height) {
        return;
    }
    const unsigned int x = 2 * pair;
    if (pair >= ((unsigned int)width + 1) / 2) {
        return;
    }
    const unsigned int right = x + 1 < (unsigned int)width ? x + 1 : x;
    const unsigned char* row = rgb + 3ull * (unsigned long long)width * y;
    const Ycc a = yuv_ycbcr(row + 3ull * x);
    const Ycc b = yuv_ycbcr(row + 3ull * right);
    unsigned char* o = dst + (unsigned long long)stride * y + 4ull * pair;
    o[0] = (unsigned char)a.y;
    o[1] = (unsigned char)((a.cb + b.cb + 1) >> 1);
    o[2] = (unsigned char)b.y;
    o[3] = (unsigned char)((a.cr + b.cr + 1) >> 1);
}

// One thread per 2x2 block (2-D grid: ceil(width/2) x ceil(height/2)). Writes the block's Y
// values into the Y plane (rows of `stride` bytes) and its Cb Cr pair into the interleaved
// plane that follows at dst + stride*height.
extern "C" __global__ void rgb_to_nv12(const unsigned char* rgb, int width, int height, unsigned char* dst,
                                       unsigned int stride) {
    const unsigned int bx = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int by = blockIdx.y * blockDim.y + threadIdx.y;
    if (width <= 0 || height <= 0) {
        return;
    }
    const unsigned int w = (unsigned int)width;
    const unsigned int h = (unsigned int)height;
    if (bx >= (w + 1) / 2 || by >= (h + 1) / 2) {
        return;
    }
    const unsigned int x = 2 * bx;
    const unsigned int top = 2 * by;
    const unsigned int right = x + 1 < w ? x + 1 : x;
    const unsigned int bottom = top + 1 < h ? top + 1 : top;
    const unsigned long long row = 3ull * w;
    const unsigned char* t = rgb + row * top;
    const unsigned char* u = rgb + row * bottom;
    const Ycc a = yuv_ycbcr(t + 3ull * x);
    const Ycc b = yuv_ycbcr(t + 3ull * right);
    const Ycc c = yuv_ycbcr(u + 3ull * x);
    const Ycc d = yuv_ycbcr(u + 3ull * right);
    unsigned char* ty = dst + (unsigned long long)stride * top;
    ty[x] = (unsigned char)a.y;
    ty[right] = (unsigned char)b.y;
    unsigned char* uy = dst + (unsigned long long)stride * bottom;
    uy[x] = (unsigned char)c.y;
    uy[right] = (unsigned char)d.y;
    unsigned char* uv = dst + (unsigned long long)stride * h + (unsigned long long)stride * by + x;
    uv[0] = (unsigned char)((a.cb + b.cb + c.cb + d.cb + 2) >> 2);
    uv[1] = (unsigned char)((a.cr + b.cr + c.cr + d.cr + 2) >> 2);
}
