"""Engine cache: key logic, corrupt/mismatched files rebuilt, atomic writes, concurrent builders."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from engines import engine_cache
from engines.engine_cache import CacheKey, atomic_write_bytes, load_or_build, pack_entry, unpack_entry

KEY = CacheKey(model_sha256="ab" * 32, trt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
               compute_capability="9.0", precision="fp16", profile="1x3x384x640:8x3x384x640:32x3x384x640")


class Builder:
    """Counts builds; returns distinct bytes per build."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return b"engine-%d-" % self.calls + os.urandom(64)


def test_hit_after_build(tmp_path):
    build = Builder()
    first, built = load_or_build(tmp_path, "centerface", KEY, build)
    assert built and build.calls == 1
    again, built = load_or_build(tmp_path, "centerface", KEY, build)
    assert not built and again == first and build.calls == 1


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(CacheKey)])
def test_any_key_change_rebuilds(tmp_path, field):
    build = Builder()
    load_or_build(tmp_path, "centerface", KEY, build)
    changed = dataclasses.replace(KEY, **{field: getattr(KEY, field) + "x"})
    assert changed.digest() != KEY.digest()
    _, built = load_or_build(tmp_path, "centerface", changed, build)
    assert built and build.calls == 2
    _, built = load_or_build(tmp_path, "centerface", KEY, build)  # the original entry is still valid
    assert not built


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "header"])
def test_corrupt_file_is_rebuilt(tmp_path, damage):
    build = Builder()
    good, _ = load_or_build(tmp_path, "centerface", KEY, build)
    path = tmp_path / KEY.filename("centerface")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-10] ^= 0xFF
    elif damage == "truncate":
        data = data[:-5]
    elif damage == "garbage":
        data = bytearray(b"\x00" * len(data))
    elif damage == "empty":
        data = bytearray()
    else:
        data[len(engine_cache.MAGIC) + 6] ^= 0xFF
    path.write_bytes(bytes(data))
    assert unpack_entry(bytes(data), KEY)[0] is None
    fresh, built = load_or_build(tmp_path, "centerface", KEY, build)
    assert built and fresh != good and unpack_entry(path.read_bytes(), KEY)[0] == fresh


def test_file_built_for_another_key_is_rebuilt(tmp_path):
    other = dataclasses.replace(KEY, gpu_name="NVIDIA A100")
    path = tmp_path / KEY.filename("centerface")
    path.write_bytes(pack_entry(other, b"plan for an A100"))  # e.g. a cache folder copied between machines
    payload, why = unpack_entry(path.read_bytes(), KEY)
    assert payload is None and "different" in why
    build = Builder()
    _, built = load_or_build(tmp_path, "centerface", KEY, build)
    assert built and build.calls == 1


def test_failed_build_leaves_nothing(tmp_path):
    def boom() -> bytes:
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError):
        load_or_build(tmp_path, "centerface", KEY, boom)
    assert not (tmp_path / KEY.filename("centerface")).exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_write_interrupted_before_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.engine"
    atomic_write_bytes(path, b"old complete engine")

    def crash(src, dst):
        assert Path(src).read_bytes() == b"new" * 1000  # the whole file is written before the rename
        raise OSError("power cut")

    monkeypatch.setattr(engine_cache.os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new" * 1000)
    assert path.read_bytes() == b"old complete engine"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]


def _slow_build_worker(cache_dir: str, counter: str, out: str) -> None:
    def build() -> bytes:
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the other process to arrive mid-build
        return os.urandom(1 << 20)

    payload, _ = load_or_build(cache_dir, "centerface", KEY, build)
    Path(out).write_bytes(payload)


def test_two_processes_build_once_and_agree(tmp_path):
    ctx = multiprocessing.get_context("fork")
    counter = tmp_path / "count.txt"
    procs = [ctx.Process(target=_slow_build_worker, args=(str(tmp_path / "cache"), str(counter),
                                                         str(tmp_path / f"out{i}"))) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counter.read_text().count("built") == 1
    outs = {(tmp_path / f"out{i}").read_bytes() for i in range(3)}
    assert len(outs) == 1
    stored, _ = unpack_entry((tmp_path / "cache" / KEY.filename("centerface")).read_bytes(), KEY)
    assert stored == outs.pop()
