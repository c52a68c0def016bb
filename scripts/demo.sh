#!/usr/bin/env bash
# The main job of README.md: set up, build the release binary, and render a talking-portrait
# video from a speech recording on the CPU.
#
# Today the demo renders with the official-format golden checkpoints and the e2e avatar files
# of ../shared/reference (random weights: the video shows how the pipeline animates, not a
# face). With the released checkpoints, import them instead:
#   moda-edge import moda MODA.pkl -o models/moda.onnx
#   moda-edge import faco FaCo.pkl -o models/faco.onnx
#   moda-edge import avatar assets/data/meta_dir/Cathy --renderer Cathy.pth -o avatars/cathy
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin moda-edge
bin="${CARGO_TARGET_DIR:-target}/release/moda-edge"
ref="${MODA_REFERENCE:-../shared/reference}"
if [ ! -d "$ref/golden" ]; then
  echo "demo: $ref/golden not found (set MODA_REFERENCE); it holds the demo checkpoints and avatar" >&2
  exit 1
fi
g="$ref/golden"
$bin import moda "$g/moda_w2v_tiny/checkpoint.pkl" --wav2vec-heads 2 -o out/demo/models/moda.onnx
$bin import faco "$g/faco/checkpoint.pkl" -o out/demo/models/faco.onnx
$bin import avatar "$g/e2e" --renderer "$g/render_small/checkpoint.pkl" --renderer-size 256 -o out/demo/avatar
$bin render "$g/e2e/speech.wav" --avatar out/demo/avatar --models out/demo/models \
  --seed 1 --layout panel -o out/demo/demo.mp4
echo "demo: wrote out/demo/demo.mp4 (prediction | reference | condition image, with the speech)"
