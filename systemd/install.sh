#!/bin/sh
# Install moda-edge from an unpacked release tarball (the .deb is preferred on
# apt-managed hardware; this is for everything else). Run as root from the
# unpacked directory:
#
#   sudo ./systemd/install.sh [--prefix /usr/local] [--no-enable]
#
# - binaries to PREFIX/bin (default /usr/local/bin)
# - unit to /etc/systemd/system/moda-edged.service (ExecStart pointed at PREFIX)
# - config to /etc/moda-edge/moda-edge.toml ONLY if none exists; an existing
#   (possibly edited) config is never overwritten: the new example goes next to
#   it as moda-edge.toml.dist
# - system user moda-edge in groups video, audio, render; /var/lib/moda-edge
set -eu

prefix=/usr/local
enable=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --no-enable) enable=0; shift ;;
        *) echo "install.sh: unknown argument $1 (expected --prefix DIR or --no-enable)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root (it creates a system user and writes /etc)" >&2
    exit 1
fi

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=systemd/create-user.sh
. "$here/create-user.sh"

found=0
for b in moda-edge moda-edged; do
    if [ -f "$root/bin/$b" ]; then
        install -D -m 0755 "$root/bin/$b" "$prefix/bin/$b"
        echo "installed $prefix/bin/$b"
        found=1
    fi
done
[ "$found" = 1 ] || { echo "install.sh: no binaries in $root/bin" >&2; exit 1; }

moda_create_user

conf=/etc/moda-edge/moda-edge.toml
if [ -e "$conf" ]; then
    if cmp -s "$here/moda-edge.toml" "$conf"; then
        echo "kept $conf (unchanged)"
    else
        install -m 0644 "$here/moda-edge.toml" "$conf.dist"
        echo "kept your edited $conf; the new example is $conf.dist"
    fi
else
    install -m 0644 "$here/moda-edge.toml" "$conf"
    echo "installed $conf"
fi

unit=/etc/systemd/system/moda-edged.service
sed "s|^ExecStart=/usr/bin/|ExecStart=$prefix/bin/|" "$here/moda-edged.service" > "$unit.tmp"
chmod 0644 "$unit.tmp"
mv "$unit.tmp" "$unit"
echo "installed $unit"

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$enable" = 1 ]; then
        systemctl enable moda-edged.service
        echo "enabled moda-edged; edit $conf, then: systemctl start moda-edged"
    fi
else
    echo "systemd is not running here: enable moda-edged.service on the device"
fi
