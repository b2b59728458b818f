"""tools/mkmodel: deterministic tiny GGUF files (served by the real llama-server in test_local)."""
import hashlib
import struct
import subprocess

from conftest import MKMODEL, need


def run(*args):
    return subprocess.run([need(MKMODEL), *map(str, args)], capture_output=True, text=True)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_options_same_bytes_and_seed_matters(tmp_path):
    assert run("-s", "5", "-o", tmp_path / "a.gguf").returncode == 0
    assert run("-s", "5", "-o", tmp_path / "b.gguf").returncode == 0
    assert run("-s", "6", "-o", tmp_path / "c.gguf").returncode == 0
    assert digest(tmp_path / "a.gguf") == digest(tmp_path / "b.gguf")
    assert digest(tmp_path / "a.gguf") != digest(tmp_path / "c.gguf")
    data = (tmp_path / "a.gguf").read_bytes()
    assert data[:4] == b"GGUF" and struct.unpack("<I", data[4:8])[0] == 3
    assert b"llama.block_count" in data and b"<|im_start|>" in data


def test_split_and_mmproj_files(tmp_path):
    p = run("--split", "3", "--mmproj", "-n", "big", "-o", tmp_path / "big.gguf")
    assert p.returncode == 0, p.stderr
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["big-00001-of-00003.gguf", "big-00002-of-00003.gguf",
                     "big-00003-of-00003.gguf", "mmproj-big.gguf"]
    first = (tmp_path / "big-00001-of-00003.gguf").read_bytes()
    assert b"split.count" in first and b"tokenizer.ggml.tokens" in first
    assert b"tokenizer.ggml.tokens" not in (tmp_path / "big-00002-of-00003.gguf").read_bytes()
    assert b"clip.has_vision_encoder" in (tmp_path / "mmproj-big.gguf").read_bytes()


def test_bad_options_are_refused(tmp_path):
    assert run("-l", "0", "-o", tmp_path / "x.gguf").returncode == 2
    assert run("--frob").returncode == 2
    assert run().returncode == 2  # no -o
    p = run("-o", "/nonexistent/dir/x.gguf")
    assert p.returncode == 1 and "/nonexistent/dir/x.gguf" in p.stderr
    assert not list(tmp_path.iterdir())
