#!/bin/sh
# Create the moda-edge system user and its state directory. Idempotent.
# Used by systemd/install.sh and embedded verbatim into the .deb postinst by
# cross/package.sh, so both install paths set up the same account.
#
# The user is a member of: video (V4L2 devices, Jetson /dev/nvhost-*), audio
# (ALSA), render (GPU render nodes /dev/dri/renderD*). Missing groups are
# created as system groups (older releases have no `render`).
set -e

moda_create_user() {
    for g in video audio render; do
        if ! getent group "$g" >/dev/null; then
            groupadd --system "$g"
        fi
    done
    if ! getent group moda-edge >/dev/null; then
        groupadd --system moda-edge
    fi
    if ! getent passwd moda-edge >/dev/null; then
        useradd --system --gid moda-edge --groups video,audio,render \
            --home-dir /var/lib/moda-edge --no-create-home \
            --shell /usr/sbin/nologin --comment "moda-edge service" moda-edge
    else
        # an existing account (e.g. from an older install) gets the groups too
        usermod --append --groups video,audio,render moda-edge
    fi
    install -d -m 0750 -o moda-edge -g moda-edge /var/lib/moda-edge
    install -d -m 0755 /etc/moda-edge
}
