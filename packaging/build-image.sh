#!/usr/bin/env bash
# Build the appliance's container image from the one-file binary, without any registry:
#
#   packaging/build.sh                     # dist/mcpstore.tar.gz, if not built yet
#   packaging/build-image.sh [TAG]         # default TAG: mcpstore:latest
#
# The base image (mcpstore-base:bookworm, or BASE=...) is made offline by build-runtime-image.sh --appliance
# when the engine does not have it. BINARY=path picks another archive than dist/mcpstore.tar.gz. DOCKER_HOST may
# point at any engine.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-mcpstore:latest}"
base="${BASE:-mcpstore-base:bookworm}"
binary="${BINARY:-$root/dist/mcpstore.tar.gz}"
[ -f "$binary" ] || { echo "no binary at $binary: run packaging/build.sh first" >&2; exit 1; }
if ! docker image inspect "$base" >/dev/null 2>&1; then
  bash "$root/packaging/build-runtime-image.sh" --appliance "$base"
fi
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$root/packaging/Dockerfile" "$context/Dockerfile"
tar -C "$context" -xzf "$binary"  # the folder mcpstore/
# The classic builder: the Dockerfile has no RUN step, so no build container (nor network) is needed.
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" -t "$tag" "$context" >/dev/null
echo "built $tag"
