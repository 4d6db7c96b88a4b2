"""The one data type every stage passes on: the faces found in one frame.

Modelled on supervision's ``Detections``: a small dataclass of parallel NumPy
arrays, one row per face, that the detector fills, the tracker extends (track
ids, coasting boxes) and the anonymizer consumes.

Example:
    >>> import numpy as np
    >>> d = Detections(xyxy=np.array([[10, 20, 50, 70]], dtype=np.float32),
    ...                scores=np.array([0.9], dtype=np.float32))
    >>> len(d), d.widths.tolist()
    (1, [40.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Number of facial keypoints every stage agrees on (CenterFace's order):
#: subject's right eye, left eye, nose, right mouth corner, left mouth corner.
NUM_KEYPOINTS = 5


def _empty_keypoints(n: int) -> np.ndarray:
    return np.full((n, NUM_KEYPOINTS, 2), np.nan, dtype=np.float32)


@dataclass
class Detections:
    """Faces in one frame, in that frame's pixel coordinates.

    Attributes:
        xyxy: (N, 4) float32 boxes ``x1, y1, x2, y2`` in pixels.
        scores: (N,) float32 detector confidence in [0, 1]; 0 for boxes the
            tracker predicted on a frame where the detector found nothing.
        keypoints: (N, 5, 2) float32 facial keypoints in pixels, NaN when
            unknown.
        track_ids: (N,) int64 tracker ids, -1 before tracking.
        detected: (N,) bool, True when the detector found the face on this
            frame, False when only the tracker covers it.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray = None  # type: ignore[assignment]
    track_ids: np.ndarray = None  # type: ignore[assignment]
    detected: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        if self.keypoints is None:
            self.keypoints = _empty_keypoints(n)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(n, NUM_KEYPOINTS, 2)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)
        if self.detected is None:
            self.detected = np.ones(n, dtype=bool)
        self.detected = np.asarray(self.detected, dtype=bool).reshape(n)

    @classmethod
    def empty(cls) -> "Detections":
        """Return a Detections with no faces."""
        return cls(xyxy=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        """Select rows with an index array, slice or boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        return Detections(
            xyxy=self.xyxy[index],
            scores=self.scores[index],
            keypoints=self.keypoints[index],
            track_ids=self.track_ids[index],
            detected=self.detected[index],
        )

    @classmethod
    def merge(cls, parts: list["Detections"]) -> "Detections":
        """Concatenate several Detections of the same frame."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            keypoints=np.concatenate([p.keypoints for p in parts]),
            track_ids=np.concatenate([p.track_ids for p in parts]),
            detected=np.concatenate([p.detected for p in parts]),
        )

    @property
    def widths(self) -> np.ndarray:
        """Box widths in pixels."""
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> np.ndarray:
        """Box heights in pixels."""
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def has_keypoints(self) -> np.ndarray:
        """(N,) bool: True where all 5 keypoints are known."""
        return ~np.isnan(self.keypoints).any(axis=(1, 2))


@dataclass
class Frame:
    """One decoded video frame travelling through the pipeline.

    The pixels live on the host (``image``), on a GPU (``device_image``), or
    both. When both are set they hold the same pixels: whoever changes one
    updates or clears the other, so a stale copy (the original faces) can
    never be written.

    Attributes:
        index: 0-based decode order of the frame in its stream.
        pts: presentation timestamp in ``time_base`` units (None if unknown).
        time_base: seconds per pts tick, as a ``fractions.Fraction``.
        image: (H, W, 3) uint8 RGB pixels on the host, or None while they are
            only on the device; stages modify it in place.
        detections: faces found or covered on this frame.
        dropped: set when the frame must not be written (``on_error: drop``).
        error: a short description of a stage failure on this frame.
        device_image: (H, W, 3) uint8 RGB torch tensor on the GPU (GPU decode,
            or uploaded by the GPU compositor), else None.
        ready: a CUDA event recorded after the last GPU work on ``device_image``
            (the GPU compositor's), so a consumer on another CUDA stream waits
            for exactly that work; None when nothing is pending.
    """

    index: int
    pts: int | None
    time_base: object
    image: np.ndarray | None
    detections: Detections = field(default_factory=Detections.empty)
    dropped: bool = False
    error: str | None = None
    device_image: Any = None
    ready: Any = None

    @property
    def time(self) -> float:
        """Presentation time in seconds (index-based fallback is the caller's job)."""
        return float(self.pts * self.time_base) if self.pts is not None else float("nan")

    @property
    def pixels(self):
        """The frame where it is most useful: ``device_image`` if set, else ``image`` ((H, W, 3) both)."""
        return self.device_image if self.device_image is not None else self.image

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3) of the frame, pixels."""
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    def to_host(self) -> np.ndarray:
        """The host image, downloaded from the device once if it is only there."""
        if self.image is None:
            self.image = self.device_image.cpu().numpy()
        return self.image

    def blackout(self) -> None:
        """Replace every pixel by black, on the host; the device copy is dropped."""
        if self.image is None:
            self.image = np.zeros(self.shape, np.uint8)
        else:
            self.image[...] = 0
        self.device_image = None
