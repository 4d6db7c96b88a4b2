"""CPU throughput and faces found: ``streamer anonymize`` vs ``deface`` on the same clips, same run.

Both run as the command a user types, timed wall-clock from process start
to exit (model loading included), alternating per clip. The detector
resolution is equal: streamer's ``--detector-width`` and deface's ``--scale``
give the same network input (both round up to multiples of 32). Faces per
frame for deface are counted with deface's own CenterFace class at that size
and threshold (a separate, untimed pass).

Usage:
    python benchmarks/compare_deface.py                       # clips in ../shared/data/videos
    python benchmarks/compare_deface.py a.mp4 b.mp4 --width 1280 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import av

from streamer.stages.detector import detector_input_size
from engines.select import describe_machine

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def probe(path: str) -> tuple[int, int, int, bool]:
    """(width, height, decoded frame count, has audio) of a clip."""
    with av.open(path) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        return v.codec_context.width, v.codec_context.height, n, any(s.type == "audio" for s in c.streams)


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command; returns (wall seconds, completed process)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def deface_faces(path: str, input_size: tuple[int, int], threshold: float) -> int:
    """Faces deface's detector finds over the whole clip (untimed)."""
    from deface.centerface import CenterFace

    cf = CenterFace(in_shape=input_size)
    total = 0
    with av.open(path) as c:
        for frame in c.decode(c.streams.video[0]):
            dets, _ = cf(frame.to_ndarray(format="rgb24"), threshold=threshold)
            total += len(dets)
    return total


def commands(path: str, size: tuple[int, int], threshold: float, has_audio: bool,
             workdir: Path) -> tuple[list[str], list[str]]:
    """The two commands compared on one clip, blurring faces with the same detector input ``size``
    (pixels) and threshold: streamer's (writes ``workdir/ours.mp4``) and deface's (``workdir/deface.mp4``)."""
    ours_cmd = [sys.executable, "-m", "streamer.cli", "anonymize", path, str(workdir / "ours.mp4"),
                "--config", "benchmark", "--mode", "blur", "--detector-width", str(size[0]),
                "--threshold", str(threshold), "--device", "cpu"]
    deface_cmd = ["deface", path, "-o", str(workdir / "deface.mp4"), "--thresh", str(threshold),
                  "--scale", f"{size[0]}x{size[1]}", "--replacewith", "blur"]
    if has_audio:
        deface_cmd.append("--keep-audio")
    return ours_cmd, deface_cmd


def run_clip(path: str, width: int, threshold: float, workdir: Path) -> dict:
    """Benchmark one clip; returns a result row."""
    w, h, frames, has_audio = probe(path)
    size = detector_input_size(w, h, width)
    ours_cmd, deface_cmd = commands(path, size, threshold, has_audio, workdir)
    ours_s, ours = timed(ours_cmd)
    deface_s, theirs = timed(deface_cmd)
    if ours.returncode or theirs.returncode:
        raise RuntimeError(f"{path}: streamer rc={ours.returncode} {ours.stderr[-300:]} / "
                           f"deface rc={theirs.returncode} {theirs.stderr[-300:]}")
    m = re.search(r"faces\s+(\d+) detected, (\d+) covered by tracker only", ours.stderr)
    detected, tracked = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
    m = re.search(r"frames\s+(\d+) in, (\d+) out", ours.stderr)
    return {
        "clip": Path(path).name, "size": f"{w}x{h}", "frames": frames, "detector_input": f"{size[0]}x{size[1]}",
        "streamer_s": round(ours_s, 2), "deface_s": round(deface_s, 2),
        "streamer_fps": round(frames / ours_s, 2), "deface_fps": round(frames / deface_s, 2),
        "speedup": round(deface_s / ours_s, 2),
        "streamer_frames_out": int(m.group(2)) if m else -1,
        "streamer_faces_per_frame": round(detected / frames, 3),
        "streamer_covered_per_frame": round((detected + tracked) / frames, 3),
        "deface_faces_per_frame": round(deface_faces(path, size, threshold) / frames, 3),
    }


def comparison_parser(description: str) -> argparse.ArgumentParser:
    """The options of a streamer-vs-deface script: clips, detector width (pixels) and threshold, --json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", help="video files (default: ../shared/data/videos/*)")
    parser.add_argument("--width", type=int, default=1280, help="detector input width, pixels (default 1280)")
    parser.add_argument("--threshold", type=float, default=0.2, help="detector threshold (deface's default 0.2)")
    parser.add_argument("--json", help="write the rows here")
    return parser


def clips_to_compare(args: argparse.Namespace) -> list[str]:
    """The clips given, else those in ../shared/data/videos (empty, with a message, where there are none)."""
    clips = args.clips or sorted(str(p) for p in SHARED_VIDEOS.glob("*") if p.suffix in (".mp4", ".avi"))
    if not clips:
        print("no clips given and ../shared/data/videos is absent", file=sys.stderr)
    return clips


def rows_per_clip(args: argparse.Namespace, run_one: Callable[[str, Path], dict]) -> list[dict] | None:
    """``run_one(clip, workdir)`` for each clip to compare (:func:`clips_to_compare`), all in one temporary
    folder, each row printed to stderr as JSON as it comes; None where there are no clips."""
    clips = clips_to_compare(args)
    if not clips:
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            rows.append(run_one(clip, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print a Markdown table."""
    args = comparison_parser(__doc__).parse_args(argv)
    rows = rows_per_clip(args, lambda clip, workdir: run_clip(clip, args.width, args.threshold, workdir))
    if rows is None:
        return 2
    total_frames = sum(r["frames"] for r in rows)
    overall = {
        "streamer_fps": round(total_frames / sum(r["streamer_s"] for r in rows), 2),
        "deface_fps": round(total_frames / sum(r["deface_s"] for r in rows), 2),
    }
    overall["speedup"] = round(overall["streamer_fps"] / overall["deface_fps"], 2)
    meta = {"date": dt.date.today().isoformat(), "machine": describe_machine("cpu"),
            "command": "python " + " ".join(sys.argv)}
    print("| clip | size | frames | detector input | streamer fps | deface fps | speed-up | "
          "faces/frame streamer (raw / +tracker) | faces/frame deface |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['size']} | {r['frames']} | {r['detector_input']} | {r['streamer_fps']} | "
              f"{r['deface_fps']} | {r['speedup']}x | {r['streamer_faces_per_frame']} / "
              f"{r['streamer_covered_per_frame']} | {r['deface_faces_per_frame']} |")
    print(f"| **all clips** | | {total_frames} | | {overall['streamer_fps']} | {overall['deface_fps']} | "
          f"{overall['speedup']}x | | |")
    print(f"\n{meta['date']}, {meta['machine']}: `{meta['command']}`")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "overall": overall, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
