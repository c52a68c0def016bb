#!/usr/bin/env bash
# Sets up a fresh Debian 12 (x86-64) machine for building and testing moda-edge natively:
# system libraries the default features link (GStreamer), GStreamer elements used by the mp4
# sink and its tests, and a Python virtual environment with ONNX Runtime (the second runtime
# the conformance tests compare tract against). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# libclang-dev: bindgen generates the V4L2 bindings (v4l2-sys-mit) from linux/videodev2.h.
# espeak-ng: the speech of `moda-edge calibration make` (tests/quant_calibration.rs).
packages=(
  pkg-config build-essential python3-venv libclang-dev linux-libc-dev
  libasound2-dev
  espeak-ng
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ONNX Runtime for the cross-runtime tests and `moda-edge bench --ort`; onnx for ONNX Runtime's
# calibrators (scripts/ort_calibrate.py, tests/quant_calibration.rs).
if [ ! -x .venv/bin/python3 ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python3 -c "import onnxruntime, numpy, onnx" 2>/dev/null; then
  echo "setup: installing onnxruntime, numpy and onnx into .venv"
  .venv/bin/python3 -m pip install -q --disable-pip-version-check "onnxruntime>=1.17" "numpy>=1.24" "onnx>=1.15"
fi
echo "setup: ok ($(.venv/bin/python3 -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)'))"
