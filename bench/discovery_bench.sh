#!/usr/bin/env bash
# Discovery speed, side by side in one run: Goinfer's discovery (recursive walk, split and
# mmproj handling, GGUF headers) vs `find -name '*.gguf'` on the same generated tree of
# 20,000 files, 2,000 of them GGUF. Prints both and the ratio. Needs `make build` and hyperfine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
TREE="$(mktemp -d)"
trap 'rm -rf "$TREE"' EXIT

# 2,000 real GGUF files (small: 8-wide embeddings) spread over 100 folders, 18,000 others.
"$BUILD/mkmodel" -e 8 -l 1 -o "$TREE/seed.gguf" >/dev/null
for d in $(seq 1 100); do
    mkdir -p "$TREE/org$((d % 10))/repo$d/snapshots"
    for f in $(seq 1 20); do
        cp "$TREE/seed.gguf" "$TREE/org$((d % 10))/repo$d/snapshots/model-$f-Q4_K_M.gguf"
    done
    for f in $(seq 1 180); do
        : >"$TREE/org$((d % 10))/repo$d/snapshots/file-$f.txt"
    done
done
rm "$TREE/seed.gguf"
echo "tree: $(find "$TREE" -type f | wc -l) files, $(find "$TREE" -name '*.gguf' | wc -l) GGUF"
sync
hyperfine -N --warmup 2 --runs 15 --export-json "$TREE/h.json" \
    -n goinfer "$BUILD/discovery_bench $TREE" \
    -n find "find $TREE -name *.gguf" >/dev/null
/usr/bin/python3 - "$TREE/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
g, f = r["goinfer"]["median"], r["find"]["median"]
print(f"goinfer discovery: {g * 1e3:.1f} ms   find -name '*.gguf': {f * 1e3:.1f} ms   "
      f"ratio goinfer/find: {g / f:.2f}")
PY
