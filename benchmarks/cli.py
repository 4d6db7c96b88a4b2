"""``streamer bench``: how many frames per second this machine sustains, stage by stage.

Runs one clip (a synthetic clip with moving real faces when none is given)
through, in one process and one run:

* ``decode``      demux + decode + conversion to RGB, frames dropped;
* ``transcode``   decode -> encode with the configured encoder, no anonymization;
* ``null-<mode>`` decode -> detect -> track -> anonymize, frames dropped (no encode);
* ``full-<mode>`` the whole pipeline into a file, as ``streamer anonymize``;
* ``deface``      the ``deface`` command on the same clip at the same detector input.

``--streams N`` runs N copies of ``null-<first mode>`` concurrently with one
shared, batching detector (``--streams-encode``: also N copies of
``full-<first mode>``, each encoding its own file), and reports the aggregate
and whether each stream kept real time at the clip's frame rate. Results: a table on stdout, JSON
and a PNG bar chart.

Example:
    streamer bench --seconds 4 --json benchmarks/results/bench.json --png benchmarks/results/bench.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import run_on_threads
from streamer.config import Config, ConfigError, apply_overrides, load_config
from engines.generator import use_generator_weights
from engines.select import describe_machine
from streamer.errors import InputError, describe_error

if TYPE_CHECKING:  # loaded with every ``streamer`` command: the heavy imports wait until ``bench`` runs
    from streamer.pipeline import RunStats


def add_commands(subparsers) -> dict:
    """Add ``bench`` to the ``streamer`` command line."""
    p = subparsers.add_parser("bench", help="measure fps per stage on this machine (and vs deface)")
    p.add_argument("clip", nargs="?", help="video to measure (default: a synthetic clip with moving faces)")
    p.add_argument("--config", "-c", default="benchmark", help="preset or YAML file (default: benchmark)")
    p.add_argument("--modes", default="blur", help="comma-separated anonymizer modes to time (e.g. blur,gan)")
    p.add_argument("--device", "-d", choices=("auto", "cpu", "cuda"), help="where models run")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the synthetic clip, seconds")
    p.add_argument("--size", default="1920x1080", help="synthetic clip size WxH (default 1920x1080)")
    p.add_argument("--fps", type=int, default=30, help="synthetic clip frame rate")
    p.add_argument("--faces", type=int, default=4, help="faces in the synthetic clip")
    p.add_argument("--batch-size", type=int, metavar="FRAMES",
                   help="frames per detector call and anonymizer batch (default: the config's; 0 = auto: 8 on a "
                        "GPU, 1 on the CPU)")
    p.add_argument("--streams", type=int, default=1, help="also run N concurrent streams (null sink)")
    p.add_argument("--generator-weights", metavar="PATH|random",
                   help="gan mode: this weights file, or 'random' for fixed-seed random weights (same cost as "
                        "trained ones; timing only, the faces are noise). Default: the pipeline's weights")
    p.add_argument("--streams-frame-threads", action="store_true",
                   help="with --streams: decode each stream with frame threads as file jobs do (the default "
                        "until late 2026-11-26), not with slice threads as live cameras do")
    p.add_argument("--streams-only", action="store_true",
                   help="with --streams: run only the N-stream rows (no decode, transcode or single-stream rows)")
    p.add_argument("--streams-encode", action="store_true",
                   help="with --streams: also run the N streams each encoded to a file (cameras being recorded)")
    p.add_argument("--no-deface", action="store_true", help="skip the deface comparison")
    p.add_argument("--json", help="write results here")
    p.add_argument("--png", help="write a bar chart here")
    return {"bench": cmd_bench}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_gpu_peak() -> None:
    """Start the GPU memory peaks afresh for the next variant (nothing without torch on a CUDA GPU)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_mb(reserved: bool = False) -> float | None:
    """Peak GPU memory torch allocated during the variant (MiB), or with ``reserved`` the peak it held
    (allocated plus its cache: 71.5 GiB of cache ran the H100 out of memory on 2026-11-26 while 5.8 GiB were
    allocated); None when no CUDA GPU is in use.

    Asks only if the runs loaded torch: importing it here on a CPU run would add
    its memory (about 190 MB) to the peak RSS of every later row.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return (torch.cuda.max_memory_reserved() if reserved else torch.cuda.max_memory_allocated()) / 2**20


def _row(name: str, stats: RunStats, frames: int) -> dict:
    return {
        "variant": name, "frames": stats.frames_out, "seconds": round(stats.seconds, 3),
        "fps": round(stats.fps, 2),
        # after the first WARMUP_FRAMES (model load, cuDNN autotuning, CUDA-graph capture); None on short clips
        "steady_fps": None if stats.steady_fps is None else round(stats.steady_fps, 2),
        # seconds to the first frame out: most of a short GPU run (20-30 s on an H100, 2026-11-27b)
        "first_frame_s": None if stats.first_frame_s is None else round(stats.first_frame_s, 2),
        "stages_ms": {k: [round(a, 2), round(b, 2)] for k, (a, b) in stats.stage_percentiles().items()},
        "faces_per_frame": round(stats.faces_detected / max(frames, 1), 3),
        "anonymized": dict(stats.anonymized),  # faces per anonymizer (gan vs its fallback)
        # frames a failing stage blacked out or dropped: their fps times no model work
        "frames_masked": stats.frames_masked, "frames_dropped": stats.frames_dropped,
        "peak_rss_mb": round(_peak_rss_mb(), 1), "gpu_mb": _gpu_mb(), "gpu_reserved_mb": _gpu_mb(reserved=True),
        "backend": stats.backend,
    }


def run_variant(path: str, config: Config, sink_path: str | None, anonymize: bool, detector=None,
                compositor=None, camera_like: bool = False) -> RunStats:
    """One pipeline run of ``path``: into ``sink_path`` (encoded) or a null sink; stages may be shared.

    ``camera_like``: decode as the live server decodes a camera (slice threads only,
    :func:`streamer.live.rtsp_source.low_latency_decoding`), not with a file job's frame threads (as
    many threads as cores, per stream).
    """
    from streamer.live.rtsp_source import low_latency_decoding
    from streamer.factory import build_source
    from streamer.pipeline import run_pipeline
    from streamer.sinks.null import NullSink
    from streamer.sinks.video_file import VideoFileSink

    _reset_gpu_peak()  # each row's GPU memory is its own (the H100 rows of 2026-11-26 carried the peak on)
    source = build_source(path, config)  # NVDEC on a GPU with PyNvVideoCodec, else PyAV
    if camera_like and getattr(source, "stream", None) is not None:
        low_latency_decoding(source.stream)
    sink = (VideoFileSink(sink_path, source.info, source.copy_streams, config.encoder) if sink_path
            else NullSink())
    return run_pipeline(source, sink, config, anonymize=anonymize, detector=detector, compositor=compositor)


def _single_stream_rows(clip: str, base: Config, modes: list[str], tmp: str) -> list[dict]:
    """The one-stream rows: decode only, transcode, then per mode the pipeline to a null sink and to a file."""
    decoded = _decode_only(clip, base)
    frames = decoded.frames_out
    rows = [_row("decode", decoded, frames),
            _row("transcode", run_variant(clip, base, os.path.join(tmp, "transcode.mp4"), False), frames)]
    for mode in modes:
        config = apply_overrides(base, {"anonymizer.mode": mode})
        rows.append(_row(f"null-{mode}", run_variant(clip, config, None, True), frames))
        rows.append(_row(f"full-{mode}", run_variant(clip, config, os.path.join(tmp, f"{mode}.mp4"), True), frames))
    return rows


def _decode_only(path: str, config: Config) -> RunStats:
    return run_variant(path, config, None, anonymize=False)


def _streams(path: str, config: Config, n: int, fps: float, encode_dir: str | None = None,
             camera_like: bool = True) -> dict:
    """Run n pipelines at once sharing their models as the live server's cameras do; real time = each
    stream >= fps.

    One detector batches the frames of every stream. With the GPU compositor,
    one shared compositor takes every waiting stream's frames (the generator
    inside it), and each stream hands over one frame at a time, as a live
    camera does (``detector.batch_size: 1``: batching is across streams);
    with the CPU compositor, one generator batches every stream's faces.
    Each stream's rate is its steady rate (after its first WARMUP_FRAMES,
    which hold model warm-up) where the clip is long enough, else frames over
    wall time.

    Each stream goes to a null sink, or, with ``encode_dir``, is encoded into
    its own file there (what a camera being recorded costs). Each decodes as
    a live camera does (slice threads only; ``camera_like=False``: with a
    file job's frame threads, 16 streams x (cores + 1) decoder threads).
    """
    from streamer.config import apply_overrides
    from streamer.factory import build_compositor, build_detector, build_shared_generator, uses_torch_compositor
    from streamer.live.batcher import SharedCompositor, SharedDetector

    batch = max(1, n)  # most frames per shared call: one batch of each stream (a frame each with the defaults)
    shared = SharedDetector(build_detector(config, max_batch=batch), max_batch=batch)
    generator = compositor = None
    if uses_torch_compositor(config):  # the compositor loads the generator in gan mode
        compositor = SharedCompositor(build_compositor(config, download=False), max_batch=batch)
        config = apply_overrides(config, {"detector.batch_size": 1})
    else:
        generator = build_shared_generator(config)  # gan mode: one generator, faces batched across streams
    results: list[RunStats | None] = [None] * n
    errors: list[str] = []

    def one(i: int) -> None:
        sink_path = os.path.join(encode_dir, f"stream-{i}.mp4") if encode_dir else None
        own = compositor.for_camera(i) if compositor else build_compositor(
            config, download=False, anonymizer=generator.for_camera(i) if generator else None)
        try:
            results[i] = run_variant(path, config, sink_path, True, detector=shared, compositor=own,
                                     camera_like=camera_like)
        except Exception as exc:  # noqa: BLE001 - a stream that stops is counted and named in the row
            errors.append(f"stream {i}: {describe_error(exc)}")

    wall = run_on_threads(one, n)
    batched = {"detector": shared, "generator": generator, "compositor": compositor}
    for batcher in batched.values():
        if batcher is not None:
            batcher.close()
    per_stream = [r.steady_fps or r.fps for r in results if r]
    kind = "full" if encode_dir else "null"
    threads = "" if camera_like else " frame-threads"
    return {"variant": f"{n} streams {kind}-{config.anonymizer.mode}{threads}", "streams": n,
            "decoding": "slice threads, as live cameras" if camera_like else "frame threads, as file jobs",
            "aggregate_fps": round(sum(r.frames_out for r in results if r) / wall, 2),
            # the streams' steady rates added up: start-up (cuDNN autotuning, CUDA-graph captures) excluded
            "steady_total_fps": round(sum(per_stream), 2),
            # the last stream's first frame out: the shared models' start-up, seconds
            "first_frame_s": max((r.first_frame_s for r in results if r and r.first_frame_s is not None),
                                 default=None),
            "per_stream_fps": [round(f, 2) for f in per_stream], "native_fps": fps,
            "per_stream_frames": [r.frames_out if r else 0 for r in results],
            "failed_streams": len(errors), "errors": sorted(errors)[:3],
            "frames_masked": sum(r.frames_masked for r in results if r),
            "frames_dropped": sum(r.frames_dropped for r in results if r),
            "all_real_time": not errors and all(f >= fps for f in per_stream),
            **{f"mean_{name}_batch": round(b.items / max(b.calls, 1), 2) for name, b in batched.items() if b}}


def _deface(path: str, config: Config, workdir: str) -> dict:
    from benchmarks.compare_deface import probe, timed
    from streamer.stages.detector import detector_input_size

    w, h, frames, _ = probe(path)
    size = detector_input_size(w, h, config.detector.input_width)
    cmd = ["deface", path, "-o", os.path.join(workdir, "deface.mp4"), "--thresh", str(config.detector.threshold),
           "--scale", f"{size[0]}x{size[1]}", "--replacewith", "blur"]
    seconds, proc = timed(cmd)
    if proc.returncode:
        return {"variant": "deface", "error": proc.stderr.strip().splitlines()[-1:]}
    return {"variant": "deface", "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2), "note": "wall time of the deface command, model load included"}


def write_chart(rows: list[dict], path: str) -> None:
    """Draw a horizontal bar chart of fps per variant to a PNG (OpenCV, no plotting library)."""
    import cv2
    import numpy as np

    bars = [(r["variant"], r.get("fps", r.get("aggregate_fps", 0.0))) for r in rows
            if r.get("fps") or r.get("aggregate_fps")]
    height, width, left = 40 + 36 * len(bars), 900, 260
    canvas = np.full((height, width, 3), 255, np.uint8)
    top = max((v for _, v in bars), default=1.0) or 1.0
    cv2.putText(canvas, "frames per second (higher is better)", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                cv2.LINE_AA)
    for i, (name, value) in enumerate(bars):
        y = 40 + 36 * i
        length = int((width - left - 80) * value / top)
        cv2.rectangle(canvas, (left, y), (left + max(length, 1), y + 24), (200, 120, 40), -1)
        cv2.putText(canvas, name[:30], (10, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, f"{value:.1f}", (left + length + 6, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.imwrite(path, canvas)


def _variant_cell(row: dict) -> str:
    """The row's name, with what went wrong in it: streams that stopped, frames blacked out or dropped."""
    problems = []
    if row.get("failed_streams"):
        first = row["errors"][0].replace("|", "/")[:160]  # one line in a Markdown table cell
        problems.append(f"{row['failed_streams']} of {row['streams']} streams stopped: {first}")
    problems += [f"{row[key]} frames {key[7:]} on error" for key in ("frames_masked", "frames_dropped") if row.get(key)]
    return row["variant"] + "".join(f" (**{p}**)" for p in problems)


def _gpu_cell(row: dict) -> str:
    """Peak GPU memory of a row, allocated / held by PyTorch (MiB), or n/a without a GPU."""
    if not row.get("gpu_mb"):
        return "n/a"
    return f"{row['gpu_mb']:.0f} / {row.get('gpu_reserved_mb') or 0:.0f}"


def format_table(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    lines = ["| variant | fps | steady fps | first frame s | frames | per-frame ms p50/p95 | faces/frame "
             "| peak RSS MB | GPU MB allocated/held |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "aggregate_fps" in r:
            rates = r["per_stream_fps"] or [0.0]
            lines.append(f"| {_variant_cell(r)} | {r['aggregate_fps']} total; per stream "
                         f"{min(rates)}-{max(rates)} vs {r['native_fps']} native; "
                         f"real time: {'yes' if r['all_real_time'] else 'no'} | "
                         f"{r.get('steady_total_fps', '')} total | {r.get('first_frame_s', '')} | mean batch: "
                         + ", ".join(f"{key[5:-6]} {value}" for key, value in r.items()
                                     if key.startswith("mean_") and key.endswith("_batch"))
                         + " | | | | |")
            continue
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | | |")
            continue
        stages = ", ".join(f"{k} {a}/{b}" for k, (a, b) in r.get("stages_ms", {}).items())
        steady = r.get("steady_fps") or "n/a"  # deface rows and clips under 60 frames have none
        first = r.get("first_frame_s")
        lines.append(f"| {_variant_cell(r)} | {r['fps']} | {steady} | {'n/a' if first is None else first} "
                     f"| {r['frames']} | {stages} | {r.get('faces_per_frame', '')} "
                     f"| {r.get('peak_rss_mb', '')} | {_gpu_cell(r)} |")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark variants and print/write the results."""
    from streamer.sample import make_sample_clip

    from streamer.factory import frames_per_batch, pipeline_settings

    if args.streams_only and args.streams < 2:
        raise ConfigError("--streams-only needs --streams N with N >= 2")
    overrides = {"pipeline.device": args.device}
    if args.batch_size is not None:
        overrides["detector.batch_size"] = args.batch_size
    base = apply_overrides(load_config(args.config), overrides)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        generator = use_generator_weights(args.generator_weights, tmp) if "gan" in modes else None
        clip = args.clip
        if clip is None:
            w, h = (int(v) for v in args.size.lower().split("x"))
            clip = os.path.join(tmp, "bench.mp4")
            print(f"streamer: writing a {args.seconds:g} s {w}x{h}@{args.fps} clip with {args.faces} faces",
                  file=sys.stderr)
            make_sample_clip(clip, seconds=args.seconds, fps=args.fps, width=w, height=h, faces=args.faces)
        elif not Path(clip).is_file():
            raise InputError(f"input not found: {clip}")
        rows = []
        if not args.streams_only:
            rows += _single_stream_rows(clip, base, modes, tmp)
        if args.streams > 1:
            import av

            with av.open(clip) as c:
                native = float(c.streams.video[0].average_rate or args.fps)
            first = apply_overrides(base, {"anonymizer.mode": modes[0]})
            camera_like = not args.streams_frame_threads
            rows.append(_streams(clip, first, args.streams, native, camera_like=camera_like))
            if args.streams_encode:
                rows.append(_streams(clip, first, args.streams, native, encode_dir=tmp, camera_like=camera_like))
        if not args.no_deface:
            rows.append(_deface(clip, base, tmp))
    meta = {"date": dt.date.today().isoformat(), "command": "streamer " + " ".join(sys.argv[1:]),
            "machine": describe_machine(args.device), "frames_per_batch": frames_per_batch(base),
            "settings": pipeline_settings(), **({"generator": generator} if generator else {})}
    print(format_table(rows))
    print(f"\n{meta['date']}, {meta['machine']}: `{meta['command']}`")
    print("settings: " + " ".join(f"{name}={value}" for name, value in meta["settings"].items()))
    if generator:
        print(f"gan rows: generator {generator}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if args.png:
        write_chart(rows, args.png)
    return 0
