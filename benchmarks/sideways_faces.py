"""Faces found in video stored sideways with a display rotation (phones filming in portrait).

Each clip's first frames are copied twice with :func:`streamer.sample.turned_copy`: as they are
(rotation 0) and stored a quarter turn away with a display rotation that turns them back (-90
degrees, what a phone held upright writes). Players show both copies alike. The faces CenterFace
detects (raw detections, no tracker) are counted through the file pipeline for the upright copy,
for the sideways copy as streamer reads it now (turned upright first), and for the sideways copy
processed as stored (what streamer did before 2026-11-26 and what a decoder hands over).

Usage:
    python benchmarks/sideways_faces.py [--frames 60] [CLIP ...]   # default: ../shared/data/videos/*
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from streamer.config import apply_overrides, load_config
from streamer.orientation import Orientation
from streamer.pipeline import run_pipeline
from streamer.sample import turned_copy
from streamer.sinks.null import NullSink
from streamer.sources.video_file import VideoFileSource

#: Clips measured when none are named.
SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def faces_detected(path: str, as_stored: bool = False) -> int:
    """Raw detections over every frame of ``path`` in mask mode, tracker off; ``as_stored`` ignores
    the display rotation (the pictures go to the detector as the file stores them)."""
    config = apply_overrides(load_config(None), {"anonymizer.mode": "mask", "tracker.enabled": False})
    source = VideoFileSource(path)
    if as_stored:
        source.info.orientation = Orientation()
    return run_pipeline(source, NullSink(), config).faces_detected


def main() -> None:
    """Print a markdown table: faces found upright, sideways now, sideways as stored."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", help="video files (default: ../shared/data/videos/*)")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (default 60)")
    args = parser.parse_args()
    clips = args.clips or sorted(str(p) for p in SHARED_VIDEOS.glob("*") if p.suffix in (".mp4", ".avi"))
    print("| clip | frames | upright | sideways, turned upright (now) | sideways, as stored (before) |")
    print("|---|---:|---:|---:|---:|")
    totals = [0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            upright_copy, sideways_copy = f"{tmp}/upright.mp4", f"{tmp}/sideways.mp4"
            frames = turned_copy(clip, upright_copy, rotation=0, max_frames=args.frames)
            turned_copy(clip, sideways_copy, rotation=-90, max_frames=args.frames)
            counts = [faces_detected(upright_copy), faces_detected(sideways_copy),
                      faces_detected(sideways_copy, as_stored=True)]
            totals = [t + c for t, c in zip(totals, counts)]
            print(f"| {Path(clip).name} | {frames} | {counts[0]} | {counts[1]} | {counts[2]} |", flush=True)
    print(f"| **all** | | {totals[0]} | {totals[1]} | {totals[2]} |")


if __name__ == "__main__":
    main()
