"""Configuration: typed sections, YAML presets, validation with clear messages.

A config is a YAML mapping with the sections below; every key is optional and
falls back to the dataclass default. Unknown keys and wrong types are errors
that name the offending key, e.g. ``config dashcam.yaml: unknown key
'detector.treshold' (did you mean 'threshold'?)``.

Example:
    >>> cfg = load_config(None)            # built-in defaults
    >>> cfg.detector.threshold
    0.2
    >>> cfg = apply_overrides(cfg, {"anonymizer.mode": "pixelate"})
    >>> cfg.anonymizer.mode
    'pixelate'
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamer.errors import StreamerError

#: Folder holding the YAML presets shipped with the project.
PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"

ANONYMIZER_MODES = ("blur", "pixelate", "mask", "gan")
#: Default ``anonymizer.gan_mask_scale``: see the sweep in engines/generator/MODEL_CARD.md.
GAN_MASK_SCALE = 1.3
ERROR_POLICIES = ("mask_frame", "drop", "abort")
DEVICES = ("auto", "cpu", "cuda")
DECODERS = ("auto", "cpu", "nvdec")
COMPOSITORS = ("auto", "numpy", "torch")


@dataclass
class DetectorConfig:
    """Face detector (CenterFace) settings.

    Attributes:
        input_width: width in pixels the frame is resized to for detection
            (height follows the aspect ratio; both rounded up to a multiple of
            32). 0 or a value above the frame width means native width.
        threshold: minimum heatmap score (0..1) for a face.
        nms_iou: IoU above which overlapping boxes are merged.
        batch_size: frames per detector call and per anonymizer batch (faces of
            all of them go to the generator together); 0 = auto: 8 on a GPU, 1 on
            the CPU (the whole pipeline measured fastest so).
    """

    input_width: int = 1280
    threshold: float = 0.2
    nms_iou: float = 0.3
    batch_size: int = 0

    def validate(self) -> None:
        _check(self.input_width >= 0, "detector.input_width", "must be >= 0")
        _check(0.0 < self.threshold < 1.0, "detector.threshold", "must be in (0, 1)")
        _check(0.0 < self.nms_iou <= 1.0, "detector.nms_iou", "must be in (0, 1]")
        _check(self.batch_size >= 0, "detector.batch_size", "must be >= 0 (0 = auto)")


@dataclass
class TrackerConfig:
    """Tracker (norfair) settings.

    Attributes:
        enabled: when False only raw detections are anonymized.
        keep_seconds: how long (seconds) a face stays covered after its last
            detection.
        max_distance: 1 - IoU above which a detection does not match a track.
    """

    enabled: bool = True
    keep_seconds: float = 0.75
    max_distance: float = 0.85

    def validate(self) -> None:
        _check(self.keep_seconds >= 0, "tracker.keep_seconds", "must be >= 0")
        _check(0 < self.max_distance <= 1, "tracker.max_distance", "must be in (0, 1]")


def _default_mode() -> str:
    """``gan`` when generator weights are installed, else ``blur`` (see engines.generator)."""
    from engines.generator import default_mode

    return default_mode()


@dataclass
class AnonymizerConfig:
    """How faces are replaced.

    Attributes:
        mode: one of blur, pixelate, mask, gan; defaults to gan when the
            generator's weights are present, else blur.
        box_scale: the anonymized ellipse spans the face box scaled by this.
        feather: width of the soft edge, as a fraction of the face size.
        blur_strength: Gaussian sigma as a fraction of the face size.
        pixelate_blocks: blocks across the face in pixelate mode.
        mask_color: RGB fill colour of mask mode.
        fallback_mode: classic mode for faces the GAN cannot take.
        min_gan_size: faces smaller than this (pixels, short side) use the
            fallback mode.
        gan_mask_scale: gan mode: the generator blacks out and regenerates
            the face box scaled by this about its centre; null takes the value
            the weights were trained with. Larger hides more of the person
            (hairline, ears, jaw) and leaves the generator less to go on.
    """

    mode: str = field(default_factory=_default_mode)
    box_scale: float = 1.5
    feather: float = 0.1
    blur_strength: float = 0.25
    pixelate_blocks: int = 8
    mask_color: list = field(default_factory=lambda: [0, 0, 0])
    fallback_mode: str = "blur"
    min_gan_size: int = 14
    gan_mask_scale: float | None = GAN_MASK_SCALE

    def validate(self) -> None:
        _check(self.mode in ANONYMIZER_MODES, "anonymizer.mode", f"must be one of {ANONYMIZER_MODES}")
        _check(self.fallback_mode in ANONYMIZER_MODES[:3], "anonymizer.fallback_mode",
               f"must be one of {ANONYMIZER_MODES[:3]}")
        _check(self.box_scale >= 1.0, "anonymizer.box_scale", "must be >= 1")
        _check(0 <= self.feather <= 1, "anonymizer.feather", "must be in [0, 1]")
        _check(self.blur_strength > 0, "anonymizer.blur_strength", "must be > 0")
        _check(self.pixelate_blocks >= 2, "anonymizer.pixelate_blocks", "must be >= 2")
        _check(len(self.mask_color) == 3 and all(0 <= int(c) <= 255 for c in self.mask_color),
               "anonymizer.mask_color", "must be three integers 0..255")
        _check(self.min_gan_size >= 0, "anonymizer.min_gan_size", "must be >= 0")
        _check(self.gan_mask_scale is None or 1.0 <= self.gan_mask_scale < 2.0, "anonymizer.gan_mask_scale",
               "must be null or in [1, 2)")


@dataclass
class EncoderConfig:
    """Video encoder settings (audio and other streams are always copied).

    Attributes:
        codec: FFmpeg encoder name (libx264, libx265, h264_nvenc, hevc_nvenc,
            ...), or ``auto``: h264_nvenc where the GPU has NVENC, else libx264.
            NVENC is detected by opening the encoder.
        crf: constant rate factor (quality; lower is better); NVENC's ``cq``.
        preset: encoder speed preset (x264/x265 names; NVENC uses ``p1``..``p7``
            and maps the others to ``p4``).
        pix_fmt: output pixel format (yuv420p plays everywhere).
        fallback: when an NVENC encoder cannot be opened, use libx264 /
            libx265 with a warning (true) or fail (false).
        copy_metadata: copy the input's container and stream tags (creation
            time, title, language, ...) to the output (true), or write none
            (false).
        copy_location: also copy the tags that say where a recording was made
            or with what (a phone's GPS location, make, model, software), and
            the telemetry streams that track the camera's position (KLV of
            drones and surveillance systems, GoPro GPMF, Google CAMM); left
            out by default: the output is meant to identify no one.
        faststart: MP4/MOV outputs get their index (moov) at the front, so
            players and browsers start playing before the whole file is read
            (FFmpeg moves it there when the file is closed: one more pass over
            the file); false leaves it at the end.
    """

    codec: str = "libx264"
    crf: int = 20
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"
    fallback: bool = True
    copy_metadata: bool = True
    copy_location: bool = False
    faststart: bool = True

    def validate(self) -> None:
        _check(0 <= self.crf <= 51, "encoder.crf", "must be in 0..51")


@dataclass
class PipelineConfig:
    """Runtime settings.

    Attributes:
        device: auto, cpu or cuda.
        on_error: what happens to a frame on which a stage fails:
            mask_frame (the whole frame is blacked out), drop, abort.
        queue_size: bound (frames) of each queue between threads.
        threads: CPU threads for model inference (0 = all cores).
        decoder: ``auto`` (NVDEC when the device is a CUDA GPU, PyNvVideoCodec
            is installed and the codec suits it; else PyAV on the CPU),
            ``cpu`` or ``nvdec`` (an error when unusable).
        compositor: where faces are cut, anonymized and blended: ``auto``
            (``torch`` on a CUDA device, else ``numpy``), ``numpy`` (OpenCV on
            the CPU) or ``torch`` (on the pipeline's torch device, the CPU
            included).
    """

    device: str = "auto"
    on_error: str = "mask_frame"
    queue_size: int = 8
    threads: int = 0
    decoder: str = "auto"
    compositor: str = "auto"

    def validate(self) -> None:
        _check(self.device in DEVICES, "pipeline.device", f"must be one of {DEVICES}")
        _check(self.decoder in DECODERS, "pipeline.decoder", f"must be one of {DECODERS}")
        _check(self.compositor in COMPOSITORS, "pipeline.compositor", f"must be one of {COMPOSITORS}")
        _check(self.on_error in ERROR_POLICIES, "pipeline.on_error", f"must be one of {ERROR_POLICIES}")
        _check(self.queue_size >= 1, "pipeline.queue_size", "must be >= 1")
        _check(self.threads >= 0, "pipeline.threads", "must be >= 0")


@dataclass
class Config:
    """The whole configuration, one attribute per YAML section."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    extra: dict = field(default_factory=dict)

    def validate(self) -> "Config":
        """Check every section; raises ConfigError naming the bad key."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate()
        return self


class ConfigError(StreamerError):
    """A configuration file or override is invalid."""


def env_switch(name: str, error: type[StreamerError] = ConfigError) -> bool | None:
    """The 0/1 environment switch ``name``: True for 1, False for 0, None when unset or empty.

    Raises:
        StreamerError: ``error`` (ConfigError by default), one line, for any other value.
    """
    value = os.environ.get(name, "").strip()
    if value not in ("", "0", "1"):
        raise error(f"{name} must be 0 or 1, got {value!r}")
    return None if value == "" else value == "1"


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


#: Top-level keys that other capabilities (cameras, bench) keep as raw data.
_EXTRA_SECTIONS = ("cameras", "server", "bench")


def build_section(cls, data: Any, prefix: str):
    """Build dataclass ``cls`` from a YAML mapping, checking keys and value types.

    Errors name the key as ``prefix.key``; a ``validate()`` method, if any, is run.
    """
    if data is None:
        return _validated(cls())
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix}' must be a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = difflib.get_close_matches(str(key), list(names), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"unknown config key '{prefix}.{key}'{suggestion}")
        default = names[key].default
        if default is dataclasses.MISSING:
            default = names[key].default_factory()  # type: ignore[misc]
        nullable = "None" in str(names[key].type)  # an Optional field takes YAML null
        kwargs[key] = None if value is None and nullable else _coerce(value, default, f"{prefix}.{key}")
    return _validated(cls(**kwargs))


def _validated(section):
    if hasattr(section, "validate"):
        section.validate()
    return section


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Convert a YAML value to the type of the default, or raise ConfigError."""
    expected = type(default)
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if expected in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        if expected is int and float(value) != int(value):
            raise ConfigError(f"config key '{key}' must be a whole number, got {value!r}")
        return expected(value)
    if expected is str and not isinstance(value, str):
        raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    if expected is list and not isinstance(value, list):
        raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
    return value


def config_from_dict(data: dict, source: str = "config") -> Config:
    """Build and validate a Config from a parsed YAML mapping."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections")
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}
    kwargs: dict[str, Any] = {"extra": {}}
    try:
        for key, value in data.items():
            if key in sections:
                kwargs[key] = build_section(sections[key].default_factory, value, key)  # type: ignore[arg-type]
            elif key in _EXTRA_SECTIONS:
                kwargs["extra"][key] = value
            else:
                hint = difflib.get_close_matches(str(key), list(sections) + list(_EXTRA_SECTIONS), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"unknown config section '{key}'{suggestion}")
        return Config(**kwargs).validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def resolve_config_path(name_or_path: str) -> Path:
    """Map a preset name (``dashcam-offline``) or a file path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {name_or_path}")
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    raise ConfigError(f"unknown config preset '{name_or_path}' (presets: {', '.join(known)})")


def load_config(name_or_path: str | None) -> Config:
    """Load a preset or YAML file; None gives the built-in defaults."""
    if name_or_path is None:
        return Config().validate()
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {path.name}:{where} is not valid YAML") from None
    return config_from_dict(data, source=f"config {path.name}")


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``config`` with dotted keys (``anonymizer.mode``) replaced."""
    data = {f.name: dataclasses.asdict(getattr(config, f.name))
            for f in dataclasses.fields(config) if f.name != "extra"}
    data.update(config.extra)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    return config_from_dict(data, source="options")
