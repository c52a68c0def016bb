#!/usr/bin/env bash
# Set up an x86-64 Debian 12 (bookworm) host to build moda-edge natively and for
# aarch64-unknown-linux-gnu (Jetson Orin, JetPack 6), and to run the aarch64
# test binaries under qemu-user.
#
# Idempotent: every step checks before it acts, so a second run changes nothing
# and exits 0. Non-interactive. Needs root (or sudo) for apt/dpkg.
#
#   cross/setup-host.sh            # everything
#   MODA_SKIP_APT=1 cross/setup-host.sh   # no apt: rustup target, overlay, checks
set -euo pipefail

# Where the unpacked arm64 GStreamer plugins-base -dev files go (see step 3).
# .cargo/config.toml names this path in PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu.
MODA_ARM64_OVERLAY=/opt/moda-edge-cross/arm64
# pkg-config search path for aarch64, the same value as in .cargo/config.toml.
ARM64_PC_LIBDIR="$MODA_ARM64_OVERLAY/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup-host] %s\n' "$*"; }

# --- 1. Rust target -----------------------------------------------------------
if ! command -v rustup >/dev/null 2>&1; then
    log "rustup not found: install it first (https://rustup.rs), then re-run."
    exit 1
fi
if rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    log "rust target aarch64-unknown-linux-gnu: already installed"
else
    log "rust target aarch64-unknown-linux-gnu: installing"
    rustup target add aarch64-unknown-linux-gnu
fi

# --- 2. apt packages ----------------------------------------------------------
# Native x86-64 build and run of the default features (GStreamer sinks, ALSA).
# libclang-dev: bindgen (v4l2-sys-mit, the V4L2 output sink) parses the kernel's
# videodev2.h with libclang at build time, for the host and for aarch64 alike.
native_pkgs=(
    build-essential pkg-config libclang-dev
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libasound2-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
)
# Cross toolchain and emulator. On bookworm `qemu-user` ships /usr/bin/qemu-aarch64
# (dynamically linked); `qemu-user-static` ships qemu-aarch64-static. We call it
# explicitly as the cargo runner, so binfmt registration is not needed.
# linux-libc-dev-arm64-cross: the arm64 kernel headers (linux/videodev2.h) under
# /usr/aarch64-linux-gnu/include, where BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu
# in .cargo/config.toml points clang.
# g++-aarch64-linux-gnu: the C++ of build.rs (the kernels' CPU harness, the TensorRT shim).
cross_pkgs=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross qemu-user
    binutils-aarch64-linux-gnu)
# arm64 multiarch libraries the default features link. libgstreamer1.0-dev and
# libasound2-dev are Multi-Arch: same and co-install with the amd64 ones.
# libgstreamer-plugins-base1.0-dev is NOT Multi-Arch: same in bookworm, so its
# arm64 flavour conflicts with the amd64 one: we install only its runtime
# library (M-A: same) here and unpack the -dev .deb into an overlay below.
# The arm64 base/good plugins let GStreamer sink tests (appsrc, videoconvert,
# mp4mux, y4menc, filesink) run under qemu too.
arm64_pkgs=(
    libc6:arm64 libgstreamer1.0-dev:arm64 libasound2-dev:arm64
    libgstreamer-plugins-base1.0-0:arm64
    gstreamer1.0-plugins-base:arm64 gstreamer1.0-plugins-good:arm64
)

installed() {
    # A bare name is ambiguous once a package is installed for both arches, so
    # qualify it with the native arch; Architecture: all packages need the bare name.
    local p="$1"
    case "$p" in
        *:*) [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ;;
        *) [ "$(dpkg-query -W -f='${Status}' "$p:$(dpkg --print-architecture)" 2>/dev/null)" = "install ok installed" ] ||
            [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ;;
    esac
}
missing=()
for p in "${native_pkgs[@]}" "${cross_pkgs[@]}" "${arm64_pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${MODA_SKIP_APT:-0}" = 1 ]; then
    log "MODA_SKIP_APT=1: skipping apt (missing: ${missing[*]:-none})"
else
    need_update=0
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg: adding foreign architecture arm64"
        $SUDO dpkg --add-architecture arm64
        need_update=1
    fi
    if [ "${#missing[@]}" -gt 0 ] || [ "$need_update" = 1 ]; then
        log "apt-get update"
        # A third-party source without arm64 indexes must not stop us: apt warns
        # and ignores it; the Debian sources are what we need.
        $SUDO apt-get update -q || log "apt-get update reported errors (continuing; install will tell)"
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install: ${missing[*]}"
        $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        log "apt packages: all installed"
    fi
fi

# --- 3. Overlay for the arm64 -dev package that is not multiarch --------------
# Unpack libgstreamer-plugins-base1.0-dev:arm64 (pkg-config files, headers, the
# unversioned .so links) into $MODA_ARM64_OVERLAY without registering it with
# dpkg, and point its .pc files and .so links at the real multiarch paths.
ver="$(dpkg-query -W -f='${Version}' libgstreamer-plugins-base1.0-0:arm64 2>/dev/null || true)"
stamp="$MODA_ARM64_OVERLAY/.stamp"
if [ -z "$ver" ]; then
    log "overlay: libgstreamer-plugins-base1.0-0:arm64 not installed, skipping"
elif [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$ver" ]; then
    log "overlay: libgstreamer-plugins-base1.0-dev:arm64 $ver already unpacked"
else
    log "overlay: unpacking libgstreamer-plugins-base1.0-dev:arm64 $ver into $MODA_ARM64_OVERLAY"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -q "libgstreamer-plugins-base1.0-dev:arm64=$ver")
    $SUDO rm -rf "$MODA_ARM64_OVERLAY"
    $SUDO mkdir -p "$MODA_ARM64_OVERLAY"
    $SUDO dpkg-deb -x "$tmp"/libgstreamer-plugins-base1.0-dev_*_arm64.deb "$MODA_ARM64_OVERLAY"
    libdir="$MODA_ARM64_OVERLAY/usr/lib/aarch64-linux-gnu"
    # .so -> absolute path of the versioned runtime library from the real package
    for l in "$libdir"/*.so; do
        [ -L "$l" ] || continue
        $SUDO ln -sfn "/usr/lib/aarch64-linux-gnu/$(readlink "$l")" "$l"
    done
    # .pc: libdir/includedir inside the overlay (prefix stays /usr)
    for pc in "$libdir"/pkgconfig/*.pc; do
        $SUDO sed -i \
            -e "s|^libdir=.*|libdir=$libdir|" \
            -e "s|^includedir=.*|includedir=$MODA_ARM64_OVERLAY/usr/include|" "$pc"
    done
    echo "$ver" | $SUDO tee "$stamp" >/dev/null
fi

# --- 4. Sanity checks ---------------------------------------------------------
ok=1
for t in aarch64-linux-gnu-gcc aarch64-linux-gnu-objdump qemu-aarch64 pkg-config; do
    if command -v "$t" >/dev/null 2>&1; then log "found $t"; else log "MISSING $t"; ok=0; fi
done
# bindgen (v4l2-sys-mit) needs libclang and the arm64 V4L2 header.
if compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null; then log "found libclang"; else log "MISSING libclang (libclang-dev)"; ok=0; fi
if [ -f /usr/aarch64-linux-gnu/include/linux/videodev2.h ]; then
    log "found arm64 linux/videodev2.h"
else
    log "MISSING /usr/aarch64-linux-gnu/include/linux/videodev2.h (linux-libc-dev-arm64-cross)"; ok=0
fi
for m in gstreamer-1.0 gstreamer-app-1.0 gstreamer-base-1.0 alsa; do
    if v="$(PKG_CONFIG_LIBDIR="$ARM64_PC_LIBDIR" PKG_CONFIG_PATH= pkg-config --modversion "$m" 2>/dev/null)"; then
        log "aarch64 pkg-config $m $v"
    else
        log "MISSING aarch64 pkg-config module $m"; ok=0
    fi
done
[ "$ok" = 1 ] || { log "set-up incomplete"; exit 1; }
log "done: cargo build --target aarch64-unknown-linux-gnu (settings in .cargo/config.toml)"
