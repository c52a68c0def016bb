#!/usr/bin/env bash
# Checks the TensorRT shim (src/backend/tensorrt/shim) on a machine without TensorRT or a GPU:
# 1. it compiles warning-free against TensorRT 10.3's headers (../shared/third_party) and the
#    CUDA 12.6 headers from PyPI (scripts/cuda-wheels.sh), for x86-64 and, when
#    aarch64-linux-gnu-g++ is installed, for the Jetson;
# 2. moda_trt_runtime_create fails with a message, not a crash, when libnvinfer.so.10 is
#    missing, lacks TensorRT's entry points, or refuses to create a runtime;
# 3. moda_trt_builder_create (engine build) likewise names libnvinfer.so.10 or
#    libnvonnxparser.so.10, whichever is missing or foreign.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/cuda-wheels.sh >/dev/null
trt=${TENSORRT_INCLUDE_DIR:-../shared/third_party/tensorrt-10.3/include}
cuda=${CUDA_INCLUDE_DIR:-.cuda/12.6/include}
shim=src/backend/tensorrt/shim
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -Wall -Wextra -Werror -isystem "$trt" -isystem "$cuda")

g++ "${flags[@]}" -c "$shim/moda_trt.cpp" -o "$out/moda_trt.o"
g++ "${flags[@]}" -c "$shim/moda_trt_build.cpp" -o "$out/moda_trt_build.o"
echo "check-trt-shim: x86-64 compile ok"
if command -v aarch64-linux-gnu-g++ >/dev/null; then
  aarch64-linux-gnu-g++ "${flags[@]}" -c "$shim/moda_trt.cpp" -o "$out/moda_trt_arm64.o"
  aarch64-linux-gnu-g++ "${flags[@]}" -c "$shim/moda_trt_build.cpp" -o "$out/moda_trt_build_arm64.o"
  echo "check-trt-shim: aarch64 compile ok"
else
  echo "check-trt-shim: aarch64-linux-gnu-g++ not installed, aarch64 compile skipped"
fi

g++ "${flags[@]}" -I"$shim" "$shim/check_runtime_create.cpp" "$out/moda_trt.o" -ldl \
  -o "$out/check"
mkdir -p "$out/none" "$out/nosym" "$out/null"
echo 'extern "C" int unrelated() { return 0; }' >"$out/nosym.cpp"
g++ -shared -fPIC "$out/nosym.cpp" -o "$out/nosym/libnvinfer.so.10"
cat >"$out/null.cpp" <<'CPP'
#include <cstdint>
extern "C" int32_t getInferLibVersion() { return 100300; }
extern "C" void* createInferRuntime_INTERNAL(void*, int32_t) { return nullptr; }
CPP
g++ -shared -fPIC "$out/null.cpp" -o "$out/null/libnvinfer.so.10"
LD_LIBRARY_PATH="$out/none" "$out/check" 1 "cannot load libnvinfer.so.10 ("
LD_LIBRARY_PATH="$out/none" "$out/check" 1 "JetPack 6"
LD_LIBRARY_PATH="$out/nosym" "$out/check" 1 "not a TensorRT 10 library"
LD_LIBRARY_PATH="$out/null" "$out/check" 2 "createInferRuntime failed (library version 100300"
echo "check-trt-shim: runtime creation fails cleanly without TensorRT"

g++ "${flags[@]}" -I"$shim" "$shim/check_builder_create.cpp" "$out/moda_trt_build.o" -ldl \
  -o "$out/check_builder"
mkdir -p "$out/bnull" "$out/noparser" "$out/parsernosym"
cat >"$out/bnull.cpp" <<'CPP'
#include <cstdint>
extern "C" int32_t getInferLibVersion() { return 100300; }
extern "C" void* createInferBuilder_INTERNAL(void*, int32_t) { return nullptr; }
CPP
g++ -shared -fPIC "$out/bnull.cpp" -o "$out/noparser/libnvinfer.so.10"
cp "$out/noparser/libnvinfer.so.10" "$out/parsernosym/libnvinfer.so.10"
cp "$out/noparser/libnvinfer.so.10" "$out/bnull/libnvinfer.so.10"
cp "$out/nosym/libnvinfer.so.10" "$out/parsernosym/libnvonnxparser.so.10"
echo 'extern "C" void* createNvOnnxParser_INTERNAL(void*, void*, int) { return nullptr; }' \
  >"$out/parser.cpp"
g++ -shared -fPIC "$out/parser.cpp" -o "$out/bnull/libnvonnxparser.so.10"
LD_LIBRARY_PATH="$out/none" "$out/check_builder" 1 "cannot load libnvinfer.so.10 ("
LD_LIBRARY_PATH="$out/nosym" "$out/check_builder" 1 "lacks createInferBuilder_INTERNAL"
LD_LIBRARY_PATH="$out/noparser" "$out/check_builder" 1 "cannot load libnvonnxparser.so.10 ("
LD_LIBRARY_PATH="$out/noparser" "$out/check_builder" 1 "JetPack 6"
LD_LIBRARY_PATH="$out/parsernosym" "$out/check_builder" 1 "lacks createNvOnnxParser_INTERNAL"
LD_LIBRARY_PATH="$out/bnull" "$out/check_builder" 2 "createInferBuilder failed (library version 100300"
echo "check-trt-shim: builder creation fails cleanly without TensorRT or its ONNX parser"
