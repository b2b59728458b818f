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
# The key goinfer will require: GI_API_KEY, else goinfer.yml's api_key (or api_key_file). The
# commands printed read it where it is, so the key itself is never printed.
yml_value() { # a top-level scalar of goinfer.yml, without quotes or a trailing comment
    sed -nE "s/^$1: *[\"']?([^\"' #]+).*/\1/p" goinfer.yml 2>/dev/null | head -n1
}
key_from=""
if [ -n "${GI_API_KEY:-}" ]; then
    key_from="GI_API_KEY"
    echo ' The API key is $GI_API_KEY. For the commands below:  KEY=$GI_API_KEY'
elif [ -f goinfer.yml ] && [ -n "$(yml_value api_key)" ] && [ "$(yml_value api_key)" != PLEASE ]; then
    key_from="goinfer.yml"
    cat <<'MSG'
 The API key is goinfer.yml's api_key. For the commands below:
   KEY=$(sed -nE "s/^api_key: *[\"']?([^\"' #]+).*/\1/p" goinfer.yml)
MSG
elif [ -f goinfer.yml ] && [ -n "$(yml_value api_key_file)" ]; then
    key_from="goinfer.yml"
    echo " The API key is the first line of $(yml_value api_key_file) (goinfer.yml's api_key_file)."
    echo " For the commands below:  KEY=\$(head -n1 $(yml_value api_key_file))"
fi
if [ -n "$key_from" ]; then
    auth=' -H "Authorization: Bearer $KEY"'
else
    if [ -f goinfer.yml ] && [ "$(yml_value api_key)" = PLEASE ]; then
        echo ' goinfer.yml holds the placeholder key of goinfer -write -no-api-key.'
    fi
    echo ' No API key: this demo serves loopback only (set GI_API_KEY, or run goinfer -write).'
    auth=''
fi
cat <<MSG
 Try it:
   curl -s$auth localhost:4444/v1/models
   curl -s$auth localhost:4444/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'
   curl -sN$auth localhost:5555/v1/chat/completions -d '{"stream":true,"messages":[{"role":"user","content":"Hello"}]}'
 Web pages (each asks for the key when there is one):
   http://localhost:4444/    llama.cpp's web UI: chat with the models
   http://localhost:4444/ui  Goinfer's admin page: models, running llama-servers, unload, logs
 Stop with Ctrl-C.
MSG
if [ -n "$key_from" ]; then
    exec "$BUILD/goinfer" "$@"
fi
exec "$BUILD/goinfer" -no-api-key "$@"
