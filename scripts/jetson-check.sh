#!/usr/bin/env bash
# On a Jetson Orin with JetPack 6 (CUDA 12.6, TensorRT 10.3): the one command that checks the
# GPU path on the device.
#   1. builds moda-edge with --features jetson (the TensorRT shim, the CUDA kernels);
#   2. `moda-edge gpu-check`: every kernel on the GPU against the CPU stages, bit for bit, and
#      the double-buffered frame stage timed against one slot;
#   3. for FP32 and FP16: builds each network's engine with trtexec for the benchmarked shapes,
#      then `bench --backend tensorrt` times each network and gives its largest difference
#      from the CPU backend (tract) on the same inputs;
#   4. moda-edged --check with backend = "tensorrt": the per-stage times of the live pipeline
#      and the smallest latency budget that holds.
#
#   bash scripts/jetson-check.sh [MODELS_DIR]   # default: seeded release-size networks
# MODELS_DIR holds moda.onnx, faco.onnx, renderer.onnx (e.g. imported from your checkpoints).
# Outputs go to target/jetson-check/. Takes about an hour, most of it building engines.
set -euo pipefail
cd "$(dirname "$0")/.."
trtexec=${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}
work=target/jetson-check
mkdir -p "$work"
[ -x "$trtexec" ] || { echo "jetson-check: $trtexec not found (TensorRT's trtexec; set TRTEXEC)" >&2; exit 1; }

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

for precision in fp32 fp16; do
  dir=$work/$precision
  mkdir -p "$dir"
  cp "$models"/moda.onnx "$models"/faco.onnx "$models"/renderer.onnx "$dir/"
  echo "== $precision engines (trtexec)"
  "$bin" bench --models "$dir" --trtexec --precision "$precision" | while read -r line; do
    echo "$line"
    # shellcheck disable=SC2086
    ${line/#trtexec/$trtexec} >"$dir/trtexec.log" 2>&1 || { echo "trtexec failed, see $dir/trtexec.log" >&2; exit 1; }
  done
  echo "== $precision: TensorRT against the CPU backend"
  "$bin" bench --models "$dir" --backend tensorrt --precision "$precision" --iters 20 \
    | tee "$work/bench-$precision.md"
done

echo "== live pipeline on TensorRT (FP16 engines): per-stage times and the smallest budget"
cat >"$work/moda-edge.toml" <<TOML
models = "$PWD/$work/fp16"
avatar = "$PWD/$work/avatar"
backend = "tensorrt"
[audio]
source = "silence://"
[video]
sink = "null://"
TOML
# The live windows have other shapes than the benchmark: each missing or mismatched engine is
# reported with the trtexec command that builds it; build it and ask again.
for attempt in 1 2 3 4; do
  if out=$("$daemon" --config "$work/moda-edge.toml" --check 2>&1); then
    printf '%s\n' "$out" | tee "$work/check.txt"
    break
  fi
  cmd=$(printf '%s\n' "$out" | grep -o 'it: trtexec .*' | head -n1 | sed 's/^it: //')
  if [ -z "$cmd" ] || [ "$attempt" -eq 4 ]; then
    printf '%s\n' "$out" >&2
    exit 1
  fi
  echo "building: $cmd --fp16"
  # shellcheck disable=SC2086
  ${cmd/#trtexec/$trtexec} --fp16 >"$work/trtexec-live.log" 2>&1
done
echo "jetson-check: results in $work (gpu-check.txt, bench-fp32.md, bench-fp16.md, check.txt)"
