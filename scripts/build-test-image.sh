#!/usr/bin/env bash
# Build the Debian 12 systemd image the molecule scenarios run on. No registry can be
# reached here, so the root filesystem comes from debootstrap and Debian's archive.
# The tag carries a hash of this script: editing the recipe builds a new image.
set -euo pipefail

image=${ODIN_TEST_IMAGE_NAME:-odin-test/debian12}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=systemd,systemd-sysv,python3,python3-apt,sudo,ca-certificates,gnupg,curl,iproute2,procps,kmod
recipe_hash=$(sha256sum "$0" | cut -c1-12)

if docker image inspect "$image:$recipe_hash" >/dev/null 2>&1; then
  echo "test image $image:$recipe_hash present"
else
  rootfs=$(mktemp -d /tmp/odin-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" >/dev/null
  # Containers have no kernel of their own to match and no console to log in on.
  chroot "$rootfs" systemctl mask getty.target systemd-udevd.service systemd-udevd-kernel.socket \
    systemd-udevd-control.socket systemd-modules-load.service >/dev/null 2>&1 || true
  echo "odin-test" >"$rootfs/etc/hostname"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$image:$recipe_hash" >/dev/null
  echo "built $image:$recipe_hash"
fi
docker tag "$image:$recipe_hash" "$image:latest"
