#!/usr/bin/env bash
# Builds the CPU image from this checkout with podman, offline: the base images from Debian's
# packages (container/base.sh), and the llama-server that `make setup` built (copied into
# container/llama/, so llama.cpp is not compiled again; put llama.cpp's source in
# container/llama/src/ instead to compile it in the image).
#   container/build.sh [TAG]     (default localhost/goinfer:latest)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${1:-localhost/goinfer:latest}"
LLAMA="${GI_LLAMA_DIR:-${GOINFER_CACHE:-$HOME/.cache/goinfer}/llama-current}"

"$ROOT/container/base.sh"
if [ ! -d "$ROOT/container/llama/src" ]; then
    [ -x "$LLAMA/bin/llama-server" ] || { echo "container/build.sh: no llama-server in $LLAMA: run make setup (or set GI_LLAMA_DIR)" >&2; exit 1; }
    rm -rf "$ROOT/container/llama" && mkdir -p "$ROOT/container/llama/bin"
    cp "$LLAMA/bin/llama-server" "$ROOT/container/llama/bin/"
    [ ! -d "$LLAMA/ui" ] || cp -r "$LLAMA/ui" "$ROOT/container/llama/ui"
fi
version="$(git -C "$ROOT" describe --always --dirty --tags 2>/dev/null || echo unknown)"
# --isolation=chroot and --format docker (for HEALTHCHECK): see DESIGN.md section 8
podman build --isolation=chroot --format docker -f "$ROOT/Containerfile" -t "$TAG" \
    --build-arg BUILD_IMAGE=localhost/goinfer-build:bookworm \
    --build-arg RUNTIME_IMAGE=localhost/goinfer-runtime:bookworm \
    --build-arg GOINFER_VERSION="$version" "$ROOT"
# Images of earlier builds (untagged, a day old) go: a tree built often would fill the disk.
podman image prune -f --filter label=goinfer.stage --filter until=24h >/dev/null
