"""Compositor and classic anonymizers."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from streamer.config import AnonymizerConfig
from streamer.detections import Detections
from streamer.sample import ASTRONAUT_FACE_BOX
from streamer.stages.compositor import Compositor, feathered_ellipse_mask

FACE = Detections(xyxy=[ASTRONAUT_FACE_BOX], scores=[0.9])


def _changed(before, after, box):
    x1, y1, x2, y2 = (int(v) for v in box)
    return np.abs(before[y1:y2, x1:x2].astype(int) - after[y1:y2, x1:x2].astype(int)).mean()


@pytest.mark.parametrize("mode", ["blur", "pixelate", "mask"])
def test_face_replaced_rest_untouched(mode):
    image = data.astronaut()
    out = image.copy()
    counts = Compositor(AnonymizerConfig(mode=mode))(out, FACE)
    assert counts == {mode: 1}
    assert _changed(image, out, ASTRONAUT_FACE_BOX) > 15
    assert np.array_equal(image[400:], out[400:])  # far from the face: bit-identical


def test_mask_covers_ellipse_fully():
    m = feathered_ellipse_mask(200, 200, np.array([50, 50, 150, 150], np.float32), feather=20)
    assert m[100, 100] == 1.0 and m[100, 52] == 1.0  # inside, even near the edge
    assert m[0, 0] == 0.0
    assert 0 < m[100, 40] < 1  # feathered outside


def test_blur_strength_grows_with_face_size():
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    small, large = image.copy(), image.copy()
    Compositor(AnonymizerConfig(mode="blur"))(small, Detections(xyxy=[[150, 150, 180, 180]], scores=[1]))
    Compositor(AnonymizerConfig(mode="blur"))(large, Detections(xyxy=[[100, 100, 300, 300]], scores=[1]))
    # a strong blur removes high-frequency detail: variance inside the core drops
    assert small[160:170, 160:170].std() < image[160:170, 160:170].std() / 2
    assert large[180:220, 180:220].std() < small[160:170, 160:170].std() + 5


def test_overlapping_faces_never_restore_original_pixels():
    image = data.astronaut()
    out = image.copy()
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    two = Detections(xyxy=[[x1, y1, x2, y2], [x1 + 30, y1 + 20, x2 + 30, y2 + 20]], scores=[0.9, 0.8])
    Compositor(AnonymizerConfig(mode="mask"))(out, two)
    cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
    assert out[cy - 10:cy + 10, cx - 10:cx + 10].max() == 0


def test_face_at_frame_border():
    image = data.astronaut()
    out = image.copy()
    Compositor(AnonymizerConfig(mode="pixelate"))(out, Detections(xyxy=[[-20, -30, 60, 70]], scores=[1]))
    assert _changed(image, out, [0, 0, 50, 60]) > 5
