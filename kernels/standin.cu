// A stand-in for the renderer network, for timing the frame stage's slots without TensorRT
// (`moda-edge gpu-check`): one thread per output value reads both input images and the time
// code, then runs `rounds` dependent multiply-adds, so the kernel occupies the device for a
// time that grows with `rounds`. Its output is not a picture.

extern "C" __global__ void standin_render(const float* mesh, const float* reference, const float* code,
                                          float* image, unsigned int n, unsigned int rounds) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float v = 0.5f * (mesh[i] + reference[i]) + 0.001f * code[0];
    for (unsigned int r = 0; r < rounds; ++r) {
        v = v * 0.999f + 0.0005f;
    }
    image[i] = v > 1.0f ? 1.0f : (v < -1.0f ? -1.0f : v);
}
