// The renderer's temporal code for one frame (src/draw/timecode.rs): t = k/1000 rounded to
// float, then [t, sin t, cos t, sin 2t, cos 2t, ..., sin 32t, cos 32t]; each sine and cosine
// evaluated in double on the float argument and rounded once to float. Compiled with
// --fmad=false. Self-contained: NVRTC gets no include paths.

static __device__ __forceinline__ float time_code_value(unsigned long long frame, unsigned int c) {
    const float t = (float)((double)frame / 1000.0);
    if (c == 0) {
        return t;
    }
    const unsigned int i = (c - 1) / 2;
    // Scaling by a power of two is exact in float.
    const double x = (double)(t * (float)(1u << i));
    return (c & 1) ? (float)sin(x) : (float)cos(x);
}

// The 13 values of frame `frame` into code[0..13] (one thread per value).
extern "C" __global__ void time_code(unsigned long long frame, float* code) {
    const unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < 13) {
        code[c] = time_code_value(frame, c);
    }
}

// The 13 values as constant planes of `plane` floats each (CHW), from a code already computed
// by time_code (one thread per output value).
extern "C" __global__ void time_code_planes(const float* code, unsigned int plane, float* out) {
    const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (plane == 0 || i >= 13ull * plane) {
        return;
    }
    out[i] = code[i / plane];
}
