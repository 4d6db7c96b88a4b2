"""RunStats' per-stage timings: shared by batches, bounded for live streams."""

from __future__ import annotations

import pytest

from streamer.live.camera import STAGE_WINDOW_FRAMES
from streamer.pipeline import RunStats


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
