"""Builds the pipeline's stages from a Config (the one place that wires backends to stages)."""

from __future__ import annotations

import logging

from engines.select import select_backend
from streamer.config import Config
from streamer.errors import BackendError
from streamer.stages.compositor import Compositor
from streamer.stages.detector import CenterFaceDetector

log = logging.getLogger(__name__)


def build_detector(config: Config) -> CenterFaceDetector:
    """Create the face detector on the backend chosen for ``config.pipeline.device``."""
    choice = select_backend(config.pipeline.device)
    log.info("backend: %s (%s)", choice.name, choice.reason)
    if choice.name != "cpu":
        raise BackendError(f"backend {choice.name} is not available in this build yet; use --device cpu")
    return CenterFaceDetector(config.detector, threads=config.pipeline.threads)


def build_compositor(config: Config) -> Compositor:
    """Create the anonymizer stage for ``config.anonymizer.mode``."""
    if config.anonymizer.mode == "gan":
        raise BackendError("mode 'gan' needs the face generator's weights, which this build does not ship "
                           "yet; use --mode blur, pixelate or mask")
    return Compositor(config.anonymizer)
