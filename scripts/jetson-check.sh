#!/usr/bin/env bash
# On a Jetson Orin with JetPack 6 (CUDA 12.6, TensorRT 10.3): the one command that checks the
# GPU path on the device.
#   1. builds moda-edge with --features jetson (the TensorRT shim, the CUDA kernels);
#   2. `moda-edge gpu-check`: every kernel on the GPU against the CPU stages, bit for bit, and
#      the double-buffered frame stage timed against one slot;
#   3. for FP32 and FP16: builds each network's engine with `moda-edge engine build` and the
#      recipes of engines/ (their profiles cover the benchmarked and the live shapes; build
#      times are printed), then `bench --backend tensorrt` times each network and gives its
#      largest difference from the CPU backend (tract) on the same inputs;
#   4. moda-edged --check with backend = "tensorrt": the per-stage times of the live pipeline
#      and the smallest latency budget that holds.
#
#   bash scripts/jetson-check.sh [MODELS_DIR]   # default: seeded release-size networks
# MODELS_DIR holds moda.onnx, faco.onnx, renderer.onnx (e.g. imported from your checkpoints).
# MODA_DEVICE_CLASS=nano|nx|agx picks the recipes' variant (default nx). Outputs go to
# target/jetson-check/; building the engines takes most of the time (not measured yet).
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/jetson-check
mkdir -p "$work"

echo "== build (--features jetson)"
export TENSORRT_INCLUDE_DIR=${TENSORRT_INCLUDE_DIR:-/usr/include/aarch64-linux-gnu}
export CUDA_INCLUDE_DIR=${CUDA_INCLUDE_DIR:-/usr/local/cuda/include}
cargo build --release --features jetson
bin=target/release/moda-edge
daemon=target/release/moda-edged

models=${1:-$work/models}
if [ ! -e "$models/moda.onnx" ]; then
  "$bin" models init -o "$models" --preset release --seed 1
fi
[ -e "$work/avatar/avatar.toml" ] || "$bin" avatar demo -o "$work/avatar" \
  --renderer "$models/renderer.onnx" --renderer-size 512

echo "== kernels on the GPU against the CPU stages"
"$bin" gpu-check --avatar "$work/avatar" --cache "$work/kernels" | tee "$work/gpu-check.txt"

class=${MODA_DEVICE_CLASS:-nx}   # nano | nx | agx: the recipes' workspace
for precision in fp32 fp16; do
  dir=$work/$precision
  mkdir -p "$dir"
  cp "$models"/moda.onnx "$models"/faco.onnx "$models"/renderer.onnx "$dir/"
  echo "== $precision engines (moda-edge engine build, engines/*.toml)"
  for net in moda faco renderer; do
    /usr/bin/time -f "$net $precision: %e s" "$bin" engine build --onnx "$dir/$net.onnx" \
      --recipe "engines/$net.toml" --device-class "$class" --precision "$precision" \
      --timing-cache "$work/timing.cache" -o "$dir"
  done
  echo "== $precision: TensorRT against the CPU backend"
  "$bin" bench --models "$dir" --backend tensorrt --precision "$precision" --iters 20 \
    | tee "$work/bench-$precision.md"
done

echo "== live pipeline on TensorRT (FP16 engines): per-stage times and the smallest budget"
cp "$work/fp16/renderer.onnx" "$work/avatar/renderer.onnx"
cp "$work/fp16/renderer.engine" "$work/fp16/renderer.engine.json" "$work/avatar/"
cat >"$work/moda-edge.toml" <<TOML
models = "$PWD/$work/fp16"
avatar = "$PWD/$work/avatar"
backend = "tensorrt"
[audio]
source = "silence://"
[video]
sink = "null://"
TOML
"$daemon" --config "$work/moda-edge.toml" --check | tee "$work/check.txt"
echo "jetson-check: results in $work (gpu-check.txt, bench-fp32.md, bench-fp16.md, check.txt)"
