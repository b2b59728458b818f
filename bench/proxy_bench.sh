#!/usr/bin/env bash
# Proxy overhead, side by side in one run: the same upstream reached (a) directly, (b) through
# nginx (keep-alive to the upstream, buffering off), (c) through Goinfer. Two upstreams:
#   trivial GET: a FAKE upstream that answers at once (its own nginx process returning 200:
#     served by the worker being measured, nginx's row paid for the upstream too);
#   1-token chat completion: the real llama-server with a tiny model.
# Prints requests/s and the ratio to direct. Needs `make build`, wrk and nginx.
# Usage: bench/proxy_bench.sh [seconds per run, default 5] [connections, default 16]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-5}"
CONNS="${2:-16}"
CACHE="${GOINFER_CACHE:-$HOME/.cache/goinfer}"
LLAMA="${GI_LLAMA_EXE:-$CACHE/llama-current/bin/llama-server}"
T="$(mktemp -d)"
P0=$((20000 + RANDOM % 20000)) # fake upstream; then llama, nginx, goinfer
LLAMA_PORT=$((P0 + 1)) NGINX_PORT=$((P0 + 2)) NGINX_CHAT=$((P0 + 3)) GI_PORT=$((P0 + 4))
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "proxy_bench: $*" >&2; cat "$T/goinfer.err" "$T/nginx.err" 2>/dev/null | tail -5 >&2; exit 1; }

"$ROOT/build/mkmodel" -n tiny -o "$T/tiny.gguf" >/dev/null
mkdir -p "$T/up"
cat >"$T/up/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $T/up/nginx.pid;
error_log $T/up/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$P0; location / { return 200 "ok\n"; } }
}
CONF
nginx -c "$T/up/nginx.conf" -p "$T/up" & pids+=($!)
cat >"$T/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fake  { server 127.0.0.1:$P0;  keepalive 64; }
  upstream llama { server 127.0.0.1:$LLAMA_PORT; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; } }
  server { listen 127.0.0.1:$NGINX_CHAT;
    location / { proxy_pass http://llama; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; } }
}
CONF
nginx -c "$T/nginx.conf" -p "$T" & pids+=($!)

# Goinfer: "fake" is a model whose process does nothing (the upstream nginx answers for it);
# "tiny" is the real llama-server, on a fixed port so nginx and wrk can reach it directly too.
cat >"$T/goinfer.yml" <<CONF
listen:
  "127.0.0.1:$GI_PORT": goinfer
startPort: $LLAMA_PORT
models:
  tiny:
    cmd: $LLAMA -m $T/tiny.gguf --host 127.0.0.1 --port \${PORT} -c 512 -np 4 --no-warmup
  fake:
    cmd: sleep 100000
    proxy: http://127.0.0.1:$P0
    checkEndpoint: none
groups:
  all: { swap: false, exclusive: false, members: [tiny, fake] }
CONF
"$ROOT/build/goinfer" -config "$T/goinfer.yml" -no-api-key -q 2>"$T/goinfer.err" & pids+=($!)
sleep 0.5
curl -sf -o /dev/null "http://127.0.0.1:$GI_PORT/upstream/fake/x" || fail "goinfer did not proxy to the fake upstream"
curl -sf -o /dev/null "http://127.0.0.1:$GI_PORT/completion" -d '{"model":"tiny","prompt":"x","n_predict":1}'

cat >"$T/chat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}'
LUA

rps() { # url [lua]
    local extra=()
    [ -n "${2:-}" ] && extra=(-s "$2")
    wrk -t1 -c"$CONNS" -d"${SECS}s" "${extra[@]}" "$1" | awk '/Requests\/sec/ {print $2}'
}
row() { # name direct nginx goinfer
    awk -v n="$1" -v d="$2" -v x="$3" -v g="$4" 'BEGIN {
        printf "%-28s %10.0f %10.0f %10.0f %8.2fx %8.2fx\n", n, d, x, g, x / d, g / d }'
}
printf "%-28s %10s %10s %10s %9s %9s\n" "req/s (wrk, $CONNS conns, ${SECS}s)" direct nginx goinfer nginx/d goinfer/d
row "trivial GET (fake upstream)" "$(rps "http://127.0.0.1:$P0/x")" \
    "$(rps "http://127.0.0.1:$NGINX_PORT/x")" "$(rps "http://127.0.0.1:$GI_PORT/upstream/fake/x")"
row "1-token chat (llama-server)" "$(rps "http://127.0.0.1:$LLAMA_PORT/v1/chat/completions" "$T/chat.lua")" \
    "$(rps "http://127.0.0.1:$NGINX_CHAT/v1/chat/completions" "$T/chat.lua")" \
    "$(rps "http://127.0.0.1:$GI_PORT/v1/chat/completions" "$T/chat.lua")"
