#!/usr/bin/env bash
# Writes compose.yml's configuration: container/compose/{server,gpu}/goinfer.yml with a fresh
# token, keys and TLS identities (the server pins the GPU machine's key, the GPU machine the
# server's), and container/compose/api_key for the users. Run once; again to renew everything.
#   container/compose-init.sh [SERVER_URL]   (default https://server:8443, compose's name)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/compose"
URL="${1:-https://server:8443}"
mkdir -p "$DIR/server" "$DIR/gpu"
identity() { # dir name -> dir/name.crt, dir/name.key; prints the key pin
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout "$1/$2.key" -out "$1/$2.crt" -subj "/CN=$2" 2>/dev/null
    echo "sha256/$(openssl x509 -in "$1/$2.crt" -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64)"
}
SRV_PIN="$(identity "$DIR/server" server)"
GPU_PIN="$(identity "$DIR/gpu" gpu)"
TOKEN="$(openssl rand -hex 24)"
KEY="$(openssl rand -hex 32)"
echo "$KEY" >"$DIR/api_key"
cat >"$DIR/server/goinfer.yml" <<YML
api_key: $KEY
models_dir: /var/lib/goinfer/none   # no local model: the GPU machines serve them
listen:
  "0.0.0.0:8443": goinfer, openai, tls
  "0.0.0.0:8080": goinfer, openai
tls: {cert: /config/server.crt, key: /config/server.key}
server:
  token: $TOKEN
  clients: ["$GPU_PIN"]
YML
cat >"$DIR/gpu/goinfer.yml" <<YML
api_key: $(openssl rand -hex 32)
models_dir: /models
listen:
  "127.0.0.1:4444": goinfer
llama:
  args:
    common: -ngl 99
client:
  cert: /config/gpu.crt
  key: /config/gpu.key
  servers:
    - {url: "$URL", pin: "$SRV_PIN", token: $TOKEN}
YML
chmod -R a+rX "$DIR"   # the containers' user (uid 10001) reads them
echo "compose-init: wrote $DIR (users' key in $DIR/api_key)"
