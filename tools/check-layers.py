#!/usr/bin/python3
"""Fails when the include graph (gcc -M over every source file) has a cycle between folders of
src/ or between files (each #include "..." an edge), or when <yaml.h> reaches a translation
unit other than the config loader's. Run by make
test, so the layers stay as the README draws them: core at the bottom; conf, http and proc on
it; models, swap, tunnel, admin and router above; app and main.c on top."""
import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YAML_ALLOWED = {"src/conf/conf.c", "src/conf/swapconf.c", "src/conf/tunnelconf.c",
                "src/conf/yaml.c", "src/conf/edit.c"}


def deps(src, cflags):
    out = subprocess.run(["gcc", "-M", "-D_GNU_SOURCE", "-Isrc", *cflags, src], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return out.replace("\\\n", " ").split(":", 1)[1].split()


def direct_includes(path):
    """The project headers path names in its #include "..." lines, as src/ paths."""
    here = Path(path).parent
    out = []
    for m in re.finditer(r'^#include "([^"]+)"', (ROOT / path).read_text(), re.M):
        name = m.group(1)
        out.append(f"src/{name}" if "/" in name else str(here / name))
    return out


def folder(path):
    parts = Path(path).parts
    return parts[1] if len(parts) > 2 and parts[0] == "src" else "main"


def cycle(graph):
    state = {}

    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1 and m in stack:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m, stack + [m])
                if found:
                    return found
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n, [n])
            if found:
                return found
    return None


def main():
    cflags = subprocess.run(["pkg-config", "--cflags", "libuv", "libnghttp2", "openssl",
                             "yaml-0.1", "jansson", "libpq"], capture_output=True, text=True,
                            check=True).stdout.split()
    sources = subprocess.run(["git", "ls-files", "src/*.c"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    graph, modules, bad = collections.defaultdict(set), collections.defaultdict(set), []
    headers = subprocess.run(["git", "ls-files", "src/*.h"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    for f in headers + sources:  # what each file includes directly, for the file graph
        modules[f].update(direct_includes(f))
    for src in sources:
        for d in deps(src, cflags):
            if d.startswith("src/") and folder(d) != folder(src):
                graph[folder(src)].add(folder(d))
            if d.endswith("/yaml.h") and not d.startswith("src/") and src not in YAML_ALLOWED:
                bad.append(src)
    found = cycle(graph)
    found_module = cycle(modules)
    for f in sorted(k for k in graph if graph[k]):
        print(f"check-layers: {f} -> {' '.join(sorted(graph[f]))}")
    if found:
        print("check-layers: folders include each other: " + " -> ".join(found), file=sys.stderr)
    if found_module:
        print("check-layers: files include each other: " + " -> ".join(found_module),
              file=sys.stderr)
    if bad:
        print("check-layers: <yaml.h> reaches " + ", ".join(sorted(set(bad))) +
              " (only the config loader may see libyaml)", file=sys.stderr)
    sys.exit(1 if found or found_module or bad else 0)


if __name__ == "__main__":
    main()
