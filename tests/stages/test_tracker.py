"""Tracker stage: privacy-first coverage."""

from __future__ import annotations

import pytest

from streamer.config import TrackerConfig
from streamer.detections import Detections
from streamer.stages.tracker import FaceTracker


def face(x: float) -> Detections:
    return Detections(xyxy=[[x, 100, x + 40, 150]], scores=[0.9])


def test_first_frame_detection_is_returned():
    """norfair's initialization delay must never hide a brand-new face."""
    out = FaceTracker(TrackerConfig(), fps=25).update(face(10), time=0.0)
    assert len(out) == 1 and out.detected.all()


def test_coasts_for_keep_seconds_then_stops():
    tracker = FaceTracker(TrackerConfig(keep_seconds=0.5), fps=10)
    for i in range(5):
        tracker.update(face(10 + 4 * i), time=i / 10)
    covered = [len(tracker.update(Detections.empty(), time=(5 + k) / 10)) for k in range(8)]
    assert covered[:5] == [1, 1, 1, 1, 1]  # up to 0.5 s after the last detection
    assert covered[-1] == 0


def test_coasting_box_follows_motion():
    tracker = FaceTracker(TrackerConfig(keep_seconds=1.0), fps=10)
    for i in range(8):
        tracker.update(face(10 + 10 * i), time=i / 10)
    coast = tracker.update(Detections.empty(), time=0.8)
    assert not coast.detected[0]
    assert coast.xyxy[0, 0] > 75  # predicted forward, not frozen at the last box (x=80 at t=0.7)


def test_two_faces_keep_distinct_ids():
    tracker = FaceTracker(TrackerConfig(), fps=25)
    ids = set()
    for i in range(10):
        both = Detections.merge([face(10 + i), face(400 - i)])
        ids.update(tracker.update(both, time=i / 25).track_ids.tolist())
    assert len(ids) == 2


def test_rejects_bad_fps():
    with pytest.raises(ValueError, match="fps"):
        FaceTracker(TrackerConfig(), fps=0)


def test_trackers_of_many_streams_at_once_cover_as_each_would_alone():
    """Streams track on their own threads (the live server's cameras, the bench's streams) and take turns
    for the GIL's sake: every stream's coverage and track ids are what its tracker gives run alone."""
    import threading

    def frames(stream: int) -> list[Detections]:  # each stream its own faces, with blinks
        return [Detections.empty() if (i + stream) % 7 == 3 else
                Detections(xyxy=[[10 + 3 * i + stream, 100, 50 + 3 * i + stream, 150],
                                 [300 - 2 * i, 80 + stream, 340 - 2 * i, 130 + stream]], scores=[0.9, 0.8])
                for i in range(60)]

    def run(stream: int) -> list[tuple]:
        tracker = FaceTracker(TrackerConfig(keep_seconds=0.2), fps=25)
        return [(out.xyxy.round(3).tolist(), out.track_ids.tolist(), out.detected.tolist())
                for i, d in enumerate(frames(stream)) for out in [tracker.update(d, time=i / 25)]]

    alone = [run(s) for s in range(8)]
    together: list = [None] * 8

    def worker(s: int) -> None:
        together[s] = run(s)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert any(not all(d) for stream in alone for _, _, d in stream)  # the blinks were covered by coasting
