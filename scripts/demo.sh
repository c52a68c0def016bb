#!/usr/bin/env bash
# The main job of README.md, as far as it exists today: set up, build the release binary, make
# seeded `tiny` models, import the official-format golden checkpoints when ../shared/reference is
# beside the checkout, and run every network once through the CPU backend with a latency report.
#
# Seeded random weights animate noise, not a face; import the released checkpoints instead with
#   moda-edge import moda MODA.pkl -o models/moda.onnx   (and faco, renderer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin moda-edge
bin=target/release/moda-edge

$bin models init -o out/models-tiny --preset tiny --seed 1

ref="${MODA_REFERENCE:-../shared/reference}"
if [ -d "$ref/golden" ]; then
  echo "demo: importing the official-format golden checkpoints from $ref/golden"
  $bin import moda "$ref/golden/moda_w2v_tiny/checkpoint.pkl" --wav2vec-heads 2 -o out/golden/moda.onnx
  $bin import faco "$ref/golden/faco/checkpoint.pkl" -o out/golden/faco.onnx
  $bin import renderer "$ref/golden/render_small/checkpoint.pkl" -o out/golden/renderer.onnx
  $bin infer out/golden/faco.onnx -o out/golden/faco-out \
    --input lip="$ref/golden/faco/input_lip.npy" --input eye="$ref/golden/faco/input_eye.npy" \
    --input template="$ref/golden/faco/input_ref.npy"
fi

echo "demo: latency of the tiny models on this CPU (tract vs ONNX Runtime, 1 thread)"
$bin bench --models out/models-tiny --frames 300 --size 256 --iters 3 --ort .venv/bin/python3
