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
#
# Either way: /tmp is 1777 (Docker's --tmpfs keeps the image directory's mode) and nobody (65534) exists.
set -euo pipefail

skeleton=0
if [ "${1:-}" = "--skeleton" ]; then skeleton=1; shift; fi
tag="${1:-$([ $skeleton = 1 ] && echo mcpstore-runtime:skeleton || echo mcpstore-runtime:bookworm)}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

if [ $skeleton = 1 ]; then
  # /sbin stays a real folder: Docker mounts its init (--init) at /sbin/docker-init, which must not lead
  # into the host's /usr mounted over the image's.
  mkdir -p "$rootfs"/{usr,etc,tmp,proc,sys,dev,app,sbin}
  for link in bin lib lib64; do ln -s "usr/$link" "$rootfs/$link"; done
else
  mirror="$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  debootstrap --variant=minbase --include=python3,nodejs bookworm "$rootfs" ${mirror:+"$mirror"}
fi
echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >> "$rootfs/etc/passwd"
echo 'nogroup:x:65534:' >> "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$tag"
echo "built $tag"
