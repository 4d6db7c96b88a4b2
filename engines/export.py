"""ONNX export of the project's PyTorch models, with validity and parity checks.

Every exportable network is described by a :class:`ModelSpec`: how to build
the FP32 module, its named inputs (:class:`InputSpec`: shape, dtype, which
axes are dynamic, how to draw a realistic random example) and outputs. Export
is generic: :func:`export_onnx` takes any spec. Two models are registered:
the CenterFace detector (one image input; batch, H and W dynamic) and the face
generator (image, boxes, keypoints, z; batch dynamic, 128x128 fixed). The
batch axis is always dynamic.

The legacy TorchScript exporter (``dynamo=False``) is used: it needs no
``onnxscript`` and gives a plain Conv/ConvTranspose graph that TensorRT and
ONNX Runtime both parse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx
import torch
from torch import nn

from engines.engine_cache import file_sha256
from engines.generator.model import GeneratorConfig
from streamer.errors import BackendError

log = logging.getLogger(__name__)

#: ONNX opset used for export (TensorRT 10 and ONNX Runtime >= 1.14 support it).
DEFAULT_OPSET = 17

#: Draws one input: (rng, shape with batch, the inputs drawn before it, by name) -> array.
Sampler = Callable[[np.random.Generator, tuple[int, ...], Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class InputSpec:
    """One named network input.

    Attributes:
        name: ONNX input name.
        shape: shape without the batch axis; for an image (C, H, W) at the example size in pixels.
        dtype: NumPy dtype name of the input.
        value_range: (low, high) of realistic values; the default sampler draws uniformly from it.
        dynamic_hw: the last two axes (H, W) are dynamic in the exported graph.
        sample: draws realistic values when a uniform draw is not (e.g. boxes, keypoints,
            latents); it sees the inputs drawn before it, so keypoints can fall inside boxes.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    dynamic_hw: bool = False
    sample: Sampler | None = None

    def dynamic_axes(self) -> dict[int, str]:
        """Axis -> name for torch.onnx.export: batch always, the last two when ``dynamic_hw``."""
        axes = {0: "batch"}
        if self.dynamic_hw:
            rank = len(self.shape) + 1
            axes.update({rank - 2: "height", rank - 1: "width"})
        return axes

    def random(self, rng: np.random.Generator, batch: int, hw: tuple[int, int] | None = None,
               drawn: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """A (batch, *shape) array of realistic values; ``hw`` (pixels) replaces H, W when dynamic."""
        shape = (batch, *self.shape)
        if hw is not None and self.dynamic_hw:
            shape = (*shape[:-2], *hw)
        if self.sample is not None:
            values = self.sample(rng, shape, drawn or {})
        else:
            values = rng.uniform(*self.value_range, shape)
        return np.asarray(values, dtype=self.dtype)


@dataclass(frozen=True)
class ModelSpec:
    """How to build, feed and export one network.

    Attributes:
        name: registry name (``centerface``, ``generator``).
        build: returns the FP32 module on CPU in eval mode, weights loaded; the
            module's ``forward`` takes the inputs positionally in ``inputs`` order.
        inputs: the named inputs, in ``forward`` order; the first one is the image.
        output_names: ONNX output names, in the module's output order.
        size_multiple: dynamic H and W must be multiples of this (pixels).
        weights_file: returns the file whose hash identifies the weights, or
            None when there is none and ``build`` gives random weights.
        random_weights_note: what ``build`` does without a weights file (shown to users).
    """

    name: str
    build: Callable[[], nn.Module]
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    size_multiple: int = 1
    weights_file: Callable[[], Path | None] | None = field(default=None)
    random_weights_note: str = "no weights file"

    @property
    def input_names(self) -> tuple[str, ...]:
        """ONNX input names, in ``forward`` order."""
        return tuple(i.name for i in self.inputs)

    @property
    def dynamic_hw(self) -> bool:
        """Whether any input (and so the outputs) has dynamic H and W."""
        return any(i.dynamic_hw for i in self.inputs)

    @property
    def example_hw(self) -> tuple[int, int]:
        """(H, W) in pixels of the image input (the first) used for tracing and parity checks."""
        h, w = self.inputs[0].shape[-2:]
        return h, w

    def random_inputs(self, batch: int, hw: tuple[int, int] | None = None,
                      seed: int | None = None) -> dict[str, np.ndarray]:
        """Realistic random inputs, name -> (batch, ...) array, in ``inputs`` order.

        ``hw`` (pixels) sets H and W of dynamic-size inputs (default ``example_hw``).
        """
        rng = np.random.default_rng(seed)
        drawn: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            drawn[spec.name] = spec.random(rng, batch, hw, drawn)
        return drawn

    def weights_path(self) -> Path | None:
        """The weights file when there is one on disk, else None (``build`` gives random weights)."""
        path = self.weights_file() if self.weights_file else None
        return Path(path) if path is not None and Path(path).is_file() else None

    def weights_source(self) -> str:
        """For users: ``file <path>``, or ``RANDOM (<why>)`` when ``build`` gives random weights."""
        path = self.weights_path()
        return f"file {path}" if path else f"RANDOM ({self.random_weights_note})"


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


def image_input(name: str, channels: int, hw: tuple[int, int], value_range: tuple[float, float],
                dynamic_hw: bool = False) -> InputSpec:
    """A float32 (C, H, W) image input of ``hw`` (H, W) pixels, values uniform in ``value_range``."""
    return InputSpec(name, (channels, *hw), value_range=value_range, dynamic_hw=dynamic_hw)


# ---------------------------------------------------------------- CenterFace

def _build_centerface() -> nn.Module:
    from engines.centerface_torch import load_centerface_torch

    return load_centerface_torch()


def _centerface_file() -> Path:
    from engines.centerface_onnx import centerface_onnx_path

    return centerface_onnx_path()


CENTERFACE = register_model(ModelSpec(
    name="centerface", build=_build_centerface,
    inputs=(image_input("input", 3, (384, 640), (0.0, 255.0), dynamic_hw=True),),
    output_names=("heatmap", "scale", "offset", "landmarks"), size_multiple=32, weights_file=_centerface_file,
))


# ---------------------------------------------------------------- face generator

#: Seed of the random generator weights used when no weights file exists (benchmarks, export tests).
GENERATOR_RANDOM_SEED = 0
#: Crop side (pixels) and latent size of the registered generator: ``GeneratorConfig``'s defaults.
GENERATOR_SIZE, GENERATOR_Z_DIM = GeneratorConfig.size, GeneratorConfig.z_dim
#: Share of keypoints drawn as NaN ("unknown"; the generator leaves their maps empty).
UNKNOWN_KEYPOINT_RATE = 0.1


def _generator_file() -> Path | None:
    from engines.generator import weights_path

    path = weights_path()
    return path if path.is_file() else None


def _build_generator() -> nn.Module:
    """The generator from its weights file, else a ``GeneratorConfig()`` one with fixed-seed random weights."""
    from engines.generator.model import load_generator, random_generator

    path = _generator_file()
    if path is None:
        log.warning("no face-generator weights file: using random weights (seed %d)", GENERATOR_RANDOM_SEED)
        return random_generator(GENERATOR_RANDOM_SEED)
    model, info = load_generator(path)
    if (info.config.size, info.config.z_dim) != (GENERATOR_SIZE, GENERATOR_Z_DIM):
        raise BackendError(f"{path}: crop {info.config.size} px, z_dim {info.config.z_dim}; the registered "
                           f"generator spec is {GENERATOR_SIZE} px, z_dim {GENERATOR_Z_DIM}")
    return model


def _sample_boxes(rng: np.random.Generator, shape: tuple[int, ...], drawn: Mapping[str, np.ndarray]) -> np.ndarray:
    """Face boxes (N, 4) x1, y1, x2, y2 in crop pixels: sides 40-60 % of the crop, centre near the middle."""
    n, s = shape[0], GENERATOR_SIZE
    centre = s / 2 + rng.uniform(-s / 16, s / 16, (n, 2))
    half = s / 4 * rng.uniform(0.8, 1.2, (n, 2))
    return np.concatenate([centre - half, centre + half], axis=1)


def _sample_keypoints(rng: np.random.Generator, shape: tuple[int, ...],
                      drawn: Mapping[str, np.ndarray]) -> np.ndarray:
    """Keypoints (N, 5, 2) in crop pixels, inside each face box (20-80 % of its sides), some NaN (unknown)."""
    boxes = drawn["boxes"].astype(np.float64)
    lo, size = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    keypoints = lo + rng.uniform(0.2, 0.8, shape) * size
    keypoints[rng.random(shape[:2]) < UNKNOWN_KEYPOINT_RATE] = np.nan
    return keypoints


def _sample_normal(rng: np.random.Generator, shape: tuple[int, ...], drawn: Mapping[str, np.ndarray]) -> np.ndarray:
    """Standard normal latents."""
    return rng.standard_normal(shape)


GENERATOR = register_model(ModelSpec(
    name="generator", build=_build_generator,
    inputs=(image_input("image", 3, (GENERATOR_SIZE, GENERATOR_SIZE), (-1.0, 1.0)),
            InputSpec("boxes", (4,), value_range=(0.0, GENERATOR_SIZE), sample=_sample_boxes),
            InputSpec("keypoints", (5, 2), value_range=(0.0, GENERATOR_SIZE), sample=_sample_keypoints),
            InputSpec("z", (GENERATOR_Z_DIM,), value_range=(-4.0, 4.0), sample=_sample_normal)),
    output_names=("face",), weights_file=_generator_file,
    random_weights_note=f"no weights file; GeneratorConfig() initialised with seed {GENERATOR_RANDOM_SEED}",
))


def generator_spec(mask_scale: float | None = None) -> ModelSpec:
    """The generator's spec, blacking out and regenerating the face box x ``mask_scale`` (pixels scale).

    ``mask_scale`` is traced into the exported graph, so a value other than the
    weights' own gives a spec of its own name (``generator-mask1.3``), hence
    its own ONNX export and TensorRT engine in the cache. None, or the value
    the weights were trained with, gives :data:`GENERATOR` itself.
    """
    if mask_scale is None:
        return GENERATOR
    mask_scale = float(mask_scale)

    def build() -> nn.Module:
        model = _build_generator()
        model.config = replace(model.config, mask_scale=mask_scale)
        return model

    if abs(_trained_mask_scale() - mask_scale) < 1e-9:
        return GENERATOR
    return replace(GENERATOR, name=f"generator-mask{mask_scale:g}", build=build)


def _trained_mask_scale() -> float:
    """The mask scale the generator's weights were trained with (``GeneratorConfig()``'s without a file)."""
    from engines.generator.model import GeneratorConfig, read_generator_info

    path = _generator_file()
    return float((read_generator_info(path).config if path else GeneratorConfig()).mask_scale)


def dynamic_axes(spec: ModelSpec) -> dict[str, dict[int, str]]:
    """The ``dynamic_axes`` mapping for torch.onnx.export: batch always, H/W where the spec says so.

    Outputs are taken as (N, C, H, W) maps whose H/W are dynamic when any input's are.
    """
    out = {0: "batch", 2: "out_height", 3: "out_width"} if spec.dynamic_hw else {0: "batch"}
    return {**{i.name: i.dynamic_axes() for i in spec.inputs}, **{name: dict(out) for name in spec.output_names}}


def as_tensors(spec: ModelSpec, inputs: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """``inputs`` (name -> array) as CPU tensors in the spec's ``forward`` order."""
    return tuple(torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in spec.input_names)


def reference_outputs(spec: ModelSpec, module: nn.Module, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run the FP32 PyTorch ``module`` on ``inputs`` (name -> array); NumPy outputs in output order."""
    with torch.no_grad():
        out = module(*as_tensors(spec, inputs))
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_tag(spec: ModelSpec, module: nn.Module | None = None) -> str:
    """Short tag identifying the weights ``spec.build()`` loads (file names of exports, cache keys).

    The weights file's SHA-256 prefix, or ``random-`` plus the state dict's
    hash when there is no file, so random and trained weights never share an export.
    """
    path = spec.weights_path()
    if path is not None:
        return file_sha256(path)[:12]
    return "random-" + state_dict_sha256(module if module is not None else spec.build())[:12]


def export_onnx(spec: ModelSpec, path: str | os.PathLike, module: nn.Module | None = None,
                opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``module`` (default: ``spec.build()``) to ``path`` and validate it with onnx.checker.

    Traced on a random batch of 2 at ``spec.example_hw``. The file is written
    atomically (temp file in the same folder, then ``os.replace``), so a reader
    never sees a half-written model. Returns the loaded, checked model.
    """
    module = (module or spec.build()).eval().float().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = as_tensors(spec, spec.random_inputs(2, seed=0))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, tmp, dynamo=False, opset_version=opset,
                              input_names=list(spec.input_names), output_names=list(spec.output_names),
                              dynamic_axes=dynamic_axes(spec), do_constant_folding=True)
        model = check_onnx(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model


def exported_onnx_path(spec: ModelSpec, cache_dir: str | os.PathLike) -> Path:
    """ONNX export of ``spec`` inside ``cache_dir``, exported now if missing.

    The file name carries :func:`engines.export.weights_tag` (the weights file's
    hash, or ``random-<state dict hash>`` for random weights), so new weights
    give a new ONNX file and therefore a new engine cache key.
    """
    module = None if spec.weights_path() else spec.build()  # random weights: hashed, then exported
    path = Path(cache_dir) / f"{spec.name}-{weights_tag(spec, module)}.onnx"
    if not path.exists():
        log.info("exporting %s to ONNX (once per model and weights file): %s", spec.name, path)
        export_onnx(spec, path, module)
    return path


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
