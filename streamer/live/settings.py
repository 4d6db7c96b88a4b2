"""The ``cameras`` and ``server`` sections of a live config, validated with one-line errors.

Example YAML (see configs/rtsp-camera.yaml)::

    server: {metrics_port: 9108}
    cameras:
      - name: door
        input: rtsp://10.0.0.5/stream1
        output: rtsp://127.0.0.1:8554/door-anon
        record: {dir: /var/lib/streamer/door, segment_seconds: 60}
        mode: blur
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from streamer.config import Config, ConfigError, apply_overrides, build_section
from streamer.sinks.video_file import STDOUT  # a camera's output may be standard output (one camera at most)

#: Schemes that are always live streams (``streamer anonymize URL...`` runs them as cameras).
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "srt://", "udp://", "rtp://")
#: URL schemes accepted as live inputs (a camera in a config may also be an HTTP(S) stream) / publish targets.
INPUT_SCHEMES = (*LIVE_SCHEMES, "http://", "https://")
OUTPUT_SCHEMES = ("rtsp://", "rtmp://")
TRANSPORTS = ("tcp", "udp")
#: Seconds ``streamer anonymize URL...`` waits for a first frame before it gives up (``serve``: never).
ANONYMIZE_STARTUP_TIMEOUT = 30.0


def is_live_url(text: str) -> bool:
    """Whether ``streamer anonymize`` should run ``text`` as a live camera (reconnects, segments) rather
    than read it as a file: RTSP(S), RTMP(S), SRT, UDP and RTP URLs. ``http(s)://`` links are read as
    files (a web server, an S3 link, an HLS playlist): a finished HLS recording run as a camera would be
    replayed from its start after every end, over and over.

    Example:
        >>> [is_live_url(u) for u in ("rtsps://cam/s", "udp://0.0.0.0:5000", "https://b/v.mp4")]
        [True, True, False]
    """
    return text.startswith(LIVE_SCHEMES)


@dataclass
class ServerSettings:
    """Process-wide live settings (the ``server`` section).

    Attributes:
        metrics_host: address the HTTP metrics/health endpoint binds to.
        metrics_port: its port (0 = pick a free one, -1 = no endpoint).
        connect_timeout: seconds allowed to open an input or output.
        stall_seconds: an input that yields no frame for this long is reconnected.
        backoff_initial: first reconnect delay in seconds (doubles per failure).
        backoff_max: largest reconnect delay in seconds.
        queue_size: bound (frames) of each per-camera queue; when full the oldest frame is dropped.
        batch_window_ms: how long the shared detector (and generator or GPU compositor) waits
            for frames of other cameras (ms).
        max_batch: most frames per detector call (and per GPU compositor call).
        startup_timeout: seconds to wait for a first frame from any camera before exiting with an
            error (0 = never give up: cameras may come up later; ``streamer anonymize URL...``
            uses :data:`ANONYMIZE_STARTUP_TIMEOUT` unless the config or ``--startup-timeout`` says).
    """

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    connect_timeout: float = 5.0
    stall_seconds: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    queue_size: int = 4
    batch_window_ms: float = 5.0
    max_batch: int = 16
    startup_timeout: float = 0.0

    def validate(self) -> None:
        """Check ranges; raises ConfigError naming the key."""
        for key in ("connect_timeout", "stall_seconds", "backoff_initial", "backoff_max", "batch_window_ms",
                    "startup_timeout"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'server.{key}' must be >= 0")
        for key in ("queue_size", "max_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'server.{key}' must be >= 1")
        if not -1 <= self.metrics_port <= 65535:
            raise ConfigError("config key 'server.metrics_port' must be -1 (off), 0 (any free port) or a port")


@dataclass
class CameraSpec:
    """One camera (an entry of ``cameras``).

    Attributes:
        name: label used in metrics, logs and recording file names.
        input: the camera URL.
        transport: RTSP transport, tcp or udp.
        output: RTSP/RTMP URL to publish the anonymized stream to ("" = none).
        record_dir: folder for segmented recordings ("" = none).
        segment_seconds: length of each recorded segment (seconds).
        keep_hours: delete recorded segments older than this (hours; 0 = keep all).
        keep_gb: delete the oldest recorded segments while the camera's recording takes more
            than this (GB, 10^9 bytes; 0 = no limit).
        stall_seconds: per-camera override of ``server.stall_seconds``.
        audio: carry the camera's sound to its outputs (AAC). Off by default: voices are not anonymized.
        config: the camera's pipeline config (global config + mode + overrides).
    """

    name: str
    input: str
    transport: str = "tcp"
    output: str = ""
    output_transport: str = "tcp"
    record_dir: str = ""
    segment_seconds: float = 60.0
    keep_hours: float = 0.0
    keep_gb: float = 0.0
    stall_seconds: float = 5.0
    audio: bool = False
    config: Config = field(default_factory=Config)


_CAMERA_KEYS = {"name", "input", "transport", "output", "output_transport", "record", "mode", "overrides",
                "stall_seconds", "audio"}
_RECORD_KEYS = {"dir", "segment_seconds", "keep_hours", "keep_gb"}


def _number(value: Any, key: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{key}: must be a number >= {minimum}, got {value!r}")
    return float(value)


def parse_server(data: Any) -> ServerSettings:
    """Validate the ``server`` mapping."""
    return build_section(ServerSettings, data, "server")


def parse_camera(i: int, data: Any, base: Config, server: ServerSettings) -> CameraSpec:
    """Validate one ``cameras[i]`` entry; errors name the key, e.g. ``cameras[1].input: missing``."""
    where = f"cameras[{i}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = set(data) - _CAMERA_KEYS
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (known: {', '.join(sorted(_CAMERA_KEYS))})")
    url = data.get("input")
    if not url:
        raise ConfigError(f"{where}.input: missing")
    if not isinstance(url, str) or not url.startswith(INPUT_SCHEMES):
        raise ConfigError(f"{where}.input: must be a stream URL ({', '.join(INPUT_SCHEMES)}), got {url!r}")
    name = str(data.get("name") or f"cam{i + 1}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}.name: use letters, digits, '.', '_' or '-' only, got {name!r}")
    spec = CameraSpec(name=name, input=url, stall_seconds=server.stall_seconds)
    for key in ("transport", "output_transport"):
        value = data.get(key, "tcp")
        if value not in TRANSPORTS:
            raise ConfigError(f"{where}.{key}: must be one of {TRANSPORTS}, got {value!r}")
        setattr(spec, key, value)
    output = data.get("output") or ""
    if output and (not isinstance(output, str) or not (output.startswith(OUTPUT_SCHEMES) or output == STDOUT)):
        raise ConfigError(f"{where}.output: must be an rtsp:// or rtmp:// URL, or - (standard output), "
                          f"got {output!r}")
    spec.output = output
    record = data.get("record")
    if record is not None:
        if isinstance(record, str):
            record = {"dir": record}
        if not isinstance(record, dict) or not record.get("dir"):
            raise ConfigError(f"{where}.record.dir: missing")
        bad = set(record) - _RECORD_KEYS
        if bad:
            raise ConfigError(f"{where}.record.{sorted(bad)[0]}: unknown key")
        spec.record_dir = str(record["dir"])
        spec.segment_seconds = _number(record.get("segment_seconds", 60), f"{where}.record.segment_seconds", 1)
        spec.keep_hours = _number(record.get("keep_hours", 0), f"{where}.record.keep_hours", 0)
        spec.keep_gb = _number(record.get("keep_gb", 0), f"{where}.record.keep_gb", 0)
    if not spec.output and not spec.record_dir:
        raise ConfigError(f"{where}: needs an output URL and/or record.dir")
    spec.audio = data.get("audio", False)
    if not isinstance(spec.audio, bool):
        raise ConfigError(f"{where}.audio: must be true or false, got {spec.audio!r}")
    if "stall_seconds" in data:
        spec.stall_seconds = _number(data["stall_seconds"], f"{where}.stall_seconds", 0.5)
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.overrides: must be a mapping of dotted keys")
    for key in overrides:
        if str(key).startswith("detector."):
            raise ConfigError(f"{where}.overrides.{key}: the detector is shared by all cameras; "
                              "set it in the top-level detector section")
    try:
        spec.config = apply_overrides(base, {**overrides, "anonymizer.mode": data.get("mode")})
    except ConfigError as exc:
        raise ConfigError(f"{where}.overrides: {exc}") from None
    return spec


def parse_live(config: Config) -> tuple[ServerSettings, list[CameraSpec]]:
    """Validate ``config.extra['server']`` and ``config.extra['cameras']``."""
    server = parse_server(config.extra.get("server"))
    cameras = config.extra.get("cameras")
    if not cameras:
        raise ConfigError("cameras: missing (list the cameras to anonymize)")
    if not isinstance(cameras, list):
        raise ConfigError("cameras: must be a list")
    specs = [parse_camera(i, c, config, server) for i, c in enumerate(cameras)]
    names = [s.name for s in specs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"cameras[{i}].name: duplicate name {name!r}")
    to_stdout = [i for i, spec in enumerate(specs) if spec.output == STDOUT]
    if len(to_stdout) > 1:
        raise ConfigError(f"cameras[{to_stdout[1]}].output: only one camera can write to standard output (-)")
    return server, specs
