"""Generator architecture, conditioning and weights I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.generator.model import (Discriminator, Generator, GeneratorConfig, count_parameters, face_mask,
                                     keypoint_maps, load_generator)

from .conftest import random_generator


def _batch(n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, 128, 128, generator=g) * 2 - 1
    boxes = torch.tensor([[32.0, 30.0, 96.0, 98.0]] * n)
    kps = torch.tensor([[[50.0, 55.0], [78.0, 55.0], [64.0, 70.0], [52.0, 85.0], [76.0, 85.0]]] * n)
    z = torch.randn(n, 64, generator=g)
    return image, boxes, kps, z


def test_full_generator_has_10_to_15_m_parameters_and_keeps_the_shape():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig())
    assert 10e6 <= count_parameters(g) <= 15e6
    d = Discriminator(GeneratorConfig())
    assert d.stem[0].in_channels == 3 + 3 + 1 + 5  # image, masked crop, mask, keypoint maps
    image, boxes, kps, z = _batch(1)
    with torch.no_grad():
        out = g(image, boxes, kps, z)
        assert out.shape == (1, 3, 128, 128)
        assert d(out, image, boxes, kps).shape == (1,)


def test_a_fresh_discriminator_tells_its_inputs_apart():
    # with PyTorch's default initialisation the logits varied by 4e-7 across a batch: a discriminator that
    # outputs 0 for every face gives the generator no adversarial signal (the 2026-11-26 run's D loss sat at 2 ln 2)
    torch.manual_seed(0)
    d = Discriminator(GeneratorConfig())
    image, boxes, kps, _ = _batch(8)
    crops = (image * 0.1 + torch.linspace(-0.9, 0.9, 8)[:, None, None, None]).clamp(-1, 1)  # dark to bright
    with torch.no_grad():
        logits = d(crops, crops, boxes, kps)
    assert logits.std() > 0.05, f"logits vary by only {float(logits.std()):.2g} across 8 crops, dark to bright"


def test_generator_never_sees_the_original_face():
    g = random_generator(z_dim=64)
    image, boxes, kps, z = _batch(1)
    changed = image.clone()
    changed[:, :, 30:98, 32:96] = torch.rand(1, 3, 68, 64) * 2 - 1  # every pixel of the face box
    outside = image.clone()
    outside[:, :, :20, :20] = -image[:, :, :20, :20]
    with torch.no_grad():
        a, b, c = g(image, boxes, kps, z), g(changed, boxes, kps, z), g(outside, boxes, kps, z)
    assert torch.equal(a, b), "output depends on pixels inside the face box"
    assert not torch.equal(a, c), "output ignores the context (test is not sensitive)"


def test_pixels_outside_the_mask_are_the_input():
    g = random_generator(z_dim=64)
    image, boxes, kps, z = _batch(1)
    with torch.no_grad():
        out = g(image, boxes, kps, z)
    mask = face_mask(boxes, 128, g.config.mask_scale)
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    assert (out - image).abs()[mask.expand_as(out) > 0].mean() > 0.05


def test_face_mask_covers_every_pixel_the_box_touches():
    m = face_mask(torch.tensor([[10.5, 20.2, 30.7, 40.0]]), 64, 1.0)[0, 0]
    ys, xs = np.nonzero(m.numpy())
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 30, 20, 39)


def test_keypoint_maps_are_one_hot_and_empty_when_unknown():
    kps = torch.tensor([[[10.0, 20.0], [np.nan, np.nan], [127.9, 0.0], [-1.0, 5.0], [64.0, 64.0]]])
    maps = keypoint_maps(kps, 128, 32)
    assert maps.shape == (1, 5, 32, 32)
    assert maps[0, 0, 5, 2] == 1 and maps[0, 2, 0, 31] == 1 and maps[0, 4, 16, 16] == 1
    assert maps.sum(dim=(2, 3)).tolist() == [[1, 0, 1, 0, 1]]


def test_weights_round_trip_in_fp16(weights_file):
    g, info = load_generator(weights_file)
    assert info.config.channels == (8, 16, 16, 32, 32, 32)
    reference = random_generator()
    for (k, a), (_, b) in zip(g.state_dict().items(), reference.state_dict().items()):
        assert torch.allclose(a, b.half().float()), k
    assert weights_file.stat().st_size < 2e6


def test_loading_a_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a streamer face-generator"):
        load_generator(path)
