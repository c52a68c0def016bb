#!/usr/bin/env bash
# The test command of README.md: sets this machine up, then runs the whole native test suite
# (unit tests, golden conformance against ../shared/reference, ONNX Runtime cross-checks, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MODA_PYTHON="$PWD/.venv/bin/python3"
cargo test --locked "$@"
