"""Shared fixtures: real clips encoded with libx264 + AAC, and fast test configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.config import Config, apply_overrides, load_config
from streamer.sample import SampleClip, make_sample_clip

#: Data beside the checkout (never committed); tests needing it skip when absent.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_VIDEOS = SHARED / "data" / "videos"


def fast_config(**overrides) -> Config:
    """Default config with a 640 px detector (tests on 2 cores) plus dotted overrides."""
    base = {"detector.input_width": 640}
    base.update(overrides)
    return apply_overrides(load_config(None), base)


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory):
    """ONNX exports and engines of this test session go to a fresh folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("engine-cache")
    before = os.environ.get("STREAMER_ENGINE_CACHE")
    os.environ["STREAMER_ENGINE_CACHE"] = str(path)  # subprocesses (CLI tests) inherit it
    yield path
    if before is None:
        os.environ.pop("STREAMER_ENGINE_CACHE", None)
    else:
        os.environ["STREAMER_ENGINE_CACHE"] = before


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> SampleClip:
    """2 s, 25 fps, 1280x720 H.264 clip with two moving real faces and an AAC track."""
    path = tmp_path_factory.mktemp("clips") / "faces.mp4"
    return make_sample_clip(str(path), seconds=2.0, fps=25, faces=2)


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> SampleClip:
    """1 s, 640x360 clip with one face and audio: for error-path tests."""
    path = tmp_path_factory.mktemp("clips") / "small.mp4"
    return make_sample_clip(str(path), seconds=1.0, fps=25, width=640, height=360, faces=1)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``streamer`` entry point as a user would; returns the completed process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "streamer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
