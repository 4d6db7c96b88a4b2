"""``streamer engines ...`` end to end, in-process."""

from __future__ import annotations

import onnx
import pytest

from engines.select import cuda_available, tensorrt_available
from streamer.cli import main


def test_info(capsys):
    assert main(["engines", "info"]) == 0
    out = capsys.readouterr().out
    assert "--device auto ->" in out and "CPU runtime: " in out


def test_export_checks_and_compares(tmp_path, capsys):
    out_file = tmp_path / "cf.onnx"
    assert main(["engines", "export", "--output", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: ok" in out and "max relative error" in out
    onnx.checker.check_model(onnx.load(str(out_file)))


@pytest.mark.skipif(tensorrt_available() and cuda_available(), reason="TensorRT and a GPU are present")
def test_build_without_tensorrt_is_a_clear_error(tmp_path, capsys):
    code = main(["engines", "build", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 5
    assert err.startswith("streamer: error: ") and ("tensorrt not installed" in err or "no CUDA GPU" in err)
    assert "Traceback" not in err


def test_unknown_model(capsys):
    assert main(["engines", "export", "--model", "nope"]) == 5
    assert "unknown model 'nope'" in capsys.readouterr().err
