#!/usr/bin/env bash
# Cargo runner for aarch64-unknown-linux-gnu (see .cargo/config.toml): runs an
# aarch64 binary on this x86-64 host under qemu-user.
#
# -L: the guest's /lib/ld-linux-aarch64.so.1 and libc come from the cross libc
#     (libc6-arm64-cross, /usr/aarch64-linux-gnu).
# -E: LD_LIBRARY_PATH for the guest only (not for qemu itself), so the arm64
#     multiarch libraries (GStreamer, ALSA, GLib: /usr/lib/aarch64-linux-gnu)
#     are found.
# QEMU_CPU may pick the emulated CPU (default "max": all features qemu knows).
set -euo pipefail
qemu="${QEMU_AARCH64:-qemu-aarch64}"
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "qemu-runner: $qemu not found; run cross/setup-host.sh" >&2
    exit 127
fi
libpath=/usr/lib/aarch64-linux-gnu:/lib/aarch64-linux-gnu
exec "$qemu" -L /usr/aarch64-linux-gnu \
    -E "LD_LIBRARY_PATH=$libpath${MODA_QEMU_LD_LIBRARY_PATH:+:$MODA_QEMU_LD_LIBRARY_PATH}" \
    "$@"
