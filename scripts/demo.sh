#!/usr/bin/env bash
# The main job of README.md, from a fresh clone with no checkpoint at hand: set up, build the
# release binary, make seeded random-weight networks and the synthetic demo avatar, and render a
# talking-portrait video of a speech recording on the CPU (out/demo/demo.mp4).
#
# Seeded weights are random numbers, not a trained model: the video shows the whole pipeline
# running (motion, mesh drawing, renderer, mp4 with the speech), and the subject's mesh moves with
# noise, not with the words; the rendered panel is noise too. To animate a real person, import
# the released checkpoints instead (README, Usage):
#   moda-edge import moda MODA.pkl -o models/moda.onnx
#   moda-edge import faco FaCo.pkl -o models/faco.onnx
#   moda-edge import avatar assets/data/meta_dir/Cathy --renderer Cathy.pth -o avatars/cathy
#   moda-edge render speech.wav --avatar avatars/cathy --models models -o out.mp4
#
# Usage: bash scripts/demo.sh [speech.wav]
#   without a recording, espeak-ng (installed from Debian if missing) speaks a sentence.
set -euo pipefail
cd "$(dirname "$0")/.."
wav="${1:-}"
if [ -n "$wav" ] && [ ! -f "$wav" ]; then
  echo "demo: $wav: no such file (expected a WAV recording, or no argument for a spoken sentence)" >&2
  exit 1
fi
bash scripts/setup.sh
if [ -z "$wav" ] && ! command -v espeak-ng >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "demo: installing espeak-ng (speaks the demo sentence)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

cargo build --release --locked --bin moda-edge
bin="${CARGO_TARGET_DIR:-target}/release/moda-edge"
out=out/demo
"$bin" models init -o "$out/models" --preset tiny --seed 1
"$bin" avatar demo -o "$out/avatar" --renderer "$out/models/renderer.onnx" --renderer-size 512
if [ -z "$wav" ]; then
  wav="$out/speech.wav"
  espeak-ng -w "$wav" "Hello, and welcome. I am the moda edge demo portrait. \
My face is computed from the mesh topology, and my networks have random weights, \
so I move with noise rather than with these words."
fi
"$bin" render "$wav" --avatar "$out/avatar" --models "$out/models" \
  --seed 1 --layout panel -o "$out/demo.mp4"
echo "demo: wrote $out/demo.mp4 (prediction | reference | condition image, with the speech)."
echo "demo: the weights are seeded random numbers, so the motion and the rendered panel are noise;"
echo "demo: import the released checkpoints to animate a real person (README, Usage)."
