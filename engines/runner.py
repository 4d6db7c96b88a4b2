"""The runner interface every backend implements, and the ONNX Runtime CPU runner."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np


class Runner(Protocol):
    """Runs one network on a batch.

    Attributes:
        backend: short name of the backend, e.g. ``onnxruntime-cpu``.
    """

    backend: str

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the network on ``batch`` (N, C, H, W) and return its outputs in order."""
        ...


class OnnxRuntimeRunner:
    """Runs an ONNX model with ONNX Runtime's CPU execution provider.

    Args:
        model: an ``onnx.ModelProto`` or path to a ``.onnx`` file.
        input_name: name of the graph input fed with the batch.
        output_names: graph outputs to return, in order.
        threads: intra-op threads; 0 means one per CPU core.
    """

    backend = "onnxruntime-cpu"

    def __init__(self, model, input_name: str, output_names: tuple[str, ...], threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        payload = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
        self._session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        self._input_name = input_name
        self._output_names = list(output_names)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 (N, C, H, W) batch; returns float32 outputs."""
        return self._session.run(self._output_names, {self._input_name: np.ascontiguousarray(batch, np.float32)})
