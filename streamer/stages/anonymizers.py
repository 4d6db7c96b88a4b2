"""Anonymizers: turn a batch of face crops into replacement crops.

Every anonymizer takes a :class:`FaceCrops` batch (crops, the face box and
keypoints inside each crop, track ids) and returns one replacement crop per
face, same size. They never composite: :mod:`streamer.stages.compositor`
blends the result back with a feathered elliptical mask. The GAN generator
implements the same interface with ``context > 1`` and a fixed input size.

``anonymize`` works on NumPy crops (the CPU compositor); ``anonymize_tensor``
does the same on torch ``(3, h, w)`` float crops on any device (the GPU
compositor, :mod:`streamer.stages.torch_compositor`). Both share one
parameter computation, so the two paths differ only by rounding.

Example:
    >>> import numpy as np
    >>> crops = FaceCrops(images=[np.full((40, 30, 3), 200, np.uint8)],
    ...                   boxes=np.array([[0, 0, 30, 40]], np.float32))
    >>> Mask(color=(0, 0, 0)).anonymize(crops)[0].max()
    0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from streamer.detections import NUM_KEYPOINTS


@dataclass
class FaceCrops:
    """A batch of face crops handed to an anonymizer.

    Attributes:
        images: RGB uint8 crops, (h_i, w_i, 3) each; for ``anonymize_tensor``,
            torch float (3, h_i, w_i) crops, values 0..255 (a list, or one
            (N, 3, s, s) tensor when all have one size).
        boxes: (N, 4) the face region inside each crop, crop pixels.
        keypoints: (N, 5, 2) keypoints in crop pixels, NaN when unknown.
        track_ids: (N,) track id of each face (-1 when untracked).
    """

    images: list
    boxes: np.ndarray
    keypoints: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.keypoints is None:
            self.keypoints = np.full((n, NUM_KEYPOINTS, 2), np.nan, np.float32)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, np.int64)

    def __len__(self) -> int:
        return len(self.images)


class Anonymizer(Protocol):
    """Replaces faces given as crops.

    Attributes:
        name: mode name used in configs and summaries.
        context: crop side relative to the face region (1.0: the region
            alone; the GAN wants surrounding context, e.g. 2.0).
        input_size: side in pixels crops are resized to (square), or None to
            keep native size.
        mask_scale: the anonymizer changes only the face box scaled by this
            about its centre and returns the rest of the crop as it came (the
            GAN: generated face, original context); None: it changes the whole
            crop. The compositor blends back only the changed part, so a
            crop's context never pastes the original pixels of an
            overlapping, already anonymized face back.
    """

    name: str
    context: float
    input_size: int | None
    mask_scale: float | None

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Return one anonymized crop per input crop, same shape and dtype."""
        ...

    def anonymize_tensor(self, crops: FaceCrops) -> list:
        """Same on torch float (3, h, w) crops (0..255, any device); returns float crops, same shapes, or
        smaller ones the compositor up-scales to the crop (bilinear, OpenCV ``INTER_LINEAR``)."""
        ...


def _face_size(box: np.ndarray) -> float:
    return float(max(1.0, min(box[2] - box[0], box[3] - box[1])))


@dataclass
class Blur:
    """Gaussian blur whose sigma is ``strength`` times the face size (pixels).

    Large sigmas are applied on a down-scaled copy, so cost stays flat with
    face size.
    """

    strength: float = 0.25
    name: str = "blur"
    context: float = 1.0
    input_size: int | None = None
    mask_scale: float | None = None

    def plan(self, box: np.ndarray, width: int, height: int) -> tuple[float, tuple[int, int]]:
        """Blur of a ``width`` x ``height`` crop with face ``box``: (sigma on the down-scaled
        copy, that copy's (width, height)), pixels."""
        sigma = max(1.0, self.strength * _face_size(box))
        factor = max(1.0, sigma / 3.0)
        return sigma / factor, (max(1, round(width / factor)), max(1, round(height / factor)))

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Blur each crop with a sigma proportional to its face size."""
        out = []
        for image, box in zip(crops.images, crops.boxes):
            h, w = image.shape[:2]
            sigma, small_size = self.plan(box, w, h)
            small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
            out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
        return out

    def anonymize_tensor(self, crops: FaceCrops) -> list:
        """:meth:`anonymize` on torch float (3, h, w) crops, batched, without its last step: returns
        the shrunk blurred crops, which the compositor up-scales (bilinear) to the crop as it blends."""
        from streamer.stages import frame_ops

        if not len(crops):
            return []
        plans = [self.plan(box, image.shape[-1], image.shape[-2]) for image, box in zip(crops.images, crops.boxes)]
        return frame_ops.shrink_and_blur(list(crops.images), [size for _, size in plans],
                                         [sigma for sigma, _ in plans])


@dataclass
class Pixelate:
    """Mosaic with ``blocks`` blocks across the face."""

    blocks: int = 8
    name: str = "pixelate"
    context: float = 1.0
    input_size: int | None = None
    mask_scale: float | None = None

    def plan(self, box: np.ndarray, width: int, height: int) -> tuple[int, int]:
        """(width, height) in blocks of a ``width`` x ``height`` crop with face ``box``."""
        block = max(1.0, _face_size(box) / self.blocks)
        return max(1, math.ceil(width / block)), max(1, math.ceil(height / block))

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Average each crop over square blocks of face_size / blocks pixels."""
        out = []
        for image, box in zip(crops.images, crops.boxes):
            h, w = image.shape[:2]
            small = cv2.resize(image, self.plan(box, w, h), interpolation=cv2.INTER_AREA)
            out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))
        return out

    def anonymize_tensor(self, crops: FaceCrops) -> list:
        """:meth:`anonymize` on torch float (3, h, w) crops, batched."""
        from streamer.stages import frame_ops

        if not len(crops):
            return []
        return frame_ops.shrink_and_enlarge(list(crops.images), [self.plan(box, image.shape[-1], image.shape[-2])
                                                                 for image, box in zip(crops.images, crops.boxes)])


@dataclass
class Mask:
    """Solid fill with one RGB colour."""

    color: tuple = (0, 0, 0)
    name: str = "mask"
    context: float = 1.0
    input_size: int | None = None
    mask_scale: float | None = None

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Return crops filled with ``color``."""
        fill = np.asarray(self.color, dtype=np.uint8)
        return [np.broadcast_to(fill, image.shape).copy() for image in crops.images]

    def anonymize_tensor(self, crops: FaceCrops):
        """:meth:`anonymize` on torch float (3, h, w) crops: one (N, 3, 1, 1) tensor of the colour, which
        the compositor up-scales to each crop (a constant stays exact)."""
        from streamer.stages import frame_ops

        device = crops.images[0].device if len(crops) else "cpu"
        fill = frame_ops.upload(np.array(self.color, np.float32), device)  # no wait for the GPU queue
        return fill.view(1, 3, 1, 1).expand(len(crops), 3, 1, 1)
