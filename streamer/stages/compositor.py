"""Composite stage: cut face crops, run the anonymizer, blend the result back.

Geometry, for a face box ``b`` (pixels):

* the anonymized region is the ellipse inscribed in ``b`` scaled by
  ``box_scale`` about its centre (1.5 by default, so the corners of ``b`` are
  inside the ellipse);
* the edge is feathered outwards over ``feather`` x the region size, so the
  whole ellipse is fully replaced and only pixels outside it are blended;
* the crop handed to the anonymizer is the region plus feather (classic
  modes) or a square ``context`` times the face size (the GAN), padded by edge
  replication where it leaves the frame.

Blending reads the frame at write time, so where faces overlap an earlier
face's anonymized pixels are never replaced by original ones.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.config import AnonymizerConfig
from streamer.detections import Detections
from streamer.stages.anonymizers import Anonymizer, Blur, FaceCrops, Mask, Pixelate

#: Masks are computed at most this many pixels across, then up-scaled.
_MASK_WORK_SIZE = 96


def classic_anonymizer(mode: str, config: AnonymizerConfig) -> Anonymizer:
    """Build the blur, pixelate or mask anonymizer from the config."""
    if mode == "blur":
        return Blur(strength=config.blur_strength)
    if mode == "pixelate":
        return Pixelate(blocks=config.pixelate_blocks)
    if mode == "mask":
        return Mask(color=tuple(int(c) for c in config.mask_color))
    raise ValueError(f"not a classic anonymizer mode: {mode!r}")


@dataclass
class Placement:
    """Where one face's crop sits in the frame.

    Attributes:
        x0, y0, x1, y1: the crop, integer pixels (``x1``, ``y1`` exclusive); may leave the frame.
        region: the ellipse's box in crop pixels (x1, y1, x2, y2).
        feather: width of the soft edge in pixels.
        changed: the part of the crop the anonymizer changes (x1, y1, x2, y2 crop
            pixels; the face box x its ``mask_scale``), or None for all of it.
            Only that part is blended back.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    region: np.ndarray
    feather: float
    changed: np.ndarray | None = None

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """The crop rectangle (x0, y0, x1, y1), pixels."""
        return self.x0, self.y0, self.x1, self.y1

    @property
    def width(self) -> int:
        """Crop width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Crop height in pixels."""
        return self.y1 - self.y0


def ellipse_mask_work(width: int, height: int, region: np.ndarray, feather: float,
                      changed: np.ndarray | None = None) -> np.ndarray:
    """The feathered ellipse mask of a ``width`` x ``height`` crop, drawn at most ``_MASK_WORK_SIZE`` across.

    With ``changed`` (crop pixels x1, y1, x2, y2) the mask is also cut to that
    rectangle: at crop size, to the pixels wholly inside it; when the mask is
    drawn smaller, to the work pixels whose neighbours' centres are inside it
    too, so the bilinear up-scaling never reaches a crop pixel outside it.
    :func:`feathered_ellipse_mask` up-scales it to the crop size (bilinear);
    the GPU compositor uploads this small mask and up-scales it there.
    """
    canvas, sigma = ellipse_canvas(width, height, region, feather)
    if sigma >= MIN_FEATHER_SIGMA:
        canvas = np.clip(2.0 * cv2.GaussianBlur(canvas, (0, 0), sigma), 0.0, 1.0)
    if changed is not None:
        r0, r1, c0, c1 = keep_box(changed, width, height, canvas.shape)
        inside = np.zeros(canvas.shape, np.float32)
        inside[r0:r1, c0:c1] = 1.0
        canvas *= inside
    return canvas


#: Feathering sigmas (work pixels) under this leave the drawn ellipse as it is.
MIN_FEATHER_SIGMA = 0.3


def ellipse_canvas(width: int, height: int, region: np.ndarray, feather: float) -> tuple[np.ndarray, float]:
    """The anti-aliased ellipse inscribed in ``region`` (crop pixels) of a ``width`` x ``height`` crop,
    drawn at most ``_MASK_WORK_SIZE`` across, not yet feathered, and the Gaussian sigma (work pixels)
    that feathers it (:func:`ellipse_mask_work`: blurred, doubled, clipped to 1)."""
    scale = max(1.0, max(width, height) / _MASK_WORK_SIZE)
    w, h = max(1, round(width / scale)), max(1, round(height / scale))
    canvas = np.zeros((h, w), np.float32)
    cx, cy = (region[0] + region[2]) / 2 / scale, (region[1] + region[3]) / 2 / scale
    ax, ay = (region[2] - region[0]) / 2 / scale, (region[3] - region[1]) / 2 / scale
    sub = 16  # cv2.ellipse takes fixed-point coordinates with 4 fractional bits
    cv2.ellipse(canvas, (round(cx * sub), round(cy * sub)), (max(1, round(ax * sub)), max(1, round(ay * sub))),
                0, 0, 360, 1.0, thickness=-1, lineType=cv2.LINE_AA, shift=4)
    return canvas, feather / scale / 2


def keep_box(changed: np.ndarray, width: int, height: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The rows ``r0:r1`` and columns ``c0:c1`` of a ``shape`` mask (drawn for a ``width`` x ``height``
    crop) that may be blended, the rest being 0: see :func:`ellipse_mask_work`."""
    x0, y0, x1, y1 = np.asarray(changed, np.float64)
    sx, sy = width / shape[1], height / shape[0]
    if (sx, sy) == (1.0, 1.0):  # first and last pixel wholly inside
        first, last = np.ceil([x0, y0]), np.floor([x1, y1]) - 1
    else:  # first and last work pixel whose outer neighbour's centre is still inside
        first = np.ceil([x0 / sx + 0.5, y0 / sy + 0.5])
        last = np.floor([x1 / sx - 1.5, y1 / sy - 1.5])
    (c0, r0), (c1, r1) = np.maximum(first, 0).astype(int), np.maximum(last + 1, 0).astype(int)
    return int(r0), int(r1), int(c0), int(c1)


def feathered_ellipse_mask(width: int, height: int, region: np.ndarray, feather: float,
                           changed: np.ndarray | None = None) -> np.ndarray:
    """Float32 (height, width) mask: 1 inside the ellipse inscribed in ``region``, fading to 0
    over ``feather`` pixels outside it; cut to the rectangle ``changed`` when given (crop pixels)."""
    canvas = ellipse_mask_work(width, height, region, feather, changed)
    if canvas.shape != (height, width):
        canvas = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_LINEAR)
    return canvas


def place_face(box: np.ndarray, config: AnonymizerConfig, context: float = 1.0,
               mask_scale: float | None = None) -> Placement:
    """Where the crop of face ``box`` (x1, y1, x2, y2 pixels) sits in the frame, for an anonymizer
    wanting ``context`` x the face size and changing the face box x ``mask_scale`` (None: the whole
    crop; see the module docstring for the geometry)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w = max(1.0, (box[2] - box[0]) / 2 * config.box_scale)
    half_h = max(1.0, (box[3] - box[1]) / 2 * config.box_scale)
    feather = config.feather * 2 * max(half_w, half_h)
    if context > 1.0:
        half = max(context * max(box[2] - box[0], box[3] - box[1]) / 2, max(half_w, half_h) + feather)
        half_w = half_h = half - feather
    x0, y0 = int(np.floor(cx - half_w - feather)), int(np.floor(cy - half_h - feather))
    x1, y1 = int(np.ceil(cx + half_w + feather)), int(np.ceil(cy + half_h + feather))
    # the ellipse always spans the scaled face box, whatever the crop size
    ew = (box[2] - box[0]) / 2 * config.box_scale
    eh = (box[3] - box[1]) / 2 * config.box_scale
    region = np.array([cx - ew - x0, cy - eh - y0, cx + ew - x0, cy + eh - y0], np.float32)
    changed = None
    if mask_scale is not None:
        mw, mh = (box[2] - box[0]) / 2 * mask_scale, (box[3] - box[1]) / 2 * mask_scale
        changed = np.array([cx - mw - x0, cy - mh - y0, cx + mw - x0, cy + mh - y0], np.float32)
    return Placement(x0, y0, x1, y1, region, feather, changed)


def face_in_crop(p: Placement, box: np.ndarray, keypoints: np.ndarray, input_size: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The face box (4,) and keypoints (5, 2) in the pixels of the crop ``p``, resized to
    ``input_size`` square when the anonymizer takes a fixed size."""
    offset = np.array([p.x0, p.y0], np.float32)
    face_box = (box.reshape(2, 2) - offset).reshape(4)
    face_kps = keypoints - offset
    if input_size:
        fx, fy = input_size / p.width, input_size / p.height
        face_box = face_box * np.array([fx, fy, fx, fy], np.float32)
        face_kps = face_kps * np.array([fx, fy], np.float32)
    return face_box, face_kps


class Compositor:
    """Anonymizes the faces of a frame in place.

    Args:
        config: anonymizer settings.
        anonymizer: the main anonymizer (defaults to the config's classic mode).
        fallback: used for faces the main anonymizer cannot take (too small
            for the GAN or without keypoints).
    """

    def __init__(self, config: AnonymizerConfig, anonymizer: Anonymizer | None = None,
                 fallback: Anonymizer | None = None) -> None:
        self.config = config
        self.anonymizer = anonymizer or classic_anonymizer(config.mode, config)
        self.fallback = fallback or classic_anonymizer(config.fallback_mode, config)

    def _needs_fallback(self, detections: Detections) -> np.ndarray:
        if self.anonymizer.input_size is None:
            return np.zeros(len(detections), bool)
        small = np.minimum(detections.widths, detections.heights) < self.config.min_gan_size
        return small | ~detections.has_keypoints

    def assign(self, detections: Detections) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the faces for the main anonymizer and for the fallback (applied in that order)."""
        fallback = self._needs_fallback(detections)
        return np.flatnonzero(~fallback), np.flatnonzero(fallback)

    def __call__(self, image: np.ndarray, detections: Detections) -> Counter:
        """Anonymize every face of ``detections`` in ``image`` (RGB uint8, modified in place).

        Returns how many faces each anonymizer handled, e.g. ``{'blur': 2}``.
        """
        counts: Counter = Counter()
        if not len(detections):
            return counts
        for anonymizer, selected in zip((self.anonymizer, self.fallback), self.assign(detections)):
            if len(selected):
                self._apply(image, detections[selected], anonymizer)
                counts[anonymizer.name] += len(selected)
        return counts

    @staticmethod
    def _cut(image: np.ndarray, p: Placement) -> np.ndarray:
        h, w = image.shape[:2]
        cx0, cy0, cx1, cy1 = max(p.x0, 0), max(p.y0, 0), min(p.x1, w), min(p.y1, h)
        crop = image[cy0:cy1, cx0:cx1]
        pads = (cy0 - p.y0, p.y1 - cy1, cx0 - p.x0, p.x1 - cx1)
        if any(pads):
            crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(crop)

    def _apply(self, image: np.ndarray, faces: Detections, anonymizer: Anonymizer) -> None:
        placements = [place_face(box, self.config, anonymizer.context, anonymizer.mask_scale)
                      for box in faces.xyxy]
        crops, boxes, keypoints = [], [], []
        for p, box, kps in zip(placements, faces.xyxy, faces.keypoints):
            crop = self._cut(image, p)
            if anonymizer.input_size:
                s = anonymizer.input_size
                crop = cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA)
            face_box, face_kps = face_in_crop(p, box, kps, anonymizer.input_size)
            crops.append(crop)
            boxes.append(face_box)
            keypoints.append(face_kps)
        batch = FaceCrops(images=crops, boxes=np.stack(boxes), keypoints=np.stack(keypoints),
                          track_ids=faces.track_ids)
        results = anonymizer.anonymize(batch)
        h, w = image.shape[:2]
        for p, result in zip(placements, results):
            cw, ch = p.width, p.height
            if result.shape[1] != cw or result.shape[0] != ch:
                result = cv2.resize(result, (cw, ch), interpolation=cv2.INTER_LINEAR)
            mask = feathered_ellipse_mask(cw, ch, p.region, p.feather, p.changed)
            cx0, cy0, cx1, cy1 = max(p.x0, 0), max(p.y0, 0), min(p.x1, w), min(p.y1, h)
            if cx1 <= cx0 or cy1 <= cy0:
                continue
            sub = (slice(cy0 - p.y0, cy1 - p.y0), slice(cx0 - p.x0, cx1 - p.x0))
            m = mask[sub][..., None]
            target = image[cy0:cy1, cx0:cx1]
            blended = target.astype(np.float32) * (1.0 - m) + result[sub].astype(np.float32) * m
            target[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
