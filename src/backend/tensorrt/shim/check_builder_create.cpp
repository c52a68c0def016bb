// A check of moda_trt_builder_create's failure paths, run by scripts/check-trt-shim.sh on a
// machine without TensorRT (as check_runtime_create.cpp for the runtime): started with
// LD_LIBRARY_PATH pointing at no libnvinfer, at libraries without TensorRT's builder or parser
// entry points, and at stubs whose createInferBuilder_INTERNAL returns null.
// Usage: check_builder_create EXPECTED_CODE TEXT (exit 0 when the call fails with that code
// and its message contains TEXT).
#include "moda_trt.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s EXPECTED_CODE TEXT\n", argv[0]);
        return 2;
    }
    moda_trt_builder* builder = nullptr;
    char err[1024] = {0};
    int const rc = moda_trt_builder_create(&builder, err, sizeof err);
    std::printf("rc=%d message=%s\n", rc, err);
    if (builder != nullptr || rc != std::atoi(argv[1]) || std::strstr(err, argv[2]) == nullptr) {
        moda_trt_builder_destroy(builder);
        return 1;
    }
    // Null arguments are refused with a message, not a crash.
    moda_trt_build_options options{};
    int const bad = moda_trt_builder_build(nullptr, nullptr, 0, &options, nullptr, nullptr, err,
                                           sizeof err);
    if (bad != MODA_TRT_BAD_ARGUMENT || std::strstr(err, "null argument") == nullptr) {
        std::printf("a null builder was not refused: rc=%d %s\n", bad, err);
        return 1;
    }
    return 0;
}
