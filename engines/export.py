"""ONNX export of the project's PyTorch models, with validity and parity checks.

Every exportable network is described by a :class:`ModelSpec` (how to build
the FP32 module, input/output names, which axes are dynamic). Export is
generic: :func:`export_onnx` takes any spec, so the face generator plugs in
with :func:`register_model` without changes here. The batch axis is always
dynamic; the spatial axes are dynamic when ``spec.dynamic_hw`` (the detector).

The legacy TorchScript exporter (``dynamo=False``) is used: it needs no
``onnxscript`` and gives a plain Conv/ConvTranspose graph that TensorRT and
ONNX Runtime both parse.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from streamer.errors import BackendError

#: ONNX opset used for export (TensorRT 10 and ONNX Runtime >= 1.14 support it).
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ModelSpec:
    """How to build, feed and export one network.

    Attributes:
        name: registry name (``centerface``, ``generator``).
        build: returns the FP32 module on CPU in eval mode, weights loaded.
        input_name: ONNX input name.
        output_names: ONNX output names, in the module's output order.
        channels: input channels.
        example_hw: (H, W) in pixels used for tracing and parity checks.
        dynamic_hw: whether H and W are dynamic in the exported graph.
        size_multiple: H and W must be multiples of this (pixels).
        value_range: (low, high) of the input values, for random test inputs.
        weights_file: file whose hash identifies the weights (engine cache key).
    """

    name: str
    build: Callable[[], nn.Module]
    input_name: str
    output_names: tuple[str, ...]
    channels: int
    example_hw: tuple[int, int]
    dynamic_hw: bool
    size_multiple: int = 1
    value_range: tuple[float, float] = (0.0, 1.0)
    weights_file: Callable[[], Path] | None = field(default=None)

    def random_input(self, batch: int, hw: tuple[int, int] | None = None, seed: int | None = None) -> np.ndarray:
        """Uniform random float32 input (batch, channels, H, W) within ``value_range``."""
        h, w = hw or self.example_hw
        low, high = self.value_range
        return np.random.default_rng(seed).uniform(low, high, (batch, self.channels, h, w)).astype(np.float32)


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry used by the CLI and benchmarks; returns it."""
    MODELS[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    """Look up a registered model by name; BackendError listing the known names otherwise."""
    if name not in MODELS:
        raise BackendError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def _build_centerface() -> nn.Module:
    from engines.centerface_torch import load_centerface_torch

    return load_centerface_torch()


def _centerface_file() -> Path:
    from engines.centerface_onnx import centerface_onnx_path

    return centerface_onnx_path()


CENTERFACE = register_model(ModelSpec(
    name="centerface", build=_build_centerface, input_name="input",
    output_names=("heatmap", "scale", "offset", "landmarks"), channels=3, example_hw=(384, 640),
    dynamic_hw=True, size_multiple=32, value_range=(0.0, 255.0), weights_file=_centerface_file,
))


def dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    """The ``dynamic_axes`` mapping for torch.onnx.export: batch always, H/W when ``spec.dynamic_hw``."""
    inp = {0: "batch", 2: "height", 3: "width"} if spec.dynamic_hw else {0: "batch"}
    out = {0: "batch", 2: "out_height", 3: "out_width"} if spec.dynamic_hw else {0: "batch"}
    return {spec.input_name: inp, **{name: dict(out) for name in spec.output_names}}


def export_onnx(spec: ModelSpec, path: str | os.PathLike, module: nn.Module | None = None,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``module`` (default: ``spec.build()``) to ``path`` and validate it with onnx.checker.

    The file is written atomically (temp file in the same folder, then
    ``os.replace``), so a reader never sees a half-written model. Returns the
    loaded, checked model.
    """
    module = (module or spec.build()).eval().float().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(spec.random_input(2, seed=0))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=[spec.input_name], output_names=list(spec.output_names),
                              dynamic_axes=dynamic_axes(spec), do_constant_folding=True)
        model = check_onnx(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model


def check_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load ``path`` and run ``onnx.checker`` (full check with shape inference); returns the model."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise BackendError(f"exported ONNX model {path} is invalid: {exc}") from None
    return model


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| (Frobenius); inf when either holds NaN/inf, 0 when both are zero."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf")
    denom = np.linalg.norm(b)
    diff = np.linalg.norm(a - b)
    return float(diff / denom) if denom > 0 else (0.0 if diff == 0 else float("inf"))


def parity(reference: list[np.ndarray], candidate: list[np.ndarray]) -> list[float]:
    """Relative error of each candidate output against the reference, in output order."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} outputs vs {len(reference)} in the reference")
    return [relative_error(c, r) for r, c in zip(reference, candidate)]
