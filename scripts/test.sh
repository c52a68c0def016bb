#!/usr/bin/env bash
# The test command of README.md: sets this machine up, then runs the whole native test suite
# (unit tests, golden conformance against ../shared/reference, ONNX Runtime cross-checks, CLI)
# with the GPU path's code that runs without a GPU: feature `cuda` (the kernels compiled by
# NVRTC 12.6 from PyPI for sm_87 and sm_90; the device layer's missing-driver error) and
# `tensorrt-fake` (the TensorRT backend over the fake shim, the double-buffered frame stage on
# the host device, `--backend tensorrt` end to end). The kernels' CPU harness runs in any build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/cuda-wheels.sh
export MODA_PYTHON="$PWD/.venv/bin/python3"
# cudarc loads NVRTC by name, as the product does on the Jetson; the PyPI copy is found here.
export LD_LIBRARY_PATH="$PWD/.cuda/12.6/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MODA_REQUIRE_NVRTC=1
cargo test --locked --features cuda,tensorrt-fake "$@"
