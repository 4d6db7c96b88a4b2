"""What the CPU's conversion to RGB costs on top of decoding: decode only, decode + YUV planes, decode + RGB.

The GPU pipeline without NVDEC decodes on the CPU and uploads either RGB
(converted by FFmpeg's swscale) or the YUV 4:2:0 planes (converted on the
GPU, :mod:`streamer.sources.yuv_upload`). This times the three on one clip,
alternating, best of ``--repeats``.

Usage:
    python benchmarks/decode_rgb_cost.py --seconds 4 --size 1920x1080 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time

import av

from streamer.colour import video_frame_to_rgb
from streamer.sample import make_sample_clip

VARIANTS = {
    "decode only": lambda frame: None,
    "decode + YUV planes": lambda frame: frame.to_ndarray(),
    "decode + RGB (swscale)": video_frame_to_rgb,
}


def time_variants(path: str, repeats: int) -> dict[str, float]:
    """Best milliseconds per frame of each variant over ``repeats`` alternating passes."""
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(repeats):
        for name, convert in VARIANTS.items():
            with av.open(path) as container:
                container.streams.video[0].thread_type = "AUTO"
                start, frames = time.perf_counter(), 0
                for frame in container.decode(video=0):
                    convert(frame)
                    frames += 1
                best[name] = min(best[name], (time.perf_counter() - start) * 1000 / frames)
    return best


def main(argv: list[str] | None = None) -> None:
    """Print a table of ms per frame and frames per second."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="sample clip length, seconds")
    parser.add_argument("--size", default="1920x1080", help="sample clip size WxH, pixels")
    parser.add_argument("--repeats", type=int, default=3, help="alternating passes; the best counts")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_sample_clip(f"{tmp}/clip.mp4", seconds=args.seconds, fps=30, width=width, height=height,
                                faces=4, audio=False)
        results = time_variants(clip.path, args.repeats)
    print(f"| {args.size} H.264 (libx264 sample clip) | ms / frame | frames / s |\n|---|---:|---:|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.2f} | {1000 / ms:.0f} |")


if __name__ == "__main__":
    main()
