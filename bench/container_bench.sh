#!/usr/bin/env bash
# The CPU image's size, and the time from `podman run` to the first chat answered through it
# (a tiny model made by tools/mkmodel; what is timed is the container's start, Goinfer's start,
# llama-server's load and one answer). Builds the image from this checkout first.
#   bench/container_bench.sh [IMAGE]     (default: container/build.sh's localhost/goinfer:latest)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
IMAGE="${1:-localhost/goinfer:latest}"
[ -n "${1:-}" ] || "$ROOT/container/build.sh" "$IMAGE" >/dev/null
RUN="$(mktemp -d /tmp/goinfer-cbench.XXXXXX)"
NAME="goinfer-bench-$$"
cleanup() { podman --runtime runc rm -f -t 0 "$NAME" >/dev/null 2>&1 || true; rm -rf "$RUN"; }
trap cleanup EXIT
mkdir -p "$RUN/models" "$RUN/config"
"$BUILD/mkmodel" -n tiny -o "$RUN/models/tiny.gguf" >/dev/null
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$RUN/config/goinfer.yml" <<YML
api_key: bench-key-0123456789abcdef
models_dir: /models
listen:
  "127.0.0.1:$PORT": goinfer, openai
llama:
  args:
    common: -c 512 --no-warmup
YML
chmod -R a+rX "$RUN"
size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
start="$(date +%s.%N)"
podman --runtime runc run -d --name "$NAME" --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
    --network=host -e GI_HEALTH_PORT="$PORT" -v "$RUN/models:/models:ro" \
    -v "$RUN/config:/config:ro" "$IMAGE" >/dev/null
for _ in $(seq 600); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer bench-key-0123456789abcdef' \
        "http://127.0.0.1:$PORT/v1/chat/completions" \
        -d '{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}' || true)"
    [ "$code" = 200 ] && break
    sleep 0.05
done
end="$(date +%s.%N)"
[ "$code" = 200 ] || { podman logs "$NAME" | tail -20; echo "no chat answered" >&2; exit 1; }
awk -v s="$size" -v a="$start" -v b="$end" 'BEGIN {
    printf "image size: %.1f MB (goal: under 150 MB)\n", s / 1e6
    printf "podman run to first chat answered: %.2f s\n", b - a }'
