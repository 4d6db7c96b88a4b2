"""One detector and one face generator for all cameras, each call batched across streams.

Each camera thread calls a shared model as if it were its own; the call blocks
until a batching thread has run the real model on a batch gathered from every
camera waiting at that moment (up to ``max_batch`` items, after waiting at
most ``window`` seconds for company; requests that cannot share a call, such
as frames of different sizes, go in separate calls). The wait ends early
once every camera that could come is in the batch: a camera that has neither
called nor got a result for :data:`CLIENT_IDLE_S` seconds, or that is blocked in another
shared model's call, is not waited for (one camera alone never waits). An exception is returned
to every caller of that batch, where FrameProcessor's on_error policy masks
or drops the frames.

* :class:`SharedDetector`: frames in, one :class:`Detections` per frame out.
* :class:`SharedAnonymizer`: face crops in (the generator's FP16 batch on the
  GPU), anonymized crops out; :meth:`SharedAnonymizer.for_camera` gives each
  camera its own view, whose track ids are made distinct from other cameras'
  so two people on two cameras never share a fake face.
* :class:`SharedCompositor`: on a GPU, whole frames with their tracked faces
  in, anonymized in place: the frames of every waiting camera go through one
  :meth:`~streamer.stages.torch_compositor.TorchCompositor.anonymize_frames`
  call (one gather, one generator call, one blend pass), whose fixed cost in
  kernel launches a camera would otherwise pay on each of its frames.

Example:
    >>> batcher = SharedBatcher(lambda requests: [sum(r) for r in requests], size=len)
    >>> batcher.submit([1, 2, 3])
    6
    >>> batcher.close()
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Hashable

import dataclasses
from collections import Counter

import numpy as np

from streamer.detections import Detections, Frame
from streamer.stages.anonymizers import Anonymizer, FaceCrops

#: Track ids of camera k are offset by k << CAMERA_ID_SHIFT in the shared generator.
CAMERA_ID_SHIFT = 32

#: A calling thread (a camera) that has not submitted for this many seconds is not waited for: it is
#: reconnecting, or gone.
CLIENT_IDLE_S = 1.0

#: Thread id -> the batcher whose result that thread is blocked on. A batch does not wait for a camera
#: blocked in another batcher's call (a camera in the compositor cannot reach the detector before it returns).
_BLOCKED_IN: dict[int, "SharedBatcher"] = {}


class SharedBatcher:
    """Thread-safe front that merges concurrent requests into batched calls.

    Args:
        run: runs one batch: a list of requests (all with the same ``key``) in,
            one result per request out, in order.
        size: items in a request, counted against ``max_batch``.
        key: requests with different keys never share a call.
        max_batch: most items per call (a single larger request still runs whole).
        window: seconds to wait for more requests once one arrived.
        name: name of the batching thread.

    Attributes:
        calls: batched calls made; ``items``: items in them (items / calls = mean batch).
    """

    def __init__(self, run: Callable[[list], list], size: Callable[[Any], int] = len,
                 key: Callable[[Any], Hashable] = lambda request: None, max_batch: int = 16,
                 window: float = 0.005, name: str = "streamer-batcher") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window}")
        self.run, self.size, self.key = run, size, key
        self.max_batch = max_batch
        self.window = window
        self.requests: queue.Queue = queue.Queue()
        self.calls = 0
        self.items = 0
        self._last_seen: dict[int, float] = {}  # thread id -> time.monotonic() it last submitted or got a result
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def submit(self, request: Any) -> Any:
        """Run ``request`` in the next batch; blocks until its result (or exception) is ready."""
        future: Future = Future()
        client = threading.get_ident()
        self._last_seen[client] = time.monotonic()
        _BLOCKED_IN[client] = self
        try:
            self.requests.put((request, future, client))
            return future.result()
        finally:
            _BLOCKED_IN.pop(client, None)
            # waiting for its result is not being idle: a call slower than CLIENT_IDLE_S (a big batch on a
            # CPU) made every camera in it look gone, and the next batch then waited for none of them
            self._last_seen[client] = time.monotonic()

    def _expected_clients(self, now: float) -> set[int]:
        """Threads a batch may wait for: those that submitted or got a result within :data:`CLIENT_IDLE_S` seconds
        and are not blocked in another batcher's call. Idle threads are forgotten (cameras come and go)."""
        expected = set()
        for client, last in list(self._last_seen.items()):
            if now - last >= CLIENT_IDLE_S:
                self._last_seen.pop(client, None)
            elif _BLOCKED_IN.get(client, self) is self:
                expected.add(client)
        return expected

    def _gather(self) -> list:
        """The next batch: a first request, then more until ``max_batch`` items, ``window`` seconds, or
        every expected client is in (:meth:`_expected_clients`); ``(request, future, client)`` tuples."""
        try:
            first = self.requests.get(timeout=0.2)
        except queue.Empty:
            return []
        pending = [first]
        count = self.size(first[0])
        deadline = time.monotonic() + self.window
        clients = {first[2]}
        while count < self.max_batch:
            try:
                item = self.requests.get_nowait()
            except queue.Empty:
                now = time.monotonic()
                left = deadline - now
                if left <= 0 or self._expected_clients(now) <= clients:
                    break
                try:  # wait in short steps: a client may block elsewhere or fall idle meanwhile
                    item = self.requests.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            pending.append(item)
            clients.add(item[2])
            count += self.size(item[0])
        return pending

    def _loop(self) -> None:
        while not self._stop.is_set():
            groups: dict[Hashable, list] = {}
            for request, future, _ in self._gather():
                groups.setdefault(self.key(request), []).append((request, future))
            for group in groups.values():
                requests = [request for request, _ in group]
                try:
                    results = self.run(requests)
                    self.calls += 1
                    self.items += sum(self.size(r) for r in requests)
                except Exception as exc:  # noqa: BLE001 - handed to the callers' on_error policy
                    for _, future in group:
                        future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results):
                    future.set_result(result)

    def close(self) -> None:
        """Stop the batching thread."""
        self._stop.set()
        self.thread.join(timeout=2)


def _split(batch, lengths: list[int]) -> list:
    """Cut a batched output (list or tensor) back into per-request pieces of ``lengths``."""
    pieces, start = [], 0
    for n in lengths:
        pieces.append(batch[start:start + n])
        start += n
    return pieces


class SharedDetector(SharedBatcher):
    """Batching front of a detector ``(list[image]) -> list[Detections]``, shared by all cameras.

    A runner with CUDA graphs is told to capture every batch size up to ``max_batch`` at its first call:
    how many cameras' frames meet in a call varies, and each new size would otherwise stop every camera
    for a capture mid-stream.

    Args:
        detector: the real detector.
        max_batch: most frames per detector call.
        window: seconds to wait for more frames once one arrived.
    """

    def __init__(self, detector: Callable[[list[np.ndarray]], list[Detections]], max_batch: int = 16,
                 window: float = 0.005) -> None:
        self.detector = detector
        runner = self.runner
        if hasattr(runner, "prepare_up_to"):  # engines.torch_runner.TorchRunner
            runner.prepare_up_to = max(runner.prepare_up_to, max_batch)
        super().__init__(self._detect, size=len, key=lambda images: tuple(images[0].shape), max_batch=max_batch,
                         window=window, name="streamer-detector")

    @property
    def runner(self):
        """The real detector's runner (its ``backend`` says where the network runs)."""
        return getattr(self.detector, "runner", None)

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect faces in ``images`` (one camera's frames), batched with other cameras' frames."""
        return self.submit(images) if len(images) else []

    def _detect(self, requests: list[list[np.ndarray]]) -> list[list[Detections]]:
        found = self.detector([image for images in requests for image in images])
        return _split(found, [len(images) for images in requests])


def merge_crops(parts: list[FaceCrops]) -> FaceCrops:
    """One FaceCrops holding every crop of ``parts``, in order (tensor batches are concatenated)."""
    images = [p.images for p in parts]
    if all(hasattr(i, "shape") and not isinstance(i, list) for i in images):  # (N, 3, s, s) tensors
        import torch

        merged = torch.cat(images) if len(images) > 1 else images[0]
    else:
        merged = [image for i in images for image in i]
    return FaceCrops(images=merged, boxes=np.concatenate([p.boxes for p in parts]),
                     keypoints=np.concatenate([p.keypoints for p in parts]),
                     track_ids=np.concatenate([p.track_ids for p in parts]))


class SharedAnonymizer(SharedBatcher):
    """One anonymizer (the face generator) for all cameras: their crops batched into one call.

    Args:
        anonymizer: the real anonymizer (e.g. :class:`streamer.stages.gan.GanAnonymizer`).
        max_batch: most faces per call.
        window: seconds to wait for more faces once some arrived.
    """

    def __init__(self, anonymizer: Anonymizer, max_batch: int = 64, window: float = 0.005) -> None:
        self.anonymizer = anonymizer
        super().__init__(self._anonymize, size=lambda request: len(request[1]), key=lambda request: request[0],
                         max_batch=max_batch, window=window, name="streamer-generator")

    def for_camera(self, index: int) -> "CameraAnonymizer":
        """The anonymizer camera number ``index`` (0, 1, ...) uses."""
        return CameraAnonymizer(self, index)

    def _anonymize(self, requests: list[tuple[str, FaceCrops]]) -> list:
        method = requests[0][0]
        out = getattr(self.anonymizer, method)(merge_crops([crops for _, crops in requests]))
        return _split(out, [len(crops) for _, crops in requests])


def camera_track_ids(track_ids: np.ndarray, offset: int) -> np.ndarray:
    """Track ids made distinct across cameras: ``offset`` added to tracked faces, -1 (untracked) kept."""
    ids = np.asarray(track_ids, np.int64)
    return np.where(ids >= 0, ids + offset, ids)


class _CameraView:
    """One camera's view of a shared batcher: camera ``index``'s track ids are offset by
    ``index << CAMERA_ID_SHIFT`` inside it (camera 0's are unchanged)."""

    def __init__(self, shared: SharedBatcher, index: int) -> None:
        if index < 0:
            raise ValueError(f"camera index must be >= 0, got {index}")
        self.shared = shared
        self.offset = index << CAMERA_ID_SHIFT


class CameraAnonymizer(_CameraView):
    """One camera's view of a :class:`SharedAnonymizer`: the Anonymizer interface, batched behind it.

    Track ids of camera ``index`` are offset by ``index << CAMERA_ID_SHIFT``, so
    track 1 of two cameras (two different people) get different fake faces;
    camera 0's ids are unchanged.
    """

    def __init__(self, shared: SharedAnonymizer, index: int) -> None:
        super().__init__(shared, index)
        self.name = shared.anonymizer.name
        self.context = shared.anonymizer.context
        self.input_size = shared.anonymizer.input_size
        self.mask_scale = shared.anonymizer.mask_scale

    def _own(self, crops: FaceCrops) -> FaceCrops:
        return FaceCrops(images=crops.images, boxes=crops.boxes, keypoints=crops.keypoints,
                         track_ids=camera_track_ids(crops.track_ids, self.offset))

    def anonymize(self, crops: FaceCrops) -> list[np.ndarray]:
        """See :meth:`streamer.stages.anonymizers.Anonymizer.anonymize`."""
        return self.shared.submit(("anonymize", self._own(crops))) if len(crops) else []

    def anonymize_tensor(self, crops: FaceCrops):
        """See :meth:`streamer.stages.anonymizers.Anonymizer.anonymize_tensor`."""
        return self.shared.submit(("anonymize_tensor", self._own(crops)))


class SharedCompositor(SharedBatcher):
    """One GPU compositor for the cameras with the same anonymizer settings: their frames anonymized in
    one :meth:`~streamer.stages.torch_compositor.TorchCompositor.anonymize_frames` call.

    Args:
        compositor: the real compositor (a :class:`~streamer.stages.torch_compositor.TorchCompositor`
            that downloads its results: live outputs read ``Frame.image``).
        max_batch: most frames per call.
        window: seconds to wait for more frames once one arrived.
    """

    def __init__(self, compositor, max_batch: int = 16, window: float = 0.005) -> None:
        self.compositor = compositor
        super().__init__(self._anonymize, size=len, key=lambda frames: tuple(frames[0].shape), max_batch=max_batch,
                         window=window, name="streamer-compositor")

    def for_camera(self, index: int) -> "CameraCompositor":
        """The compositor camera number ``index`` (0, 1, ...) uses."""
        return CameraCompositor(self, index)

    def _anonymize(self, requests: list[list[Frame]]) -> list[list[Counter]]:
        counts = self.compositor.anonymize_frames([frame for frames in requests for frame in frames])
        return _split(counts, [len(frames) for frames in requests])


class CameraCompositor(_CameraView):
    """One camera's view of a :class:`SharedCompositor`, with the compositor interface
    :class:`~streamer.pipeline.FrameProcessor` uses (``upload``, ``anonymize_frames``).

    Track ids of camera ``index`` are offset by ``index << CAMERA_ID_SHIFT`` while its frames are in
    the shared call, so two cameras' track 1 (two people) get different fake faces.
    """

    def __init__(self, shared: SharedCompositor, index: int) -> None:
        super().__init__(shared, index)
        self.anonymizer = shared.compositor.anonymizer

    def upload(self, frames: list[Frame]) -> None:
        """Put the frames on the compositor's device (see ``TorchCompositor.upload``)."""
        self.shared.compositor.upload(frames)

    def anonymize_frames(self, frames: list[Frame]) -> list[Counter]:
        """Anonymize this camera's frames in place, batched with other cameras' frames; per frame, the
        faces each anonymizer handled."""
        if not frames:
            return []
        own = [frame.detections for frame in frames]
        for frame, detections in zip(frames, own):
            frame.detections = dataclasses.replace(detections,
                                                   track_ids=camera_track_ids(detections.track_ids, self.offset))
        try:
            return self.shared.submit(frames)
        finally:
            for frame, detections in zip(frames, own):
                frame.detections = detections
