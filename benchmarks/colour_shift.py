"""How far a colour-bar frame's YUV values move through an RGB round trip, per way of converting.

"before" is what the pipeline did until 2026-11-26 on a tagged input: decode with the frame's own
matrix (PyAV follows the tag) and encode with FFmpeg's default (BT.601), untagged. "now" converts
both ways with the stream's matrix and range (:mod:`streamer.colour`).

Usage:
    python benchmarks/colour_shift.py
"""

from __future__ import annotations

import av
import numpy as np

from streamer.colour import ColourInfo, rgb_to_video_frame, video_frame_to_rgb
from streamer.sample import colour_bars


def main() -> None:
    """Print the mean and largest change of Y and of U/V for each input colour description."""
    print("| input | way | Y mean | Y max | UV mean | UV max |\n|---|---|---:|---:|---:|---:|")
    for name, colour in [("BT.709", ColourInfo(1, 1, 1, 1)), ("BT.709 full range", ColourInfo(1, 2, 1, 1)),
                         ("unspecified", ColourInfo())]:
        frame = rgb_to_video_frame(colour_bars(), colour, "yuv420p")
        original = frame.to_ndarray()
        rows = original.shape[0] * 2 // 3
        before = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24").reformat(
            format="yuv420p").to_ndarray()
        now = rgb_to_video_frame(video_frame_to_rgb(frame), colour, "yuv420p").to_ndarray()
        for way, out in (("before", before), ("now", now)):
            d = np.abs(out.astype(int) - original.astype(int))
            print(f"| {name} | {way} | {d[:rows].mean():.1f} | {d[:rows].max()} | {d[rows:].mean():.1f} | "
                  f"{d[rows:].max()} |")


if __name__ == "__main__":
    main()
