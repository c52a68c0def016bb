#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and its driver (TensorRT not needed): builds moda-edge with
# feature `cuda`, then
#   1. runs the library's GPU tests on the device (the device layer's buffer round trip),
#   2. `moda-edge gpu-check`: compiles every kernel with NVRTC for this GPU (the second run
#      takes them from the on-disk cache), runs each on the device against the Rust CPU stages
#      on frames of the demo avatar and compares bit for bit, then times the double-buffered
#      frame stage (two slots) against one slot, with a stand-in kernel as the renderer.
# Put the printed numbers in README ("GPU path"), with the GPU's name.
#
#   bash scripts/gpu-check.sh [gpu-check options, e.g. --frames 300 --rounds 4000]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  echo "gpu-check: libcuda.so.1 not found: this script needs a machine with an NVIDIA GPU and driver" >&2
  exit 1
fi
# NVRTC 12.6 from PyPI, unless the machine has its own CUDA toolkit's.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so\.12'; then
  bash scripts/cuda-wheels.sh
  export LD_LIBRARY_PATH="$PWD/.cuda/12.6/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
work=${MODA_GPU_CHECK_DIR:-target/gpu-check}
mkdir -p "$work"

echo "== cargo test --release --features cuda --lib gpu::"
cargo test --release --features cuda --lib gpu:: 2>&1 | grep -E '^test |test result'

echo "== building moda-edge with --features cuda"
cargo build --release --features cuda --bin moda-edge
bin=target/release/moda-edge
[ -e "$work/models/renderer.onnx" ] || "$bin" models init -o "$work/models" --preset tiny --seed 1
[ -e "$work/avatar/avatar.toml" ] || "$bin" avatar demo -o "$work/avatar" \
  --renderer "$work/models/renderer.onnx" --renderer-size 512

rm -rf "$work/kernels"
echo "== gpu-check (kernels compiled)"
"$bin" gpu-check --avatar "$work/avatar" --cache "$work/kernels" "$@"
echo "== gpu-check (kernels from the cache)"
"$bin" gpu-check --avatar "$work/avatar" --cache "$work/kernels" "$@"
