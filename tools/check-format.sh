#!/usr/bin/env bash
# Fails, naming the files, when clang-format (the repo's .clang-format) would change a C source:
# run by `make test`, so the style holds without anyone remembering it. Fix with `make format`.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files -- 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/fuzz/*.c' 'tools/*.c' 'bench/*.c')
if [ ${#bad[@]} -gt 0 ]; then
    echo "check-format: clang-format would change ${#bad[@]} file(s): ${bad[*]}" >&2
    echo "check-format: run 'make format' and commit the result" >&2
    exit 1
fi
echo "check-format: $(git ls-files -- 'src/*.[ch]' 'tests/unit/*.c' 'tests/fuzz/*.c' 'tools/*.c' 'bench/*.c' | wc -l) files formatted as .clang-format says"
