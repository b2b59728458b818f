#!/usr/bin/env bash
# One-command, idempotent set-up for Goinfer: Debian packages, npm test clients,
# and a llama-server built from the llama.cpp source shipped inside node-llama-cpp.
# Every step says what it does; a failure names the step and what to do next.
#
# Usage: scripts/setup.sh [run|test|deps|run-deps|npm|llama|all]   (default: all, which is test)
#   run   what running needs: the libraries to build Goinfer, and llama-server (make run)
#   test  that, plus the test tools: pytest, chromium, nginx, sshd, wrk, podman... (make test)
# Root is needed only to install what is missing; anyone else is told the apt-get line to run.
# Environment:
#   GOINFER_CACHE  where llama-server is built and kept (default ~/.cache/goinfer)
#   GI_LLAMA_EXE   an existing llama-server: skips the build entirely
#   GI_LLAMA_BACKEND  cpu | cuda | vulkan (default: cuda when nvidia-smi works and the CUDA
#                     toolkit is at /usr/local/cuda, else cpu)
#   GI_LLAMA_TLS   1: llama-server with TLS (-DLLAMA_OPENSSL=ON), so its -hf downloads work
#   GI_CUDA_ARCH   CMAKE_CUDA_ARCHITECTURES (default: the GPUs nvidia-smi lists)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${GOINFER_CACHE:-$HOME/.cache/goinfer}"
NLC_VERSION="3.21.1"   # node-llama-cpp release whose bundle pins the llama.cpp tag

# What `make run` needs: a compiler and the libraries Goinfer links (llama-server is built with
# the same compiler and cmake; git unpacks its source).
RUN_PACKAGES=(
    build-essential cmake pkg-config git
    libuv1-dev libhttp-parser-dev libnghttp2-dev libssl-dev
    libyaml-dev libjansson-dev libsqlite3-dev libpq-dev libcurl4-openssl-dev
)
# What `make test` adds: the checks, the test clients and servers (a PostgreSQL for the shared
# ledger's tests), the benchmarks, the container tools (podman, runc, mmdebstrap, podman-compose
# and its DNS plugin) and promtool (prometheus).
TEST_PACKAGES=(
    clang clang-format libcmocka-dev postgresql
    python3-pytest python3-h2 python3-httpx python3-openssl
    curl wrk nghttp2-client hyperfine nginx-light openssh-server iproute2 iptables chromium
    podman runc mmdebstrap podman-compose golang-github-containernetworking-plugin-dnsname prometheus
)
PACKAGES=("${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}")

step=""
say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die()  { printf '\033[31m[setup] step "%s" failed:\033[0m %s\n' "$step" "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && printf "[setup] step \"%s\" failed (exit %d); see the output above\n" "$step" $rc >&2' EXIT

deps() {
    step="debian packages"
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "debian packages: all ${#PACKAGES[@]} present"
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        printf '[setup] %d Debian packages are missing; install them with:\n' "${#missing[@]}" >&2
        printf '  sudo apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
        step="debian packages (not root)"
        exit 1
    fi
    say "debian packages: installing ${#missing[@]} missing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed; check the Debian archive is reachable"
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/tmp/goinfer-apt.log 2>&1 ||
        { tail -20 /tmp/goinfer-apt.log; die "apt-get install failed; full log in /tmp/goinfer-apt.log"; }
    say "debian packages: done"
}

npm_clients() {
    step="npm test clients"
    if [ -d "$ROOT/tests/client/node_modules/openai" ] &&
        [ -d "$ROOT/tests/client/node_modules/playwright-core" ]; then
        say "npm test clients: present"
        return
    fi
    say "npm test clients: npm ci in tests/client"
    (cd "$ROOT/tests/client" && npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci failed in tests/client; check the npm registry is reachable"
}

# The backend and TLS choice: sets BACKEND, TLS, SUFFIX (of the build and install folders:
# none for cpu without TLS, so the first build is found again) and LLAMA_FLAGS.
llama_options() {
    BACKEND="${GI_LLAMA_BACKEND:-}"
    TLS="${GI_LLAMA_TLS:-0}"
    if [ -z "$BACKEND" ]; then
        BACKEND=cpu
        if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
            if [ -x /usr/local/cuda/bin/nvcc ]; then
                BACKEND=cuda
            else
                printf '\033[33m[setup] a GPU is present (nvidia-smi works) but not the CUDA toolkit (/usr/local/cuda/bin/nvcc): building for the CPU; install the toolkit and run GI_LLAMA_BACKEND=cuda make setup\033[0m\n' >&2
            fi
        fi
    fi
    LLAMA_FLAGS=()
    case "$BACKEND" in
    cpu) ;;
    cuda)
        [ -x /usr/local/cuda/bin/nvcc ] || die "GI_LLAMA_BACKEND=cuda needs the CUDA toolkit at /usr/local/cuda (nvcc)"
        local arch="${GI_CUDA_ARCH:-}"
        if [ -z "$arch" ] && command -v nvidia-smi >/dev/null; then
            arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '. ' | sort -u | paste -sd';')"
        fi
        LLAMA_FLAGS+=(-DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc
            "-DCMAKE_CUDA_ARCHITECTURES=${arch:-75;80;86;89;90}")
        ;;
    vulkan)
        pkg-config --exists vulkan || die "GI_LLAMA_BACKEND=vulkan needs libvulkan-dev (apt-get install libvulkan-dev)"
        command -v glslc >/dev/null || die "GI_LLAMA_BACKEND=vulkan needs glslc (apt-get install glslc)"
        LLAMA_FLAGS+=(-DGGML_VULKAN=ON)
        ;;
    *) die "GI_LLAMA_BACKEND=$BACKEND: expected cpu, cuda or vulkan" ;;
    esac
    case "$TLS" in
    1 | on | ON | true) TLS=1; LLAMA_FLAGS+=(-DLLAMA_OPENSSL=ON) ;;
    0 | off | OFF | false | "") TLS=0; LLAMA_FLAGS+=(-DLLAMA_OPENSSL=OFF) ;;
    *) die "GI_LLAMA_TLS=$TLS: expected 1 or 0" ;;
    esac
    SUFFIX=""
    DESC="$BACKEND"
    [ "$BACKEND" = cpu ] || SUFFIX="-$BACKEND"
    if [ "$TLS" = 1 ]; then
        SUFFIX="$SUFFIX-tls"
        DESC="$DESC, tls"
    fi
}

# Prints the path of llama-server, building it first when the cache lacks it.
llama() {
    step="llama-server"
    if [ -n "${GI_LLAMA_EXE:-}" ]; then
        [ -x "$GI_LLAMA_EXE" ] || die "GI_LLAMA_EXE=$GI_LLAMA_EXE is not an executable file; unset it to build one"
        say "llama-server: using GI_LLAMA_EXE=$GI_LLAMA_EXE (no build)"
        return
    fi
    llama_options
    mkdir -p "$CACHE/src"
    local tgz="$CACHE/src/node-llama-cpp-$NLC_VERSION.tgz" pkg="$CACHE/src/node-llama-cpp-$NLC_VERSION"
    if [ ! -f "$pkg/package/llama/llama.cpp.info.json" ]; then
        step="llama-server: fetch node-llama-cpp@$NLC_VERSION"
        command -v npm >/dev/null || die "npm is missing (it fetches llama.cpp's source): sudo apt-get install -y nodejs npm"
        say "$step"
        (cd "$CACHE/src" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null) ||
            die "npm pack failed; check the npm registry is reachable"
        mkdir -p "$pkg" && tar -xzf "$tgz" -C "$pkg"
    fi
    local tag
    tag="$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$pkg/package/llama/llama.cpp.info.json")"
    [ -n "$tag" ] || die "no tag in $pkg/package/llama/llama.cpp.info.json"
    local out="$CACHE/llama-$tag$SUFFIX-ui" # built with llama.cpp's web UI (served at GET /)
    if [ -x "$out/bin/llama-server" ]; then
        say "llama-server: cached $out/bin/llama-server ($tag, $DESC)"
        ln -sfn "$out" "$CACHE/llama-current"
        return
    fi
    step="llama-server: build $tag ($DESC)"
    local src="$CACHE/src/llama.cpp-$tag" bld="$CACHE/src/build-$tag$SUFFIX"
    [ -d "$src/tools/server" ] || { rm -rf "$src"; git -c advice.detachedHead=false clone -q "$pkg/package/llama/gitRelease.bundle" "$src"; } ||
        die "git clone of the llama.cpp bundle failed"
    say "llama-server: configuring $tag (log: $bld.log)"
    cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_UI=ON "${LLAMA_FLAGS[@]}" \
        >"$bld.log" 2>&1 ||
        { tail -20 "$bld.log"; die "cmake configure failed; full log in $bld.log"; }
    say "llama-server: compiling with its web UI (about 12 minutes on 2 cores for the CPU, more with CUDA; once)"
    local last="" pct
    cmake --build "$bld" --target llama-server -j"$(nproc)" 2>&1 | tee -a "$bld.log" |
        grep --line-buffered -o '^\[ *[0-9]*%\]' | while read -r pct; do
            pct="${pct//[^0-9]/}"
            [ "$((pct / 10))" = "$last" ] || printf '[setup] llama-server: %s%% compiled\n' "$pct"
            last="$((pct / 10))"
        done
    [ -x "$bld/bin/llama-server" ] || { tail -30 "$bld.log"; die "build failed; full log in $bld.log"; }
    [ -f "$bld/tools/ui/dist/_gzip/index.html" ] || die "the web UI was not built; see $bld.log"
    rm -rf "$out" && mkdir -p "$out"
    cp -r "$bld/tools/ui/dist" "$out/ui"
    mkdir -p "$out/bin.tmp" && cp "$bld/bin/llama-server" "$out/bin.tmp/" && mv "$out/bin.tmp" "$out/bin"
    ln -sfn "$out" "$CACHE/llama-current"
    say "llama-server: built $out/bin/llama-server"
}

case "${1:-all}" in
run) PACKAGES=("${RUN_PACKAGES[@]}"); deps; llama ;;
run-deps) PACKAGES=("${RUN_PACKAGES[@]}"); deps ;;
deps) deps ;;
npm) npm_clients ;;
llama) llama ;;
test | all) deps; npm_clients; llama ;;
*) echo "usage: $0 [run|test|deps|run-deps|npm|llama|all]" >&2; exit 2 ;;
esac
step="done"
