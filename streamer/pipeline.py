"""The file pipeline: reader thread -> detect -> track/anonymize -> writer thread.

Decoding and encoding run in their own threads (PyAV releases the GIL), the
models in the calling thread; with ``STREAMER_STAGE_THREADS=2``, tracking and
anonymization get a thread of their own, so one batch's detection overlaps
the previous batch's anonymization (:func:`streamer.factory.stage_threads`;
measured slower so far, so not the default). Bounded queues link
them, so memory stays flat and the slowest stage sets the pace. Frame order
is kept: pass-through packets (audio...) travel the same queues as the
frames around them.

Example:
    >>> from streamer.config import load_config
    >>> stats = anonymize_file("in.mp4", "out.mp4", load_config("dashcam-offline"))  # doctest: +SKIP
    >>> stats.frames_out == stats.frames_in                                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from streamer.config import Config
from streamer.detections import Detections, Frame
from streamer.errors import FrameAbort, InputError, OutputError, StreamerError

log = logging.getLogger(__name__)

_END = object()
#: Frames a run writes before its steady rate (:attr:`RunStats.steady_fps`) starts counting: one second at
#: 30 fps covers model loading, cuDNN autotuning and CUDA-graph capture.
WARMUP_FRAMES = 30


@dataclass
class RunStats:
    """Counters of one run, shown in the end-of-run summary.

    Attributes:
        frames_in: frames decoded.
        frames_out: frames written.
        frames_dropped: frames not written (``on_error: drop``).
        frames_masked: frames blacked out because a stage failed on them.
        decode_errors: undecodable packets skipped.
        truncated: the input ended early (damaged or cut off).
        faces_detected: raw detections over all frames.
        faces_tracked_only: faces covered by the tracker alone.
        tracks: distinct face tracks.
        anonymized: faces per anonymizer mode.
        packets_copied: audio/other packets copied through.
        seconds: wall time of the run.
        stage_ms: per stage (decode, with the upload to the GPU when the
            GPU compositor is used; detect; track; anonymize; encode),
            the time each frame spent in it (milliseconds; a batched stage's time is shared
            equally by the batch's frames). Only the last ``stage_window``
            frames are kept when that is set (live streams run for days).
        stage_window: how many recent frames ``stage_ms`` keeps per stage (None: all).
        steady_start, last_written: ``time.perf_counter()`` when frame number
            :data:`WARMUP_FRAMES` and the last frame were written (seconds);
            :attr:`steady_fps` is measured between them.
        started, first_written: ``time.perf_counter()`` when the run started and when its first frame
            was written (seconds); :attr:`first_frame_s` is the time between.
    """

    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    frames_masked: int = 0
    decode_errors: int = 0
    truncated: bool = False
    faces_detected: int = 0
    faces_tracked_only: int = 0
    tracks: int = 0
    anonymized: Counter = field(default_factory=Counter)
    packets_copied: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, deque] = field(default_factory=dict)
    stage_window: int | None = None
    backend: str = ""
    steady_start: float | None = None
    last_written: float | None = None
    started: float | None = None
    first_written: float | None = None
    _written: int = field(default=0, repr=False)

    def frame_written(self, now: float) -> None:
        """Note that a frame was written at ``now`` (``time.perf_counter()``, seconds)."""
        self._written += 1
        self.last_written = now
        if self._written == 1:
            self.first_written = now
        if self._written == WARMUP_FRAMES:
            self.steady_start = now

    @property
    def steady_fps(self) -> float | None:
        """Frames per second after the first :data:`WARMUP_FRAMES` were written (model loading,
        cuDNN autotuning and CUDA-graph capture excluded); None for runs of under twice that many frames."""
        if self.steady_start is None or self._written < 2 * WARMUP_FRAMES or self.last_written <= self.steady_start:
            return None
        return (self._written - WARMUP_FRAMES) / (self.last_written - self.steady_start)

    @property
    def first_frame_s(self) -> float | None:
        """Seconds from the start of the run to its first frame written: the start-up a user waits
        through (decoder open, cuDNN autotuning and CUDA-graph captures on a GPU); None before."""
        if self.started is None or self.first_written is None:
            return None
        return self.first_written - self.started

    def add_stage_time(self, stage: str, seconds: float, frames: int = 1) -> None:
        """Record ``seconds`` spent in ``stage`` on ``frames`` frames, shared equally among them."""
        samples = self.stage_ms.get(stage)
        if samples is None:
            samples = self.stage_ms[stage] = deque(maxlen=self.stage_window)
        samples.extend([seconds * 1000 / frames] * frames)

    def stage_percentiles(self) -> dict[str, tuple[float, float]]:
        """Per stage, the (p50, p95) time per frame in milliseconds."""
        return {stage: (float(np.percentile(v, 50)), float(np.percentile(v, 95)))
                for stage, v in self.stage_ms.items() if v}

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """The counters as plain JSON-ready values (structured logs, result files); times in seconds and ms."""
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "frames_dropped": self.frames_dropped,
                "frames_masked": self.frames_masked, "decode_errors": self.decode_errors, "truncated": self.truncated,
                "faces_detected": self.faces_detected, "faces_tracked_only": self.faces_tracked_only,
                "tracks": self.tracks, "anonymized": dict(self.anonymized), "packets_copied": self.packets_copied,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "steady_fps": None if self.steady_fps is None else round(self.steady_fps, 2), "backend": self.backend,
                "first_frame_s": None if self.first_frame_s is None else round(self.first_frame_s, 3),
                "stage_ms_p50_p95": {k: [round(a, 2), round(b, 2)] for k, (a, b) in self.stage_percentiles().items()}}

    def summary(self) -> str:
        """A short multi-line, human-readable report."""
        modes = ", ".join(f"{n} {m}" for m, n in sorted(self.anonymized.items())) or "none"
        lines = [
            f"frames      {self.frames_in} in, {self.frames_out} out, {self.frames_dropped} dropped, "
            f"{self.frames_masked} masked on error",
            f"faces       {self.faces_detected} detected, {self.faces_tracked_only} covered by tracker only, "
            f"{self.tracks} tracks",
            f"anonymized  {modes}",
            f"speed       {self.fps:.1f} fps ({self.seconds:.1f} s, backend {self.backend or 'n/a'}"
            + ("" if self.first_frame_s is None else f"; first frame out after {self.first_frame_s:.1f} s") + ")",
        ]
        stages = self.stage_percentiles()
        if stages:
            lines.append("per frame   " + ", ".join(f"{name} {p50:.1f}/{p95:.1f}" for name, (p50, p95)
                                                    in stages.items()) + " ms (p50/p95)")
        if self.packets_copied:
            lines.append(f"copied      {self.packets_copied} audio/other packets")
        if self.decode_errors or self.truncated:
            lines.append(f"input       {self.decode_errors} undecodable packets skipped"
                         + (", input truncated" if self.truncated else ""))
        return "\n".join(lines)


class FrameProcessor:
    """Detect -> track -> anonymize for a stream of frames, with the on_error policy.

    Args:
        config: the run's configuration.
        detector: callable mapping a list of RGB frames to a list of Detections.
        tracker: object with ``update(detections, time) -> Detections`` (or None).
        compositor: callable ``(image, detections) -> Counter`` anonymizing in place.
        stats: counters to update.
    """

    def __init__(self, config: Config, detector, tracker, compositor, stats: RunStats) -> None:
        self.config = config
        self.detector = detector
        self.tracker = tracker
        self.compositor = compositor
        self.stats = stats
        self._lock = threading.Lock()  # detect and anonymize may run on two threads
        self._failures = 0

    #: Stage failures named one by one in warnings; after them, one warning per :attr:`REPORT_EVERY`.
    WARNED_FAILURES = 5
    REPORT_EVERY = 100

    def _fail(self, frame: Frame, stage: str, exc: BaseException) -> None:
        policy = self.config.pipeline.on_error
        # the first line: CUDA errors add four lines of debugging advice to every message
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"{stage} failed on frame {frame.index}: {reason}"
        if policy == "abort":
            raise FrameAbort(message + " (on_error: abort)") from None
        outcome = "dropped" if policy == "drop" else "masked"
        frame.error = message
        if policy == "drop":
            frame.dropped = True
        else:
            frame.blackout()
        with self._lock:
            if policy == "drop":
                self.stats.frames_dropped += 1
            else:
                self.stats.frames_masked += 1
            self._failures += 1
            failures = self._failures
        # a GPU out of memory fails every frame: 1,240 warnings of five lines each in one bench run (H100,
        # 2026-11-26); the summary counts them all
        if failures <= self.WARNED_FAILURES:
            log.warning("%s; frame %s%s", message, outcome, "; further failures are counted, with a warning "
                        f"every {self.REPORT_EVERY}" if failures == self.WARNED_FAILURES else "")
        elif failures % self.REPORT_EVERY == 0:
            log.warning("%d frames %s on stage failures so far; the latest: %s", failures, outcome, message)

    def process(self, frames: list[Frame]) -> list[Frame]:
        """Detect, track and anonymize a batch of frames in place (:meth:`detect` then :meth:`anonymize`);
        returns them in order."""
        return self.anonymize(self.detect(frames))

    def detect(self, frames: list[Frame]) -> list[Frame]:
        """Find the faces of a batch of frames: ``frame.detections`` holds the raw detections.

        A compositor with ``upload(frames)`` (the GPU compositor) gets the
        frames first, so the detector reads the same device copy. A detector
        failure goes through the ``on_error`` policy for the whole batch.
        """
        return self._collect(frames, self.start(frames))

    def start(self, frames: list[Frame]) -> "_Started | None":
        """Start detecting the faces of a batch; :meth:`finish` completes the batch.

        With a detector that has ``start``/``collect`` and frames on a GPU only
        the detector's work is queued here, so the GPU detects this batch
        while the host tracks and anonymizes the previous one
        (:class:`Lookahead`). Returns None when the detector failed (the
        frames went through the ``on_error`` policy).
        """
        t0 = time.perf_counter()
        upload = getattr(self.compositor, "upload", None)
        try:
            if upload is not None:
                upload(frames)
            images = [f.pixels for f in frames]
            start = getattr(self.detector, "start", None)
            pending = start(images) if start is not None else self.detector(images)
        except Exception as exc:  # noqa: BLE001 - any stage failure goes through the policy
            for frame in frames:
                self._fail(frame, "detector", exc)
            return None
        return _Started(pending, time.perf_counter() - t0)

    def finish(self, frames: list[Frame], started: "_Started | None") -> list[Frame]:
        """Complete a batch :meth:`start` began: its detections, tracking and anonymization, in place."""
        return self.anonymize(self._collect(frames, started))

    def _collect(self, frames: list[Frame], started: "_Started | None") -> list[Frame]:
        """Store the detections of a started batch on its frames (stage time ``detect``: start + collect)."""
        if started is None:
            return frames
        t0 = time.perf_counter()
        try:
            collect = getattr(self.detector, "collect", None)
            found = collect(started.pending) if collect is not None else started.pending
        except Exception as exc:  # noqa: BLE001
            for frame in frames:
                self._fail(frame, "detector", exc)
            return frames
        for frame, detections in zip(frames, found):
            frame.detections = detections
        self.stats.add_stage_time("detect", started.seconds + time.perf_counter() - t0, len(frames))
        return frames

    def anonymize(self, frames: list[Frame]) -> list[Frame]:
        """Track and anonymize a batch of frames whose raw detections :meth:`detect` stored, in place
        (:meth:`track` then :meth:`composite`)."""
        return self.composite(self.track(frames))

    def track(self, frames: list[Frame]) -> list[Frame]:
        """Add the tracker's coverage to the raw detections of a batch of frames, in place (stage time
        ``track``). Frames a stage failed on (already masked or dropped) are skipped; a tracker failure
        goes through the ``on_error`` policy for that frame."""
        t = time.perf_counter()
        for frame in frames:
            if frame.error is None:
                try:
                    self._track(frame, frame.detections)
                except FrameAbort:
                    raise
                except Exception as exc:  # noqa: BLE001
                    self._fail(frame, "anonymizer", exc)
        self.stats.add_stage_time("track", time.perf_counter() - t, len(frames))
        return frames

    def composite(self, frames: list[Frame]) -> list[Frame]:
        """Anonymize the faces :meth:`track` stored on a batch of frames, in place (stage time
        ``anonymize``). Frames a stage failed on are skipped.

        A compositor with ``anonymize_frames(frames)`` anonymizes the whole
        batch at once (faces batched across frames); any other compositor is
        called per frame on the host image.
        """
        todo = [f for f in frames if f.error is None]
        if getattr(self.compositor, "anonymize_frames", None) is not None:
            if todo:
                self._anonymize_batch(todo)
            return frames
        for frame in todo:
            t = time.perf_counter()
            try:
                image = frame.to_host()
                frame.device_image = None  # anonymized on the host: a device copy would be stale
                self.stats.anonymized.update(self.compositor(image, frame.detections))
            except FrameAbort:
                raise
            except Exception as exc:  # noqa: BLE001
                self._fail(frame, "anonymizer", exc)
            self.stats.add_stage_time("anonymize", time.perf_counter() - t)
        return frames

    def _anonymize_batch(self, frames: list[Frame]) -> None:
        t = time.perf_counter()
        try:
            for counts in self.compositor.anonymize_frames(frames):
                self.stats.anonymized.update(counts)
        except FrameAbort:
            raise
        except Exception as exc:  # noqa: BLE001 - the batch failed: every frame of it goes through the policy
            for frame in frames:
                self._fail(frame, "anonymizer", exc)
        self.stats.add_stage_time("anonymize", time.perf_counter() - t, len(frames))

    def _track(self, frame: Frame, detections: Detections) -> None:
        """Count the detections, add the tracker's coverage, store them on the frame."""
        self.stats.faces_detected += len(detections)
        if self.tracker is not None:
            t = frame.time
            if not np.isfinite(t):
                t = frame.index / max(self.fps, 1e-6)
            detections = self.tracker.update(detections, t)
            self.stats.faces_tracked_only += int((~detections.detected).sum())
            self.stats.tracks = max(self.stats.tracks, self.tracker.track_count)
        frame.detections = detections

    fps: float = 25.0


@dataclass
class _Started:
    """A batch whose detection :meth:`FrameProcessor.start` began: the detector's pending result
    (or its detections, for a detector without ``start``) and the host seconds starting took."""

    pending: object
    seconds: float


@dataclass(frozen=True)
class Lookahead:
    """A first stage in two halves, for :class:`ThreadedRun`: batch i is started before batch i - 1 is
    finished, so a GPU detects one batch while the host tracks and anonymizes the one before
    (:meth:`FrameProcessor.start` and :meth:`FrameProcessor.finish`). One batch more is in flight.

    Attributes:
        start: ``start(frames) -> handle``: queue the batch's first work and return.
        finish: ``finish(frames, handle) -> frames``: the rest, frames in the same order.
    """

    start: Callable
    finish: Callable


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put into a bounded queue, giving up when ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class ThreadedRun:
    """Runs source iteration, the processing stages and writing, each stage on its own thread.

    The reader thread iterates the source; the calling thread gathers frames
    into batches and runs the first stage; every further stage runs on its
    own thread (the file pipeline: detection, then tracking and
    anonymization, so one batch's detection overlaps the previous batch's
    anonymization); the writer thread writes. Bounded queues link them, so
    memory stays flat and the slowest stage sets the pace. Pass-through
    packets travel inside the batches, between the frames they came between,
    so order is kept and they never cut a batch short.

    Args:
        items: iterable of Frames and pass-through packets (consumed on the reader thread).
        process: callable taking a list of Frames and returning them processed, a
            sequence of such stages applied in order, each on its own thread, or a
            :class:`Lookahead` (one stage in two halves, one batch apart).
        write_frame: called on the writer thread for each kept Frame.
        write_packet: called on the writer thread for each pass-through packet.
        batch_size: frames per ``process`` call.
        queue_size: bound of each queue (items; batches between stages).
        on_written: called after each written frame (progress bars).
        on_stage_time: called as ``(stage, seconds)`` with each frame's decode
            and encode time (e.g. :meth:`RunStats.add_stage_time`).
    """

    def __init__(self, items: Iterable, process: Callable | Sequence[Callable], write_frame: Callable,
                 write_packet: Callable, batch_size: int = 1, queue_size: int = 8,
                 on_written: Callable | None = None,
                 on_stage_time: Callable[[str, float], None] | None = None) -> None:
        self.items = items
        self.stages = list(process) if isinstance(process, (list, tuple)) else [process]
        self.write_frame = write_frame
        self.write_packet = write_packet
        self.batch_size = batch_size
        self.in_q: queue.Queue = queue.Queue(maxsize=queue_size)
        # between stage i and i + 1: batches (frames and the packets between them)
        self.stage_qs: list[queue.Queue] = [queue.Queue(maxsize=max(2, queue_size // max(batch_size, 1)))
                                            for _ in self.stages[1:]]
        self.out_q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.on_written = on_written
        self.on_stage_time = on_stage_time or _ignore

    def _reader(self) -> None:
        try:
            iterator = iter(self.items)
            while True:
                t = time.perf_counter()
                item = next(iterator, _END)
                if isinstance(item, Frame):
                    self.on_stage_time("decode", time.perf_counter() - t)
                if item is _END or not _put(self.in_q, item, self.stop):
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            self.errors.append(exc)
            self.stop.set()
        finally:
            _put(self.in_q, _END, threading.Event()) if not self.stop.is_set() else None

    def _writer(self) -> None:
        try:
            while True:
                item = self.out_q.get()
                if item is _END:
                    break
                t = time.perf_counter()
                if isinstance(item, Frame):
                    if not item.dropped:
                        self.write_frame(item)
                        self.on_stage_time("encode", time.perf_counter() - t)
                        if self.on_written:
                            self.on_written(item)
                else:
                    self.write_packet(item)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)
            self.stop.set()
            while self.out_q.get() is not _END:  # unblock the producer
                pass

    def _stage_worker(self, level: int) -> None:
        """Run stage ``level`` (>= 1) on the batches of its input queue; always passes the end on."""
        source = self.stage_qs[level - 1]
        try:
            while True:
                batch = source.get()
                if batch is _END:
                    break
                if not self.stop.is_set():  # else: draining after an error elsewhere
                    self._forward(level, self._process(level, batch))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            self.errors.append(exc)
            self.stop.set()
            while source.get() is not _END:  # unblock the producer
                pass
        finally:
            self._end(level)

    def _process(self, level: int, batch: list) -> list:
        """Run stage ``level`` on the frames of ``batch`` (frames and the packets between them, in
        order); returns the batch in the same order, each frame replaced by the stage's result."""
        return _replace_frames(batch, self.stages[level])

    def _first(self, batch: list, started: tuple | None) -> tuple | None:
        """Run the first stage on ``batch``. A :class:`Lookahead` stage starts it, then finishes and
        forwards the batch started before (``started``); returns what to finish next (None: nothing)."""
        stage = self.stages[0]
        if not isinstance(stage, Lookahead):
            self._forward(0, self._process(0, batch))
            return None
        frames = [item for item in batch if isinstance(item, Frame)]
        handle = stage.start(frames) if frames else None
        if started is not None:
            self._forward(0, self._finish_started(started))
        return batch, handle

    def _finish_started(self, started: tuple) -> list:
        """Finish a batch a :class:`Lookahead` first stage started; returns it in order."""
        batch, handle = started
        return _replace_frames(batch, lambda frames: self.stages[0].finish(frames, handle))

    def _forward(self, level: int, batch: list) -> None:
        """Hand a batch stage ``level`` finished to the next stage, or its items to the writer, in order."""
        if level + 1 < len(self.stages):
            _put(self.stage_qs[level], batch, self.stop)
        else:
            for item in batch:
                _put(self.out_q, item, self.stop)

    def _end(self, level: int) -> None:
        """Tell the consumer after stage ``level`` that nothing more comes (a blocking put: it drains)."""
        (self.stage_qs[level] if level + 1 < len(self.stages) else self.out_q).put(_END)

    def run(self) -> None:
        """Run to the end of the input; re-raises the first error of any thread."""
        reader = threading.Thread(target=self._reader, name="streamer-reader", daemon=True)
        writer = threading.Thread(target=self._writer, name="streamer-writer", daemon=True)
        workers = [threading.Thread(target=self._stage_worker, args=(level,), name=f"streamer-stage{level}",
                                    daemon=True) for level in range(1, len(self.stages))]
        for thread in (reader, writer, *workers):
            thread.start()
        # a batch: ``batch_size`` frames with the pass-through packets that came between them, so an
        # audio packet every frame or two does not cut batches down to one frame
        batch: list = []
        frames = 0
        started = None  # a batch a Lookahead stage started and has not finished
        try:
            while not self.stop.is_set():
                try:
                    item = self.in_q.get(timeout=0.1)
                except queue.Empty:
                    if not reader.is_alive() and self.in_q.empty():
                        break
                    continue
                if item is _END:
                    break
                batch.append(item)
                frames += isinstance(item, Frame)
                if frames >= self.batch_size:
                    started = self._first(batch, started)
                    batch, frames = [], 0
            if batch and not self.stop.is_set():
                started = self._first(batch, started)
            if started is not None and not self.stop.is_set():
                self._forward(0, self._finish_started(started))
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()
        finally:
            self._end(0)
            for thread in (*workers, writer):
                thread.join()
            self.stop.set()
            reader.join(timeout=5)
        if self.errors:
            raise self.errors[0]


def anonymize_file(input_path: str, output_path: str, config: Config, progress: bool = True,
                   detector=None, compositor=None) -> RunStats:
    """Anonymize every face of a video file into a new file.

    Args:
        input_path: any video file PyAV can open, or ``-``: standard input (a stream read front to back).
        output_path: the output; its extension sets the container. ``-``: standard output, as MPEG-TS.
        config: the run's configuration.
        progress: show a progress bar on stderr.
        detector, compositor: replace the default stages (tests, experiments).

    Returns:
        The run's counters. Frames in equals frames out unless frames were
        dropped by ``on_error: drop`` (counted in ``frames_dropped``).
    """
    from streamer.factory import build_source
    from streamer.sinks.video_file import STDOUT, VideoFileSink, check_output_path
    from streamer.sources.video_file import STDIN

    check_output_path(output_path)
    if input_path != STDIN and output_path != STDOUT and os.path.exists(output_path) and os.path.exists(input_path) \
            and os.path.samefile(input_path, output_path):
        raise OutputError(f"the output is the input file ({output_path}): it would be overwritten while it is "
                          f"read; choose another output")
    source = build_source(input_path, config)
    try:
        sink = VideoFileSink(output_path, source.info, source.copy_streams, config.encoder)
    except BaseException:
        source.close()
        raise
    stats = run_pipeline(source, sink, config, progress=progress, detector=detector, compositor=compositor)
    if stats.frames_in == 0:  # an output without a picture is no anonymized video: say so, leave none behind
        sink.discard()
        why = ("it ends early or is damaged" if stats.truncated else
               f"{stats.decode_errors} undecodable packets" if stats.decode_errors else "it holds none")
        if input_path == STDIN:
            why += "; an MP4/MOV with its index at the end cannot be read from a pipe: give it as a file"
        raise InputError(f"{input_path}: no video frame could be decoded ({why}); nothing was written")
    return stats


@dataclass
class Stages:
    """The networks-holding stages of a run: built once, reusable by every file of one job.

    Attributes:
        detector: the face detector (its model loaded, its runtime session open).
        compositor: anonymizer + blend (with the face generator loaded in gan mode).
    """

    detector: object
    compositor: object


def build_stages(config: Config, detector=None, compositor=None) -> Stages:
    """Build the detector and compositor for ``config`` (those not given), as every run does.

    A folder job builds them once and passes them to each file's run: loading
    the models (ONNX folding, ONNX Runtime or CUDA sessions, the generator)
    costs about half a second per file on a 2-core CPU otherwise.
    """
    from streamer.factory import build_compositor, build_detector

    detector = detector or build_detector(config)
    # sinks take frames left on the GPU (converted to the encoder's format there)
    compositor = compositor or build_compositor(config, download=False)
    return Stages(detector=detector, compositor=compositor)


def run_pipeline(source, sink, config: Config, progress: bool = False, detector=None, compositor=None,
                 anonymize: bool = True) -> RunStats:
    """Drive a source's frames through detect/track/anonymize into a sink, on three threads.

    Args:
        source: iterable of Frames and pass-through packets with ``info`` (StreamInfo),
            ``path``, ``decode_errors``, ``truncated`` and ``close()``.
        sink: has ``write_frame``, ``write_packet``, ``close()``, ``discard()``,
            ``frames_written`` and ``packets_copied`` (a file, or a null sink for benchmarks).
            Frames may reach it with their pixels only on the GPU (``Frame.image``
            None, ``Frame.device_image`` set): it reads them with ``Frame.to_host()``
            or converts them on the device.
        config: the run's configuration.
        progress: show a progress bar on stderr.
        detector, compositor: replace the default stages.
        anonymize: False runs decode -> encode only (a plain transcode, for benchmarks).

    Returns:
        The run's counters; the source and sink are closed. On a user-facing
        error or Ctrl-C the sink is finalized (every frame in it is anonymized)
        and the error re-raised; on any other error the sink's output is discarded.
    """
    from streamer.factory import detect_ahead, frames_per_batch, stage_threads
    from streamer.stages.tracker import FaceTracker

    stats = RunStats()
    try:
        if anonymize:
            stages = build_stages(config, detector=detector, compositor=compositor)  # builds only what is missing
            detector, compositor = stages.detector, stages.compositor
            stats.backend = getattr(getattr(detector, "runner", None), "backend", "custom")
            tracker = FaceTracker(config.tracker, fps=source.info.fps) if config.tracker.enabled else None
            processor = FrameProcessor(config, detector, tracker, compositor, stats)
            processor.fps = source.info.fps
            # two threads: one batch's detection overlaps the previous batch's anonymization; one thread
            # (the default) overlaps them by starting a batch's detection before finishing the previous batch
            if stage_threads() == 2:
                process = [processor.detect, processor.anonymize]
            elif detect_ahead():
                process = Lookahead(processor.start, processor.finish)
            else:
                process = processor.process
        else:
            process = _unchanged
    except BaseException:
        source.close()
        _finish_sink(sink, keep=False)
        raise

    bar = _progress_bar(progress, source.info.frames, source.path)

    # the GPU compositor's upload (pinned copy + host-to-GPU transfer) runs on the reader thread, after
    # decoding, so the model stages find the frame on the GPU; the "decode" stage time includes it
    upload = getattr(compositor, "upload", None) if anonymize else None

    def counted(items):
        for item in items:
            if isinstance(item, Frame):
                stats.frames_in += 1
                if upload is not None:
                    upload([item])
            yield item

    def on_written(_frame: Frame) -> None:
        stats.frame_written(time.perf_counter())
        if bar is not None:
            bar.update(1)

    run = ThreadedRun(counted(source), process, sink.write_frame, sink.write_packet,
                      batch_size=frames_per_batch(config), queue_size=config.pipeline.queue_size,
                      on_written=on_written, on_stage_time=stats.add_stage_time)
    start = stats.started = time.perf_counter()
    try:
        run.run()
    except (StreamerError, KeyboardInterrupt) as exc:
        # every frame written so far is anonymized: keep a finalized, playable partial output, unless
        # writing it is what failed (a disk full leaves a file without an index; deleting it frees the space)
        _finish_sink(sink, keep=not getattr(sink, "write_failed", False))
        if isinstance(exc, KeyboardInterrupt) and getattr(sink, "path", None):
            log.warning("%s: stopped after %d frames; they are kept, finalized and playable", sink.path,
                        sink.frames_written)
        raise
    except BaseException:
        _finish_sink(sink, keep=False)
        raise
    finally:
        if bar is not None:
            bar.close()
        source.close()
    try:
        sink.close()
    except StreamerError:
        sink.discard()
        raise
    stats.seconds = time.perf_counter() - start
    stats.frames_out = sink.frames_written
    stats.packets_copied = sink.packets_copied
    stats.decode_errors = source.decode_errors
    stats.truncated = source.truncated
    return stats


def _replace_frames(batch: list, stage: Callable[[list[Frame]], list[Frame]]) -> list:
    """``batch`` (frames and the packets between them) with its frames replaced, in order, by what
    ``stage`` returns for them."""
    positions = [i for i, item in enumerate(batch) if isinstance(item, Frame)]
    if positions:
        done = stage([batch[i] for i in positions])
        batch = list(batch)
        for i, frame in zip(positions, done):
            batch[i] = frame
    return batch


def _unchanged(frames: list[Frame]) -> list[Frame]:
    return frames


def _ignore(*args) -> None:
    pass


def _finish_sink(sink, keep: bool) -> None:
    """Finalize (keep=True) or discard a partly written output."""
    try:
        sink.close()
    except Exception:  # noqa: BLE001 - the original error matters more
        pass
    if not keep:
        sink.discard()


def _progress_bar(enabled: bool, total: int, label: str):
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total or None, unit="frame", desc=label.rsplit("/", 1)[-1][:30], leave=False,
                dynamic_ncols=True, disable=None)
