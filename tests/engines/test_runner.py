"""The ONNX Runtime CPU runner: its pool threads do not spin unless asked (benchmarks/ort_spinning.py)."""

from __future__ import annotations

from engines.centerface_onnx import INPUT_NAME, OUTPUT_NAMES, load_centerface_onnx
from engines.runner import ORT_SPINNING_ENV, OnnxRuntimeRunner

SPINNING = "session.intra_op.allow_spinning"


def _spinning(runner: OnnxRuntimeRunner) -> str:
    """The session's spinning entry; "default" when unset (ONNX Runtime then spins)."""
    try:
        return runner._session.get_session_options().get_session_config_entry(SPINNING)
    except RuntimeError:  # the entry was never set
        return "default"


def test_pool_threads_sleep_by_default_and_spin_on_request(monkeypatch):
    monkeypatch.delenv(ORT_SPINNING_ENV, raising=False)
    assert _spinning(OnnxRuntimeRunner(load_centerface_onnx(), INPUT_NAME, OUTPUT_NAMES, 1)) == "0"
    monkeypatch.setenv(ORT_SPINNING_ENV, "1")
    runner = OnnxRuntimeRunner(load_centerface_onnx(), INPUT_NAME, OUTPUT_NAMES, 1)
    assert _spinning(runner) == "default"
