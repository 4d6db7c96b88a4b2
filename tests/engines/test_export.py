"""ONNX export: validity (onnx.checker), dynamic axes, ORT vs PyTorch parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engines.export import CENTERFACE, ModelSpec, check_onnx, export_onnx, image_input, parity, relative_error
from engines.runner import OnnxRuntimeRunner
from streamer.errors import BackendError
from tests.engines.conftest import frame_batch, torch_outputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory, centerface_torch):
    path = tmp_path_factory.mktemp("onnx") / "centerface.onnx"
    model = export_onnx(CENTERFACE, path, centerface_torch)
    return path, model


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_export_is_valid_with_dynamic_batch_and_size(exported):
    path, model = exported
    check_onnx(path)
    assert [i.name for i in model.graph.input] == ["input"]
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == list(CENTERFACE.output_names)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize("batch,hw,seed", [(1, (64, 96), 11), (3, (128, 160), 12)])
def test_onnxruntime_matches_pytorch_on_random_inputs(exported, centerface_torch, batch, hw, seed):
    x = CENTERFACE.random_inputs(batch, hw, seed=seed)["input"]
    got = OnnxRuntimeRunner(str(exported[0]), "input", CENTERFACE.output_names, threads=2)(x)
    assert [g.shape[0] for g in got] == [batch] * 4
    assert max(parity(torch_outputs(centerface_torch, x), got)) < 1e-4


def test_onnxruntime_matches_pytorch_on_real_frames(exported, centerface_torch, real_frames):
    runner = OnnxRuntimeRunner(str(exported[0]), "input", CENTERFACE.output_names, threads=2)
    x = np.concatenate([frame_batch(f, (512, 288)) for f in real_frames])
    ref = torch_outputs(centerface_torch, x)
    assert ref[0].max() > 0.5
    assert max(parity(ref, runner(x))) < 1e-4


class _TinyGenerator(torch.nn.Module):
    """Stand-in for a fixed-size image-to-image model (like the face generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


def test_generic_fixed_size_model_exports_with_dynamic_batch_only(tmp_path):
    torch.manual_seed(0)
    module = _TinyGenerator().eval()
    spec = ModelSpec(name="tiny", build=lambda: module, inputs=(image_input("faces", 3, (32, 32), (-1.0, 1.0)),),
                     output_names=("out",))
    model = export_onnx(spec, tmp_path / "tiny.onnx")
    assert _dims(model.graph.input[0]) == ["batch", 3, 32, 32]
    x = spec.random_inputs(5, seed=3)["faces"]
    assert x.shape == (5, 3, 32, 32) and -1 <= x.min() and x.max() <= 1
    got = OnnxRuntimeRunner(str(tmp_path / "tiny.onnx"), "faces", ("out",), threads=1)(x)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert relative_error(got[0], ref) < 1e-4


def test_invalid_onnx_is_reported(tmp_path, exported):
    model = onnx.load(str(exported[0]))
    model.graph.node[0].input[0] = "no_such_tensor"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(BackendError, match="invalid"):
        check_onnx(tmp_path / "bad.onnx")


def test_centerface_random_inputs_are_uniform_images():
    x = CENTERFACE.random_inputs(2, (64, 96), seed=7)
    assert list(x) == ["input"] and CENTERFACE.input_names == ("input",)
    expected = np.random.default_rng(7).uniform(0, 255, (2, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(x["input"], expected)  # the same draws as before inputs had names
    assert CENTERFACE.example_hw == (384, 640) and CENTERFACE.dynamic_hw


def test_nan_never_passes_parity():
    b = np.ones(4, np.float32)
    assert relative_error(np.array([1, np.nan, 1, 1], np.float32), b) == float("inf")
    assert not relative_error(np.full(4, np.nan), np.full(4, np.nan)) < 1e-2
    assert relative_error(b * 1.00001, b) < 1e-4
