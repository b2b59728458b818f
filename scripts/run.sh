#!/usr/bin/env bash
# `make run`: serve the models under GI_MODELS_DIR, or a generated demo model when there are none.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
DEMO="$ROOT/demo-models"

if [ -z "${GI_MODELS_DIR:-}" ] && [ ! -f goinfer.yml ]; then
    if ! find "$DEMO" -name '*.gguf' 2>/dev/null | grep -q .; then
        mkdir -p "$DEMO"
        "$BUILD/mkmodel" -n demo-tiny -o "$DEMO/demo-tiny.gguf" >/dev/null
    fi
    export GI_MODELS_DIR="$DEMO"
    cat <<MSG
──────────────────────────────────────────────────────────────────────────────
 No GGUF model given, so Goinfer serves a DEMO model: $DEMO/demo-tiny.gguf
 It has random weights (made by tools/mkmodel): its answers are gibberish,
 but every request goes through a real llama-server.
 To serve real models:  GI_MODELS_DIR=/path/to/models:/other/path make run
──────────────────────────────────────────────────────────────────────────────
MSG
fi
cat <<MSG
 Try it (no API key on this loopback-only demo; set GI_API_KEY to require one):
   curl -s localhost:4444/v1/models
   curl -s localhost:4444/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'
   curl -sN localhost:5555/v1/chat/completions -d '{"stream":true,"messages":[{"role":"user","content":"Hello"}]}'
 Stop with Ctrl-C.
MSG
if [ -n "${GI_API_KEY:-}" ]; then
    exec "$BUILD/goinfer" "$@"
fi
exec "$BUILD/goinfer" -no-api-key "$@"
