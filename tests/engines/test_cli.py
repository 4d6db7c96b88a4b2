"""``streamer engines ...`` end to end, in-process."""

from __future__ import annotations

import onnx
import pytest

from engines.select import cuda_available, tensorrt_available
from streamer.cli import main


def test_info(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMER_GENERATOR_WEIGHTS", str(tmp_path / "none.safetensors"))
    monkeypatch.delenv("STREAMER_ORT_SPINNING", raising=False)
    assert main(["engines", "info"]) == 0
    out = capsys.readouterr().out
    assert "--device auto ->" in out and "CPU runtime: " in out and "thread spinning off" in out
    assert "face generator: no weights" in out and "default mode blur" in out
    assert "regenerates the face box" not in out


def test_info_names_the_mask_in_use(capsys, monkeypatch):
    from engines.generator import WEIGHTS_ENV, WEIGHTS_PATH

    if not WEIGHTS_PATH.is_file():
        pytest.skip("no generator weights committed")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert main(["engines", "info"]) == 0
    assert "regenerates the face box x 1.3 (anonymizer.gan_mask_scale; trained at x 1.1)" in capsys.readouterr().out


def test_export_checks_and_compares(tmp_path, capsys):
    out_file = tmp_path / "cf.onnx"
    assert main(["engines", "export", "--output", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: ok" in out and "max relative error" in out
    onnx.checker.check_model(onnx.load(str(out_file)))


def test_export_generator(tmp_path, capsys, monkeypatch):
    from engines.generator import WEIGHTS_ENV

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.safetensors"))
    out_file = tmp_path / "generator.onnx"
    assert main(["engines", "export", "--model", "generator", "--output", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "onnx.checker: ok; inputs image, boxes, keypoints, z; weights: RANDOM" in out
    assert "max relative error" in out
    model = onnx.load(str(out_file))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image", "boxes", "keypoints", "z"]


def test_build_sizes_refused_for_fixed_size_model(tmp_path, capsys, monkeypatch):
    import engines.select
    import streamer.factory  # noqa: F401 - imported now, it keeps the real select_backend after the test

    monkeypatch.setattr(engines.select, "tensorrt_available", lambda: True)
    monkeypatch.setattr(engines.select, "select_backend", lambda device: None)
    code = main(["engines", "build", "--model", "generator", "--sizes", "640x384", "--cache-dir", str(tmp_path)])
    assert code == 5 and "generator has a fixed input size (128x128)" in capsys.readouterr().err


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
