// A check of moda_trt_runtime_create's failure paths, run by scripts/check-trt-shim.sh on a
// machine without TensorRT: built with the shim, it is started with LD_LIBRARY_PATH pointing
// at no libnvinfer, at a library without TensorRT's symbols, and at a stub whose
// createInferRuntime_INTERNAL returns null. Usage: check_runtime_create EXPECTED_CODE TEXT
// (exit 0 when the call fails with that code and its message contains TEXT).
#include "moda_trt.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s EXPECTED_CODE TEXT\n", argv[0]);
        return 2;
    }
    moda_trt_runtime* runtime = nullptr;
    char err[1024] = {0};
    int const rc = moda_trt_runtime_create(&runtime, err, sizeof err);
    std::printf("rc=%d message=%s\n", rc, err);
    if (runtime != nullptr || rc != std::atoi(argv[1]) || std::strstr(err, argv[2]) == nullptr) {
        moda_trt_runtime_destroy(runtime);
        return 1;
    }
    // A buffer too small for the message gets a truncated, NUL-terminated prefix.
    char small[8];
    std::memset(small, 'x', sizeof small);
    moda_trt_runtime_create(&runtime, small, sizeof small);
    if (small[sizeof small - 1] != '\0' || std::strlen(small) != sizeof small - 1) {
        std::printf("the message was not truncated to the buffer\n");
        return 1;
    }
    return 0;
}
