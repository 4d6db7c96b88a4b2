"""Shared models across cameras: requests from many threads batched into one call, results routed back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamer.live.batcher import CAMERA_ID_SHIFT, SharedAnonymizer, SharedBatcher, SharedDetector, merge_crops
from streamer.stages.anonymizers import FaceCrops


def _concurrently(fns, batcher: SharedBatcher | None = None, warm_ups=None):
    """Each fn on its own thread at once; the results in order. With ``batcher``, each thread first calls
    its warm-up (default: its fn) once, as a running camera has called before (a batch waits only for
    cameras it has seen call), and the batcher's ``calls`` and ``items`` are reset before the concurrent
    round."""
    warm_ups = warm_ups or fns
    results = [None] * len(fns)

    def reset():
        batcher.calls = batcher.items = 0

    barrier = threading.Barrier(len(fns), action=reset) if batcher else None

    def run(i):
        if barrier:
            warm_ups[i]()
            barrier.wait(timeout=30)
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def _returns_within(fn, seconds: float) -> bool:
    """Whether ``fn()`` (run on its own thread) returns within ``seconds``."""
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return not thread.is_alive()


def test_requests_of_many_threads_share_calls_and_get_their_own_results():
    seen = []

    def run(requests):
        seen.append([len(r) for r in requests])
        return [[x * 10 for x in r] for r in requests]

    batcher = SharedBatcher(run, max_batch=64, window=0.5)  # a long window: all 8 threads fit one call
    try:
        out = _concurrently([lambda i=i: batcher.submit([i] * (i + 1)) for i in range(8)], batcher)
    finally:
        batcher.close()
    assert out == [[i * 10] * (i + 1) for i in range(8)]
    assert batcher.items == 36 and batcher.calls < 8, seen


def test_a_lone_camera_never_waits_for_company():
    """One caller: its requests run at once, however long the window (a camera alone on a server lost
    5 ms per shared model per frame to the window: 24 of 30 fps out on an H100, 2026-11-27)."""
    batcher = SharedBatcher(lambda requests: requests, window=30)
    try:
        assert _returns_within(lambda: [batcher.submit([i]) for i in range(3)], 5)
    finally:
        batcher.close()
    assert batcher.calls == 3


def test_a_camera_back_from_a_slow_call_is_still_waited_for():
    """Two cameras whose last call took longer than CLIENT_IDLE_S (a big batch on a CPU) call again, the second
    50 ms after the first: one call for both. Until 2026-11-27 a camera counted as idle from the moment it
    submitted, so after a slow call the next batch waited for nobody (found as two flaky tests in a
    clean-clone CI: a warm-up call that queued behind another made its camera look gone)."""
    from streamer.live.batcher import CLIENT_IDLE_S

    def run(requests):
        if "slow" in requests:
            time.sleep(CLIENT_IDLE_S + 0.3)
        return requests

    batcher = SharedBatcher(run, window=30)
    try:
        out = _concurrently([lambda: batcher.submit("a"), lambda: time.sleep(0.05) or batcher.submit("b")],
                            batcher, warm_ups=[lambda: batcher.submit("slow")] * 2)
    finally:
        batcher.close()
    assert out == ["a", "b"]
    assert batcher.calls == 1


def test_a_camera_blocked_in_another_shared_model_is_not_waited_for():
    """Camera B, seen by the detector a moment ago, is now inside the compositor's call: camera A's
    detector call runs without waiting the window for B."""
    release = threading.Event()
    detector = SharedBatcher(lambda requests: requests, window=30, name="detector")
    compositor = SharedBatcher(lambda requests: [release.wait(30) and r for r in requests], name="compositor")
    b_in_compositor = threading.Event()

    def camera_b():
        detector.submit(["b"])  # seen by the detector alone: runs at once
        b_in_compositor.set()
        compositor.submit(["b"])  # blocks until released

    thread_b = threading.Thread(target=camera_b, daemon=True)
    try:
        thread_b.start()
        assert b_in_compositor.wait(5)
        time.sleep(0.1)  # B is inside the compositor's call now
        assert _returns_within(lambda: detector.submit(["a"]), 5)
    finally:
        release.set()
        thread_b.join(5)
        detector.close()
        compositor.close()


def test_requests_with_different_keys_never_share_a_call_and_errors_reach_every_caller():
    calls = []

    def run(requests):
        calls.append(requests)
        if requests[0][0] == "bad":
            raise RuntimeError("model failed")
        return [r[1] for r in requests]

    batcher = SharedBatcher(run, size=lambda r: 1, key=lambda r: r[0], window=0.3)
    try:
        def submit(kind, value):
            try:
                return batcher.submit((kind, value))
            except RuntimeError as exc:
                return str(exc)
        out = _concurrently([lambda: submit("a", 1), lambda: submit("b", 2), lambda: submit("bad", 3)])
    finally:
        batcher.close()
    assert out == [1, 2, "model failed"]
    assert all(len({r[0] for r in requests}) == 1 for requests in calls)


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_batch"):
        SharedBatcher(lambda r: r, max_batch=0)
    with pytest.raises(ValueError, match="window"):
        SharedBatcher(lambda r: r, window=-1)


def test_shared_detector_splits_a_batch_back_per_camera():
    def detect(images):
        return [float(image.mean()) for image in images]

    shared = SharedDetector(detect, window=0.3)
    try:
        frames = [[np.full((4, 4, 3), 10 * c + k, np.uint8) for k in range(c + 1)] for c in range(3)]
        out = _concurrently([lambda f=f: shared(f) for f in frames], shared)
        assert shared([]) == []
    finally:
        shared.close()
    assert out == [[float(10 * c + k) for k in range(c + 1)] for c in range(3)]
    assert shared.calls < 3


def _crops(n: int, track_ids, value: int = 100) -> FaceCrops:
    images = [np.full((128, 128, 3), value, np.uint8) for _ in range(n)]
    boxes = np.tile(np.array([[32, 32, 96, 96]], np.float32), (n, 1))
    kps = np.tile(np.array([[[50, 50], [78, 50], [64, 64], [54, 80], [74, 80]]], np.float32), (n, 1, 1))
    return FaceCrops(images=images, boxes=boxes, keypoints=kps, track_ids=np.asarray(track_ids, np.int64))


def test_merge_crops_keeps_order():
    a, b = _crops(2, [1, 2], 10), _crops(1, [-1], 20)
    merged = merge_crops([a, b])
    assert len(merged) == 3 and merged.track_ids.tolist() == [1, 2, -1]
    assert [int(i[0, 0, 0]) for i in merged.images] == [10, 10, 20]


def test_one_generator_for_all_cameras_batches_faces_and_keeps_identities_apart():
    """Two cameras through one shared generator: their faces go through one call, camera 0
    gets what an unshared generator gives, and track 1 on camera 1 (another person)
    gets another fake face than track 1 on camera 0."""
    from engines.generator.model import random_generator
    from streamer.stages.gan import GanAnonymizer

    gan = GanAnonymizer.from_module(random_generator(seed=0))
    direct = gan.anonymize(_crops(2, [1, 2]))
    shared = SharedAnonymizer(gan, window=0.5)
    cam0, cam1 = shared.for_camera(0), shared.for_camera(1)
    try:
        out0, out1 = _concurrently([lambda: cam0.anonymize(_crops(2, [1, 2])),
                                    lambda: cam1.anonymize(_crops(2, [1, 2]))], shared)
    finally:
        shared.close()
    assert (shared.calls, shared.items) == (1, 4)
    assert cam1.offset == 1 << CAMERA_ID_SHIFT and (cam0.name, cam0.input_size) == ("gan", 128)
    # same faces as unshared (batch size changes float rounding by a grey level at most)
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(out0, direct)) <= 2
    diff = np.abs(out0[0].astype(int) - out1[0].astype(int)).mean()
    assert diff > 5, f"track 1 of two cameras got the same fake face (mean difference {diff:.2f})"


def test_shared_generator_takes_tensor_batches_from_the_gpu_compositor():
    """The GPU compositor hands (N, 3, 128, 128) tensors: merged with torch.cat, split back per camera."""
    import torch

    from engines.generator.model import random_generator
    from streamer.stages.gan import GanAnonymizer

    shared = SharedAnonymizer(GanAnonymizer.from_module(random_generator(seed=0)), window=0.5)

    def run(index: int, n: int):
        crops = _crops(n, list(range(n)))
        images = torch.from_numpy(np.stack(crops.images)).permute(0, 3, 1, 2).float()
        return shared.for_camera(index).anonymize_tensor(FaceCrops(images=images, boxes=crops.boxes,
                                                                    keypoints=crops.keypoints,
                                                                    track_ids=crops.track_ids))
    try:
        out = _concurrently([lambda: run(0, 2), lambda: run(1, 3)], shared)
    finally:
        shared.close()
    assert [tuple(o.shape) for o in out] == [(2, 3, 128, 128), (3, 3, 128, 128)]
    assert (shared.calls, shared.items) == (1, 5)


def test_one_gpu_compositor_for_all_cameras_takes_their_frames_in_one_call():
    """Two cameras' frames through one shared torch compositor (on the CPU here): one call for both,
    the same pictures as each camera's own compositor, track ids apart inside and restored after."""
    from skimage import data

    from streamer.config import AnonymizerConfig
    from streamer.detections import Detections, Frame
    from streamer.live.batcher import CameraCompositor, SharedCompositor
    from streamer.sample import ASTRONAUT_FACE_BOX
    from streamer.stages.anonymizers import Blur
    from streamer.stages.torch_compositor import TorchCompositor

    seen_ids: list[list[int]] = []

    class RecordingBlur(Blur):  # the real blur, recording the track ids it is given
        def anonymize_tensor(self, crops):
            seen_ids.append(sorted(int(t) for t in crops.track_ids))
            return super().anonymize_tensor(crops)

    def frames(shift: int) -> list[Frame]:
        out = []
        for i in range(2):
            image = np.ascontiguousarray(np.roll(data.astronaut(), 20 * i + shift, axis=1))
            box = ASTRONAUT_FACE_BOX + [20 * i + shift, 0, 20 * i + shift, 0]
            out.append(Frame(index=i, pts=i, time_base=None, image=image,
                             detections=Detections(xyxy=[box], scores=[0.9], track_ids=[i + 1])))
        return out

    expected = [frames(0), frames(7)]
    for batch in expected:
        TorchCompositor(AnonymizerConfig(mode="blur"), device="cpu").anonymize_frames(batch)
    shared = SharedCompositor(TorchCompositor(AnonymizerConfig(mode="blur"), device="cpu", anonymizer=RecordingBlur()),
                              window=0.5)
    cams = [shared.for_camera(0), shared.for_camera(1)]
    mine = [frames(0), frames(7)]
    try:
        counts = _concurrently([lambda: cams[0].anonymize_frames(mine[0]), lambda: cams[1].anonymize_frames(mine[1])],
                               shared, warm_ups=[lambda: cams[0].anonymize_frames(frames(0)),
                                                 lambda: cams[1].anonymize_frames(frames(7))])
    finally:
        shared.close()
    assert (shared.calls, shared.items) == (1, 4) and isinstance(cams[1], CameraCompositor)
    assert [[c["blur"] for c in per_camera] for per_camera in counts] == [[1, 1], [1, 1]]
    assert seen_ids[-1] == [1, 2, 1 + (1 << CAMERA_ID_SHIFT), 2 + (1 << CAMERA_ID_SHIFT)]  # after the warm-ups
    for got, want in zip(mine, expected):
        for a, b in zip(got, want):
            assert np.array_equal(a.image, b.image)  # what each camera's own compositor gives
            assert a.detections.track_ids.tolist() == b.detections.track_ids.tolist()  # restored
    assert not np.array_equal(mine[0][0].image, data.astronaut())  # and the face did change
