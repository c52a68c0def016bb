// The CUDA built-ins the kernels use, for compiling them as plain C++ on the CPU (tests only,
// see harness.cpp). A "launch" runs every thread of every block one after another on the
// calling thread, so kernels must not use shared memory or __syncthreads, and atomics can be
// plain read-modify-writes.
#pragma once

#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct moda_dim3 {
    unsigned int x;
    unsigned int y;
    unsigned int z;
};

// Per calling thread, so that Rust tests running in parallel each walk their own grid.
inline thread_local moda_dim3 threadIdx;
inline thread_local moda_dim3 blockIdx;
inline thread_local moda_dim3 blockDim;
inline thread_local moda_dim3 gridDim;

template <typename T>
static inline T atomicMax(T* address, T value) {
    const T old = *address;
    if (value > old) {
        *address = value;
    }
    return old;
}

template <typename T>
static inline T atomicMin(T* address, T value) {
    const T old = *address;
    if (value < old) {
        *address = value;
    }
    return old;
}

template <typename T>
static inline T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

template <typename T>
static inline T atomicExch(T* address, T value) {
    const T old = *address;
    *address = value;
    return old;
}
