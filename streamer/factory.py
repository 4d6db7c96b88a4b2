"""Builds the pipeline's stages from a Config (the one place that wires backends to stages)."""

from __future__ import annotations

import logging

from engines.select import cpu_runtime, select_backend
from streamer.config import Config
from streamer.errors import BackendError
from streamer.stages.compositor import Compositor
from streamer.stages.detector import CenterFaceDetector

log = logging.getLogger(__name__)


def build_detector(config: Config, cpu_runtime_name: str | None = None) -> CenterFaceDetector:
    """Create the face detector on the backend chosen for ``config.pipeline.device``.

    CPU: ONNX Runtime or PyTorch FP32 (``cpu_runtime_name``, else
    ``$STREAMER_CPU_RUNTIME``, else the measured-faster default). GPU: a
    TensorRT FP16 engine from the engine cache (built on first use), or
    PyTorch FP16 channels-last with CUDA graphs. The choice and its reason are
    logged.
    """
    choice = select_backend(config.pipeline.device)
    if choice.name == "cpu":
        runtime = cpu_runtime(cpu_runtime_name)
        log.info("backend: cpu/%s (%s)", runtime, choice.reason)
        if runtime == "onnxruntime":
            return CenterFaceDetector(config.detector, threads=config.pipeline.threads)
        from engines.centerface_torch import load_centerface_torch
        from engines.torch_runner import TorchRunner

        runner = TorchRunner(load_centerface_torch(), "cpu", threads=config.pipeline.threads)
        return CenterFaceDetector(config.detector, runner=runner)
    log.info("backend: %s (%s)", choice.name, choice.reason)
    if choice.name == "torch-cuda":
        from engines.centerface_torch import load_centerface_torch
        from engines.torch_runner import TorchRunner

        return CenterFaceDetector(config.detector, runner=TorchRunner(load_centerface_torch(), "cuda",
                                                                      cuda_graphs=True))
    from engines.engine_cache import default_cache_dir
    from engines.export import CENTERFACE
    from engines.tensorrt_runner import detector_profiles_for_config, tensorrt_runner_for

    profiles = detector_profiles_for_config(config.detector.input_width, max(32, config.detector.batch_size))
    return CenterFaceDetector(config.detector,
                              runner=tensorrt_runner_for(CENTERFACE, profiles, default_cache_dir()))


def build_compositor(config: Config) -> Compositor:
    """Create the anonymizer stage for ``config.anonymizer.mode``.

    ``gan`` loads the face generator (FP16 on CUDA, FP32 on the CPU); faces it
    cannot take (too small, no keypoints) go to ``anonymizer.fallback_mode``.
    """
    if config.anonymizer.mode == "gan":
        from streamer.stages.gan import build_gan_anonymizer

        return Compositor(config.anonymizer, anonymizer=build_gan_anonymizer(config.pipeline.device))
    return Compositor(config.anonymizer)
