"""Tracker stage: norfair keeps face boxes stable and covers detector misses.

Privacy first: the tracker only *adds* coverage. Every raw detection of a
frame is returned for that frame, whatever norfair thinks of it (norfair's
initialization delay would otherwise hide a new face for its first frames).
A face stays covered for ``keep_seconds`` after its last detection, at the
box the Kalman filter predicts, so a face the detector misses for a few
frames is still anonymized. The price is that a false positive also lingers
for ``keep_seconds``.

Example:
    >>> import numpy as np
    >>> from streamer.config import TrackerConfig
    >>> from streamer.detections import Detections
    >>> t = FaceTracker(TrackerConfig(keep_seconds=0.5), fps=10)
    >>> face = Detections(xyxy=[[10, 10, 50, 60]], scores=[0.9])
    >>> len(t.update(face, time=0.0)), len(t.update(Detections.empty(), time=0.1))
    (1, 1)
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from norfair import Detection, Tracker

from streamer.config import TrackerConfig
from streamer.detections import Detections


@dataclass
class _Seen:
    """What the tracker remembers of a detection (kept in norfair's ``data``)."""

    time: float
    box: np.ndarray
    keypoints: np.ndarray
    score: float


#: Held while any FaceTracker updates: the trackers of all streams in a process take turns. Norfair's
#: small numpy calls (``np.unique``, sorts, ``hstack``) each let go of the GIL for a moment, and with
#: several stream threads tracking at once every such release handed the GIL to another tracking
#: thread: 16 stub streams with 4 faces a frame made 174 context switches a frame and ran at about half
#: the frame rate of the same work taken in turns (2-core CPU, 2026-11-27,
#: ``benchmarks/results/plumbing-tracker-turns-cpu-2026-11-27.md``). The work holds the GIL anyway, so
#: taking turns costs no parallelism.
_ONE_TRACKER_AT_A_TIME = threading.Lock()


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], dtype=np.float32)


class FaceTracker:
    """Assigns track ids and adds coasting boxes for recently seen faces.

    Args:
        config: tracker settings.
        fps: nominal frame rate (frames per second), used to size norfair's
            hit counters so a track outlives ``keep_seconds`` without detections.
    """

    def __init__(self, config: TrackerConfig, fps: float) -> None:
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.config = config
        keep_frames = max(2, int(math.ceil(config.keep_seconds * fps)) + 1)
        self._tracker = Tracker(
            distance_function="iou",
            distance_threshold=config.max_distance,
            hit_counter_max=keep_frames,
            initialization_delay=1,
            reid_hit_counter_max=keep_frames,
        )
        self.track_count = 0

    def update(self, detections: Detections, time: float) -> Detections:
        """Track one frame's raw detections; ``time`` is its timestamp in seconds.

        Returns the raw detections (with track ids, boxes widened to the
        smoothed track box) plus a coasting box for every track seen within
        ``keep_seconds`` but not detected on this frame.
        """
        with _ONE_TRACKER_AT_A_TIME:
            return self._update(detections, time)

    def _update(self, detections: Detections, time: float) -> Detections:
        norfair_dets = [
            Detection(points=detections.xyxy[i].reshape(2, 2).astype(np.float64),
                      data=_Seen(time, detections.xyxy[i].copy(), detections.keypoints[i].copy(),
                                 float(detections.scores[i])))
            for i in range(len(detections))
        ]
        self._tracker.update(detections=norfair_dets)
        index_of = {id(d): i for i, d in enumerate(norfair_dets)}

        out = Detections(xyxy=detections.xyxy.copy(), scores=detections.scores,
                         keypoints=detections.keypoints, detected=np.ones(len(detections), bool))
        coasting: list[tuple[int, np.ndarray, np.ndarray]] = []
        for obj in self._tracker.tracked_objects:
            track_id = int(obj.initializing_id)
            self.track_count = max(self.track_count, track_id)
            seen: _Seen = obj.last_detection.data
            estimate = obj.estimate.reshape(4).astype(np.float32)
            i = index_of.get(id(obj.last_detection))
            if i is not None:  # detected on this frame
                out.track_ids[i] = track_id
                out.xyxy[i] = _union(out.xyxy[i], estimate)
            elif time - seen.time <= self.config.keep_seconds:
                coasting.append((track_id, estimate, self._shift_keypoints(seen, estimate)))
        if not coasting:
            return out
        extra = Detections(
            xyxy=np.stack([c[1] for c in coasting]),
            scores=np.zeros(len(coasting), np.float32),
            keypoints=np.stack([c[2] for c in coasting]),
            track_ids=np.array([c[0] for c in coasting]),
            detected=np.zeros(len(coasting), bool),
        )
        return Detections.merge([out, extra])

    @staticmethod
    def _shift_keypoints(seen: _Seen, box: np.ndarray) -> np.ndarray:
        """Move the last seen keypoints with the box (translate and scale)."""
        old = seen.box
        sx = (box[2] - box[0]) / max(old[2] - old[0], 1e-6)
        sy = (box[3] - box[1]) / max(old[3] - old[1], 1e-6)
        kp = seen.keypoints.copy()
        kp[:, 0] = box[0] + (kp[:, 0] - old[0]) * sx
        kp[:, 1] = box[1] + (kp[:, 1] - old[1]) * sy
        return kp
