"""Config loading and validation."""

from __future__ import annotations

import pytest

from streamer.config import PRESETS_DIR, ConfigError, apply_overrides, config_from_dict, load_config


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_shipped_preset_loads(preset):
    assert load_config(preset).validate()


def test_presets_exist():
    names = {p.stem for p in PRESETS_DIR.glob("*.yaml")}
    assert {"dashcam-offline", "benchmark"} <= names


@pytest.mark.parametrize("data, fragment", [
    ({"detector": {"treshold": 0.3}}, "detector.treshold"),
    ({"detectr": {}}, "did you mean 'detector'"),
    ({"detector": {"threshold": 2}}, "detector.threshold"),
    ({"detector": {"input_width": "wide"}}, "detector.input_width"),
    ({"tracker": {"enabled": "yes"}}, "tracker.enabled"),
    ({"anonymizer": {"mode": "smudge"}}, "anonymizer.mode"),
    ({"pipeline": {"on_error": "ignore"}}, "pipeline.on_error"),
    ({"anonymizer": {"mask_color": [0, 0]}}, "anonymizer.mask_color"),
    ({"anonymizer": {"gan_mask_scale": 2.5}}, "anonymizer.gan_mask_scale"),
    ({"anonymizer": {"gan_mask_scale": "wide"}}, "anonymizer.gan_mask_scale"),
])
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("'", ".")):
        config_from_dict(data, source="test.yaml")


def test_overrides_apply_and_validate():
    cfg = apply_overrides(load_config("dashcam-offline"), {"anonymizer.mode": "pixelate", "encoder.crf": None})
    assert cfg.anonymizer.mode == "pixelate"
    assert cfg.encoder.crf == load_config("dashcam-offline").encoder.crf
    with pytest.raises(ConfigError, match="encoder.crf"):
        apply_overrides(cfg, {"encoder.crf": 99})


def test_optional_keys_take_null():
    """``gan_mask_scale: null`` means 'the value the weights were trained with'."""
    assert config_from_dict({"anonymizer": {"gan_mask_scale": None}}).anonymizer.gan_mask_scale is None
    assert config_from_dict({"anonymizer": {"gan_mask_scale": 1.2}}).anonymizer.gan_mask_scale == 1.2
    with pytest.raises(ConfigError, match="anonymizer.min_gan_size"):
        config_from_dict({"anonymizer": {"min_gan_size": None}})  # not optional: null is refused


def test_invalid_yaml_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
