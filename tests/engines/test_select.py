"""Backend selection and the detector factory, with TensorRT absent."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from engines.select import cpu_runtime, cuda_available, gpu_driver_present, select_backend, tensorrt_available
from streamer.config import apply_overrides, load_config
from streamer.errors import BackendError
from streamer.factory import build_detector


@pytest.mark.parametrize("device,cuda,trt,expected", [
    ("auto", False, False, "cpu"), ("auto", False, True, "cpu"), ("auto", True, False, "torch-cuda"),
    ("auto", True, True, "tensorrt"), ("cuda", True, False, "torch-cuda"), ("cuda", True, True, "tensorrt"),
    ("torch-cuda", True, True, "torch-cuda"), ("tensorrt", True, True, "tensorrt"), ("cpu", True, True, "cpu"),
])
def test_selection(device, cuda, trt, expected):
    choice = select_backend(device, has_cuda=cuda, has_tensorrt=trt)
    assert choice.name == expected and choice.reason


@pytest.mark.parametrize("device,cuda,trt,message", [
    ("cuda", False, False, "no CUDA GPU"), ("torch-cuda", False, False, "no CUDA GPU"),
    ("tensorrt", False, True, "no CUDA GPU"), ("tensorrt", True, False, "tensorrt not installed"),
    ("tpu", True, True, "unknown device"),
])
def test_unavailable_backend_is_an_error_not_a_fallback(device, cuda, trt, message):
    with pytest.raises(BackendError, match=message):
        select_backend(device, has_cuda=cuda, has_tensorrt=trt)


@pytest.mark.skipif(tensorrt_available(), reason="tensorrt is installed here")
def test_tensorrt_detected_absent_here():
    choice = select_backend("auto")
    assert choice.name != "tensorrt"
    with pytest.raises(BackendError):
        select_backend("tensorrt")


def test_cpu_runtime(monkeypatch):
    monkeypatch.delenv("STREAMER_CPU_RUNTIME", raising=False)
    assert cpu_runtime() == "onnxruntime"  # measured faster on the CI machine
    monkeypatch.setenv("STREAMER_CPU_RUNTIME", "torch")
    assert cpu_runtime() == "torch"
    assert cpu_runtime("onnxruntime") == "onnxruntime"
    with pytest.raises(BackendError, match="unknown CPU runtime"):
        cpu_runtime("tflite")


def test_factory_builds_cpu_runners_and_logs_why(caplog, monkeypatch):
    monkeypatch.delenv("STREAMER_CPU_RUNTIME", raising=False)
    config = apply_overrides(load_config(None), {"pipeline.device": "cpu", "detector.input_width": 320})
    with caplog.at_level(logging.INFO, logger="streamer.factory"):
        assert build_detector(config).runner.backend == "onnxruntime-cpu"
    assert "backend: cpu/onnxruntime (--device cpu was asked for)" in caplog.text
    assert build_detector(config, cpu_runtime_name="torch").runner.backend == "torch-cpu"


@pytest.mark.skipif(cuda_available(), reason="a CUDA GPU is present")
def test_factory_refuses_cuda_without_gpu():
    config = apply_overrides(load_config(None), {"pipeline.device": "cuda"})
    with pytest.raises(BackendError, match="no CUDA GPU"):
        build_detector(config)


def test_machine_is_described_with_cores_and_gpu():
    import os

    from engines.select import cuda_available, describe_machine

    text = describe_machine("cpu")
    assert text.startswith(f"{os.cpu_count()}-core ")
    assert text.endswith("no GPU") != cuda_available()


@pytest.mark.skipif(gpu_driver_present(), reason="a GPU driver is present: PyTorch is asked whether it sees the GPU")
def test_a_job_on_a_machine_without_gpu_does_not_import_pytorch(small_clip, tmp_path):
    """Without a GPU driver there is no GPU to ask PyTorch about: importing it only to hear "no" took
    1.2-1.4 s, a fifth of a 14-frame clip's job (2-core CPU, 2026-11-26)."""
    out = tmp_path / "o.mp4"
    code = ("import sys; from streamer.cli import main; "
            f"rc = main(['anonymize', {small_clip.path!r}, {str(out)!r}, '-q', '-m', 'blur']); "
            "print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert out.stat().st_size > 0
