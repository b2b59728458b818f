#!/usr/bin/env bash
# Makes the container build's two base images from Debian's packages, for machines with no image
# registry (DESIGN.md section 8): mmdebstrap writes a minbase bookworm with the packages each
# stage needs, podman imports it. The tars are cached in $GOINFER_CACHE/images, keyed by their
# package list, so a second run costs nothing.
#   container/base.sh   ->  localhost/goinfer-build:bookworm, localhost/goinfer-runtime:bookworm
set -euo pipefail
CACHE="${GOINFER_CACHE:-$HOME/.cache/goinfer}/images"
BUILD_PACKAGES="build-essential cmake pkg-config libuv1-dev libhttp-parser-dev libnghttp2-dev libssl-dev libyaml-dev libjansson-dev libsqlite3-dev libpq-dev libcurl4-openssl-dev"
# goinfer's libraries, and llama-server's (libgomp1, libstdc++6)
RUNTIME_PACKAGES="libuv1 libhttp-parser2.9 libnghttp2-14 libssl3 libyaml-0-2 libjansson4 libsqlite3-0 libpq5 libcurl4 libgomp1 libstdc++6"
# The runtime image: /usr merged by mmdebstrap's hook (the usrmerge package would pull in perl,
# 30 MB), no documentation, manuals, locales, iconv modules nor apt lists, and no apt, gpgv,
# e2fsprogs nor tzdata (the image is never updated in place: it is rebuilt).
SLIM=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/common-licenses/*' --dpkgopt='path-exclude=/usr/share/zoneinfo/*'
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*'
    --customize-hook='chroot "$1" dpkg --purge --force-depends --force-remove-essential apt libapt-pkg6.0 gpgv e2fsprogs tzdata >/dev/null'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/*')

for cmd in mmdebstrap podman runc; do
    command -v "$cmd" >/dev/null || { echo "container/base.sh: $cmd is missing: apt-get install podman runc mmdebstrap" >&2; exit 1; }
done
mkdir -p "$CACHE"

image() { # name packages [mmdebstrap options]
    local name="$1" packages="$2" key tar
    shift 2
    key="$(printf '%s %s' "$packages" "$*" | sha256sum | cut -c1-12)"
    tar="$CACHE/$name-bookworm-$key.tar"
    if [ ! -s "$tar" ]; then
        echo "container/base.sh: mmdebstrap $name ($tar)"
        mmdebstrap --quiet --format=tar --variant=minbase --include="${packages// /,}" "$@" bookworm "${tar%.tar}.part.tar"
        mv "${tar%.tar}.part.tar" "$tar"
        find "$CACHE" -maxdepth 1 -name "$name-bookworm-*.tar" ! -path "$tar" -delete # older lists
    fi
    if [ "$(podman image inspect --format '{{index .Labels "goinfer.base"}}' "localhost/$name:bookworm" 2>/dev/null)" != "$key" ]; then
        podman import -q --change "LABEL goinfer.base=$key" --change 'CMD ["/bin/bash"]' "$tar" "localhost/$name:bookworm" >/dev/null
        echo "container/base.sh: imported localhost/$name:bookworm"
    fi
}

image goinfer-build "$BUILD_PACKAGES"
image goinfer-runtime "$RUNTIME_PACKAGES" "${SLIM[@]}"
