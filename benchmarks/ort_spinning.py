"""Does letting ONNX Runtime's idle threads spin help or hurt the whole pipeline?

Runs the same clip through the pipeline with ``STREAMER_ORT_SPINNING`` off and
on, alternating, ``--repeats`` times each: full blur pipeline into a file (the
detector is the only session) and gan mode to a null sink (detector and
generator sessions take turns; random generator weights, same cost as trained
ones). Prints a markdown table of fps (median of the repeats) and per-stage
p50 ms, and writes it to ``--out``.

    python benchmarks/ort_spinning.py --repeats 3 --out benchmarks/results/ort-spinning-cpu-2026-11-26.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.cli import run_variant
from engines.generator import use_generator_weights
from engines.runner import ORT_SPINNING_ENV
from engines.select import describe_machine
from streamer.config import apply_overrides, load_config
from streamer.sample import make_sample_clip


def run_once(clip: str, mode: str, workdir: str):
    """One pipeline run of ``clip`` in ``mode`` on the CPU with fresh sessions (blur into a file,
    gan to a null sink); returns its RunStats."""
    config = apply_overrides(load_config("benchmark"), {"anonymizer.mode": mode, "pipeline.device": "cpu"})
    return run_variant(clip, config, os.path.join(workdir, "out.mp4") if mode == "blur" else None, True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="synthetic clip length, seconds")
    ap.add_argument("--size", default="1920x1080", help="synthetic clip size WxH")
    ap.add_argument("--faces", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="write the markdown table here")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        use_generator_weights("random", tmp)
        clip = make_sample_clip(os.path.join(tmp, "clip.mp4"), seconds=args.seconds, fps=30, width=w, height=h,
                                faces=args.faces).path
        for mode, label in (("blur", "full pipeline, blur (file)"), ("gan", "null sink, gan")):
            results: dict[str, list] = {"off": [], "on": []}
            for _ in range(args.repeats):
                for spin in ("off", "on"):
                    os.environ[ORT_SPINNING_ENV] = "1" if spin == "on" else "0"
                    results[spin].append(run_once(clip, mode, tmp))
            for spin, runs in results.items():
                fps = [r.fps for r in runs]
                p50 = {k: statistics.median(r.stage_percentiles()[k][0] for r in runs)
                       for k in ("detect", "anonymize")}
                rows.append(f"| {label} | {spin} | {statistics.median(fps):.2f} ({min(fps):.2f}-{max(fps):.2f}) | "
                            f"{p50['detect']:.0f} | {p50['anonymize']:.0f} |")
    table = "\n".join([
        f"# ONNX Runtime thread spinning in the pipeline ({dt.date.today().isoformat()})", "",
        f"Machine: {describe_machine('cpu')}. Command: `python {' '.join(sys.argv)}`.",
        f"Clip: synthetic {w}x{h}@30, {args.seconds:g} s, {args.faces} faces; `benchmark` preset; "
        f"{args.repeats} alternating repeats per setting (median, min-max).", "",
        "| run | spinning | fps | detect p50 ms | anonymize p50 ms |", "|---|---|---|---|---|", *rows, ""])
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
