#!/usr/bin/env bash
# Builds a llama-server, installs it into a new engine folder and smoke-tests it: the job behind
# POST /api/engine/build (Goinfer runs it as a child and reads its output), usable by hand too.
# Nothing is switched here: Goinfer switches to the printed folder only when this exits 0.
#
# Lines Goinfer reads on stdout: "engine: step <what>", cmake's "[ NN%]" lines (progress),
# "engine: error <why>" (the reason of a failure) and, last, "engine: installed <folder>".
#
# Environment:
#   GI_ENGINE_SOURCE  cached (the cached source tree, incremental) | bundle (a node-llama-cpp
#                     bundle, GI_ENGINE_BUNDLE_VERSION, default latest) | git (git pull from
#                     GI_ENGINE_REMOTE into $GOINFER_CACHE/src/llama.cpp-git) | local (the
#                     llama.cpp tree at GI_ENGINE_PATH)
#   GI_ENGINE_BACKEND cpu | cuda | vulkan        GI_ENGINE_TLS 0 | 1 (-DLLAMA_OPENSSL=ON)
#   GI_ENGINE_DIR     where engine folders go (default $GOINFER_CACHE)
#   GI_ENGINE_SMOKE_MODELS GGUF files, one a line: the new llama-server must answer a chat on one
#   GI_ENGINE_JOBS    compile jobs (default nproc)    GI_CUDA_ARCH  CMAKE_CUDA_ARCHITECTURES
#   GI_ENGINE_LOG     a file that gets the whole output too
#   GOINFER_CACHE     the build cache (default ~/.cache/goinfer)
set -uo pipefail

if [ -n "${GI_ENGINE_LOG:-}" ] && mkdir -p "$(dirname "$GI_ENGINE_LOG")"; then
    exec > >(tee "$GI_ENGINE_LOG") 2>&1
fi

CACHE="${GOINFER_CACHE:-$HOME/.cache/goinfer}"
SOURCE="${GI_ENGINE_SOURCE:-cached}"
BACKEND="${GI_ENGINE_BACKEND:-cpu}"
TLS="${GI_ENGINE_TLS:-0}"
ENGINES="${GI_ENGINE_DIR:-$CACHE}"
JOBS="${GI_ENGINE_JOBS:-$(nproc)}"
tmp="" smoke_pid=""

step() { echo "engine: step $*"; }
die() {
    echo "engine: error $*"
    exit 1
}
cleanup() {
    [ -n "$smoke_pid" ] && kill "$smoke_pid" 2>/dev/null && wait "$smoke_pid" 2>/dev/null
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "engine: error cancelled"; exit 143' TERM INT

# The tag of the source tree Goinfer's set-up cached: llama-current's, else the newest tree.
cached_tag() {
    local cur t
    cur="$(readlink -f "$CACHE/llama-current" 2>/dev/null || true)"
    t="${cur##*/llama-}"
    t="${t%-ui}"
    if [ -n "$cur" ] && [ -d "$CACHE/src/llama.cpp-$t" ]; then
        echo "$t"
        return
    fi
    t="$(ls -td "$CACHE"/src/llama.cpp-* 2>/dev/null | grep -v -- '-git$' | head -1)"
    [ -n "$t" ] && echo "${t##*/llama.cpp-}"
}

# A name safe in a folder name.
safe() { printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_'; }

from_bundle() {
    local want="${GI_ENGINE_BUNDLE_VERSION:-latest}" tgz ver pkg
    step "fetch node-llama-cpp@$want (npm pack)"
    mkdir -p "$CACHE/src/npm-pack.$$" || die "cannot write $CACHE/src"
    tgz="$(cd "$CACHE/src/npm-pack.$$" && npm pack --silent "node-llama-cpp@$want" 2>&1 | tail -1)" ||
        die "npm pack node-llama-cpp@$want failed: $tgz"
    ver="${tgz#node-llama-cpp-}"
    ver="${ver%.tgz}"
    pkg="$CACHE/src/node-llama-cpp-$ver"
    if [ ! -f "$pkg/package/llama/llama.cpp.info.json" ]; then
        mkdir -p "$pkg" && tar -xzf "$CACHE/src/npm-pack.$$/$tgz" -C "$pkg" || die "cannot unpack $tgz"
    fi
    rm -rf "$CACHE/src/npm-pack.$$"
    TAG="$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$pkg/package/llama/llama.cpp.info.json")"
    [ -n "$TAG" ] || die "no tag in $pkg/package/llama/llama.cpp.info.json"
    SRC="$CACHE/src/llama.cpp-$TAG"
    if [ ! -d "$SRC/tools/server" ]; then
        step "unpack llama.cpp $TAG from the bundle"
        git -c advice.detachedHead=false clone -q "$pkg/package/llama/gitRelease.bundle" "$SRC" ||
            die "git clone of the llama.cpp bundle failed"
    fi
}

from_git() {
    local remote="${GI_ENGINE_REMOTE:-https://github.com/ggml-org/llama.cpp}"
    SRC="$CACHE/src/llama.cpp-git"
    if [ ! -d "$SRC/.git" ]; then
        step "git clone $remote"
        git clone -q "$remote" "$SRC" 2>&1 || die "git clone $remote failed"
    else
        step "git pull $remote"
        git -C "$SRC" pull -q --ff-only "$remote" 2>&1 || die "git pull $remote failed"
    fi
    TAG="git-$(safe "$(git -C "$SRC" describe --tags --always 2>/dev/null)")"
}

from_local() {
    SRC="${GI_ENGINE_PATH:-}"
    [ -n "$SRC" ] || die "source local needs a path"
    [ -f "$SRC/CMakeLists.txt" ] && [ -d "$SRC/tools/server" ] && [ -d "$SRC/ggml" ] ||
        die "$SRC is not a llama.cpp source tree (no CMakeLists.txt, tools/server and ggml)"
    SRC="$(cd "$SRC" && pwd)"
    # the tree's path is in the name too: two trees never share a build folder
    TAG="local-$(safe "$(git -C "$SRC" describe --tags --always 2>/dev/null || basename "$SRC")")"
    TAG="$TAG-$(printf '%s' "$SRC" | sha1sum | cut -c1-8)"
}

# The cmake options of the backend and TLS choice, checked against what the machine has.
backend_flags() {
    FLAGS=()
    case "$BACKEND" in
    cpu) ;;
    cuda)
        [ -x /usr/local/cuda/bin/nvcc ] || die "backend cuda needs /usr/local/cuda/bin/nvcc (the CUDA toolkit)"
        local arch="${GI_CUDA_ARCH:-}"
        if [ -z "$arch" ] && command -v nvidia-smi >/dev/null; then
            arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
                tr -d '. ' | sort -u | paste -sd';')"
        fi
        FLAGS+=(-DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc
            "-DCMAKE_CUDA_ARCHITECTURES=${arch:-75;80;86;89;90}")
        ;;
    vulkan)
        pkg-config --exists vulkan || die "backend vulkan needs libvulkan-dev (apt-get install libvulkan-dev)"
        command -v glslc >/dev/null || die "backend vulkan needs glslc (apt-get install glslc)"
        FLAGS+=(-DGGML_VULKAN=ON)
        ;;
    *) die "unknown backend $BACKEND (cpu, cuda or vulkan)" ;;
    esac
    DESC="$BACKEND"
    if [ "$TLS" = 1 ]; then
        pkg-config --exists openssl || die "TLS needs libssl-dev"
        FLAGS+=(-DLLAMA_OPENSSL=ON)
        DESC="$DESC, tls"
    else
        FLAGS+=(-DLLAMA_OPENSSL=OFF)
    fi
}

build() {
    BLD="$CACHE/src/build-$TAG"
    [ "$BACKEND" = cpu ] || BLD="$BLD-$BACKEND"
    [ "$TLS" = 1 ] && BLD="$BLD-tls"
    if [ ! -f "$BLD/CMakeCache.txt" ]; then # a build folder keeps its options: never reconfigured
        step "configure $TAG ($DESC) in $BLD"
        cmake -S "$SRC" -B "$BLD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
            -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=ON "${FLAGS[@]}" 2>&1 ||
            die "cmake configure failed"
    fi
    step "compile llama-server in $BLD"
    cmake --build "$BLD" --target llama-server -j"$JOBS" 2>&1 || die "compile failed"
    [ -x "$BLD/bin/llama-server" ] || die "the build made no $BLD/bin/llama-server"
}

install() {
    local name
    name="llama-$(safe "$TAG")-$BACKEND$([ "$TLS" = 1 ] && echo -tls)-$(date -u +%Y%m%d%H%M%S)"
    OUT="$ENGINES/$name"
    [ ! -e "$OUT" ] || die "$OUT exists already"
    tmp="$ENGINES/.$name.tmp"
    step "install into $OUT"
    mkdir -p "$tmp/bin" && cp "$BLD/bin/llama-server" "$tmp/bin/" || die "cannot write $tmp"
    if [ -d "$BLD/tools/ui/dist" ]; then
        cp -r "$BLD/tools/ui/dist" "$tmp/ui" || die "cannot copy the web UI"
    fi
    VERSION="$("$tmp/bin/llama-server" --version 2>&1 | head -5)"
    E_TAG="$TAG" E_BACKEND="$BACKEND" E_TLS="$TLS" E_SOURCE="$SOURCE" E_SRC="$SRC" E_BLD="$BLD" \
        E_VERSION="$VERSION" python3 -c '
import json, os, sys, time
e = os.environ
json.dump({"tag": e["E_TAG"], "backend": e["E_BACKEND"], "tls": e["E_TLS"] == "1",
           "source": e["E_SOURCE"], "src": e["E_SRC"], "build_dir": e["E_BLD"],
           "version": e["E_VERSION"], "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
          open(sys.argv[1], "w"), indent=1)' "$tmp/engine.json" || die "cannot write engine.json"
}

# Starts the new llama-server on a model and asks one chat; 0 when it answered.
smoke_one() {
    local model="$1" port i code
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    step "smoke test: ${model##*/} on 127.0.0.1:$port"
    "$tmp/bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" -c 512 -np 1 --no-warmup \
        </dev/null >"$tmp/smoke.log" 2>&1 &
    smoke_pid=$!
    for i in $(seq 1 600); do
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)"
        [ "$code" = 200 ] && break
        kill -0 "$smoke_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ "$code" = 200 ] &&
        curl -s -f -m 60 "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
            -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}' | grep -q '"choices"'
    code=$?
    kill "$smoke_pid" 2>/dev/null
    wait "$smoke_pid" 2>/dev/null
    smoke_pid=""
    [ "$code" = 0 ] || { echo "smoke test: ${model##*/} not answered; llama-server said:"; tail -15 "$tmp/smoke.log"; }
    rm -f "$tmp/smoke.log"
    return "$code"
}

# The smoke test passes when one of the models (GI_ENGINE_SMOKE_MODELS, one a line) answers.
smoke() {
    local model tried=0
    while IFS= read -r model; do
        [ -n "$model" ] && [ -f "$model" ] || continue
        tried=$((tried + 1))
        if smoke_one "$model"; then
            echo "smoke test: ${model##*/} answered a chat"
            return
        fi
    done <<<"${GI_ENGINE_SMOKE_MODELS:-}"
    [ "$tried" -gt 0 ] || die "no model for the smoke test (Goinfer knows no GGUF file)"
    die "smoke test failed: the new llama-server answered no chat (see the log)"
}

backend_flags
case "$SOURCE" in
cached)
    TAG="$(cached_tag)"
    [ -n "$TAG" ] || die "no cached llama.cpp source under $CACHE/src: run make setup"
    SRC="$CACHE/src/llama.cpp-$TAG"
    ;;
bundle) from_bundle ;;
git) from_git ;;
local) from_local ;;
*) die "unknown source $SOURCE (cached, bundle, git or local)" ;;
esac
build
mkdir -p "$ENGINES" || die "cannot create $ENGINES"
install
smoke
mv "$tmp" "$OUT" || die "cannot rename $tmp to $OUT"
tmp=""
echo "engine: installed $OUT"
