"""GAN anonymizer: every face replaced by a generated one that never saw the original.

The compositor cuts a square crop of ``context`` (2.0) x the face size around
each face, resizes it to 128 px and calls :meth:`GanAnonymizer.anonymize`;
the generator blacks out the face box (times ``mask_scale``) itself, so the
original face never reaches it, and the compositor blends back only that
generated box (``mask_scale``), inside the feathered ellipse over the face.

One identity per person: the latent z of a face is drawn from a generator
seeded by ``(seed, track_id)``, so a tracked person keeps the same fake face
on every frame and two tracks get different ones (DeepPrivacy2 seeds z per
track the same way). Untracked faces (track id -1) get a fresh z per call.

Precision: FP16 on CUDA (TensorRT or PyTorch), FP32 on the CPU (ONNX Runtime
by default: 1.4-1.7x faster per face than PyTorch on 2 cores,
``benchmarks/results/engines-generator-cpu-2026-11-26.md``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from streamer.stages.anonymizers import FaceCrops

if TYPE_CHECKING:
    from engines.generator.model import GeneratorConfig
    from engines.runner import Runner

log = logging.getLogger(__name__)


#: Largest batch (faces) of the generator's TensorRT engine.
GENERATOR_ENGINE_MAX_BATCH = 64


def generator_engine_plan(mask_scale: float | None, max_batch: int | None = None) -> tuple:
    """(spec, TensorRT profiles) of the generator regenerating the face box x ``mask_scale``, for
    batches of 1 to ``max_batch`` faces (default :data:`GENERATOR_ENGINE_MAX_BATCH`)."""
    from engines.export import generator_spec
    from engines.tensorrt_runner import batch_profiles

    spec = generator_spec(mask_scale)
    return spec, batch_profiles(spec, max_batch or GENERATOR_ENGINE_MAX_BATCH)


def track_latent(track_id: int, z_dim: int, seed: int = 0) -> np.ndarray:
    """The latent (z_dim,) float32 of a track: the same for the same (seed, track id)."""
    return np.random.default_rng([seed, int(track_id)]).standard_normal(z_dim).astype(np.float32)


class GanAnonymizer:
    """Anonymizer (see :class:`streamer.stages.anonymizers.Anonymizer`) backed by the face generator.

    The generator runs through an engines runner, like the detector, so the
    stage does not know the backend: a TensorRT FP16 engine, PyTorch CUDA
    FP16 with CUDA graphs, or on the CPU ONNX Runtime (the measured-faster
    CPU runtime) or PyTorch FP32 (:func:`build_gan_anonymizer` chooses).

    Args:
        runner: runs the generator: inputs ``image`` (N, 3, S, S) in [-1, 1],
            ``boxes`` (N, 4) and ``keypoints`` (N, 5, 2) in crop pixels, ``z``
            (N, z_dim); output the (N, 3, S, S) crop in [-1, 1]. Runners with
            ``run_tensor`` get device tensors, others host arrays.
        config: the generator's geometry (crop size, context, z_dim).
        seed: mixed into every track's latent (change it to get other fake identities).
        batch_size: faces per generator call.
    """

    name = "gan"

    def __init__(self, runner: Runner, config: GeneratorConfig, seed: int = 0, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.runner = runner
        self.backend = runner.backend
        self.config = config
        self.context = float(config.context)
        self.input_size = int(config.size)
        self.mask_scale = float(config.mask_scale)  # the generator replaces only the face box x this
        self.seed = seed
        self.batch_size = batch_size
        self._run_tensor = getattr(runner, "run_tensor", None)
        self._rng = np.random.default_rng([seed, 2**31])

    @classmethod
    def from_module(cls, generator, device: str = "cpu", seed: int = 0, batch_size: int = 32,
                    threads: int = 0) -> "GanAnonymizer":
        """Run an in-memory :class:`engines.generator.model.Generator` with PyTorch on ``device``
        (FP16 and CUDA graphs on CUDA, FP32 with ``threads`` CPU threads on the CPU)."""
        from engines.export import GENERATOR
        from engines.torch_runner import TorchRunner

        cuda = str(device).startswith("cuda")
        # faces per call vary from frame to frame: every bucket up to a full batch is captured at the first
        # call (the network is small), none in the middle of a stream
        runner = TorchRunner(generator, device, cuda_graphs=cuda, threads=0 if cuda else threads,
                             input_names=GENERATOR.input_names, prepare_up_to=batch_size if cuda else 0,
                             name="face generator")
        return cls(runner, generator.config, seed=seed, batch_size=batch_size)

    def latents(self, track_ids: np.ndarray) -> np.ndarray:
        """(N, z_dim) latents: seeded per track id, random for untracked faces (-1)."""
        z_dim = self.config.z_dim
        return np.stack([track_latent(t, z_dim, self.seed) if t >= 0
                         else self._rng.standard_normal(z_dim).astype(np.float32) for t in track_ids])

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """Generate a face into each crop (RGB uint8, ``input_size`` square); same shapes out."""
        import torch

        if not len(crops):
            return []
        images = torch.from_numpy(np.stack(crops.images)).permute(0, 3, 1, 2)
        faces = self.anonymize_tensor(FaceCrops(images=images, boxes=crops.boxes, keypoints=crops.keypoints,
                                                track_ids=crops.track_ids))
        return list(faces.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())

    def anonymize_tensor(self, crops: FaceCrops):
        """Generate a face into each crop of a (N, 3, s, s) tensor (or list of (3, s, s)), values 0..255.

        The crops may live on any device; returns (N, 3, s, s) float32 0..255 on
        the runner's device (the crops' device for a host runner).
        """
        import torch

        images = crops.images if torch.is_tensor(crops.images) else torch.stack(list(crops.images))
        if not len(images):
            return images.new_zeros((0, 3, self.input_size, self.input_size), dtype=torch.float32)
        z_all = self.latents(np.asarray(crops.track_ids))
        boxes_all = np.asarray(crops.boxes, np.float32)
        kps_all = np.asarray(crops.keypoints, np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                sl = slice(start, start + self.batch_size)
                x = images[sl].float() / 127.5 - 1
                if self._run_tensor is not None:  # device runners: tensors stay where they are until the runner
                    y = self._run_tensor(x, *(torch.from_numpy(a[sl]) for a in (boxes_all, kps_all, z_all)))[0]
                else:
                    y = torch.from_numpy(self.runner((x.cpu().numpy(), boxes_all[sl], kps_all[sl], z_all[sl]))[0])
                    y = y.to(images.device)
                out.append((y.float().clamp(-1, 1) + 1) * 127.5)
        return torch.cat(out)


def build_gan_anonymizer(device: str = "auto", seed: int = 0, threads: int = 0,
                         cpu_runtime_name: str | None = None, mask_scale: float | None = None) -> GanAnonymizer:
    """The GAN anonymizer on the backend chosen for ``device`` (``auto``, ``cpu``, ``cuda``, ...).

    The weights are :func:`engines.generator.weights_path` (the shipped file,
    or ``$STREAMER_GENERATOR_WEIGHTS``). The backend is picked as for the
    detector (:func:`engines.select.select_backend`): a TensorRT FP16 engine
    from the engine cache, PyTorch CUDA FP16 with CUDA graphs, or on the CPU
    ONNX Runtime (default, from an ONNX export cached by weights hash) or
    PyTorch FP32. The choice is logged.

    Args:
        device: the pipeline's device setting.
        seed: mixed into every track's latent.
        threads: CPU inference threads (0 = all cores).
        cpu_runtime_name: ``onnxruntime`` or ``torch`` (default:
            ``$STREAMER_CPU_RUNTIME``, else the measured-faster one).
        mask_scale: regenerate the face box x this (None: the value the
            weights were trained with); must stay under the crop's context.

    Raises:
        BackendError: no weights file, the requested backend is unavailable,
            or ``mask_scale`` leaves no context around the face.
    """
    from engines.engine_cache import default_cache_dir
    from engines.export import exported_onnx_path, generator_spec
    from engines.generator import WEIGHTS_ENV, weights_path
    from engines.generator.model import read_generator_info
    from engines.select import cpu_runtime, select_backend
    from streamer.errors import BackendError

    path = weights_path()
    if not path.is_file():
        raise BackendError(f"mode 'gan' needs the face generator's weights ({path}), which are not present; "
                           f"train them (engines/generator/train.py), point {WEIGHTS_ENV} at a file, "
                           "or use --mode blur, pixelate or mask")
    info = read_generator_info(path)
    config = info.config if mask_scale is None else replace(info.config, mask_scale=float(mask_scale))
    if not 1.0 <= config.mask_scale < config.context:
        raise BackendError(f"anonymizer.gan_mask_scale {config.mask_scale:g} must be >= 1 and below the "
                           f"generator's context ({config.context:g} x the face)")
    spec = generator_spec(config.mask_scale)
    choice = select_backend(device)
    backend = cpu_runtime(cpu_runtime_name) if choice.name == "cpu" else choice.name
    log.info("face generator %s: %d images shown, face box x %g regenerated; backend %s (%s)", path,
             info.images_shown, config.mask_scale, backend, choice.reason)
    if backend in ("torch", "torch-cuda"):
        if backend == "torch":
            log.warning("the face generator runs on the CPU in PyTorch FP32: correct but slow")
        generator = spec.build()
        return GanAnonymizer.from_module(generator, "cpu" if backend == "torch" else "cuda", seed=seed,
                                         threads=threads)
    if backend == "tensorrt":
        from engines.tensorrt_runner import tensorrt_runner_for

        runner = tensorrt_runner_for(*generator_engine_plan(config.mask_scale), default_cache_dir())
    else:  # onnxruntime
        from engines.runner import OnnxRuntimeRunner

        cache = default_cache_dir()
        try:
            onnx_path = exported_onnx_path(spec, cache)
        except OSError as exc:
            raise BackendError(f"cannot write the face generator's ONNX export to {cache} ({exc.strerror or exc}); "
                               "set STREAMER_ENGINE_CACHE to a writable folder") from None
        runner = OnnxRuntimeRunner(onnx_path, spec.input_names, spec.output_names, threads)
    return GanAnonymizer(runner, config, seed=seed)
