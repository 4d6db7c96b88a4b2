"""The runner interface every backend implements, and the ONNX Runtime CPU runner."""

from __future__ import annotations

import os
from typing import Mapping, Protocol, Sequence, Union

import numpy as np

#: What a runner accepts: one array (single-input models), a name -> array mapping,
#: or a sequence of arrays in the model's input order (torch runners also take tensors).
Inputs = Union[np.ndarray, Mapping[str, np.ndarray], Sequence[np.ndarray]]


class Runner(Protocol):
    """Runs one network on a batch.

    Attributes:
        backend: short name of the backend, e.g. ``onnxruntime-cpu``.
    """

    backend: str

    def __call__(self, inputs: Inputs) -> list[np.ndarray]:
        """Run the network on a batch (every input has the batch axis first); return its outputs in order."""
        ...


def ordered_inputs(inputs: Inputs, names: Sequence[str] | None) -> list:
    """``inputs`` as a list in the model's input order.

    Args:
        inputs: one array (a model with one input), a mapping name -> array,
            or a tuple/list of arrays already in input order.
        names: the model's input names in order; None when unknown (then a
            mapping is taken in its own order and any count is accepted).

    Raises:
        ValueError: a name is missing from the mapping, or the count is wrong.
    """
    if isinstance(inputs, Mapping):
        if names is None:
            return list(inputs.values())
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"missing model inputs {missing} (got {sorted(inputs)})")
        return [inputs[n] for n in names]
    values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    if names is not None and len(values) != len(names):
        raise ValueError(f"{len(values)} inputs given, the model takes {len(names)} ({', '.join(names)})")
    return values


#: Set to 1 to let ONNX Runtime's pool threads spin between runs (its own default).
ORT_SPINNING_ENV = "STREAMER_ORT_SPINNING"


def ort_spinning() -> bool:
    """Whether ONNX Runtime sessions keep their idle threads spinning: off unless ``$STREAMER_ORT_SPINNING=1``.

    The pipeline runs decode, encode and up to two sessions (detector,
    generator) side by side; spinning pool threads of one session take the
    cores the others need. Measured on 2 cores: ``benchmarks/ort_spinning.py``.
    """
    return os.environ.get(ORT_SPINNING_ENV, "0") == "1"


class OnnxRuntimeRunner:
    """Runs an ONNX model with ONNX Runtime's CPU execution provider.

    Args:
        model: an ``onnx.ModelProto`` or path to a ``.onnx`` file.
        input_names: graph input name(s) fed with the batch, in order (a str for one input).
        output_names: graph outputs to return, in order.
        threads: intra-op threads; 0 means one per CPU core.
    """

    backend = "onnxruntime-cpu"

    def __init__(self, model, input_names: str | Sequence[str], output_names: tuple[str, ...],
                 threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        if not ort_spinning():  # idle pool threads sleep instead of spinning (see ort_spinning)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        payload = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
        self._session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        self._input_names = (input_names,) if isinstance(input_names, str) else tuple(input_names)
        self._output_names = list(output_names)

    def __call__(self, inputs: Inputs) -> list[np.ndarray]:
        """Run on float32 inputs (one array, name -> array, or a tuple in input order); float32 outputs."""
        values = ordered_inputs(inputs, self._input_names)
        feed = {n: np.ascontiguousarray(v, np.float32) for n, v in zip(self._input_names, values)}
        return self._session.run(self._output_names, feed)
