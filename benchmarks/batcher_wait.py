"""What the shared models' batching window costs a camera: time per call through a SharedBatcher.

Cameras (threads) call a shared stand-in model that sleeps 1 ms per batch, back to back, 200 calls
each; prints per-call p50 (milliseconds), calls made, mean batch and requests per second for 1 and
4 cameras. A batch waits at most ``--window-ms`` for company, and (since 2026-11-27) not for cameras
that cannot come: alone, a camera should pay the model's 1 ms, not the window on top.

Usage:
    python benchmarks/batcher_wait.py [--window-ms 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import run_on_threads
from streamer.live.batcher import SharedBatcher


def measure(cameras: int, window_s: float, calls: int = 200) -> str:
    """One row: ``cameras`` threads, ``calls`` calls each, through a 1 ms stand-in model."""
    def model(requests: list) -> list:
        time.sleep(0.001)
        return requests

    batcher = SharedBatcher(model, window=window_s)
    per_call: list[float] = []

    def camera(_: int) -> None:
        for i in range(calls):
            t = time.perf_counter()
            batcher.submit([i])
            per_call.append(time.perf_counter() - t)

    wall = run_on_threads(camera, cameras)
    batcher.close()
    return (f"| {cameras} | {statistics.median(per_call) * 1000:.2f} | {batcher.calls} | "
            f"{batcher.items / batcher.calls:.2f} | {cameras * calls / wall:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-ms", type=float, default=5.0, help="batching window (ms; the server's default 5)")
    args = ap.parse_args()
    print("| cameras | per call p50 (ms) | calls | mean batch | requests/s |\n|---|---|---|---|---|")
    for cameras in (1, 4):
        print(measure(cameras, args.window_ms / 1000))


if __name__ == "__main__":
    main()
