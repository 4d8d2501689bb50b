#!/usr/bin/env bash
# The runtime image of hosted execution's Docker backend (hosted.backend = "docker"), built offline: no
# registry is needed. Usage (DOCKER_HOST may point at any engine):
#
#   packaging/build-runtime-image.sh [TAG]              # default TAG: mcpstore-runtime:bookworm
#       debootstrap a minimal Debian bookworm with python3 and nodejs (about 2 minutes, ~370 MB), pinned and
#       independent of the host's software. Needs: apt install debootstrap. The recommended image.
#   packaging/build-runtime-image.sh --skeleton [TAG]   # default TAG: mcpstore-runtime:skeleton
#       an empty root (a few KB) that runs the host's /usr mounted read-only: set
#       hosted.docker_mount_host_usr = true. Quick; used by the tests.
#   packaging/build-runtime-image.sh --appliance [TAG]  # default TAG: mcpstore-base:bookworm
#       the base of the appliance's own image (packaging/Dockerfile): a minimal Debian bookworm with CA
#       certificates and no Python (about 2 minutes, ~130 MB), the user mcpstore (10001) and its data folder
#       /var/lib/mcpstore (0700).
#
# MCPSTORE_ROOTFS_CACHE=FILE.tar keeps the debootstrapped root in FILE.tar and imports it from there next time
# (the tests use it). Either way: /tmp is 1777 (Docker's --tmpfs keeps the image directory's mode) and nobody
# (65534) exists.
set -euo pipefail

mode=bookworm
case "${1:-}" in --skeleton) mode=skeleton; shift ;; --appliance) mode=appliance; shift ;; esac
case $mode in
  skeleton) tag="${1:-mcpstore-runtime:skeleton}" ;;
  appliance) tag="${1:-mcpstore-base:bookworm}"; include=ca-certificates ;;
  *) tag="${1:-mcpstore-runtime:bookworm}"; include=python3,nodejs ;;
esac
cache="${MCPSTORE_ROOTFS_CACHE:-}"
if [ -n "$cache" ] && [ -s "$cache" ]; then
  docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' "$cache" "$tag"
  echo "built $tag from $cache"
  exit 0
fi
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

if [ $mode = skeleton ]; then
  # /sbin stays a real folder: Docker mounts its init (--init) at /sbin/docker-init, which must not lead
  # into the host's /usr mounted over the image's.
  mkdir -p "$rootfs"/{usr,etc,tmp,proc,sys,dev,app,sbin}
  for link in bin lib lib64; do ln -s "usr/$link" "$rootfs/$link"; done
else
  mirror="$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  debootstrap --variant=minbase --include="$include" bookworm "$rootfs" ${mirror:+"$mirror"}
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*  # the packages, once installed
fi
echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >> "$rootfs/etc/passwd"
echo 'nogroup:x:65534:' >> "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
if [ $mode = appliance ]; then
  echo 'mcpstore:x:10001:10001:mcpstore appliance:/var/lib/mcpstore:/usr/sbin/nologin' >> "$rootfs/etc/passwd"
  echo 'mcpstore:x:10001:' >> "$rootfs/etc/group"
  install -d -m 0700 -o 10001 -g 10001 "$rootfs/var/lib/mcpstore"
fi
if [ -n "$cache" ]; then
  mkdir -p "$(dirname "$cache")"
  tar -C "$rootfs" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' "$cache" "$tag"
else
  tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$tag"
fi
echo "built $tag"
