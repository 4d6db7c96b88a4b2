"""Backend selection: which engine runs the networks on this machine, and why.

``auto`` picks TensorRT when ``tensorrt`` imports and a CUDA GPU is present,
else PyTorch CUDA when a GPU is present, else the CPU. Asking for a device
that is not available is an error, never a silent fallback. Besides the
config's ``auto``/``cpu``/``cuda`` (``cuda`` = the best GPU backend), the
backends can be named directly: ``tensorrt``, ``torch-cuda``.

On the CPU the networks run on ONNX Runtime or PyTorch FP32
(:func:`cpu_runtime`); ONNX Runtime is the default because it measured much
faster on the CI machine (see ``DEFAULT_CPU_RUNTIME``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass

from streamer.errors import BackendError

log = logging.getLogger(__name__)

#: Devices/backends :func:`select_backend` accepts.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "tensorrt", "torch-cuda")
#: CPU inference runtimes.
CPU_RUNTIMES = ("onnxruntime", "torch")
#: Measured 2026-11-23 on the 2-core CI machine (CenterFace, batch 1, 2 threads):
#: ONNX Runtime is many times faster than PyTorch FP32 (README, "Engines").
DEFAULT_CPU_RUNTIME = "onnxruntime"


@dataclass(frozen=True)
class BackendChoice:
    """The chosen backend and the reason, for the log.

    Attributes:
        name: ``tensorrt``, ``torch-cuda`` or ``cpu``.
        reason: one sentence saying why.
    """

    name: str
    reason: str


def gpu_driver_present() -> bool:
    """Whether this machine has a GPU driver PyTorch could use: NVIDIA's CUDA driver library loads,
    or AMD's ROCm device node exists. Milliseconds, where importing PyTorch to ask takes a second
    or more (most of a short clip's job on a CPU-only machine)."""
    if os.path.exists("/dev/kfd"):  # ROCm: PyTorch's HIP build answers through torch.cuda
        return True
    name = "nvcuda.dll" if os.name == "nt" else "libcuda.dylib" if sys.platform == "darwin" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def cuda_available() -> bool:
    """True when PyTorch is installed and sees a CUDA GPU."""
    if importlib.util.find_spec("torch") is None or not gpu_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def describe_machine(device: str = "auto") -> str:
    """This machine, as result files name it: ``2-core x86_64 CPU, no GPU`` or
    ``16-core x86_64 CPU, NVIDIA H100 80GB HBM3`` (marked unused when ``device`` is ``cpu``)."""
    import platform

    gpu = "no GPU"
    if cuda_available():
        import torch

        gpu = torch.cuda.get_device_name(0) + (" (unused: --device cpu)" if device == "cpu" else "")
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}"


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
    """Choose the backend for ``device`` (auto, cpu, cuda, tensorrt, torch-cuda).

    Args:
        device: what the user asked for.
        has_cuda, has_tensorrt: override detection (tests).

    Raises:
        BackendError: the device is unknown, or asks for something that is
            not usable here (no CUDA GPU, tensorrt not installed).
    """
    if device not in DEVICE_CHOICES:
        raise BackendError(f"unknown device '{device}' (use {', '.join(DEVICE_CHOICES)})")
    if device == "cpu":
        return BackendChoice("cpu", "--device cpu was asked for")
    cuda = cuda_available() if has_cuda is None else has_cuda
    if device != "auto" and not cuda:
        raise BackendError(f"--device {device}: no CUDA GPU is usable here (PyTorch with CUDA not installed "
                           "or no GPU visible); use --device cpu or auto")
    if not cuda:
        return BackendChoice("cpu", "no CUDA GPU found")
    if device == "torch-cuda":
        return BackendChoice("torch-cuda", "--device torch-cuda was asked for")
    trt = tensorrt_available() if has_tensorrt is None else has_tensorrt
    if device == "tensorrt" and not trt:
        raise BackendError("--device tensorrt: tensorrt not installed (or it fails to import); "
                           "use --device torch-cuda or auto")
    if trt:
        return BackendChoice("tensorrt", "a CUDA GPU is present and tensorrt imports")
    return BackendChoice("torch-cuda", "a CUDA GPU is present; tensorrt is not installed")


def cpu_runtime(requested: str | None = None) -> str:
    """CPU runtime to use: ``requested``, else ``$STREAMER_CPU_RUNTIME``, else DEFAULT_CPU_RUNTIME.

    Raises:
        BackendError: the name is not one of CPU_RUNTIMES.
    """
    name = requested or os.environ.get("STREAMER_CPU_RUNTIME") or DEFAULT_CPU_RUNTIME
    if name not in CPU_RUNTIMES:
        raise BackendError(f"unknown CPU runtime '{name}' (use {' or '.join(CPU_RUNTIMES)})")
    return name
