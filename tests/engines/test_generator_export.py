"""The face generator as a registered model: realistic inputs, ONNX export, ORT vs PyTorch parity, weights tag."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engines.export import (GENERATOR, GENERATOR_SIZE, GENERATOR_Z_DIM, MODELS, check_onnx, export_onnx, parity,
                            reference_outputs, weights_tag)
from engines.generator import WEIGHTS_ENV
from engines.generator.model import GeneratorConfig, GeneratorInfo, save_generator
from engines.runner import OnnxRuntimeRunner
from streamer.errors import BackendError
from tests.generator.conftest import SMALL, random_generator


@pytest.fixture(scope="module")
def generator_module():
    """The registered generator as ``GENERATOR.build()`` gives it (the shipped weights, random without them)."""
    return GENERATOR.build()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, generator_module):
    path = tmp_path_factory.mktemp("onnx") / "generator.onnx"
    return path, export_onnx(GENERATOR, path, generator_module)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_registered_with_four_named_inputs():
    assert MODELS["generator"] is GENERATOR
    assert GENERATOR.input_names == ("image", "boxes", "keypoints", "z")
    assert GENERATOR.example_hw == (GENERATOR_SIZE, GENERATOR_SIZE) and not GENERATOR.dynamic_hw


def test_random_inputs_are_realistic():
    x = GENERATOR.random_inputs(64, seed=3)
    assert {k: v.shape for k, v in x.items()} == {"image": (64, 3, 128, 128), "boxes": (64, 4),
                                                  "keypoints": (64, 5, 2), "z": (64, GENERATOR_Z_DIM)}
    assert all(v.dtype == np.float32 for v in x.values())
    assert -1 <= x["image"].min() and x["image"].max() <= 1
    boxes, kps = x["boxes"], x["keypoints"]
    sides = boxes[:, 2:] - boxes[:, :2]
    assert (boxes >= 0).all() and (boxes <= GENERATOR_SIZE).all()
    assert (sides >= 0.39 * GENERATOR_SIZE).all() and (sides <= 0.61 * GENERATOR_SIZE).all()  # about the middle half
    known = ~np.isnan(kps).any(-1)
    assert 0 < (~known).sum() < known.sum()  # some keypoints unknown (NaN), most known
    inside = (kps >= boxes[:, None, :2]) & (kps <= boxes[:, None, 2:])
    assert inside.all(-1)[known].all()
    assert abs(x["z"].mean()) < 0.05 and abs(x["z"].std() - 1) < 0.05
    again = GENERATOR.random_inputs(64, seed=3)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(x.values(), again.values()))


def test_export_is_valid_with_dynamic_batch(exported):
    path, model = exported
    check_onnx(path)
    assert {i.name: _dims(i) for i in model.graph.input} == {
        "image": ["batch", 3, 128, 128], "boxes": ["batch", 4], "keypoints": ["batch", 5, 2],
        "z": ["batch", GENERATOR_Z_DIM]}
    assert [o.name for o in model.graph.output] == ["face"]
    assert _dims(model.graph.output[0]) == ["batch", 3, 128, 128]
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("batch,seed,unknown_face", [(1, 21, None), (3, 22, 1)])
def test_onnxruntime_matches_pytorch_on_random_inputs(exported, generator_module, batch, seed, unknown_face):
    x = GENERATOR.random_inputs(batch, seed=seed)
    if unknown_face is not None:
        x["keypoints"][unknown_face] = np.nan  # a face whose keypoints are all unknown
    runner = OnnxRuntimeRunner(str(exported[0]), GENERATOR.input_names, GENERATOR.output_names, threads=2)
    got = runner(x)
    ref = reference_outputs(GENERATOR, generator_module, x)
    assert got[0].shape == (batch, 3, 128, 128)
    assert max(parity(ref, got)) < 1e-4
    assert max(parity(ref, runner(tuple(x.values())))) < 1e-4  # inputs by position, in spec order


def test_random_weights_are_fixed_and_tagged(generator_module, monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.safetensors"))
    assert GENERATOR.weights_path() is None and GENERATOR.weights_source().startswith("RANDOM")
    tag = weights_tag(GENERATOR)
    assert tag.startswith("random-") and tag == weights_tag(GENERATOR, GENERATOR.build())
    before = torch.random.get_rng_state()
    GENERATOR.build()
    assert torch.equal(before, torch.random.get_rng_state())  # the fixed seed does not touch the global RNG


def test_weights_file_is_used_and_changes_the_tag(monkeypatch, tmp_path):
    path = tmp_path / "generator.safetensors"
    save_generator(random_generator(), path, GeneratorInfo(GeneratorConfig(**SMALL)))
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    assert GENERATOR.weights_path() == path and GENERATOR.weights_source() == f"file {path}"
    tag = weights_tag(GENERATOR)
    assert not tag.startswith("random-") and len(tag) == 12
    assert GENERATOR.build().config.channels == SMALL["channels"]

    save_generator(random_generator(z_dim=32), path, GeneratorInfo(GeneratorConfig(**{**SMALL, "z_dim": 32})))
    assert weights_tag(GENERATOR) != tag
    with pytest.raises(BackendError, match="z_dim 32"):
        GENERATOR.build()
