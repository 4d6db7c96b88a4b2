"""Benchmarks: `streamer bench` (cli.py) and standalone measurement scripts."""

from __future__ import annotations

import threading
import time
from typing import Callable


def run_on_threads(target: Callable[[int], None], count: int) -> float:
    """Run ``target(0)`` ... ``target(count - 1)`` on ``count`` threads at once; the wall time (seconds)
    until the last returned."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start
