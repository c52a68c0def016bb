#!/usr/bin/env bash
# On a machine without a GPU, CUDA driver or TensorRT (CI): every way of asking for the GPU
# path fails with one clear error line, exit code 1, no panic.
#   - a default build (no GPU features): `render --backend tensorrt`, `gpu-check`,
#     moda-edged with backend = "tensorrt" and `engine build` say the build lacks them and how
#     to get them;
#   - a Jetson build (`--features jetson`, the real TensorRT shim, cudarc loading libcuda at
#     run time): the same commands, and `engine build`, name the missing CUDA driver.
# Needs the tiny models and demo avatar, made here.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TENSORRT_INCLUDE_DIR=${TENSORRT_INCLUDE_DIR:-../shared/third_party/tensorrt-10.3/include}
export CUDA_INCLUDE_DIR=${CUDA_INCLUDE_DIR:-$PWD/.cuda/12.6/include}
bash scripts/cuda-wheels.sh >/dev/null
tdir=${CARGO_TARGET_DIR:-target}
bin=$tdir/debug/moda-edge
daemon=$tdir/debug/moda-edged
fails=0

# expect NAME WORD... -- COMMAND...: exit 1, one stderr line starting "error: " naming WORDs.
expect() {
  local name=$1; shift
  local words=()
  while [ "$1" != "--" ]; do words+=("$1"); shift; done
  shift
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  local lines
  lines=$(printf '%s\n' "$err" | grep -c . || true)
  local ok=1
  [ "$rc" -eq 1 ] || ok=0
  [ "$lines" -eq 1 ] || ok=0
  case "$err" in error:*) ;; *) ok=0 ;; esac
  case "$err" in *panicked*) ok=0 ;; esac
  for w in "${words[@]}"; do case "$err" in *"$w"*) ;; *) ok=0 ;; esac; done
  if [ "$ok" -eq 1 ]; then
    echo "ok   $name: $err"
  else
    echo "FAIL $name (exit $rc, $lines lines): $err"
    fails=$((fails + 1))
  fi
}

checks() {
  local what=$1; shift
  expect "$what: render --backend tensorrt" "$@" -- \
    "$bin" render "$work/speech.wav" --avatar "$work/avatar" --models "$work/models" \
    -o "$work/out.y4m" --seed 1 --backend tensorrt
  expect "$what: gpu-check" "$@" -- "$bin" gpu-check --avatar "$work/avatar"
  expect "$what: moda-edged --check, backend = tensorrt" "$@" -- \
    "$daemon" --config "$work/moda-edge.toml" --check --set backend=tensorrt
}

echo "== default build"
cargo build --locked --bins
"$bin" models init -o "$work/models" --preset tiny --seed 1 >/dev/null
"$bin" avatar demo -o "$work/avatar" --renderer "$work/models/renderer.onnx" --renderer-size 256 >/dev/null
python3 - "$work/speech.wav" <<'PY'
import math, struct, sys, wave
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 9))) for i in range(16000)))
PY
printf 'models = "%s"\navatar = "%s"\n[audio]\nsource = "silence://"\n[video]\nsink = "null://"\n' \
  "$work/models" "$work/avatar" >"$work/moda-edge.toml"
expect "default build: render --backend tensorrt" "no TensorRT backend" "--features jetson" -- \
  "$bin" render "$work/speech.wav" --avatar "$work/avatar" --models "$work/models" \
  -o "$work/out.y4m" --seed 1 --backend tensorrt
expect "default build: gpu-check" "without the GPU path" "--features cuda" -- \
  "$bin" gpu-check --avatar "$work/avatar"
expect "default build: moda-edged backend = tensorrt" "backend" "no TensorRT backend" -- \
  "$daemon" --config "$work/moda-edge.toml" --check --set backend=tensorrt
expect "default build: engine build" "no TensorRT builder" "--features jetson" -- \
  "$bin" engine build --onnx "$work/models/renderer.onnx" --recipe engines/renderer.toml \
  -o "$work/engines"

echo "== Jetson build (--features jetson) on a machine without the CUDA driver"
cargo build --locked --bins --features jetson
checks "jetson build" "libcuda.so.1"
expect "jetson build: engine build" "libcuda.so.1" -- \
  "$bin" engine build --onnx "$work/models/renderer.onnx" --recipe engines/renderer.toml \
  -o "$work/engines"

if [ "$fails" -gt 0 ]; then
  echo "check-no-gpu: $fails check(s) FAILED"
  exit 1
fi
echo "check-no-gpu: every GPU request without a GPU is one clear line"
