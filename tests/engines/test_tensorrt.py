"""TensorRT backend: profile/key helpers everywhere; engine build and run only with tensorrt + GPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engines.engine_cache import unpack_entry
from engines.export import CENTERFACE, GENERATOR, parity, reference_outputs
from engines.select import cuda_available, tensorrt_available
from engines.tensorrt_runner import (Profile, batch_profiles, detector_profiles, detector_profiles_for_config,
                                     detector_sizes_for_config, per_input, profile_text)
from streamer.errors import BackendError
from tests.engines.conftest import frame_batch, torch_outputs


def test_detector_profiles_from_config():
    assert detector_sizes_for_config(1280) == [(1280, 736), (1280, 960)]
    profiles = detector_profiles([(640, 384)], max_batch=32)
    assert profiles == [Profile((1, 3, 384, 640), (8, 3, 384, 640), (32, 3, 384, 640))]
    assert profiles[0].contains((5, 3, 384, 640)) and not profiles[0].contains((33, 3, 384, 640))
    assert profiles[0].text() == "1x3x384x640:8x3x384x640:32x3x384x640"
    native = detector_profiles_for_config(0, 16)
    assert native[0].contains((16, 3, 1088, 1920)) and native[0].max[0] == 16
    with pytest.raises(BackendError):
        detector_sizes_for_config(0)


def test_multi_input_profiles():
    [profile] = batch_profiles(GENERATOR, max_batch=32)
    assert list(profile) == ["image", "boxes", "keypoints", "z"]  # one min/opt/max per input
    assert profile["image"] == Profile((1, 3, 128, 128), (8, 3, 128, 128), (32, 3, 128, 128))
    assert profile["keypoints"] == Profile((1, 5, 2), (8, 5, 2), (32, 5, 2))
    assert profile_text(profile).startswith("image=1x3x128x128:8x3x128x128:32x3x128x128,boxes=1x4:8x4:32x4,")
    assert per_input(profile, GENERATOR.input_names) == profile
    [detector] = detector_profiles([(640, 384)], max_batch=32)
    assert per_input(detector, ("input",)) == {"input": detector}
    assert profile_text(detector) == profile_text({"input": detector}) == detector.text()  # keys unchanged
    with pytest.raises(BackendError, match="inputs"):
        per_input(detector, GENERATOR.input_names)
    with pytest.raises(BackendError, match="lacks the inputs"):
        per_input({"image": profile["image"]}, GENERATOR.input_names)


def test_engines_build_plans_the_engine_the_pipeline_loads(monkeypatch):
    """`streamer engines build` and the pipeline ask for the same spec and profiles (one cache key)."""
    from engines.generator import WEIGHTS_ENV, WEIGHTS_PATH
    from streamer.config import ConfigError, config_from_dict
    from streamer.factory import tensorrt_plan

    if not WEIGHTS_PATH.is_file():
        pytest.skip("no generator weights committed")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    config = config_from_dict({"detector": {"input_width": 640}})
    spec, [profile] = tensorrt_plan("generator", config)
    assert spec.name == "generator-mask1.3" and profile["image"].max[0] == 64  # the default mask, 64 faces
    config.anonymizer.gan_mask_scale = None
    assert tensorrt_plan("generator", config)[0] is GENERATOR  # the weights' own mask
    spec, profiles = tensorrt_plan("centerface", config)
    assert spec is CENTERFACE and profiles == detector_profiles_for_config(640, 32)
    assert tensorrt_plan("centerface", config, max_batch=4)[1][0].max[0] == 4
    with pytest.raises(ConfigError, match="centerface or generator"):
        tensorrt_plan("yolo", config)


_SKIP = "tensorrt not installed" if not tensorrt_available() else None if cuda_available() else "no CUDA GPU"


@pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
def test_build_cache_and_run(tmp_path, centerface_torch, real_frames):
    from engines.export import exported_onnx_path
    from engines.tensorrt_runner import build_cached_engine, tensorrt_cache_key, \
        tensorrt_runner_for

    profiles = detector_profiles([(640, 384)], max_batch=8)
    onnx_path = exported_onnx_path(CENTERFACE, tmp_path)
    plan, built = build_cached_engine(onnx_path, "centerface", "input", profiles, tmp_path)
    assert built
    again, built = build_cached_engine(onnx_path, "centerface", "input", profiles, tmp_path)
    assert not built and again == plan
    key = tensorrt_cache_key(onnx_path, profiles)
    path = tmp_path / key.filename("centerface")
    path.write_bytes(path.read_bytes()[:-100])  # corrupt -> rebuilt
    _, built = build_cached_engine(onnx_path, "centerface", "input", profiles, tmp_path)
    assert built and unpack_entry(path.read_bytes(), key)[0] is not None
    assert dataclasses.replace(key, precision="fp32").filename("centerface") != path.name

    runner = tensorrt_runner_for(CENTERFACE, profiles, tmp_path)
    x = np.concatenate([frame_batch(f, (640, 384)) for f in real_frames])
    got = runner(x)
    assert all(np.isfinite(g).all() for g in got)
    assert max(parity(torch_outputs(centerface_torch, x), got)) < 1e-2


@pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
def test_generator_engine_runs_several_inputs(tmp_path):
    from engines.tensorrt_runner import tensorrt_runner_for

    runner = tensorrt_runner_for(GENERATOR, batch_profiles(GENERATOR, max_batch=8), tmp_path)
    module = GENERATOR.build()
    for batch, seed in ((1, 31), (3, 32)):
        x = GENERATOR.random_inputs(batch, seed=seed)
        got = runner(x)
        assert got[0].shape == (batch, 3, 128, 128) and np.isfinite(got[0]).all()
        assert max(parity(reference_outputs(GENERATOR, module, x), got)) < 1e-2
