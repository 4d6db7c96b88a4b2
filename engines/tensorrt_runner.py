"""TensorRT 10 backend: build an FP16 engine from ONNX, cache it, run it on torch CUDA tensors.

Written against the documented TensorRT 10 Python API (``Builder``,
``OnnxParser``, ``IBuilderConfig.set_memory_pool_limit``,
``build_serialized_network``, ``IExecutionContext.set_input_shape`` /
``set_tensor_address`` / ``execute_async_v3``). TensorRT is imported lazily,
so this module imports without it. No pycuda: PyTorch owns all CUDA memory
and streams; the runner binds ``tensor.data_ptr()`` of torch CUDA tensors and
enqueues on a torch stream's ``cuda_stream`` handle, with no host copies.

Models may take several inputs (the face generator: image, boxes, keypoints,
z): every optimization profile gives each input its own min/opt/max shape, and
the runner sets one shape and one address per input before each run.

NOT exercised in the workplace that wrote it (no GPU, no TensorRT): only the
pure-Python profile and cache-key helpers are tested there.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from engines.engine_cache import CacheKey, file_sha256, load_or_build
from engines.runner import Inputs, ordered_inputs
from streamer.errors import BackendError

log = logging.getLogger(__name__)

#: Default TensorRT builder workspace (bytes).
DEFAULT_WORKSPACE = 4 << 30


@dataclass(frozen=True)
class Profile:
    """Shape range of one input in a TensorRT optimization profile: min/opt/max shapes (batch first)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def contains(self, shape: tuple[int, ...]) -> bool:
        """True when every dimension of ``shape`` lies within [min, max]."""
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def text(self) -> str:
        """Canonical text, used in the cache key."""
        return f"{'x'.join(map(str, self.min))}:{'x'.join(map(str, self.opt))}:{'x'.join(map(str, self.max))}"


#: One optimization profile: a :class:`Profile` for a single-input model, or input name -> Profile.
EngineProfile = Union[Profile, Mapping[str, Profile]]


def _names(input_names: str | Sequence[str]) -> tuple[str, ...]:
    return (input_names,) if isinstance(input_names, str) else tuple(input_names)


def per_input(profile: EngineProfile, input_names: Sequence[str]) -> dict[str, Profile]:
    """``profile`` as input name -> Profile; a bare Profile is for a model with exactly one input."""
    if isinstance(profile, Profile):
        if len(input_names) != 1:
            raise BackendError(f"a single shape range given for a model with inputs {list(input_names)}")
        return {input_names[0]: profile}
    missing = [n for n in input_names if n not in profile]
    if missing:
        raise BackendError(f"optimization profile lacks the inputs {missing}")
    return {n: profile[n] for n in input_names}


def profile_text(profile: EngineProfile) -> str:
    """Canonical text of one optimization profile, used in the cache key.

    A single input's profile is its shape range alone (so single-input cache keys
    do not depend on the input name); several are ``name=range`` joined by commas.
    """
    if isinstance(profile, Profile):
        return profile.text()
    if len(profile) == 1:
        return next(iter(profile.values())).text()
    return ",".join(f"{name}={p.text()}" for name, p in profile.items())


def batch_profiles(spec, max_batch: int, opt_batch: int = 8) -> list[dict[str, Profile]]:
    """One profile for a fixed-size model ``spec``: every input at its spec shape, batch 1..max_batch."""
    opt = min(opt_batch, max_batch)
    return [{i.name: Profile((1, *i.shape), (opt, *i.shape), (max_batch, *i.shape)) for i in spec.inputs}]


def _round_up(v: float, multiple: int) -> int:
    return int(math.ceil(v / multiple) * multiple)


def detector_profiles(sizes: list[tuple[int, int]], max_batch: int, opt_batch: int = 8,
                      channels: int = 3) -> list[Profile]:
    """One profile per detector input size (W, H) in pixels: batch 1..max_batch, fixed H and W.

    Fixed spatial size per profile lets TensorRT pick its fastest kernels for
    the sizes the config will actually run.
    """
    return [Profile((1, channels, h, w), (min(opt_batch, max_batch), channels, h, w), (max_batch, channels, h, w))
            for w, h in sizes]


def detector_sizes_for_config(input_width: int, aspect_ratios: tuple[float, ...] = (16 / 9, 4 / 3),
                              multiple: int = 32) -> list[tuple[int, int]]:
    """Detector input sizes (W, H) the config's ``detector.input_width`` produces for common aspects."""
    if input_width <= 0:
        raise BackendError("detector.input_width 0 (native size) gives no fixed TensorRT profile; "
                           "pass --sizes WxH to `streamer engines build`")
    w = _round_up(input_width, multiple)
    return sorted({(w, _round_up(input_width / a, multiple)) for a in aspect_ratios})


def detector_profiles_for_config(input_width: int, max_batch: int) -> list[Profile]:
    """Profiles for ``detector.input_width``: fixed sizes for 16:9 and 4:3 frames, or, for native
    width (0), one dynamic profile from 32x32 up to 3840x2176 (optimized for 1920x1088)."""
    if input_width > 0:
        return detector_profiles(detector_sizes_for_config(input_width), max_batch)
    return [Profile((1, 3, 32, 32), (min(8, max_batch), 3, 1088, 1920), (max_batch, 3, 2176, 3840))]


def tensorrt_cache_key(onnx_path: str | os.PathLike, profiles: list[EngineProfile], precision: str = "fp16",
                       device: int = 0) -> CacheKey:
    """Cache key for building ``onnx_path`` with ``profiles`` on GPU ``device`` with this TensorRT."""
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return CacheKey(model_sha256=file_sha256(onnx_path), trt_version=trt.__version__,
                    gpu_name=torch.cuda.get_device_name(device), compute_capability=f"{major}.{minor}",
                    precision=precision, profile=";".join(profile_text(p) for p in profiles))


def build_serialized_engine(onnx_path: str | os.PathLike, input_names: str | Sequence[str],
                            profiles: list[EngineProfile], fp16: bool = True,
                            workspace: int = DEFAULT_WORKSPACE) -> bytes:
    """Parse ``onnx_path`` and build a serialized TensorRT engine (plan bytes) with ``profiles``.

    Every profile sets min/opt/max for each of ``input_names``; ``workspace`` is in bytes.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    names = _names(input_names)
    for p in profiles:
        profile = builder.create_optimization_profile()
        for name, r in per_input(p, names).items():
            profile.set_shape(name, r.min, r.opt, r.max)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(plan)


def build_cached_engine(onnx_path: str | os.PathLike, model: str, input_names: str | Sequence[str],
                        profiles: list[EngineProfile], cache_dir: str | os.PathLike,
                        fp16: bool = True) -> tuple[bytes, bool]:
    """Engine bytes for ``onnx_path`` from the cache, building it on a miss; (bytes, built_now)."""
    key = tensorrt_cache_key(onnx_path, profiles, "fp16" if fp16 else "fp32")
    return load_or_build(cache_dir, model, key,
                         lambda: build_serialized_engine(onnx_path, input_names, profiles, fp16))



class TensorRTRunner:
    """Runs a serialized TensorRT engine on torch CUDA tensors.

    Args:
        plan: serialized engine bytes.
        input_names: engine input tensor name(s), in the order inputs are passed.
        output_names: engine output names, in the order returned.
        stream: torch CUDA stream to enqueue on (default: the current stream).
    """

    backend = "tensorrt"

    def __init__(self, plan: bytes, input_names: str | Sequence[str], output_names: tuple[str, ...],
                 stream: "torch.cuda.Stream | None" = None) -> None:  # noqa: F821
        import tensorrt as trt
        import torch

        self._trt, self._torch = trt, torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError("TensorRT could not deserialize the cached engine")
        self.context = self.engine.create_execution_context()
        self.input_names = _names(input_names)
        self.output_names = tuple(output_names)
        self.stream = stream
        self._profile = 0
        self._profiles = [{name: Profile(*(tuple(d) for d in self.engine.get_tensor_profile_shape(name, i)))
                           for name in self.input_names} for i in range(self.engine.num_optimization_profiles)]

    def _torch_dtype(self, name: str):
        return {self._trt.DataType.FLOAT: self._torch.float32, self._trt.DataType.HALF: self._torch.float16,
                self._trt.DataType.INT32: self._torch.int32}[self.engine.get_tensor_dtype(name)]

    def _select_profile(self, shapes: dict[str, tuple[int, ...]], stream_handle: int) -> None:
        for i, ranges in enumerate(self._profiles):
            if all(r.contains(shapes[name]) for name, r in ranges.items()):
                if i != self._profile:
                    self.context.set_optimization_profile_async(i, stream_handle)
                    self._profile = i
                return
        known = "; ".join(profile_text(p) for p in self._profiles)
        raise BackendError(f"input shapes {shapes} are outside every optimization profile of the engine "
                           f"({known}); rebuild with `streamer engines build --sizes ...`")

    def run_tensor(self, *inputs: "torch.Tensor") -> tuple["torch.Tensor", ...]:  # noqa: F821
        """Run on CUDA tensors in ``input_names`` order (batch first); returns new CUDA tensors, enqueued
        on the stream."""
        torch = self._torch
        if len(inputs) != len(self.input_names):
            raise BackendError(f"{len(inputs)} inputs given, the engine takes {len(self.input_names)}")
        stream = self.stream or torch.cuda.current_stream()
        xs = [x.to("cuda", self._torch_dtype(name)).contiguous() for name, x in zip(self.input_names, inputs)]
        self._select_profile({name: tuple(x.shape) for name, x in zip(self.input_names, xs)}, stream.cuda_stream)
        for name, x in zip(self.input_names, xs):
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for name in self.output_names:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._torch_dtype(name),
                              device=xs[0].device)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed")
        for x in xs:
            x.record_stream(stream)
        return tuple(outs)

    def __call__(self, inputs: Inputs) -> list:
        """Run on float32 host inputs (one array, name -> array, or a tuple in input order); returns
        float32 host arrays."""
        import numpy as np

        xs = [self._torch.from_numpy(np.ascontiguousarray(v, np.float32)).pin_memory().cuda(non_blocking=True)
              for v in ordered_inputs(inputs, self.input_names)]
        return [o.float().cpu().numpy() for o in self.run_tensor(*xs)]


def tensorrt_runner_for(spec, profiles: list[EngineProfile], cache_dir: str | os.PathLike,
                        fp16: bool = True) -> TensorRTRunner:
    """Export ``spec`` to ONNX, load or build its TensorRT engine for ``profiles``, return a runner."""
    from engines.export import exported_onnx_path

    onnx_path = exported_onnx_path(spec, cache_dir)
    plan, built = build_cached_engine(onnx_path, spec.name, spec.input_names, profiles, cache_dir, fp16)
    log.info("TensorRT engine for %s %s", spec.name, "built and cached" if built else "loaded from cache")
    return TensorRTRunner(plan, spec.input_names, spec.output_names)
