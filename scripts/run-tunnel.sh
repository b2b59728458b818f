#!/usr/bin/env bash
# `make run-tunnel`: two machines' worth of Goinfer on this one, in network namespaces.
#   gi-server: a Goinfer server, reachable from this host at 10.88.0.2 (HTTPS 8443, HTTP 8080);
#   gi-gpu:    a Goinfer client with the models, joined to gi-server only, no inbound route:
#              it dials the server over TLS and serves its users through that connection.
# Needs root (ip netns). Stops and removes everything on Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
RUN="$(mktemp -d /tmp/goinfer-tunnel.XXXXXX)"
SRV=gi-server GPU=gi-gpu
TOKEN="$(openssl rand -hex 24)"
KEY="$(openssl rand -hex 16)"
[ "$(id -u)" -eq 0 ] || { echo "run-tunnel: needs root to create network namespaces" >&2; exit 1; }

remove_net() {
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$GPU" 2>/dev/null || true
    ip link del gi-host 2>/dev/null || true
}
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    remove_net
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM
remove_net # what an earlier run killed hard may have left

# host <-> server, server <-> gpu; the gpu namespace has no route to the host at all
ip netns add "$SRV"; ip netns add "$GPU"
ip -n "$SRV" link set lo up; ip -n "$GPU" link set lo up
ip link add gi-host type veth peer name gi-srv0 && ip link set gi-srv0 netns "$SRV"
ip addr add 10.88.0.1/24 dev gi-host && ip link set gi-host up
ip -n "$SRV" addr add 10.88.0.2/24 dev gi-srv0 && ip -n "$SRV" link set gi-srv0 up
ip -n "$SRV" link add gi-srv1 type veth peer name gi-gpu0 && ip -n "$SRV" link set gi-gpu0 netns "$GPU"
ip -n "$SRV" addr add 10.88.1.1/24 dev gi-srv1 && ip -n "$SRV" link set gi-srv1 up
ip -n "$GPU" addr add 10.88.1.2/24 dev gi-gpu0 && ip -n "$GPU" link set gi-gpu0 up

identity() { # name -> name.crt name.key, prints the key pin
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -keyout "$RUN/$1.key" -out "$RUN/$1.crt" -subj "/CN=$1" 2>/dev/null
    echo "sha256/$(openssl x509 -in "$RUN/$1.crt" -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64)"
}
SRV_PIN="$(identity server)"
GPU_PIN="$(identity gpu)"

MODELS="${GI_MODELS_DIR:-$ROOT/demo-models}"
if [ -z "${GI_MODELS_DIR:-}" ] && ! find "$MODELS" -name '*.gguf' 2>/dev/null | grep -q .; then
    mkdir -p "$MODELS" && "$BUILD/mkmodel" -n demo-tiny -o "$MODELS/demo-tiny.gguf" >/dev/null
fi
mkdir -p "$RUN/empty"
cat >"$RUN/server.yml" <<YML
api_key: $KEY
models_dir: $RUN/empty
listen:
  "0.0.0.0:8443": goinfer, openai, tls
  "0.0.0.0:8080": goinfer, openai
tls: {cert: $RUN/server.crt, key: $RUN/server.key}
server:
  token: $TOKEN
  clients: ["$GPU_PIN"]
YML
cat >"$RUN/gpu.yml" <<YML
api_key: local-$KEY
models_dir: $MODELS
listen:
  "127.0.0.1:4444": goinfer
client:
  cert: $RUN/gpu.crt
  key: $RUN/gpu.key
  servers:
    - {url: "https://10.88.1.1:8443", pin: "$SRV_PIN", token: $TOKEN}
YML
ip netns exec "$SRV" "$BUILD/goinfer" -config "$RUN/server.yml" 2>"$RUN/server.log" &
sleep 0.3
ip netns exec "$GPU" "$BUILD/goinfer" -config "$RUN/gpu.yml" 2>"$RUN/gpu.log" &
for _ in $(seq 100); do grep -q registered "$RUN/server.log" && break; sleep 0.1; done
grep -q registered "$RUN/server.log" || { tail "$RUN/server.log" "$RUN/gpu.log"; exit 1; }
cat <<MSG
──────────────────────────────────────────────────────────────────────────────
 A Goinfer server (namespace $SRV) and a GPU client (namespace $GPU) run here.
 The client dialled the server; the server reaches the client's models only
 through that tunnel. $(grep -o 'registered: .*' "$RUN/server.log")
 Try it from this host, as an end user:
   curl -s -H 'Authorization: Bearer $KEY' http://10.88.0.2:8080/v1/models
   curl -sN -H 'Authorization: Bearer $KEY' http://10.88.0.2:8080/v1/chat/completions \\
        -d '{"stream":true,"messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'
   curl -sk -H 'Authorization: Bearer $KEY' https://10.88.0.2:8443/running
 Logs: $RUN/server.log and $RUN/gpu.log. Stop with Ctrl-C.
──────────────────────────────────────────────────────────────────────────────
MSG
wait
