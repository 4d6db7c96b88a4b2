"""``streamer serve --config FILE`` and live URLs given to ``streamer anonymize``."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from streamer.errors import InputError
from streamer.logs import json_logs
from streamer.live.settings import (ANONYMIZE_STARTUP_TIMEOUT, INPUT_SCHEMES, OUTPUT_SCHEMES, ServerSettings,
                                    parse_camera, parse_server)
from streamer.sinks.video_file import STDOUT

log = logging.getLogger(__name__)


def _live_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="HTTP port of /metrics and /health (0 = any free port, -1 = none)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="stop after this many seconds (default: run until SIGINT/SIGTERM)")
    parser.add_argument("--startup-timeout", type=float, metavar="SECONDS",
                        help="exit with an error when no camera has sent a frame after this many seconds "
                             "(default server.startup_timeout, 0 = keep retrying)")


def add_commands(subparsers) -> dict:
    """Add ``serve``; returns ``{name: handler}``."""
    from streamer.cli import _add_run_options

    p = subparsers.add_parser("serve", help="anonymize the live cameras listed in a config, around the clock")
    _add_run_options(p)
    _live_options(p)
    return {"serve": cmd_serve}


def _settings(config, args, startup_timeout: float | None = None) -> ServerSettings:
    """The ``server`` section with the command line's overrides; ``startup_timeout``: the command's
    default when neither the config nor ``--startup-timeout`` sets one."""
    raw = config.extra.get("server")
    settings = parse_server(raw)
    if getattr(args, "metrics_port", None) is not None:
        settings.metrics_port = args.metrics_port
    if getattr(args, "startup_timeout", None) is not None:
        settings.startup_timeout = args.startup_timeout
    elif startup_timeout is not None and "startup_timeout" not in (raw or {}):
        settings.startup_timeout = startup_timeout
    settings.validate()
    return settings


def _run(config, specs, settings, args) -> int:
    from streamer.live.server import LiveServer

    server = LiveServer(config, specs, settings)
    snapshots = server.run(getattr(args, "duration", None))
    if server.gave_up:
        why = "; ".join(f"{name}: {s['detail']}" for name, s in snapshots.items() if s.get("detail"))
        raise InputError(f"no camera sent a frame within {settings.startup_timeout:g} s ({why or 'no detail'}); "
                         "server.startup_timeout: 0 in the config keeps retrying")
    if json_logs(args):  # one more JSON line, like every other one
        logging.getLogger("streamer").info("summary", extra={"event": "summary", "cameras": snapshots})
    elif not getattr(args, "quiet", False):
        print(json.dumps(snapshots, indent=1), file=sys.stderr)
    return 0 if any(s["frames_out"] for s in snapshots.values()) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    """Run every camera of ``--config`` until SIGINT/SIGTERM (or ``--duration``)."""
    from streamer.cli import _config_from_args, check_pipes
    from streamer.live.settings import parse_live

    if not args.config:
        raise InputError("serve needs --config FILE listing the cameras (see configs/rtsp-camera.yaml)")
    config = _config_from_args(args)
    settings, specs = parse_live(config)
    check_pipes(False, any(spec.output == STDOUT for spec in specs))
    return _run(config, specs, _settings(config, args), args)


def run_urls(urls: list[str], args: argparse.Namespace) -> int:
    """Anonymize live cameras given on the command line (``streamer anonymize URL... OUTPUT``).

    Semantics: every positional but the last is a camera input (rtsp://, rtmp://, ...);
    the last positional is where the anonymized video goes:

    * an ``rtsp://`` or ``rtmp://`` URL: publish there. With one camera the URL is used
      as is; with N cameras camera *i* publishes to ``<URL>/cam<i>`` (1-based).
    * ``-``: one camera's video as MPEG-TS on standard output (``| ffplay -``); the run
      ends when the reader closes it.
    * a video file name (``out.mp4``): the camera records 60 s fragmented-MP4 segments
      ``out-<start>-NNNNN.mp4`` beside it (camera *i* of N: ``out-cam<i>-...``), so a
      reconnect, a crash or a full disk costs one segment, not the recording.
    * anything else: a folder; camera *i* records 60 s fragmented-MP4 segments
      ``<folder>/cam<i>-<start>-NNNNN.mp4``.

    ``--camera-audio`` carries the cameras' sound (``audio: true``).
    Runs until SIGINT/SIGTERM (or ``args.duration`` seconds, if set), then finalizes
    the recordings. Uses ``args.config``/``--mode``/... like ``anonymize``, and
    ``args.metrics_port`` when present. Returns 0 if any frame was delivered, else 1.
    """
    from streamer.cli import VIDEO_EXTENSIONS, _config_from_args, check_pipes

    if len(urls) < 2:
        raise InputError("live input needs an output: streamer anonymize rtsp://CAMERA... "
                         "rtsp://SERVER/PATH|RECORDING_FOLDER")
    *inputs, target = urls
    for url in inputs:
        if not url.startswith(INPUT_SCHEMES):
            raise InputError(f"{url}: every input but the last argument must be a stream URL when the first is")
    config = _config_from_args(args)
    settings = _settings(config, args, ANONYMIZE_STARTUP_TIMEOUT)
    file = Path(target) if Path(target).suffix.lower() in VIDEO_EXTENSIONS and not Path(target).is_dir() else None
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", file.stem) if file else ""  # a camera name: file names' prefix
    specs = []
    for i, url in enumerate(inputs):
        name = f"cam{i + 1}" if not file else prefix if len(inputs) == 1 else f"{prefix}-cam{i + 1}"
        entry: dict = {"name": name, "input": url, "audio": bool(getattr(args, "camera_audio", False))}
        if target == STDOUT:
            if len(inputs) > 1:
                raise InputError("only one camera can go to standard output (-): give a server URL or a folder")
            check_pipes(False, True)
            entry["output"] = STDOUT
        elif target.startswith(OUTPUT_SCHEMES):
            entry["output"] = target if len(inputs) == 1 else f"{target.rstrip('/')}/cam{i + 1}"
        else:
            entry["record"] = {"dir": str(file.parent if file else Path(target)), "segment_seconds": 60}
        specs.append(parse_camera(i, entry, config, settings))
    if file:
        log.info("recording in 60 s segments: %s", ", ".join(
            str(file.parent / f"{spec.name}-<start>-NNNNN.mp4") for spec in specs))
    return _run(config, specs, settings, args)
