#!/usr/bin/env bash
# Fetches, from PyPI, the CUDA 12.6 pieces the GPU path needs on a machine without CUDA:
#   .cuda/12.6/lib      libnvrtc.so.12 (+ builtins) of nvidia-cuda-nvrtc-cu12 12.6.85, the NVRTC
#                       that compiles the kernels (tests load it the way the product does:
#                       through LD_LIBRARY_PATH, by cudarc's dynamic loading)
#   .cuda/12.6/include  cuda_runtime_api.h & co. (nvidia-cuda-runtime-cu12 12.6.77) plus crt/
#                       (nvidia-cuda-nvcc-cu12 12.6.77): what TensorRT's headers include, for
#                       compiling the shim (CUDA_INCLUDE_DIR)
# These files are under NVIDIA's licence: fetched at build time, never committed (.gitignore).
# Idempotent; prints the two folders. Needs python3 with pip (scripts/setup.sh makes .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cuda/12.6
if [ -e "$root/lib/libnvrtc.so.12" ] && [ -e "$root/include/cuda_runtime_api.h" ] \
   && [ -e "$root/include/crt/host_defines.h" ]; then
  echo "cuda-wheels: ok ($root)"
  exit 0
fi
py=python3
if [ -x .venv/bin/python3 ]; then py=.venv/bin/python3; fi
whl=.cuda/wheels
mkdir -p "$whl" "$root/lib" "$root/include/crt"
for spec in nvidia-cuda-nvrtc-cu12==12.6.85 nvidia-cuda-runtime-cu12==12.6.77 \
            nvidia-cuda-nvcc-cu12==12.6.77; do
  name=${spec%%==*}
  if ! ls "$whl"/"${name//-/_}"-*.whl >/dev/null 2>&1; then
    echo "cuda-wheels: downloading $spec"
    "$py" -m pip download -q --disable-pip-version-check --no-deps \
      --only-binary=:all: --platform manylinux2014_x86_64 -d "$whl" "$spec"
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for w in "$whl"/*.whl; do "$py" -m zipfile -e "$w" "$tmp"; done
cp -a "$tmp"/nvidia/cuda_nvrtc/lib/. "$root/lib/"
cp -a "$tmp"/nvidia/cuda_runtime/include/. "$root/include/"
cp -a "$tmp"/nvidia/cuda_nvcc/include/crt/. "$root/include/crt/"
echo "cuda-wheels: ok ($root: lib/ $(ls "$root/lib" | tr '\n' ' '); include/ $(ls "$root/include" | wc -l) entries)"
