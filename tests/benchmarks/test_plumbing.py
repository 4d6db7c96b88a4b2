"""The plumbing benchmark's stubs go through the real pipeline: every frame out, in order, tracked."""

from __future__ import annotations

import pytest

from benchmarks.plumbing import StubCompositor, StubDetector, StubSource, plumbing_fps, streams_fps
from streamer.config import apply_overrides, load_config
from streamer.pipeline import run_pipeline
from streamer.sinks.null import NullSink


@pytest.mark.parametrize("threads", [1, 2])
def test_plumbing_fps_runs_every_variant(threads):
    assert plumbing_fps(40, faces=4, batch=8, threads=threads, tracker=True) > 0


def test_the_stub_faces_reach_the_tracker():
    config = apply_overrides(load_config(None), {"pipeline.device": "cpu"})
    stats = run_pipeline(StubSource(30), NullSink(), config, detector=StubDetector(4), compositor=StubCompositor())
    assert stats.frames_out == 30 and stats.faces_detected == 120 and stats.tracks == 4


def test_streams_with_launch_stand_ins_keep_every_frame():
    # streams_fps raises if any stream lost a frame
    assert streams_fps(3, frames=20, faces=4, launches=5) > 0
