"""Overlapping faces never bring original pixels back.

A context anonymizer (the GAN) returns its whole crop: the face box (x mask_scale) generated, the
rest the original context. Blending a later face's crop over an earlier, overlapping face must not
paste that context, i.e. the earlier face's original pixels, back over its anonymized box. This
happened in live tests when a coasting track box and a fresh detection of the same face overlapped:
the eyes came back between the two generated rectangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from skimage import data

from streamer.config import AnonymizerConfig
from streamer.detections import Detections
from streamer.sample import ASTRONAUT_FACE_BOX
from streamer.stages.anonymizers import FaceCrops
from streamer.stages.compositor import Compositor
from streamer.stages.torch_compositor import TorchCompositor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FILL = 255.0  # what the fake generator paints: far from the astronaut's skin


@dataclass
class FakeGenerator:
    """Behaves like the face generator: fills the face box x mask_scale, keeps the context."""

    name: str = "gan"
    context: float = 2.0
    input_size: int | None = 128
    mask_scale: float | None = 1.1

    def _fill(self, image, box) -> None:
        c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * self.mask_scale
        x0, y0 = np.floor(c - half).astype(int)
        x1, y1 = np.ceil(c + half).astype(int)
        image[..., y0:y1, x0:x1] = FILL

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        out = [c.copy() for c in crops.images]
        for image, box in zip(out, crops.boxes):
            self._fill(image.transpose(2, 0, 1), box)  # a (3, H, W) view of the (H, W, 3) copy
        return out

    def anonymize_tensor(self, crops: FaceCrops):
        out = crops.images.clone().float()
        for image, box in zip(out, crops.boxes):
            self._fill(image, box)
        return out


def _faces() -> Detections:
    """The astronaut's face (A) and a second box (B) shifted down so B's blend region covers A's eyes."""
    a = ASTRONAUT_FACE_BOX.astype(np.float32)
    b = a + np.array([6, 0.45 * (a[3] - a[1]), 6, 0.45 * (a[3] - a[1])], np.float32)
    kps = np.array([[208, 102], [243, 100], [226, 122], [211, 147], [240, 146]], np.float32)
    return Detections(xyxy=[a, b], scores=[0.9, 0.9], keypoints=[kps, kps + [6, 0.45 * (a[3] - a[1])]],
                      track_ids=[1, 2])


@pytest.mark.parametrize("device", DEVICES)
def test_a_later_face_does_not_paste_an_earlier_face_back(device):
    image = data.astronaut()
    faces = _faces()
    config = AnonymizerConfig(mode="gan")
    for compositor in (Compositor(config, anonymizer=FakeGenerator()),
                       TorchCompositor(config, device=device, anonymizer=FakeGenerator())):
        out = image.copy()
        assert compositor(out, faces) == {"gan": 2}
        for box in faces.xyxy:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            inside = out[y1 + 2:y2 - 2, x1 + 2:x2 - 2].astype(np.float32)  # the face box, 2 px in
            share = float((np.abs(inside - FILL) > 8).mean())
            assert share < 0.01, f"{type(compositor).__name__}: {share:.1%} of a face box is not anonymized"


@pytest.mark.parametrize("face", [14.0, 40.0, 300.0])  # the smallest gan face, a mask drawn at crop size, up-scaled
def test_blend_mask_stays_inside_the_changed_box_and_covers_the_face(face):
    from streamer.stages.compositor import feathered_ellipse_mask, place_face

    box = np.array([100.3, 80.6, 100.3 + face, 80.6 + face * 1.2], np.float32)
    p = place_face(box, AnonymizerConfig(), context=2.0, mask_scale=1.1)
    mask = feathered_ellipse_mask(p.width, p.height, p.region, p.feather, p.changed)
    x0, y0, x1, y1 = p.changed
    cols, rows = np.arange(p.width), np.arange(p.height)
    outside = ((cols[None] + 1 <= x0) | (cols[None] >= x1)) | ((rows[:, None] + 1 <= y0) | (rows[:, None] >= y1))
    assert mask[outside].max() == 0.0  # never a pixel the generator did not produce
    fx0, fy0 = np.floor(box[:2] - [p.x0, p.y0]).astype(int)
    fx1, fy1 = np.ceil(box[2:] - [p.x0, p.y0]).astype(int)
    assert mask[fy0:fy1, fx0:fx1].min() == 1.0  # every pixel touching the face box fully replaced
