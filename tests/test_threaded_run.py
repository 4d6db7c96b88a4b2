"""ThreadedRun: stages on their own threads keep frame and packet order, and any stage's error stops
the run (no hang, the error re-raised)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamer.detections import Frame
from streamer.pipeline import Lookahead, ThreadedRun


def _items(frames: int, packet_every: int = 4) -> list:
    items = []
    for i in range(frames):
        items.append(Frame(index=i, pts=i, time_base=None, image=np.zeros((2, 2, 3), np.uint8)))
        if i % packet_every == packet_every - 1:
            items.append(f"packet after {i}")
    return items


def _run_in_thread(run: ThreadedRun, timeout: float = 20.0) -> BaseException | None:
    """Run with a time limit: a deadlock fails the test instead of hanging it."""
    outcome: list = []

    def target() -> None:
        try:
            run.run()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the run did not finish"
    return outcome[0]


def _stage(name: str, threads: set, fail_on: int | None = None):
    def stage(frames: list[Frame]) -> list[Frame]:
        threads.add((name, threading.current_thread().name))
        for frame in frames:
            if frame.index == fail_on:
                raise RuntimeError(f"{name} failed on {frame.index}")
            frame.error = (frame.error or "") + name  # the stages' order, per frame
        return frames
    return stage


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_two_stages_keep_order_and_run_on_their_own_threads(batch_size):
    items, written, threads = _items(23), [], set()
    run = ThreadedRun(items, [_stage("A", threads), _stage("B", threads)], written.append, written.append,
                      batch_size=batch_size, queue_size=4)
    assert _run_in_thread(run) is None
    assert written == items  # every frame and packet, in order
    assert all(f.error == "AB" for f in written if isinstance(f, Frame))
    assert len({thread for _, thread in threads}) == 2


def test_packets_between_frames_do_not_cut_batches_short():
    """An audio packet after every frame (a typical file) still gives full batches, in order."""
    items, written, sizes = _items(10, packet_every=1), [], []

    def stage(frames: list[Frame]) -> list[Frame]:
        sizes.append(len(frames))
        return frames

    run = ThreadedRun(items, [stage, stage], written.append, written.append, batch_size=4, queue_size=4)
    assert _run_in_thread(run) is None
    assert written == items and sorted(sizes) == [2, 2, 4, 4, 4, 4]  # each stage: 4, 4, then the last 2


@pytest.mark.parametrize("failing", ["A", "B"])
def test_an_error_in_any_stage_stops_the_run_and_is_raised(failing):
    threads: set = set()
    stages = [_stage("A", threads, fail_on=40 if failing == "A" else None),
              _stage("B", threads, fail_on=40 if failing == "B" else None)]
    run = ThreadedRun(_items(500), stages, lambda f: None, lambda p: None, batch_size=4, queue_size=4)
    error = _run_in_thread(run)
    assert isinstance(error, RuntimeError) and str(error) == f"{failing} failed on 40"


def test_a_writer_error_stops_every_stage():
    def write(frame: Frame) -> None:
        if frame.index == 30:
            raise OSError("disk full")

    run = ThreadedRun(_items(500), [_stage("A", set()), _stage("B", set())], write, lambda p: None,
                      batch_size=4, queue_size=4)
    error = _run_in_thread(run)
    assert isinstance(error, OSError) and "disk full" in str(error)


@pytest.mark.parametrize("batch_size,frames", [(1, 5), (4, 23), (8, 8)])
def test_a_lookahead_stage_starts_each_batch_before_finishing_the_one_before(batch_size, frames):
    """Every frame and packet is written once, in order, the last batch too; batch i starts before
    batch i - 1 finishes, so a GPU can detect one batch while the host finishes the previous one."""
    items, written, calls = _items(frames), [], []

    def start(batch: list[Frame]) -> int:
        calls.append(("start", batch[0].index))
        return batch[0].index

    def finish(batch: list[Frame], handle: int) -> list[Frame]:
        assert handle == batch[0].index  # each batch is finished with its own handle
        calls.append(("finish", batch[0].index))
        for frame in batch:
            frame.error = "done"
        return batch

    run = ThreadedRun(items, Lookahead(start, finish), written.append, written.append,
                      batch_size=batch_size, queue_size=4)
    assert _run_in_thread(run) is None
    assert written == items and all(f.error == "done" for f in written if isinstance(f, Frame))
    firsts = list(range(0, frames, batch_size))
    expected = [("start", firsts[0])]
    for before, first in zip(firsts, firsts[1:]):
        expected += [("start", first), ("finish", before)]
    assert calls == expected + [("finish", firsts[-1])]


def test_an_error_in_a_lookahead_stage_stops_the_run_and_is_raised():
    def finish(batch: list[Frame], handle) -> list[Frame]:
        if batch[0].index >= 8:
            raise RuntimeError("finish failed")
        return batch

    written: list = []
    run = ThreadedRun(_items(40), Lookahead(lambda batch: None, finish), written.append, written.append,
                      batch_size=4, queue_size=4)
    error = _run_in_thread(run)
    assert isinstance(error, RuntimeError) and str(error) == "finish failed"
    assert [f.index for f in written if isinstance(f, Frame)] == list(range(8))
