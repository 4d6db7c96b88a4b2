"""RunStats' per-stage timings: shared by batches, bounded for live streams."""

from __future__ import annotations

import pytest

from streamer.live.camera import STAGE_WINDOW_FRAMES
from streamer.pipeline import WARMUP_FRAMES, RunStats


def test_batched_stage_time_is_shared_per_frame():
    stats = RunStats()
    stats.add_stage_time("detect", 0.080, frames=4)  # one batch of 4 frames in 80 ms
    stats.add_stage_time("detect", 0.100)
    assert list(stats.stage_ms["detect"]) == pytest.approx([20, 20, 20, 20, 100])
    p50, p95 = stats.stage_percentiles()["detect"]
    assert p50 == pytest.approx(20) and p95 > 80


def test_live_timings_stay_bounded():
    """A camera runs for days: only the last window of frames is kept."""
    stats = RunStats(stage_window=STAGE_WINDOW_FRAMES)
    for i in range(STAGE_WINDOW_FRAMES + 500):
        stats.add_stage_time("anonymize", i / 1000)
    kept = stats.stage_ms["anonymize"]
    assert len(kept) == STAGE_WINDOW_FRAMES and kept[0] == pytest.approx(500)


def test_steady_fps_leaves_the_warm_up_out():
    """A slow first second (model warm-up) must not count in the steady rate; short runs report none."""
    stats = RunStats()
    now = 0.0
    for i in range(WARMUP_FRAMES):  # warm-up: 0.5 s per frame
        now += 0.5
        stats.frame_written(now)
    for i in range(2 * WARMUP_FRAMES):  # then 100 fps
        now += 0.01
        stats.frame_written(now)
    assert stats.steady_fps == pytest.approx(100.0)
    assert stats.fps == 0.0  # the wall-clock rate comes from seconds, set by the run
    short = RunStats()
    for i in range(2 * WARMUP_FRAMES - 1):
        short.frame_written(float(i))
    assert short.steady_fps is None and short.as_dict()["steady_fps"] is None


def test_first_frame_time_is_the_start_up():
    """Seconds from the run's start to its first frame out: a GPU's start-up (20-30 s on an H100,
    2026-11-27b) shows on its own instead of only inside a low overall fps."""
    stats = RunStats()
    assert stats.first_frame_s is None and stats.as_dict()["first_frame_s"] is None
    stats.started = 10.0
    stats.frame_written(32.5)
    stats.frame_written(32.6)
    assert stats.first_frame_s == pytest.approx(22.5)
    assert stats.as_dict()["first_frame_s"] == pytest.approx(22.5)
