"""Command line: ``streamer anonymize``, ``streamer demo``.

Every user-facing failure (bad input, bad config, unwritable output, missing
backend) is printed as one line, ``streamer: error: ...``, with a non-zero
exit code and no traceback; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from streamer.config import ANONYMIZER_MODES, DEVICES, ERROR_POLICIES, Config, apply_overrides, load_config
from streamer.errors import InputError, OutputError, Stopped, StreamerError
from streamer.logs import LOG_FORMATS, json_logs, setup_logging
from streamer.redact import redact

log = logging.getLogger("streamer")

#: File extensions taken from an input folder: videos, and photos (written back as the same kind of image).
#: Video files a folder job takes, by extension: common containers; camcorders' AVCHD (.mts, .m2ts);
#: DVRs' and cameras' MPEG-PS (.mpg, .vob), Dahua's .dav and raw H.264/HEVC streams; old phones' .3gp;
#: Windows' .wmv/.asf; Flash's .flv.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".m4v", ".webm", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                    ".vob", ".dav", ".h264", ".264", ".h265", ".265", ".hevc", ".3gp", ".wmv", ".asf", ".flv")
#: Extensions FFmpeg reads but cannot write: a folder job's output gets this one added (cam.dav -> cam.dav.mp4).
UNWRITABLE_EXTENSIONS = {".dav": ".mp4"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="NAME|PATH",
                        help="preset name from configs/ (e.g. dashcam-offline) or a YAML file")
    parser.add_argument("--mode", "-m", choices=ANONYMIZER_MODES, help="how faces are replaced")
    parser.add_argument("--device", "-d", choices=DEVICES, help="where models run (default auto)")
    parser.add_argument("--on-error", choices=ERROR_POLICIES,
                        help="what happens to a frame a stage fails on (default mask_frame)")
    parser.add_argument("--detector-width", type=int, metavar="PX",
                        help="detector input width in pixels (0 = native)")
    parser.add_argument("--threshold", type=float, help="detector score threshold (0..1)")
    parser.add_argument("--crf", type=int, help="output video quality (x264 CRF, lower is better)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    # also accepted after the command (the top-level option sets the default)
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
                        help="text (default) or json: one JSON object per log line")


def _config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return apply_overrides(config, {
        "anonymizer.mode": args.mode,
        "pipeline.device": args.device,
        "pipeline.on_error": args.on_error,
        "detector.input_width": args.detector_width,
        "detector.threshold": args.threshold,
        "encoder.crf": args.crf,
    })


def build_parser() -> argparse.ArgumentParser:
    """The ``streamer`` argument parser."""
    parser = argparse.ArgumentParser(prog="streamer", description="Anonymize every face in a video.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text: one readable line per message; json: one JSON object per line "
                             "(time, level, message, camera, event ...) for log collectors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("anonymize", help="anonymize a video file, a folder of videos, or RTSP cameras",
                       usage="streamer anonymize INPUT [INPUT ...] OUTPUT [options]")
    p.add_argument("paths", nargs="+", metavar="INPUT... OUTPUT",
                   help="a video file and an output file (container from its extension); a folder and an "
                        "output folder; or rtsp:// camera URLs and an rtsp://|rtmp:// publish URL or a "
                        "recording folder. - is standard input (a stream: MPEG-TS, Matroska) or standard "
                        "output (MPEG-TS)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave out inputs whose output exists (resume a folder job; outputs of folder "
                        "jobs appear only once complete)")
    p.add_argument("--camera-audio", action="store_true",
                   help="rtsp:// inputs: carry the cameras' sound too, as AAC (off by default: voices are not "
                        "anonymized; files always keep theirs)")
    _add_run_options(p)

    p = sub.add_parser("demo", help="make a short clip with a real face and anonymize it")
    p.add_argument("--output-dir", default=".", help="where the demo input and output go (default: .)")
    _add_run_options(p)
    return parser


def _anonymize_one(src: str, dst: str, config: Config, args: argparse.Namespace, stages=None,
                   reported_as: str | None = None):
    """Anonymize one file (with already built ``stages``, if given); report the run (a summary block, or one
    JSON record with ``--log-format json``) under the output name ``reported_as`` (default ``dst``)."""
    from streamer.pipeline import anonymize_file

    stats = anonymize_file(src, dst, config, progress=not (args.quiet or json_logs(args)),
                           detector=stages.detector if stages else None,
                           compositor=stages.compositor if stages else None)
    shown = reported_as or dst
    if json_logs(args):
        log.info("summary", extra={"event": "summary", "input": src, "output": shown, **stats.as_dict()})
    elif not args.quiet:
        from streamer.sinks.video_file import output_name
        from streamer.sources.video_file import STDIN

        src_name = "standard input" if src == STDIN else redact(str(src))
        shown = redact(output_name(str(shown)))
        print(f"{src_name} -> {shown}\n{stats.summary()}", file=sys.stderr)
    if stats.truncated or stats.decode_errors:
        log.warning("%s was damaged: output holds the %d frames that could be decoded", src, stats.frames_out)
    return stats


def cmd_anonymize(args: argparse.Namespace) -> int:
    """Anonymize one file, or every video and photo of a folder into an output folder."""
    if len(args.paths) < 2:
        raise InputError("give an input and an output: streamer anonymize INPUT OUTPUT")
    from streamer.live.settings import is_live_url
    from streamer.sinks.video_file import STDOUT
    from streamer.sources.video_file import STDIN

    if is_live_url(args.paths[0]):
        from streamer.live.cli import run_urls

        return run_urls(args.paths, args)
    if len(args.paths) > 2:
        raise InputError("several inputs are only supported for rtsp:// cameras; for files give a folder")
    args.input, args.output = args.paths
    config = _config_from_args(args)
    src = Path(args.input)
    piped = args.input == STDIN or args.output == STDOUT
    check_pipes(args.input == STDIN, args.output == STDOUT)
    if not src.is_dir() or args.input == STDIN:
        if Path(args.output).is_dir() or args.output.endswith(("/", os.sep)):  # like cp: into the folder
            if args.input == STDIN:
                raise OutputError("standard input has no file name to give the output: name the output file "
                                  "(e.g. out.mkv)")
            Path(args.output).mkdir(parents=True, exist_ok=True)
            args.output = str(writable(Path(args.output) / src.name))
        if args.skip_existing and not piped and Path(args.output).exists():
            log.info("%s exists: skipped (--skip-existing)", args.output)
            return 0
        _anonymize_one(args.input, args.output, config, args)
        return 0
    dst = Path(args.output)
    if args.output == STDOUT:
        raise OutputError("a folder's videos cannot all go to standard output: give an output folder")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"input is a folder, so the output must be a folder: {dst}")
    if dst.exists() and os.path.samefile(src, dst):
        raise OutputError(f"the output folder is the input folder ({dst}): the originals would be overwritten; "
                          f"choose another output folder")
    videos = media_files(src, exclude=dst)
    if not videos:
        raise InputError(f"no video or image files ({', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)}) "
                         f"in folder {src} or its sub-folders")
    from streamer.pipeline import build_stages

    # sub-folders mirrored (a dashcam card's Front/, Rear/, Event/)
    targets = {video: writable(dst / video.relative_to(src)) for video in videos}
    if args.skip_existing:
        done = [video for video, target in targets.items() if target.exists()]
        if done:
            log.info("%d of %d files already have an output: skipped (--skip-existing)", len(done), len(videos))
        videos = [video for video in videos if video not in done]
    stages = build_stages(config)  # models loaded once for the whole folder
    failed, frames, dropped, started = 0, 0, 0, time.perf_counter()
    for number, video in enumerate(videos, 1):
        target = targets[video]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (args.quiet or json_logs(args)):
            print(f"[{number}/{len(videos)}] {video}", file=sys.stderr, flush=True)
        partial = partial_path(target)  # renamed once complete: an output that exists is a whole one
        try:
            stats = _anonymize_one(str(video), str(partial), config, args, stages, reported_as=str(target))
        except InputError as exc:  # one bad file does not stop the batch
            failed += 1
            log.error("%s", exc, extra={"event": "file_failed", "input": str(video)})
            continue
        except KeyboardInterrupt:
            if partial.exists():
                log.warning("the output of %s so far is kept as %s; rerun with --skip-existing to go on "
                            "with the files not done", video, partial)
            raise
        os.replace(partial, target)
        frames, dropped = frames + stats.frames_out, dropped + stats.frames_dropped
    log.log(logging.ERROR if failed else logging.INFO,
            "folder done: %d of %d files written to %s (%d frames, %d dropped) in %.0f s%s",
            len(videos) - failed, len(videos), dst, frames, dropped, time.perf_counter() - started,
            f"; {failed} failed" if failed else "",
            extra={"event": "folder_done", "files": len(videos), "failed": failed, "frames": frames})
    return 1 if failed else 0


def check_pipes(reads_stdin: bool, writes_stdout: bool) -> None:
    """Refuse standard input or output that is a terminal (a video cannot be typed in, and a terminal
    shown one prints garbage), as ``gzip`` does.

    Raises:
        InputError, OutputError: one of them is a terminal.
    """
    if reads_stdin and sys.stdin.isatty():
        raise InputError("standard input is a terminal: pipe a video into it (cat cam.ts | streamer anonymize - "
                         "out.mkv) or give a file")
    if writes_stdout and sys.stdout.isatty():
        raise OutputError("standard output is a terminal: pipe it into a player (| ffplay -) or give an "
                          "output file")


def writable(target: Path) -> Path:
    """``target``, with an extension FFmpeg can write added where its own names a format it only reads."""
    added = UNWRITABLE_EXTENSIONS.get(target.suffix.lower())
    return target.with_name(target.name + added) if added else target


def partial_path(target: Path) -> Path:
    """Where a folder job writes ``target`` until it is complete: a hidden file beside it with the same
    extension (``.clip.partial.mp4``), which folder jobs never take as input."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


def media_files(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Every video and photo in ``folder`` and its sub-folders, sorted; hidden files and folders and
    anything inside ``exclude`` (an output folder placed inside the input folder) are left out."""
    skip = exclude.resolve() if exclude is not None else None
    if skip is not None and not skip.is_relative_to(folder.resolve()):
        skip = None  # the output folder is not inside the input folder (it may hold it: raw/ into .)
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if path.suffix.lower() not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS or not path.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        found.append(path)
    return sorted(found)


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the built-in sample clip and anonymize it."""
    from streamer.sample import make_sample_clip

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _config_from_args(args)
    source = out_dir / "streamer-demo-input.mp4"
    output = out_dir / "streamer-demo-output.mp4"
    if not args.quiet:
        log.info("writing sample clip %s (a moving, zooming face with audio)", source)
    make_sample_clip(str(source), seconds=4.0, faces=2)
    _anonymize_one(str(source), str(output), config, args)
    print(f"anonymized video: {output}")
    return 0


COMMANDS = {"anonymize": cmd_anonymize, "demo": cmd_demo}

#: Modules that add subcommands; each defines ``add_commands(subparsers) -> dict[name, handler]``
#: where ``handler(args) -> int`` returns the exit code.
EXTENSION_MODULES = ("engines.cli", "streamer.live.cli", "benchmarks.cli")


def _load_extensions(subparsers) -> None:
    import importlib
    import importlib.util

    for name in EXTENSION_MODULES:
        try:
            present = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            present = False
        if present:
            COMMANDS.update(importlib.import_module(name).add_commands(subparsers))


def _looks_like_input(arg: str) -> bool:
    """Whether a command-line word is a file or stream URL rather than a mistyped command."""
    return "://" in arg or os.path.exists(arg) or Path(arg).suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


#: Signals that stop a job as Ctrl-C does: a job runner's, container's or ``timeout``'s SIGTERM, a closed
#: terminal's SIGHUP. Without this they ended the process at once, leaving an MP4 without its index.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_stopped(signum: int, _frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise Stopped(signum)


@contextlib.contextmanager
def _stop_signals_as_interrupts():
    """Within the block, :data:`STOP_SIGNALS` raise :class:`~streamer.errors.Stopped` in the main thread
    (handled as Ctrl-C). Signals the process was told to ignore (``nohup``) stay ignored."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, _raise_stopped)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streamer`` console script; returns the exit code."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    _load_extensions(subparsers)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in subparsers.choices and _looks_like_input(argv[0]):
        parser.error(f"'{argv[0]}' is not a command; to anonymize it run: streamer anonymize {' '.join(argv)}")
    args = parser.parse_args(argv)
    setup_logging(args.log_format, debug=args.debug, quiet=getattr(args, "quiet", False))
    try:
        with _stop_signals_as_interrupts():
            return COMMANDS[args.command](args)
    except StreamerError as exc:
        if args.debug:
            raise
        log.error("%s", exc, extra={"event": "error", "exit_code": exc.exit_code})
        return exc.exit_code
    except Stopped as exc:
        name = signal.Signals(exc.signum).name
        log.warning("stopped by %s", name,
                    extra={"event": "interrupted", "signal": name, "exit_code": 128 + exc.signum})
        return 128 + exc.signum
    except KeyboardInterrupt:
        log.warning("interrupted", extra={"event": "interrupted", "exit_code": 130})
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        log.error("internal error: %s: %s (rerun with --debug for details)", type(exc).__name__, exc,
                  extra={"event": "internal_error", "exit_code": 1})
        return 1


if __name__ == "__main__":
    sys.exit(main())
