#!/usr/bin/env bash
# Cargo runner for aarch64-unknown-linux-gnu (see .cargo/config.toml): runs an
# aarch64 binary on this x86-64 host under qemu-user.
#
# The dynamic loader and libc MUST come from the same glibc build: ld.so and
# libc.so.6 share private data layouts (e.g. the thread-stack cache), and a
# mismatch hangs the first pthread_create in an endless list walk. On a host
# set up by cross/setup-host.sh there are two arm64 glibcs:
#   - libc6:arm64 (multiarch, /lib/ld-linux-aarch64.so.1, /lib/aarch64-linux-gnu),
#     pulled in by the arm64 GStreamer/ALSA packages and kept at the amd64 libc6
#     version;
#   - libc6-arm64-cross (/usr/aarch64-linux-gnu), used by the cross linker;
#     its version can lag behind (2.36-8cross1 vs 2.36-9+deb12uN).
# So we use the multiarch loader and libraries when they exist (no -L prefix:
# PT_INTERP /lib/ld-linux-aarch64.so.1 resolves on the host), and fall back to
# `-L /usr/aarch64-linux-gnu` only on a host without libc6:arm64.
#
# -E sets variables for the emulated program only, not for qemu itself:
#   LD_LIBRARY_PATH    the arm64 multiarch libraries (GStreamer, ALSA, GLib);
#   GST_REGISTRY_FORK  =no: scan GStreamer plugins in-process, because the
#                      arm64 gst-plugin-scanner helper cannot be exec'd
#                      without binfmt_misc (which we do not require).
# QEMU_CPU may pick the emulated CPU (default "max").
set -euo pipefail
qemu="${QEMU_AARCH64:-qemu-aarch64}"
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "qemu-runner: $qemu not found; run cross/setup-host.sh" >&2
    exit 127
fi
libpath=/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu
if [ -e /lib/ld-linux-aarch64.so.1 ] && [ -e /lib/aarch64-linux-gnu/libc.so.6 ]; then
    prefix=()
else
    prefix=(-L /usr/aarch64-linux-gnu)
    libpath=/usr/aarch64-linux-gnu/lib
fi
exec "$qemu" "${prefix[@]}" \
    -E "LD_LIBRARY_PATH=$libpath${MODA_QEMU_LD_LIBRARY_PATH:+:$MODA_QEMU_LD_LIBRARY_PATH}" \
    -E GST_REGISTRY_FORK=no \
    "$@"
