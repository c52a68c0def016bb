#!/usr/bin/env bash
# Build the arm64 release package for the Jetson (JetPack 6) in one command:
#
#   cross/package.sh [CARGO_ARGS...]      e.g. cross/package.sh --no-default-features
#
# 1. cargo build --release --target aarch64-unknown-linux-gnu --bins
# 2. strip the binaries and enforce the glibc ceiling (cross/check-glibc.sh)
# 3. out/moda-edge_<version>_arm64.deb   (dpkg-deb; conffile, maintainer scripts)
# 4. out/moda-edge-<version>-aarch64.tar.gz with systemd/install.sh for non-apt installs
#
# The output directory is $MODA_DIST (default: out/ in the repository).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target=aarch64-unknown-linux-gnu
tdir="${CARGO_TARGET_DIR:-$repo/target}"
dist="${MODA_DIST:-$repo/out}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml" >&2; exit 1; }

log() { printf '[package] %s\n' "$*"; }

# --- 1. build ------------------------------------------------------------------
log "cargo build --release --target $target --bins $*"
cargo build --release --target "$target" --bins "$@"

# Binaries of the package: one per src/bin/NAME.rs or src/bin/NAME/main.rs.
bins=()
for f in src/bin/*.rs src/bin/*/main.rs; do
    [ -e "$f" ] || continue
    case "$f" in */main.rs) b="$(basename "$(dirname "$f")")" ;; *) b="$(basename "$f" .rs)" ;; esac
    bins+=("$b")
done
[ "${#bins[@]}" -gt 0 ] || { echo "package.sh: no binaries under src/bin" >&2; exit 1; }

# --- 2. stage ----------------------------------------------------------------------
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/deb"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/moda-edge" \
    "$pkg/usr/share/doc/moda-edge"
for b in "${bins[@]}"; do
    aarch64-linux-gnu-strip -o "$pkg/usr/bin/$b" "$tdir/$target/release/$b"
    chmod 0755 "$pkg/usr/bin/$b"
done
log "binaries: ${bins[*]}"
cross/check-glibc.sh "${bins[@]/#/$pkg/usr/bin/}"

install -m 0644 systemd/moda-edged.service "$pkg/lib/systemd/system/moda-edged.service"
install -m 0644 systemd/moda-edge.toml "$pkg/etc/moda-edge/moda-edge.toml"
for d in README.md cross/README.md; do
    [ -f "$d" ] && install -m 0644 "$d" "$pkg/usr/share/doc/moda-edge/$(echo "$d" | tr / -)"
done

# --- 3. Depends from the binaries' NEEDED libraries ----------------------------------
# Package names are the same on Debian 12 and Ubuntu 22.04 (JetPack 6). No
# minimum versions except glibc: the Debian libraries we linked against are
# newer than JetPack's (GStreamer 1.22 vs 1.20), and the Rust bindings only
# need GStreamer >= 1.14.
glibc_max="$(cross/check-glibc.sh "${bins[@]/#/$pkg/usr/bin/}" | sed -n 's/.*max GLIBC_\([0-9.]*\).*/\1/p' | sort -V | tail -n1)"
declare -A deps=()
for b in "${bins[@]}"; do
    for so in $(readelf -d "$pkg/usr/bin/$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        owner=""
        for dir in /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu /lib /usr/lib; do
            if owner="$(dpkg -S "$dir/$so" 2>/dev/null | head -n1 | cut -d: -f1)" && [ -n "$owner" ]; then break; fi
        done
        case "$so" in ld-linux-aarch64.so.1) owner=libc6 ;; esac
        [ -n "$owner" ] || { echo "package.sh: no arm64 package owns $so (needed by $b)" >&2; exit 1; }
        deps["$owner"]=1
    done
done
depends="libc6 (>= ${glibc_max:-2.17})"
for p in $(printf '%s\n' "${!deps[@]}" | sort); do
    [ "$p" = libc6 ] || depends="$depends, $p"
done
depends="$depends, passwd"

size="$(du -sk "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: moda-edge
Version: $version
Architecture: arm64
Maintainer: moda-edge maintainers <moda-edge@localhost>
Installed-Size: $size
Depends: $depends
Recommends: gstreamer1.0-plugins-base, gstreamer1.0-plugins-good
Section: video
Priority: optional
Homepage: https://github.com/moda-edge/moda-edge
Description: MODA talking-portrait runtime for NVIDIA Jetson Orin
 Microphone audio in, an animated portrait out on HDMI or a V4L2 device, at a
 fixed audio-to-picture latency. Ships the moda-edge tools CLI and the
 moda-edged systemd service (enabled on first install, started by the admin
 once /etc/moda-edge/moda-edge.toml is configured).
CONTROL
echo /etc/moda-edge/moda-edge.toml > "$pkg/DEBIAN/conffiles"

# postinst: user/groups/state dir (shared with systemd/install.sh), then systemd.
{
    echo '#!/bin/sh'
    echo 'set -e'
    sed -n '/^moda_create_user()/,/^}/p' systemd/create-user.sh
    cat <<'POSTINST'
case "$1" in
    configure)
        moda_create_user
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
            if [ -z "$2" ]; then
                # first install: enabled for the next boot, started by the admin
                # once /etc/moda-edge/moda-edge.toml names real models and devices
                systemctl enable moda-edged.service || true
                echo "moda-edge: edit /etc/moda-edge/moda-edge.toml, then: systemctl start moda-edged"
            else
                systemctl try-restart moda-edged.service || true
            fi
        fi
        ;;
esac
exit 0
POSTINST
} > "$pkg/DEBIAN/postinst"
cat > "$pkg/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop moda-edged.service || true
fi
exit 0
PRERM
cat > "$pkg/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
case "$1" in
    remove)
        if [ -d /run/systemd/system ]; then
            systemctl disable moda-edged.service >/dev/null 2>&1 || true
            systemctl daemon-reload || true
        fi
        ;;
    purge)
        # the state directory goes; the system user stays (Debian practice:
        # files it owned may remain elsewhere)
        rm -rf /var/lib/moda-edge
        ;;
esac
exit 0
POSTRM
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

mkdir -p "$dist"
deb="$dist/moda-edge_${version}_arm64.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
log "built $deb"
dpkg-deb -I "$deb" | sed -n '/Package:/,$p' | sed 's/^/    /'
dpkg-deb -c "$deb" | awk '{print "    " $1 " " $2 " " $6}'

# --- 4. tarball for systemd/install.sh ---------------------------------------------
tarroot="$stage/moda-edge-$version-aarch64"
install -d "$tarroot/bin" "$tarroot/systemd"
cp "$pkg"/usr/bin/* "$tarroot/bin/"
install -m 0644 systemd/moda-edged.service systemd/moda-edge.toml "$tarroot/systemd/"
install -m 0755 systemd/install.sh systemd/create-user.sh "$tarroot/systemd/"
tarball="$dist/moda-edge-$version-aarch64.tar.gz"
tar -C "$stage" --owner=0 --group=0 -czf "$tarball" "moda-edge-$version-aarch64"
log "built $tarball"
