"""One detector for all cameras: frames from many streams are batched into one call.

Each camera's :class:`~streamer.pipeline.FrameProcessor` gets a
:class:`SharedDetector` as its detector. A call blocks its camera thread
until the batching thread has run the real detector on a batch gathered from
every camera waiting at that moment (same-size frames only, up to
``max_batch``, after waiting at most ``window`` seconds for company). A
detector exception is returned to every caller of that batch, where
FrameProcessor's on_error policy masks or drops the frames.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

from streamer.detections import Detections


class SharedDetector:
    """Thread-safe batching front of a detector ``(list[image]) -> list[Detections]``.

    Args:
        detector: the real detector.
        max_batch: most images per detector call.
        window: seconds to wait for more requests once one arrived.

    Attributes:
        calls: detector calls made; ``images``: images detected (images / calls = mean batch).
    """

    def __init__(self, detector: Callable[[list[np.ndarray]], list[Detections]], max_batch: int = 16,
                 window: float = 0.005) -> None:
        self.detector = detector
        self.max_batch = max_batch
        self.window = window
        self.requests: queue.Queue = queue.Queue()
        self.calls = 0
        self.images = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="streamer-detector", daemon=True)
        self.thread.start()

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect faces in ``images`` (one camera's frames), batched with other cameras' frames."""
        future: Future = Future()
        self.requests.put((images, future))
        return future.result()

    def _gather(self) -> list:
        try:
            first = self.requests.get(timeout=0.2)
        except queue.Empty:
            return []
        pending = [first]
        count = len(first[0])
        deadline = time.monotonic() + self.window
        while count < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self.requests.get(timeout=left) if left > 0 else self.requests.get_nowait()
            except queue.Empty:
                break
            pending.append(item)
            count += len(item[0])
        return pending

    def _loop(self) -> None:
        while not self._stop.is_set():
            pending = self._gather()
            by_shape: dict[tuple, list] = {}
            for images, future in pending:
                key = images[0].shape if images else ()
                by_shape.setdefault(key, []).append((images, future))
            for group in by_shape.values():
                flat = [image for images, _ in group for image in images]
                try:
                    found = self.detector(flat) if flat else []
                    self.calls += 1
                    self.images += len(flat)
                except Exception as exc:  # noqa: BLE001 - handed to the callers' on_error policy
                    for _, future in group:
                        future.set_exception(exc)
                    continue
                start = 0
                for images, future in group:
                    future.set_result(found[start:start + len(images)])
                    start += len(images)

    def close(self) -> None:
        """Stop the batching thread."""
        self._stop.set()
        self.thread.join(timeout=2)
