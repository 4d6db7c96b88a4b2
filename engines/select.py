"""Backend selection: which engine runs the networks on this machine, and why.

``auto`` picks TensorRT when ``tensorrt`` imports and a CUDA GPU is present,
else PyTorch CUDA when a GPU is present, else the CPU. Asking for a device
that is not available is an error, never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from streamer.errors import BackendError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendChoice:
    """The chosen backend and the reason, for the log.

    Attributes:
        name: ``tensorrt``, ``torch-cuda`` or ``cpu``.
        reason: one sentence saying why.
    """

    name: str
    reason: str


def cuda_available() -> bool:
    """True when PyTorch is installed and sees a CUDA GPU."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def tensorrt_available() -> bool:
    """True when the ``tensorrt`` Python package imports."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


def select_backend(device: str, has_cuda: bool | None = None, has_tensorrt: bool | None = None) -> BackendChoice:
    """Choose the backend for ``device`` (auto, cpu, cuda).

    Args:
        device: what the user asked for.
        has_cuda, has_tensorrt: override detection (tests).

    Raises:
        BackendError: ``cuda`` was asked for and no CUDA GPU is usable.
    """
    if device == "cpu":
        return BackendChoice("cpu", "--device cpu was asked for")
    cuda = cuda_available() if has_cuda is None else has_cuda
    if device == "cuda" and not cuda:
        raise BackendError("--device cuda: no CUDA GPU is usable here (PyTorch with CUDA not installed "
                           "or no GPU visible); use --device cpu or auto")
    if device not in ("auto", "cuda"):
        raise BackendError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if not cuda:
        return BackendChoice("cpu", "no CUDA GPU found")
    trt = tensorrt_available() if has_tensorrt is None else has_tensorrt
    if trt:
        return BackendChoice("tensorrt", "a CUDA GPU is present and tensorrt imports")
    return BackendChoice("torch-cuda", "a CUDA GPU is present; tensorrt is not installed")
